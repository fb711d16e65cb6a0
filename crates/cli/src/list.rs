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
    // A wildcard's functions are listed once each, as stap lists a function once
    // however often it was inlined; `.inline` lists each inlined call.
    if let Site::Function {
        pattern,
        ret: false,
        instances,
    } = &pp.site
        && *instances != lang::probe::Instances::Inline
        && !verbose
        && gobin::funcs::is_glob(pattern)
    {
        return list_functions(&bin, &abs, pattern);
    }
    let target = codegen::target::GoTarget::new(bin.go()?, abs.clone()).releasing(bin.releaser());
    let locations = target
        .resolve_probe_point(&pp)
        .map_err(|e| match e.help() {
            Some(h) => anyhow::anyhow!("{probe}: {e}\n  help: {h}"),
            None => anyhow::anyhow!("{probe}: {e}"),
        })?;
    let go = target.binary();
    let mut lines = BTreeSet::new();
    let mut no_vars = false;
    for loc in &locations {
        let mut line = match &pp.site {
            // An inlined call, at its call site.
            Site::Function { .. } if target.inlined_at(loc.address).is_some() => format!(
                "process(\"{abs}\").function(\"{}@{}:{}\").inline",
                loc.function,
                loc.file.as_deref().unwrap_or("?"),
                loc.line.unwrap_or(0)
            ),
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
            Site::Address(a) => format!("process(\"{abs}\").statement({a:#x})"),
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
            // A name listed once, as `$name` in a script means one variable (inlined
            // calls bring their own variables of the same names).
            let mut seen = std::collections::HashSet::new();
            for v in vars.iter().filter(|v| seen.insert(v.name.as_str())) {
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
    for w in target.warnings() {
        eprintln!("WARNING: {w}");
    }
    if no_vars {
        eprintln!(
            "gotap: {abs} has no DWARF (built with -ldflags=-s -w?): variables need DWARF; @cast(addr, \"runtime.g\") still works from gotap's built-in runtime layouts"
        );
    }
    Ok(0)
}

/// `-l` of a function wildcard, straight from `.gopclntab`: a listing prints no
/// address, so the machine code is decoded only as far as each probe site, to leave
/// out (and name) the functions whose site the kernel cannot take, as a script would.
/// Linker markers such as `go:textfipsstart` (no code, or no source position) are not
/// functions and are left out, as the compiler's resolution leaves them out.
fn list_functions(bin: &Binary, abs: &str, pattern: &str) -> Result<i32> {
    let go = bin.go()?;
    let refused = std::cell::RefCell::new(Vec::new());
    // Deciding each probe site decodes the function's first instructions, which pages
    // in all of the code; let the pages go every 1,024 functions, as funccount does
    // (the rows' names stay valid: the map is read-only and pages come back on use).
    let mut since_release = 0u32;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Sorted and deduplicated as whole lines, as the general path prints them. A row
    // borrows its name and file from the mapped binary: a listing of a large binary
    // holds tens of thousands of them, and owned lines would double the memory used.
    let mut rows: Vec<(&str, &str, u32)> = go
        .functions()
        .filter(|f| f.end > f.entry && gobin::glob_match(pattern, f.name))
        .filter_map(|f| {
            // Linker markers (`go:textfipsstart`) have no source position.
            let (file, at) = go.line_at(&f, f.entry)?;
            // An assembly function and its ABI wrapper share a name; the name means
            // the function (`function_by_name`), listed once.
            if file == "<autogenerated>" && go.functions_named(f.name).len() > 1 {
                return None;
            }
            since_release += 1;
            if since_release == 1024 {
                bin.release_all();
                since_release = 0;
            }
            if let Some(r) = gobin::x86::Refused::of_entry(&f, &gobin::x86::probe_site(&go, &f)) {
                refused.borrow_mut().push(r);
                return None;
            }
            Some((f.name, file, f.start_line.unwrap_or(at)))
        })
        .collect();
    bin.release_all();
    if rows.is_empty() {
        bail!("process(\"{abs}\").function(\"{pattern}\"): no function matches '{pattern}'");
    }
    rows.sort_unstable_by(row_cmp);
    rows.dedup();
    for (name, file, line) in rows {
        writeln!(out, "process(\"{abs}\").function(\"{name}@{file}:{line}\")")?;
    }
    out.flush()?;
    if let Some(w) = gobin::x86::skipped_sentence(&refused.into_inner()) {
        eprintln!("WARNING: {w}");
    }
    Ok(0)
}

/// Rows in the order of the lines they print. Most pairs differ inside their names,
/// which a slice comparison settles; the rest (a name that is a prefix of the other,
/// or the same name) are compared as whole lines.
fn row_cmp(a: &(&str, &str, u32), b: &(&str, &str, u32)) -> std::cmp::Ordering {
    let (x, y) = (a.0.as_bytes(), b.0.as_bytes());
    let n = x.len().min(y.len());
    match x[..n].cmp(&y[..n]) {
        std::cmp::Ordering::Equal => row_text(a).cmp(row_text(b)),
        other => other,
    }
}

/// The bytes of `name@file:line`, in order, without building the string: rows sort
/// as the lines they print.
fn row_text<'a>(&(name, file, line): &'a (&str, &str, u32)) -> impl Iterator<Item = u8> + 'a {
    let mut digits = [0u8; 10];
    let mut n = line;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    name.bytes()
        .chain(std::iter::once(b'@'))
        .chain(file.bytes())
        .chain(std::iter::once(b':'))
        .chain(digits.into_iter().skip(at))
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
