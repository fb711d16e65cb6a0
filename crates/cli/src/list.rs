//! `gotap -l PROBE` and `gotap -L PROBE`: the probe points a probe point names, one per
//! line, in SystemTap's form, so that the output can be pasted into a script; `-L` adds
//! the variables in scope at each with their Go types. Resolution is the compiler's own
//! (`codegen::target::GoTarget`), so what is listed is exactly what a script would probe.

use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::io::Write;

use crate::binary::Binary;
use lang::{ProbeKind, Site, Target};

pub fn run(probe: &str, verbose: bool) -> Result<i32> {
    let point = parse_point(probe)?;
    let ProbeKind::Process(pp) = point else {
        println!("{probe}");
        return Ok(0);
    };
    let Some(path) = pp.path.as_deref() else {
        bail!("-l needs the binary named: process(\"BIN\")...");
    };
    let bin = Binary::open(path.as_ref())?;
    let abs = bin.path.display().to_string();
    let target = codegen::target::GoTarget::new(bin.go()?, abs.clone());
    let locations = target
        .resolve_probe_point(&pp)
        .map_err(|e| match e.help() {
            Some(h) => anyhow::anyhow!("{probe}: {e}\n  help: {h}"),
            None => anyhow::anyhow!("{probe}: {e}"),
        })?;
    let go = bin.go()?;
    let mut lines = BTreeSet::new();
    let mut no_vars = false;
    for loc in &locations {
        let mut line = match &pp.site {
            Site::Function { ret, .. } => {
                let f = go.function_by_name(&loc.function);
                let (file, l) = f
                    .as_ref()
                    .and_then(|f| {
                        let (file, at) = go.line_at(f, f.entry)?;
                        Some((file.to_string(), f.start_line.unwrap_or(at)))
                    })
                    .unwrap_or_default();
                let suffix = if *ret { ".return" } else { "" };
                format!(
                    "process(\"{abs}\").function(\"{}@{file}:{l}\"){suffix}",
                    loc.function
                )
            }
            Site::Statement { .. } => {
                // A line listed once, however many blocks start it (the set dedupes).
                let (file, l) = (loc.file.as_deref().unwrap_or("?"), loc.line.unwrap_or(0));
                format!(
                    "process(\"{abs}\").statement(\"{}@{file}:{l}\")",
                    loc.function
                )
            }
        };
        if verbose {
            if target.dwarf().is_none() {
                no_vars = true;
            }
            let vars = target
                .variables(loc.address)
                .map_err(|e| anyhow::anyhow!("{}: {e}", loc.function))?;
            for v in vars {
                line.push_str(&format!(" ${}:{}", v.name, v.ty.name));
            }
        }
        lines.insert(line);
    }
    let mut out = std::io::stdout().lock();
    for l in &lines {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if no_vars {
        eprintln!(
            "gotap: {abs} has no DWARF (built with -ldflags=-s -w?): variables need DWARF; @cast(addr, \"runtime.g\") still works from gotap's built-in runtime layouts"
        );
    }
    Ok(0)
}

/// The probe point of `-l`/`-L`, parsed by the language's own parser so that the same
/// text means the same thing on the command line and in a script.
fn parse_point(probe: &str) -> Result<ProbeKind> {
    let mut sm = lang::SourceMap::new();
    let src = format!("probe {probe} {{}}");
    let file = sm.add("<command line>", &src);
    let (script, diags) = lang::parse(file, &src, &lang::ParseOptions::default());
    if lang::has_errors(&diags) {
        bail!("bad probe point {probe:?}\n{}", sm.render_all(&diags));
    }
    let point = script
        .items
        .iter()
        .find_map(|i| match i {
            lang::ast::Item::Probe(p) => p.points.first(),
            _ => None,
        })
        .context("no probe point given")?;
    lang::probe::probe_kind(point)
        .map_err(|d| anyhow::anyhow!("bad probe point {probe:?}\n{}", sm.render(&d)))
}
