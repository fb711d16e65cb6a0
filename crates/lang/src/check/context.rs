//! Typing context expressions (`$x`, `$x->f[i]`, `@cast(p, "T")->f`, `$$parms`): the
//! [`Target`] is asked at every location of the probe, and the Go type found at the
//! first is kept in [`TypeInfo::go_types`].

use super::*;
use crate::probe::Ctx;
use crate::target::script_type;

impl Checker<'_> {
    // ---- context variables ----

    /// The locations of the probe being checked, or why there are none.
    pub(super) fn locations(&mut self, span: Span, what: &str) -> Option<Vec<Location>> {
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

    pub(super) fn require_return(&mut self, span: Span, what: &str) -> bool {
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
    pub(super) fn target_expr(&mut self, e: &Expr, t: &TargetExpr, raw: bool) -> Ty {
        let base: Option<GoType> = match &t.base {
            TargetBase::Set(set) => {
                let what = format!("$${}", set.as_str());
                let Some(locs) = self.locations(e.span, &what) else {
                    return Ty::Pretty;
                };
                if *set == VarSet::Return && !self.require_return(e.span, &what) {
                    return Ty::Pretty;
                }
                for l in &locs {
                    if let Err(err) = self.target.context_vars(l, *set) {
                        self.err(target_err(e.span, &err));
                        break;
                    }
                }
                return Ty::Pretty;
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
                            // The address itself; its type is kept for `len`/`cap`.
                            self.go_types.insert(e.id, g);
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
            return Ty::Pretty;
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
