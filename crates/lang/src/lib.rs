//! The gotap probe language, a subset of SystemTap's, and the one place its rules are
//! written: lexer, parser, AST, diagnostics with spans, and the checker (names,
//! probe points, types, and what each back end can run) against a narrow [`Target`]
//! trait that answers questions about the traced binary (no DWARF in here).
//!
//! The pipeline, each stage printable with `-d`:
//!
//! ```text
//! text ──lexer──▶ tokens ──parser──▶ ast::Script ──check──▶ TypeInfo
//!                            (-d ast: print_script)         (-d types: dump_types)
//! ```
//!
//! [`TypeInfo`] is what the two back ends (`codegen` for process probes, compiled to
//! eBPF; `runtime::interp` for `begin`, `end` and timer probes) are told, so that they
//! never work the language out again: the type of every expression, what every name
//! and call resolved to ([`Binding`], [`Callee`]), every format parsed once
//! ([`format`]), the resolved probe points. The rows the back ends match on live here
//! too: the built-ins ([`builtins`], one [`BuiltinId`] per row, matched exhaustively by
//! both), what each back end can run ([`backend`]), the regular expression dialect
//! ([`regex`]) and the words a stopped probe uses ([`stop`]).
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
//! No stage stops at the first error: each returns its result and all diagnostics.
#![forbid(unsafe_code)]

pub mod ast;
pub mod backend;
pub mod builtins;
pub mod check;
pub mod diag;
pub mod format;
pub mod lexer;
pub mod limits;
pub mod parser;
pub mod print;
pub mod probe;
pub mod regex;
pub mod span;
pub mod stop;
pub mod target;
pub mod uses;

pub use backend::Backend;
pub use builtins::BuiltinId;
pub use check::{
    Binding, Callee, FunctionInfo, ProbeInfo, ResolvedPoint, Type, TypeInfo, VarInfo, check,
    check_with, dump_types,
};
pub use diag::{Diagnostic, Note, Severity, has_errors};
pub use limits::Limits;
pub use parser::{ParseOptions, parse};
pub use print::print_script;
pub use probe::{Lines, ProbeKind, ProcessProbe, Site};
pub use span::{FileId, SourceFile, SourceMap, Span};
pub use target::{GoKind, GoType, Location, Target, TargetError, script_type};
