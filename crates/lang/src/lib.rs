//! The gotap probe language, a subset of SystemTap's: lexer, parser, AST, diagnostics
//! with spans, name resolution and type check against a narrow [`Target`] trait that
//! answers questions about the traced binary (no DWARF in here).
#![forbid(unsafe_code)]
