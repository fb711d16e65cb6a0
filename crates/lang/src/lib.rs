//! The gotap probe language, a subset of SystemTap's: lexer, parser, AST, diagnostics
//! with spans, name resolution and type check against a narrow [`Target`] trait that
//! answers questions about the traced binary (no DWARF in here).
#![forbid(unsafe_code)]

pub mod ast;
pub mod builtins;
pub mod check;
pub mod diag;
pub mod lexer;
pub mod parser;
pub mod print;
pub mod probe;
pub mod span;
pub mod target;

pub use check::{Type, TypeInfo, check, dump_types};
pub use diag::{Diagnostic, Note, Severity};
pub use parser::{ParseOptions, parse};
pub use print::print_script;
pub use span::{FileId, SourceFile, SourceMap, Span};
pub use target::{GoKind, GoType, Location, Target, TargetError};
