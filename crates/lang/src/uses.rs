//! How a script writes and reads each of its globals, for those who export them as
//! metrics: whether a number only ever counts up (a counter) or may go anywhere (a
//! gauge), and which statistics extractors (`@min`, `@avg`, …) the script asks of a
//! statistic. The rule is the language's, so it is written here once, from the
//! checker's own resolution of every name ([`TypeInfo::global_of`]): a function's
//! parameter that shadows a global is not the global.
//!
//! A global *counts up* when every write to it, in every probe, alias and function,
//! is `++` or `+=` of something other than a negative literal (`x++`, `++a[k]`,
//! `a[k] += $n`). Any other assignment, `--`, `-=`, a `foreach` that binds it, or a
//! `delete` of it (an exported counter that is reset would read as a fall) makes it
//! a gauge. A global that is never written is a gauge holding its initial value.

use crate::ast::*;
use crate::check::TypeInfo;

/// What the script does with one global.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalUse {
    pub name: String,
    /// Written, and only ever counted up (see the module's rule).
    pub counts_up: bool,
    /// The statistics extractors the script applies to it, histograms included,
    /// each once, in the order first met.
    pub extractors: Vec<StatOp>,
}

impl GlobalUse {
    /// Whether the script asks `@op` of this statistic.
    pub fn uses(&self, op: StatOp) -> bool {
        self.extractors.contains(&op)
    }
}

/// Per global, in the order of [`TypeInfo::globals`].
pub fn global_uses(script: &Script, info: &TypeInfo) -> Vec<GlobalUse> {
    let mut w = Walk {
        info,
        written: vec![false; info.globals.len()],
        gauge: vec![false; info.globals.len()],
        extractors: vec![Vec::new(); info.globals.len()],
    };
    for item in &script.items {
        match item {
            Item::Probe(p) => w.block(&p.body),
            Item::Alias(a) => w.block(&a.body),
            Item::Function(f) => w.block(&f.body),
            Item::Global(_) => {}
        }
    }
    info.globals
        .iter()
        .enumerate()
        .map(|(i, g)| GlobalUse {
            name: g.name.clone(),
            counts_up: w.written[i] && !w.gauge[i],
            extractors: std::mem::take(&mut w.extractors[i]),
        })
        .collect()
}

struct Walk<'i> {
    info: &'i TypeInfo,
    written: Vec<bool>,
    gauge: Vec<bool>,
    extractors: Vec<Vec<StatOp>>,
}

impl Walk<'_> {
    /// The index of the global `id` names where it is written, if it names one.
    fn global(&self, id: &Ident) -> Option<usize> {
        match self.info.binding(id)? {
            crate::Binding::Global(i) => Some(i),
            crate::Binding::Local => None,
        }
    }

    /// The global an lvalue (`x`, `a[k]`) or a whole-array name writes.
    fn target(&self, e: &Expr) -> Option<usize> {
        match &e.kind {
            ExprKind::Var(id) | ExprKind::Index { array: id, .. } => self.global(id),
            _ => None,
        }
    }

    fn write(&mut self, e: &Expr, counts_up: bool) {
        if let Some(i) = self.target(e) {
            self.written[i] = true;
            self.gauge[i] |= !counts_up;
        }
    }

    fn bind(&mut self, id: &Ident) {
        if let Some(i) = self.global(id) {
            self.written[i] = true;
            self.gauge[i] = true;
        }
    }

    fn block(&mut self, b: &Block) {
        for s in &b.stmts {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Block(b) => self.block(b),
            StmtKind::Delete(e) => {
                self.write(e, false);
                self.expr(e);
            }
            StmtKind::Foreach(f) => {
                for id in f.value.iter().chain(&f.keys) {
                    self.bind(id);
                }
                if let Some(l) = &f.limit {
                    self.expr(l);
                }
                self.stmt(&f.body);
            }
            StmtKind::If { cond, then, els } => {
                self.expr(cond);
                self.stmt(then);
                if let Some(e) = els {
                    self.stmt(e);
                }
            }
            StmtKind::While { cond, body } => {
                self.expr(cond);
                self.stmt(body);
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                for e in [init, cond, step].into_iter().flatten() {
                    self.expr(e);
                }
                self.stmt(body);
            }
            StmtKind::Expr(e) | StmtKind::Return(Some(e)) => self.expr(e),
            StmtKind::Break
            | StmtKind::Continue
            | StmtKind::Next
            | StmtKind::Return(None)
            | StmtKind::Empty => {}
        }
    }

    fn expr(&mut self, e: &Expr) {
        walk_expr(e, &mut |e| match &e.kind {
            ExprKind::IncDec { inc, expr, .. } => self.write(expr, *inc),
            ExprKind::Assign { op, lhs, rhs } => {
                self.write(lhs, *op == Some(BinOp::Add) && !negative_literal(rhs));
            }
            ExprKind::Stat { op, arg, .. } => {
                if let Some(i) = self.target(arg)
                    && !self.extractors[i].contains(op)
                {
                    self.extractors[i].push(*op);
                }
            }
            _ => {}
        });
    }
}

/// `-1`, `-(2)`: what `+=` of counts down.
fn negative_literal(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Num(n) => *n < 0,
        ExprKind::Unary {
            op: UnOp::Neg,
            expr,
        } => matches!(expr.kind, ExprKind::Num(n) if n > 0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProcessProbe;
    use crate::target::{GoType, Location, Target, TargetError};
    use crate::{FileId, ParseOptions, SourceMap};

    /// The scripts here probe no binary: every question is refused.
    struct NoBinary;

    fn no<T>() -> Result<T, TargetError> {
        Err(TargetError::Other {
            message: "no binary in these tests".into(),
            help: None,
        })
    }

    impl Target for NoBinary {
        fn resolve_probe_point(&self, _: &ProcessProbe) -> Result<Vec<Location>, TargetError> {
            no()
        }
        fn context_var(&self, _: &Location, _: &str) -> Result<GoType, TargetError> {
            no()
        }
        fn context_vars(
            &self,
            _: &Location,
            _: VarSet,
        ) -> Result<Vec<(String, GoType)>, TargetError> {
            no()
        }
        fn member(&self, _: &GoType, _: &str) -> Result<GoType, TargetError> {
            no()
        }
        fn index(&self, _: &GoType) -> Result<GoType, TargetError> {
            no()
        }
        fn cast_type(&self, _: &str, _: Option<&str>) -> Result<GoType, TargetError> {
            no()
        }
    }

    fn uses(src: &str) -> Vec<GlobalUse> {
        let mut sm = SourceMap::new();
        let file: FileId = sm.add("t.stp", src);
        let (script, diags) = crate::parse(file, src, &ParseOptions::default());
        assert!(diags.is_empty(), "{diags:?}");
        let (info, diags) = crate::check(&script, &NoBinary);
        assert!(!crate::has_errors(&diags), "{}", sm.render_all(&diags));
        global_uses(&script, &info)
    }

    fn counts_up(u: &[GlobalUse], name: &str) -> bool {
        u.iter().find(|g| g.name == name).unwrap().counts_up
    }

    #[test]
    fn increments_and_additions_count_up() {
        let u = uses(
            "global hits, bytes, level, left, once, never = 3
             probe timer.ms(10) { hits[1, \"a\"]++; ++hits[2, \"b\"]; bytes += 512;
                                  level = 4; left--; once += -1 }",
        );
        assert!(counts_up(&u, "hits"));
        assert!(counts_up(&u, "bytes"));
        assert!(!counts_up(&u, "level"), "= makes a gauge");
        assert!(!counts_up(&u, "left"), "-- makes a gauge");
        assert!(
            !counts_up(&u, "once"),
            "+= of a negative literal makes a gauge"
        );
        assert!(
            !counts_up(&u, "never"),
            "never written: a gauge of its value"
        );
    }

    #[test]
    fn one_other_write_anywhere_makes_a_gauge() {
        let u = uses(
            "global n, m
             function reset() { delete n }
             probe timer.ms(10) { n++; m++ }
             probe timer.s(1) { reset(); m = m * 2 }",
        );
        assert!(!counts_up(&u, "n"), "delete in a function");
        assert!(!counts_up(&u, "m"));
    }

    #[test]
    fn a_parameter_that_shadows_a_global_is_not_it() {
        let u = uses(
            "global x
             function f(x) { x = 5; return x }
             probe timer.ms(10) { x++; f(1) }",
        );
        assert!(counts_up(&u, "x"));
    }

    #[test]
    fn extractors_are_recorded_per_statistic() {
        let u = uses(
            "global s, t
             probe timer.ms(10) { s <<< 1; t[1] <<< 2 }
             probe end { print(@hist_log(s)); printf(\"%d %d\\n\", @count(t[1]), @avg(t[1])) }",
        );
        let s = u.iter().find(|g| g.name == "s").unwrap();
        let t = u.iter().find(|g| g.name == "t").unwrap();
        assert!(s.uses(StatOp::HistLog) && !s.uses(StatOp::Avg));
        assert!(t.uses(StatOp::Count) && t.uses(StatOp::Avg) && !t.uses(StatOp::Min));
    }
}
