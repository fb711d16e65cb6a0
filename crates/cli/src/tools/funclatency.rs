//! `gotap funclatency PATTERN…`: BCC's funclatency for Go, without uretprobes. Each
//! matching function gets a probe at its entry (its `push rbp`, after the stack
//! check) and one at every `RET`; the kernel times each call by goroutine and stack
//! depth (see `codegen::funclatency`) and keeps a log2 histogram per function, which
//! is read at the end (and every `-i` seconds, after which it starts again).
//!
//! What cannot be timed is said, not hidden: calls the compiler inlined have no `RET`
//! of their own, so their sites are left out and counted; a call that never returned
//! (a panic unwound past it, `runtime.Goexit`) is an entry without return, counted
//! per function ("N calls did not return (panic or goexit)"), apart from the calls
//! still under way when tracing ends on a live process; a return whose entry came
//! before tracing is counted apart too.
//!
//! With `--prometheus` or `--otlp`, each function's histogram since tracing began is
//! `go.function.latency{function}` in seconds (the kernel's log2 buckets as `le`
//! bounds: the maps are never cleared, so the exported values only grow, whatever
//! `-i` prints), and what could not be timed is
//! `go.function.untimed_calls{function, cause}`.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant};

use runtime::json;

use super::ToolArgs;
use crate::binary::Binary;
use crate::metrics::ToolExport;
use crate::session::{self, Armed, End, Handler, Placement, Traced};
use codegen::funclatency::{COUNTERS, Counter, HIST};
use export::names::{self, Name};
use export::{Labels, Value};

/// A metric's series: labels and value.
pub(crate) type Points = Vec<(Labels, Value)>;

/// The unit of the histograms: `--us`, `--ms`, nanoseconds otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unit {
    #[default]
    Ns,
    Us,
    Ms,
}

impl Unit {
    pub fn ns(self) -> u64 {
        match self {
            Unit::Ns => 1,
            Unit::Us => 1_000,
            Unit::Ms => 1_000_000,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Ns => "nsecs",
            Unit::Us => "usecs",
            Unit::Ms => "msecs",
        }
    }
}

/// The functions timed, with their probe sites.
pub(crate) struct Timed {
    pub names: Vec<String>,
    /// (file offset, function index) of each entry and each `RET`.
    entries: Vec<(u64, u64)>,
    returns: Vec<(u64, u64)>,
    /// Inlined calls of matching functions, left out (they have no `RET`).
    inlined: usize,
    /// Functions left out, with why.
    pub skipped: Vec<String>,
    /// Functions whose entry site the kernel single-steps rather than emulates.
    stepped: usize,
    /// Patterns that match no function of the binary.
    pub unmatched: Vec<String>,
}

/// One function's numbers, as data (the text, the JSON and the exporters read these).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    pub function: String,
    pub calls: u64,
    pub total_ns: u64,
    /// The shortest and the longest call since tracing began (with `-i`, too).
    pub min_ns: u64,
    pub max_ns: u64,
    /// `(lowest value of the bucket in the unit, calls)` of the non-empty buckets.
    pub buckets: Vec<(i64, u64)>,
    /// Entries whose call never returned (a panic unwound past it, `Goexit`); once
    /// the process is gone, the calls left pending are among them.
    pub no_return: u64,
    /// Calls under way when tracing ended, the process still running.
    pub running: u64,
    /// Returns whose entry came before tracing began.
    pub no_entry: u64,
    /// Entries not saved (too many calls under way at once).
    pub unsaved: u64,
}

impl Latency {
    /// The row as the kernel keeps it: the buckets in the tool's unit, the count,
    /// and the sum, shortest and longest in nanoseconds.
    fn stat(&self, hist: &runtime::stats::Hist) -> runtime::stats::Stat {
        let mut stat = runtime::stats::Stat::new(hist);
        for (lo, n) in &self.buckets {
            if let Some(b) = hist.bucket(*lo).and_then(|b| stat.buckets.get_mut(b)) {
                *b = *n as i64;
            }
        }
        stat.count = self.calls as i64;
        stat.sum = self.total_ns as i64;
        if self.calls > 0 {
            (stat.min, stat.max) = (self.min_ns as i64, self.max_ns as i64);
        }
        stat
    }
}

pub fn run(a: &ToolArgs) -> Result<i32> {
    let signals = sys::Signals::new()?;
    if let Some(p) = &a.output {
        session::check_output("-o", p)?;
    }
    let path = session::tool_binary("funclatency", &a.binary, &a.target)?;
    let bin = Binary::open(&path)?;
    let timed = resolve(&bin, &a.patterns)?;
    if let Some(pat) = timed.unmatched.first() {
        bail!("no function in {} matches {pat:?}", bin.path.display());
    }
    let mut traced = Traced::start(&a.target)?;
    let mut export = ToolExport::start(&a.export, Some(&bin), traced.pid())?;
    let (mut armed, prog) = arm(&bin, &timed, a.unit, traced.pid(), traced.scope())?;
    let mut notes = String::new();
    if timed.inlined > 0 {
        let _ = write!(
            notes,
            " ({} inlined call site{} left out: an inlined call has no RET to time)",
            timed.inlined,
            if timed.inlined == 1 { "" } else { "s" }
        );
    }
    eprintln!(
        "Tracing {} functions for {}{notes}... Hit Ctrl-C to end.",
        timed.names.len(),
        quoted(&a.patterns)
    );
    for s in &timed.skipped {
        eprintln!("WARNING: {s}");
    }
    if a.verbose > 0 {
        eprintln!(
            "funclatency: {} entry and {} return probes",
            timed.entries.len(),
            timed.returns.len()
        );
    }
    let mut out = session::output(a.output.as_deref())?;
    if let Traced::Child(c) = &mut traced {
        c.release()?;
    }
    // The maps outlive the probes: taken out, so that the probes can go first.
    let taken = std::mem::take(&mut armed.maps);
    let maps = Maps::of(&prog, &taken);
    let mut h = Interval {
        every: (a.interval > 0).then(|| Duration::from_secs(a.interval)),
        next: None,
        maps: &maps,
        names: &timed.names,
        before: Vec::new(),
        a,
        out: &mut out,
        export: export.as_mut(),
    };
    let end = session::run(&signals, None, &mut traced, &mut h)?;
    let before = h.before;
    let gone = matches!(end, End::ChildExited(_) | End::ProcessGone);
    let code = traced.finish(end)?;
    // Every call seen, timed or not.
    let hits = || {
        read(&maps, &timed.names, None).map_or(0, |rows| {
            rows.iter()
                .map(|r| r.calls + r.no_return + r.no_entry + r.unsaved)
                .sum()
        })
    };
    let late = armed.detach_after(end, &traced, &hits);
    let rows = read(&maps, &timed.names, Some(gone))?;
    if let Some(mut x) = export {
        export_rows(&x, &rows, a.unit)?;
        x.exporter.finish(Some(end));
    }
    write_rows(&mut out, a, &since(&rows, &before))?;
    late.say(hits());
    Ok(code)
}

fn quoted(patterns: &[String]) -> String {
    patterns
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// funclatency's programs, loaded and placed on `timed`'s sites in `bin` for
/// `scope`'s processes (`tgid`: the one process whose calls are timed, if one is).
pub(crate) fn arm(
    bin: &Binary,
    timed: &Timed,
    unit: Unit,
    tgid: Option<u32>,
    scope: sys::Scope,
) -> Result<(Armed, codegen::funclatency::Funclatency)> {
    let layout = super::memory::runtime_layout(bin)
        .context("funclatency: no runtime layout for this Go release")?;
    let prog =
        codegen::funclatency::funclatency(timed.names.len() as u32, unit.ns(), tgid, &layout)?;
    let mut armed = Armed::load(&prog.object, false)?;
    for (program, sites) in [(prog.entry, &timed.entries), (prog.ret, &timed.returns)] {
        let offsets: Vec<u64> = sites.iter().map(|s| s.0).collect();
        let cookies: Vec<u64> = sites.iter().map(|s| s.1).collect();
        armed.attach(
            &Placement {
                program,
                binary: bin.attach_path(),
                offsets: &offsets,
                cookies: &cookies,
            },
            scope,
        )?;
    }
    Ok((armed, prog))
}

/// Every function matching a pattern that has a probe site after its stack check
/// and at least one `RET`, each site checked with the decoder; what is left out
/// is said, and the patterns that match nothing are kept apart (an error for the
/// one-shot tool, a note for the agent, whose selects' patterns span binaries).
pub(crate) fn resolve(bin: &Binary, patterns: &[String]) -> Result<Timed> {
    let go = bin.go()?;
    let mut t = Timed {
        names: Vec::new(),
        entries: Vec::new(),
        returns: Vec::new(),
        inlined: 0,
        skipped: Vec::new(),
        stepped: 0,
        unmatched: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    let mut refused = Vec::new();
    let mut no_ret = Vec::new();
    for pat in patterns {
        let found = go.functions_matching(pat);
        t.inlined += go.inlined_calls_matching(pat).len();
        if found.is_empty() && go.inlined_calls_matching(pat).is_empty() {
            t.unmatched.push(pat.clone());
            continue;
        }
        for f in found {
            if f.end <= f.entry || go.line_at(&f, f.entry).is_none() || !seen.insert(f.entry) {
                continue;
            }
            let site = gobin::x86::probe_site(&go, &f);
            if let Some(r) = gobin::x86::Refused::of_entry(&f, &site) {
                refused.push(r);
                continue;
            }
            let Ok(site) = site else { continue };
            if !site.emulated {
                t.stepped += 1;
            }
            let rets = gobin::x86::returns(&go, &f).unwrap_or_default();
            // The key is taken at an SP delta of 0 at both ends (the caller's
            // frame plus the return address); a site elsewhere would not match.
            let delta0 = |a: gobin::VirtAddr| go.sp_delta(&f, a).unwrap_or(0) == 0;
            let rets: Vec<gobin::VirtAddr> = rets
                .into_iter()
                .filter(|r| match gobin::x86::check(&go, &f, *r) {
                    Ok(()) => delta0(*r),
                    Err(why) => {
                        refused.push(gobin::x86::Refused::at(&f, *r, why));
                        false
                    }
                })
                .collect();
            if rets.is_empty() || !delta0(site.addr) {
                no_ret.push(f.name.to_string());
                continue;
            }
            let i = t.names.len() as u64;
            let off = |a: gobin::VirtAddr| {
                go.file_offset(a)
                    .map(|o| o.0)
                    .with_context(|| format!("{} at {a} is not in a loaded segment", f.name))
            };
            t.entries.push((off(site.addr)?, i));
            for r in rets {
                t.returns.push((off(r)?, i));
            }
            t.names.push(f.name.to_string());
        }
    }
    if let Some(w) = gobin::x86::skipped_sentence(&refused) {
        t.skipped.push(w);
    }
    if t.stepped > 0 {
        // Before Go 1.21 a frame opens with `sub rsp`, not `push rbp`; the kernel
        // single-steps it after the entry probe has read the clock (measured here:
        // 5 µs a call on a VM).
        t.skipped.push(format!(
            "{} function(s) open with an instruction the kernel single-steps (Go before 1.21: no `push rbp` after the stack check): each call's time includes some microseconds of probing",
            t.stepped
        ));
    }
    if !no_ret.is_empty() {
        t.skipped.push(format!(
            "{} function(s) left out: no RET a probe can time the call's end at ({})",
            no_ret.len(),
            no_ret.join(", ")
        ));
    }
    if t.names.is_empty() {
        if let Some(pat) = t.unmatched.first() {
            bail!("no function in {} matches {pat:?}", bin.path.display());
        }
        bail!(
            "no function to time in {}{}",
            bin.path.display(),
            if t.inlined > 0 {
                format!(
                    " ({} inlined call sites match, and an inlined call has no RET)",
                    t.inlined
                )
            } else {
                String::new()
            }
        );
    }
    bin.release_all();
    Ok(t)
}

pub(crate) struct Maps<'a> {
    stats: &'a sys::Map,
    counts: &'a sys::Map,
    pending: &'a sys::Map,
}

impl<'a> Maps<'a> {
    /// `prog`'s maps among the loaded `maps`.
    pub fn of(prog: &codegen::funclatency::Funclatency, maps: &'a [sys::Map]) -> Maps<'a> {
        Maps {
            stats: &maps[prog.stats.0 as usize],
            counts: &maps[prog.counts.0 as usize],
            pending: &maps[prog.pending.0 as usize],
        }
    }
}

/// Every function's numbers since tracing began, read from the kernel's maps and
/// summed over CPUs (one row per name, in order). The maps are never cleared: a
/// call that ends while they are read would be lost between a read and a clear, so
/// an interval is the difference of two reads ([`since`]). At the end
/// (`Some(gone)`: whether the process is gone), the calls left pending are counted.
pub(crate) fn read(maps: &Maps<'_>, names: &[String], end: Option<bool>) -> Result<Vec<Latency>> {
    let hist = runtime::globals::hist(&HIST)?;
    // Calls still under way (or that never returned), by function, from the places
    // taken in the kernel's table.
    let mut pending: HashMap<u64, u64> = HashMap::new();
    if end.is_some() {
        for (_, f) in under_way(maps.pending, |_| false)? {
            *pending.entry(f).or_default() += 1;
        }
    }
    let mut rows = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let key = (i as u32).to_le_bytes();
        let per_cpu = maps.stats.get_per_cpu(&key)?.unwrap_or_default();
        let stat = runtime::stats::Stat::from_per_cpu(&hist, &per_cpu.concat())?;
        let left = pending.get(&(i as u64)).copied().unwrap_or(0);
        let counter =
            |c: Counter| session::per_cpu_sum(maps.counts, COUNTERS * i as u32 + c as u32);
        rows.push(Latency {
            function: name.clone(),
            calls: stat.count as u64,
            total_ns: stat.sum as u64,
            min_ns: stat.min.max(0) as u64,
            max_ns: stat.max.max(0) as u64,
            buckets: stat
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(b, n)| (runtime::stats::log_bucket_value(b), *n as u64))
                .collect(),
            no_return: counter(Counter::NoReturn)? + if end == Some(true) { left } else { 0 },
            running: if end == Some(false) { left } else { 0 },
            no_entry: counter(Counter::NoEntry)?,
            unsaved: counter(Counter::Unsaved)?,
        });
    }
    Ok(rows)
}

/// The calls process `pid` left under way (it exited during them, or they never
/// returned), by function index, their places freed: for the agent, whose table
/// outlives a binary's processes. A call still under way at a process's end is
/// one that did not return, as [`read`] counts them at the end of a trace.
pub(crate) fn forget_process(maps: &Maps<'_>, pid: u32) -> Result<Vec<u64>> {
    Ok(under_way(maps.pending, |p| p == pid)?
        .into_iter()
        .map(|(_, f)| f)
        .collect())
}

/// The calls under way in the kernel's table (`codegen::funclatency`'s places), as
/// (process, function index); those of a process `free` picks are freed. The table
/// is mapped for the walk only, so that its pages are not kept in our memory.
fn under_way(pending: &sys::Map, free: impl Fn(u32) -> bool) -> Result<Vec<(u32, u64)>> {
    use codegen::funclatency::{WORD_TAG, WORD_WHO};
    let table = sys::Shared::of(pending)?;
    let mut out = Vec::new();
    for i in 0..table.len() {
        let tag = table.load(i, WORD_TAG);
        if tag == 0 {
            continue;
        }
        let who = table.load(i, WORD_WHO);
        let (pid, f) = (who as u32, who >> 32);
        // A place is freed only if it still holds the call seen (its tag): the
        // process is gone, so nothing else writes it but a claim of a free place.
        if free(pid) && !table.compare_exchange(i, WORD_TAG, tag, 0) {
            continue;
        }
        out.push((pid, f));
    }
    Ok(out)
}

/// What happened between two reads (`before` empty: since tracing began), the
/// functions with nothing to show left out. Counts, totals, buckets and the
/// counters are differences, exact; the shortest and longest call are those since
/// tracing began (the kernel keeps one of each).
fn since(now: &[Latency], before: &[Latency]) -> Vec<Latency> {
    let mut rows = Vec::new();
    for (i, r) in now.iter().enumerate() {
        let b = before.get(i).cloned().unwrap_or_default();
        let buckets = r
            .buckets
            .iter()
            .filter_map(|&(lo, n)| {
                let was = b.buckets.iter().find(|(l, _)| *l == lo).map_or(0, |x| x.1);
                (n > was).then_some((lo, n - was))
            })
            .collect();
        let row = Latency {
            function: r.function.clone(),
            calls: r.calls.saturating_sub(b.calls),
            total_ns: r.total_ns.saturating_sub(b.total_ns),
            min_ns: r.min_ns,
            max_ns: r.max_ns,
            buckets,
            no_return: r.no_return.saturating_sub(b.no_return),
            running: r.running,
            no_entry: r.no_entry.saturating_sub(b.no_entry),
            unsaved: r.unsaved.saturating_sub(b.unsaved),
        };
        if row.calls > 0 || row.no_return + row.running + row.no_entry + row.unsaved > 0 {
            rows.push(row);
        }
    }
    rows
}

/// The rows as text (a histogram per function, BCC's header line) or JSON.
fn write_rows(out: &mut dyn Write, a: &ToolArgs, rows: &[Latency]) -> Result<()> {
    let hist = runtime::globals::hist(&HIST)?;
    let mut s = Vec::new();
    for r in rows {
        if a.json {
            let buckets: Vec<String> = r
                .buckets
                .iter()
                .map(|(lo, n)| format!("{{\"from\":{lo},\"count\":{n}}}"))
                .collect();
            writeln!(
                s,
                "{{\"function\":{},\"unit\":\"{}\",\"calls\":{},\"total_ns\":{},\"min_ns\":{},\"max_ns\":{},\"buckets\":[{}],\"no_return\":{},\"running\":{},\"no_entry\":{},\"unsaved\":{}}}",
                json::quoted(&r.function),
                a.unit.name(),
                r.calls,
                r.total_ns,
                r.min_ns,
                r.max_ns,
                buckets.join(","),
                r.no_return,
                r.running,
                r.no_entry,
                r.unsaved
            )?;
            continue;
        }
        let avg = r.total_ns.checked_div(r.calls).unwrap_or(0);
        writeln!(
            s,
            "\nFunction = {}: {} calls, avg {} ns, total {} ns, min {} ns, max {} ns",
            r.function, r.calls, avg, r.total_ns, r.min_ns, r.max_ns
        )?;
        if r.calls > 0 {
            writeln!(s, "{}", a.unit.name())?;
            runtime::stats::write_histogram(&mut s, &hist, &r.stat(&hist))?;
        }
        if r.no_return > 0 {
            writeln!(
                s,
                "{} call{} did not return (panic or goexit): not timed",
                r.no_return,
                if r.no_return == 1 { "" } else { "s" }
            )?;
        }
        if r.running > 0 {
            writeln!(
                s,
                "{} call{} still running at the end: not timed",
                r.running,
                if r.running == 1 { "" } else { "s" }
            )?;
        }
        if r.no_entry > 0 {
            writeln!(
                s,
                "{} returns of calls that began before tracing: not timed",
                r.no_entry
            )?;
        }
        if r.unsaved > 0 {
            writeln!(
                s,
                "{} calls not timed: no room for them among the {} calls under way the kernel keeps",
                r.unsaved,
                codegen::funclatency::SLOTS
            )?;
        }
    }
    out.write_all(&s)?;
    out.flush()?;
    Ok(())
}

/// `go.function.latency{function}` and `go.function.untimed_calls{function, cause}`
/// from the numbers since tracing began (`rows`, one per function, from [`read`]):
/// each function's calls as a histogram in seconds whose bounds are the kernel's
/// log2 buckets in the tool's unit, and the calls not timed by why, once there are
/// some. The one-shot tool and the agent export these.
pub(crate) fn export_points(rows: &[Latency], unit: Unit) -> Result<[(Name, Points); 2]> {
    let hist = runtime::globals::hist(&HIST)?;
    let bin = unit.ns() as i64;
    let function = |r: &Latency| ("function".to_string(), r.function.clone());
    let latency = rows
        .iter()
        .map(|r| {
            let h = export::stats::binned_histogram(&r.stat(&hist), &hist, bin, 1e-9);
            (vec![function(r)], Value::Histogram(h))
        })
        .collect();
    let untimed = rows
        .iter()
        .flat_map(|r| {
            [
                ("no_return", r.no_return),
                ("no_entry", r.no_entry),
                ("unsaved", r.unsaved),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(move |(cause, n)| {
                (
                    vec![function(r), ("cause".to_string(), cause.to_string())],
                    Value::Counter(n as f64),
                )
            })
        })
        .collect();
    Ok([
        (names::FUNCTION_LATENCY, latency),
        (names::FUNCTION_UNTIMED, untimed),
    ])
}

/// The series of [`export_points`], in the one-shot tool's registry.
fn export_rows(x: &ToolExport, rows: &[Latency], unit: Unit) -> Result<()> {
    for (name, points) in export_points(rows, unit)? {
        x.set(&name, points);
    }
    Ok(())
}

/// Prints the histograms of each `-i` seconds, and exports the numbers so far.
struct Interval<'a, 'm> {
    every: Option<Duration>,
    next: Option<Instant>,
    maps: &'a Maps<'m>,
    names: &'a [String],
    /// The numbers as the last interval left them.
    before: Vec<Latency>,
    a: &'a ToolArgs,
    out: &'a mut Box<dyn Write>,
    /// `--prometheus`, `--otlp`: the numbers since tracing began, every interval.
    export: Option<&'a mut ToolExport>,
}

impl Handler for Interval<'_, '_> {
    fn tick(&mut self, now: Instant) -> Result<bool> {
        if let Some(x) = self.export.as_deref_mut()
            && x.exporter.due(now)
        {
            export_rows(x, &read(self.maps, self.names, None)?, self.a.unit)?;
        }
        let Some(every) = self.every else {
            return Ok(false);
        };
        let next = *self.next.get_or_insert(now + every);
        if now >= next {
            let now = read(self.maps, self.names, None)?;
            write_rows(self.out, self.a, &since(&now, &self.before))?;
            self.before = now;
            self.next = Some(next + every);
        }
        Ok(false)
    }

    fn tick_every(&self) -> Duration {
        Duration::from_millis(if self.every.is_some() { 20 } else { 100 })
    }
}
