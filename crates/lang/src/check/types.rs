//! The types pass: every body walked until a walk learns nothing new (a type from a
//! literal, an operator, a built-in's signature, the [`Target`], an assignment), with
//! its diagnostics held back; then one more walk that reports, and the checks of what
//! is still unknown. Each walk reads the names the names pass resolved. Calls are
//! typed in `calls.rs`, context expressions (`$x->f`) in `context.rs`.

use super::*;
use crate::probe::Ctx;

impl Checker<'_> {
    /// Infers every type, then reports conflicts and what stayed unknown.
    pub(super) fn infer_types(&mut self) {
        self.report = false;
        for _ in 0..32 {
            self.changed = false;
            self.walk_bodies();
            if !self.changed {
                break;
            }
        }
        self.report = true;
        self.walk_bodies();
        self.final_checks();
    }

    pub(super) fn walk_bodies(&mut self) {
        self.for_each_body(|c, b| c.block(b));
    }

    pub(super) fn final_checks(&mut self) {
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

    // ---- variables ----

    /// Fixes or checks the (element) type of a variable.
    pub(super) fn set_type(&mut self, r: VarRef, t: Type, span: Span) {
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

    pub(super) fn use_scalar(&mut self, r: VarRef, id: &Ident) -> bool {
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
    pub(super) fn use_array(&mut self, id: &Ident, keys: &[Expr]) -> Option<VarRef> {
        let r = self.lookup(id);
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

    pub(super) fn index_array(
        &mut self,
        r: VarRef,
        id: &Ident,
        keys: &[Expr],
        key_tys: &[Ty],
    ) -> bool {
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

    pub(super) fn set_key_type(&mut self, r: VarRef, i: usize, t: Ty, k: &Expr) {
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

    pub(super) fn key_type(&self, r: VarRef, i: usize) -> Option<Type> {
        self.var(r)
            .array
            .as_ref()
            .and_then(|a| a.keys.get(i).copied().flatten())
    }

    /// Resolves an assignable expression.
    pub(super) fn place(&mut self, e: &Expr, what: &str) -> Option<Place> {
        match &e.kind {
            ExprKind::Var(id) => {
                let r = self.lookup(id);
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
    pub(super) fn record(&mut self, e: &Expr, r: VarRef) {
        if let Some(t) = self.var(r).ty {
            self.exprs.insert(e.id, t);
        }
    }

    pub(super) fn place_ref(p: Place) -> VarRef {
        match p {
            Place::Scalar(r) | Place::Elem(r) => r,
        }
    }

    /// Tells an expression of still-unknown type which type its context needs.
    pub(super) fn hint(&mut self, e: &Expr, t: Type) {
        match &e.kind {
            ExprKind::Var(id) => {
                let r = self.lookup(id);
                if self.var(r).ty.is_none() && self.var(r).array.is_none() {
                    self.set_type(r, t, e.span);
                }
            }
            ExprKind::Index { array, .. } => {
                let r = self.lookup(array);
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

    pub(super) fn block(&mut self, b: &Block) {
        for s in &b.stmts {
            self.stmt(s);
        }
    }

    pub(super) fn stmt(&mut self, s: &Stmt) {
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
    pub(super) fn defined_cond(&self, cond: &Expr) -> Option<bool> {
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
    pub(super) fn maybe_dead<T>(&mut self, dead: bool, f: impl FnOnce(&mut Self) -> T) -> T {
        if dead {
            self.suppress += 1;
        }
        let r = f(self);
        if dead {
            self.suppress -= 1;
        }
        r
    }

    pub(super) fn loop_body(&mut self, body: &Stmt) {
        self.loops += 1;
        self.stmt(body);
        self.loops -= 1;
    }

    pub(super) fn cond(&mut self, e: &Expr) {
        self.expect(e, Type::Long, "a condition");
    }

    pub(super) fn ret(&mut self, s: &Stmt, v: Option<&Expr>) {
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

    pub(super) fn delete(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Var(id) => {
                // `delete arr` clears a whole array; `delete x` resets a scalar.
                self.lookup(id);
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

    pub(super) fn foreach(&mut self, f: &Foreach) {
        let r = self.lookup(&f.array);
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
            let kr = self.lookup(k);
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
            let vr = self.lookup(v);
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
    pub(super) fn expect(&mut self, e: &Expr, want: Type, what: &str) {
        let t = self.value(e, Some(want));
        if let Ty::Known(t) = t
            && t != want
        {
            self.error(e.span, format!("{what} must be {want}, found {t}"));
        }
    }

    /// An expression whose value is used: no void calls, no bare histograms.
    pub(super) fn value(&mut self, e: &Expr, hint: Option<Type>) -> Ty {
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
            Ty::Pretty => {
                self.err(pretty_only(e.span));
                Ty::Unknown
            }
            Ty::Known(Type::Stats) => Ty::Unknown,
            t => t,
        }
    }

    pub(super) fn expr(&mut self, e: &Expr) -> Ty {
        let t = self.expr_kind(e);
        if let Ty::Known(k) = t {
            self.exprs.insert(e.id, k);
        }
        t
    }

    /// The type of one expression node, each kind typed by its own step.
    pub(super) fn expr_kind(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Num(_) => Ty::Known(Type::Long),
            ExprKind::Str(s) => {
                self.literal_limit(e, s);
                Ty::Known(Type::String)
            }
            ExprKind::ScriptArg { string, .. } => {
                Ty::Known(if *string { Type::String } else { Type::Long })
            }
            ExprKind::Var(id) => self.var_value(id),
            ExprKind::Index { array, keys } => match self.use_array(array, keys) {
                Some(r) => self.read(r, array.span),
                None => Ty::Unknown,
            },
            ExprKind::Target(t) => self.target_expr(e, t, false),
            ExprKind::AddrOf(inner) => self.addr_of(e, inner),
            ExprKind::Defined(inner) => self.defined_test(e, inner),
            ExprKind::Entry(inner) => self.entry_value(e, inner),
            ExprKind::Call { name, args } => self.call(e, name, args),
            ExprKind::Stat { op, arg, params } => self.stat(*op, arg, params),
            ExprKind::Unary { op, expr } => {
                let what = format!("the operand of '{}'", op.as_str());
                self.expect(expr, Type::Long, &what);
                Ty::Known(Type::Long)
            }
            ExprKind::IncDec { inc, expr, .. } => self.inc_dec(*inc, expr),
            ExprKind::Binary { op, lhs, rhs } => self.binary(e, *op, lhs, rhs),
            ExprKind::Assign { op, lhs, rhs } => self.assign(*op, lhs, rhs),
            ExprKind::Aggregate { lhs, rhs } => self.aggregate(lhs, rhs),
            ExprKind::Ternary { cond, then, els } => self.ternary(e, cond, then, els),
            ExprKind::In { keys, array } => self.membership(array, keys),
        }
    }

    /// A string literal longer than a string holds is cut: said once, at the literal.
    fn literal_limit(&mut self, e: &Expr, s: &str) {
        let max = self.limits.string_bytes();
        if s.len() > max && self.report && self.suppress == 0 {
            self.diags.push(
                Diagnostic::warning(
                    e.span,
                    format!("this string has {} bytes; it is cut at {max}", s.len()),
                )
                .with_help("-D MAXSTRINGLEN=N raises the limit"),
            );
        }
    }

    /// `x`: a scalar variable's value.
    fn var_value(&mut self, id: &Ident) -> Ty {
        let r = self.lookup(id);
        if !self.use_scalar(r, id) {
            return Ty::Unknown;
        }
        self.read(r, id.span)
    }

    /// `&$x->f`: the address of a context variable or one of its fields.
    fn addr_of(&mut self, e: &Expr, inner: &Expr) -> Ty {
        match &inner.kind {
            ExprKind::Target(t) if !t.path.is_empty() || matches!(t.base, TargetBase::Var(_)) => {
                self.target_expr(inner, t, true);
            }
            _ => self.error(e.span, "'&' needs a context variable or one of its fields"),
        }
        Ty::Known(Type::Long)
    }

    /// `@defined($x)`: whether the context expression types without an error, found
    /// with its errors silenced and recorded for the back ends.
    fn defined_test(&mut self, e: &Expr, inner: &Expr) -> Ty {
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

    /// `@entry(x)`: `x` at function entry, in a return probe only.
    fn entry_value(&mut self, e: &Expr, inner: &Expr) -> Ty {
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

    /// `x++`, `--a[k]`: a long place.
    fn inc_dec(&mut self, inc: bool, expr: &Expr) -> Ty {
        let op = if inc { "++" } else { "--" };
        if let Some(p) = self.place(expr, &format!("apply '{op}' to")) {
            let r = Self::place_ref(p);
            self.var_mut(r).assigned = true;
            self.write(r, Type::Long, expr.span);
            self.record(expr, r);
        }
        Ty::Known(Type::Long)
    }

    /// `s <<< v`: `s` becomes a statistic (a global one), `v` a long.
    fn aggregate(&mut self, lhs: &Expr, rhs: &Expr) -> Ty {
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

    /// `c ? a : b`: both branches of one type (a branch `@defined` rules out is
    /// checked with its errors silenced).
    fn ternary(&mut self, e: &Expr, cond: &Expr, then: &Expr, els: &Expr) -> Ty {
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

    /// `[k1, k2] in a`: `a` must be a global array with keys of these types.
    fn membership(&mut self, array: &Ident, keys: &[Expr]) -> Ty {
        let r = self.lookup(array);
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

    /// Reads a variable's value; statistics cannot be read directly.
    pub(super) fn read(&mut self, r: VarRef, span: Span) -> Ty {
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

    pub(super) fn write(&mut self, r: VarRef, t: Type, span: Span) {
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

    pub(super) fn assign(&mut self, op: Option<BinOp>, lhs: &Expr, rhs: &Expr) -> Ty {
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

    pub(super) fn assign_type(
        &mut self,
        op: Option<BinOp>,
        r: VarRef,
        lhs: &Expr,
        rhs: &Expr,
    ) -> Ty {
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

    pub(super) fn binary(&mut self, e: &Expr, op: BinOp, lhs: &Expr, rhs: &Expr) -> Ty {
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
                match &rhs.kind {
                    ExprKind::Str(p) => {
                        if let Err(msg) = crate::regex::compile(p) {
                            self.error(rhs.span, msg);
                        }
                    }
                    _ => {
                        self.error(rhs.span, "a regular expression must be a string literal");
                        self.value(rhs, None);
                    }
                }
                // A pattern is not a string value: no string limit applies.
                self.exprs.insert(rhs.id, Type::String);
                Ty::Known(Type::Long)
            }
            _ if op.is_comparison() => {
                let a = self.value(lhs, None);
                let b = self.value(rhs, a.known());
                match (a, b) {
                    (Ty::Known(Type::Float), _) | (_, Ty::Known(Type::Float)) => {
                        self.err(
                            Diagnostic::error(e.span, "floating-point values cannot be compared")
                                .with_help("print them with '%f', '%e' or '%g'"),
                        );
                    }
                    (Ty::Known(x), Ty::Known(y)) if x != y => {
                        self.error(e.span, format!("cannot compare {x} with {y}"));
                    }
                    (Ty::Known(Type::Stack), _) if !matches!(op, BinOp::Eq | BinOp::Ne) => {
                        self.err(
                            Diagnostic::error(e.span, "stacks have no order")
                                .with_help("compare stacks with '==' or '!='"),
                        );
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

    pub(super) fn stat(&mut self, op: StatOp, arg: &Expr, params: &[Expr]) -> Ty {
        let name = format!("@{}", op.as_str());
        let p = match &arg.kind {
            ExprKind::Var(id) => {
                let r = self.lookup(id);
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
}

/// The error for a pretty-printed value used as anything but an argument to print.
pub(super) fn pretty_only(span: Span) -> Diagnostic {
    Diagnostic::error(span, "a pretty-printed Go value can only be printed").with_help(
        "pass it to printf (for a '%s'), print() or println(): it is formatted in user space, as Go's %+v prints it",
    )
}
