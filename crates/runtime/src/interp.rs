//! The interpreter of the probes that run in user space: `begin`, `end` and
//! `timer.*` bodies, and the script functions they call. It walks lang's AST with
//! the checker's [`TypeInfo`], keeps locals itself and reaches globals through
//! [`Globals`] (the kernel's maps, for the CLI), so a `begin` probe can fill an
//! array that kernel probes then update, and an `end` probe can print what they
//! gathered.
//!
//! The semantics are stap's, the same as the kernel side's (the differential suite,
//! `cli/tests/differential.rs`, holds both to it): 64-bit wrapping arithmetic; `/`
//! and `%` by zero stop the probe with "division by 0" (stap's `_stp_div64`), `x / -1`
//! is `-x`; every statistics extractor but `@count` stops on an empty aggregate;
//! strings compare bytewise and are cut at the string limit (`lang::Limits`) like the
//! kernel side cuts them, and printed marked when they reach it; built-ins are one
//! exhaustive match on `lang::BuiltinId`, names read as the checker resolved them;
//! reading a missing array element gives 0 or `""`;
//! `exit()` does not stop the probe, it ends the session after it. A probe may
//! run [`Limits::max_action_interruptible`] statements (`begin`/`end`, stap's
//! `MAXACTION_INTERRUPTIBLE`) or [`Limits::max_action`] (timers, `MAXACTION`),
//! and functions nest as deep as stap's recursion analysis allows
//! (`MAXNESTING`: the deepest call chain plus one, plus ten if recursive).
//!
//! Errors are data ([`RuntimeError`]) with the place stap would name;
//! [`RuntimeError::render`] words them as stap does: `division by 0 near
//! operator '/' at x.stp:3:9 (called from identifier 'f' at x.stp:7:3) in probe
//! begin` (the CLI prints `ERROR: ` before it).
//!
//! Context built-ins: stap runs `begin` and `end` probes in the kernel on behalf
//! of its own user-space daemon (stapio, whose start and exit messages trigger
//! them), so `pid()`, `tid()` and `execname()` there name that process; here they
//! name gotap, from the [`Context`] the CLI passes.
//! Timer probes in stap see whatever task the timer interrupted; here they see
//! gotap too. `target()` is the `-c`/`-x` process.

use std::collections::HashMap;

use bpf::script::{FieldKind, GlobalShape, GlobalSpec, UserProbe, UserProbeKind, ValueKind};
use lang::ast::*;
use lang::{FunctionInfo, ProbeKind, SourceMap, Span, Type, TypeInfo};

use lang::{Binding, BuiltinId, Callee};

use crate::format::{Arg, Cuts, MAX_SPRINTF_LEN, string_arg, write_line};
use crate::globals::{Globals, GlobalsError, Value, cut_string, hist};
use crate::stats::{Stat, write_histogram};
use crate::table;

/// However long the chains of calls a script has, user space nests no deeper than this:
/// each call takes a few KiB of gotap's stack.
pub const MAX_NESTING: usize = 256;

/// What the context built-ins answer in user space.
#[derive(Clone, Debug)]
pub struct Context {
    /// `pid()`: gotap's own process id (see the module doc).
    pub pid: i64,
    /// `tid()`.
    pub tid: i64,
    /// `execname()`: gotap's name.
    pub execname: String,
    /// `cpu()`.
    pub cpu: i64,
    /// `target()`: the `-c`/`-x` process, 0 if none.
    pub target: i64,
    /// The wall clock in nanoseconds since the epoch, for `gettimeofday_*()`.
    pub now_ns: fn() -> i64,
}

impl Default for Context {
    fn default() -> Context {
        Context {
            pid: 0,
            tid: 0,
            execname: "gotap".into(),
            cpu: 0,
            target: 0,
            now_ns: system_time_ns,
        }
    }
}

/// The system's wall clock, nanoseconds since the epoch.
pub fn system_time_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// How much one probe run may do.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Statements (and loop iterations) a timer probe may run (stap's `MAXACTION`).
    pub max_action: u64,
    /// The same for `begin` and `end` (stap's `MAXACTION_INTERRUPTIBLE`).
    pub max_action_interruptible: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_action: 1000,
            max_action_interruptible: 10_000,
        }
    }
}

/// The place an error names: the token at `span` (an operator between two
/// operands is found in the gap `span` covers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Near {
    pub span: Span,
}

/// A probe that stopped with an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeError {
    /// Stap's wording: `division by 0`, `MAXACTION exceeded`, `empty aggregate`, …
    pub message: String,
    pub near: Option<Near>,
    /// The calls the error happened in, innermost first.
    pub called_from: Vec<Near>,
    /// The probe point, as `pp()` says it.
    pub probe: String,
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuntimeError {}

impl RuntimeError {
    /// The message as stap prints it after `ERROR: `: `division by 0 near operator
    /// '/' at x.stp:1:20 (called from identifier 'f' at x.stp:2:5) in probe begin`.
    pub fn render(&self, sm: &SourceMap) -> String {
        let calls: Vec<Span> = self.called_from.iter().map(|c| c.span).collect();
        lang::stop::message(
            sm,
            &self.message,
            self.near.map(|n| n.span),
            &calls,
            &self.probe,
        )
    }
}

/// The result of running one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The probe called `exit()`: end the session (after the `end` probes).
    pub exit: bool,
}

/// The interpreter of one checked script; built once, runs probes many times.
pub struct Interp<'s> {
    script: &'s Script,
    info: &'s TypeInfo,
    globals: HashMap<&'s str, &'s GlobalSpec>,
    /// The definitions of [`TypeInfo::functions`], by the same index.
    functions: Vec<Option<&'s Function>>,
    /// The compiled patterns of `=~` and `!~`, by the expression.
    regexes: HashMap<ExprId, regex::bytes::Regex>,
    /// Names an address for `usymname()`, when the host can.
    symbols: Option<Box<dyn FnMut(u64) -> Option<String> + 's>>,
    /// The most bytes a string holds, and a printed line (`lang::Limits`).
    max_bytes: usize,
    max_line: usize,
    /// What printing cut so far.
    cuts: Cuts,
    ctx: Context,
    limits: Limits,
    max_nesting: usize,
}

/// How a statement ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
    Return,
    Next,
}

struct Frame<'s> {
    locals: HashMap<&'s str, Value>,
    ret: Option<Value>,
}

/// The state of one probe run.
struct Run<'r, 's> {
    globals: &'r mut dyn Globals,
    out: &'r mut Vec<u8>,
    frames: Vec<Frame<'s>>,
    calls: Vec<Near>,
    actions_left: u64,
    exit: bool,
    pp: String,
}

/// A value to print, and whether it is a stack's text.
type Printed = (Value, bool);

/// Results inside the interpreter: the error boxed, so that the frame each nested
/// expression adds to the stack stays small.
type R<T> = Result<T, Box<RuntimeError>>;

/// Where an assignment goes.
enum Place<'s> {
    Local(&'s str, Type),
    Global(&'s GlobalSpec, Vec<Value>, Span),
}

impl<'s> Interp<'s> {
    /// `globals` is the script's storage layout (`ScriptSpec::globals`).
    pub fn new(
        script: &'s Script,
        info: &'s TypeInfo,
        globals: &'s [GlobalSpec],
        ctx: Context,
        limits: Limits,
    ) -> Interp<'s> {
        let functions = info
            .functions
            .iter()
            .map(|fi| match script.items.get(fi.item) {
                Some(Item::Function(f)) => Some(f),
                _ => None,
            })
            .collect();
        let mut interp = Interp {
            script,
            info,
            globals: globals.iter().map(|g| (g.name.as_str(), g)).collect(),
            functions,
            regexes: HashMap::new(),
            symbols: None,
            max_bytes: info.limits.string_bytes(),
            max_line: info.limits.max_printf as usize,
            cuts: Cuts::default(),
            ctx,
            limits,
            max_nesting: 0,
        };
        interp.max_nesting = interp.nesting_limit();
        interp
    }

    /// The strings printed with the cut mark and the lines cut, so far.
    pub fn cuts(&self) -> Cuts {
        self.cuts
    }

    /// Lets `usymname()` name addresses: `f` gives the function containing one (the
    /// host knows the traced binary and where it is loaded).
    pub fn with_symbols(mut self, f: impl FnMut(u64) -> Option<String> + 's) -> Interp<'s> {
        self.symbols = Some(Box::new(f));
        self
    }

    /// Stores the initial values of `global x = 5` declarations.
    pub fn init_globals(&mut self, globals: &mut dyn Globals) -> Result<(), RuntimeError> {
        for item in &self.script.items {
            let Item::Global(d) = item else { continue };
            let Some(init) = &d.init else { continue };
            let g = self.global(&d.name.name, d.name.span, "").map_err(|e| *e)?;
            let mut v = match init {
                Literal::Num(n) => Value::Long(*n),
                Literal::Str(s) => Value::Str(s.as_bytes().to_vec()),
            };
            if let Value::Str(s) = &mut v {
                cut_string(s, self.max_bytes);
            }
            globals
                .set(g, &[], v)
                .map_err(|e| global_error(e, d.name.span, ""))?;
        }
        Ok(())
    }

    /// Runs one user-space probe, printing to `out`.
    pub fn run(
        &mut self,
        probe: &UserProbe,
        globals: &mut dyn Globals,
        out: &mut Vec<u8>,
    ) -> Result<Outcome, RuntimeError> {
        self.run_probe(probe, globals, out).map_err(|e| *e)
    }

    fn run_probe(
        &mut self,
        probe: &UserProbe,
        globals: &mut dyn Globals,
        out: &mut Vec<u8>,
    ) -> R<Outcome> {
        let bare = |message: String| {
            Box::new(RuntimeError {
                message,
                near: None,
                called_from: Vec::new(),
                probe: String::new(),
            })
        };
        let script = self.script;
        let Some(Item::Probe(p)) = script.items.get(probe.item) else {
            return Err(bare(format!("item {} is not a probe", probe.item)));
        };
        let Some(pi) = self.info.probes.iter().find(|pi| pi.item == probe.item) else {
            return Err(bare(format!("probe item {} was not checked", probe.item)));
        };
        let point = pi.points.iter().find(|rp| match (&rp.kind, probe.when) {
            (ProbeKind::Begin, UserProbeKind::Begin) | (ProbeKind::End, UserProbeKind::End) => true,
            (ProbeKind::Timer { period_ns: a }, UserProbeKind::Timer { period_ns: b }) => *a == b,
            _ => false,
        });
        let Some(point) = point else {
            return Err(bare(format!(
                "probe item {} has no {:?} point",
                probe.item, probe.when
            )));
        };
        let prologue = match point.prologue.map(|i| script.items.get(i)) {
            Some(Some(Item::Alias(a))) => Some(&a.body),
            _ => None,
        };
        let max = match probe.when {
            UserProbeKind::Timer { .. } => self.limits.max_action,
            _ => self.limits.max_action_interruptible,
        };
        let mut run = Run {
            globals,
            out,
            frames: vec![Frame {
                locals: HashMap::new(),
                ret: None,
            }],
            calls: Vec::new(),
            actions_left: max,
            exit: false,
            pp: self.point_text(point.span),
        };
        for body in prologue.into_iter().chain([&p.body]) {
            match self.block(&mut run, body)? {
                Flow::Next => break,
                _ => continue,
            }
        }
        Ok(Outcome { exit: run.exit })
    }

    /// The probe point written at `span`, as `pp()` gives it.
    fn point_text(&self, span: Span) -> String {
        lang::stop::written_point(self.script, span)
    }

    /// Stap's `MAXNESTING`: the deepest chain of calls (a recursive call counted
    /// once), plus one, plus ten if anything recurses; at most [`MAX_NESTING`]. The depth of each function is
    /// found once (a walk of the call graph, not of every path through it).
    fn nesting_limit(&self) -> usize {
        let info = self.info;
        let callees = |body: &'s Block| {
            let mut out = Vec::new();
            for s in &body.stmts {
                walk_stmt(s, &mut |e| {
                    if let Some(Callee::Function(fi)) = info.callee(e)
                        && !out.contains(&fi)
                    {
                        out.push(fi);
                    }
                });
            }
            out
        };
        let calls: Vec<Vec<usize>> = self
            .functions
            .iter()
            .map(|f| f.map(|f| callees(&f.body)).unwrap_or_default())
            .collect();
        // depth[f]: the longest chain of calls starting with a call of f, a recursive
        // call counted once.
        let mut depth: Vec<Option<usize>> = vec![None; calls.len()];
        let mut on_path = vec![false; calls.len()];
        let mut recursive = false;
        for root in 0..calls.len() {
            if depth[root].is_some() {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            on_path[root] = true;
            while let Some(&mut (f, ref mut next)) = stack.last_mut() {
                if let Some(&c) = calls[f].get(*next) {
                    *next += 1;
                    if on_path[c] {
                        recursive = true;
                    } else if depth[c].is_none() {
                        on_path[c] = true;
                        stack.push((c, 0));
                    }
                    continue;
                }
                // A call back into the chain counts once, as one more level.
                let below = calls[f]
                    .iter()
                    .map(|&c| if on_path[c] { 1 } else { depth[c].unwrap_or(0) })
                    .max()
                    .unwrap_or(0);
                depth[f] = Some(below + 1);
                on_path[f] = false;
                stack.pop();
            }
        }
        let mut max = 0;
        for item in &self.script.items {
            let body = match item {
                Item::Probe(p) => &p.body,
                Item::Alias(a) => &a.body,
                _ => continue,
            };
            for f in callees(body) {
                max = max.max(depth[f].unwrap_or(1));
            }
        }
        (max + 1 + if recursive { 10 } else { 0 }).min(MAX_NESTING)
    }

    fn global(&self, name: &str, span: Span, pp: &str) -> R<&'s GlobalSpec> {
        self.globals.get(name).copied().ok_or_else(|| {
            Box::new(RuntimeError {
                message: format!("global '{name}' has no storage in the compiled script"),
                near: Some(Near { span }),
                called_from: Vec::new(),
                probe: pp.to_string(),
            })
        })
    }

    fn error(
        &self,
        run: &Run<'_, 's>,
        message: impl Into<String>,
        span: Span,
    ) -> Box<RuntimeError> {
        Box::new(RuntimeError {
            message: message.into(),
            near: Some(Near { span }),
            called_from: run.calls.iter().rev().copied().collect(),
            probe: run.pp.clone(),
        })
    }

    fn globals_error(&self, run: &Run<'_, 's>, e: GlobalsError, span: Span) -> Box<RuntimeError> {
        let mut err = global_error(e, span, &run.pp);
        err.called_from = run.calls.iter().rev().copied().collect();
        Box::new(err)
    }

    fn count_action(&self, run: &mut Run<'_, 's>, span: Span) -> R<()> {
        if run.actions_left == 0 {
            return Err(self.error(run, "MAXACTION exceeded", span));
        }
        run.actions_left -= 1;
        Ok(())
    }

    // ----------------------------------------------------------------- statements

    fn block(&mut self, run: &mut Run<'_, 's>, b: &'s Block) -> R<Flow> {
        for s in &b.stmts {
            let flow = self.stmt(run, s)?;
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn stmt(&mut self, run: &mut Run<'_, 's>, s: &'s Stmt) -> R<Flow> {
        self.count_action(run, s.span)?;
        match &s.kind {
            StmtKind::Block(b) => self.block(run, b),
            StmtKind::Expr(e) => self.eval(run, e).map(|_| Flow::Normal),
            StmtKind::If { cond, then, els } => {
                if self.eval(run, cond)?.as_long() != 0 {
                    self.stmt(run, then)
                } else if let Some(e) = els {
                    self.stmt(run, e)
                } else {
                    Ok(Flow::Normal)
                }
            }
            StmtKind::While { cond, body } => {
                while self.eval(run, cond)?.as_long() != 0 {
                    self.count_action(run, s.span)?;
                    match self.stmt(run, body)? {
                        Flow::Break => break,
                        Flow::Normal | Flow::Continue => {}
                        f => return Ok(f),
                    }
                }
                Ok(Flow::Normal)
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                if let Some(i) = init {
                    self.eval(run, i)?;
                }
                loop {
                    if let Some(c) = cond
                        && self.eval(run, c)?.as_long() == 0
                    {
                        break;
                    }
                    self.count_action(run, s.span)?;
                    match self.stmt(run, body)? {
                        Flow::Break => break,
                        Flow::Normal | Flow::Continue => {}
                        f => return Ok(f),
                    }
                    if let Some(st) = step {
                        self.eval(run, st)?;
                    }
                }
                Ok(Flow::Normal)
            }
            StmtKind::Foreach(fe) => self.foreach(run, fe, s.span),
            StmtKind::Break => Ok(Flow::Break),
            StmtKind::Continue => Ok(Flow::Continue),
            StmtKind::Next => Ok(Flow::Next),
            StmtKind::Return(e) => {
                let v = match e {
                    Some(e) => Some(self.eval(run, e)?),
                    None => None,
                };
                if let Some(f) = run.frames.last_mut() {
                    f.ret = v;
                }
                Ok(Flow::Return)
            }
            StmtKind::Delete(e) => self.delete(run, e).map(|_| Flow::Normal),
            StmtKind::Empty => Ok(Flow::Normal),
        }
    }

    fn delete(&mut self, run: &mut Run<'_, 's>, e: &'s Expr) -> R<()> {
        match &e.kind {
            ExprKind::Var(id) if self.info.binding(id) == Some(Binding::Local) => {
                let zero = zero_of(self.info.expr_type(e));
                if let Some(f) = run.frames.last_mut() {
                    f.locals.insert(&id.name, zero);
                }
                Ok(())
            }
            ExprKind::Var(id) => {
                let g = self.global(&id.name, id.span, &run.pp)?;
                run.globals
                    .delete(g, None)
                    .map_err(|err| self.globals_error(run, err, id.span))
            }
            ExprKind::Index { array, keys } => {
                let g = self.global(&array.name, array.span, &run.pp)?;
                let keys = self.eval_all(run, keys)?;
                run.globals
                    .delete(g, Some(&keys))
                    .map_err(|err| self.globals_error(run, err, array.span))
            }
            _ => Err(self.error(run, "cannot delete this expression", e.span)),
        }
    }

    fn foreach(&mut self, run: &mut Run<'_, 's>, fe: &'s Foreach, span: Span) -> R<Flow> {
        let g = self.global(&fe.array.name, fe.array.span, &run.pp)?;
        let near = fe.array.span;
        let mut entries: Vec<table::Entry> = match &g.shape {
            GlobalShape::Array { .. } => run
                .globals
                .entries(g)
                .map_err(|e| self.globals_error(run, e, near))?
                .into_iter()
                .map(|(k, v)| table::Entry {
                    keys: k.iter().map(Value::to_key).collect(),
                    value: match v {
                        Value::Long(n) => table::Value::Long(n),
                        Value::Str(s) => table::Value::Str(s),
                    },
                })
                .collect(),
            GlobalShape::Stats { .. } => run
                .globals
                .stat_entries(g)
                .map_err(|e| self.globals_error(run, e, near))?
                .into_iter()
                .map(|(k, s)| table::Entry {
                    keys: k.iter().map(Value::to_key).collect(),
                    value: table::Value::Stats(s),
                })
                .collect(),
            GlobalShape::Scalar { .. } => {
                return Err(self.error(run, "foreach over a scalar", near));
            }
        };
        let limit = match &fe.limit {
            Some(l) => Some(self.eval(run, l)?.as_long().max(0) as usize),
            None => None,
        };
        match fe.sort {
            Some(sort) => {
                let by = match sort.by {
                    SortBy::Value => table::SortBy::Value,
                    SortBy::Key(i) => table::SortBy::Key(i + 1),
                };
                let dir = if sort.descending {
                    table::Direction::Descending
                } else {
                    table::Direction::Ascending
                };
                table::sort_entries(&mut entries, by, dir, limit);
            }
            None => entries.truncate(limit.unwrap_or(usize::MAX)),
        }
        for e in entries {
            self.count_action(run, span)?;
            for (name, k) in fe.keys.iter().zip(e.keys) {
                let v = match k {
                    table::Key::Long(n) => Value::Long(n),
                    table::Key::Str(s) => Value::Str(s),
                };
                self.bind(run, name, v)?;
            }
            if let Some(v) = &fe.value {
                let val = match e.value {
                    table::Value::Long(n) | table::Value::Pointer(n) => Value::Long(n),
                    table::Value::Str(s) => Value::Str(s),
                    table::Value::Stats(s) => Value::Long(s.count),
                };
                self.bind(run, v, val)?;
            }
            match self.stmt(run, &fe.body)? {
                Flow::Break => break,
                Flow::Normal | Flow::Continue => {}
                f => return Ok(f),
            }
        }
        Ok(Flow::Normal)
    }

    /// Sets the variable a `foreach` names (a local, or a global if the name is one).
    fn bind(&mut self, run: &mut Run<'_, 's>, name: &'s Ident, v: Value) -> R<()> {
        let p = match self.info.binding(name) {
            Some(Binding::Global(_)) => Place::Global(
                self.global(&name.name, name.span, &run.pp)?,
                Vec::new(),
                name.span,
            ),
            _ => Place::Local(&name.name, Type::Long),
        };
        self.write(run, &p, v).map(|_| ())
    }

    // ---------------------------------------------------------------- expressions

    fn eval_all(&mut self, run: &mut Run<'_, 's>, es: &'s [Expr]) -> R<Vec<Value>> {
        es.iter().map(|e| self.eval(run, e)).collect()
    }

    fn place(&mut self, run: &mut Run<'_, 's>, e: &'s Expr) -> R<Place<'s>> {
        match &e.kind {
            ExprKind::Var(id) if self.info.global_of(id).is_some() => Ok(Place::Global(
                self.global(&id.name, id.span, &run.pp)?,
                Vec::new(),
                id.span,
            )),
            ExprKind::Var(id) => Ok(Place::Local(
                &id.name,
                self.info.expr_type(e).unwrap_or(Type::Long),
            )),
            ExprKind::Index { array, keys } => {
                let g = self.global(&array.name, array.span, &run.pp)?;
                let keys = self.eval_all(run, keys)?;
                Ok(Place::Global(g, keys, array.span))
            }
            _ => Err(self.error(run, "cannot assign to this expression", e.span)),
        }
    }

    fn read(&self, run: &mut Run<'_, 's>, p: &Place<'s>) -> R<Value> {
        match p {
            Place::Local(name, ty) => Ok(run
                .frames
                .last()
                .and_then(|f| f.locals.get(name).cloned())
                .unwrap_or_else(|| zero_of(Some(*ty)))),
            Place::Global(g, keys, span) => run
                .globals
                .get(g, keys)
                .map_err(|e| self.globals_error(run, e, *span)),
        }
    }

    fn write(&self, run: &mut Run<'_, 's>, p: &Place<'s>, mut v: Value) -> R<Value> {
        if let Value::Str(s) = &mut v {
            cut_string(s, self.max_bytes);
        }
        match p {
            Place::Local(name, _) => {
                if let Some(f) = run.frames.last_mut() {
                    f.locals.insert(name, v.clone());
                }
            }
            Place::Global(g, keys, span) => run
                .globals
                .set(g, keys, v.clone())
                .map_err(|e| self.globals_error(run, e, *span))?,
        }
        Ok(v)
    }

    /// The value of `e`. Each kind is its own step, so that the frame a nested
    /// expression adds to the stack is small.
    fn eval(&mut self, run: &mut Run<'_, 's>, e: &'s Expr) -> R<Value> {
        match &e.kind {
            ExprKind::Num(n) => Ok(Value::Long(*n)),
            ExprKind::Str(s) => Ok(Value::Str(literal(s, self.max_bytes))),
            ExprKind::ScriptArg { index, string } => Err(self.error(
                run,
                format!(
                    "script argument {}{index} was not given",
                    if *string { '@' } else { '$' }
                ),
                e.span,
            )),
            ExprKind::Var(_) | ExprKind::Index { .. } => self.eval_variable(run, e),
            ExprKind::Target(_) | ExprKind::AddrOf(_) | ExprKind::Entry(_) => Err(self.error(
                run,
                "target variables are not available in begin, end or timer probes",
                e.span,
            )),
            ExprKind::Defined(_) => Ok(Value::Long(i64::from(
                self.info.defined.get(&e.id).copied().unwrap_or(false),
            ))),
            ExprKind::Call { name, args } => self.call(run, e, name, args),
            ExprKind::Stat { op, arg, .. } => self.stat_value(run, *op, arg, e.span),
            ExprKind::Unary { op, expr } => self.eval_unary(run, *op, expr),
            ExprKind::IncDec { inc, prefix, expr } => self.eval_inc_dec(run, *inc, *prefix, expr),
            ExprKind::Binary { op, lhs, rhs } => self.eval_binary(run, e, *op, lhs, rhs),
            ExprKind::Assign { op, lhs, rhs } => self.eval_assign(run, *op, lhs, rhs),
            ExprKind::Aggregate { lhs, rhs } => self.eval_aggregate(run, lhs, rhs),
            ExprKind::Ternary { cond, then, els } => {
                if self.eval(run, cond)?.as_long() != 0 {
                    self.eval(run, then)
                } else {
                    self.eval(run, els)
                }
            }
            ExprKind::In { keys, array } => self.eval_in(run, keys, array),
        }
    }

    fn eval_variable(&mut self, run: &mut Run<'_, 's>, e: &'s Expr) -> R<Value> {
        if self.info.expr_type(e) == Some(Type::Stats) {
            return Err(self.error(run, "a statistic has no value of its own", e.span));
        }
        let p = self.place(run, e)?;
        self.read(run, &p)
    }

    fn eval_unary(&mut self, run: &mut Run<'_, 's>, op: UnOp, expr: &'s Expr) -> R<Value> {
        let v = self.eval(run, expr)?.as_long();
        Ok(Value::Long(match op {
            UnOp::Neg => v.wrapping_neg(),
            UnOp::Plus => v,
            UnOp::Not => i64::from(v == 0),
            UnOp::BitNot => !v,
        }))
    }

    fn eval_inc_dec(
        &mut self,
        run: &mut Run<'_, 's>,
        inc: bool,
        prefix: bool,
        expr: &'s Expr,
    ) -> R<Value> {
        let p = self.place(run, expr)?;
        let delta = if inc { 1 } else { -1 };
        let new = match &p {
            Place::Global(g, keys, span) => run
                .globals
                .add(g, keys, delta)
                .map_err(|err| self.globals_error(run, err, *span))?,
            Place::Local(..) => {
                let v = self.read(run, &p)?.as_long().wrapping_add(delta);
                self.write(run, &p, Value::Long(v))?;
                v
            }
        };
        Ok(Value::Long(if prefix {
            new
        } else {
            new.wrapping_sub(delta)
        }))
    }

    fn eval_binary(
        &mut self,
        run: &mut Run<'_, 's>,
        e: &'s Expr,
        op: BinOp,
        lhs: &'s Expr,
        rhs: &'s Expr,
    ) -> R<Value> {
        match op {
            BinOp::And => {
                let l = self.eval(run, lhs)?.as_long() != 0;
                Ok(Value::Long(i64::from(
                    l && self.eval(run, rhs)?.as_long() != 0,
                )))
            }
            BinOp::Or => {
                let l = self.eval(run, lhs)?.as_long() != 0;
                Ok(Value::Long(i64::from(
                    l || self.eval(run, rhs)?.as_long() != 0,
                )))
            }
            BinOp::Match | BinOp::NotMatch => self.regex_match(run, e, op, lhs, rhs),
            _ => {
                let l = self.eval(run, lhs)?;
                let r = self.eval(run, rhs)?;
                self.binary(
                    run,
                    op,
                    l,
                    r,
                    lang::stop::operator_place(lhs.span, rhs.span),
                )
            }
        }
    }

    fn eval_assign(
        &mut self,
        run: &mut Run<'_, 's>,
        op: Option<BinOp>,
        lhs: &'s Expr,
        rhs: &'s Expr,
    ) -> R<Value> {
        let p = self.place(run, lhs)?;
        let r = self.eval(run, rhs)?;
        let Some(op) = op else {
            return self.write(run, &p, r);
        };
        if let (BinOp::Add | BinOp::Sub, Place::Global(g, keys, span)) = (op, &p) {
            let delta = r.as_long();
            let delta = if op == BinOp::Sub {
                delta.wrapping_neg()
            } else {
                delta
            };
            return run
                .globals
                .add(g, keys, delta)
                .map(Value::Long)
                .map_err(|err| self.globals_error(run, err, *span));
        }
        let l = self.read(run, &p)?;
        let v = self.binary(
            run,
            op,
            l,
            r,
            lang::stop::operator_place(lhs.span, rhs.span),
        )?;
        self.write(run, &p, v)
    }

    fn eval_aggregate(&mut self, run: &mut Run<'_, 's>, lhs: &'s Expr, rhs: &'s Expr) -> R<Value> {
        let (g, keys, span) = self.stat_target(run, lhs)?;
        let v = self.eval(run, rhs)?.as_long();
        run.globals
            .record(g, &keys, v)
            .map_err(|err| self.globals_error(run, err, span))?;
        Ok(Value::Long(v))
    }

    fn eval_in(&mut self, run: &mut Run<'_, 's>, keys: &'s [Expr], array: &'s Ident) -> R<Value> {
        let g = self.global(&array.name, array.span, &run.pp)?;
        let keys = self.eval_all(run, keys)?;
        run.globals
            .contains(g, &keys)
            .map(|b| Value::Long(i64::from(b)))
            .map_err(|err| self.globals_error(run, err, array.span))
    }

    fn binary(&self, run: &Run<'_, 's>, op: BinOp, l: Value, r: Value, near: Span) -> R<Value> {
        if let (Value::Str(a), Value::Str(b)) = (&l, &r) {
            let ord = a.cmp(b);
            let yes = match op {
                BinOp::Concat => {
                    let mut s = a.clone();
                    s.extend_from_slice(b);
                    cut_string(&mut s, self.max_bytes);
                    return Ok(Value::Str(s));
                }
                BinOp::Eq => ord.is_eq(),
                BinOp::Ne => ord.is_ne(),
                BinOp::Lt => ord.is_lt(),
                BinOp::Le => ord.is_le(),
                BinOp::Gt => ord.is_gt(),
                BinOp::Ge => ord.is_ge(),
                _ => return Err(self.error(run, "operator needs numbers", near)),
            };
            return Ok(Value::Long(i64::from(yes)));
        }
        let (a, b) = (l.as_long(), r.as_long());
        let v = match op {
            BinOp::Add => a.wrapping_add(b),
            BinOp::Sub => a.wrapping_sub(b),
            BinOp::Mul => a.wrapping_mul(b),
            BinOp::Div | BinOp::Mod if b == 0 => {
                return Err(self.error(run, "division by 0", near));
            }
            // i64::MIN / -1 wraps to i64::MIN, as stap's `-x`.
            BinOp::Div => a.wrapping_div(b),
            BinOp::Mod => a.wrapping_rem(b),
            // The shift count is taken modulo 64, as x86's shift instructions do.
            BinOp::Shl => a.wrapping_shl(b as u32),
            BinOp::Shr => a.wrapping_shr(b as u32),
            BinOp::BitAnd => a & b,
            BinOp::BitOr => a | b,
            BinOp::BitXor => a ^ b,
            BinOp::Eq => i64::from(a == b),
            BinOp::Ne => i64::from(a != b),
            BinOp::Lt => i64::from(a < b),
            BinOp::Le => i64::from(a <= b),
            BinOp::Gt => i64::from(a > b),
            BinOp::Ge => i64::from(a >= b),
            BinOp::And => i64::from(a != 0 && b != 0),
            BinOp::Or => i64::from(a != 0 || b != 0),
            BinOp::Concat | BinOp::Match | BinOp::NotMatch => {
                return Err(self.error(run, "operator needs strings", near));
            }
        };
        Ok(Value::Long(v))
    }

    /// `s =~ "re"` (1 if `re` matches somewhere in `s`) and `s !~ "re"`. The pattern
    /// is a literal the checker compiled once already; it is compiled here on first
    /// use and kept.
    fn regex_match(
        &mut self,
        run: &mut Run<'_, 's>,
        e: &'s Expr,
        op: BinOp,
        lhs: &'s Expr,
        rhs: &'s Expr,
    ) -> R<Value> {
        let subject = self.eval(run, lhs)?;
        if !self.regexes.contains_key(&e.id) {
            let ExprKind::Str(pattern) = &rhs.kind else {
                return Err(self.error(
                    run,
                    "internal error: a pattern that is not a literal",
                    rhs.span,
                ));
            };
            let re = lang::regex::compile(pattern).map_err(|err| self.error(run, err, rhs.span))?;
            self.regexes.insert(e.id, re);
        }
        let matched = self
            .regexes
            .get(&e.id)
            .is_some_and(|re| re.is_match(subject.as_bytes()));
        Ok(Value::Long(i64::from(matched == (op == BinOp::Match))))
    }

    /// The statistic `s` or `s[keys]` names.
    fn stat_target(
        &mut self,
        run: &mut Run<'_, 's>,
        e: &'s Expr,
    ) -> R<(&'s GlobalSpec, Vec<Value>, Span)> {
        match &e.kind {
            ExprKind::Var(id) => Ok((
                self.global(&id.name, id.span, &run.pp)?,
                Vec::new(),
                id.span,
            )),
            ExprKind::Index { array, keys } => {
                let g = self.global(&array.name, array.span, &run.pp)?;
                let keys = self.eval_all(run, keys)?;
                Ok((g, keys, array.span))
            }
            _ => Err(self.error(run, "not a statistic", e.span)),
        }
    }

    fn stat(&mut self, run: &mut Run<'_, 's>, arg: &'s Expr) -> R<(&'s GlobalSpec, Stat, Span)> {
        let (g, keys, span) = self.stat_target(run, arg)?;
        let s = run
            .globals
            .stat(g, &keys)
            .map_err(|err| self.globals_error(run, err, span))?;
        Ok((g, s, span))
    }

    fn stat_value(
        &mut self,
        run: &mut Run<'_, 's>,
        op: StatOp,
        arg: &'s Expr,
        at: Span,
    ) -> R<Value> {
        let (_, s, _) = self.stat(run, arg)?;
        let v = match op {
            StatOp::Count => Ok(s.count),
            StatOp::Sum => s.sum(),
            StatOp::Min => s.min(),
            StatOp::Max => s.max(),
            StatOp::Avg => s.avg(),
            StatOp::Variance => {
                return Err(self.error(run, "@variance is not supported", at));
            }
            StatOp::HistLog | StatOp::HistLinear => {
                return Err(self.error(run, "a histogram can only be printed", at));
            }
        };
        v.map(Value::Long)
            .map_err(|err| self.error(run, err.to_string(), at))
    }

    /// Prints `print(@hist_log(s))`.
    fn print_hist(&mut self, run: &mut Run<'_, 's>, arg: &'s Expr, at: Span) -> R<()> {
        let (g, s, span) = self.stat(run, arg)?;
        let GlobalShape::Stats { hist: h, .. } = &g.shape else {
            return Err(self.error(run, "not a statistic", span));
        };
        let h = hist(h).map_err(|err| self.error(run, err.to_string(), at))?;
        write_histogram(run.out, &h, &s).map_err(|err| self.error(run, err.to_string(), at))
    }

    // --------------------------------------------------------------------- calls

    fn call(
        &mut self,
        run: &mut Run<'_, 's>,
        e: &'s Expr,
        name: &'s Ident,
        args: &'s [Expr],
    ) -> R<Value> {
        match self.info.callee(e) {
            Some(Callee::Function(fi)) => {
                let (Some(Some(f)), Some(info)) =
                    (self.functions.get(fi).copied(), self.info.functions.get(fi))
                else {
                    return Err(self.error(run, "internal error: no such function", name.span));
                };
                self.call_function(run, f, info, name, args)
            }
            Some(Callee::Builtin(id)) => self.builtin(run, e, id, name, args),
            None => Err(self.error(
                run,
                format!("internal error: '{}' was not resolved", name.name),
                name.span,
            )),
        }
    }

    /// One arm per built-in of `lang`'s table. Those the table says run only in the
    /// kernel were refused by the checker in user-space probes.
    fn builtin(
        &mut self,
        run: &mut Run<'_, 's>,
        e: &'s Expr,
        id: BuiltinId,
        name: &'s Ident,
        args: &'s [Expr],
    ) -> R<Value> {
        let long = |v: i64| Ok(Value::Long(v));
        let now = self.ctx.now_ns;
        match id {
            BuiltinId::Pid => long(self.ctx.pid),
            BuiltinId::Tid => long(self.ctx.tid),
            BuiltinId::Cpu => long(self.ctx.cpu),
            BuiltinId::Target => long(self.ctx.target),
            BuiltinId::Execname => Ok(Value::Str(self.ctx.execname.as_bytes().to_vec())),
            BuiltinId::Pp => Ok(Value::Str(run.pp.as_bytes().to_vec())),
            BuiltinId::GettimeofdayNs => long(now()),
            BuiltinId::GettimeofdayUs => long(now() / 1_000),
            BuiltinId::GettimeofdayMs => long(now() / 1_000_000),
            BuiltinId::GettimeofdayS => long(now() / 1_000_000_000),
            BuiltinId::Exit => {
                run.exit = true;
                long(0)
            }
            BuiltinId::Printf => {
                self.printf(run, e, name, args, true)?;
                long(0)
            }
            BuiltinId::Sprintf => {
                let mut buf = self.printf(run, e, name, args, false)?;
                cut_string(&mut buf, self.max_bytes);
                Ok(Value::Str(buf))
            }
            BuiltinId::Print | BuiltinId::Println => {
                self.print(run, name, args, id == BuiltinId::Println)?;
                long(0)
            }
            BuiltinId::Sprint => {
                let mut s = Vec::new();
                for a in args {
                    let v = self.eval_printed(run, a)?;
                    write_value(&mut s, &v.0);
                }
                cut_string(&mut s, self.max_bytes);
                Ok(Value::Str(s))
            }
            // In user space the only values with a length are strings: Go values
            // are read in process probes.
            BuiltinId::Strlen | BuiltinId::Len => {
                let v = self.eval_all(run, args)?;
                long(v.first().map_or(0, |s| s.as_bytes().len() as i64))
            }
            BuiltinId::Substr => {
                let v = self.eval_all(run, args)?;
                let (s, start, len) = match v.as_slice() {
                    [s, a, b] => (s.as_bytes(), a.as_long(), b.as_long()),
                    _ => return Err(self.error(run, "substr takes 3 arguments", e.span)),
                };
                Ok(Value::Str(substr(s, start, len).to_vec()))
            }
            BuiltinId::PrintUsyms => {
                let v = self.eval_all(run, args)?;
                let stack = v.first().map_or(0, Value::as_long) as u64;
                run.globals
                    .write_stack(stack | bpf::script::STACK_SYMS, run.out);
                long(0)
            }
            BuiltinId::Isinstr => {
                let v = self.eval_all(run, args)?;
                let found = match v.as_slice() {
                    [a, b] => {
                        let (h, n) = (a.as_bytes(), b.as_bytes());
                        n.is_empty() || h.windows(n.len()).any(|w| w == n)
                    }
                    _ => false,
                };
                long(i64::from(found))
            }
            BuiltinId::Usymname => {
                let addr = match self.eval_all(run, args)?.first() {
                    Some(v) => v.as_long(),
                    None => 0,
                };
                let named = self.symbols.as_mut().and_then(|f| f(addr as u64));
                let mut s = named.unwrap_or_else(|| format!("{addr:#x}")).into_bytes();
                cut_string(&mut s, self.max_bytes);
                Ok(Value::Str(s))
            }
            BuiltinId::Probefunc
            | BuiltinId::Ppfunc
            | BuiltinId::UserString
            | BuiltinId::UserStringN
            | BuiltinId::UserLong
            | BuiltinId::UserInt
            | BuiltinId::UserShort
            | BuiltinId::UserChar
            | BuiltinId::PrintUbacktrace
            | BuiltinId::PrintUbacktraceFileline
            | BuiltinId::Ubacktrace
            | BuiltinId::SprintUbacktrace
            | BuiltinId::Goid
            | BuiltinId::GoWaitReason
            | BuiltinId::Cap
            | BuiltinId::Register
            | BuiltinId::UserMode => Err(self.error(
                run,
                format!(
                    "internal error: '{}' runs only in process probes, and the checker lets it here",
                    id.name()
                ),
                name.span,
            )),
        }
    }

    /// `printf` (`line`: printed, cut at the line limit, strings at the string limit
    /// marked) or `sprintf` (returned, cut at stap's `sprintf` limit, no marks).
    fn printf(
        &mut self,
        run: &mut Run<'_, 's>,
        e: &'s Expr,
        name: &'s Ident,
        args: &'s [Expr],
        line: bool,
    ) -> R<Vec<u8>> {
        let info = self.info;
        let Some(format) = info.format(e) else {
            return Err(self.error(run, "internal error: an unchecked format", name.span));
        };
        let values = args
            .get(1..)
            .unwrap_or(&[])
            .iter()
            .map(|a| self.eval_printed(run, a))
            .collect::<R<Vec<Printed>>>()?;
        let mut buf = Vec::new();
        self.write_values(run, format, &values, line, &mut buf, name.span)?;
        Ok(buf)
    }

    /// A value to print: a stack as its text (asked of the host, which has its
    /// frames), which is not a script string: no string limit, no cut mark.
    fn eval_printed(&mut self, run: &mut Run<'_, 's>, e: &'s Expr) -> R<Printed> {
        let v = self.eval(run, e)?;
        if self.info.expr_type(e) != Some(Type::Stack) {
            return Ok((v, false));
        }
        let mut text = Vec::new();
        run.globals.write_stack(v.as_long() as u64, &mut text);
        Ok((Value::Str(text), true))
    }

    /// Writes `values` with `format`: as a printed line to the output, or as a value
    /// into `buf`.
    fn write_values(
        &mut self,
        run: &mut Run<'_, 's>,
        format: &lang::format::Format,
        values: &[Printed],
        line: bool,
        buf: &mut Vec<u8>,
        at: Span,
    ) -> R<()> {
        let max = self.max_bytes;
        let args: Vec<Arg<'_>> = values
            .iter()
            .map(|(v, stack)| match v {
                Value::Long(n) => Arg::Long(*n),
                Value::Str(s) if line && !stack => string_arg(s, max),
                Value::Str(s) => Arg::Str(s),
            })
            .collect();
        // A stack's text does not count towards the printf limit (as in the kernel's
        // records: its frames are not what the probe printed).
        let stacks: usize = values
            .iter()
            .filter(|(_, stack)| *stack)
            .map(|(v, _)| v.as_bytes().len())
            .sum();
        let written = if line {
            write_line(format, run.out, &args, self.max_line.saturating_add(stacks))
                .map(|c| self.cuts.add(c))
        } else {
            crate::format::write_value(format, buf, &args, MAX_SPRINTF_LEN)
        };
        written.map_err(|err| self.error(run, err.to_string(), at))
    }

    /// `print(a, b, …)` and `println`: each value as `%d` or `%s`, one line, as the
    /// kernel side prints them; a histogram drawn where it stands.
    fn print(
        &mut self,
        run: &mut Run<'_, 's>,
        name: &'s Ident,
        args: &'s [Expr],
        newline: bool,
    ) -> R<()> {
        let mut values = Vec::new();
        let mut floats = Vec::new();
        let flush = |this: &mut Self,
                     run: &mut Run<'_, 's>,
                     values: &mut Vec<Printed>,
                     floats: &mut Vec<bool>,
                     nl: bool| {
            if values.is_empty() && !nl {
                return Ok(());
            }
            // A float (read by a process probe, kept in a global) prints as `%g`, as
            // the kernel side prints it.
            let kinds: Vec<lang::format::ArgKind> = values
                .iter()
                .zip(floats.iter())
                .map(|((v, _), float)| match v {
                    Value::Long(_) if *float => lang::format::ArgKind::Float,
                    Value::Long(_) => lang::format::ArgKind::Long,
                    Value::Str(_) => lang::format::ArgKind::Str,
                })
                .collect();
            let format = lang::format::Format::for_print(&kinds, None, nl);
            let r = this.write_values(run, &format, values, true, &mut Vec::new(), name.span);
            values.clear();
            floats.clear();
            r
        };
        for a in args {
            if let ExprKind::Stat { op, arg, .. } = &a.kind
                && op.is_hist()
            {
                flush(self, run, &mut values, &mut floats, false)?;
                self.print_hist(run, arg, a.span)?;
                continue;
            }
            values.push(self.eval_printed(run, a)?);
            floats.push(self.info.expr_type(a) == Some(Type::Float));
        }
        flush(self, run, &mut values, &mut floats, newline)
    }

    fn call_function(
        &mut self,
        run: &mut Run<'_, 's>,
        f: &'s Function,
        fi: &'s FunctionInfo,
        name: &'s Ident,
        args: &'s [Expr],
    ) -> R<Value> {
        let values = self.eval_all(run, args)?;
        if run.calls.len() >= self.max_nesting {
            return Err(self.error(run, "MAXNESTING exceeded", name.span));
        }
        let mut locals = HashMap::new();
        for (p, mut v) in f.params.iter().zip(values) {
            if let Value::Str(s) = &mut v {
                cut_string(s, self.max_bytes);
            }
            locals.insert(p.name.name.as_str(), v);
        }
        run.frames.push(Frame { locals, ret: None });
        run.calls.push(Near { span: name.span });
        let flow = self.block(run, &f.body);
        run.calls.pop();
        let frame = run.frames.pop();
        flow?;
        let ret = frame.and_then(|f| f.ret);
        Ok(ret.unwrap_or_else(|| zero_of(fi.ret)))
    }
}

/// A string literal as a value, cut to the string limit.
fn literal(s: &str, max_bytes: usize) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    cut_string(&mut v, max_bytes);
    v
}

fn zero_of(ty: Option<Type>) -> Value {
    match ty {
        Some(Type::String) => Value::Str(Vec::new()),
        _ => Value::Long(0),
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Long(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Str(s) => out.extend_from_slice(s),
    }
}

/// Stap's `substr(str, start, length)`: `start` counts from 0; out-of-range
/// starts and negative lengths give `""`.
fn substr(s: &[u8], start: i64, len: i64) -> &[u8] {
    if start < 0 || len < 0 || start as u64 >= s.len() as u64 {
        return &[];
    }
    let start = start as usize;
    let end = start.saturating_add(len as usize).min(s.len());
    &s[start..end]
}

fn global_error(e: GlobalsError, span: Span, pp: &str) -> RuntimeError {
    RuntimeError {
        message: e.to_string(),
        near: Some(Near { span }),
        called_from: Vec::new(),
        probe: pp.to_string(),
    }
}

/// Prints, the way stap does at the end of a run, the globals the script writes but
/// never reads (`GlobalSpec::read == false`), in declaration order: `x=5`,
/// `s="text"`, a statistic's `@count=…` summary, or an array's elements by value
/// descending (see [`table::write_global_array`]). A stack prints as its addresses.
pub fn write_unread_globals(
    specs: &[GlobalSpec],
    globals: &mut dyn Globals,
    out: &mut Vec<u8>,
) -> Result<(), GlobalsError> {
    for g in specs.iter().filter(|g| !g.read) {
        match &g.shape {
            GlobalShape::Scalar { value, .. } => {
                let v = globals.get(g, &[])?;
                let v = shown_value(*value, v, globals);
                table::write_global(out, &g.name, &v);
            }
            GlobalShape::Stats { keys, .. } if keys.is_empty() => {
                let s = globals.stat(g, &[])?;
                table::write_global(out, &g.name, &table::Value::Stats(s));
            }
            GlobalShape::Array { keys, value } => {
                let mut entries: Vec<table::Entry> = globals
                    .entries(g)?
                    .into_iter()
                    .map(|(k, v)| table::Entry {
                        keys: shown_keys(keys, &k, globals),
                        value: shown_value(*value, v, globals),
                    })
                    .collect();
                table::write_global_array(out, &g.name, &mut entries);
            }
            GlobalShape::Stats { keys, .. } => {
                let mut entries: Vec<table::Entry> = globals
                    .stat_entries(g)?
                    .into_iter()
                    .map(|(k, s)| table::Entry {
                        keys: shown_keys(keys, &k, globals),
                        value: table::Value::Stats(s),
                    })
                    .collect();
                table::write_global_array(out, &g.name, &mut entries);
            }
        }
    }
    Ok(())
}

/// A stored value as the table shows it: a stack as its text.
fn shown_value(kind: ValueKind, v: Value, globals: &mut dyn Globals) -> table::Value {
    match (kind, v) {
        (ValueKind::Stack, v) => table::Value::Str(stack_text(v, globals)),
        (_, Value::Long(n)) => table::Value::Long(n),
        (_, Value::Str(s)) => table::Value::Str(s),
    }
}

/// Keys as the table shows them: stacks as their text.
fn shown_keys(kinds: &[FieldKind], keys: &[Value], globals: &mut dyn Globals) -> Vec<table::Key> {
    kinds
        .iter()
        .zip(keys)
        .map(|(kind, k)| match kind {
            FieldKind::Stack => table::Key::Str(stack_text(k.clone(), globals)),
            _ => k.to_key(),
        })
        .collect()
}

fn stack_text(v: Value, globals: &mut dyn Globals) -> Vec<u8> {
    let mut text = Vec::new();
    globals.write_stack(v.as_long() as u64, &mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::globals::MemGlobals;
    use bpf::script::{FieldKind, HistSpec, MAX_STRING, ValueKind};
    use bpf::spec::MapId;
    use lang::ast::walk_expr;
    use lang::probe::ProcessProbe;
    use lang::{GoType, Location, ParseOptions, Target, TargetError};

    /// A MOCK target with no functions and no variables: begin, end and timer probes
    /// never ask it anything.
    struct NoTarget;

    fn none<T>(what: &str) -> Result<T, TargetError> {
        Err(TargetError::Other {
            message: format!("no {what} in the mock target"),
            help: None,
        })
    }

    impl Target for NoTarget {
        fn resolve_probe_point(&self, _: &ProcessProbe) -> Result<Vec<Location>, TargetError> {
            none("functions")
        }
        fn context_var(&self, _: &Location, _: &str) -> Result<GoType, TargetError> {
            none("variables")
        }
        fn context_vars(
            &self,
            _: &Location,
            _: VarSet,
        ) -> Result<Vec<(String, GoType)>, TargetError> {
            none("variables")
        }
        fn member(&self, _: &GoType, _: &str) -> Result<GoType, TargetError> {
            none("types")
        }
        fn index(&self, _: &GoType) -> Result<GoType, TargetError> {
            none("types")
        }
        fn cast_type(&self, _: &str, _: Option<&str>) -> Result<GoType, TargetError> {
            none("types")
        }
    }

    /// A script parsed and checked, with the storage layout codegen would give it:
    /// longs as 8 bytes, strings in `MAX_STRING` slots, statistics with the histogram
    /// the script prints.
    struct Checked {
        sm: SourceMap,
        script: Script,
        info: TypeInfo,
        specs: Vec<GlobalSpec>,
        probes: Vec<UserProbe>,
    }

    fn check(src: &str, unread: &[&str]) -> Checked {
        let mut sm = SourceMap::new();
        let file = sm.add("t.stp", src);
        let (script, diags) = lang::parse(file, src, &ParseOptions::default());
        assert!(diags.is_empty(), "{}", sm.render_all(&diags));
        let (info, diags) = lang::check(&script, &NoTarget);
        assert!(!lang::has_errors(&diags), "{}", sm.render_all(&diags));
        let field = |t: &Option<Type>| match t {
            Some(Type::String) => FieldKind::Str { len: MAX_STRING },
            _ => FieldKind::Long,
        };
        let value = |t: Option<Type>| match t {
            Some(Type::String) => ValueKind::Str { len: MAX_STRING },
            _ => ValueKind::Long,
        };
        let mut specs = Vec::new();
        let mut offset = 0;
        for (i, g) in info.globals.iter().enumerate() {
            let keys: Vec<FieldKind> = g.keys.iter().flatten().map(field).collect();
            let shape = match (g.ty, &g.keys) {
                (Some(Type::Stats), _) => GlobalShape::Stats {
                    keys,
                    hist: hist_of(&script, &g.name),
                },
                (ty, Some(_)) => GlobalShape::Array {
                    keys,
                    value: value(ty),
                },
                (ty, None) => {
                    offset += 128;
                    GlobalShape::Scalar {
                        offset: offset - 128,
                        value: value(ty),
                    }
                }
            };
            specs.push(GlobalSpec {
                name: g.name.clone(),
                map: MapId(i as u32),
                shape,
                read: !unread.contains(&g.name.as_str()),
            });
        }
        let mut probes = Vec::new();
        for p in &info.probes {
            for rp in &p.points {
                let when = match rp.kind {
                    ProbeKind::Begin => UserProbeKind::Begin,
                    ProbeKind::End => UserProbeKind::End,
                    ProbeKind::Timer { period_ns } => UserProbeKind::Timer { period_ns },
                    ProbeKind::Process(_) | ProbeKind::Sample { .. } => continue,
                };
                probes.push(UserProbe { item: p.item, when });
            }
        }
        Checked {
            sm,
            script,
            info,
            specs,
            probes,
        }
    }

    /// The histogram `@hist_log(name)` or `@hist_linear(name, a, b, c)` asks for.
    fn hist_of(script: &Script, name: &str) -> HistSpec {
        let mut h = HistSpec::None;
        let mut visit = |e: &Expr| {
            let ExprKind::Stat { op, arg, params } = &e.kind else {
                return;
            };
            let named = match &arg.kind {
                ExprKind::Var(v) => v.name == name,
                ExprKind::Index { array, .. } => array.name == name,
                _ => false,
            };
            let n = |i: usize| match params.get(i).map(|p| &p.kind) {
                Some(ExprKind::Num(n)) => *n,
                _ => 0,
            };
            match op {
                StatOp::HistLog if named => h = HistSpec::Log,
                StatOp::HistLinear if named => {
                    h = HistSpec::Linear {
                        start: n(0),
                        stop: n(1),
                        interval: n(2),
                    }
                }
                _ => {}
            }
        };
        for item in &script.items {
            let body = match item {
                Item::Probe(p) => &p.body,
                Item::Function(f) => &f.body,
                Item::Alias(a) => &a.body,
                Item::Global(_) => continue,
            };
            for s in &body.stmts {
                walk_stmt(s, &mut |e| walk_expr(e, &mut visit));
            }
        }
        h
    }

    /// What a stap session prints: the begin probes, then (stap runs them after
    /// `exit()` or at the end anyway) the end probes, then the unread globals; an
    /// error is printed as stap prints it and ends the run.
    fn session(src: &str, unread: &[&str]) -> String {
        session_in(src, unread, &mut MemGlobals::new())
    }

    fn session_in(src: &str, unread: &[&str], g: &mut MemGlobals) -> String {
        let c = check(src, unread);
        let mut out = Vec::new();
        let mut interp = Interp::new(
            &c.script,
            &c.info,
            &c.specs,
            Context::default(),
            Limits::default(),
        );
        let mut result = interp.init_globals(g);
        for kind in [UserProbeKind::Begin, UserProbeKind::End] {
            for p in c.probes.iter().filter(|p| p.when == kind) {
                if result.is_ok() {
                    result = interp.run(p, g, &mut out).map(|_| ());
                }
            }
        }
        match result {
            Ok(()) => write_unread_globals(&c.specs, g, &mut out).unwrap(),
            Err(e) => out.extend_from_slice(format!("ERROR: {}\n", e.render(&c.sm)).as_bytes()),
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Line and column of the first `pat` in `src`, as stap numbers them.
    fn at(src: &str, pat: &str) -> String {
        let i = src.find(pat).unwrap();
        let line = src[..i].matches('\n').count() + 1;
        let col = i - src[..i].rfind('\n').map_or(0, |n| n + 1) + 1;
        format!("t.stp:{line}:{col}")
    }

    #[test]
    fn foreach_sorts_by_value_descending() {
        let src = "global a\nprobe begin { for (i=0;i<5;i++) a[i%2] += i; \
                   foreach (k in a-) printf(\"%d %d\\n\", k, a[k]); exit() }";
        assert_eq!(session(src, &[]), "0 6\n1 4\n");
    }

    #[test]
    fn foreach_by_key_with_limit_and_value_variable() {
        let src = r#"global a, b
probe begin {
  a["x",3] = 1; a["y",1] = 2; a["z",2] = 3
  foreach ([s, n+] in a limit 2) printf("%s %d %d\n", s, n, a[s,n])
  b[1] = 30; b[2] = 10; b[3] = 20
  foreach (v = [k] in b+) printf("%d=%d ", k, v)
  foreach (k in b limit 0) print("never")
  println("")
}"#;
        assert_eq!(session(src, &[]), "y 1 2\nz 2 3\n2=10 3=20 1=30 \n");
    }

    #[test]
    fn arithmetic_wraps_and_truncates_toward_zero() {
        let src = "probe begin { x = 9223372036854775807; x++; y = x / -1
  printf(\"%d %d %d %d %d\\n\", x, y, -7 / 2, -7 % 2, 7 % -2)
  printf(\"%d %d %d %d\\n\", 6 & 3, 6 | 3, 6 ^ 3, ~0)
  printf(\"%d %d %d\\n\", 1 << 4, -16 >> 2, !5) }";
        assert_eq!(
            session(src, &[]),
            "-9223372036854775808 -9223372036854775808 -3 -1 1\n2 7 5 -1\n16 -4 0\n"
        );
    }

    #[test]
    fn division_by_zero_stops_the_probe_where_stap_says() {
        let src =
            "probe begin { println(\"before\"); x = 1; y = 0; println(x / y); println(\"after\") }";
        assert_eq!(
            session(src, &[]),
            format!(
                "before\nERROR: division by 0 near operator '/' at {} in probe begin\n",
                at(src, "/ y")
            )
        );
        let src = "probe begin { y = 0; x = (y + 1) * 2 / (y) }";
        assert_eq!(
            session(src, &[]),
            format!(
                "ERROR: division by 0 near operator '/' at {} in probe begin\n",
                at(src, "/ (y)")
            )
        );
        // Inside a function, stap names the call too.
        let src = "function f(x) { return 10 % x }\nprobe end { f(0) }";
        assert_eq!(
            session(src, &[]),
            format!(
                "ERROR: division by 0 near operator '%' at {} (called from identifier 'f' at {}) in probe end\n",
                at(src, "% x"),
                at(src, "f(0)")
            )
        );
    }

    #[test]
    fn strings_concatenate_compare_and_are_cut() {
        let src = r#"probe begin {
  s = "a"; for (i = 0; i < 8; i++) s = s . s
  printf("%d %d %d %d\n", strlen(s), "abc" < "abd", "b" == "b", "b" != "b")
  printf("[%s] [%s] [%s]\n", substr("hello", 1, 3), substr("hello", 3, 99), substr("hi", 5, 1))
  printf("%d %d\n", isinstr("gotap", "tap"), isinstr("gotap", "stap"))
  t = sprintf("%5s|%-3d|%x", "ab", 7, 255); println(t)
  println(sprint(42) . "!")
}"#;
        // 256 bytes of "a", cut to MAX_STRING - 1 = 127.
        assert_eq!(
            session(src, &[]),
            "127 1 1 0\n[ell] [lo] []\n1 0\n   ab|7  |ff\n42!\n"
        );
    }

    #[test]
    fn recursion_is_limited_like_stap() {
        let src = "function fib(n) { if (n < 2) return n; return fib(n-1) + fib(n-2) }
probe begin { println(fib(10)) }";
        assert_eq!(session(src, &[]), "55\n");
        // stap: MAXNESTING = deepest chain (f calling f: 2) + 1 + 10 for recursion,
        // so 13 calls run and the 14th fails.
        let src = "global depth\nfunction f:long(n) { depth++; return f(n+1) }\nprobe begin { f(0) }\nprobe end { println(depth) }";
        let out = session(src, &[]);
        let near = format!(
            "ERROR: MAXNESTING exceeded near identifier 'f' at {}",
            at(src, "f(n+1)")
        );
        assert!(out.starts_with(&near), "{out}");
        let c = check(src, &[]);
        let mut g = MemGlobals::new();
        let mut i = Interp::new(
            &c.script,
            &c.info,
            &c.specs,
            Context::default(),
            Limits::default(),
        );
        assert!(i.run(&c.probes[0], &mut g, &mut Vec::new()).is_err());
        assert_eq!(g.get(&c.specs[0], &[]).unwrap(), Value::Long(13));
    }

    #[test]
    fn endless_loops_hit_maxaction() {
        // Stap batches its action accounting, so only the message is compared, not
        // the exact statement it names.
        for src in [
            "probe begin { while (1) x++ }",
            "probe begin { for (;;) { } }",
            "global a\nprobe begin { a[1] = 1; foreach (k in a) { while (1) { } } }",
        ] {
            let out = session(src, &[]);
            assert!(out.starts_with("ERROR: MAXACTION exceeded near "), "{out}");
            assert!(out.ends_with(" in probe begin\n"), "{out}");
        }
    }

    #[test]
    fn statistics_and_their_extractors() {
        let src = r#"global s, t
probe begin {
  s <<< 1; s <<< 2; s <<< 10
  printf("%d %d %d %d %d\n", @count(s), @sum(s), @min(s), @max(s), @avg(s))
  t["a"] <<< 1; t["b"] <<< 1; t["b"] <<< 5
  foreach (k in t-) printf("%s %d\n", k, @count(t[k]))
}"#;
        assert_eq!(session(src, &[]), "3 13 1 10 4\nb 2\na 1\n");
        let src = "global s\nprobe begin { s <<< 1; delete s; println(@min(s)) }";
        assert!(session(src, &[]).starts_with("ERROR: empty aggregate near"));
    }

    #[test]
    fn histograms_print_one_at_sign_per_count_when_they_fit() {
        let src = "global s\nprobe begin { s <<< 1; s <<< 2; s <<< 2; print(@hist_log(s)) }";
        let out = session(src, &[]);
        let bar = |n: usize| format!("{}{}", "@".repeat(n), " ".repeat(50 - n));
        // stap scales bars only when the largest count exceeds the 50 columns.
        assert!(
            out.starts_with(&format!("value |{} count\n", "-".repeat(50))),
            "{out}"
        );
        assert!(out.contains(&format!("    2 |{} 2\n", bar(2))), "{out}");
        assert!(out.contains(&format!("    1 |{} 1\n", bar(1))), "{out}");
        assert!(out.ends_with("\n\n"), "{out}");
    }

    #[test]
    fn delete_and_membership() {
        let src = r#"global a
probe begin {
  a[1] = 1; a[2] = 2; delete a[1]
  printf("%d %d %d\n", 1 in a, 2 in a, a[1])
  delete a; printf("%d\n", 2 in a)
  x = 5; delete x; printf("%d\n", x)
}"#;
        assert_eq!(session(src, &[]), "0 1 0\n0\n0\n");
    }

    #[test]
    fn exit_ends_the_session_after_the_probe() {
        let src = "probe begin { exit(); println(\"still\") }\nprobe end { println(\"end\") }";
        assert_eq!(session(src, &[]), "still\nend\n");
        let c = check(src, &[]);
        let mut i = Interp::new(
            &c.script,
            &c.info,
            &c.specs,
            Context::default(),
            Limits::default(),
        );
        let o = i.run(&c.probes[0], &mut MemGlobals::new(), &mut Vec::new());
        assert_eq!(o, Ok(Outcome { exit: true }));
    }

    #[test]
    fn unread_globals_print_at_the_end_like_stap() {
        let src = r#"global x, name, a, s, unused
probe begin { x = 5; name = "go"; a["one"] = 1; a["two"] = 2; s <<< 3; unused = 1; exit() }"#;
        assert_eq!(
            session(src, &["x", "name", "a", "s"]),
            "x=5\nname=\"go\"\na[\"two\"]=2\na[\"one\"]=1\ns @count=1 @min=3 @max=3 @sum=3 @avg=3\n"
        );
    }

    #[test]
    fn builtins_of_the_user_space_context() {
        let src = "global g = 3, h = \"hi\"\nprobe timer.s(1) { printf(\"%s %d %s %d %d %s\\n\", pp(), pid(), execname(), target(), g, h) }";
        let c = check(src, &[]);
        let ctx = Context {
            pid: 42,
            target: 7,
            ..Context::default()
        };
        let mut i = Interp::new(&c.script, &c.info, &c.specs, ctx, Limits::default());
        let mut g = MemGlobals::new();
        let mut out = Vec::new();
        i.init_globals(&mut g).unwrap();
        i.run(&c.probes[0], &mut g, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "timer.s(1) 42 gotap 7 3 hi\n"
        );
        let ctx = Context {
            now_ns: || 1_700_000_123_456_789_000,
            ..Context::default()
        };
        let src = "probe begin { printf(\"%d %d %d\\n\", gettimeofday_s(), gettimeofday_ms(), gettimeofday_us()) }";
        let c = check(src, &[]);
        let mut i = Interp::new(&c.script, &c.info, &c.specs, ctx, Limits::default());
        let mut out = Vec::new();
        i.run(&c.probes[0], &mut MemGlobals::new(), &mut out)
            .unwrap();
        assert_eq!(out, b"1700000123 1700000123456 1700000123456789\n");
    }

    #[test]
    fn functions_take_and_return_strings() {
        let src = r#"function greet:string(who:string) { return "hello " . who }
function nothing() { }
function first_big(n) { for (i = 0; ; i++) if (i * i > n) return i }
probe begin { nothing(); println(greet("gopher")); println(first_big(50)) }"#;
        assert_eq!(session(src, &[]), "hello gopher\n8\n");
    }

    #[test]
    fn an_alias_prologue_runs_first_with_the_same_locals() {
        let src =
            "probe start = begin { x = 41 }\nprobe start { x++; printf(\"%d %s\\n\", x, pp()) }";
        assert_eq!(session(src, &[]), "42 begin\n");
    }

    #[test]
    fn a_full_array_stops_the_probe_with_stap_words() {
        let src =
            "global a\nprobe begin { for (i = 0; i < 10; i++) { a[i] = i; printf(\"%d \", i) } }";
        let out = session_in(src, &[], &mut MemGlobals::with_max_entries(3));
        assert_eq!(
            out,
            format!(
                "0 1 2 ERROR: Array overflow, check MAXMAPENTRIES near identifier 'a' at {} in probe begin\n",
                at(src, "a[i] =")
            )
        );
    }

    #[test]
    fn string_arrays_and_compound_assignment() {
        let src = r#"global names, n
probe begin {
  names["k"] = "go"; names["k"] .= "pher"
  n += 5; n -= 2; n *= 7; n /= 2; n %= 4; n <<= 3; n |= 1
  printf("%s %d %d\n", names["k"], n, names["missing"] == "")
}"#;
        // n: 5, 3, 21, 10, 2, 16, 17
        assert_eq!(session(src, &[]), "gopher 17 1\n");
    }

    #[test]
    fn timers_may_do_less_than_begin_probes() {
        // About two actions per iteration: 6000 fit stap's MAXACTION_INTERRUPTIBLE
        // (10000) for begin, not MAXACTION (1000) for a timer.
        let src = "global n\nprobe begin, timer.ms(10) { for (i = 0; i < 3000; i++) n++ }";
        let c = check(src, &[]);
        let mut i = Interp::new(
            &c.script,
            &c.info,
            &c.specs,
            Context::default(),
            Limits::default(),
        );
        let mut g = MemGlobals::new();
        let begin = c
            .probes
            .iter()
            .find(|p| p.when == UserProbeKind::Begin)
            .unwrap();
        let timer = c
            .probes
            .iter()
            .find(|p| p.when != UserProbeKind::Begin)
            .unwrap();
        assert_eq!(
            i.run(begin, &mut g, &mut Vec::new()),
            Ok(Outcome { exit: false })
        );
        let err = i.run(timer, &mut g, &mut Vec::new()).unwrap_err();
        assert_eq!(
            (err.message.as_str(), err.probe.as_str()),
            ("MAXACTION exceeded", "timer.ms(10)")
        );
        assert!(g.get(&c.specs[0], &[]).unwrap().as_long() < 3000 + 1000);
    }
}
