//! The gotap probe language, a subset of SystemTap's: lexer, parser, AST, diagnostics
//! with spans, name resolution and type check against a narrow [`Target`] trait that
//! answers questions about the traced binary (no DWARF in here).
#![forbid(unsafe_code)]

pub mod ast;
pub mod diag;
pub mod lexer;
pub mod parser;
pub mod span;

pub use diag::{Diagnostic, Note, Severity};
pub use parser::{ParseOptions, parse};
pub use span::{FileId, SourceFile, SourceMap, Span};
