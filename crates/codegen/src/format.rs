//! Strings built in the kernel: `sprintf`/`sprint`. Most output is formatted in user
//! space (`printf` sends the values, and pretty-printed Go values travel whole, see
//! `pretty`), but these are string values a script may store, compare or join, so
//! they are made here, from the pieces of the
//! format the checker parsed ([`lang::format::Format`]): literal text is copied, and
//! numbers are turned into digits by a bounded loop. The conversions built here are
//! those [`lang::format::Conversion::kernel_sprintf`] allows (the checker refused the
//! others at their place): `%d %i %u %x %X %o %p %s %c` with one flag of `- 0 + space
//! #` and a written width, printing what `runtime::format` prints for them. Padding is
//! a bounded copy of a run of pad characters, its length the width less the piece's
//! length, found at run time.

use bpf::{AluOp, Cond, Insn, Reg, Size};
use lang::Type;
use lang::ast::Expr;
use lang::format::{Conv, Conversion, Count, Flag, Piece};

use crate::emit::SCRATCH;
use crate::lower::{Lower, Str};

/// A conversion of a number to digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Radix {
    pub base: i32,
    pub signed: bool,
    pub upper: bool,
    /// Written before the digits (after the sign): `0x`, `0X`, `0` or nothing.
    pub prefix: &'static [u8],
    /// The sign of a non-negative signed number: `+`, ` `, or none (0).
    pub plus: u8,
}

pub const DEC: Radix = Radix {
    base: 10,
    signed: true,
    upper: false,
    prefix: b"",
    plus: 0,
};
pub const HEX: Radix = Radix {
    base: 16,
    signed: false,
    upper: false,
    prefix: b"0x",
    plus: 0,
};

/// The width and flags of a conversion (`%-8s`, `%05d`); width 0 pads nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pad {
    width: u32,
    left: bool,
    zero: bool,
}

/// How the kernel builds one conversion.
enum Build {
    Num(Radix, Pad),
    Str(Pad),
    Char(Pad),
}

/// The digits, sign and prefix of a number conversion, as `runtime::format` writes
/// them (stap's `number()`): `%p` is `%#x`, `#` prefixes hex and octal.
fn radix(c: &Conversion) -> Radix {
    let alt = c.flag == Flag::Alt;
    let unsigned = |base, prefix| Radix {
        base,
        signed: false,
        upper: false,
        prefix: if alt { prefix } else { b"" },
        plus: 0,
    };
    match c.conv {
        Conv::Signed => Radix {
            plus: match c.flag {
                Flag::Plus => b'+',
                Flag::Space => b' ',
                _ => 0,
            },
            ..DEC
        },
        Conv::Octal => unsigned(8, b"0"),
        Conv::Hex => unsigned(16, b"0x"),
        Conv::HexUpper => Radix {
            upper: true,
            ..unsigned(16, b"0X")
        },
        Conv::Pointer => HEX,
        _ => unsigned(10, b""),
    }
}

/// How to build `c`; the checker has refused what [`Conversion::kernel_sprintf`]
/// leaves out.
fn build(c: &Conversion) -> Result<Build, &'static str> {
    c.kernel_sprintf()?;
    let pad = Pad {
        width: match c.width {
            Count::Static(w) => w as u32,
            _ => 0,
        },
        left: c.flag == Flag::Left,
        zero: c.flag == Flag::ZeroPad,
    };
    Ok(match c.conv {
        Conv::Str => Build::Str(pad),
        Conv::Char => Build::Char(pad),
        _ => Build::Num(radix(c), pad),
    })
}

impl Lower<'_, '_> {
    /// A fresh empty string slot.
    fn builder(&mut self) -> u32 {
        let at = self.em.alloc(self.em.max_string());
        self.em.store_imm(at, Size::DW, 0);
        at
    }

    fn append_text(&mut self, dst: u32, text: &str) {
        self.append_bytes(dst, text.as_bytes());
    }

    fn append_bytes(&mut self, dst: u32, text: &[u8]) {
        let t = self.em.alloc(self.em.max_string());
        self.em.const_str(t, text);
        self.append(dst, Str::Scratch(t));
        self.em.release(t);
    }

    /// Appends the number in R0 to the string at `scratch[dst]`.
    pub fn append_num(&mut self, dst: u32, radix: Radix) {
        let buf = self.em.alloc(32);
        // R1 = magnitude, R5 = 1 if negative; R8 = write index (from the end).
        self.em.e(Insn::mov64(Reg::R1, Reg::R0));
        self.em.e(Insn::mov64(Reg::R5, 0));
        if radix.signed {
            let pos = self.em.a.label();
            self.em.a.jmp(Cond::Sge, Reg::R1, 0, pos);
            self.em.e(Insn::neg64(Reg::R1));
            self.em.e(Insn::mov64(Reg::R5, 1));
            self.em.a.bind(pos);
        }
        self.em.store_imm(buf + 24, Size::DW, 0);
        self.em.e(Insn::mov64(Reg::R8, 31));
        let top = self.em.a.label();
        let done = self.em.a.label();
        let letter = self.em.a.label();
        let put = self.em.a.label();
        self.em.a.bind(top);
        self.em.e(Insn::alu64(AluOp::Sub, Reg::R8, 1));
        self.em.e(Insn::mov64(Reg::R2, Reg::R1));
        self.em.e(Insn::alu64(AluOp::Mod, Reg::R2, radix.base));
        self.em.e(Insn::alu64(AluOp::Div, Reg::R1, radix.base));
        self.em.a.jmp(Cond::Ge, Reg::R2, 10, letter);
        self.em.e(Insn::alu64(AluOp::Add, Reg::R2, i32::from(b'0')));
        self.em.a.ja(put);
        self.em.a.bind(letter);
        let a = if radix.upper { b'A' } else { b'a' };
        self.em
            .e(Insn::alu64(AluOp::Add, Reg::R2, i32::from(a) - 10));
        self.em.a.bind(put);
        self.em.e(Insn::mov64(Reg::R3, SCRATCH));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R8));
        let o = self.em.off(buf);
        self.em.e(Insn::stx(Size::B, Reg::R3, o, Reg::R2));
        self.em.a.jmp(Cond::Eq, Reg::R1, 0, done);
        // 64 bits in octal are 22 digits: the loop ends by index as well.
        self.em.a.jmp(Cond::Gt, Reg::R8, 6, top);
        self.em.a.bind(done);
        // The prefix and the sign go before the digits, so last-first.
        for &m in radix.prefix.iter().rev() {
            self.put_before(o, m);
        }
        if radix.signed {
            let pos = self.em.a.label();
            self.em.a.jmp(Cond::Eq, Reg::R5, 0, pos);
            self.put_before(o, b'-');
            if radix.plus != 0 {
                let signed = self.em.a.label();
                self.em.a.ja(signed);
                self.em.a.bind(pos);
                self.put_before(o, radix.plus);
                self.em.a.bind(signed);
            } else {
                self.em.a.bind(pos);
            }
        }
        // R8 = &buf[index]
        self.em.e(Insn::alu64(AluOp::And, Reg::R8, 31));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R8, SCRATCH));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R8, i32::from(o)));
        self.append_r8(dst);
    }

    /// Writes `byte` before the digit at index R8 of the number buffer at offset `o`.
    fn put_before(&mut self, o: i16, byte: u8) {
        self.em.e(Insn::alu64(AluOp::Sub, Reg::R8, 1));
        self.em.e(Insn::mov64(Reg::R3, SCRATCH));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R8));
        self.em.e(Insn::st(Size::B, Reg::R3, o, i32::from(byte)));
    }

    /// `sprintf(fmt, args…)` as a string, from the format the checker parsed. A `%c`
    /// of 0 writes a NUL, which ends the string there, as it does a C string in user
    /// space: the pieces after it still evaluate their arguments, but append nothing.
    pub fn sprintf(&mut self, e: &Expr, args: &[Expr]) -> Str {
        let out = self.builder();
        let Some(format) = self.env.info.format(e) else {
            self.em.error(e.span, "internal error: an unchecked format");
            return Str::Scratch(out);
        };
        let pieces = format.pieces();
        // Set once a %c wrote a NUL, when pieces follow it.
        let first_char = pieces
            .iter()
            .position(|p| matches!(p, Piece::Conv(c) if c.conv == Conv::Char));
        let ended = first_char.filter(|&i| i + 1 < pieces.len()).map(|_| {
            let at = self.em.alloc(8);
            self.em.store_imm(at, Size::DW, 0);
            at
        });
        let mut args = args.iter();
        for (i, p) in pieces.iter().enumerate() {
            let guard = ended.filter(|_| first_char.is_some_and(|c| i > c));
            let c = match p {
                Piece::Literal(r) => {
                    let skip = self.unless_ended(guard);
                    self.append_bytes(out, format.literal(r));
                    self.em.a.bind(skip);
                    continue;
                }
                Piece::Conv(c) => c,
            };
            let b = match build(c) {
                Ok(b) => b,
                Err(why) => {
                    self.em.error(
                        e.span,
                        format!("internal error: the checker let a kernel sprintf have {why}"),
                    );
                    continue;
                }
            };
            let Some(a) = args.next() else {
                continue;
            };
            match b {
                Build::Num(r, pad) => {
                    self.long(a);
                    let skip = self.unless_ended(guard);
                    if pad.width == 0 {
                        self.append_num(out, r);
                    } else {
                        self.padded_num(out, r, pad);
                    }
                    self.em.a.bind(skip);
                }
                Build::Char(pad) => {
                    self.long(a);
                    let skip = self.unless_ended(guard);
                    self.char_piece(out, pad, ended);
                    self.em.a.bind(skip);
                }
                Build::Str(pad) => {
                    let s = self.string(a);
                    let skip = self.unless_ended(guard);
                    self.padded(out, s, pad);
                    self.em.a.bind(skip);
                }
            }
        }
        Str::Scratch(out)
    }

    /// A label to bind after a piece's append, jumped to when the string has ended.
    fn unless_ended(&mut self, ended: Option<u32>) -> bpf::Label {
        let skip = self.em.a.label();
        if let Some(at) = ended {
            self.em.load(Reg::R1, at);
            self.em.a.jmp(Cond::Ne, Reg::R1, 0, skip);
        }
        skip
    }

    /// Appends the byte in R0 as `%c` would print it. A NUL ends the string: with a
    /// right-justified width, after its pad (the NUL counts as the field's one byte).
    fn char_piece(&mut self, out: u32, pad: Pad, ended: Option<u32>) {
        let t = self.em.alloc(8);
        self.em.store_imm(t, Size::DW, 0);
        let o = self.em.off(t);
        self.em.e(Insn::stx(Size::B, SCRATCH, o, Reg::R0));
        let done = self.em.a.label();
        let nul = self.em.a.label();
        self.em.e(Insn::alu64(AluOp::And, Reg::R0, 0xff));
        self.em.a.jmp(Cond::Eq, Reg::R0, 0, nul);
        self.padded(out, Str::Scratch(t), pad);
        self.em.a.ja(done);
        self.em.a.bind(nul);
        if !pad.left && pad.width > 1 {
            self.append_bytes(out, &vec![b' '; pad.width as usize - 1]);
        }
        if let Some(at) = ended {
            self.em.store_imm(at, Size::DW, 1);
        }
        self.em.a.bind(done);
    }

    /// Appends `s` to `scratch[dst]`, padded with spaces to `pad.width`.
    fn padded(&mut self, dst: u32, s: Str, pad: Pad) {
        if pad.width == 0 {
            self.append(dst, s);
            return;
        }
        let piece = self.builder();
        self.copy_str(Str::Scratch(piece), s);
        self.justify(dst, piece, pad.width, b' ', pad.left);
        self.em.release(piece);
    }

    /// Appends the string at `scratch[piece]` to `scratch[dst]` in a field of
    /// `width`, filled with `fill` on the right (`left`) or on the left.
    fn justify(&mut self, dst: u32, piece: u32, width: u32, fill: u8, left: bool) {
        if left {
            self.append(dst, Str::Scratch(piece));
            self.pad_to(dst, piece, width, fill);
        } else {
            self.pad_to(dst, piece, width, fill);
            self.append(dst, Str::Scratch(piece));
        }
    }

    /// Appends the number in R0 to `scratch[dst]` as `%5d`, `%-5d` or `%05d` would:
    /// with `0`, the zeros go between the sign and the digits.
    fn padded_num(&mut self, dst: u32, radix: Radix, pad: Pad) {
        let piece = self.builder();
        if !pad.zero || pad.left {
            self.append_num(piece, radix);
            self.justify(dst, piece, pad.width, b' ', pad.left);
            self.em.release(piece);
            return;
        }
        let done = self.em.a.label();
        if radix.signed {
            let positive = self.em.a.label();
            let value = self.em.alloc(8);
            self.em.store(value, Reg::R0);
            self.em.a.jmp(Cond::Sge, Reg::R0, 0, positive);
            self.append_text(dst, "-");
            self.em.load(Reg::R0, value);
            self.em.e(Insn::neg64(Reg::R0));
            let magnitude = Radix {
                signed: false,
                ..radix
            };
            self.append_num(piece, magnitude);
            self.justify(dst, piece, pad.width.saturating_sub(1), b'0', false);
            self.em.a.ja(done);
            self.em.a.bind(positive);
            self.em.load(Reg::R0, value);
        }
        self.append_num(piece, radix);
        self.justify(dst, piece, pad.width, b'0', false);
        self.em.a.bind(done);
        self.em.release(piece);
    }

    /// Appends `width - len(scratch[piece])` copies of `fill` to `scratch[dst]`, if
    /// that is above 0: a bounded copy of a run of `fill` made at compile time.
    fn pad_to(&mut self, dst: u32, piece: u32, width: u32, fill: u8) {
        if width == 0 {
            return;
        }
        let skip = self.em.a.label();
        let run = self.em.alloc(self.em.max_string());
        self.em.const_str(run, &vec![fill; width as usize]);
        self.strlen_reg(piece);
        // R7 = how many pad bytes (1..=width past the check).
        self.em.imm(Reg::R7, i64::from(width));
        self.em.e(Insn::alu64(AluOp::Sub, Reg::R7, Reg::R0));
        self.em.a.jmp(Cond::Sle, Reg::R7, 0, skip);
        self.strlen_reg(dst);
        // Copy R7 bytes and the NUL to dst + len, at most what is left of dst.
        self.em.addr(Reg::R1, dst);
        self.em.e(Insn::alu64(AluOp::Add, Reg::R1, Reg::R0));
        self.em.e(Insn::mov64(Reg::R2, self.em.max_string() as i32));
        self.em.e(Insn::alu64(AluOp::Sub, Reg::R2, Reg::R0));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R7, 1));
        let fits = self.em.a.label();
        self.em.a.jmp(Cond::Le, Reg::R2, Reg::R7, fits);
        self.em.e(Insn::mov64(Reg::R2, Reg::R7));
        self.em.a.bind(fits);
        self.em.addr(Reg::R3, run);
        self.em.e(Insn::call(crate::emit::PROBE_READ_KERNEL_STR));
        self.em.a.bind(skip);
        self.em.release(run);
    }

    /// `sprint(x)`: a number in decimal, a string as is.
    pub fn sprint(&mut self, x: &Expr) -> Str {
        match self.env.info.expr_type(x) {
            Some(Type::String) => self.string(x),
            _ => {
                let out = self.builder();
                self.long(x);
                self.append_num(out, DEC);
                Str::Scratch(out)
            }
        }
    }
}
