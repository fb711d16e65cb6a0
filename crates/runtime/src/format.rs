//! The writing half of SystemTap's `printf`/`sprintf`: a format parsed once by
//! [`lang::format::Format::parse`] (the one grammar, shared with the checker and the
//! kernel's `sprintf`) is applied to arguments here, per event, following the stap
//! runtime's formatting routines (`number`, `_stp_vsprint_char`,
//! `_stp_vsprint_memory`, `_stp_vsprint_binary` in stap's `runtime/vsprintf.c`, as
//! called by the translator's compiled printf). Every argument is a 64-bit integer or a
//! byte string; there is no C integer promotion, so `%x` of `-1` is `ffffffffffffffff`
//! and `%u` of `-1` is `18446744073709551615`.
//!
//! Points where stap differs from C, kept on purpose because scripts written for stap
//! expect them (the grammar's own points are in [`lang::format`]):
//! - `%p` is `%#x` (`0x1234`, not zero-padded), as stap does since 1.3;
//! - `%#s` does not escape anything; `%#c` escapes like C (`\n`, `\000`);
//! - a `0` flag on `%s`, `%m`, `%M` appends a NUL byte after the field;
//! - a negative `*` width is treated as 0 (not as left-justification);
//! - `%.0s` prints nothing and `%.0d` of 0 prints `0`;
//! - `%b` writes the value's raw little-endian bytes (1, 2, 4 or 8 of them).
//!
//! `%m` and `%M` read memory at an address in stap. Here the kernel side reads the
//! bytes ([`Conversion::memory_len`] says how many) and passes them as an
//! [`Arg::Str`].

use lang::format::{ArgKind, Conv, Conversion, Count, Flag, FloatStyle, Format, MAX_FIELD, Piece};
use lang::limits::CUT_MARK;
use thiserror::Error;

/// Most bytes one `printf` prints: stap reserves at most its print buffer
/// (`STP_BUFFER_SIZE`) per call and cuts the rest.
pub const MAX_PRINTF_LEN: usize = 8192;

/// Most bytes a `sprintf` result holds: stap's `MAXSTRINGLEN` (512) less
/// the terminating NUL.
pub const MAX_SPRINTF_LEN: usize = 511;

/// One argument value at formatting time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    Long(i64),
    /// String bytes (a NUL ends the string, as in stap) or dumped memory.
    Str(&'a [u8]),
    /// A string that reached the string limit (`lang::limits`): printed whole, it is
    /// followed by [`CUT_MARK`], since it may have been cut.
    Cut(&'a [u8]),
}

/// What a write cut: strings printed with the mark, and whether the line itself was
/// cut at its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cuts {
    pub strings: u64,
    pub lines: u64,
    /// Parts of pretty-printed Go values a limit left out.
    pub values: u64,
}

impl Cuts {
    pub fn add(&mut self, other: Cuts) {
        self.strings += other.strings;
        self.lines += other.lines;
        self.values += other.values;
    }
}

/// Arguments that do not fit a format: a bug in the caller or a corrupt
/// event, since the type checker has already checked the script.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArgError {
    #[error("format takes {expected} arguments, got {got}")]
    Count { expected: usize, got: usize },
    #[error("format argument {index} should be {expected:?}")]
    Kind { index: usize, expected: ArgKind },
}

/// Appends the formatted text to `out` and says how many strings it marked as cut.
/// Allocates nothing but the growth of `out`.
pub fn write(format: &Format, out: &mut Vec<u8>, args: &[Arg<'_>]) -> Result<u64, ArgError> {
    let mut marked = 0;
    let kinds = format.arg_kinds();
    if args.len() != kinds.len() {
        return Err(ArgError::Count {
            expected: kinds.len(),
            got: args.len(),
        });
    }
    let mut next = 0;
    for piece in format.pieces() {
        let c = match piece {
            Piece::Literal(r) => {
                out.extend_from_slice(format.literal(r));
                continue;
            }
            Piece::Conv(c) => c,
        };
        let width = field(c.width, args, &mut next)?;
        let precision = field(c.precision, args, &mut next)?;
        let index = next;
        next += 1;
        match c.conv {
            Conv::Str | Conv::Memory | Conv::MemoryHex => {
                let (bytes, cut) = match args[index] {
                    Arg::Str(b) => (b, false),
                    Arg::Cut(b) => (b, true),
                    Arg::Long(_) => {
                        return Err(ArgError::Kind {
                            index,
                            expected: c.value_kind(),
                        });
                    }
                };
                if write_memory(out, bytes, width, precision, c, cut) {
                    marked += 1;
                }
            }
            _ => {
                let Arg::Long(v) = args[index] else {
                    return Err(ArgError::Kind {
                        index,
                        expected: ArgKind::Long,
                    });
                };
                write_long(out, v, width, precision, c);
            }
        }
    }
    Ok(marked)
}

/// Like [`write`], for a printed line: at most `max` bytes of this call's output (the
/// `printf` limit of `lang::limits`); a longer one is cut there, followed by
/// [`CUT_MARK`], and keeps the newline it ended with, so lines do not run together.
pub fn write_line(
    format: &Format,
    out: &mut Vec<u8>,
    args: &[Arg<'_>],
    max: usize,
) -> Result<Cuts, ArgError> {
    let start = out.len();
    let strings = write(format, out, args)?;
    let mut cuts = Cuts {
        strings,
        lines: 0,
        values: 0,
    };
    if out.len() > start.saturating_add(max) {
        let newline = out.last() == Some(&b'\n');
        out.truncate(start + max);
        out.extend_from_slice(CUT_MARK.as_bytes());
        if newline {
            out.push(b'\n');
        }
        cuts.lines = 1;
    }
    Ok(cuts)
}

/// Like [`write`], for a `sprintf` value: at most `max` bytes (stap's
/// [`MAX_SPRINTF_LEN`] before the value is cut to the string limit), no marks.
pub fn write_value(
    format: &Format,
    out: &mut Vec<u8>,
    args: &[Arg<'_>],
    max: usize,
) -> Result<(), ArgError> {
    let start = out.len();
    write(format, out, args)?;
    out.truncate(start.saturating_add(max));
    Ok(())
}

/// Convenience for tests and cold paths: the formatted text as a new buffer.
pub fn to_vec(format: &Format, args: &[Arg<'_>]) -> Result<Vec<u8>, ArgError> {
    let mut out = Vec::new();
    write(format, &mut out, args)?;
    Ok(out)
}

/// The argument for a string value: [`Arg::Cut`] when it reached the string limit
/// (`max_bytes`, the most a string holds).
pub fn string_arg(s: &[u8], max_bytes: usize) -> Arg<'_> {
    if s.len() >= max_bytes {
        Arg::Cut(s)
    } else {
        Arg::Str(s)
    }
}

/// Resolves a width or precision to stap's `int` convention: -1 when
/// unspecified, else clamped to `0..=MAX_FIELD`.
fn field(count: Count, args: &[Arg<'_>], next: &mut usize) -> Result<isize, ArgError> {
    Ok(match count {
        Count::Unspecified => -1,
        Count::Static(n) => n.min(MAX_FIELD) as isize,
        Count::Dynamic => {
            let index = *next;
            *next += 1;
            match args[index] {
                Arg::Long(v) => v.clamp(0, MAX_FIELD as i64) as isize,
                Arg::Str(_) | Arg::Cut(_) => {
                    return Err(ArgError::Kind {
                        index,
                        expected: ArgKind::Long,
                    });
                }
            }
        }
    })
}

fn write_long(out: &mut Vec<u8>, v: i64, width: isize, precision: isize, c: &Conversion) {
    let num = NumberStyle {
        flag: c.flag,
        signed: false,
        upper: false,
        alt: c.flag == Flag::Alt,
    };
    match c.conv {
        Conv::Signed => number(
            out,
            v as u64,
            10,
            width,
            precision,
            NumberStyle {
                signed: true,
                ..num
            },
        ),
        Conv::Unsigned => number(out, v as u64, 10, width, precision, num),
        Conv::Octal => number(out, v as u64, 8, width, precision, num),
        Conv::Hex => number(out, v as u64, 16, width, precision, num),
        Conv::HexUpper => number(
            out,
            v as u64,
            16,
            width,
            precision,
            NumberStyle { upper: true, ..num },
        ),
        Conv::Pointer => number(
            out,
            v as u64,
            16,
            width,
            precision,
            NumberStyle { alt: true, ..num },
        ),
        Conv::Char => write_char(out, v as u8, width, c.flag),
        Conv::Binary => write_binary(out, v, width, precision, c.flag),
        Conv::Float { style, upper } => write_float(
            out,
            f64::from_bits(v as u64),
            width,
            precision,
            c.flag,
            style,
            upper,
        ),
        Conv::Str | Conv::Memory | Conv::MemoryHex => {}
    }
}

#[derive(Clone, Copy)]
struct NumberStyle {
    flag: Flag,
    signed: bool,
    upper: bool,
    alt: bool,
}

fn pad(out: &mut Vec<u8>, byte: u8, n: isize) {
    if n > 0 {
        out.resize(out.len() + n as usize, byte);
    }
}

/// Stap's `number()`: sign, `0x`/`0` prefix, zero or space padding to the
/// width, at least `precision` digits.
fn number(
    out: &mut Vec<u8>,
    mut num: u64,
    base: u64,
    width: isize,
    precision: isize,
    s: NumberStyle,
) {
    let left = s.flag == Flag::Left;
    let zero_pad = s.flag == Flag::ZeroPad;
    let mut size = width;
    let mut sign = None;
    if s.signed {
        if (num as i64) < 0 {
            sign = Some(b'-');
            num = (num as i64).wrapping_neg() as u64;
            size -= 1;
        } else if s.flag == Flag::Plus {
            sign = Some(b'+');
            size -= 1;
        } else if s.flag == Flag::Space {
            sign = Some(b' ');
            size -= 1;
        }
    }
    let prefix: &[u8] = match (s.alt, base, s.upper) {
        (true, 16, false) => b"0x",
        (true, 16, true) => b"0X",
        (true, 8, _) => b"0",
        _ => b"",
    };
    size -= prefix.len() as isize;
    let digits: &[u8; 16] = if s.upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut tmp = [0u8; 64];
    let mut n = 0;
    loop {
        tmp[n] = digits[(num % base) as usize];
        n += 1;
        num /= base;
        if num == 0 {
            break;
        }
    }
    let precision = precision.max(n as isize);
    size -= precision;
    if !zero_pad && !left {
        pad(out, b' ', size);
        size = 0;
    }
    if let Some(sign) = sign {
        out.push(sign);
    }
    out.extend_from_slice(prefix);
    if !left {
        pad(out, b'0', size);
        size = 0;
    }
    pad(out, b'0', precision - n as isize);
    out.extend(tmp[..n].iter().rev());
    pad(out, b' ', size);
}

/// `%f`, `%e`, `%g` as C's `printf` writes a double (precision 6 unless given),
/// for the floating-point values gotap reads from Go programs.
fn write_float(
    out: &mut Vec<u8>,
    v: f64,
    width: isize,
    precision: isize,
    flag: Flag,
    style: FloatStyle,
    upper: bool,
) {
    let prec = if precision < 0 { 6 } else { precision as usize };
    let alt = flag == Flag::Alt;
    let sign: &[u8] = if v.is_sign_negative() {
        b"-"
    } else if flag == Flag::Plus {
        b"+"
    } else if flag == Flag::Space {
        b" "
    } else {
        b""
    };
    let a = v.abs();
    let body = if !a.is_finite() {
        if a.is_nan() { "nan" } else { "inf" }.to_string()
    } else {
        match style {
            FloatStyle::Fixed => fixed(a, prec, alt),
            FloatStyle::Exp => exponent(a, prec, alt),
            FloatStyle::General => general(a, prec, alt),
        }
    };
    let body = if upper {
        body.to_ascii_uppercase()
    } else {
        body
    };
    let n = (sign.len() + body.len()) as isize;
    let zero = flag == Flag::ZeroPad && a.is_finite();
    if flag != Flag::Left && !zero {
        pad(out, b' ', width - n);
    }
    out.extend_from_slice(sign);
    if zero {
        pad(out, b'0', width - n);
    }
    out.extend_from_slice(body.as_bytes());
    if flag == Flag::Left {
        pad(out, b' ', width - n);
    }
}

/// `%f` of a non-negative finite value.
fn fixed(a: f64, prec: usize, alt: bool) -> String {
    let mut s = format!("{a:.prec$}");
    if alt && prec == 0 {
        s.push('.');
    }
    s
}

/// `%e` of a non-negative finite value: `1.500000e+02`.
fn exponent(a: f64, prec: usize, alt: bool) -> String {
    let s = format!("{a:.prec$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let dot = if alt && prec == 0 { "." } else { "" };
    format!(
        "{mant}{dot}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    )
}

/// `%g` of a non-negative finite value: `%e` if the exponent is below -4 or at
/// least the precision, else `%f`, trailing zeros removed unless `#`.
fn general(a: f64, prec: usize, alt: bool) -> String {
    let p = prec.max(1);
    let e = exponent(a, p - 1, false);
    let x: i32 = e
        .split_once('e')
        .and_then(|(_, x)| x.parse().ok())
        .unwrap_or(0);
    let s = if x < -4 || x >= p as i32 {
        exponent(a, p - 1, alt)
    } else {
        fixed(a, (p as i32 - 1 - x) as usize, alt)
    };
    if alt {
        return s;
    }
    let (mant, tail) = match s.find('e') {
        Some(i) => s.split_at(i),
        None => (s.as_str(), ""),
    };
    let mant = if mant.contains('.') {
        mant.trim_end_matches('0').trim_end_matches('.')
    } else {
        mant
    };
    format!("{mant}{tail}")
}

/// Stap's `_stp_vsprint_char`: one byte, C-escaped under `#`.
fn write_char(out: &mut Vec<u8>, c: u8, width: isize, flag: Flag) {
    let escape = flag == Flag::Alt && (!(0x20..0x7f).contains(&c) || c == b'\'' || c == b'\\');
    let short = match c {
        0x07 => Some(b'a'),
        0x08 => Some(b'b'),
        0x0c => Some(b'f'),
        b'\n' => Some(b'n'),
        b'\r' => Some(b'r'),
        b'\t' => Some(b't'),
        0x0b => Some(b'v'),
        b'\'' => Some(b'\''),
        b'\\' => Some(b'\\'),
        _ => None,
    };
    let size = match (escape, short) {
        (false, _) => 1,
        (true, Some(_)) => 2,
        (true, None) => 4,
    };
    let left = flag == Flag::Left;
    if !left {
        pad(out, b' ', width - size);
    }
    if !escape {
        out.push(c);
    } else if let Some(e) = short {
        out.extend_from_slice(&[b'\\', e]);
    } else {
        out.extend_from_slice(&[
            b'\\',
            b'0' + (c >> 6),
            b'0' + ((c >> 3) & 7),
            b'0' + (c & 7),
        ]);
    }
    if left {
        pad(out, b' ', width - size);
    }
}

/// Stap's `_stp_vsprint_memory` for `%s`, `%m` and `%M`.
/// Writes `%s`, `%m` or `%M`; with `cut`, a string shown whole is followed by the
/// mark (which pads as one column). Returns whether it wrote the mark.
fn write_memory(
    out: &mut Vec<u8>,
    bytes: &[u8],
    width: isize,
    precision: isize,
    c: &Conversion,
    cut: bool,
) -> bool {
    let (conv, flag) = (c.conv, c.flag);
    let mut marked = false;
    let shown = match conv {
        Conv::Str => {
            let limit = if precision < 0 {
                MAX_FIELD
            } else {
                precision as usize
            };
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            marked = cut && end <= limit;
            &bytes[..end.min(limit)]
        }
        // The kernel side read `memory_len` bytes; print what arrived.
        _ => {
            let len = if precision > 0 { precision as usize } else { 1 };
            &bytes[..len.min(bytes.len())]
        }
    };
    let printed = if conv == Conv::MemoryHex {
        2 * shown.len()
    } else {
        shown.len() + usize::from(marked)
    } as isize;
    let left = flag == Flag::Left;
    if !left {
        pad(out, b' ', width - printed);
    }
    if conv == Conv::MemoryHex {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in shown {
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    } else {
        out.extend_from_slice(shown);
        if marked {
            out.extend_from_slice(CUT_MARK.as_bytes());
        }
    }
    if left {
        pad(out, b' ', width - printed);
    }
    if flag == Flag::ZeroPad {
        out.push(0);
    }
    marked
}

/// Stap's `_stp_vsprint_binary`: the value's low 1, 2, 4 or 8 bytes, in
/// the machine's (little-endian) order, NUL-padded to the width.
fn write_binary(out: &mut Vec<u8>, v: i64, width: isize, precision: isize, flag: Flag) {
    let valid = |p: isize| if matches!(p, 1 | 2 | 4 | 8) { p } else { -1 };
    let mut precision = valid(precision);
    let mut width = width;
    if width == -1 {
        if precision == -1 {
            precision = 8;
        }
        width = precision;
    } else if precision == -1 {
        precision = valid(width);
        if precision == -1 {
            precision = 8;
        }
    }
    let left = flag == Flag::Left;
    if !left {
        pad(out, 0, width - precision);
    }
    out.extend_from_slice(&v.to_le_bytes()[..precision as usize]);
    if left {
        pad(out, 0, width - precision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(f: &str, args: &[Arg<'_>]) -> String {
        let format = Format::parse(f.as_bytes()).expect("format parses");
        let out = to_vec(&format, args).expect("args fit");
        String::from_utf8(out).expect("utf-8")
    }

    fn longs(f: &str, vals: &[i64]) -> String {
        let args: Vec<Arg<'_>> = vals.iter().map(|&v| Arg::Long(v)).collect();
        fmt(f, &args)
    }

    // Expected lines below come from SystemTap's testsuite,
    // testsuite/systemtap.printf/int1.{stp,exp}: i=1, j=10,
    // k=9000000000000, m=-1, n=-1024.
    const INT1: [i64; 5] = [1, 10, 9000000000000, -1, -1024];

    #[test]
    fn signed_decimal_matches_stap_int1() {
        let f = |s: &str| longs(&format!("{s},{s},{s},{s},{s}"), &INT1);
        assert_eq!(f("%d"), "1,10,9000000000000,-1,-1024");
        assert_eq!(f("%2d"), " 1,10,9000000000000,-1,-1024");
        assert_eq!(
            f("%16d"),
            "               1,              10,   9000000000000,              -1,           -1024"
        );
        assert_eq!(
            f("%016d"),
            "0000000000000001,0000000000000010,0009000000000000,-000000000000001,-000000000001024"
        );
        assert_eq!(f("%ld"), "1,10,9000000000000,-1,-1024");
        assert_eq!(f("%#d"), "1,10,9000000000000,-1,-1024");
    }

    #[test]
    fn unsigned_decimal_is_twos_complement_64_bit() {
        let f = |s: &str| longs(&format!("{s},{s},{s},{s},{s}"), &INT1);
        assert_eq!(
            f("%u"),
            "1,10,9000000000000,18446744073709551615,18446744073709550592"
        );
        assert_eq!(
            f("%016u"),
            "0000000000000001,0000000000000010,0009000000000000,18446744073709551615,18446744073709550592"
        );
    }

    #[test]
    fn hex_matches_stap_int1() {
        let f = |s: &str| longs(&format!("{s},{s},{s},{s},{s}"), &INT1);
        assert_eq!(f("%x"), "1,a,82f79cd9000,ffffffffffffffff,fffffffffffffc00");
        assert_eq!(
            f("%2x"),
            " 1, a,82f79cd9000,ffffffffffffffff,fffffffffffffc00"
        );
        assert_eq!(
            f("%016X"),
            "0000000000000001,000000000000000A,0000082F79CD9000,FFFFFFFFFFFFFFFF,FFFFFFFFFFFFFC00"
        );
        assert_eq!(
            f("%#x"),
            "0x1,0xa,0x82f79cd9000,0xffffffffffffffff,0xfffffffffffffc00"
        );
    }

    #[test]
    fn octal_matches_stap_int1() {
        let f = |s: &str| longs(&format!("{s},{s},{s},{s},{s}"), &INT1);
        assert_eq!(
            f("%o"),
            "1,12,202757163310000,1777777777777777777777,1777777777777777776000"
        );
        assert_eq!(
            f("%#o"),
            "01,012,0202757163310000,01777777777777777777777,01777777777777777776000"
        );
    }

    // testsuite/systemtap.printf/ptr-1.3.{stp,exp}: %p is %#x since stap 1.3.
    #[test]
    fn pointer_is_alternate_hex() {
        assert_eq!(longs("%p", &[0]), "0x0");
        assert_eq!(longs("%p", &[0x12345678abcdef00]), "0x12345678abcdef00");
        assert_eq!(longs("%20pX", &[1]), "                 0x1X");
        assert_eq!(longs("%-20pX", &[0x12345678]), "0x12345678          X");
        assert_eq!(longs("%.20pX", &[1]), "0x00000000000000000001X");
        assert_eq!(longs("%20.8pX", &[1]), "          0x00000001X");
        assert_eq!(longs("%-20.8pX", &[0x12345678]), "0x12345678          X");
        assert_eq!(longs("%8p", &[0]), "     0x0");
        assert_eq!(longs("%8p", &[0x12345678]), "0x12345678");
        assert_eq!(longs("%-8pX", &[1]), "0x1     X");
    }

    // The examples of stap(1), section "printf".
    #[test]
    fn man_page_examples() {
        let a = b"alice";
        let p = 0x1234abcd;
        let out = fmt(
            "%c is %s; %x or %X or %p; %d or %u\n",
            &[
                Arg::Long(97),
                Arg::Str(a),
                Arg::Long(p),
                Arg::Long(p),
                Arg::Long(p),
                Arg::Long(-1),
                Arg::Long(-1),
            ],
        );
        assert_eq!(
            out,
            "a is alice; 1234abcd or 1234ABCD or 0x1234abcd; -1 or 18446744073709551615\n"
        );
        assert_eq!(longs("%#o %#x %#X\n", &[1, 2, 3]), "01 0x2 0X3\n");
        assert_eq!(longs("%#c %#c %#c\n", &[0, 9, 42]), "\\000 \\t *\n");
    }

    // testsuite/systemtap.printf/char2.{stp,exp}.
    #[test]
    fn alternate_char_escapes_like_c() {
        let plain: String = "abc-ABC 123!"
            .bytes()
            .map(|b| longs("%#c", &[i64::from(b)]))
            .collect();
        assert_eq!(plain, "abc-ABC 123!");
        let special: String = b"\x07\x08\x0c\n\r\t\x0b'\\"
            .iter()
            .map(|&b| longs("%#c", &[i64::from(b)]))
            .collect();
        assert_eq!(special, r"\a\b\f\n\r\t\v\'\\");
        assert_eq!(
            longs("%#c%#c%#c%#c%#c%#c", &[0, 0o33, 0o177, 0o222, 0o333, 0o377]),
            r"\000\033\177\222\333\377"
        );
    }

    #[test]
    fn char_takes_the_low_byte_and_pads() {
        assert_eq!(longs("%c", &[0x173]), "s");
        assert_eq!(longs("[%3c]", &[b'x'.into()]), "[  x]");
        assert_eq!(longs("[%-3c]", &[b'x'.into()]), "[x  ]");
        assert_eq!(longs("[%5c]", &[b'\n'.into()]), "[    \n]");
        assert_eq!(longs("[%#5c]", &[b'\n'.into()]), "[   \\n]");
    }

    #[test]
    fn strings_pad_and_truncate() {
        let s = |f: &str, v: &[u8]| fmt(f, &[Arg::Str(v)]);
        assert_eq!(s("<%s>", b"Foobar!"), "<Foobar!>");
        assert_eq!(s("<%10s>", b"abc"), "<       abc>");
        assert_eq!(s("<%-10s>", b"abc"), "<abc       >");
        assert_eq!(s("<%.2s>", b"abc"), "<ab>");
        assert_eq!(s("<%5.2s>", b"abc"), "<   ab>");
        assert_eq!(s("<%.0s>", b"abc"), "<>");
        assert_eq!(s("<%#s>", b"a\nb"), "<a\nb>");
        // A NUL ends a string, as C strings do in stap.
        assert_eq!(s("<%s>", b"ab\0cd"), "<ab>");
        // The 0 flag appends a NUL byte after the field.
        let f = Format::parse(b"%04s").expect("parses");
        assert_eq!(to_vec(&f, &[Arg::Str(b"ab")]).expect("fits"), b"  ab\0");
    }

    #[test]
    fn dynamic_width_and_precision_come_first() {
        let f = Format::parse(b"[%*.*s|%*d]").expect("parses");
        assert_eq!(
            f.arg_kinds(),
            [
                ArgKind::Long,
                ArgKind::Long,
                ArgKind::Str,
                ArgKind::Long,
                ArgKind::Long
            ]
        );
        let out = to_vec(
            &f,
            &[
                Arg::Long(6),
                Arg::Long(3),
                Arg::Str(b"abcdef"),
                Arg::Long(-4),
                Arg::Long(7),
            ],
        )
        .expect("fits");
        // A negative `*` width is clamped to 0 by stap's compiled printf.
        assert_eq!(out, b"[   abc|7]");
    }

    #[test]
    fn one_flag_only_like_stap() {
        // The second "flag" is read as part of the width or as the conversion.
        assert_eq!(longs("[%-05d]", &[3]), "[3    ]");
        assert_eq!(longs("[%+05d]", &[3]), "[   +3]");
        assert_eq!(longs("[%+d|%+d]", &[3, -3]), "[+3|-3]");
        assert_eq!(longs("[% d]", &[3]), "[ 3]");
        assert_eq!(longs("[%+u]", &[3]), "[3]");
    }

    #[test]
    fn precision_gives_minimum_digits_and_zero_flag_still_pads() {
        assert_eq!(longs("[%.3d]", &[7]), "[007]");
        assert_eq!(longs("[%6.3d]", &[-7]), "[  -007]");
        assert_eq!(longs("[%.0d]", &[0]), "[0]");
        assert_eq!(longs("[%-6.3x]", &[255]), "[0ff   ]");
    }

    // testsuite/systemtap.printf/bin1 and bin2: %1b writes one byte.
    #[test]
    fn binary_writes_raw_little_endian_bytes() {
        let bin = |f: &str, v: i64| {
            to_vec(
                &Format::parse(f.as_bytes()).expect("parses"),
                &[Arg::Long(v)],
            )
            .expect("fits")
        };
        assert_eq!(bin("%1b", 0x42), [0x42]);
        assert_eq!(bin("a=%1b ", 0x12), b"a=\x12 ");
        assert_eq!(bin("%2b", 0x0102), [2, 1]);
        assert_eq!(bin("%4b", 0x1234abcd), [0xcd, 0xab, 0x34, 0x12]);
        assert_eq!(
            bin("%b", -2),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(bin("%3b", 1).len(), 8);
        assert_eq!(bin("%4.2b", 0x0102), [0, 0, 2, 1]);
        assert_eq!(bin("%-4.2b", 0x0102), [2, 1, 0, 0]);
    }

    #[test]
    fn memory_dumps_take_bytes_read_by_the_kernel_side() {
        let f = Format::parse(b"[%.4M|%10.2M|%.2m|%M]").expect("parses");
        assert_eq!(
            f.arg_kinds(),
            [
                ArgKind::Memory,
                ArgKind::Memory,
                ArgKind::Memory,
                ArgKind::Memory
            ]
        );
        let lens: Vec<_> = f.conversions().map(Conversion::memory_len).collect();
        assert_eq!(lens, [Some(4), Some(2), Some(2), Some(1)]);
        let mem = [0xde, 0xad, 0xbe, 0xef];
        let out = to_vec(
            &f,
            &[
                Arg::Str(&mem),
                Arg::Str(&mem[..2]),
                Arg::Str(b"hi"),
                Arg::Str(&mem[..1]),
            ],
        )
        .expect("fits");
        assert_eq!(out, b"[deadbeef|      dead|hi|de]");
        let dynamic = Format::parse(b"%.*M").expect("parses");
        assert_eq!(dynamic.arg_kinds(), [ArgKind::Long, ArgKind::Memory]);
        assert_eq!(
            dynamic.conversions().next().map(Conversion::memory_len),
            Some(None)
        );
    }

    #[test]
    fn literals_and_percent_signs() {
        assert_eq!(longs("100%% sure", &[]), "100% sure");
        assert_eq!(longs("50%", &[]), "50%");
        assert_eq!(longs("%d%%", &[5]), "5%");
        assert!(Format::parse(b"plain").expect("parses").is_literal());
    }

    #[test]
    fn wrong_arguments_are_errors_not_panics() {
        let f = Format::parse(b"%d %s").expect("parses");
        assert_eq!(
            to_vec(&f, &[Arg::Long(1)]),
            Err(ArgError::Count {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            to_vec(&f, &[Arg::Long(1), Arg::Long(2)]),
            Err(ArgError::Kind {
                index: 1,
                expected: ArgKind::Str
            })
        );
    }

    #[test]
    fn huge_widths_are_clamped() {
        let f = Format::parse(b"%*d").expect("parses");
        let out = to_vec(&f, &[Arg::Long(i64::MAX), Arg::Long(1)]).expect("fits");
        assert_eq!(out.len(), MAX_FIELD);
    }

    #[test]
    fn sprintf_results_are_cut_like_stap_strings() {
        let f = Format::parse(b"%s%s").expect("parses");
        let long = [b'x'; 400];
        let mut out = b"kept".to_vec();
        write_value(
            &f,
            &mut out,
            &[Arg::Str(&long), Arg::Str(&long)],
            MAX_SPRINTF_LEN,
        )
        .expect("fits");
        assert_eq!(out.len(), 4 + MAX_SPRINTF_LEN);
        assert!(out.starts_with(b"kept"));
    }

    #[test]
    fn long_lines_are_cut_marked_and_keep_their_newline() {
        let f = Format::parse(b"%s%s\n").expect("parses");
        let long = [b'x'; 400];
        let mut out = Vec::new();
        let cuts =
            write_line(&f, &mut out, &[Arg::Str(&long), Arg::Str(&long)], 500).expect("fits");
        assert_eq!(
            cuts,
            Cuts {
                strings: 0,
                lines: 1,
                values: 0
            }
        );
        let mark = CUT_MARK.as_bytes();
        assert_eq!(out.len(), 500 + mark.len() + 1);
        assert!(out.ends_with(&[mark, b"\n"].concat()));
        let mut out = Vec::new();
        let short = write_line(&f, &mut out, &[Arg::Str(b"a"), Arg::Str(b"b")], 500);
        assert_eq!(short, Ok(Cuts::default()));
        assert_eq!(out, b"ab\n");
    }

    #[test]
    fn strings_at_the_limit_are_marked_when_shown_whole() {
        let s = [b'y'; 127];
        let mark = CUT_MARK;
        let t = |f: &str| {
            let mut out = Vec::new();
            let n = write(
                &Format::parse(f.as_bytes()).unwrap(),
                &mut out,
                &[string_arg(&s, 127)],
            )
            .unwrap();
            (String::from_utf8(out).unwrap(), n)
        };
        assert_eq!(t("[%s]"), (format!("[{}{mark}]", "y".repeat(127)), 1));
        assert_eq!(t("[%.3s]"), ("[yyy]".to_string(), 0));
        assert_eq!(t("[%130s]"), (format!("[  {}{mark}]", "y".repeat(127)), 1));
        assert_eq!(string_arg(b"short", 127), Arg::Str(b"short"));
    }

    #[test]
    fn print_forms_synthesise_formats() {
        let f = Format::for_print(&[ArgKind::Long, ArgKind::Str], Some(b"|%"), true);
        let out = to_vec(&f, &[Arg::Long(5), Arg::Str(b"alice")]).expect("fits");
        assert_eq!(out, b"5|%alice\n");
    }

    #[test]
    fn extreme_values() {
        assert_eq!(longs("%d", &[i64::MIN]), "-9223372036854775808");
        assert_eq!(longs("%x", &[i64::MIN]), "8000000000000000");
        assert_eq!(longs("%o", &[-1]), "1777777777777777777777");
    }
}
