//! The names pass: declarations (globals, functions and their parameters, probe alias
//! names), then one walk over every body that resolves each variable name to a
//! global or a local of its body (creating locals on first use, in the order they
//! are written) and each call to a script function or a built-in. The later passes
//! and the back ends read these answers; nobody applies the rule again.

use std::collections::HashMap;

use super::*;
use crate::builtins::builtin;

impl<'a> Checker<'a> {
    /// Declares the globals, the functions with their parameters, and the probe
    /// aliases' names, in the order they are written.
    pub(super) fn declare(&mut self) {
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
                        refs: HashMap::new(),
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
                    self.aliases.insert(a.name.shape(), i);
                }
                Item::Probe(_) => {}
            }
        }
    }

    pub(super) fn var(&self, r: VarRef) -> &Var {
        match r {
            VarRef::Global(i) => &self.globals[i],
            VarRef::Local(i) => &self.locals[i],
        }
    }

    pub(super) fn var_mut(&mut self, r: VarRef) -> &mut Var {
        match r {
            VarRef::Global(i) => &mut self.globals[i],
            VarRef::Local(i) => &mut self.locals[i],
        }
    }

    /// SystemTap's rule: a function's parameters shadow globals, globals win over
    /// every other name, and any other name is a local of the current body, created
    /// on first use. Recorded, so that later passes (and the back ends, through
    /// [`TypeInfo::names`]) read the answer instead of applying the rule again.
    pub(super) fn resolve(&mut self, id: &Ident) -> VarRef {
        let r = self.apply_rule(id);
        self.refs.insert(id.span, r);
        r
    }

    /// What `id` resolved to in the names pass.
    pub(super) fn lookup(&mut self, id: &Ident) -> VarRef {
        match self.refs.get(&id.span) {
            Some(&r) => r,
            None => self.resolve(id),
        }
    }

    pub(super) fn apply_rule(&mut self, id: &Ident) -> VarRef {
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

    /// Walks every body once, resolving its names and calls.
    pub(super) fn resolve_names(&mut self) {
        self.for_each_body(|c, b| c.names_in_block(b));
    }

    pub(super) fn names_in_block(&mut self, b: &Block) {
        for s in &b.stmts {
            self.names_in_stmt(s);
        }
    }

    pub(super) fn names_in_stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Block(b) => self.names_in_block(b),
            StmtKind::Expr(e) | StmtKind::Delete(e) | StmtKind::Return(Some(e)) => {
                self.names_in_expr(e)
            }
            StmtKind::If { cond, then, els } => {
                self.names_in_expr(cond);
                self.names_in_stmt(then);
                if let Some(e) = els {
                    self.names_in_stmt(e);
                }
            }
            StmtKind::While { cond, body } => {
                self.names_in_expr(cond);
                self.names_in_stmt(body);
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                for e in [init, cond, step].into_iter().flatten() {
                    self.names_in_expr(e);
                }
                self.names_in_stmt(body);
            }
            StmtKind::Foreach(f) => {
                self.resolve(&f.array);
                for k in f.keys.iter().chain(&f.value) {
                    self.resolve(k);
                }
                if let Some(l) = &f.limit {
                    self.names_in_expr(l);
                }
                self.names_in_stmt(&f.body);
            }
            StmtKind::Break
            | StmtKind::Continue
            | StmtKind::Next
            | StmtKind::Return(None)
            | StmtKind::Empty => {}
        }
    }

    /// Resolves the names of `e` in the order they are evaluated.
    pub(super) fn names_in_expr(&mut self, e: &Expr) {
        let mut work = vec![e];
        while let Some(e) = work.pop() {
            match &e.kind {
                ExprKind::Var(id) => {
                    self.resolve(id);
                }
                ExprKind::Index { array, .. } | ExprKind::In { array, .. } => {
                    self.resolve(array);
                }
                ExprKind::Call { name, .. } => self.resolve_call(e, name),
                _ => {}
            }
            // `@defined` of anything but a context expression is an error of its own;
            // the names inside it are not variables to create.
            if let ExprKind::Defined(inner) = &e.kind
                && !matches!(inner.kind, ExprKind::Target(_))
            {
                continue;
            }
            // Children last-first, so that the stack pops them first-first.
            let from = work.len();
            children(e, &mut |c| work.push(c));
            work[from..].reverse();
        }
    }

    pub(super) fn resolve_call(&mut self, e: &Expr, name: &Ident) {
        let callee = match self.fn_index.get(name.name.as_str()) {
            Some(&fi) => Callee::Function(fi),
            None => match builtin(&name.name) {
                Some(b) => Callee::Builtin(b.id),
                // Reported by the types pass, with the nearest names.
                None => return,
            },
        };
        self.calls.insert(e.id, callee);
    }
}
