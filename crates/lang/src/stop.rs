//! How a probe that stops with an error says so, in stap's words, for both back ends:
//! `division by 0 near operator '/' at x.stp:3:9 (called from identifier 'f' at
//! x.stp:7:3) in probe begin`. User space renders it when the error happens; a kernel
//! probe carries the same text, rendered when it is compiled, in its error record.

use crate::ast::{Item, ProbePoint, Script};
use crate::span::{SourceMap, Span};

/// The whole message: what went wrong, near which token, in which calls (innermost
/// first), in which probe.
pub fn message(
    sm: &SourceMap,
    what: &str,
    near: Option<Span>,
    called_from: &[Span],
    probe: &str,
) -> String {
    let mut s = what.to_string();
    if let Some(n) = near {
        s.push_str(&format!(" near {}", describe(sm, n)));
        for c in called_from {
            s.push_str(&format!(" (called from {})", describe(sm, *c)));
        }
    }
    if !probe.is_empty() {
        s.push_str(&format!(" in probe {probe}"));
    }
    s
}

/// The place of a binary operator for an error: the gap between its operands, where
/// [`describe`] finds the operator.
pub fn operator_place(lhs: Span, rhs: Span) -> Span {
    Span {
        file: lhs.file,
        start: lhs.end,
        end: rhs.start.max(lhs.end),
    }
}

/// The probe point written at `span` (in a probe or an alias), as the error names it:
/// `process.function("main.add")`, `timer.ms(100)`.
pub fn written_point(script: &Script, span: Span) -> String {
    for item in &script.items {
        let points: &[ProbePoint] = match item {
            Item::Probe(p) => &p.points,
            Item::Alias(a) => &a.points,
            _ => continue,
        };
        if let Some(p) = points.iter().find(|p| p.span == span) {
            return crate::print::print_probe_point(p)
                .trim_end_matches(['?', '!'])
                .to_string();
        }
    }
    String::new()
}

const KEYWORDS: &[&str] = &[
    "probe", "global", "function", "if", "else", "while", "for", "foreach", "in", "limit", "break",
    "continue", "next", "return", "delete", "try", "catch",
];

const OPERATORS: &[&str] = &[
    "<<<", "<<=", ">>=", "!~", "=~", "==", "!=", "<=", ">=", "&&", "||", "<<", ">>", "++", "--",
    "+=", "-=", "*=", "/=", "%=", ".=", "&=", "|=", "^=", "+", "-", "*", "/", "%", "<", ">", "=",
    "!", "~", "&", "|", "^", ".", "?", ":", "(", ")", "[", "]", "{", "}", ",", ";", "$",
];

/// Describes the token at a span's start like stap's `operator<<(token)`:
/// `operator '/' at x.stp:1:20`, `identifier 'f' at …`, `keyword at …`.
pub fn describe(sm: &SourceMap, span: Span) -> String {
    let Some(file) = sm.file(span.file) else {
        return format!("?:{}", span.start);
    };
    let text = file.text.as_bytes();
    let mut at = (span.start as usize).min(text.len());
    // An operator's span is the gap between its operands, which may start with the
    // closing parenthesis of the left one.
    while at < text.len() && (text[at].is_ascii_whitespace() || text[at] == b')') {
        at += 1;
    }
    let rest = &text[at..];
    let (l, c) = file.line_col(at as u32);
    let pos = format!("{}:{l}:{c}", file.name);
    let word_len = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'@'))
        .unwrap_or(rest.len());
    let word = String::from_utf8_lossy(&rest[..word_len]);
    let what = if word_len > 0 && rest[0].is_ascii_digit() {
        format!("number '{word}'")
    } else if KEYWORDS.contains(&&*word) {
        "keyword".to_string()
    } else if word_len > 0 {
        format!("identifier '{word}'")
    } else if rest.first() == Some(&b'"') {
        "string".to_string()
    } else {
        let op = OPERATORS
            .iter()
            .find(|o| rest.starts_with(o.as_bytes()))
            .copied()
            .unwrap_or("?");
        format!("operator '{op}'")
    };
    format!("{what} at {pos}")
}
