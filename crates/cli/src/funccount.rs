//! `gotap funccount`: counts calls of the Go functions that match some patterns, in the
//! kernel, and prints them sorted by count at the end (and every `-i` seconds, after
//! which the counts start again from zero, as BCC's funccount does).
//!
//! Each function's probe sits after its stack-check prologue (its `push rbp`), not at
//! its entry: when a goroutine's stack must grow, `morestack` restarts the function at
//! its entry, and an entry probe would count that call twice; the `push` is also
//! emulated by the kernel's uprobe code instead of single-stepped.
//!
//! A call the compiler inlined has no entry: it is counted at the first instruction
//! of its code in the caller (from `.gopclntab`'s inline trees, which survive
//! stripping), and the table gains an INLINED column saying how many of each
//! function's calls were made there.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::time::{Duration, Instant};

use crate::args::FunccountArgs;
use crate::binary::Binary;
use crate::metrics::ToolExport;
use crate::session::{self, Armed, Handler, Placement, Traced};

/// One probe: a function's out-of-line entry, or one of its inlined calls.
struct Probed {
    name: String,
    offset: u64,
    inlined: bool,
}

pub fn run(a: &FunccountArgs) -> Result<i32> {
    let signals = sys::Signals::new()?;
    if let Some(p) = &a.output {
        session::check_output("-o", p)?;
    }
    let path = session::tool_binary("funccount", &a.binary, &a.target)?;
    let bin = Binary::open(&path)?;
    let funcs = resolve(&bin, &a.patterns)?;
    let mut traced = Traced::start(&a.target)?;
    let mut export = ToolExport::start(&a.export, Some(&bin), traced.pid())?;
    let counter = codegen::funccount::funccount(funcs.len() as u32, traced.pid())?;
    let mut armed = Armed::load(&counter.object, false)?;
    let offsets: Vec<u64> = funcs.iter().map(|f| f.offset).collect();
    let cookies: Vec<u64> = (0..funcs.len() as u64).collect();
    let t0 = Instant::now();
    let placed = armed.attach(
        &Placement {
            program: 0,
            binary: bin.attach_path(),
            offsets: &offsets,
            cookies: &cookies,
        },
        traced.scope(),
    );
    if let Err(e) = placed {
        return Err(
            match refused_probe(&armed, &bin.path, &offsets, traced.scope()) {
                Some(i) => e.context(format!(
                    "the kernel refused the probe on {} at {}+{:#x}",
                    funcs[i].name,
                    bin.path.display(),
                    funcs[i].offset
                )),
                None => e,
            },
        );
    }
    if a.verbose > 0 {
        eprintln!(
            "attached {} probes in {:.1} ms",
            armed.probe_count(),
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    let names: std::collections::HashSet<&str> = funcs.iter().map(|f| f.name.as_str()).collect();
    let inlined = funcs.iter().filter(|f| f.inlined).count();
    eprintln!(
        "Tracing {} functions{} for {}... Hit Ctrl-C to end.",
        names.len(),
        match inlined {
            0 => String::new(),
            n => format!(" ({n} inlined call site{})", if n == 1 { "" } else { "s" }),
        },
        quoted(&a.patterns)
    );
    let mut out = session::output(a.output.as_deref())?;
    if let Traced::Child(c) = &mut traced {
        c.release()?;
    }
    let map_index = counter.counts.0 as usize;
    let mut h = Interval {
        every: a.interval.map(Duration::from_secs),
        next: None,
        map: &armed.maps[map_index],
        funcs: &funcs,
        out: &mut out,
        export: export.as_mut(),
        printed: vec![0; funcs.len()],
    };
    let end = session::run(&signals, None, &mut traced, &mut h)?;
    let printed = std::mem::take(&mut h.printed);
    let t1 = Instant::now();
    let map = &armed.maps[map_index];
    let hits = || {
        (0..funcs.len() as u32)
            .map(|i| session::per_cpu_sum(map, i).unwrap_or(0))
            .sum()
    };
    let late = armed.detach_after(end, &traced, &hits);
    if a.verbose > 0 {
        eprintln!("detached in {:.1} ms", t1.elapsed().as_secs_f64() * 1e3);
    }
    let last = print_counts(&armed.maps[map_index], &funcs, &printed, &mut out)
        .with_context(|| output_name(a))?;
    if let Some(mut x) = export {
        export_calls(&x, &funcs, &last);
        x.exporter.finish(Some(end));
    }
    late.say(hits());
    Ok(match end {
        session::End::ChildExited(code) => code,
        _ => 0,
    })
}

/// Which of `offsets` the kernel refuses, when a multi-uprobe link of all of them
/// failed: the kernel does not say, so halves are tried until one probe is left
/// (each link that takes is let go of at once). `None` when no single probe fails.
fn refused_probe(
    armed: &Armed,
    path: &std::path::Path,
    offsets: &[u64],
    scope: sys::Scope,
) -> Option<usize> {
    let prog = armed.programs.first()?;
    if !sys::uprobe_multi_supported() {
        return None;
    }
    let takes = |r: std::ops::Range<usize>| {
        sys::UprobeMulti::attach(prog, path, &offsets[r], &[], scope).is_ok()
    };
    let (mut lo, mut hi) = (0, offsets.len());
    if takes(lo..hi) {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if takes(lo..mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// Every function that matches a pattern, once, with the file offset of its probe,
/// and every inlined call of one. Sites the kernel cannot take (`int3` in
/// `runtime.abort`, code that does not decode) are left out with one warning that
/// names them.
fn resolve(bin: &Binary, patterns: &[String]) -> Result<Vec<Probed>> {
    let go = bin.go()?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut refused = Vec::new();
    let mut since_release = 0;
    let mut seen_inlined = std::collections::HashSet::new();
    for pat in patterns {
        let found = go.functions_matching(pat);
        let inlined = go.inlined_calls_matching(pat);
        if found.is_empty() && inlined.is_empty() {
            bail!("no function in {} matches {pat:?}", bin.path.display());
        }
        for c in inlined {
            if !seen_inlined.insert((c.addr, c.callee)) {
                continue;
            }
            if let Err(why) = gobin::x86::check(&go, &c.holder, c.addr) {
                refused.push(gobin::x86::Refused::at(&c.holder, c.addr, why));
                continue;
            }
            let Some(off) = go.file_offset(c.addr) else {
                continue;
            };
            out.push(Probed {
                name: c.callee.to_string(),
                offset: off.0,
                inlined: true,
            });
        }
        for f in found {
            // Linker markers (`go:textfipsstart`) have no code or no position.
            if f.end <= f.entry || go.line_at(&f, f.entry).is_none() || !seen.insert(f.entry) {
                continue;
            }
            // Each site reads a function's first bytes and its tables once; the
            // pages of thousands of them need not stay in memory.
            if since_release == 1024 {
                bin.release_all();
                since_release = 0;
            }
            since_release += 1;
            let site = gobin::x86::probe_site(&go, &f);
            if let Some(r) = gobin::x86::Refused::of_entry(&f, &site) {
                refused.push(r);
                continue;
            }
            let Ok(site) = site else { continue };
            let off = go.file_offset(site.addr).with_context(|| {
                format!(
                    "{}: {} at {} is not in a loaded segment",
                    bin.path.display(),
                    f.name,
                    site.addr
                )
            })?;
            out.push(Probed {
                name: f.name.to_string(),
                offset: off.0,
                inlined: false,
            });
        }
    }
    if let Some(w) = gobin::x86::skipped_sentence(&refused) {
        eprintln!("WARNING: {w}");
    }
    if out.is_empty() {
        bail!("no function to probe in {}", bin.path.display());
    }
    bin.release_all();
    Ok(out)
}

fn quoted(patterns: &[String]) -> String {
    patterns
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the output is called in an error about writing it.
fn output_name(a: &FunccountArgs) -> String {
    match &a.output {
        Some(p) => format!("-o {}", p.display()),
        None => "writing the counts".to_string(),
    }
}

/// Reads the counters, sums them over CPUs and prints to `w` what each counted
/// since `before` (an earlier return of this function). The counters are never
/// cleared: a hit between a read and a clear would be lost, so an interval is the
/// difference of two reads. A function's count is the sum of its probes'; with
/// inlined calls probed, an INLINED column says how many of them were inlined
/// calls. Returns the count of each probe since tracing began.
fn print_counts(
    map: &sys::Map,
    funcs: &[Probed],
    before: &[u64],
    w: &mut dyn Write,
) -> Result<Vec<u64>> {
    let mut read = Vec::with_capacity(funcs.len());
    let mut counts: Vec<(&str, u64)> = Vec::new();
    let mut inlined: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (i, f) in funcs.iter().enumerate() {
        let total = session::per_cpu_sum(map, i as u32)?;
        read.push(total);
        let n = total.saturating_sub(before.get(i).copied().unwrap_or(0));
        match counts.iter_mut().find(|(name, _)| *name == f.name) {
            Some((_, c)) => *c += n,
            None => counts.push((&f.name, n)),
        }
        if f.inlined {
            *inlined.entry(&f.name).or_default() += n;
        }
    }
    let mut out = Vec::new();
    if funcs.iter().any(|f| f.inlined) {
        let rows: Vec<(&str, u64, u64)> = counts
            .iter()
            .map(|(name, n)| (*name, *n, inlined.get(name).copied().unwrap_or(0)))
            .collect();
        runtime::table::write_func_counts_inlined(&mut out, &rows);
    } else {
        runtime::table::write_func_counts(&mut out, &counts);
    }
    w.write_all(&out)?;
    w.flush()?;
    Ok(read)
}

/// `go.function.calls{function}`: each probe's count since tracing began, summed
/// per function (an inlined call counts for the function inlined).
fn export_calls(x: &ToolExport, funcs: &[Probed], now: &[u64]) {
    x.by_function(
        &export::names::FUNCTION_CALLS,
        funcs.iter().zip(now).map(|(f, n)| (f.name.as_str(), *n)),
    );
}

struct Interval<'a> {
    every: Option<Duration>,
    next: Option<Instant>,
    map: &'a sys::Map,
    funcs: &'a [Probed],
    out: &'a mut Box<dyn Write>,
    /// `--prometheus`, `--otlp`: the counts, every interval.
    export: Option<&'a mut ToolExport>,
    /// Per probe, its count when `-i` last printed.
    printed: Vec<u64>,
}

impl Handler for Interval<'_> {
    fn tick(&mut self, now: Instant) -> Result<bool> {
        if let Some(x) = self.export.as_deref_mut()
            && x.exporter.due(now)
        {
            let counts: Vec<u64> = (0..self.funcs.len() as u32)
                .map(|i| session::per_cpu_sum(self.map, i))
                .collect::<Result<_>>()?;
            export_calls(x, self.funcs, &counts);
        }
        let Some(every) = self.every else {
            return Ok(false);
        };
        let next = *self.next.get_or_insert(now + every);
        if now >= next {
            writeln!(self.out, "\n{}", chrono_free_time())?;
            self.printed = print_counts(self.map, self.funcs, &self.printed, self.out)?;
            self.next = Some(next + every);
        }
        Ok(false)
    }

    fn tick_every(&self) -> Duration {
        Duration::from_millis(if self.every.is_some() { 20 } else { 100 })
    }
}

/// The wall-clock time as HH:MM:SS (UTC), for interval headers.
fn chrono_free_time() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}
