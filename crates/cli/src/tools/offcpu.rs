//! `gotap offcpu`: where goroutines wait and for how long, without
//! `SetBlockProfileRate` in the program. A wait is a goroutine's `gopark` (the
//! tapset's `go.sched.park`, with the runtime's wait reason and the parking
//! goroutine's backtrace) to the scheduler running it again (`go.sched.run`, at
//! `runtime.execute`), matched by goroutine id in the kernel, which adds each wait's
//! time to a statistic per (reason, backtrace) and to a histogram per reason; nothing
//! crosses to user space per wait. At the end: the time per reason (named from the
//! binary's own `waitReasonStrings`), its histogram, the backtraces that waited
//! longest, and with `--folded`/`--svg`/`--pprof` the backtraces weighted by time (the
//! profile as `runtime/pprof` writes a block profile: contentions and delay).
//!
//! Waits that began before tracing did are not seen (the park was missed); waits
//! still under way at the end are counted and said, not timed.
//!
//! With `--prometheus` or `--otlp`, the kernel's statistic per reason is read while
//! the trace runs: `go.offcpu{reason}`, the seconds of the waits that ended, and
//! `go.offcpu.waits{reason}`, how many. The kernel never clears it, so both only
//! grow. With `--otlp` the profile is sent at the end as OTLP's profiles signal
//! (`metrics::send_profile`, a pprof file where the collector does not take it).

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;

use runtime::events::Record;
use runtime::globals::Globals;
use runtime::json::quoted;
use runtime::stats::Hist;

use super::{ToolArgs, global};
use crate::metrics::ToolExport;
use crate::pipeline::{Consumer, Cx, Ending, Reading};
use crate::symbols::Symbols;

/// The tool's script: the kernel keeps, per goroutine, when and why it parked and
/// where (`ubacktrace()`), and on its running again the wait's time per (reason,
/// stack) and per reason. The tool reads `__oc_by`, `__oc_hist` and what is left
/// in `__oc_t` at the end. The function `__oc_hists` is never called: it says that
/// the reasons' times are read as log histograms, so the kernel keeps their buckets.
pub const SCRIPT: &str = "\
global __oc_t[65536], __oc_why[65536], __oc_stk[65536], __oc_by[16384], __oc_hist[256]
probe go.sched.park {
    __oc_t[goid] = gettimeofday_ns()
    __oc_why[goid] = reason
    __oc_stk[goid] = ubacktrace()
}
probe go.sched.run {
    if (goid in __oc_t) {
        d = gettimeofday_ns() - __oc_t[goid]
        __oc_by[__oc_why[goid], __oc_stk[goid]] <<< d
        __oc_hist[__oc_why[goid]] <<< d
        delete __oc_t[goid]
    }
}
function __oc_hists() { print(@hist_log(__oc_hist[0])) }
";

/// The agent's script: the waits of every process of a binary, per (process,
/// reason), as the tool's `__oc_hist` keeps them per reason, without backtraces
/// (the agent exports the times, not the profile). The process is in every key, as
/// two processes of one binary have goroutines of the same ids; a wait's entries go
/// when it ends, so the maps hold the goroutines parked now, not every one that
/// ever was. The agent reads `__oc_waits`, and deletes an exited process's keys.
pub const AGENT_SCRIPT: &str = "\
global __oc_t[65536], __oc_why[65536], __oc_waits[16384]
probe go.sched.park {
    __oc_t[pid(), goid] = gettimeofday_ns()
    __oc_why[pid(), goid] = reason
}
probe go.sched.run {
    if ([pid(), goid] in __oc_t) {
        __oc_waits[pid(), __oc_why[pid(), goid]] <<< gettimeofday_ns() - __oc_t[pid(), goid]
        delete __oc_t[pid(), goid]
        delete __oc_why[pid(), goid]
    }
}
";

/// The runtime's wait reasons in `go`, by number: its own `waitReasonStrings`.
pub fn wait_reasons(go: &gobin::GoBinary<'_>) -> Vec<String> {
    go.wait_reasons()
        .map(|t| t.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default()
}

/// The name of reason `n` in `names` ([`wait_reasons`]), or its number.
pub fn reason_name(names: &[String], n: i64) -> String {
    match usize::try_from(n).ok().and_then(|i| names.get(i)) {
        Some(s) if !s.is_empty() => s.clone(),
        _ => format!("reason {n}"),
    }
}

/// The waits that ended, by reason name: `(count, ns)`.
pub type ByReason = BTreeMap<String, (u64, u64)>;

/// `go.offcpu{reason}` and `go.offcpu.waits{reason}` of the waits that ended, by
/// reason. The one-shot tool and the agent export these.
pub fn export_points(
    by: &ByReason,
) -> [(export::names::Name, Vec<(export::Labels, export::Value)>); 2] {
    let reason = |r: &String| vec![("reason".to_string(), r.clone())];
    [
        (
            export::names::OFFCPU,
            by.iter()
                .map(|(r, (_, ns))| (reason(r), export::Value::Counter(*ns as f64 / 1e9)))
                .collect(),
        ),
        (
            export::names::OFFCPU_WAITS,
            by.iter()
                .map(|(r, (n, _))| (reason(r), export::Value::Counter(*n as f64)))
                .collect(),
        ),
    ]
}

pub fn run(a: &ToolArgs) -> Result<i32> {
    let started = std::time::SystemTime::now();
    let mut o = OffCpu {
        top: a.top,
        json: a.json,
        ..OffCpu::default()
    };
    let code = super::trace(a, "offcpu", SCRIPT, &mut o)?;
    let folded = o.folded();
    super::write_flame(&folded, &a.folded, &a.svg, "goroutines off CPU", "ns")?;
    let prof = (a.pprof.is_some() || a.export.otlp.is_some()).then(|| o.profile(started));
    if let (Some(p), Some(prof)) = (&a.pprof, &prof) {
        let mut f = std::fs::File::create(p).with_context(|| format!("--pprof {}", p.display()))?;
        prof.write(&mut f)
            .with_context(|| format!("--pprof {}", p.display()))?;
    }
    if let (Some(prof), Some((end, Some(pid)))) = (&prof, o.ended) {
        let path = crate::session::tool_binary("offcpu", &a.binary, &a.target)?;
        let bin = crate::binary::Binary::open(&path)?;
        crate::metrics::send_profile(&a.export, prof, &bin, pid, a.pprof.as_deref(), end)?;
    }
    Ok(code)
}

/// One (reason, backtrace)'s waits.
#[derive(Clone, Debug)]
struct Waits {
    reason: String,
    /// Functions, innermost first.
    stack: Vec<String>,
    count: u64,
    total_ns: u64,
    max_ns: u64,
}

/// A reason's totals and histogram text.
#[derive(Clone, Debug, Default)]
struct Reason {
    count: u64,
    total_ns: u64,
    max_ns: u64,
    hist: String,
}

/// A backtrace's program counters with their frames, and its (count, ns) values.
type Sample = (Vec<(u64, Vec<runtime::pprof::Frame>)>, [i64; 2], String);

#[derive(Default)]
struct OffCpu {
    top: usize,
    json: bool,
    names: Option<Vec<String>>,
    waits: Vec<Waits>,
    reasons: BTreeMap<String, Reason>,
    /// Waits under way at the end.
    parked: u64,
    /// For `--pprof`.
    samples: Vec<Sample>,
    /// How the trace ended and the process traced, for `--otlp`'s profile.
    ended: Option<(crate::session::End, Option<u32>)>,
}

impl OffCpu {
    /// The runtime's name of reason `n`, from the binary's own table.
    fn reason(&mut self, n: i64, sym: &Symbols<'_, '_>) -> String {
        let names = self.names.get_or_insert_with(|| {
            sym.binary()
                .map(|(_, go)| wait_reasons(go))
                .unwrap_or_default()
        });
        reason_name(names, n)
    }

    /// The backtraces weighted by nanoseconds, outermost first, the reason as the
    /// leaf (as the block profile's flame graph reads).
    /// The waits as a block profile: contentions and delay per backtrace, the
    /// reason as a label.
    fn profile(&self, started: std::time::SystemTime) -> runtime::pprof::Profile {
        let unix = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64)
        };
        let mut p = runtime::pprof::Profile::new(
            &[("contentions", "count"), ("delay", "nanoseconds")],
            ("contentions", "count"),
            1,
            unix(started),
            unix(std::time::SystemTime::now()) - unix(started),
        );
        for (stack, values, reason) in &self.samples {
            let label = runtime::pprof::LabelValue::Str(reason.clone());
            p.add(stack, values, &[("wait reason", label)]);
        }
        p
    }

    fn folded(&self) -> runtime::flame::Folded {
        let mut f = runtime::flame::Folded::default();
        for w in &self.waits {
            let mut path: Vec<&str> = w.stack.iter().rev().map(String::as_str).collect();
            let leaf = format!("[{}]", w.reason);
            path.push(&leaf);
            f.add(path.join(";"), w.total_ns);
        }
        f
    }

    fn write_text(&self, out: &mut String) {
        let total: u64 = self.reasons.values().map(|r| r.total_ns).sum();
        let _ = writeln!(
            out,
            "Off-CPU time by wait reason (gopark to running again):"
        );
        let _ = writeln!(
            out,
            "{:<28} {:>9} {:>16} {:>12} {:>12} {:>6}",
            "REASON", "WAITS", "TOTAL_NS", "AVG_NS", "MAX_NS", "%"
        );
        let mut by: Vec<(&String, &Reason)> = self.reasons.iter().collect();
        by.sort_by(|a, b| b.1.total_ns.cmp(&a.1.total_ns).then(a.0.cmp(b.0)));
        for (name, r) in &by {
            let _ = writeln!(
                out,
                "{:<28} {:>9} {:>16} {:>12} {:>12} {:>6.1}",
                name,
                r.count,
                r.total_ns,
                r.total_ns.checked_div(r.count).unwrap_or(0),
                r.max_ns,
                100.0 * r.total_ns as f64 / total.max(1) as f64
            );
        }
        for (name, r) in &by {
            if !r.hist.is_empty() {
                let _ = write!(out, "\n{name} (ns)\n{}", r.hist);
            }
        }
        let mut waits: Vec<&Waits> = self.waits.iter().collect();
        waits.sort_by_key(|w| std::cmp::Reverse(w.total_ns));
        let _ = writeln!(out, "\nBacktraces that waited longest:");
        for w in waits.iter().take(self.top) {
            let _ = writeln!(
                out,
                "\n  {} waits, {} ns, in \"{}\":",
                w.count, w.total_ns, w.reason
            );
            for f in &w.stack {
                let _ = writeln!(out, "    {f}");
            }
        }
        if self.parked > 0 {
            let _ = writeln!(
                out,
                "\n{} goroutines still waiting at the end: not timed",
                self.parked
            );
        }
    }

    fn write_json(&self, out: &mut String) {
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(n, r)| {
                format!(
                    "{{\"reason\":{},\"waits\":{},\"total_ns\":{},\"max_ns\":{}}}",
                    quoted(n),
                    r.count,
                    r.total_ns,
                    r.max_ns
                )
            })
            .collect();
        let stacks: Vec<String> = self
            .waits
            .iter()
            .map(|w| {
                let fs: Vec<String> = w.stack.iter().map(|f| quoted(f)).collect();
                format!(
                    "{{\"reason\":{},\"stack\":[{}],\"waits\":{},\"total_ns\":{},\"max_ns\":{}}}",
                    quoted(&w.reason),
                    fs.join(","),
                    w.count,
                    w.total_ns,
                    w.max_ns
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "{{\"reasons\":[{}],\"stacks\":[{}],\"still_waiting\":{}}}",
            reasons.join(","),
            stacks.join(","),
            self.parked
        );
    }
}

impl OffCpu {
    /// The kernel's tables: the waits per (reason, stack), the histograms per
    /// reason, and the goroutines still parked.
    fn read_tables(&mut self, end: &mut Ending<'_, '_, '_>) -> Result<()> {
        let specs = &end.spec.globals;
        let (by, hist, parked) = (
            global(specs, "__oc_by")?,
            global(specs, "__oc_hist")?,
            global(specs, "__oc_t")?,
        );
        for (keys, stat) in end.storage().stat_entries(by)? {
            let [why, stack] = [0, 1].map(|i| keys.get(i).map_or(0, |k| k.as_long()));
            let reason = self.reason(why, end.symbols);
            let (count, total, max) = (
                u64::try_from(stat.count).unwrap_or(0),
                u64::try_from(stat.sum).unwrap_or(0),
                u64::try_from(stat.max).unwrap_or(0),
            );
            // The first frame is the probe's own (gopark's entry), the others
            // return addresses.
            let mut names = Vec::new();
            let mut located = Vec::new();
            for (pc, texts) in end.symbols.stack_frames(stack as u64).unwrap_or_default() {
                let frames: Vec<runtime::pprof::Frame> = texts
                    .iter()
                    .map(|fr| runtime::pprof::Frame {
                        function: fr.function.clone(),
                        file: fr.file.clone(),
                        line: i64::from(fr.line),
                    })
                    .collect();
                names.extend(frames.iter().map(|fr| fr.function.clone()));
                located.push((pc, frames));
            }
            self.samples
                .push((located, [count as i64, total as i64], reason.clone()));
            let r = self.reasons.entry(reason.clone()).or_default();
            r.count += count;
            r.total_ns += total;
            r.max_ns = r.max_ns.max(max);
            self.waits.push(Waits {
                reason,
                stack: names,
                count,
                total_ns: total,
                max_ns: max,
            });
        }
        for (keys, stat) in end.storage().stat_entries(hist)? {
            let why = keys.first().map_or(0, |k| k.as_long());
            let reason = self.reason(why, end.symbols);
            let mut text = Vec::new();
            if stat.count > 0 {
                runtime::stats::write_histogram(&mut text, &Hist::Log, &stat)?;
            }
            self.reasons.entry(reason).or_default().hist =
                String::from_utf8_lossy(&text).into_owned();
        }
        self.parked = end.storage().entries(parked)?.len() as u64;
        Ok(())
    }
}

impl Consumer for OffCpu {
    fn record(&mut self, _rec: &Record<'_>, _cx: &mut Cx<'_, '_, '_>) -> Result<bool> {
        Ok(false)
    }

    /// `go.offcpu{reason}` and `go.offcpu.waits{reason}` from the kernel's
    /// statistic per reason (`__oc_hist`): its sum in seconds, and its count.
    fn export(&mut self, to: &ToolExport, from: &mut Reading<'_, '_, '_>) {
        let Ok(hist) = global(&from.spec.globals, "__oc_hist") else {
            return;
        };
        let entries = from.storage().stat_entries(hist).unwrap_or_default();
        let mut by = ByReason::new();
        for (keys, stat) in entries {
            let why = keys.first().map_or(0, |k| k.as_long());
            let r = by.entry(self.reason(why, from.symbols)).or_default();
            r.0 += u64::try_from(stat.count).unwrap_or(0);
            r.1 += u64::try_from(stat.sum).unwrap_or(0);
        }
        for (name, points) in export_points(&by) {
            to.set(&name, points);
        }
    }

    fn finish(&mut self, end: &mut Ending<'_, '_, '_>) -> Result<()> {
        self.ended = Some((end.end, end.symbols.pid()));
        self.read_tables(end)?;
        let mut s = String::new();
        if self.json {
            self.write_json(&mut s);
        } else {
            self.write_text(&mut s);
        }
        end.out.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
