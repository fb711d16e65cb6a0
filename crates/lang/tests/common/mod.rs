//! A MOCK [`Target`] for the checker tests: a tiny in-memory Go program with a few
//! functions and a cut-down model of the runtime's `g`, `m`, `gobuf` and `stack`
//! structs. The real `Target` lives in codegen and reads DWARF / runtime layouts; this
//! one only has to answer the same questions consistently, including the errors with
//! their help material (nearest names, valid lines, field lists).

#![allow(dead_code)]

use lang::ast::VarSet;
use lang::diag::nearest;
use lang::probe::{Lines, ProcessProbe, Site};
use lang::{FileId, GoKind, GoType, Location, ParseOptions, SourceMap, Target, TargetError};

struct TypeDef {
    go: GoType,
    fields: Vec<(&'static str, u64)>,
    elem: Option<u64>,
}

struct Func {
    name: &'static str,
    file: &'static str,
    /// Lines that have code.
    lines: Vec<u32>,
    params: Vec<(&'static str, u64)>,
    locals: Vec<(&'static str, u64)>,
    results: Vec<(&'static str, u64)>,
    entry: u64,
}

pub struct FakeTarget {
    types: Vec<TypeDef>,
    funcs: Vec<Func>,
}

const INT: u64 = 0;
const UINTPTR: u64 = 1;
const BOOL: u64 = 2;
const STRING: u64 = 3;
const FLOAT: u64 = 4;
const UNSAFE_PTR: u64 = 5;
const STACK: u64 = 6;
const GOBUF: u64 = 7;
const G: u64 = 8;
const M: u64 = 9;
const PTR_G: u64 = 10;
const PTR_M: u64 = 11;
const SLICE_INT: u64 = 12;
const PTR_UINT8: u64 = 13;
const UINT8: u64 = 14;
const ERROR: u64 = 15;
const UINT64: u64 = 16;

fn ty(handle: u64, name: &str, kind: GoKind, size: u64) -> GoType {
    GoType {
        name: name.into(),
        kind,
        size,
        handle,
    }
}

pub fn fake() -> FakeTarget {
    let s = |h, n, k, z| TypeDef {
        go: ty(h, n, k, z),
        fields: Vec::new(),
        elem: None,
    };
    let mut types = vec![
        s(INT, "int", GoKind::Int { signed: true }, 8),
        s(UINTPTR, "uintptr", GoKind::Uintptr, 8),
        s(BOOL, "bool", GoKind::Bool, 1),
        s(STRING, "string", GoKind::String, 16),
        s(FLOAT, "float64", GoKind::Float, 8),
        s(UNSAFE_PTR, "unsafe.Pointer", GoKind::UnsafePointer, 8),
        s(STACK, "runtime.stack", GoKind::Struct, 16),
        s(GOBUF, "runtime.gobuf", GoKind::Struct, 56),
        s(G, "runtime.g", GoKind::Struct, 400),
        s(M, "runtime.m", GoKind::Struct, 1000),
        s(PTR_G, "*runtime.g", GoKind::Pointer, 8),
        s(PTR_M, "*runtime.m", GoKind::Pointer, 8),
        s(SLICE_INT, "[]int", GoKind::Slice, 24),
        s(PTR_UINT8, "*uint8", GoKind::Pointer, 8),
        s(UINT8, "uint8", GoKind::Int { signed: false }, 1),
        s(ERROR, "error", GoKind::Interface, 16),
        s(UINT64, "uint64", GoKind::Int { signed: false }, 8),
    ];
    types[STACK as usize].fields = vec![("lo", UINTPTR), ("hi", UINTPTR)];
    types[GOBUF as usize].fields = vec![
        ("sp", UINTPTR),
        ("pc", UINTPTR),
        ("g", UINTPTR),
        ("ctxt", UNSAFE_PTR),
        ("lr", UINTPTR),
        ("bp", UINTPTR),
    ];
    types[G as usize].fields = vec![
        ("stack", STACK),
        ("stackguard0", UINTPTR),
        ("m", PTR_M),
        ("sched", GOBUF),
        ("goid", UINT64),
    ];
    types[M as usize].fields = vec![
        ("g0", PTR_G),
        ("morebuf", GOBUF),
        ("curg", PTR_G),
        ("id", INT),
    ];
    types[PTR_G as usize].elem = Some(G);
    types[PTR_M as usize].elem = Some(M);
    types[SLICE_INT as usize].elem = Some(INT);
    types[PTR_UINT8 as usize].elem = Some(UINT8);
    let funcs = vec![
        Func {
            name: "runtime.newstack",
            file: "/usr/lib/golang/src/runtime/stack.go",
            lines: (930..=940).chain([950]).collect(),
            params: vec![],
            locals: vec![("thisg", PTR_G), ("gp", PTR_G)],
            results: vec![],
            entry: 0x44_0000,
        },
        Func {
            name: "runtime.mallocgc",
            file: "/usr/lib/golang/src/runtime/malloc.go",
            lines: (700..=760).collect(),
            params: vec![("size", UINTPTR), ("typ", UNSAFE_PTR), ("needzero", BOOL)],
            locals: vec![],
            results: vec![("r0", UNSAFE_PTR)],
            entry: 0x40_d200,
        },
        Func {
            name: "main.say",
            file: "/home/u/example.go",
            lines: (8..=13).collect(),
            params: vec![("s", STRING)],
            locals: vec![("i", INT)],
            results: vec![],
            entry: 0x48_2700,
        },
        Func {
            name: "main.sum",
            file: "/home/u/example.go",
            lines: (16..=22).collect(),
            params: vec![("xs", SLICE_INT)],
            locals: vec![("total", INT)],
            results: vec![("r0", INT)],
            entry: 0x48_2800,
        },
        Func {
            name: "main.open",
            file: "/home/u/example.go",
            lines: (24..=30).collect(),
            params: vec![("name", STRING), ("ratio", FLOAT)],
            locals: vec![],
            results: vec![("r0", INT), ("r1", ERROR)],
            entry: 0x48_2900,
        },
        Func {
            name: "main.main",
            file: "/home/u/example.go",
            lines: (32..=36).collect(),
            params: vec![],
            locals: vec![],
            results: vec![],
            entry: 0x48_2a00,
        },
    ];
    FakeTarget { types, funcs }
}

/// Shell-style match with `*` and `?`, as stap function patterns.
fn glob(pat: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some((c, rest)) => s.first().is_some_and(|x| *c == '?' || x == c) && go(rest, &s[1..]),
        }
    }
    go(&p, &s)
}

/// `930-940, 950` from a sorted line list.
fn ranges(lines: &[u32]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j + 1 < lines.len() && lines[j + 1] == lines[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            lines[i].to_string()
        } else {
            format!("{}-{}", lines[i], lines[j])
        });
        i = j + 1;
    }
    out
}

impl FakeTarget {
    fn def(&self, t: &GoType) -> &TypeDef {
        &self.types[t.handle as usize]
    }

    fn func(&self, name: &str) -> Option<&Func> {
        self.funcs.iter().find(|f| f.name == name)
    }

    fn no_function(&self, pattern: &str) -> TargetError {
        TargetError::NoSuchFunction {
            pattern: pattern.into(),
            nearest: nearest(pattern, self.funcs.iter().map(|f| f.name))
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }
}

impl Target for FakeTarget {
    fn resolve_probe_point(&self, probe: &ProcessProbe) -> Result<Vec<Location>, TargetError> {
        if let Some(p) = &probe.path
            && p != "./example"
        {
            return Err(TargetError::Other {
                message: format!("cannot open '{p}': no such file"),
                help: None,
            });
        }
        match &probe.site {
            Site::Address(a) => {
                let f = self
                    .funcs
                    .iter()
                    .find(|f| (f.entry..f.entry + 0x100).contains(a))
                    .ok_or_else(|| self.no_function(&format!("{a:#x}")))?;
                Ok(vec![Location {
                    function: f.name.into(),
                    file: Some(f.file.into()),
                    line: f.lines.first().copied(),
                    address: *a,
                }])
            }
            Site::Function { pattern, ret, .. } => {
                let locs: Vec<Location> = self
                    .funcs
                    .iter()
                    .filter(|f| glob(pattern, f.name))
                    .map(|f| Location {
                        function: f.name.into(),
                        file: Some(f.file.into()),
                        line: f.lines.first().copied(),
                        address: f.entry + if *ret { 0x40 } else { 0 },
                    })
                    .collect();
                if locs.is_empty() {
                    return Err(self.no_function(pattern));
                }
                Ok(locs)
            }
            Site::Statement {
                function,
                file,
                lines,
            } => {
                let f = self
                    .func(function)
                    .ok_or_else(|| self.no_function(function))?;
                if let Some(file) = file
                    && !f.file.ends_with(file.as_str())
                {
                    return Err(TargetError::Other {
                        message: format!("function '{function}' is not in file '{file}'"),
                        help: Some(format!("it is in '{}'", f.file)),
                    });
                }
                let chosen: Vec<u32> = f
                    .lines
                    .iter()
                    .copied()
                    .filter(|l| match lines {
                        Lines::Any => true,
                        Lines::One(n) => l == n,
                        Lines::Range(a, b) => (a..=b).contains(&l),
                    })
                    .collect();
                if chosen.is_empty() {
                    return Err(TargetError::NoSuchLine {
                        function: function.clone(),
                        line: lines.to_string(),
                        valid: ranges(&f.lines),
                    });
                }
                Ok(chosen
                    .into_iter()
                    .map(|l| Location {
                        function: f.name.into(),
                        file: Some(f.file.into()),
                        line: Some(l),
                        address: f.entry + u64::from(l - f.lines[0]) * 4,
                    })
                    .collect())
            }
        }
    }

    fn context_var(&self, at: &Location, name: &str) -> Result<GoType, TargetError> {
        let f = self
            .func(&at.function)
            .ok_or_else(|| self.no_function(&at.function))?;
        let lookup = if name == "return" {
            f.results.first().map(|r| r.1)
        } else {
            f.params
                .iter()
                .chain(&f.locals)
                .chain(&f.results)
                .find(|(n, _)| *n == name)
                .map(|v| v.1)
        };
        match lookup {
            Some(h) => Ok(self.types[h as usize].go.clone()),
            None => Err(TargetError::NoSuchVariable {
                name: name.into(),
                location: f.name.into(),
                available: f
                    .params
                    .iter()
                    .chain(&f.locals)
                    .map(|v| v.0.to_string())
                    .collect(),
            }),
        }
    }

    fn context_vars(
        &self,
        at: &Location,
        set: VarSet,
    ) -> Result<Vec<(String, GoType)>, TargetError> {
        let f = self
            .func(&at.function)
            .ok_or_else(|| self.no_function(&at.function))?;
        let vars: Vec<&(&str, u64)> = match set {
            VarSet::Parms => f.params.iter().collect(),
            VarSet::Locals => f.locals.iter().collect(),
            VarSet::Vars => f.params.iter().chain(&f.locals).collect(),
            VarSet::Return => f.results.iter().collect(),
        };
        Ok(vars
            .into_iter()
            .map(|(n, h)| (n.to_string(), self.types[*h as usize].go.clone()))
            .collect())
    }

    fn member(&self, t: &GoType, field: &str) -> Result<GoType, TargetError> {
        let mut d = self.def(t);
        if d.go.kind == GoKind::Pointer
            && let Some(e) = d.elem
        {
            d = &self.types[e as usize];
        }
        let fields: Vec<(&str, u64)> = match d.go.kind {
            GoKind::Struct => d.fields.clone(),
            GoKind::String => vec![("str", PTR_UINT8), ("len", INT)],
            GoKind::Slice => vec![("array", PTR_UINT8), ("len", INT), ("cap", INT)],
            _ => {
                return Err(TargetError::NotAStruct {
                    ty: t.name.clone(),
                    field: field.into(),
                });
            }
        };
        match fields.iter().find(|(n, _)| *n == field) {
            Some((_, h)) => Ok(self.types[*h as usize].go.clone()),
            None => Err(TargetError::NoSuchField {
                ty: d.go.name.clone(),
                field: field.into(),
                fields: fields.iter().map(|f| f.0.to_string()).collect(),
            }),
        }
    }

    fn index(&self, t: &GoType) -> Result<GoType, TargetError> {
        match self.def(t).elem {
            Some(e)
                if matches!(
                    t.kind,
                    GoKind::Slice | GoKind::Array { .. } | GoKind::Pointer
                ) =>
            {
                Ok(self.types[e as usize].go.clone())
            }
            _ => Err(TargetError::NotIndexable { ty: t.name.clone() }),
        }
    }

    fn cast_type(&self, name: &str, _module: Option<&str>) -> Result<GoType, TargetError> {
        match self.types.iter().find(|t| t.go.name == name) {
            Some(t) => Ok(t.go.clone()),
            None => Err(TargetError::NoSuchType {
                name: name.into(),
                nearest: nearest(name, self.types.iter().map(|t| t.go.name.as_str()))
                    .into_iter()
                    .map(String::from)
                    .collect(),
            }),
        }
    }
}

/// Parses and, if the parse is clean, checks a script against the mock.
pub fn front_end(
    name: &str,
    src: &str,
    args: Option<Vec<String>>,
) -> (
    SourceMap,
    lang::ast::Script,
    Option<lang::TypeInfo>,
    Vec<lang::Diagnostic>,
) {
    let mut sm = SourceMap::new();
    let id: FileId = sm.add(name, src);
    let (script, mut diags) = lang::parse(id, src, &ParseOptions { args });
    let mut info = None;
    if !lang::diag::has_errors(&diags) {
        let (i, d) = lang::check(&script, &fake());
        diags.extend(d);
        info = Some(i);
    }
    (sm, script, info, diags)
}
