//! The gotap probe language, a subset of SystemTap's: lexer, parser, AST, diagnostics
//! with spans, name resolution and type check against a narrow [`Target`] trait that
//! answers questions about the traced binary (no DWARF in here).
//!
//! The pipeline, each stage printable for `-d`:
//!
//! ```text
//! text ──lexer──▶ tokens ──parser──▶ ast::Script ──check──▶ TypeInfo
//!                                     │ (-d ast: print_script)  │ (-d types: dump_types)
//! ```
//!
//! ```
//! use lang::{FileId, ParseOptions, SourceMap};
//! let mut sm = SourceMap::new();
//! let src = "probe begin { prinft(\"hi\\n\") }";
//! let file: FileId = sm.add("hello.stp", src);
//! let (script, diags) = lang::parse(file, src, &ParseOptions::default());
//! assert!(diags.is_empty());
//! // check() needs a Target (codegen implements it over gobin); its diagnostics render as
//! // "hello.stp:1:15: error: unknown function 'prinft'" + source line + caret + help.
//! assert_eq!(lang::print_script(&script), "probe begin {\n  prinft(\"hi\\n\");\n}\n");
//! ```
//!
//! Neither stage stops at the first error: each returns its result and all diagnostics.
#![forbid(unsafe_code)]

pub mod ast;
pub mod backend;
pub mod builtins;
pub mod check;
pub mod diag;
pub mod format;
pub mod lexer;
pub mod parser;
pub mod print;
pub mod probe;
pub mod regex;
pub mod span;
pub mod stop;
pub mod target;

pub use backend::Backend;
pub use builtins::BuiltinId;
pub use check::{
    Binding, Callee, FunctionInfo, ProbeInfo, ResolvedPoint, Type, TypeInfo, VarInfo, check,
    dump_types,
};
pub use diag::{Diagnostic, Note, Severity, has_errors};
pub use parser::{ParseOptions, parse};
pub use print::print_script;
pub use probe::{Lines, ProbeKind, ProcessProbe, Site};
pub use span::{FileId, SourceFile, SourceMap, Span};
pub use target::{GoKind, GoType, Location, Target, TargetError, script_type};
