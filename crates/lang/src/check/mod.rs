//! The checker: name resolution, probe resolution and type checking with SystemTap's
//! rules, and the refusal of what a probe's back end cannot run. Script values are
//! `long`, `string`, `stack` (what `ubacktrace()` returns) or statistics aggregates; globals are program-wide, every other
//! name is a local of its probe or function (parameters shadow globals; other locals
//! never do); arrays (global only) have key tuple types and a value type.
//!
//! The passes, in order, one file each (bpftrace's `ast/passes` is the model); they
//! share the [`Checker`]'s tables and each reads what the ones before it recorded:
//!
//! ```text
//! ast::Script
//!   ──names.rs──────▶ globals, functions, and what every name and call resolves to
//!   ──points.rs─────▶ probe points: aliases expanded, kinds built, locations resolved
//!                     by the Target; which probes reach each function
//!   ──types.rs──────▶ types inferred to a fixpoint, then every conflict reported
//!       (calls.rs: built-ins, formats and script functions; context.rs: `$x->f`)
//!   ──capabilities.rs▶ what the back end of each probe cannot run, refused at its place
//!   ──▶ TypeInfo (+ dump.rs: `-d types`)
//! ```
//!
//! Nothing is declared with a type, so types are inferred across the whole program:
//! the types pass walks every body repeatedly, filling in types from literals,
//! operators, built-in signatures and the [`Target`], until a walk learns nothing new;
//! a last walk then reports every conflict and every type still unknown. No pass stops
//! at the first error.

mod calls;
mod capabilities;
mod context;
mod dump;
mod names;
mod points;
mod types;

use std::collections::HashMap;

use crate::ast::*;
use crate::backend::Backend;
use crate::builtins::BuiltinId;
use crate::diag::Diagnostic;
use crate::format::Format;
use crate::probe::ProbeKind;
use crate::span::Span;
use crate::target::{GoType, Location, Target, TargetError};

pub use calls::is_pretty;
pub use dump::dump_types;
/// The type of a script value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Long,
    String,
    /// A Go `float32` or `float64` read from the traced program, held as the bits of
    /// a `float64`: it can be kept in variables and printed (`%f`, `%e`, `%g`), not
    /// computed with.
    Float,
    /// A statistics aggregate, fed with `<<<` and read with `@count` and friends.
    Stats,
    /// A user stack, as `ubacktrace()` names it: an id that travels as such to the
    /// printer, which prints its addresses (`%s`, `print`) or its symbolised frames
    /// (`print_usyms()`, and wherever `sprint_ubacktrace()`'s value goes). It is a key,
    /// a value and an argument like any other, compares with `==` and `!=`, and is not
    /// a string: text is made from it only in user space.
    Stack,
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Type::Long => "long",
            Type::String => "string",
            Type::Float => "float",
            Type::Stats => "stats",
            Type::Stack => "stack",
        })
    }
}

/// A variable as the checker resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarInfo {
    pub name: String,
    /// Its declaration, or its first use for a local.
    pub span: Span,
    /// The scalar type, or the element type of an array.
    pub ty: Option<Type>,
    /// `Some(key types)` for an array.
    pub keys: Option<Vec<Option<Type>>>,
    /// `global x[N]`: the declared maximum number of entries.
    pub size: Option<i64>,
}

/// One probe point after alias expansion and resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedPoint {
    /// The point as written in the probe (or in the alias, for expanded ones).
    pub span: Span,
    pub kind: ProbeKind,
    /// For process probes: where the target resolved it. Empty for begin/end/timer.
    pub locations: Vec<Location>,
    /// The item index of the alias whose body runs before the probe body, if any.
    pub prologue: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeInfo {
    /// Index of the probe in `Script::items`.
    pub item: usize,
    /// Resolved points; optional points that did not resolve are left out.
    pub points: Vec<ResolvedPoint>,
    pub locals: Vec<VarInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    pub item: usize,
    pub name: String,
    pub params: Vec<VarInfo>,
    /// `None` if the function returns no value.
    pub ret: Option<Type>,
    /// All locals including the parameters (first).
    pub locals: Vec<VarInfo>,
}

/// The checker's result: side tables keyed by AST positions and ids.
#[derive(Clone, Debug, Default)]
pub struct TypeInfo {
    /// The type of every value expression whose type is known.
    pub exprs: HashMap<ExprId, Type>,
    /// For context expressions (`$x->f`, `@cast(...)->f`): the Go type at the first
    /// location of the probe. Codegen should ask the target again per location.
    pub go_types: HashMap<ExprId, GoType>,
    /// The outcome of every `@defined(...)`: codegen keeps only the branch that applies
    /// (the other one was checked with its errors silenced, as stap elides it).
    pub defined: HashMap<ExprId, bool>,
    /// In declaration order.
    pub globals: Vec<VarInfo>,
    pub functions: Vec<FunctionInfo>,
    /// One per `Item::Probe`, in order.
    pub probes: Vec<ProbeInfo>,
    /// What every variable name resolved to, keyed by the name's place: the `x` of
    /// `x = 1`, `a[k]`, `k in a`, `foreach ([k] in a)`, `@count(s)`.
    pub names: HashMap<Span, Binding>,
    /// What every call resolved to: a built-in or a script function.
    pub calls: HashMap<ExprId, Callee>,
    /// The parsed format of every `printf`/`sprintf` call, keyed by the call.
    pub formats: HashMap<ExprId, Format>,
    /// How long strings and printed lines may be.
    pub limits: crate::Limits,
}

/// What a variable name means where it is written (SystemTap's rule, applied once
/// here: a function's parameters shadow globals, other locals never do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    /// The global at this index of [`TypeInfo::globals`].
    Global(usize),
    /// A local (or parameter) of the probe or function being run, by its name.
    Local,
}

/// What a call names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Callee {
    Builtin(BuiltinId),
    /// The function at this index of [`TypeInfo::functions`].
    Function(usize),
}

impl TypeInfo {
    pub fn global(&self, name: &str) -> Option<&VarInfo> {
        self.globals.iter().find(|g| g.name == name)
    }

    pub fn function(&self, name: &str) -> Option<&FunctionInfo> {
        self.functions.iter().find(|f| f.name == name)
    }

    pub fn expr_type(&self, e: &Expr) -> Option<Type> {
        self.exprs.get(&e.id).copied()
    }

    /// What the name written at `id` resolved to.
    pub fn binding(&self, id: &Ident) -> Option<Binding> {
        self.names.get(&id.span).copied()
    }

    /// The global the name written at `id` names, if it names one.
    pub fn global_of(&self, id: &Ident) -> Option<&VarInfo> {
        match self.binding(id)? {
            Binding::Global(i) => self.globals.get(i),
            Binding::Local => None,
        }
    }

    /// What the call `e` resolved to.
    pub fn callee(&self, e: &Expr) -> Option<Callee> {
        self.calls.get(&e.id).copied()
    }

    /// The script function the call `e` resolved to.
    pub fn called_function(&self, e: &Expr) -> Option<&FunctionInfo> {
        match self.callee(e)? {
            Callee::Function(i) => self.functions.get(i),
            Callee::Builtin(_) => None,
        }
    }

    /// The parsed format of the `printf`/`sprintf` call `e`.
    pub fn format(&self, e: &Expr) -> Option<&Format> {
        self.formats.get(&e.id)
    }
}

impl ProbeInfo {
    /// The back ends the probe's body runs in (a probe may list points of both).
    pub fn backends(&self) -> impl Iterator<Item = Backend> + '_ {
        [Backend::Kernel, Backend::User]
            .into_iter()
            .filter(|b| self.points.iter().any(|p| Backend::of(&p.kind) == *b))
    }
}

/// Resolves names, interprets probe points and infers and checks all types, with the
/// default [`crate::Limits`].
pub fn check(script: &Script, target: &dyn Target) -> (TypeInfo, Vec<Diagnostic>) {
    check_with(script, target, crate::Limits::default())
}

/// [`check`] with these limits (`-D MAXSTRINGLEN=N`), which the back ends are told.
pub fn check_with(
    script: &Script,
    target: &dyn Target,
    limits: crate::Limits,
) -> (TypeInfo, Vec<Diagnostic>) {
    let mut c = Checker::new(script, target);
    c.limits = limits;
    c.declare();
    c.resolve_points();
    c.resolve_names();
    c.link_functions_to_probes();
    c.infer_types();
    c.refuse_what_backends_cannot_run();
    let info = c.info();
    (info, c.diags)
}

// ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Array {
    arity: Option<usize>,
    keys: Vec<Option<Type>>,
    /// Where the arity was fixed.
    span: Option<Span>,
}

#[derive(Clone, Debug)]
struct Var {
    name: String,
    span: Span,
    ty: Option<Type>,
    ty_span: Span,
    array: Option<Array>,
    scalar_span: Option<Span>,
    size: Option<i64>,
    assigned: bool,
    used: bool,
    param: bool,
    /// An error about this variable was reported; don't add "cannot infer" on top.
    poisoned: bool,
}

impl Var {
    fn new(name: &str, span: Span) -> Var {
        Var {
            name: name.to_string(),
            span,
            ty: None,
            ty_span: span,
            array: None,
            scalar_span: None,
            size: None,
            assigned: false,
            used: false,
            param: false,
            poisoned: false,
        }
    }

    fn info(&self) -> VarInfo {
        VarInfo {
            name: self.name.clone(),
            span: self.span,
            ty: self.ty,
            keys: self.array.as_ref().map(|a| a.keys.clone()),
            size: self.size,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VarRef {
    Global(usize),
    Local(usize),
}

/// What an expression yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Known(Type),
    Hist,
    /// A Go value pretty-printed (`$x$`, `$x$$`, `$$vars`): sent whole and formatted
    /// in user space, so it can only be printed.
    Pretty,
    Void,
    Unknown,
}

impl Ty {
    fn known(self) -> Option<Type> {
        match self {
            Ty::Known(t) => Some(t),
            _ => None,
        }
    }
}

/// An assignable place.
#[derive(Clone, Copy, Debug)]
enum Place {
    Scalar(VarRef),
    Elem(VarRef),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Probe(usize),
    Function(usize),
}

struct FnState {
    item: usize,
    locals: Vec<Var>,
    /// What each name in the body resolved to (see [`Checker::refs`]).
    refs: HashMap<Span, VarRef>,
    ret: Option<Type>,
    ret_span: Span,
    returns_value: bool,
}

struct ProbeState {
    item: usize,
    points: Vec<ResolvedPoint>,
    locals: Vec<Var>,
    refs: HashMap<Span, VarRef>,
}

struct Checker<'a> {
    script: &'a Script,
    target: &'a dyn Target,
    globals: Vec<Var>,
    fns: Vec<FnState>,
    fn_index: HashMap<&'a str, usize>,
    probes: Vec<ProbeState>,
    exprs: HashMap<ExprId, Type>,
    go_types: HashMap<ExprId, GoType>,
    defined: HashMap<ExprId, bool>,
    /// For each function, the probes whose handlers can reach it through calls.
    fn_probes: Vec<Vec<usize>>,
    /// For each function, the functions it calls directly.
    fn_calls: Vec<Vec<usize>>,
    diags: Vec<Diagnostic>,
    report: bool,
    suppress: u32,
    /// Errors swallowed while `suppress` was set (how `@defined` learns its answer).
    suppressed: u32,
    changed: bool,
    /// Probe alias names (`ProbePoint::shape`) to their item index.
    aliases: HashMap<String, usize>,
    calls: HashMap<ExprId, Callee>,
    formats: HashMap<ExprId, Format>,
    limits: crate::Limits,
    // The body being checked.
    body: Body,
    locals: Vec<Var>,
    /// What each variable name of the body resolved to, keyed by the name's place
    /// (filled by the names pass, read by the later ones).
    refs: HashMap<Span, VarRef>,
    loops: u32,
}

fn ann(t: Option<TypeAnn>) -> Option<Type> {
    t.map(|t| match t {
        TypeAnn::Long => Type::Long,
        TypeAnn::String => Type::String,
    })
}

fn returns_value(s: &Stmt) -> bool {
    match &s.kind {
        StmtKind::Return(Some(_)) => true,
        StmtKind::Block(b) => b.stmts.iter().any(returns_value),
        StmtKind::If { then, els, .. } => {
            returns_value(then) || els.as_deref().is_some_and(returns_value)
        }
        StmtKind::While { body, .. } | StmtKind::For { body, .. } => returns_value(body),
        StmtKind::Foreach(f) => returns_value(&f.body),
        _ => false,
    }
}

fn target_err(span: Span, e: &TargetError) -> Diagnostic {
    let mut d = Diagnostic::error(span, e.to_string());
    if let Some(h) = e.help() {
        d = d.with_help(h);
    }
    d
}

fn describe_point(k: &ProbeKind) -> &'static str {
    match k {
        ProbeKind::Begin => "a 'begin' probe",
        ProbeKind::End => "an 'end' probe",
        ProbeKind::Timer { .. } => "a timer probe",
        ProbeKind::Sample { .. } => "a sampling probe ('timer.profile', 'timer.hz')",
        ProbeKind::Process(_) => "a process probe",
    }
}

impl<'a> Checker<'a> {
    fn new(script: &'a Script, target: &'a dyn Target) -> Checker<'a> {
        Checker {
            script,
            target,
            globals: Vec::new(),
            fns: Vec::new(),
            fn_index: HashMap::new(),
            probes: Vec::new(),
            exprs: HashMap::new(),
            go_types: HashMap::new(),
            defined: HashMap::new(),
            fn_probes: Vec::new(),
            fn_calls: Vec::new(),
            diags: Vec::new(),
            report: true,
            suppress: 0,
            suppressed: 0,
            changed: false,
            aliases: HashMap::new(),
            calls: HashMap::new(),
            formats: HashMap::new(),
            limits: crate::Limits::default(),
            body: Body::Probe(0),
            locals: Vec::new(),
            refs: HashMap::new(),
            loops: 0,
        }
    }

    fn err(&mut self, d: Diagnostic) {
        if self.suppress > 0 {
            self.suppressed += 1;
        } else if self.report {
            self.diags.push(d);
        }
    }

    fn error(&mut self, span: Span, msg: impl Into<String>) {
        self.err(Diagnostic::error(span, msg));
    }

    /// Every body the passes walk, in their order: functions, then each probe with the
    /// prologues of the aliases it came through before its own block. A probe none of
    /// whose points resolved is left out (all optional, or already reported): checking
    /// its body would only add follow-on errors.
    fn bodies(&self) -> Vec<(Body, Vec<&'a Block>)> {
        let script = self.script;
        let mut out = Vec::new();
        for (fi, f) in self.fns.iter().enumerate() {
            if let Item::Function(def) = &script.items[f.item] {
                out.push((Body::Function(fi), vec![&def.body]));
            }
        }
        for (pi, p) in self.probes.iter().enumerate() {
            let Item::Probe(def) = &script.items[p.item] else {
                continue;
            };
            if p.points.is_empty() {
                continue;
            }
            let mut blocks = Vec::new();
            let mut seen = Vec::new();
            for rp in &p.points {
                if let Some(ai) = rp.prologue
                    && !seen.contains(&ai)
                    && let Item::Alias(a) = &script.items[ai]
                {
                    seen.push(ai);
                    blocks.push(&a.body);
                }
            }
            blocks.push(&def.body);
            out.push((Body::Probe(pi), blocks));
        }
        out
    }

    /// Runs `f` on every block of every body (see [`Checker::bodies`]), each with its
    /// body's locals and names current.
    fn for_each_body(&mut self, mut f: impl FnMut(&mut Self, &'a Block)) {
        for (body, blocks) in self.bodies() {
            self.enter(body);
            for b in blocks {
                f(self, b);
            }
            self.leave();
        }
    }

    /// Makes `body`'s locals and name table the current ones.
    fn enter(&mut self, body: Body) {
        self.body = body;
        self.loops = 0;
        let (locals, refs) = match body {
            Body::Probe(i) => {
                let p = &mut self.probes[i];
                (std::mem::take(&mut p.locals), std::mem::take(&mut p.refs))
            }
            Body::Function(i) => {
                let f = &mut self.fns[i];
                (std::mem::take(&mut f.locals), std::mem::take(&mut f.refs))
            }
        };
        self.locals = locals;
        self.refs = refs;
    }

    fn leave(&mut self) {
        let locals = std::mem::take(&mut self.locals);
        let refs = std::mem::take(&mut self.refs);
        match self.body {
            Body::Probe(i) => {
                self.probes[i].locals = locals;
                self.probes[i].refs = refs;
            }
            Body::Function(i) => {
                self.fns[i].locals = locals;
                self.fns[i].refs = refs;
            }
        }
    }

    /// The probes a body runs in: itself, or those that reach the function.
    fn probes_of_body(&self) -> Vec<usize> {
        match self.body {
            Body::Probe(pi) => vec![pi],
            Body::Function(fi) => self.fn_probes[fi].clone(),
        }
    }

    fn info(&self) -> TypeInfo {
        let mut names = HashMap::new();
        let bindings = |refs: &HashMap<Span, VarRef>, names: &mut HashMap<Span, Binding>| {
            for (span, r) in refs {
                let b = match r {
                    VarRef::Global(i) => Binding::Global(*i),
                    VarRef::Local(_) => Binding::Local,
                };
                names.insert(*span, b);
            }
        };
        for f in &self.fns {
            bindings(&f.refs, &mut names);
        }
        for p in &self.probes {
            bindings(&p.refs, &mut names);
        }
        TypeInfo {
            exprs: self.exprs.clone(),
            go_types: self.go_types.clone(),
            defined: self.defined.clone(),
            globals: self.globals.iter().map(Var::info).collect(),
            functions: self
                .fns
                .iter()
                .map(|f| {
                    let Item::Function(def) = &self.script.items[f.item] else {
                        unreachable!("fns only index functions")
                    };
                    FunctionInfo {
                        item: f.item,
                        name: def.name.name.clone(),
                        params: f.locals.iter().filter(|v| v.param).map(Var::info).collect(),
                        ret: if f.returns_value { f.ret } else { None },
                        locals: f.locals.iter().map(Var::info).collect(),
                    }
                })
                .collect(),
            probes: self
                .probes
                .iter()
                .map(|p| ProbeInfo {
                    item: p.item,
                    points: p.points.clone(),
                    locals: p.locals.iter().map(Var::info).collect(),
                })
                .collect(),
            names,
            calls: self.calls.clone(),
            formats: self.formats.clone(),
            limits: self.limits,
        }
    }
}
