//! The capabilities pass: every body is walked once more, knowing the back ends it
//! runs in (a probe's from its points, a function's from the probes that reach it),
//! and whatever one of them cannot run is refused at its place: a built-in whose
//! table row does not list that back end, a construct of [`crate::backend::CONSTRUCTS`]
//! (`=~`, `@variance`, a sorted `foreach` in the kernel, `%m` in user space, …), and
//! a `sprintf` conversion the kernel cannot build. So a script that checks can be
//! lowered by both back ends, and neither needs a message of its own for these.
//! Branches that `@defined` rules out are not compiled, so they are not walked.

use super::*;
use crate::backend::{Construct, Runs};
use crate::builtins::Needs;
use crate::format::Conv;

/// A back end a body runs in, with a probe point that puts it there.
#[derive(Clone, Copy)]
struct Reason {
    backend: Backend,
    /// The probe whose point it is (for "the function is called from this probe").
    probe: usize,
    point: usize,
}

impl Checker<'_> {
    pub(super) fn refuse_what_backends_cannot_run(&mut self) {
        for (body, blocks) in self.bodies() {
            self.body = body;
            let reasons = self.reasons();
            for b in blocks {
                for s in &b.stmts {
                    self.capabilities_in_stmt(s, &reasons);
                }
            }
        }
    }

    /// The back ends the current body runs in, each with the first point that says so.
    fn reasons(&self) -> Vec<Reason> {
        let mut out: Vec<Reason> = Vec::new();
        for pi in self.probes_of_body() {
            for (i, p) in self.probes[pi].points.iter().enumerate() {
                let backend = Backend::of(&p.kind);
                if !out.iter().any(|r| r.backend == backend) {
                    out.push(Reason {
                        backend,
                        probe: pi,
                        point: i,
                    });
                }
            }
        }
        out
    }

    fn capabilities_in_stmt(&mut self, s: &Stmt, reasons: &[Reason]) {
        match &s.kind {
            StmtKind::Block(b) => {
                for s in &b.stmts {
                    self.capabilities_in_stmt(s, reasons);
                }
            }
            StmtKind::Expr(e) | StmtKind::Delete(e) | StmtKind::Return(Some(e)) => {
                self.capabilities_in_expr(e, reasons)
            }
            StmtKind::If { cond, then, els } => {
                self.capabilities_in_expr(cond, reasons);
                let live = self.defined_cond(cond);
                if live != Some(false) {
                    self.capabilities_in_stmt(then, reasons);
                }
                if let Some(e) = els
                    && live != Some(true)
                {
                    self.capabilities_in_stmt(e, reasons);
                }
            }
            StmtKind::While { cond, body } => {
                self.capabilities_in_expr(cond, reasons);
                self.capabilities_in_stmt(body, reasons);
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                for e in [init, cond, step].into_iter().flatten() {
                    self.capabilities_in_expr(e, reasons);
                }
                self.capabilities_in_stmt(body, reasons);
            }
            StmtKind::Foreach(f) => {
                if f.sort.is_some() {
                    self.refuse_construct(Construct::SortedForeach, f.array.span, reasons);
                }
                if let Body::Function(_) = self.body {
                    self.refuse_construct(Construct::ForeachInFunction, f.array.span, reasons);
                }
                if let Some(l) = &f.limit {
                    self.capabilities_in_expr(l, reasons);
                }
                self.capabilities_in_stmt(&f.body, reasons);
            }
            StmtKind::Break
            | StmtKind::Continue
            | StmtKind::Next
            | StmtKind::Return(None)
            | StmtKind::Empty => {}
        }
    }

    fn capabilities_in_expr(&mut self, e: &Expr, reasons: &[Reason]) {
        walk_expr(e, &mut |e| match &e.kind {
            ExprKind::Binary {
                op: BinOp::Match | BinOp::NotMatch,
                lhs,
                rhs,
            } => {
                let at = Span {
                    file: lhs.span.file,
                    start: lhs.span.end,
                    end: rhs.span.start.max(lhs.span.end),
                };
                self.refuse_construct(Construct::Regex, at, reasons);
            }
            ExprKind::Stat {
                op: StatOp::Variance,
                ..
            } => self.refuse_construct(Construct::Variance, e.span, reasons),
            ExprKind::Call { name, args } => self.call_capabilities(e, name, args, reasons),
            _ => {}
        });
    }

    fn call_capabilities(&mut self, e: &Expr, name: &Ident, args: &[Expr], reasons: &[Reason]) {
        match self.calls.get(&e.id).copied() {
            Some(Callee::Builtin(id)) => {
                let b = id.row();
                let what = format!("'{}'", b.name);
                let help = format!("'{}' needs {}", b.name, b.runs.describe());
                self.refuse(b.runs, &what, &help, name.span, reasons);
                if b.needs.has(Needs::PROBED_FUNCTION) {
                    self.refuse_in_samples(&what, name.span);
                }
                if matches!(id, BuiltinId::Print | BuiltinId::Println) {
                    for a in args {
                        if let ExprKind::Stat { op, .. } = &a.kind
                            && op.is_hist()
                        {
                            self.refuse_construct(Construct::Histogram, a.span, reasons);
                        }
                    }
                }
                if matches!(id, BuiltinId::Printf | BuiltinId::Sprintf) {
                    self.format_capabilities(e, id, args, reasons);
                }
                if matches!(id, BuiltinId::Sprintf | BuiltinId::Sprint) {
                    let from = usize::from(id == BuiltinId::Sprintf);
                    for a in args.iter().skip(from) {
                        if self.exprs.get(&a.id) == Some(&Type::Stack) {
                            self.refuse_construct(Construct::StackText, a.span, reasons);
                        }
                    }
                }
            }
            Some(Callee::Function(fi)) if self.recursive(fi) => {
                self.refuse_construct(Construct::Recursion, name.span, reasons);
            }
            Some(Callee::Function(fi))
                if matches!(self.body, Body::Probe(_))
                    && self.call_depth(fi) > crate::backend::MAX_INLINED_CALLS =>
            {
                self.refuse_construct(Construct::DeepCalls, name.span, reasons);
            }
            _ => {}
        }
    }

    /// `%m`/`%M` only where target memory is, and what `sprintf` builds in the kernel.
    fn format_capabilities(&mut self, e: &Expr, id: BuiltinId, args: &[Expr], reasons: &[Reason]) {
        let (Some(format), Some(lit)) = (self.formats.get(&e.id).cloned(), args.first()) else {
            return;
        };
        let ExprKind::Str(text) = &lit.kind else {
            return;
        };
        for c in format.conversions() {
            let at = calls::format_place(lit, text, c.at.clone());
            let directive = String::from_utf8_lossy(&text.as_bytes()[c.at.clone()]).into_owned();
            if matches!(c.conv, Conv::Memory | Conv::MemoryHex) {
                self.refuse_construct(Construct::MemoryDump, at, reasons);
            }
            let kernel = match id {
                BuiltinId::Sprintf => c.kernel_sprintf(),
                _ => c.kernel_printf(),
            };
            if let Err(why) = kernel
                && let Some(r) = reasons.iter().find(|r| r.backend == Backend::Kernel)
            {
                let d = Diagnostic::error(
                    at,
                    format!(
                        "'{directive}' cannot be {} in {}: {why}",
                        if id == BuiltinId::Sprintf {
                            "built by sprintf"
                        } else {
                            "sent by printf"
                        },
                        self.point_name(r)
                    ),
                )
                .with_help(if id == BuiltinId::Sprintf {
                    "sprintf in a process probe builds numbers and strings with one flag of '-0+ #' and a written width; printf formats in user space and has the rest"
                } else {
                    "the dumped bytes travel in the probe's record: write their count, at most 256"
                });
                self.refuse_with(d, r);
            }
        }
    }

    /// An error at `at` if the body runs in a sampling probe, which interrupts the
    /// process anywhere and so has no probed function.
    fn refuse_in_samples(&mut self, what: &str, at: Span) {
        let sampled = self.probes_of_body().into_iter().find_map(|pi| {
            let i = self.probes[pi]
                .points
                .iter()
                .position(|p| matches!(p.kind, ProbeKind::Sample { .. }))?;
            Some(Reason {
                backend: Backend::Kernel,
                probe: pi,
                point: i,
            })
        });
        let Some(r) = sampled else {
            return;
        };
        let d = Diagnostic::error(
            at,
            format!("{what} cannot be used in {}", self.point_name(&r)),
        )
        .with_help("a sample interrupts the process anywhere, not in a probed function: its stack, ubacktrace(), says where");
        self.refuse_with(d, &r);
    }

    fn refuse_construct(&mut self, c: Construct, at: Span, reasons: &[Reason]) {
        let row = c.row();
        self.refuse(row.runs, row.what, row.help, at, reasons);
    }

    /// An error at `at` if `runs` leaves out a back end of the body.
    fn refuse(&mut self, runs: Runs, what: &str, help: &str, at: Span, reasons: &[Reason]) {
        let Some(r) = reasons.iter().find(|r| !runs.allows(r.backend)) else {
            return;
        };
        let d = Diagnostic::error(
            at,
            format!("{what} cannot be used in {}", self.point_name(r)),
        )
        .with_help(help.to_string());
        self.refuse_with(d, r);
    }

    fn refuse_with(&mut self, mut d: Diagnostic, r: &Reason) {
        if let Body::Function(_) = self.body {
            let span = self.probes[r.probe].points[r.point].span;
            d = d.with_note(Some(span), "the function is called from this probe");
        }
        self.diags.push(d);
    }

    fn point_name(&self, r: &Reason) -> &'static str {
        describe_point(&self.probes[r.probe].points[r.point].kind)
    }

    /// The longest chain of calls a call of `fi` makes, itself included (a call back
    /// into the chain, refused on its own, counted once).
    fn call_depth(&self, fi: usize) -> usize {
        let mut depth: Vec<Option<usize>> = vec![None; self.fns.len()];
        let mut on_path = vec![false; self.fns.len()];
        let mut stack = vec![(fi, 0usize)];
        on_path[fi] = true;
        while let Some(&mut (f, ref mut next)) = stack.last_mut() {
            if let Some(&c) = self.fn_calls[f].get(*next) {
                *next += 1;
                if !on_path[c] && depth[c].is_none() {
                    on_path[c] = true;
                    stack.push((c, 0));
                }
                continue;
            }
            let below = self.fn_calls[f]
                .iter()
                .filter_map(|&c| depth[c])
                .max()
                .unwrap_or(0);
            depth[f] = Some(below + 1);
            on_path[f] = false;
            stack.pop();
        }
        depth[fi].unwrap_or(1)
    }

    /// Whether function `fi` can call itself through a chain of calls.
    fn recursive(&self, fi: usize) -> bool {
        let mut seen = vec![false; self.fns.len()];
        let mut work = self.fn_calls[fi].clone();
        while let Some(f) = work.pop() {
            if f == fi {
                return true;
            }
            if !std::mem::replace(&mut seen[f], true) {
                work.extend(self.fn_calls[f].iter().copied());
            }
        }
        false
    }
}
