//! Source files and byte spans. Every token, AST node and diagnostic carries a [`Span`]
//! (file id plus byte offsets); the [`SourceMap`] turns those offsets into the
//! `line:col` positions and source lines a user sees in an error message.

use crate::diag::{Diagnostic, Severity};

/// Which source file a span points into (index into a [`SourceMap`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A half-open byte range `start..end` in one source file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Span({}:{}..{})", self.file.0, self.start, self.end)
    }
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span covering both `self` and `other` (same file assumed).
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// One script or tapset: its name as shown in diagnostics, its text and a line index.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
    line_starts: Vec<u32>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let mut line_starts = vec![0u32];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i as u32 + 1);
            }
        }
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column (column counted in characters) of a byte offset.
    pub fn line_col(&self, offset: u32) -> (u32, u32) {
        let offset = offset.min(self.text.len() as u32);
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line] as usize;
        let col = self
            .text
            .get(start..offset as usize)
            .map_or(offset as usize - start, |s| s.chars().count());
        (line as u32 + 1, col as u32 + 1)
    }

    /// The text of a 1-based line, without its newline.
    pub fn line_text(&self, line: u32) -> &str {
        let i = (line as usize).saturating_sub(1);
        let Some(&start) = self.line_starts.get(i) else {
            return "";
        };
        let end = self
            .line_starts
            .get(i + 1)
            .map_or(self.text.len(), |&e| e as usize);
        self.text
            .get(start as usize..end)
            .unwrap_or("")
            .trim_end_matches(['\n', '\r'])
    }
}

/// All source files of one compilation (the script, then any tapsets).
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile::new(name, text));
        FileId(self.files.len() as u32 - 1)
    }

    pub fn file(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    /// `file:line:col` of the start of a span.
    pub fn position(&self, span: Span) -> String {
        match self.file(span.file) {
            Some(f) => {
                let (l, c) = f.line_col(span.start);
                format!("{}:{l}:{c}", f.name)
            }
            None => format!("?:{}", span.start),
        }
    }

    /// 1-based `(line, col)` of the start of a span.
    pub fn line_col(&self, span: Span) -> (u32, u32) {
        self.file(span.file)
            .map_or((0, 0), |f| f.line_col(span.start))
    }

    /// Renders a diagnostic the way a compiler does:
    ///
    /// ```text
    /// x.stp:3:5: error: unknown function 'prinft'
    ///     3 |     prinft("hi")
    ///       |     ^^^^^^
    ///   help: did you mean 'printf'?
    /// ```
    pub fn render(&self, d: &Diagnostic) -> String {
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!("{}: {sev}: {}\n", self.position(d.span), d.message);
        self.snippet(&mut out, d.span);
        if let Some(help) = &d.help {
            out.push_str(&format!("  help: {help}\n"));
        }
        for n in &d.notes {
            match n.span {
                Some(s) => {
                    out.push_str(&format!("{}: note: {}\n", self.position(s), n.message));
                    self.snippet(&mut out, s);
                }
                None => out.push_str(&format!("  note: {}\n", n.message)),
            }
        }
        out
    }

    /// Renders all diagnostics, in order.
    pub fn render_all(&self, ds: &[Diagnostic]) -> String {
        ds.iter().map(|d| self.render(d)).collect()
    }

    fn snippet(&self, out: &mut String, span: Span) {
        let Some(f) = self.file(span.file) else {
            return;
        };
        let (line, col) = f.line_col(span.start);
        let (end_line, end_col) = f.line_col(span.end);
        let full = f.line_text(line);
        let width = if end_line == line {
            (end_col.saturating_sub(col)).max(1)
        } else {
            (full.chars().count() as u32 + 1).saturating_sub(col).max(1)
        };
        let (text, col, width) = window(full, col, width);
        let gutter = line.to_string().len().max(4);
        out.push_str(&format!("{line:>gutter$} | {text}\n"));
        // Tabs in the source line are kept so the caret lines up under them.
        let pad: String = text
            .chars()
            .take(col as usize - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(
            "{:gutter$} | {pad}{}\n",
            "",
            "^".repeat(width as usize)
        ));
    }
}

/// Longer source lines than this are shown as a window around the place.
const MAX_SHOWN: usize = 160;

/// The part of `line` shown for a place at `col` (1-based, in characters) `width`
/// wide: the whole line, or for a long one (a generated script on one line) about
/// 120 characters around the place, elided with `…`; and the place within it.
fn window(line: &str, col: u32, width: u32) -> (String, u32, u32) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX_SHOWN {
        return (line.to_string(), col, width);
    }
    let from = (col as usize).saturating_sub(60).max(1);
    let to = (from + 120).min(chars.len());
    let mut text: String = if from > 1 {
        "…".into()
    } else {
        String::new()
    };
    let shift = if from > 1 { 1 } else { 0 };
    text.extend(&chars[from - 1..to]);
    if to < chars.len() {
        text.push('…');
    }
    let room = (to + 1).saturating_sub(col as usize).max(1) as u32;
    let shown = (col as usize + 1 + shift).saturating_sub(from) as u32;
    (text, shown, width.min(room))
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_lines_show_a_window_around_the_place() {
        let line = format!("{}X{}", "a".repeat(1000), "b".repeat(1000));
        let (text, col, width) = super::window(&line, 1001, 1);
        assert_eq!(text.chars().nth(col as usize - 1), Some('X'));
        assert!(text.starts_with('…') && text.ends_with('…'));
        assert!(text.chars().count() < 130);
        assert_eq!(width, 1);
        assert_eq!(super::window("short", 2, 3), ("short".to_string(), 2, 3));
    }

    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let f = SourceFile::new("a", "ab\n\u{e9}x\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        // 'x' follows a two-byte character: byte 5, column 2.
        assert_eq!(f.line_col(5), (2, 2));
        assert_eq!(f.line_text(2), "\u{e9}x");
    }

    #[test]
    fn render_puts_caret_under_span() {
        let mut sm = SourceMap::new();
        let id = sm.add("t.stp", "probe begin {\n  prinft(1)\n}\n");
        let d = Diagnostic::error(Span::new(id, 16, 22), "unknown function 'prinft'")
            .with_help("did you mean 'printf'?");
        assert_eq!(
            sm.render(&d),
            "t.stp:2:3: error: unknown function 'prinft'\n   \
             2 |   prinft(1)\n     |   ^^^^^^\n  help: did you mean 'printf'?\n"
        );
    }
}
