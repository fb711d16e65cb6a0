//! The probe-points pass: each probe's points with aliases expanded (the alias's
//! prologue runs before the probe body), their [`ProbeKind`]s built from the table of
//! [`crate::probe`], and process points resolved to locations by the [`Target`]; then,
//! once calls are resolved, which probes reach each script function, since what a
//! function may do depends on the probes (and back ends) it runs in.

use std::collections::HashMap;

use super::*;
use crate::print::print_probe_point;
use crate::probe::probe_kind;

impl Checker<'_> {
    /// Expands and resolves the points of every probe.
    pub(super) fn resolve_points(&mut self) {
        for (i, item) in self.script.items.iter().enumerate() {
            if let Item::Probe(p) = item {
                let mut points = Vec::new();
                for pp in &p.points {
                    self.expand_point(pp, None, 0, &mut points);
                }
                self.probes.push(ProbeState {
                    item: i,
                    points,
                    locals: Vec::new(),
                    refs: HashMap::new(),
                });
            }
        }
        if self.probes.is_empty()
            && let Some(first) = self.script.items.first()
        {
            let at = match first {
                Item::Global(g) => g.span,
                Item::Function(f) => f.name.span,
                Item::Alias(a) => a.name.span,
                Item::Probe(p) => p.span,
            };
            self.diags.push(
                Diagnostic::error(at, "the script has no probes: nothing would run")
                    .with_help("a script has at least one 'probe POINT { … }'"),
            );
        }
    }

    /// Which functions each function calls, and which probes reach each function
    /// through calls (from the calls the names pass resolved).
    pub(super) fn link_functions_to_probes(&mut self) {
        let mut fn_calls: Vec<Vec<usize>> = vec![Vec::new(); self.fns.len()];
        let mut probe_calls: Vec<Vec<usize>> = vec![Vec::new(); self.probes.len()];
        for (body, blocks) in self.bodies() {
            let out = match body {
                Body::Function(fi) => &mut fn_calls[fi],
                Body::Probe(pi) => &mut probe_calls[pi],
            };
            for b in blocks {
                for s in &b.stmts {
                    walk_stmt(s, &mut |e| {
                        if let Some(Callee::Function(fi)) = self.calls.get(&e.id)
                            && !out.contains(fi)
                        {
                            out.push(*fi);
                        }
                    });
                }
            }
        }
        let mut fn_probes = vec![Vec::new(); self.fns.len()];
        for (pi, mut work) in probe_calls.into_iter().enumerate() {
            while let Some(fi) = work.pop() {
                let reached: &mut Vec<usize> = &mut fn_probes[fi];
                if reached.contains(&pi) {
                    continue;
                }
                reached.push(pi);
                work.extend(fn_calls[fi].iter().copied());
            }
        }
        self.fn_probes = fn_probes;
        self.fn_calls = fn_calls;
    }

    pub(super) fn expand_point(
        &mut self,
        pp: &ProbePoint,
        prologue: Option<usize>,
        depth: u32,
        out: &mut Vec<ResolvedPoint>,
    ) {
        if let Some(&ai) = self.aliases.get(&pp.shape())
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
                self.expand_point(inner, Some(ai), depth + 1, out);
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
        if let ProbeKind::Sample { .. } = kind
            && let Err(e) = self.target.sampled_binary()
        {
            self.diags.push(target_err(pp.span, &e));
            return;
        }
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
}
