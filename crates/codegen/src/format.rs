//! Strings built in the kernel: `sprintf`/`sprint`, and the pretty-printed context
//! values `$x$`, `$$vars`, `$$parms`, `$$locals`, `$$return`. Most output is
//! formatted in user space (`printf` sends the values), but these are string values
//! a script may store, compare or join, so they are made here: the format is split
//! at compile time into literal pieces and conversions, and numbers are turned into
//! digits by a bounded loop. In-kernel conversions are `%d %i %u %x %X %o %s %c %p
//! %%` with a width and the `-` (left-justify) and `0` (pad numbers with zeros)
//! flags; a precision or another flag is refused with a hint to use `printf`, which
//! formats in user space. Padding is a bounded copy of a run of pad characters, its
//! length the width less the piece's length, found at run time.

use bpf::script::MAX_STRING;
use bpf::{AluOp, Cond, Insn, Reg, Size};
use lang::ast::{Expr, ExprKind, Pretty, TargetBase, TargetExpr, VarSet};
use lang::{GoKind, Type};

use crate::emit::SCRATCH;
use crate::lower::{Lower, Str};
use crate::target::{ContextVar, in_set};

/// A conversion of a number to digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Radix {
    pub base: i32,
    pub signed: bool,
    pub upper: bool,
    pub prefix: bool,
}

pub const DEC: Radix = Radix {
    base: 10,
    signed: true,
    upper: false,
    prefix: false,
};
pub const HEX: Radix = Radix {
    base: 16,
    signed: false,
    upper: false,
    prefix: true,
};

/// The width and flags of a conversion (`%-8s`, `%05d`); width 0 pads nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pad {
    width: u32,
    left: bool,
    zero: bool,
}

enum Piece {
    Text(String),
    Num(Radix, Pad),
    Str(Pad),
    Char(Pad),
}

fn pieces(fmt: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let mut pad = Pad::default();
        let mut spec = String::from("%");
        let refuse = |spec: &str| {
            format!(
                "'{spec}' cannot be formatted in a kernel probe (widths and the '-' and '0' flags can); use printf, which formats in user space"
            )
        };
        let conv = loop {
            let Some(c) = chars.next() else {
                return Err("format ends in the middle of a '%' directive".into());
            };
            spec.push(c);
            match c {
                '-' if pad.width == 0 => pad.left = true,
                '0' if pad.width == 0 => pad.zero = true,
                '1'..='9' | '0' => {
                    pad.width = pad.width * 10 + (c as u32 - '0' as u32);
                    if pad.width >= MAX_STRING {
                        return Err(format!(
                            "'{spec}': a width of {} or more does not fit a string ({} bytes)",
                            MAX_STRING,
                            MAX_STRING - 1
                        ));
                    }
                }
                c if c.is_ascii_alphabetic() || c == '%' => break c,
                // A precision, another flag or a length: read up to the conversion,
                // so the error shows the whole directive.
                _ => {
                    for c in chars.by_ref() {
                        spec.push(c);
                        if c.is_ascii_alphabetic() || c == '%' {
                            break;
                        }
                    }
                    return Err(refuse(&spec));
                }
            }
        };
        if conv == '%' && spec == "%%" {
            text.push('%');
            continue;
        }
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        out.push(match conv {
            'd' | 'i' => Piece::Num(DEC, pad),
            'u' => Piece::Num(
                Radix {
                    signed: false,
                    ..DEC
                },
                pad,
            ),
            'x' => Piece::Num(
                Radix {
                    prefix: false,
                    ..HEX
                },
                pad,
            ),
            'X' => Piece::Num(
                Radix {
                    prefix: false,
                    upper: true,
                    ..HEX
                },
                pad,
            ),
            'p' if !pad.zero => Piece::Num(HEX, pad),
            'o' => Piece::Num(
                Radix {
                    base: 8,
                    signed: false,
                    upper: false,
                    prefix: false,
                },
                pad,
            ),
            's' if !pad.zero => Piece::Str(pad),
            'c' if !pad.zero => Piece::Char(pad),
            _ => return Err(refuse(&spec)),
        });
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

impl Lower<'_, '_> {
    /// A fresh empty string slot.
    fn builder(&mut self) -> u32 {
        let at = self.em.alloc(MAX_STRING);
        self.em.store_imm(at, Size::DW, 0);
        at
    }

    fn append_text(&mut self, dst: u32, text: &str) {
        let t = self.em.alloc(MAX_STRING);
        self.em.const_str(t, text.as_bytes());
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
        let mut marks: Vec<u8> = Vec::new();
        if radix.prefix {
            marks.extend(b"x0");
        }
        for m in marks {
            self.em.e(Insn::alu64(AluOp::Sub, Reg::R8, 1));
            self.em.e(Insn::mov64(Reg::R3, SCRATCH));
            self.em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R8));
            self.em.e(Insn::st(Size::B, Reg::R3, o, i32::from(m)));
        }
        if radix.signed {
            let pos = self.em.a.label();
            self.em.a.jmp(Cond::Eq, Reg::R5, 0, pos);
            self.em.e(Insn::alu64(AluOp::Sub, Reg::R8, 1));
            self.em.e(Insn::mov64(Reg::R3, SCRATCH));
            self.em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R8));
            self.em.e(Insn::st(Size::B, Reg::R3, o, i32::from(b'-')));
            self.em.a.bind(pos);
        }
        // R8 = &buf[index]
        self.em.e(Insn::alu64(AluOp::And, Reg::R8, 31));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R8, SCRATCH));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R8, i32::from(o)));
        self.append_r8(dst);
    }

    /// `sprintf(fmt, args…)` and `sprint(x)` as a string.
    pub fn sprintf(&mut self, e: &Expr, fmt: &str, args: &[Expr]) -> Str {
        let out = self.builder();
        let ps = match pieces(fmt) {
            Ok(p) => p,
            Err(msg) => {
                self.em.error(e.span, msg);
                return Str::Scratch(out);
            }
        };
        let mut args = args.iter();
        for p in ps {
            match p {
                Piece::Text(t) => self.append_text(out, &t),
                Piece::Num(r, pad) => {
                    if let Some(a) = args.next() {
                        self.long(a);
                        if pad.width == 0 {
                            self.append_num(out, r);
                        } else {
                            self.padded_num(out, r, pad);
                        }
                    }
                }
                Piece::Char(pad) => {
                    if let Some(a) = args.next() {
                        self.long(a);
                        let t = self.em.alloc(8);
                        self.em.store_imm(t, Size::DW, 0);
                        let o = self.em.off(t);
                        self.em.e(Insn::stx(Size::B, SCRATCH, o, Reg::R0));
                        self.padded(out, Str::Scratch(t), pad);
                    }
                }
                Piece::Str(pad) => {
                    if let Some(a) = args.next() {
                        let s = self.string(a);
                        self.padded(out, s, pad);
                    }
                }
            }
        }
        Str::Scratch(out)
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
        let run = self.em.alloc(MAX_STRING);
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
        self.em.e(Insn::mov64(Reg::R2, MAX_STRING as i32));
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

    /// `$x$`, `$x$$`, `$$vars` and friends as a string.
    pub fn pretty(&mut self, e: &Expr, t: &TargetExpr) -> Str {
        let out = self.builder();
        let Some(addr) = self.site.addr else {
            self.em
                .error(e.span, "context variables need a process probe");
            return Str::Scratch(out);
        };
        match &t.base {
            TargetBase::Set(set) => {
                let vars: Vec<ContextVar> = match self.env.target.variables(addr) {
                    Ok(v) => v.into_iter().filter(|v| in_set(v, *set)).collect(),
                    Err(err) => {
                        self.em.error(e.span, err.to_string());
                        return Str::Scratch(out);
                    }
                };
                let deep = t.pretty != Pretty::None;
                for (i, v) in vars.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " " };
                    self.append_text(out, &format!("{sep}{}=", v.name));
                    let one = single(e, &v.name, *set);
                    self.pretty_value(&one, &v.ty, out, deep, true);
                }
            }
            _ => {
                let ty = match self.env.info.go_types.get(&e.id) {
                    Some(ty) => ty.clone(),
                    None => {
                        self.em.error(e.span, "unknown type");
                        return Str::Scratch(out);
                    }
                };
                let plain = Expr {
                    kind: ExprKind::Target(Box::new(TargetExpr {
                        base: t.base.clone(),
                        path: t.path.clone(),
                        pretty: Pretty::None,
                    })),
                    ..e.clone()
                };
                self.pretty_value(&plain, &ty, out, t.pretty == Pretty::Deep, false);
            }
        }
        Str::Scratch(out)
    }

    /// Appends one value: numbers (in hex when `hex`, as stap's `$$vars`), strings
    /// quoted, structs as `{.f=v, …}` one level deep (nested with `deep`).
    fn pretty_value(&mut self, x: &Expr, ty: &lang::GoType, out: u32, deep: bool, hex: bool) {
        match ty.kind {
            GoKind::String => {
                self.append_text(out, "\"");
                let s = self.string_of_target(x);
                self.append(out, s);
                self.append_text(out, "\"");
            }
            GoKind::Pointer if !hex && self.pointee_fields(ty).is_some() => {
                let fields = self.pointee_fields(ty).unwrap_or_default();
                self.fields(x, ty, &fields, out, deep, hex);
            }
            GoKind::Struct | GoKind::Slice | GoKind::Interface | GoKind::Array { .. } => {
                let fields = match self.env.target.dwarf() {
                    Some(d) => d
                        .members(gobin::dwarf::TypeRef(ty.handle))
                        .map(|m| m.into_iter().map(|m| m.name).collect::<Vec<_>>())
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                if fields.is_empty() || matches!(ty.kind, GoKind::Array { .. }) {
                    self.append_text(out, "{...}");
                    return;
                }
                self.fields(x, ty, &fields, out, deep, hex);
            }
            GoKind::Float | GoKind::Complex => self.append_text(out, "?"),
            _ => {
                self.long(x);
                self.append_num(out, if hex { HEX } else { DEC });
            }
        }
    }

    /// The field names of the struct a pointer points to, if it does.
    fn pointee_fields(&self, ty: &lang::GoType) -> Option<Vec<String>> {
        let d = self.env.target.dwarf()?;
        let info = d.type_info(gobin::dwarf::TypeRef(ty.handle)).ok()?;
        let gobin::dwarf::TypeKind::Pointer { target: Some(t) } = info.kind else {
            return None;
        };
        let members = d.members(t).ok()?;
        (!members.is_empty()).then(|| members.into_iter().map(|m| m.name).collect())
    }

    /// Appends `{.f=v, …}` for the fields of `x`.
    fn fields(
        &mut self,
        x: &Expr,
        ty: &lang::GoType,
        fields: &[String],
        out: u32,
        deep: bool,
        hex: bool,
    ) {
        self.append_text(out, "{");
        for (i, f) in fields.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            self.append_text(out, &format!("{sep}.{f}="));
            let Ok(m) = self.env.target.member_access(ty, f) else {
                self.append_text(out, "?");
                continue;
            };
            let inner = member_expr(x, f);
            match m.ty.kind {
                GoKind::Struct | GoKind::Slice | GoKind::Interface | GoKind::Array { .. }
                    if !deep =>
                {
                    self.append_text(out, "{...}")
                }
                GoKind::Float | GoKind::Complex => self.append_text(out, "?"),
                _ => self.pretty_value(&inner, &m.ty, out, deep, hex),
            }
        }
        self.append_text(out, "}");
    }

    fn string_of_target(&mut self, x: &Expr) -> Str {
        match &x.kind {
            ExprKind::Target(t) => self.target_string(x, t),
            _ => self.empty_str(),
        }
    }
}

/// `$name` (or `$return`) as an expression, for one variable of a set.
fn single(e: &Expr, name: &str, _set: VarSet) -> Expr {
    Expr {
        kind: ExprKind::Target(Box::new(TargetExpr {
            base: TargetBase::Var(lang::ast::Ident {
                name: name.to_string(),
                span: e.span,
            }),
            path: Vec::new(),
            pretty: Pretty::None,
        })),
        ..e.clone()
    }
}

/// `x->field`.
fn member_expr(x: &Expr, field: &str) -> Expr {
    let mut out = x.clone();
    if let ExprKind::Target(t) = &mut out.kind {
        t.path.push(lang::ast::PathElem::Field(lang::ast::Ident {
            name: field.to_string(),
            span: x.span,
        }));
    }
    out
}
