//! A script whose probes all run in user space (`begin`, `end`, `timer.*`) compiles to
//! no program and needs no binary: what is left of [`crate::compile_full`] is the
//! storage of its globals (the same maps and layout, so that the interpreter reads and
//! writes them as it would beside kernel probes, with the same limits) and the list of
//! its user-space probes. With no global there is no map either, and nothing at all
//! is loaded in the kernel.

use bpf::script::{ScriptSpec, UserProbe};
use lang::ast::Script;
use lang::{Diagnostic, TypeInfo};

use crate::{Options, storage};

/// The compiled form of a checked script without process probes; an error at the
/// first process probe point if it has one.
pub fn compile_user(
    script: &Script,
    info: &TypeInfo,
    opts: &Options<'_>,
) -> Result<ScriptSpec, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut user_probes = Vec::new();
    for p in &info.probes {
        for point in &p.points {
            let Some(when) = crate::user_probe_kind(&point.kind) else {
                diags.push(Diagnostic::error(
                    point.span,
                    "internal error: a process probe compiled without a binary",
                ));
                continue;
            };
            user_probes.push(UserProbe { item: p.item, when });
        }
    }
    let storage = storage::layout(script, info, &mut diags);
    if lang::has_errors(&diags) {
        return Err(diags);
    }
    let mut object = storage.object.clone();
    // Only the maps the globals live in: the ring buffer, counters and scratch area
    // serve programs, and there are none.
    let kept = storage
        .globals
        .iter()
        .map(|g| g.map.0 as usize + 1)
        .max()
        .unwrap_or(0);
    object.maps.truncate(kept);
    Ok(crate::script_spec(
        &storage,
        opts,
        object,
        user_probes,
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf::script::UserProbeKind;

    fn compiled(src: &str) -> ScriptSpec {
        let mut sm = lang::SourceMap::new();
        let file = sm.add("<t>", src);
        let (script, diags) = lang::parse(file, src, &lang::ParseOptions::default());
        assert!(!lang::has_errors(&diags));
        let (info, diags) = lang::check(&script, &NoTarget);
        assert!(!lang::has_errors(&diags), "{}", sm.render_all(&diags));
        compile_user(&script, &info, &Options::default()).expect("compiles")
    }

    /// The checker never asks: the scripts have no process probe.
    struct NoTarget;

    impl lang::Target for NoTarget {
        fn resolve_probe_point(
            &self,
            _: &lang::ProcessProbe,
        ) -> Result<Vec<lang::Location>, lang::TargetError> {
            unreachable!("no process probe")
        }
        fn context_var(
            &self,
            _: &lang::Location,
            _: &str,
        ) -> Result<lang::GoType, lang::TargetError> {
            unreachable!("no process probe")
        }
        fn context_vars(
            &self,
            _: &lang::Location,
            _: lang::ast::VarSet,
        ) -> Result<Vec<(String, lang::GoType)>, lang::TargetError> {
            unreachable!("no process probe")
        }
        fn member(&self, _: &lang::GoType, _: &str) -> Result<lang::GoType, lang::TargetError> {
            unreachable!("no process probe")
        }
        fn index(&self, _: &lang::GoType) -> Result<lang::GoType, lang::TargetError> {
            unreachable!("no process probe")
        }
        fn cast_type(&self, _: &str, _: Option<&str>) -> Result<lang::GoType, lang::TargetError> {
            unreachable!("no process probe")
        }
    }

    #[test]
    fn no_global_no_map() {
        let spec = compiled("probe begin { printf(\"hi\\n\"); exit() }");
        assert!(spec.object.maps.is_empty() && spec.object.programs.is_empty());
        assert!(spec.scalars.is_none() && spec.ringbuf.is_none());
        assert_eq!(spec.user_probes.len(), 1);
    }

    #[test]
    fn globals_keep_their_maps_and_the_others_go() {
        let spec = compiled(
            "global n = 3, a[10], s\nprobe begin { a[1] = n; s <<< 1 }\nprobe timer.s(1) { n++ }\nprobe end { printf(\"%d %d\\n\", a[1], @count(s)) }",
        );
        let names: Vec<&str> = spec.object.maps.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["gotap_globals", "a_a", "s_s"]);
        assert_eq!(spec.object.maps[1].max_entries, 10);
        let scalars = spec.scalars.expect("the scalars' map");
        assert_eq!(scalars.initial[..8], 3i64.to_le_bytes());
        let kinds: Vec<UserProbeKind> = spec.user_probes.iter().map(|p| p.when).collect();
        assert_eq!(
            kinds,
            [
                UserProbeKind::Begin,
                UserProbeKind::Timer {
                    period_ns: 1_000_000_000
                },
                UserProbeKind::End
            ]
        );
    }
}
