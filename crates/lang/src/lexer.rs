//! The lexer: script text to tokens with spans. It knows SystemTap's token shapes —
//! `$name`, `$$parms`, `$x$$` (pretty-print suffixes are part of the token), `@cast`,
//! script arguments `$1`/`@1`, three comment styles and `<<<` — and never stops: a bad
//! character becomes a diagnostic and is skipped.

use crate::diag::Diagnostic;
use crate::span::{FileId, Span};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    /// `$name`, `$$vars`, `$name$`, `$$parms$$`: the full text without the leading `$`.
    Dollar(String),
    /// `@cast`, `@count`, … : the name without `@`.
    At(String),
    /// `$1`: a numeric script argument.
    ArgNum(u32),
    /// `@1`: a string script argument.
    ArgStr(u32),
    Num(i64),
    Str(String),
    Kw(Kw),
    Op(&'static str),
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kw {
    Probe,
    Global,
    Function,
    If,
    Else,
    While,
    For,
    Foreach,
    In,
    Limit,
    Return,
    Next,
    Break,
    Continue,
    Delete,
}

impl Kw {
    pub fn as_str(self) -> &'static str {
        match self {
            Kw::Probe => "probe",
            Kw::Global => "global",
            Kw::Function => "function",
            Kw::If => "if",
            Kw::Else => "else",
            Kw::While => "while",
            Kw::For => "for",
            Kw::Foreach => "foreach",
            Kw::In => "in",
            Kw::Limit => "limit",
            Kw::Return => "return",
            Kw::Next => "next",
            Kw::Break => "break",
            Kw::Continue => "continue",
            Kw::Delete => "delete",
        }
    }

    fn from_str(s: &str) -> Option<Kw> {
        Some(match s {
            "probe" => Kw::Probe,
            "global" => Kw::Global,
            "function" => Kw::Function,
            "if" => Kw::If,
            "else" => Kw::Else,
            "while" => Kw::While,
            "for" => Kw::For,
            "foreach" => Kw::Foreach,
            "in" => Kw::In,
            "limit" => Kw::Limit,
            "return" => Kw::Return,
            "next" => Kw::Next,
            "break" => Kw::Break,
            "continue" => Kw::Continue,
            "delete" => Kw::Delete,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "identifier '{s}'"),
            Tok::Dollar(s) => write!(f, "'${s}'"),
            Tok::At(s) => write!(f, "'@{s}'"),
            Tok::ArgNum(n) => write!(f, "'${n}'"),
            Tok::ArgStr(n) => write!(f, "'@{n}'"),
            Tok::Num(n) => write!(f, "number {n}"),
            Tok::Str(_) => write!(f, "string literal"),
            Tok::Kw(k) => write!(f, "'{}'", k.as_str()),
            Tok::Op(o) => write!(f, "'{o}'"),
            Tok::Eof => write!(f, "end of file"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Longest first, so that `<<<` wins over `<<` and `<`.
const OPS: &[&str] = &[
    "<<<", "<<=", ">>=", "<<", ">>", "<=", ">=", "==", "!=", "=~", "!~", "&&", "||", "++", "--",
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", ".=", "->", "+", "-", "*", "/", "%", "<", ">",
    "=", "!", "~", "&", "|", "^", ".", "?", ":", ",", ";", "(", ")", "[", "]", "{", "}",
];

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Splits `src` into tokens (always ending with [`Tok::Eof`]) and lexical diagnostics.
pub fn lex(file: FileId, src: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut diags = Vec::new();
    let mut i = 0;
    let span = |s: usize, e: usize| Span::new(file, s, e);
    // A NUL byte anywhere (a binary given as the script, a truncated copy): said once,
    // at the first, wherever it is (in a string or a comment too).
    if let Some(at) = b.iter().position(|&c| c == 0) {
        diags.push(
            Diagnostic::error(
                span(at, at + 1),
                "the script has a NUL byte here: it is not text",
            )
            .with_help("a script is text; check that the file given is the script"),
        );
    }
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' || (c == b'/' && b.get(i + 1) == Some(&b'/')) {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            match src[i + 2..].find("*/") {
                Some(e) => i = i + 2 + e + 2,
                None => {
                    diags.push(Diagnostic::error(
                        span(start, start + 2),
                        "unterminated comment",
                    ));
                    i = b.len();
                }
            }
            continue;
        }
        if is_ident_start(c) {
            while i < b.len() && is_ident_char(b[i]) {
                i += 1;
            }
            let word = &src[start..i];
            let tok = Kw::from_str(word).map_or_else(|| Tok::Ident(word.to_string()), Tok::Kw);
            toks.push(Token {
                tok,
                span: span(start, i),
            });
            continue;
        }
        if c.is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let text = &src[start..i];
            let n = parse_number(text).unwrap_or_else(|msg| {
                diags.push(Diagnostic::error(span(start, i), msg));
                0
            });
            toks.push(Token {
                tok: Tok::Num(n),
                span: span(start, i),
            });
            continue;
        }
        if c == b'$' || c == b'@' {
            i += 1;
            if c == b'$' && b.get(i) == Some(&b'$') {
                i += 1;
            }
            let name_start = i;
            if i < b.len() && b[i].is_ascii_digit() {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n: u32 = src[name_start..i].parse().unwrap_or(u32::MAX);
                let tok = if c == b'$' && name_start == start + 1 {
                    Tok::ArgNum(n)
                } else if c == b'@' {
                    Tok::ArgStr(n)
                } else {
                    diags.push(Diagnostic::error(span(start, i), "invalid '$$' token"));
                    Tok::ArgNum(n)
                };
                toks.push(Token {
                    tok,
                    span: span(start, i),
                });
                continue;
            }
            while i < b.len() && is_ident_char(b[i]) {
                i += 1;
            }
            if i == name_start {
                if c == b'$' {
                    // A bare `$`/`$$` is a pretty-printing suffix after a field: `$a->b$`.
                    let op = if i - start == 2 { "$$" } else { "$" };
                    toks.push(Token {
                        tok: Tok::Op(op),
                        span: span(start, i),
                    });
                } else {
                    diags.push(Diagnostic::error(
                        span(start, i),
                        "expected a name after '@'",
                    ));
                }
                continue;
            }
            if c == b'$' {
                // Pretty-printing suffixes `$` and `$$` belong to the variable token.
                let mut n = 0;
                while n < 2 && b.get(i) == Some(&b'$') {
                    i += 1;
                    n += 1;
                }
            }
            let text = src[start + 1..i].to_string();
            let tok = if c == b'$' {
                Tok::Dollar(text)
            } else {
                Tok::At(text)
            };
            toks.push(Token {
                tok,
                span: span(start, i),
            });
            continue;
        }
        if c == b'"' {
            let (s, end, errs) = lex_string(src, start, file);
            diags.extend(errs);
            i = end;
            toks.push(Token {
                tok: Tok::Str(s),
                span: span(start, i),
            });
            continue;
        }
        if let Some(op) = OPS.iter().find(|op| src[i..].starts_with(**op)) {
            i += op.len();
            toks.push(Token {
                tok: Tok::Op(op),
                span: span(start, i),
            });
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or('?');
        i += ch.len_utf8();
        if ch == '\0' {
            continue;
        }
        diags.push(Diagnostic::error(
            span(start, i),
            format!("unexpected character '{}'", ch.escape_debug()),
        ));
    }
    toks.push(Token {
        tok: Tok::Eof,
        span: span(b.len(), b.len()),
    });
    (toks, diags)
}

/// Decimal, `0x` hex or leading-zero octal; values up to 2^64-1 wrap to i64 as in stap.
fn parse_number(text: &str) -> Result<i64, String> {
    let (digits, radix) = if let Some(h) = text.strip_prefix("0x").or(text.strip_prefix("0X")) {
        (h, 16)
    } else if text.len() > 1 && text.starts_with('0') {
        (&text[1..], 8)
    } else {
        (text, 10)
    };
    u64::from_str_radix(digits, radix)
        .map(|v| v as i64)
        .map_err(|e| match e.kind() {
            std::num::IntErrorKind::PosOverflow => format!("number '{text}' is too large"),
            _ => format!("invalid number '{text}'"),
        })
}

fn lex_string(src: &str, start: usize, file: FileId) -> (String, usize, Vec<Diagnostic>) {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut diags = Vec::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = b.get(i) else {
            diags.push(Diagnostic::error(
                Span::new(file, start, start + 1),
                "unterminated string literal",
            ));
            break;
        };
        match c {
            b'"' => {
                i += 1;
                break;
            }
            b'\n' => {
                diags.push(Diagnostic::error(
                    Span::new(file, start, start + 1),
                    "unterminated string literal",
                ));
                break;
            }
            b'\\' => {
                let esc = b.get(i + 1).copied().unwrap_or(b'\\');
                i += 2;
                match esc {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'v' => out.push(11),
                    b'\\' => out.push(b'\\'),
                    b'"' => out.push(b'"'),
                    b'\'' => out.push(b'\''),
                    b'?' => out.push(b'?'),
                    b'x' => {
                        let s = i;
                        while i < b.len() && i < s + 2 && b[i].is_ascii_hexdigit() {
                            i += 1;
                        }
                        match u8::from_str_radix(&src[s..i], 16) {
                            Ok(v) => out.push(v),
                            Err(_) => diags.push(Diagnostic::error(
                                Span::new(file, s - 2, i),
                                "'\\x' escape needs hex digits",
                            )),
                        }
                    }
                    b'0'..=b'7' => {
                        let s = i - 1;
                        while i < b.len() && i < s + 3 && (b'0'..=b'7').contains(&b[i]) {
                            i += 1;
                        }
                        match u8::from_str_radix(&src[s..i], 8) {
                            Ok(v) => out.push(v),
                            Err(_) => diags.push(Diagnostic::error(
                                Span::new(file, s - 1, i),
                                "octal escape out of range",
                            )),
                        }
                    }
                    other => {
                        let ch = src[i - 1..].chars().next().unwrap_or('?');
                        i = i - 1 + ch.len_utf8();
                        diags.push(Diagnostic::error(
                            Span::new(file, i - 1 - ch.len_utf8(), i),
                            format!("unknown escape sequence '\\{}'", other as char),
                        ));
                    }
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), i, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        let (t, d) = lex(FileId(0), src);
        assert!(d.is_empty(), "{d:?}");
        t.into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn dollar_forms_and_pretty_suffixes() {
        assert_eq!(
            toks("$x $$parms $x$ $x$$ $$vars$ $1 @2 @cast"),
            vec![
                Tok::Dollar("x".into()),
                Tok::Dollar("$parms".into()),
                Tok::Dollar("x$".into()),
                Tok::Dollar("x$$".into()),
                Tok::Dollar("$vars$".into()),
                Tok::ArgNum(1),
                Tok::ArgStr(2),
                Tok::At("cast".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn numbers_in_three_bases_and_wrapping() {
        assert_eq!(
            toks("10 0x1F 017 0xffffffffffffffff"),
            vec![
                Tok::Num(10),
                Tok::Num(31),
                Tok::Num(15),
                Tok::Num(-1),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn comments_and_longest_operators() {
        assert_eq!(
            toks("a <<< b # c\n// d\n/* e\n */ <<= -> ."),
            vec![
                Tok::Ident("a".into()),
                Tok::Op("<<<"),
                Tok::Ident("b".into()),
                Tok::Op("<<="),
                Tok::Op("->"),
                Tok::Op("."),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            toks(r#""a\n\t\"\\\x41\101""#),
            vec![Tok::Str("a\n\t\"\\AA".into()), Tok::Eof]
        );
    }

    #[test]
    fn bad_input_is_reported_with_position() {
        let (_, d) = lex(FileId(0), "x ` \"abc");
        assert_eq!(d[0].message, "unexpected character '`'");
        assert_eq!(d[0].span.start, 2);
        assert_eq!(d[1].message, "unterminated string literal");
    }
}
