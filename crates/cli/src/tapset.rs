//! The tapsets gotap ships: probe aliases written in the probe language, compiled into
//! the binary (`gotap --tapset` prints them) and added to a script that names one of
//! their probes, as stap adds its tapset directory. `go.stp` covers the Go runtime:
//! stack growth, GC cycles, goroutines, scheduling and allocation (see the file).

use anyhow::{Result, bail};

/// The Go runtime tapset's text.
pub const GO: &str = include_str!("../tapset/go.stp");

/// The name the tapset's positions are reported under.
pub const GO_NAME: &str = "<tapset>/go.stp";

/// True if some probe of `script` names a `go.*` point.
pub fn uses_go(script: &lang::ast::Script) -> bool {
    script.items.iter().any(|item| match item {
        lang::ast::Item::Probe(p) => p
            .points
            .iter()
            .any(|pt| pt.components.first().is_some_and(|c| c.name == "go")),
        _ => false,
    })
}

/// Adds the Go tapset to `script` when it uses it. `binary` names the executable the
/// aliases probe, for a trace with neither `-c` nor `-x` (the aliases' bare `process`
/// means the target otherwise).
pub fn add_if_used(
    sm: &mut lang::SourceMap,
    script: &mut lang::ast::Script,
    binary: Option<&str>,
) -> Result<Option<lang::FileId>> {
    if !uses_go(script) {
        return Ok(None);
    }
    let text = source(binary);
    let file = sm.add(GO_NAME, text.clone());
    let (tapset, diags) = lang::parse(file, &text, &lang::ParseOptions::default());
    if lang::has_errors(&diags) {
        bail!(
            "the Go tapset does not parse:\n{}",
            sm.render_all(&diags).trim_end()
        );
    }
    script.merge(tapset);
    Ok(Some(file))
}

/// Drops the warnings about the tapset's own text (the globals of aliases a script
/// does not use are unused, as in stap, and are not the user's concern).
pub fn keep_user_warnings(diags: &mut Vec<lang::Diagnostic>, tapset: Option<lang::FileId>) {
    if let Some(f) = tapset {
        diags.retain(|d| d.severity == lang::diag::Severity::Error || d.span.file != f);
    }
}

/// The tapset's text, its `process` points bound to `binary` if given.
pub fn source(binary: Option<&str>) -> String {
    match binary {
        None => GO.to_string(),
        Some(b) => {
            let quoted = format!(
                "process(\"{}\").",
                b.replace('\\', "\\\\").replace('"', "\\\"")
            );
            GO.replace("process.function(", &format!("{quoted}function("))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tapset_parses_and_binds_every_point_to_a_binary() {
        for bin in [None, Some("/tmp/a \"b\"")] {
            let text = source(bin);
            let mut sm = lang::SourceMap::new();
            let file = sm.add(GO_NAME, text.clone());
            let (script, diags) = lang::parse(file, &text, &lang::ParseOptions::default());
            assert!(!lang::has_errors(&diags), "{}", sm.render_all(&diags));
            let aliases: Vec<&lang::ast::ProbeAlias> = script
                .items
                .iter()
                .filter_map(|i| match i {
                    lang::ast::Item::Alias(a) => Some(a),
                    _ => None,
                })
                .collect();
            assert!(aliases.len() >= 12);
            for a in aliases {
                for pt in &a.points {
                    let path = match lang::probe::probe_kind(pt) {
                        Ok(lang::ProbeKind::Process(p)) => p.path,
                        other => panic!("{}: {other:?}", a.name.shape()),
                    };
                    assert_eq!(path.as_deref(), bin, "{}", a.name.shape());
                }
            }
        }
    }

    #[test]
    fn only_scripts_naming_go_probes_get_the_tapset() {
        let mut sm = lang::SourceMap::new();
        for (src, wanted) in [
            ("probe go.stack.grow { }", true),
            ("probe process(\"x\").function(\"go.y\") { }", false),
            ("probe begin { }", false),
        ] {
            let f = sm.add("t.stp", src);
            let (mut s, _) = lang::parse(f, src, &lang::ParseOptions::default());
            let before = s.items.len();
            let file = add_if_used(&mut sm, &mut s, None).unwrap();
            assert_eq!(file.is_some(), wanted, "{src}");
            assert_eq!(s.items.len() > before, wanted, "{src}");
        }
    }
}
