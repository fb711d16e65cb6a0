//! Name resolution and type checking, with SystemTap's rules. Script values are `long`,
//! `string` or statistics aggregates; globals are program-wide, every other name is a
//! local of its probe or function; arrays (global only) have key tuple types and a value
//! type. Nothing is declared with a type, so types are inferred across the whole
//! program: the checker walks every body repeatedly, filling in types from literals,
//! operators, built-in signatures and the [`Target`], until a pass learns nothing new;
//! a last pass then reports every conflict and every type still unknown.
//!
//! Probe points are interpreted here too (aliases expanded, [`crate::probe`] kinds
//! built, process points resolved by the target), since the validity of a context
//! variable or a built-in depends on the probe it is used in.

use std::collections::HashMap;

use crate::ast::*;
use crate::builtins::{Builtin, Params, builtin, format_args};
use crate::diag::{Diagnostic, nearest};
use crate::print::{Printer, print_probe_point};
use crate::probe::{Ctx, ProbeKind, probe_kind};
use crate::span::Span;
use crate::target::{GoType, Location, Target, TargetError, script_type};

/// The type of a script value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Long,
    String,
    /// A statistics aggregate, fed with `<<<` and read with `@count` and friends.
    Stats,
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Type::Long => "long",
            Type::String => "string",
            Type::Stats => "stats",
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
}

/// Resolves names, interprets probe points and infers and checks all types.
pub fn check(script: &Script, target: &dyn Target) -> (TypeInfo, Vec<Diagnostic>) {
    let mut c = Checker::new(script, target);
    c.run();
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
    ret: Option<Type>,
    ret_span: Span,
    returns_value: bool,
}

struct ProbeState {
    item: usize,
    points: Vec<ResolvedPoint>,
    locals: Vec<Var>,
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
    diags: Vec<Diagnostic>,
    report: bool,
    suppress: u32,
    /// Errors swallowed while `suppress` was set (how `@defined` learns its answer).
    suppressed: u32,
    changed: bool,
    // The body being checked.
    body: Body,
    locals: Vec<Var>,
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
            diags: Vec::new(),
            report: true,
            suppress: 0,
            suppressed: 0,
            changed: false,
            body: Body::Probe(0),
            locals: Vec::new(),
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

    // ---- declarations ----

    fn declare(&mut self) {
        let mut aliases: HashMap<String, usize> = HashMap::new();
        for (i, item) in self.script.items.iter().enumerate() {
            match item {
                Item::Global(g) => {
                    if let Some(prev) = self.globals.iter().find(|v| v.name == g.name.name) {
                        let d = Diagnostic::error(
                            g.name.span,
                            format!("global '{}' is declared twice", g.name.name),
                        )
                        .with_note(Some(prev.span), "first declared here");
                        self.diags.push(d);
                        continue;
                    }
                    let mut v = Var::new(&g.name.name, g.name.span);
                    if g.size.is_some() {
                        v.array = Some(Array {
                            arity: None,
                            keys: Vec::new(),
                            span: None,
                        });
                        v.size = g.size;
                    }
                    if let Some(init) = &g.init {
                        v.ty = Some(match init {
                            Literal::Num(_) => Type::Long,
                            Literal::Str(_) => Type::String,
                        });
                        v.ty_span = g.span;
                        v.assigned = true;
                    }
                    self.globals.push(v);
                }
                Item::Function(f) => {
                    if let Some(&prev) = self.fn_index.get(f.name.name.as_str()) {
                        let Item::Function(p) = &self.script.items[self.fns[prev].item] else {
                            continue;
                        };
                        let d = Diagnostic::error(
                            f.name.span,
                            format!("function '{}' is defined twice", f.name.name),
                        )
                        .with_note(Some(p.name.span), "first defined here");
                        self.diags.push(d);
                        continue;
                    }
                    let mut locals = Vec::new();
                    for p in &f.params {
                        if locals.iter().any(|v: &Var| v.name == p.name.name) {
                            self.diags.push(Diagnostic::error(
                                p.name.span,
                                format!("parameter '{}' is declared twice", p.name.name),
                            ));
                        }
                        let mut v = Var::new(&p.name.name, p.name.span);
                        v.ty = ann(p.ty);
                        v.assigned = true;
                        v.param = true;
                        locals.push(v);
                    }
                    self.fn_index.insert(&f.name.name, self.fns.len());
                    self.fns.push(FnState {
                        item: i,
                        locals,
                        ret: ann(f.ret),
                        ret_span: f.name.span,
                        returns_value: f.ret.is_some() || f.body.stmts.iter().any(returns_value),
                    });
                }
                Item::Alias(a) => {
                    if a.name.components.iter().any(|c| c.arg.is_some()) {
                        self.diags.push(Diagnostic::error(
                            a.name.span,
                            "a probe alias name cannot have arguments",
                        ));
                    }
                    aliases.insert(a.name.shape(), i);
                }
                Item::Probe(_) => {}
            }
        }
        for (i, item) in self.script.items.iter().enumerate() {
            if let Item::Probe(p) = item {
                let mut points = Vec::new();
                for pp in &p.points {
                    self.expand_point(pp, None, &aliases, 0, &mut points);
                }
                self.probes.push(ProbeState {
                    item: i,
                    points,
                    locals: Vec::new(),
                });
            }
        }
        self.reachability();
    }

    /// Which probes reach each function, so that built-ins called inside a function are
    /// checked against the probes it runs in.
    fn reachability(&mut self) {
        let script = self.script;
        let mut calls: Vec<Vec<usize>> = Vec::new();
        let callees = |body: &'a Block, out: &mut Vec<usize>| {
            for s in &body.stmts {
                walk_stmt(s, &mut |e| {
                    if let ExprKind::Call { name, .. } = &e.kind
                        && let Some(&fi) = self.fn_index.get(name.name.as_str())
                        && !out.contains(&fi)
                    {
                        out.push(fi);
                    }
                });
            }
        };
        for f in &self.fns {
            let mut out = Vec::new();
            if let Item::Function(def) = &script.items[f.item] {
                callees(&def.body, &mut out);
            }
            calls.push(out);
        }
        let mut fn_probes = vec![Vec::new(); self.fns.len()];
        for (pi, p) in self.probes.iter().enumerate() {
            let mut work = Vec::new();
            if let Item::Probe(def) = &script.items[p.item] {
                callees(&def.body, &mut work);
            }
            for rp in &p.points {
                if let Some(ai) = rp.prologue
                    && let Item::Alias(a) = &script.items[ai]
                {
                    callees(&a.body, &mut work);
                }
            }
            while let Some(fi) = work.pop() {
                let reached: &mut Vec<usize> = &mut fn_probes[fi];
                if reached.contains(&pi) {
                    continue;
                }
                reached.push(pi);
                work.extend(calls[fi].iter().copied());
            }
        }
        self.fn_probes = fn_probes;
    }

    fn expand_point(
        &mut self,
        pp: &ProbePoint,
        prologue: Option<usize>,
        aliases: &HashMap<String, usize>,
        depth: u32,
        out: &mut Vec<ResolvedPoint>,
    ) {
        if let Some(&ai) = aliases.get(&pp.shape())
            && pp.components.iter().all(|c| c.arg.is_none())
        {
            if depth > 8 {
                self.diags.push(Diagnostic::error(
                    pp.span,
                    format!("probe alias '{}' expands into itself", pp.shape()),
                ));
                return;
            }
            let Item::Alias(a) = &self.script.items[ai] else {
                return;
            };
            if prologue.is_some() {
                // Nested aliases would need two prologues; stap allows it, gotap does not yet.
                self.diags.push(Diagnostic::error(
                    pp.span,
                    "a probe alias cannot be defined in terms of another alias",
                ));
                return;
            }
            for inner in &a.points {
                self.expand_point(inner, Some(ai), aliases, depth + 1, out);
            }
            return;
        }
        let kind = match probe_kind(pp) {
            Ok(k) => k,
            Err(d) => {
                self.diags.push(d);
                return;
            }
        };
        let mut locations = Vec::new();
        if let ProbeKind::Process(proc_probe) = &kind {
            match self.target.resolve_probe_point(proc_probe) {
                Ok(l) if l.is_empty() && !pp.optional => {
                    self.diags.push(Diagnostic::error(
                        pp.span,
                        format!(
                            "probe point '{}' matches no location",
                            print_probe_point(pp)
                        ),
                    ));
                    return;
                }
                Ok(l) => locations = l,
                Err(_) if pp.optional => return,
                Err(e) => {
                    self.diags.push(target_err(pp.span, &e));
                    return;
                }
            }
            if locations.is_empty() {
                return;
            }
        }
        out.push(ResolvedPoint {
            span: pp.span,
            kind,
            locations,
            prologue,
        });
    }

    // ---- driver ----

    fn run(&mut self) {
        self.declare();
        self.report = false;
        for _ in 0..32 {
            self.changed = false;
            self.pass();
            if !self.changed {
                break;
            }
        }
        self.report = true;
        self.pass();
        self.final_checks();
    }

    fn pass(&mut self) {
        for fi in 0..self.fns.len() {
            let Item::Function(f) = &self.script.items[self.fns[fi].item] else {
                continue;
            };
            self.enter(Body::Function(fi));
            self.block(&f.body);
            self.leave();
        }
        for pi in 0..self.probes.len() {
            let Item::Probe(p) = &self.script.items[self.probes[pi].item] else {
                continue;
            };
            // A probe none of whose points resolved is dropped (all optional) or already
            // reported; checking its body would only add follow-on errors.
            if self.probes[pi].points.is_empty() {
                continue;
            }
            self.enter(Body::Probe(pi));
            let mut seen = Vec::new();
            for rp in self.probes[pi].points.clone() {
                if let Some(ai) = rp.prologue
                    && !seen.contains(&ai)
                {
                    seen.push(ai);
                    if let Item::Alias(a) = &self.script.items[ai] {
                        self.block(&a.body);
                    }
                }
            }
            self.block(&p.body);
            self.leave();
        }
    }

    fn enter(&mut self, body: Body) {
        self.body = body;
        self.loops = 0;
        self.locals = match body {
            Body::Probe(i) => std::mem::take(&mut self.probes[i].locals),
            Body::Function(i) => std::mem::take(&mut self.fns[i].locals),
        };
    }

    fn leave(&mut self) {
        let locals = std::mem::take(&mut self.locals);
        match self.body {
            Body::Probe(i) => self.probes[i].locals = locals,
            Body::Function(i) => self.fns[i].locals = locals,
        }
    }

    fn final_checks(&mut self) {
        for g in self.globals.clone() {
            if g.ty.is_none() && g.used {
                self.error(
                    g.span,
                    format!("cannot infer the type of global '{}'", g.name),
                );
            } else if !g.used {
                self.diags.push(Diagnostic::warning(
                    g.span,
                    format!("global '{}' is never used", g.name),
                ));
            }
        }
        let mut all: Vec<Var> = Vec::new();
        for f in &self.fns {
            all.extend(f.locals.iter().cloned());
        }
        for p in &self.probes {
            all.extend(p.locals.iter().cloned());
        }
        for v in all {
            if v.poisoned {
                continue;
            }
            if v.ty.is_none() {
                let what = if v.param { "parameter" } else { "local" };
                self.error(
                    v.span,
                    format!("cannot infer the type of {what} '{}'", v.name),
                );
            } else if !v.assigned {
                self.diags.push(Diagnostic::warning(
                    v.span,
                    format!("local '{}' is read but never assigned", v.name),
                ));
            }
        }
        for fi in 0..self.fns.len() {
            if self.fns[fi].returns_value && self.fns[fi].ret.is_none() {
                let span = self.fns[fi].ret_span;
                let Item::Function(f) = &self.script.items[self.fns[fi].item] else {
                    continue;
                };
                let name = f.name.name.clone();
                self.error(
                    span,
                    format!("cannot infer the return type of function '{name}'"),
                );
            }
        }
    }

    fn info(&self) -> TypeInfo {
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
        }
    }

    // ---- variables ----

    fn var(&self, r: VarRef) -> &Var {
        match r {
            VarRef::Global(i) => &self.globals[i],
            VarRef::Local(i) => &self.locals[i],
        }
    }

    fn var_mut(&mut self, r: VarRef) -> &mut Var {
        match r {
            VarRef::Global(i) => &mut self.globals[i],
            VarRef::Local(i) => &mut self.locals[i],
        }
    }

    /// Globals win; any other name is a local of the current body, created on first use.
    fn resolve(&mut self, id: &Ident) -> VarRef {
        if let Some(i) = self
            .locals
            .iter()
            .position(|v| v.name == id.name && v.param)
        {
            return VarRef::Local(i);
        }
        if let Some(i) = self.globals.iter().position(|v| v.name == id.name) {
            self.globals[i].used = true;
            return VarRef::Global(i);
        }
        if let Some(i) = self.locals.iter().position(|v| v.name == id.name) {
            return VarRef::Local(i);
        }
        self.locals.push(Var::new(&id.name, id.span));
        self.changed = true;
        VarRef::Local(self.locals.len() - 1)
    }

    /// Fixes or checks the (element) type of a variable.
    fn set_type(&mut self, r: VarRef, t: Type, span: Span) {
        let v = self.var(r);
        match v.ty {
            None => {
                let v = self.var_mut(r);
                v.ty = Some(t);
                v.ty_span = span;
                self.changed = true;
            }
            Some(old) if old == t => {}
            Some(old) => {
                let name = v.name.clone();
                let ty_span = v.ty_span;
                self.err(
                    Diagnostic::error(span, format!("'{name}' is {old}, but is used as {t} here"))
                        .with_note(Some(ty_span), format!("'{name}' is {old} because of this")),
                );
            }
        }
    }

    fn use_scalar(&mut self, r: VarRef, id: &Ident) -> bool {
        let v = self.var(r);
        if v.array.is_some() {
            let name = v.name.clone();
            self.err(Diagnostic::error(
                id.span,
                format!("'{name}' is an array; use it with an index, as in '{name}[key]'"),
            ));
            return false;
        }
        if v.scalar_span.is_none() {
            self.var_mut(r).scalar_span = Some(id.span);
        }
        true
    }

    /// Checks `array[keys]` and returns the array.
    fn use_array(&mut self, id: &Ident, keys: &[Expr]) -> Option<VarRef> {
        let r = self.resolve(id);
        if let VarRef::Local(_) = r {
            self.var_mut(r).poisoned = true;
            self.err(
                Diagnostic::error(id.span, format!("'{}' is not a global array", id.name))
                    .with_help(format!("arrays must be declared with 'global {}'", id.name)),
            );
            for k in keys {
                self.value(k, None);
            }
            return None;
        }
        let key_tys: Vec<Ty> = keys.iter().map(|k| self.value(k, None)).collect();
        self.index_array(r, id, keys, &key_tys).then_some(r)
    }

    fn index_array(&mut self, r: VarRef, id: &Ident, keys: &[Expr], key_tys: &[Ty]) -> bool {
        let n = keys.len();
        let v = self.var(r);
        if let Some(s) = v.scalar_span
            && v.array.is_none()
        {
            let name = v.name.clone();
            self.err(
                Diagnostic::error(id.span, format!("'{name}' is not an array"))
                    .with_note(Some(s), format!("'{name}' is used as a scalar here")),
            );
            return false;
        }
        let arr = self.var_mut(r).array.get_or_insert(Array {
            arity: None,
            keys: Vec::new(),
            span: None,
        });
        match arr.arity {
            None => {
                arr.arity = Some(n);
                arr.keys = vec![None; n];
                arr.span = Some(id.span);
                self.changed = true;
            }
            Some(a) if a != n => {
                let at = arr.span;
                let name = id.name.clone();
                self.err(
                    Diagnostic::error(
                        id.span,
                        format!(
                            "array '{name}' has {a} index{}, but is used with {n} here",
                            if a == 1 { "" } else { "es" }
                        ),
                    )
                    .with_note(at, format!("'{name}' first used with {a} here")),
                );
                return false;
            }
            Some(_) => {}
        }
        for (i, (k, t)) in keys.iter().zip(key_tys).enumerate() {
            self.set_key_type(r, i, *t, k);
        }
        true
    }

    fn set_key_type(&mut self, r: VarRef, i: usize, t: Ty, k: &Expr) {
        let Some(arr) = &self.var(r).array else {
            return;
        };
        let old = arr.keys.get(i).copied().flatten();
        match (old, t) {
            (None, Ty::Known(t)) => {
                if let Some(arr) = &mut self.var_mut(r).array
                    && let Some(slot) = arr.keys.get_mut(i)
                {
                    *slot = Some(t);
                    self.changed = true;
                }
            }
            (Some(old), Ty::Unknown) => self.hint(k, old),
            (Some(old), Ty::Known(t)) if old != t => {
                let name = self.var(r).name.clone();
                self.error(
                    k.span,
                    format!(
                        "key {} of array '{name}' is {old}, but {t} is used here",
                        i + 1
                    ),
                );
            }
            _ => {}
        }
    }

    fn key_type(&self, r: VarRef, i: usize) -> Option<Type> {
        self.var(r)
            .array
            .as_ref()
            .and_then(|a| a.keys.get(i).copied().flatten())
    }

    /// Resolves an assignable expression.
    fn place(&mut self, e: &Expr, what: &str) -> Option<Place> {
        match &e.kind {
            ExprKind::Var(id) => {
                let r = self.resolve(id);
                self.use_scalar(r, id).then_some(Place::Scalar(r))
            }
            ExprKind::Index { array, keys } => self.use_array(array, keys).map(Place::Elem),
            ExprKind::Target(_) => {
                self.error(e.span, format!("cannot {what} a context variable"));
                None
            }
            _ => {
                self.error(e.span, format!("cannot {what} this expression"));
                None
            }
        }
    }

    /// Records the type of an assigned place for the side table, once it is known.
    fn record(&mut self, e: &Expr, r: VarRef) {
        if let Some(t) = self.var(r).ty {
            self.exprs.insert(e.id, t);
        }
    }

    fn place_ref(p: Place) -> VarRef {
        match p {
            Place::Scalar(r) | Place::Elem(r) => r,
        }
    }

    /// Tells an expression of still-unknown type which type its context needs.
    fn hint(&mut self, e: &Expr, t: Type) {
        match &e.kind {
            ExprKind::Var(id) => {
                let r = self.resolve(id);
                if self.var(r).ty.is_none() && self.var(r).array.is_none() {
                    self.set_type(r, t, e.span);
                }
            }
            ExprKind::Index { array, .. } => {
                let r = self.resolve(array);
                if self.var(r).ty.is_none() && matches!(r, VarRef::Global(_)) {
                    self.set_type(r, t, e.span);
                }
            }
            ExprKind::Call { name, .. } => {
                if let Some(&fi) = self.fn_index.get(name.name.as_str())
                    && self.fns[fi].ret.is_none()
                    && self.fns[fi].returns_value
                {
                    self.fns[fi].ret = Some(t);
                    self.fns[fi].ret_span = e.span;
                    self.changed = true;
                }
            }
            ExprKind::Ternary { then, els, .. } => {
                self.hint(then, t);
                self.hint(els, t);
            }
            ExprKind::Assign { op: None, lhs, rhs } => {
                self.hint(lhs, t);
                self.hint(rhs, t);
            }
            _ => {}
        }
        self.exprs.entry(e.id).or_insert(t);
    }

    // ---- statements ----

    fn block(&mut self, b: &Block) {
        for s in &b.stmts {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Block(b) => self.block(b),
            StmtKind::Expr(e) => {
                self.expr(e);
            }
            StmtKind::If { cond, then, els } => {
                self.cond(cond);
                let live = self.defined_cond(cond);
                self.maybe_dead(live == Some(false), |c| c.stmt(then));
                if let Some(e) = els {
                    self.maybe_dead(live == Some(true), |c| c.stmt(e));
                }
            }
            StmtKind::While { cond, body } => {
                self.cond(cond);
                self.loop_body(body);
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                if let Some(e) = init {
                    self.expr(e);
                }
                if let Some(c) = cond {
                    self.cond(c);
                }
                if let Some(e) = step {
                    self.expr(e);
                }
                self.loop_body(body);
            }
            StmtKind::Foreach(f) => self.foreach(f),
            StmtKind::Break | StmtKind::Continue => {
                if self.loops == 0 {
                    let w = if s.kind == StmtKind::Break {
                        "break"
                    } else {
                        "continue"
                    };
                    self.error(s.span, format!("'{w}' outside a loop"));
                }
            }
            StmtKind::Next => {
                if let Body::Function(_) = self.body {
                    self.err(
                        Diagnostic::error(s.span, "'next' can only be used in a probe handler")
                            .with_help("return from the function and call 'next' in the probe"),
                    );
                }
            }
            StmtKind::Return(v) => self.ret(s, v.as_ref()),
            StmtKind::Delete(e) => self.delete(e),
            StmtKind::Empty => {}
        }
    }

    /// For `if (@defined($x))` and `if (!@defined($x))`: which branch survives.
    fn defined_cond(&self, cond: &Expr) -> Option<bool> {
        match &cond.kind {
            ExprKind::Defined(_) => self.defined.get(&cond.id).copied(),
            ExprKind::Unary {
                op: UnOp::Not,
                expr,
            } => self.defined_cond(expr).map(|b| !b),
            _ => None,
        }
    }

    /// Checks a branch that `@defined` rules out with its diagnostics silenced.
    fn maybe_dead<T>(&mut self, dead: bool, f: impl FnOnce(&mut Self) -> T) -> T {
        if dead {
            self.suppress += 1;
        }
        let r = f(self);
        if dead {
            self.suppress -= 1;
        }
        r
    }

    fn loop_body(&mut self, body: &Stmt) {
        self.loops += 1;
        self.stmt(body);
        self.loops -= 1;
    }

    fn cond(&mut self, e: &Expr) {
        self.expect(e, Type::Long, "a condition");
    }

    fn ret(&mut self, s: &Stmt, v: Option<&Expr>) {
        let Body::Function(fi) = self.body else {
            self.err(
                Diagnostic::error(s.span, "'return' can only be used in a function")
                    .with_help("use 'next' to leave a probe handler early"),
            );
            if let Some(e) = v {
                self.expr(e);
            }
            return;
        };
        let Some(e) = v else {
            return;
        };
        let want = self.fns[fi].ret;
        let t = self.value(e, want);
        match (want, t) {
            (None, Ty::Known(t)) => {
                self.fns[fi].ret = Some(t);
                self.fns[fi].ret_span = e.span;
                self.changed = true;
            }
            (Some(w), Ty::Known(t)) if w != t => {
                let at = self.fns[fi].ret_span;
                self.err(
                    Diagnostic::error(e.span, format!("function returns {w}, but this is {t}"))
                        .with_note(Some(at), format!("the return type became {w} here")),
                );
            }
            _ => {}
        }
    }

    fn delete(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Var(id) => {
                // `delete arr` clears a whole array; `delete x` resets a scalar.
                self.resolve(id);
            }
            ExprKind::Index { array, keys } => {
                self.use_array(array, keys);
            }
            ExprKind::Target(_) => self.error(e.span, "cannot delete a context variable"),
            _ => self.error(
                e.span,
                "'delete' needs a variable, an array or an array element",
            ),
        }
    }

    fn foreach(&mut self, f: &Foreach) {
        let r = self.resolve(&f.array);
        let n = f.keys.len();
        let ok = match r {
            VarRef::Local(_) => {
                self.var_mut(r).poisoned = true;
                self.err(
                    Diagnostic::error(
                        f.array.span,
                        format!(
                            "'foreach' over '{}', which is not a global array",
                            f.array.name
                        ),
                    )
                    .with_help(format!(
                        "arrays must be declared with 'global {}'",
                        f.array.name
                    )),
                );
                false
            }
            VarRef::Global(_) => {
                let v = self.var(r);
                if v.array.is_none() && v.scalar_span.is_some() {
                    let name = v.name.clone();
                    let s = v.scalar_span;
                    self.err(
                        Diagnostic::error(
                            f.array.span,
                            format!("'foreach' over '{name}', which is not an array"),
                        )
                        .with_note(s, format!("'{name}' is used as a scalar here")),
                    );
                    false
                } else {
                    let arity = v.array.as_ref().and_then(|a| a.arity);
                    match arity {
                        Some(a) if a != n => {
                            let at = v.array.as_ref().and_then(|a| a.span);
                            self.err(
                                Diagnostic::error(
                                    f.array.span,
                                    format!(
                                        "array '{}' has {a} index{}, but 'foreach' names {n} key{}",
                                        f.array.name,
                                        if a == 1 { "" } else { "es" },
                                        if n == 1 { "" } else { "s" }
                                    ),
                                )
                                .with_note(
                                    at,
                                    format!("'{}' first used with {a} here", f.array.name),
                                ),
                            );
                            false
                        }
                        Some(_) => true,
                        None => {
                            let arr = self.var_mut(r).array.get_or_insert(Array {
                                arity: None,
                                keys: Vec::new(),
                                span: None,
                            });
                            arr.arity = Some(n);
                            arr.keys = vec![None; n];
                            arr.span = Some(f.array.span);
                            self.changed = true;
                            true
                        }
                    }
                }
            }
        };
        for (i, k) in f.keys.iter().enumerate() {
            let kr = self.resolve(k);
            self.var_mut(kr).assigned = true;
            if !ok {
                self.var_mut(kr).poisoned = true;
                continue;
            }
            match (self.key_type(r, i), self.var(kr).ty) {
                (Some(t), _) => self.set_type(kr, t, k.span),
                (None, Some(t)) => {
                    if let Some(arr) = &mut self.var_mut(r).array {
                        arr.keys[i] = Some(t);
                        self.changed = true;
                    }
                }
                (None, None) => {}
            }
        }
        if let Some(v) = &f.value {
            let vr = self.resolve(v);
            self.var_mut(vr).assigned = true;
            if !ok {
                self.var_mut(vr).poisoned = true;
            } else {
                match (self.var(r).ty, self.var(vr).ty) {
                    (Some(Type::Stats), _) => self.err(
                        Diagnostic::error(
                            v.span,
                            format!(
                                "cannot bind the value of statistics array '{}'",
                                f.array.name
                            ),
                        )
                        .with_help(format!(
                            "use @count({0}[k]), @sum({0}[k]), … in the loop body",
                            f.array.name
                        )),
                    ),
                    (Some(t), _) => self.set_type(vr, t, v.span),
                    (None, Some(t)) => self.set_type(r, t, f.array.span),
                    (None, None) => {}
                }
            }
        }
        if let Some(l) = &f.limit {
            self.expect(l, Type::Long, "'limit'");
        }
        self.loop_body(&f.body);
    }

    // ---- expressions ----

    /// Checks that `e` has type `want` ("a condition must be long, found string").
    fn expect(&mut self, e: &Expr, want: Type, what: &str) {
        let t = self.value(e, Some(want));
        if let Ty::Known(t) = t
            && t != want
        {
            self.error(e.span, format!("{what} must be {want}, found {t}"));
        }
    }

    /// An expression whose value is used: no void calls, no bare histograms.
    fn value(&mut self, e: &Expr, hint: Option<Type>) -> Ty {
        let t = self.expr(e);
        match t {
            Ty::Unknown => {
                if let Some(h) = hint {
                    self.hint(e, h);
                }
                Ty::Unknown
            }
            Ty::Void => {
                self.error(e.span, "this expression has no value");
                Ty::Unknown
            }
            Ty::Hist => {
                self.err(
                    Diagnostic::error(e.span, "a histogram can only be printed")
                        .with_help("pass it to print() or println()"),
                );
                Ty::Unknown
            }
            Ty::Known(Type::Stats) => Ty::Unknown,
            t => t,
        }
    }

    fn expr(&mut self, e: &Expr) -> Ty {
        let t = self.expr_kind(e);
        if let Ty::Known(k) = t {
            self.exprs.insert(e.id, k);
        }
        t
    }

    fn expr_kind(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Num(_) => Ty::Known(Type::Long),
            ExprKind::Str(_) => Ty::Known(Type::String),
            ExprKind::ScriptArg { string, .. } => {
                Ty::Known(if *string { Type::String } else { Type::Long })
            }
            ExprKind::Var(id) => {
                let r = self.resolve(id);
                if !self.use_scalar(r, id) {
                    return Ty::Unknown;
                }
                self.read(r, id.span)
            }
            ExprKind::Index { array, keys } => match self.use_array(array, keys) {
                Some(r) => self.read(r, array.span),
                None => Ty::Unknown,
            },
            ExprKind::Target(t) => self.target_expr(e, t, false),
            ExprKind::AddrOf(inner) => {
                match &inner.kind {
                    ExprKind::Target(t)
                        if !t.path.is_empty() || matches!(t.base, TargetBase::Var(_)) =>
                    {
                        self.target_expr(inner, t, true);
                    }
                    _ => self.error(e.span, "'&' needs a context variable or one of its fields"),
                }
                Ty::Known(Type::Long)
            }
            ExprKind::Defined(inner) => {
                match &inner.kind {
                    ExprKind::Target(t) => {
                        let before = self.suppressed;
                        self.suppress += 1;
                        self.target_expr(inner, t, true);
                        self.suppress -= 1;
                        let ok = self.suppressed == before;
                        self.defined.insert(e.id, ok);
                    }
                    _ => self.error(inner.span, "'@defined' needs a context variable"),
                }
                Ty::Known(Type::Long)
            }
            ExprKind::Entry(inner) => {
                if let Body::Probe(pi) = self.body
                    && let Some(p) = self.probes[pi]
                        .points
                        .iter()
                        .find(|p| p.kind.ctx() != Ctx::RETURN)
                {
                    let what = describe_point(&p.kind);
                    self.error(
                        e.span,
                        format!("'@entry' can only be used in a '.return' probe, not in {what}"),
                    );
                }
                self.value(inner, None)
            }
            ExprKind::Call { name, args } => self.call(e, name, args),
            ExprKind::Stat { op, arg, params } => self.stat(*op, arg, params),
            ExprKind::Unary { op, expr } => {
                self.expect(
                    expr,
                    Type::Long,
                    &format!("the operand of '{}'", op.as_str()),
                );
                Ty::Known(Type::Long)
            }
            ExprKind::IncDec { inc, expr, .. } => {
                let op = if *inc { "++" } else { "--" };
                if let Some(p) = self.place(expr, &format!("apply '{op}' to")) {
                    let r = Self::place_ref(p);
                    self.var_mut(r).assigned = true;
                    self.write(r, Type::Long, expr.span);
                    self.record(expr, r);
                }
                Ty::Known(Type::Long)
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(e, *op, lhs, rhs),
            ExprKind::Assign { op, lhs, rhs } => self.assign(*op, lhs, rhs),
            ExprKind::Aggregate { lhs, rhs } => {
                if let Some(p) = self.place(lhs, "aggregate into") {
                    let r = Self::place_ref(p);
                    if let VarRef::Local(_) = r {
                        self.var_mut(r).poisoned = true;
                        let name = self.var(r).name.clone();
                        self.err(
                            Diagnostic::error(
                                lhs.span,
                                format!("statistics aggregate '{name}' must be a global"),
                            )
                            .with_help(format!("declare it with 'global {name}'")),
                        );
                    } else {
                        self.var_mut(r).assigned = true;
                        self.set_type(r, Type::Stats, lhs.span);
                        self.record(lhs, r);
                    }
                }
                self.expect(rhs, Type::Long, "a value added with '<<<'");
                Ty::Void
            }
            ExprKind::Ternary { cond, then, els } => {
                self.cond(cond);
                let live = self.defined_cond(cond);
                let a = self.maybe_dead(live == Some(false), |c| c.value(then, None));
                let b = self.maybe_dead(live == Some(true), |c| c.value(els, a.known()));
                match (a, b) {
                    (Ty::Known(x), Ty::Known(y)) if x != y => {
                        self.error(
                            e.span,
                            format!("the branches of '?:' have different types: {x} and {y}"),
                        );
                        Ty::Unknown
                    }
                    (Ty::Unknown, Ty::Known(y)) => {
                        self.hint(then, y);
                        b
                    }
                    _ => a,
                }
            }
            ExprKind::In { keys, array } => {
                let r = self.resolve(array);
                let key_tys: Vec<Ty> = keys.iter().map(|k| self.value(k, None)).collect();
                match r {
                    VarRef::Local(_) => {
                        self.var_mut(r).poisoned = true;
                        self.err(
                            Diagnostic::error(
                                array.span,
                                format!("'{}' is not a global array", array.name),
                            )
                            .with_help(format!(
                                "arrays must be declared with 'global {}'",
                                array.name
                            )),
                        )
                    }
                    VarRef::Global(_) => {
                        self.index_array(r, array, keys, &key_tys);
                    }
                }
                Ty::Known(Type::Long)
            }
        }
    }

    /// Reads a variable's value; statistics cannot be read directly.
    fn read(&mut self, r: VarRef, span: Span) -> Ty {
        match self.var(r).ty {
            Some(Type::Stats) => {
                let name = self.var(r).name.clone();
                self.err(
                    Diagnostic::error(
                        span,
                        format!("statistics aggregate '{name}' cannot be read as a value"),
                    )
                    .with_help(format!(
                        "use @count({name}), @sum({name}), @min({name}), @max({name}) or @avg({name})"
                    )),
                );
                Ty::Unknown
            }
            Some(t) => Ty::Known(t),
            None => Ty::Unknown,
        }
    }

    fn write(&mut self, r: VarRef, t: Type, span: Span) {
        if self.var(r).ty == Some(Type::Stats) {
            let name = self.var(r).name.clone();
            self.err(
                Diagnostic::error(
                    span,
                    format!("cannot assign to statistics aggregate '{name}'"),
                )
                .with_help(format!("add values with '{name} <<< value'")),
            );
            return;
        }
        self.set_type(r, t, span);
    }

    fn assign(&mut self, op: Option<BinOp>, lhs: &Expr, rhs: &Expr) -> Ty {
        let Some(p) = self.place(lhs, "assign to") else {
            self.value(rhs, None);
            return Ty::Unknown;
        };
        let r = Self::place_ref(p);
        self.var_mut(r).assigned = true;
        let before = self.diags.len();
        let t = self.assign_type(op, r, lhs, rhs);
        // A value that was already reported as wrong must not also make the variable
        // "of unknown type".
        if self.report && self.diags.len() > before && t == Ty::Unknown {
            self.var_mut(r).poisoned = true;
        }
        self.record(lhs, r);
        t
    }

    fn assign_type(&mut self, op: Option<BinOp>, r: VarRef, lhs: &Expr, rhs: &Expr) -> Ty {
        match op {
            None => {
                let cur = match self.var(r).ty {
                    Some(Type::Stats) => None,
                    t => t,
                };
                let t = self.value(rhs, cur);
                if let Ty::Known(t) = t {
                    self.write(r, t, rhs.span);
                    Ty::Known(t)
                } else {
                    cur.map_or(Ty::Unknown, Ty::Known)
                }
            }
            Some(op) => {
                let t = if op == BinOp::Concat {
                    Type::String
                } else {
                    Type::Long
                };
                self.write(r, t, lhs.span);
                self.expect(rhs, t, &format!("the right side of '{}='", op.as_str()));
                Ty::Known(t)
            }
        }
    }

    fn binary(&mut self, e: &Expr, op: BinOp, lhs: &Expr, rhs: &Expr) -> Ty {
        match op {
            BinOp::Concat => {
                self.expect(lhs, Type::String, "an operand of '.'");
                self.expect(rhs, Type::String, "an operand of '.'");
                Ty::Known(Type::String)
            }
            BinOp::Match | BinOp::NotMatch => {
                self.expect(
                    lhs,
                    Type::String,
                    &format!("the left side of '{}'", op.as_str()),
                );
                if !matches!(rhs.kind, ExprKind::Str(_)) {
                    self.error(rhs.span, "a regular expression must be a string literal");
                }
                self.value(rhs, None);
                Ty::Known(Type::Long)
            }
            _ if op.is_comparison() => {
                let a = self.value(lhs, None);
                let b = self.value(rhs, a.known());
                match (a, b) {
                    (Ty::Known(x), Ty::Known(y)) if x != y => {
                        self.error(e.span, format!("cannot compare {x} with {y}"));
                    }
                    (Ty::Unknown, Ty::Known(y)) => self.hint(lhs, y),
                    _ => {}
                }
                Ty::Known(Type::Long)
            }
            _ => {
                let what = format!("an operand of '{}'", op.as_str());
                self.expect(lhs, Type::Long, &what);
                self.expect(rhs, Type::Long, &what);
                Ty::Known(Type::Long)
            }
        }
    }

    fn stat(&mut self, op: StatOp, arg: &Expr, params: &[Expr]) -> Ty {
        let name = format!("@{}", op.as_str());
        let p = match &arg.kind {
            ExprKind::Var(id) => {
                let r = self.resolve(id);
                self.use_scalar(r, id).then_some(Place::Scalar(r))
            }
            ExprKind::Index { array, keys } => self.use_array(array, keys).map(Place::Elem),
            _ => {
                self.error(
                    arg.span,
                    format!("'{name}' needs a statistics aggregate variable"),
                );
                None
            }
        };
        if let Some(p) = p {
            let r = Self::place_ref(p);
            let v = self.var(r);
            let vname = v.name.clone();
            match (r, v.ty) {
                (VarRef::Local(_), _) => {
                    self.var_mut(r).poisoned = true;
                    self.err(
                    Diagnostic::error(
                        arg.span,
                        format!("'{name}' needs a statistics aggregate, but '{vname}' is a local"),
                    )
                    .with_help(format!("declare it with 'global {vname}' and add values with '{vname} <<< value'")),
                    )
                }
                (_, Some(Type::Stats)) => {}
                (_, None) => self.set_type(r, Type::Stats, arg.span),
                (_, Some(t)) => {
                    let at = v.ty_span;
                    self.err(
                        Diagnostic::error(
                            arg.span,
                            format!("'{name}' needs a statistics aggregate, but '{vname}' is {t}"),
                        )
                        .with_note(Some(at), format!("'{vname}' is {t} because of this"))
                        .with_help(format!(
                            "values are added to an aggregate with '{vname} <<< value'"
                        )),
                    )
                }
            }
        }
        let mut nums = Vec::new();
        for p in params {
            match &p.kind {
                ExprKind::Num(n) => nums.push(*n),
                ExprKind::Unary {
                    op: UnOp::Neg,
                    expr,
                } if matches!(expr.kind, ExprKind::Num(_)) => {
                    if let ExprKind::Num(n) = expr.kind {
                        nums.push(n.wrapping_neg());
                    }
                }
                _ => self.error(
                    p.span,
                    format!("the bounds of '{name}' must be number literals"),
                ),
            }
            self.expr(p);
        }
        if let [lo, hi, step] = nums[..]
            && (lo >= hi || step <= 0)
        {
            let span = params[0].span.to(params[2].span);
            self.error(
                span,
                format!("'{name}' needs low < high and a positive step"),
            );
        }
        if op.is_hist() {
            Ty::Hist
        } else {
            Ty::Known(Type::Long)
        }
    }

    fn call(&mut self, e: &Expr, name: &Ident, args: &[Expr]) -> Ty {
        if let Some(&fi) = self.fn_index.get(name.name.as_str()) {
            return self.call_function(e, fi, name, args);
        }
        let Some(b) = builtin(&name.name) else {
            let mut d = Diagnostic::error(name.span, format!("unknown function '{}'", name.name));
            let cands = self
                .fn_index
                .keys()
                .copied()
                .chain(crate::builtins::BUILTINS.iter().map(|b| b.name));
            if let Some(n) = nearest(&name.name, cands).first() {
                d = d.with_help(format!("did you mean '{n}'?"));
            }
            self.err(d);
            for a in args {
                self.expr(a);
            }
            return Ty::Unknown;
        };
        self.builtin_context(b, name);
        match b.params {
            Params::Fixed(sigs) => {
                let Some(sig) = sigs.iter().find(|s| s.len() == args.len()) else {
                    let counts: Vec<String> = sigs.iter().map(|s| s.len().to_string()).collect();
                    let n = counts.join(" or ");
                    let plural = if counts.len() == 1 && sigs[0].len() == 1 {
                        ""
                    } else {
                        "s"
                    };
                    self.error(
                        e.span,
                        format!(
                            "'{}' takes {n} argument{plural}, found {}",
                            b.name,
                            args.len()
                        ),
                    );
                    for a in args {
                        self.expr(a);
                    }
                    return b.ret.map_or(Ty::Void, Ty::Known);
                };
                for (i, (a, t)) in args.iter().zip(sig.iter()).enumerate() {
                    self.expect(a, *t, &format!("argument {} of '{}'", i + 1, b.name));
                }
            }
            Params::Format => self.format_call(e, b, args),
            Params::Printable { min, max } => {
                if args.len() < min || max.is_some_and(|m| args.len() > m) {
                    let want = match max {
                        Some(m) if m == min => format!("{m}"),
                        _ => format!("at least {min}"),
                    };
                    self.error(
                        e.span,
                        format!(
                            "'{}' takes {want} argument{}, found {}",
                            b.name,
                            if want == "1" { "" } else { "s" },
                            args.len()
                        ),
                    );
                }
                for a in args {
                    match self.expr(a) {
                        Ty::Void => self.error(a.span, "this expression has no value"),
                        Ty::Known(Type::Stats) => {}
                        _ => {}
                    }
                }
            }
        }
        b.ret.map_or(Ty::Void, Ty::Known)
    }

    fn builtin_context(&mut self, b: &Builtin, name: &Ident) {
        let probes = match self.body {
            Body::Probe(pi) => vec![pi],
            Body::Function(fi) => self.fn_probes[fi].clone(),
        };
        let bad = probes.iter().find_map(|&pi| {
            self.probes[pi]
                .points
                .iter()
                .find(|p| !b.contexts.allows(p.kind.ctx()))
                .map(|p| (describe_point(&p.kind), p.span))
        });
        if let Some((what, at)) = bad {
            let mut d =
                Diagnostic::error(name.span, format!("'{}' cannot be used in {what}", b.name))
                    .with_help(format!("'{}' needs {}", b.name, b.contexts.describe()));
            if let Body::Function(_) = self.body {
                d = d.with_note(Some(at), "the function is called from this probe");
            }
            self.err(d);
        }
    }

    fn format_call(&mut self, e: &Expr, b: &Builtin, args: &[Expr]) {
        let Some((fmt, rest)) = args.split_first() else {
            self.error(e.span, format!("'{}' needs a format string", b.name));
            return;
        };
        let ExprKind::Str(text) = &fmt.kind else {
            self.expr(fmt);
            self.error(
                fmt.span,
                format!("the format of '{}' must be a string literal", b.name),
            );
            for a in rest {
                self.expr(a);
            }
            return;
        };
        self.expr(fmt);
        let directives = match format_args(text) {
            Ok(d) => d,
            Err(m) => {
                self.error(fmt.span, m);
                for a in rest {
                    self.expr(a);
                }
                return;
            }
        };
        if directives.len() != rest.len() {
            self.error(
                e.span,
                format!(
                    "format of '{}' needs {} argument{}, found {}",
                    b.name,
                    directives.len(),
                    if directives.len() == 1 { "" } else { "s" },
                    rest.len()
                ),
            );
        }
        for (i, a) in rest.iter().enumerate() {
            match directives.get(i) {
                Some(d) => {
                    let what = if d.conv == '*' {
                        "a '*' width".to_string()
                    } else {
                        format!("the argument for '%{}'", d.conv)
                    };
                    self.expect(a, d.ty, &what);
                }
                None => {
                    self.value(a, None);
                }
            }
        }
    }

    fn call_function(&mut self, e: &Expr, fi: usize, name: &Ident, args: &[Expr]) -> Ty {
        let Item::Function(def) = &self.script.items[self.fns[fi].item] else {
            return Ty::Unknown;
        };
        let nparams = def.params.len();
        if args.len() != nparams {
            self.err(
                Diagnostic::error(
                    e.span,
                    format!(
                        "function '{}' takes {nparams} argument{}, found {}",
                        name.name,
                        if nparams == 1 { "" } else { "s" },
                        args.len()
                    ),
                )
                .with_note(Some(def.name.span), "defined here"),
            );
        }
        let same_body = self.body == Body::Function(fi);
        for (i, a) in args.iter().enumerate() {
            if i >= nparams {
                self.value(a, None);
                continue;
            }
            let pty = if same_body {
                self.locals[i].ty
            } else {
                self.fns[fi].locals[i].ty
            };
            let t = self.value(a, pty);
            match (pty, t) {
                (Some(p), Ty::Known(t)) if p != t => {
                    let pname = def.params[i].name.name.clone();
                    self.error(
                        a.span,
                        format!(
                            "argument {} of '{}' ('{pname}') must be {p}, found {t}",
                            i + 1,
                            name.name
                        ),
                    );
                }
                (None, Ty::Known(t)) => {
                    let v = if same_body {
                        &mut self.locals[i]
                    } else {
                        &mut self.fns[fi].locals[i]
                    };
                    v.ty = Some(t);
                    v.ty_span = a.span;
                    self.changed = true;
                }
                _ => {}
            }
        }
        if !self.fns[fi].returns_value {
            return Ty::Void;
        }
        self.fns[fi].ret.map_or(Ty::Unknown, Ty::Known)
    }

    // ---- context variables ----

    /// The locations of the probe being checked, or why there are none.
    fn locations(&mut self, span: Span, what: &str) -> Option<Vec<Location>> {
        let pi = match self.body {
            Body::Probe(pi) => pi,
            Body::Function(_) => {
                self.err(
                    Diagnostic::error(
                        span,
                        format!("context variable '{what}' can only be used in a probe handler"),
                    )
                    .with_help("pass its value to the function as an argument"),
                );
                return None;
            }
        };
        let points = &self.probes[pi].points;
        if let Some(p) = points
            .iter()
            .find(|p| !matches!(p.kind, ProbeKind::Process(_)))
        {
            let d = describe_point(&p.kind);
            self.error(
                span,
                format!("context variable '{what}' cannot be used in {d}"),
            );
            return None;
        }
        Some(points.iter().flat_map(|p| p.locations.clone()).collect())
    }

    fn require_return(&mut self, span: Span, what: &str) -> bool {
        if let Body::Probe(pi) = self.body
            && self.probes[pi]
                .points
                .iter()
                .any(|p| p.kind.ctx() != Ctx::RETURN)
        {
            self.err(
                Diagnostic::error(
                    span,
                    format!("'{what}' is only available in a '.return' probe"),
                )
                .with_help("probe 'process(...).function(\"F\").return'"),
            );
            return false;
        }
        true
    }

    /// Types a context expression; `raw` skips the final "usable as a script value"
    /// check (for `&` and `@defined`).
    fn target_expr(&mut self, e: &Expr, t: &TargetExpr, raw: bool) -> Ty {
        let base: Option<GoType> = match &t.base {
            TargetBase::Set(set) => {
                let what = format!("$${}", set.as_str());
                let Some(locs) = self.locations(e.span, &what) else {
                    return Ty::Known(Type::String);
                };
                if *set == VarSet::Return && !self.require_return(e.span, &what) {
                    return Ty::Known(Type::String);
                }
                for l in &locs {
                    if let Err(err) = self.target.context_vars(l, *set) {
                        self.err(target_err(e.span, &err));
                        break;
                    }
                }
                return Ty::Known(Type::String);
            }
            TargetBase::Var(id) => {
                let what = format!("${}", id.name);
                let locs = self.locations(id.span, &what);
                let Some(locs) = locs else {
                    return Ty::Unknown;
                };
                if id.name == "return" && !self.require_return(id.span, "$return") {
                    return Ty::Unknown;
                }
                let mut first: Option<GoType> = None;
                for l in &locs {
                    match self.target.context_var(l, &id.name) {
                        Ok(ty) => {
                            if let Some(f) = &first
                                && script_type(f) != script_type(&ty)
                            {
                                self.error(
                                    id.span,
                                    format!(
                                        "'${}' has type '{}' in {} but '{}' in {}",
                                        id.name, f.name, locs[0].function, ty.name, l.function
                                    ),
                                );
                            }
                            first.get_or_insert(ty);
                        }
                        Err(err) => {
                            self.err(target_err(id.span, &err));
                            return Ty::Unknown;
                        }
                    }
                }
                first
            }
            TargetBase::Cast { addr, ty, module } => {
                self.expect(addr, Type::Long, "the address of '@cast'");
                match self.target.cast_type(ty, module.as_deref()) {
                    Ok(g) => {
                        if t.path.is_empty() && t.pretty == Pretty::None {
                            return Ty::Known(Type::Long);
                        }
                        Some(g)
                    }
                    Err(err) => {
                        self.err(target_err(e.span, &err));
                        None
                    }
                }
            }
        };
        let Some(mut ty) = base else {
            return Ty::Unknown;
        };
        for p in &t.path {
            let r = match p {
                PathElem::Field(f) => self
                    .target
                    .member(&ty, &f.name)
                    .map_err(|err| target_err(f.span, &err)),
                PathElem::Index(i) => {
                    self.expect(i, Type::Long, "an index");
                    self.target
                        .index(&ty)
                        .map_err(|err| target_err(i.span, &err))
                }
            };
            match r {
                Ok(next) => ty = next,
                Err(d) => {
                    self.err(d);
                    return Ty::Unknown;
                }
            }
        }
        self.go_types.insert(e.id, ty.clone());
        if t.pretty != Pretty::None {
            return Ty::Known(Type::String);
        }
        if raw {
            return Ty::Known(Type::Long);
        }
        match script_type(&ty) {
            Ok(st) => Ty::Known(st),
            Err(msg) => {
                self.error(e.span, msg);
                Ty::Unknown
            }
        }
    }
}

// ---------------------------------------------------------------------------------

fn var_line(v: &VarInfo) -> String {
    let ty = v.ty.map_or("?".to_string(), |t| t.to_string());
    match &v.keys {
        Some(keys) => {
            let k: Vec<String> = keys
                .iter()
                .map(|k| k.map_or("?".to_string(), |t| t.to_string()))
                .collect();
            format!("{}[{}]: {ty}", v.name, k.join(", "))
        }
        None => format!("{}: {ty}", v.name),
    }
}

/// The `-d types` dump: every global, function and probe with its resolved points and
/// typed locals, then the script with each variable, call and context expression
/// annotated with its type.
pub fn dump_types(script: &Script, info: &TypeInfo) -> String {
    let mut out = String::new();
    for g in &info.globals {
        out.push_str(&format!("global {}\n", var_line(g)));
    }
    for f in &info.functions {
        let params: Vec<String> = f.params.iter().map(var_line).collect();
        let ret = f.ret.map_or("void".to_string(), |t| t.to_string());
        out.push_str(&format!(
            "function {}({}): {ret}\n",
            f.name,
            params.join(", ")
        ));
        for l in f.locals.iter().skip(f.params.len()) {
            out.push_str(&format!("  local {}\n", var_line(l)));
        }
    }
    for p in &info.probes {
        if let Some(Item::Probe(def)) = script.items.get(p.item) {
            let pts: Vec<String> = def.points.iter().map(print_probe_point).collect();
            out.push_str(&format!("probe {}\n", pts.join(", ")));
        }
        for rp in &p.points {
            out.push_str(&format!("  point {:?}\n", rp.kind));
            for l in &rp.locations {
                let line = l.line.map_or(String::new(), |n| format!(":{n}"));
                out.push_str(&format!(
                    "    at {} {}{line} {:#x}\n",
                    l.function,
                    l.file.as_deref().unwrap_or("?"),
                    l.address
                ));
            }
        }
        for l in &p.locals {
            out.push_str(&format!("  local {}\n", var_line(l)));
        }
    }
    out.push_str("---\n");
    let annotate = |e: &Expr| -> Option<String> {
        let interesting = matches!(
            e.kind,
            ExprKind::Var(_)
                | ExprKind::Index { .. }
                | ExprKind::Target(_)
                | ExprKind::Call { .. }
                | ExprKind::Stat { .. }
        );
        if !interesting {
            return None;
        }
        let ty = info.exprs.get(&e.id).map(|t| t.to_string());
        match (ty, info.go_types.get(&e.id)) {
            (Some(t), Some(g)) => Some(format!("{t} ({})", g.name)),
            (Some(t), None) => Some(t),
            (None, Some(g)) => Some(format!("({})", g.name)),
            (None, None) => None,
        }
    };
    out.push_str(&Printer::new(Some(&annotate)).script(script));
    out
}
