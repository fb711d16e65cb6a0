//! The narrow window through which the checker sees the traced program. The caller
//! (codegen, from DWARF or runtime layouts) implements [`Target`]; the front end only
//! asks "does this probe point exist", "what is `$x`", "what is `->f` of that type" and
//! attaches spans to the answers. Errors are data that carry what a user needs to fix
//! the script: the nearest function names, the valid lines, the fields of the struct.

use crate::ast::VarSet;
use crate::diag::quote_list;
use crate::probe::ProcessProbe;

/// A Go type as the target describes it. `handle` is the implementor's own key (a DWARF
/// offset, a layout id) so it can answer follow-up questions without a lookup by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GoType {
    pub name: String,
    pub kind: GoKind,
    pub size: u64,
    pub handle: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoKind {
    Bool,
    Int { signed: bool },
    Uintptr,
    Float,
    Complex,
    String,
    Pointer,
    UnsafePointer,
    Slice,
    Array { len: u64 },
    Struct,
    Interface,
    Map,
    Chan,
    Func,
}

/// One place a process probe point resolved to (a wildcard may give several).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// The function containing the probe address.
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The probe address as the target reports it (a virtual address in the binary).
    pub address: u64,
}

/// Why the target could not answer; each variant carries the material for a `help:`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("no function matches '{pattern}'")]
    NoSuchFunction {
        pattern: String,
        nearest: Vec<String>,
    },
    #[error("no probe-able line {line} in function '{function}'")]
    NoSuchLine {
        function: String,
        line: String,
        /// The lines that do have code, as ranges (`930-936`, `940`).
        valid: Vec<String>,
    },
    #[error("no variable '${name}' at {location}")]
    NoSuchVariable {
        name: String,
        location: String,
        available: Vec<String>,
    },
    #[error("type '{ty}' has no field '{field}'")]
    NoSuchField {
        ty: String,
        field: String,
        fields: Vec<String>,
    },
    #[error("unknown type '{name}'")]
    NoSuchType { name: String, nearest: Vec<String> },
    #[error("cannot index a value of type '{ty}'")]
    NotIndexable { ty: String },
    #[error("cannot use '->{field}' on a value of type '{ty}'")]
    NotAStruct { ty: String, field: String },
    #[error("{message}")]
    Other {
        message: String,
        help: Option<String>,
    },
}

impl TargetError {
    /// The `help:` line for this error, if there is something useful to say.
    pub fn help(&self) -> Option<String> {
        let list = |v: &[String]| quote_list(&v.iter().map(String::as_str).collect::<Vec<_>>());
        match self {
            TargetError::NoSuchFunction { nearest, .. }
            | TargetError::NoSuchType { nearest, .. }
                if !nearest.is_empty() =>
            {
                Some(format!("did you mean {}?", list(nearest)))
            }
            TargetError::NoSuchLine {
                function, valid, ..
            } if !valid.is_empty() => Some(format!(
                "lines with code in '{function}': {}",
                valid.join(", ")
            )),
            TargetError::NoSuchVariable { available, .. } if !available.is_empty() => {
                let v: Vec<String> = available.iter().map(|a| format!("${a}")).collect();
                Some(format!("available here: {}", v.join(", ")))
            }
            TargetError::NoSuchField { ty, fields, .. } => {
                let near = crate::diag::nearest(
                    match self {
                        TargetError::NoSuchField { field, .. } => field,
                        _ => "",
                    },
                    fields.iter().map(String::as_str),
                );
                let mut h = String::new();
                if let Some(n) = near.first() {
                    h.push_str(&format!("did you mean '{n}'? "));
                }
                h.push_str(&format!("'{ty}' has fields: {}", fields.join(", ")));
                Some(h)
            }
            TargetError::Other { help, .. } => help.clone(),
            _ => None,
        }
    }
}

/// What the checker needs to know about the traced program. Implemented by codegen
/// over `gobin`; the tests use an in-memory mock.
pub trait Target {
    /// Resolves a `process(...).function/statement(...)` point to its locations.
    fn resolve_probe_point(&self, probe: &ProcessProbe) -> Result<Vec<Location>, TargetError>;

    /// The type of `$name` at a location (parameters, locals, results such as `$r1`,
    /// and `$return` for the results of a `.return` probe).
    fn context_var(&self, at: &Location, name: &str) -> Result<GoType, TargetError>;

    /// The variables `$$vars`/`$$parms`/`$$locals`/`$$return` would print at a location.
    fn context_vars(
        &self,
        at: &Location,
        set: VarSet,
    ) -> Result<Vec<(String, GoType)>, TargetError>;

    /// The type of `->field` on `ty`. Pointers to structs are followed implicitly (as
    /// `->` does in stap); strings answer `len`, slices `len`, `cap` and `array`.
    fn member(&self, ty: &GoType, field: &str) -> Result<GoType, TargetError>;

    /// The element type of `x[i]` for a slice, array or pointer.
    fn index(&self, ty: &GoType) -> Result<GoType, TargetError>;

    /// The type named in `@cast(addr, "name")`, optionally from another module (binary).
    /// `@cast` yields a pointer to this type.
    fn cast_type(&self, name: &str, module: Option<&str>) -> Result<GoType, TargetError>;

    /// That the traced program's binary is there for a sampling probe
    /// (`timer.profile`), whose samples are read with its runtime's layouts (the
    /// `g` of `goid()`, the system stack of `ubacktrace()`) and named with its
    /// symbols. A target that is a binary has one.
    fn sampled_binary(&self) -> Result<(), TargetError> {
        Ok(())
    }
}

/// The script type of a Go value read as a whole: integers, bools and pointers are
/// `long`, strings are `string`, floating-point numbers `float` (the bits of a
/// `float64`); composite values need `->field`, `[i]` or `$x$`.
pub fn script_type(ty: &GoType) -> Result<crate::check::Type, String> {
    use crate::check::Type;
    match ty.kind {
        GoKind::Bool
        | GoKind::Int { .. }
        | GoKind::Uintptr
        | GoKind::Pointer
        | GoKind::UnsafePointer
        | GoKind::Chan
        | GoKind::Map
        | GoKind::Func => Ok(Type::Long),
        GoKind::String => Ok(Type::String),
        GoKind::Float => Ok(Type::Float),
        GoKind::Complex => Err(format!(
            "a complex value of type '{}' cannot be used whole; print it with '$x$'",
            ty.name
        )),
        GoKind::Struct | GoKind::Slice | GoKind::Array { .. } | GoKind::Interface => Err(format!(
            "value of type '{}' cannot be used whole; use '->field', '[i]' or print it with '$x$'",
            ty.name
        )),
    }
}
