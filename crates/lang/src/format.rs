//! The one grammar of `printf`/`sprintf` formats, SystemTap's
//! (`print_format::string_to_components` in stap's `staptree.cxx`): literal text and
//! conversions `%[flag][width][.precision][l]conv`. Parsed once here into a [`Format`]
//! whose pieces every later stage reads: the checker types the arguments from
//! [`Format::arg_kinds`] and refuses at its place what a back end cannot do
//! ([`Conversion::kernel_sprintf`]), `codegen` builds a kernel `sprintf` from the
//! pieces, and `runtime::format` only writes them (for `printf` records from the
//! kernel and for user-space probes alike).
//!
//! The grammar, as stap's:
//! - at most ONE flag of `0 + - space #`: `%-05d` is left-justified with width 5
//!   (the `0` starts the width), `%+05d` is `%+5d`, and `%0-5d` is an error;
//! - a width and a precision are digits or `*` (taken from the next argument, a long);
//! - one `l` may come before the conversion and means nothing (every script integer
//!   is 64-bit); `%lld`, `%hd`, `%zd` are errors, as in stap;
//! - conversions `d i u o x X p c s m M b`; `%p` is `%#x`; `%m`/`%M` dump memory at
//!   an address (a long), `%b` writes a value's raw bytes;
//! - and, beyond stap (which has no floating-point values), `f F e E g G` for a Go
//!   `float32`/`float64` read from the traced program, as C prints a `double`
//!   (precision 6 unless written);
//! - `%%` and a lone `%` at the very end are a literal `%`.
//!
//! One deviation: stap silently drops a format ending in `%l` or `%.`; here that is an
//! incomplete conversion, reported at its `%`.

use std::ops::Range;

/// Widths, precisions and memory dumps are clamped to this, like stap clamps them
/// to its print buffer (`STP_BUFFER_SIZE`), so a huge `*` width cannot make a
/// printer allocate without bound.
pub const MAX_FIELD: usize = 8192;

/// The most bytes one `%m`/`%M` dumps in a kernel probe (the bytes travel in the
/// record).
pub const MAX_KERNEL_DUMP: usize = 256;

/// What a script passes for one slot of a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A 64-bit integer: numbers, `%c`, `%p`, `%b`, and `*` widths/precisions.
    Long,
    /// A string, for `%s`.
    Str,
    /// An address (a long in the script) whose bytes `%m`/`%M` dump; the kernel side
    /// reads them and the printer gets them as bytes.
    Memory,
    /// A floating-point value, for `%f`, `%e`, `%g` (the bits of a `float64`).
    Float,
}

impl ArgKind {
    /// The script type of the argument.
    pub fn script_type(self) -> crate::Type {
        match self {
            ArgKind::Str => crate::Type::String,
            ArgKind::Float => crate::Type::Float,
            ArgKind::Long | ArgKind::Memory => crate::Type::Long,
        }
    }
}

/// The flag of a conversion. Stap accepts at most one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flag {
    #[default]
    None,
    /// `-`: left-justify.
    Left,
    /// `0`: pad numbers with zeros; append a NUL to `%s`/`%m`/`%M`.
    ZeroPad,
    /// `+`: a plus sign on non-negative `%d`/`%i`.
    Plus,
    /// ` `: a space on non-negative `%d`/`%i`.
    Space,
    /// `#`: `0x`/`0X`/`0` prefixes, `%#c` escapes.
    Alt,
}

/// A width or precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Unspecified,
    Static(usize),
    /// `*`: taken from the next argument (a long).
    Dynamic,
}

/// The conversion character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// `%d`, `%i`
    Signed,
    /// `%u`
    Unsigned,
    /// `%o`
    Octal,
    /// `%x`
    Hex,
    /// `%X`
    HexUpper,
    /// `%p`, the same as `%#x`
    Pointer,
    /// `%c`: the low byte of a long
    Char,
    /// `%s`
    Str,
    /// `%m`: raw memory bytes
    Memory,
    /// `%M`: memory bytes in lower-case hex
    MemoryHex,
    /// `%b`: the value's raw bytes
    Binary,
    /// `%f`/`%F`, `%e`/`%E`, `%g`/`%G`: a floating-point value as C prints a double.
    Float { style: FloatStyle, upper: bool },
}

/// How `%f`, `%e` and `%g` write a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatStyle {
    /// `%f`: fixed point.
    Fixed,
    /// `%e`: one digit, a fraction and an exponent.
    Exp,
    /// `%g`: `%e` or `%f`, whichever is shorter for the precision, trailing zeros cut.
    General,
}

/// One `%...` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub conv: Conv,
    pub flag: Flag,
    pub width: Count,
    pub precision: Count,
    /// The bytes of the directive in the format string, from its `%`.
    pub at: Range<usize>,
}

impl Conversion {
    /// The kind of the value argument (after any `*` arguments).
    pub fn value_kind(&self) -> ArgKind {
        match self.conv {
            Conv::Str => ArgKind::Str,
            Conv::Memory | Conv::MemoryHex => ArgKind::Memory,
            Conv::Float { .. } => ArgKind::Float,
            _ => ArgKind::Long,
        }
    }

    /// For `%m`/`%M`: how many bytes to dump when the precision is not `*` (stap: the
    /// precision if positive, else 1). `None` means the count is the dynamic
    /// precision argument.
    pub fn memory_len(&self) -> Option<usize> {
        match self.precision {
            Count::Dynamic => None,
            Count::Static(p) if p > 0 => Some(p.min(MAX_FIELD)),
            _ => Some(1),
        }
    }

    /// Why `printf` in a kernel probe cannot send this conversion's value, if it
    /// cannot: a memory dump travels in the record, so its length must be written and
    /// at most [`MAX_KERNEL_DUMP`].
    pub fn kernel_printf(&self) -> Result<(), &'static str> {
        match (self.value_kind(), self.memory_len()) {
            (ArgKind::Memory, None) => Err("a '*' length of a memory dump"),
            (ArgKind::Memory, Some(n)) if n > MAX_KERNEL_DUMP => {
                Err("a memory dump longer than 256 bytes")
            }
            _ => Ok(()),
        }
    }

    /// Why `sprintf` in a kernel probe cannot build this conversion, if it cannot.
    /// The kernel makes numbers and strings itself, with one flag of `- 0 + space #`
    /// and a written width; it leaves out precisions, `*`, `%b`, `%m`, `%M` and the
    /// `0` flag on text, which `printf` (formatted in user space) does have.
    pub fn kernel_sprintf(&self) -> Result<(), &'static str> {
        if self.width == Count::Dynamic || self.precision == Count::Dynamic {
            return Err("a '*' width or precision");
        }
        if self.precision != Count::Unspecified {
            return Err("a precision");
        }
        if matches!(self.width, Count::Static(w) if w >= KERNEL_SPRINTF_WIDTH) {
            return Err("a width that does not fit a string");
        }
        match (self.conv, self.flag) {
            (Conv::Binary | Conv::Memory | Conv::MemoryHex | Conv::Float { .. }, _) => {
                Err("this conversion")
            }
            (Conv::Char | Conv::Str, Flag::ZeroPad | Flag::Alt) => Err("this flag on text"),
            (Conv::Pointer, Flag::ZeroPad) => Err("the '0' flag on '%p'"),
            _ => Ok(()),
        }
    }
}

/// Widths of a kernel `sprintf` conversion stay below this: the piece must fit a
/// string slot.
pub const KERNEL_SPRINTF_WIDTH: usize = 128;

/// A format string that does not parse, with the byte offset to point at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Stap: "invalid or missing conversion specifier"; `at` is the bad character.
    #[error("invalid or missing conversion specifier '{text}'")]
    InvalidConversion { at: usize, text: String },
    /// Stap: "trailing incomplete print format conversion"; `at` is the `%`.
    #[error("trailing incomplete print format conversion")]
    Incomplete { at: usize },
}

impl FormatError {
    /// Byte offset into the format string.
    pub fn at(&self) -> usize {
        match *self {
            FormatError::InvalidConversion { at, .. } | FormatError::Incomplete { at } => at,
        }
    }
}

/// One piece of a format: literal bytes or a conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A range of [`Format::literals`].
    Literal(Range<usize>),
    Conv(Conversion),
}

/// A parsed format: parse once, write per event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Format {
    /// All literal text, `%%` already reduced to `%`.
    literals: Vec<u8>,
    pieces: Vec<Piece>,
    kinds: Vec<ArgKind>,
}

impl Format {
    /// Parses a format string (the bytes of the script's string literal, escapes
    /// already decoded).
    pub fn parse(fmt: &[u8]) -> Result<Format, FormatError> {
        let mut f = Format::default();
        let mut lit_start = 0;
        let mut i = 0;
        while i < fmt.len() {
            if fmt[i] != b'%' {
                f.literals.push(fmt[i]);
                i += 1;
                continue;
            }
            // A trailing lone '%' is a literal, like "%%".
            if i + 1 == fmt.len() || fmt[i + 1] == b'%' {
                f.literals.push(b'%');
                i += 2;
                continue;
            }
            f.flush_literal(&mut lit_start);
            let c = parse_conversion(fmt, i)?;
            i = c.at.end;
            f.push_conversion(c);
        }
        f.flush_literal(&mut lit_start);
        Ok(f)
    }

    /// The format `print`, `println` (and stap's `printd`, `printdln`) use for
    /// arguments of these kinds: `%d` or `%s` each, joined by `delim` (taken
    /// literally), plus a newline if asked.
    pub fn for_print(kinds: &[ArgKind], delim: Option<&[u8]>, newline: bool) -> Format {
        let mut f = Format::default();
        let mut lit_start = 0;
        for (i, kind) in kinds.iter().enumerate() {
            if i > 0
                && let Some(d) = delim
            {
                f.literals.extend_from_slice(d);
                f.flush_literal(&mut lit_start);
            }
            let conv = match kind {
                ArgKind::Str | ArgKind::Memory => Conv::Str,
                ArgKind::Long => Conv::Signed,
                ArgKind::Float => Conv::Float {
                    style: FloatStyle::General,
                    upper: false,
                },
            };
            f.push_conversion(Conversion {
                conv,
                flag: Flag::None,
                width: Count::Unspecified,
                precision: Count::Unspecified,
                at: 0..0,
            });
        }
        if newline {
            f.literals.push(b'\n');
        }
        f.flush_literal(&mut lit_start);
        f
    }

    fn flush_literal(&mut self, lit_start: &mut usize) {
        if *lit_start < self.literals.len() {
            self.pieces
                .push(Piece::Literal(*lit_start..self.literals.len()));
            *lit_start = self.literals.len();
        }
    }

    fn push_conversion(&mut self, c: Conversion) {
        if c.width == Count::Dynamic {
            self.kinds.push(ArgKind::Long);
        }
        if c.precision == Count::Dynamic {
            self.kinds.push(ArgKind::Long);
        }
        self.kinds.push(c.value_kind());
        self.pieces.push(Piece::Conv(c));
    }

    /// The kinds of the arguments the format consumes, in order: for each
    /// conversion a long for a `*` width, a long for a `*` precision, then the value.
    pub fn arg_kinds(&self) -> &[ArgKind] {
        &self.kinds
    }

    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The bytes of a [`Piece::Literal`].
    pub fn literal(&self, r: &Range<usize>) -> &[u8] {
        &self.literals[r.clone()]
    }

    /// The conversions, in order.
    pub fn conversions(&self) -> impl Iterator<Item = &Conversion> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Conv(c) => Some(c),
            Piece::Literal(_) => None,
        })
    }

    /// True if the format has no conversions (plain text).
    pub fn is_literal(&self) -> bool {
        self.kinds.is_empty()
    }
}

/// Parses the conversion whose `%` is at `start`.
fn parse_conversion(fmt: &[u8], start: usize) -> Result<Conversion, FormatError> {
    let incomplete = FormatError::Incomplete { at: start };
    let at = |i: usize| fmt.get(i).copied().ok_or(incomplete.clone());
    let mut i = start + 1;
    let flag = match at(i)? {
        b'0' => Flag::ZeroPad,
        b'+' => Flag::Plus,
        b'-' => Flag::Left,
        b' ' => Flag::Space,
        b'#' => Flag::Alt,
        _ => Flag::None,
    };
    if flag != Flag::None {
        i += 1;
    }
    let (width, next) = parse_count(fmt, i);
    i = next;
    let mut precision = Count::Unspecified;
    if at(i)? == b'.' {
        let (p, next) = parse_count(fmt, i + 1);
        if next == i + 1 && next == fmt.len() {
            return Err(incomplete);
        }
        precision = p;
        i = next;
    }
    if at(i)? == b'l' {
        i += 1;
    }
    let conv = match at(i)? {
        b'b' => Conv::Binary,
        b'c' => Conv::Char,
        b's' => Conv::Str,
        b'm' => Conv::Memory,
        b'M' => Conv::MemoryHex,
        b'd' | b'i' => Conv::Signed,
        b'u' => Conv::Unsigned,
        b'o' => Conv::Octal,
        b'x' => Conv::Hex,
        b'X' => Conv::HexUpper,
        b'p' => Conv::Pointer,
        b'f' | b'F' | b'e' | b'E' | b'g' | b'G' => {
            let c = fmt[i];
            Conv::Float {
                style: match c.to_ascii_lowercase() {
                    b'f' => FloatStyle::Fixed,
                    b'e' => FloatStyle::Exp,
                    _ => FloatStyle::General,
                },
                upper: c.is_ascii_uppercase(),
            }
        }
        _ => {
            let end = (i + 1..=fmt.len())
                .find(|&e| std::str::from_utf8(&fmt[start..e]).is_ok())
                .unwrap_or(fmt.len());
            return Err(FormatError::InvalidConversion {
                at: i,
                text: String::from_utf8_lossy(&fmt[start..end]).into_owned(),
            });
        }
    };
    Ok(Conversion {
        conv,
        flag,
        width,
        precision,
        at: start..i + 1,
    })
}

/// Parses `*` or digits at `i`.
fn parse_count(fmt: &[u8], mut i: usize) -> (Count, usize) {
    match fmt.get(i) {
        Some(b'*') => (Count::Dynamic, i + 1),
        Some(d) if d.is_ascii_digit() => {
            let mut n: usize = 0;
            while let Some(d) = fmt.get(i).filter(|d| d.is_ascii_digit()) {
                n = n.saturating_mul(10).saturating_add(usize::from(d - b'0'));
                i += 1;
            }
            (Count::Static(n), i)
        }
        _ => (Count::Unspecified, i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(f: &str) -> Vec<ArgKind> {
        Format::parse(f.as_bytes())
            .expect("parses")
            .arg_kinds()
            .to_vec()
    }

    #[test]
    fn arguments_come_from_the_directives() {
        use ArgKind::{Long as L, Memory as M, Str as S};
        assert_eq!(kinds("newstack: %d -> %-8s %% %*x\n"), [L, S, L, L]);
        assert_eq!(kinds("[%*.*s|%*d]"), [L, L, S, L, L]);
        assert_eq!(kinds("%.4M %m %ld %p %c %b"), [M, M, L, L, L, L]);
        assert_eq!(kinds("%f %.2e %G"), [ArgKind::Float; 3]);
        assert!(Format::parse(b"plain 50%").expect("parses").is_literal());
    }

    #[test]
    fn one_flag_and_one_l_like_stap() {
        let c = |f: &str| {
            Format::parse(f.as_bytes())
                .unwrap()
                .conversions()
                .next()
                .unwrap()
                .clone()
        };
        let left = c("%-05d");
        assert_eq!((left.flag, left.width), (Flag::Left, Count::Static(5)));
        assert_eq!(c("%+05d").width, Count::Static(5));
        assert_eq!(c("%ld").conv, Conv::Signed);
        assert_eq!(c("ab%5.2sx").at, 2..7);
    }

    #[test]
    fn bad_formats_say_where() {
        let err = |f: &str| Format::parse(f.as_bytes()).unwrap_err();
        assert_eq!(
            err("x %q"),
            FormatError::InvalidConversion {
                at: 3,
                text: "%q".into()
            }
        );
        assert_eq!(err("%lld").at(), 2);
        assert_eq!(
            err("%lld").to_string(),
            "invalid or missing conversion specifier '%ll'"
        );
        assert_eq!(err("ab%0-5d").at(), 4);
        assert_eq!(err("%hd").at(), 1);
        assert_eq!(err("ok %5"), FormatError::Incomplete { at: 3 });
        assert_eq!(err("ok %-"), FormatError::Incomplete { at: 3 });
        assert_eq!(err("ok %."), FormatError::Incomplete { at: 3 });
        assert_eq!(err("ok %l"), FormatError::Incomplete { at: 3 });
        assert_eq!(err("%d %y").at(), 4);
    }

    #[test]
    fn kernel_sprintf_leaves_out_what_printf_has() {
        let k = |f: &str| {
            Format::parse(f.as_bytes())
                .unwrap()
                .conversions()
                .next()
                .unwrap()
                .kernel_sprintf()
        };
        for ok in [
            "%d", "%-8s", "%05d", "%+d", "% d", "%#x", "%#o", "%8p", "%c", "%ld",
        ] {
            assert_eq!(k(ok), Ok(()), "{ok}");
        }
        for no in [
            "%.3d", "%*d", "%.2s", "%b", "%m", "%M", "%05s", "%#c", "%0p", "%200d", "%f",
        ] {
            assert!(k(no).is_err(), "{no}");
        }
    }
}
