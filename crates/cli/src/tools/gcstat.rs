//! `gotap gcstat`: each GC cycle of the traced program, with its duration (from
//! `go.gc.start` to `go.gc.done`) and its stop-the-world pauses (from where the
//! runtime takes the time a pause starts to where it takes the time it ends, as it
//! times them: the sweep termination and the mark termination; `go.gc.stop_world`
//! starts the pauses the runtime does not time), then a summary. A cycle is counted at `go.gc.done` (the return of
//! runtime.gcMarkTermination), after `GODEBUG=gctrace=1` has printed its line, so
//! the counts agree even when the program's exit cuts a cycle short.
//!
//! A cycle's `@…s` is counted from the program's start as gctrace counts it: from
//! `runtime.runtimeInitTime` (set by `runtime.main`, read once through
//! `/proc/PID/mem`) to the cycle's first stop of the world (gctrace's `tSweepTerm`,
//! taken just before it). Both are `CLOCK_MONOTONIC`; the probes' wall-clock times
//! are brought back to it with the offset they were given. The pauses' share is of
//! the traced time, from the probes' attach to the end.

use anyhow::Result;
use std::fmt::Write as _;

use runtime::events::Record;

use super::memory::Memory;
use super::{ToolArgs, histogram};
use crate::metrics::ToolExport;
use crate::pipeline::{Consumer, Cx, Ending, Reading};
use crate::symbols::Symbols;
use export::names;

const SCRIPT: &str = "\
probe go.gc.done { printf(\"done %d %d\\n\", cycle, gettimeofday_ns()) }
";

/// The cycles' starts where the runtime's numbers for them cannot be read: numbered
/// from the first seen.
const START: &str = "probe go.gc.start { printf(\"start %d %d\\n\", cycle, gettimeofday_ns()) }\n";

/// Where a pause starts and ends, as the runtime takes the times (see
/// `gobin::GoBinary::pause_start_clocks` and `pause_end_clocks`), as probe points of
/// `process`.
struct Clocks {
    /// The calls that take a pause's start; none if not found.
    starts: Option<String>,
    /// The entry of `stopTheWorldWithSema` (`go.gc.stop_world`) starts the pauses
    /// that the start clocks do not (before Go 1.22, the stops that are not a GC's,
    /// whose start the runtime does not time); none where the clocks are in it.
    stop_entry: bool,
    /// The calls that take a pause's end; the tapset's `go.gc.start_world` (the entry
    /// of `startTheWorldWithSema`) where they are not found.
    ends: String,
    /// The runtime's numbers for the cycles: where `gcMarkTermination` counts one
    /// (`memstats.numgc++`) and where `gcResetMarkState` (go.gc.start) begins, as
    /// probe points, each with the distance from there to the count.
    numbers: Option<Numbers>,
}

struct Numbers {
    counted: (String, i64),
    started: (String, i64),
}

impl Clocks {
    fn of(bin: Option<&crate::binary::Binary>, process: &str) -> Clocks {
        let go = bin.and_then(|b| b.go().ok());
        let (starts, ends) = go
            .as_ref()
            .map(|g| (g.pause_start_clocks(), g.pause_end_clocks()))
            .unwrap_or_default();
        let in_stop = |a: &u64| {
            go.as_ref()
                .and_then(|g| g.function_at(gobin::VirtAddr(*a)))
                .is_some_and(|f| f.name == "runtime.stopTheWorldWithSema")
        };
        Clocks {
            stop_entry: starts.is_empty() || !starts.iter().all(in_stop),
            starts: (!starts.is_empty()).then(|| statements(&starts, process)),
            ends: if ends.is_empty() {
                "go.gc.start_world".to_string()
            } else {
                statements(&ends, process)
            },
            numbers: go.as_ref().and_then(|g| {
                let (at, field) = g.gc_count_increment()?;
                let start = g.function_by_name("runtime.gcResetMarkState")?.entry.0;
                let point = |a: u64| (statements(&[a], process), field as i64 - a as i64);
                Some(Numbers {
                    counted: point(at),
                    started: point(start),
                })
            }),
        }
    }
}

/// The probes that time the pauses, printing `stop`, `clock` and `world` records,
/// and those that start the cycles and number them (`start`, `count`); whether the
/// numbers are the runtime's.
fn clock_probes(a: &ToolArgs) -> (String, bool) {
    let path = match (&a.binary, crate::session::target_binary(&a.target)) {
        (Some(p), _) => Some(p.clone()),
        (None, Ok(p)) => p,
        _ => None,
    };
    let bin = path.and_then(|p| crate::binary::Binary::open(&p).ok());
    let process = match &a.binary {
        Some(p) => format!("process(\"{}\")", p.display()),
        None => "process".to_string(),
    };
    let clocks = Clocks::of(bin.as_ref(), &process);
    let mut probes = format!(
        "probe {} {{ printf(\"world %d\\n\", gettimeofday_ns()) }}\n",
        clocks.ends
    );
    if let Some(starts) = &clocks.starts {
        probes += &format!("probe {starts} {{ printf(\"clock %d\\n\", gettimeofday_ns()) }}\n");
    }
    if clocks.stop_entry {
        probes += "probe go.gc.stop_world { printf(\"stop %d\\n\", gettimeofday_ns()) }\n";
    }
    // The cycles' numbers, read at a distance from the probes' own addresses, where
    // the runtime is (load bias included): the count before this cycle is counted,
    // and, as a cycle starts, the count of those done before it.
    match &clocks.numbers {
        Some(Numbers {
            counted: (done, to_done),
            started: (start, to_start),
        }) => {
            probes += &format!(
                "probe {done} {{ printf(\"count %d\\n\", user_int(register(\"ip\") + {to_done})) }}\n\
                 probe {start} {{ printf(\"start %d %d\\n\", user_int(register(\"ip\") + {to_start}) + 1, gettimeofday_ns()) }}\n"
            );
        }
        None => probes += START,
    }
    (probes, clocks.numbers.is_some())
}

pub fn run(a: &ToolArgs) -> Result<i32> {
    let mut g = GcStat {
        json: a.json,
        // A `-c` command's memory is its own only once it has run exec: read at its
        // first event.
        read_at_start: matches!(a.target, crate::args::Target::Pid(_)),
        realtime_offset: sys::clock::realtime_offset_ns(),
        ..GcStat::default()
    };
    let (probes, numbered) = clock_probes(a);
    g.numbered = numbered;
    let script = format!("{SCRIPT}{probes}");
    super::trace(a, "gcstat", &script, &mut g)
}

/// The agent's script for the binary `bin`: what the consumer works out from the
/// records, kept in the kernel instead (nothing is sent), for every process of the
/// binary at once: the cycles done (`__gc_cycles`), and the pauses of each process
/// while one of its cycles is open (as the consumer keeps only the cycles' pauses)
/// in a log-histogram statistic (`__gc_pause`, ns), read by [`agent_export`]. The
/// pauses start and end where the one-shot tool starts and ends them
/// ([`clock_probes`]).
pub fn agent_script(bin: &crate::binary::Binary) -> String {
    let clocks = Clocks::of(Some(bin), "process");
    let world = &clocks.ends;
    let clock = match &clocks.starts {
        Some(starts) => format!(
            "probe {starts} {{\n    __gc_stop[pid()] = gettimeofday_ns()\n    __gc_clocked[pid()] = 1\n}}\n"
        ),
        None => String::new(),
    };
    let stop = if clocks.stop_entry {
        "probe go.gc.stop_world {
    if (pid() in __gc_clocked) delete __gc_clocked[pid()]
    else __gc_stop[pid()] = gettimeofday_ns()
}
"
    } else {
        ""
    };
    format!(
        "global __gc_cycles, __gc_open[4096], __gc_stop[4096], __gc_clocked[4096], __gc_pause
probe go.gc.start {{ __gc_open[pid()]++ }}
probe go.gc.done {{
    __gc_cycles++
    if (__gc_open[pid()] > 0) __gc_open[pid()]--
}}
{stop}{clock}probe {world} {{
    if (pid() in __gc_stop) {{
        if (__gc_open[pid()] > 0) __gc_pause <<< gettimeofday_ns() - __gc_stop[pid()]
        delete __gc_stop[pid()]
    }}
    delete __gc_clocked[pid()]
}}
function __gc_pauses() {{ print(@hist_log(__gc_pause)) }}
"
    )
}

/// `go.gc.cycles` and `go.gc.pause` (seconds) from [`agent_script`]'s globals, as
/// (name, value) pairs for the caller's registry.
pub fn agent_export(
    specs: &[bpf::script::GlobalSpec],
    store: &mut dyn runtime::globals::Globals,
) -> Result<[(&'static names::Name, export::Value); 2]> {
    let cycles = store
        .get(super::global(specs, "__gc_cycles")?, &[])?
        .as_long();
    let hist = runtime::stats::Hist::Log;
    let stat = store.stat(super::global(specs, "__gc_pause")?, &[])?;
    Ok([
        (
            &names::GC_CYCLES,
            export::Value::Counter(cycles.max(0) as f64),
        ),
        (
            &names::GC_PAUSE,
            export::Value::Histogram(export::stats::histogram(&stat, &hist, 1e-9)),
        ),
    ])
}

/// The statements at `at` of `process`, as one probe's points.
fn statements(at: &[u64], process: &str) -> String {
    let points: Vec<String> = at
        .iter()
        .map(|a| format!("{process}.statement({a:#x})"))
        .collect();
    points.join(", ")
}

#[derive(Default)]
struct Cycle {
    start_ns: i64,
    /// The cycle's first stop of the world (sweep termination), which gctrace's
    /// `tSweepTerm` is taken just before; 0 if not seen.
    stop_ns: i64,
    done_ns: i64,
    pauses: Vec<i64>,
}

#[derive(Default)]
struct GcStat {
    json: bool,
    /// Cycles started and not yet done, by number.
    open: std::collections::BTreeMap<i64, Cycle>,
    cur: Cycle,
    /// When the world was stopped, if it is.
    stopped_at: Option<i64>,
    /// The runtime's clock started the pause: a `stop` (the entry of
    /// `stopTheWorldWithSema`) after it is the same pause, not a later start.
    clocked: bool,
    cycles: Vec<Cycle>,
    /// Cycles whose go.gc.done came without their go.gc.start (tracing began mid-cycle).
    partial: u64,
    other_pauses: Vec<i64>,
    /// Records whose values cannot be right.
    damaged: u64,
    /// The highest cycle number a go.gc.done record carried.
    last_cycle: i64,
    first_ns: Option<i64>,
    last_ns: i64,
    /// Whether `runtimeInitTime` can be read when the probes are attached (`-x`).
    read_at_start: bool,
    /// `runtime.runtimeInitTime`, monotonic ns, once read (0: not yet).
    init_ns: i64,
    /// `runtime.memstats.numgc` just after the probes were attached (`-x`): the
    /// number of a cycle that was counted before they were, and so has no `count`
    /// record.
    gc_count: Option<u32>,
    /// The runtime's number for the cycle under way, from its `count` record (the
    /// probe where `gcMarkTermination` counts it).
    number: Option<i64>,
    /// The last cycle's number.
    last_number: Option<i64>,
    /// Whether the starts carry the runtime's numbers (see [`Numbers`]).
    numbered: bool,
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC`, as the probes' times carry it.
    realtime_offset: i64,
    /// When the probes were attached, and so the traced time began.
    traced_from: Option<std::time::Instant>,
}

impl GcStat {
    /// The runtime's number for the cycle that is done, as gctrace prints it: from
    /// its count record; for a cycle counted before the probes were attached, what
    /// the runtime's count was just after; else the next after the last.
    fn done_number(&mut self) -> i64 {
        let n = match (self.number.take(), self.last_number, self.gc_count) {
            (Some(n), _, _) => n,
            (None, Some(last), _) => last + 1,
            (None, None, Some(count)) => i64::from(count),
            (None, None, None) => self.cycles.len() as i64 + 1,
        };
        self.last_number = Some(n);
        n
    }

    fn close(&mut self, n: i64, out: &mut Vec<u8>) {
        let c = std::mem::take(&mut self.cur);
        let total: i64 = c.pauses.iter().sum();
        let dur = if c.start_ns > 0 && c.done_ns > c.start_ns {
            c.done_ns - c.start_ns
        } else {
            0
        };
        let pauses: Vec<String> = c.pauses.iter().map(|p| us(*p)).collect();
        // From the program's start, as gctrace; from the first event seen when the
        // start could not be read (the process gone before). A cycle that began
        // before tracing did has no known start: not the time it ended instead.
        let began = [c.stop_ns, c.start_ns].into_iter().find(|t| *t > 0);
        let at = began.map(|b| {
            if self.init_ns > 0 {
                b - self.realtime_offset - self.init_ns
            } else {
                self.first_ns.map_or(0, |f| b - f)
            }
        });
        let line = if self.json {
            let known = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.6}"));
            format!(
                "{{\"cycle\":{n},\"at_s\":{},\"duration_us\":{},\"pauses_us\":[{}],\"pause_total_us\":{:.1}}}\n",
                known(at.map(|a| a as f64 / 1e9)),
                known((dur > 0).then(|| dur as f64 / 1e3)),
                c.pauses
                    .iter()
                    .map(|p| format!("{:.1}", *p as f64 / 1e3))
                    .collect::<Vec<_>>()
                    .join(","),
                total as f64 / 1e3
            )
        } else {
            format!(
                "gc {n:<4} @{}  {}  pauses {} (total {})\n",
                at.map_or("?".to_string(), |a| format!("{:.3}s", a as f64 / 1e9)),
                if dur > 0 { us(dur) } else { "?".into() },
                pauses.join(" + "),
                us(total)
            )
        };
        out.extend_from_slice(line.as_bytes());
        self.cycles.push(c);
    }
}

/// Nanoseconds as microseconds, for people.
fn us(ns: i64) -> String {
    if ns >= 10_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.1}µs", ns as f64 / 1e3)
    }
}

/// The word of the traced process's memory (read through `/proc/PID/mem`) at the
/// address `at` finds in its binary; `None` when either is unknown or the read
/// fails.
fn read_global(
    sym: &mut Symbols<'_, '_>,
    at: impl Fn(&gobin::GoBinary<'_>) -> Option<u64>,
) -> Option<u64> {
    let (Some(pid), Some((_, go))) = (sym.pid(), sym.binary()) else {
        return None;
    };
    let addr = at(go)?;
    Memory::open(pid, sym.load_bias()).ok()?.global_u64(addr)
}

impl GcStat {
    /// Reads `runtime.runtimeInitTime` from the traced process, once it is set.
    fn read_init_time(&mut self, sym: &mut Symbols<'_, '_>) {
        if let Some(t) = read_global(sym, |go| go.runtime_init_time_address()) {
            self.init_ns = t as i64;
        }
    }

    /// Reads `runtime.memstats.numgc` (a `uint32`, the low half of the word).
    fn read_gc_count(&mut self, sym: &mut Symbols<'_, '_>) {
        if let Some(w) = read_global(sym, |go| go.gc_count_address()) {
            self.gc_count = Some(w as u32);
        }
    }
}

impl Consumer for GcStat {
    fn started(&mut self, cx: &mut Cx<'_, '_, '_>) {
        self.traced_from = Some(std::time::Instant::now());
        if self.read_at_start {
            self.read_init_time(cx.symbols);
            self.read_gc_count(cx.symbols);
        }
    }

    fn record(&mut self, rec: &Record<'_>, cx: &mut Cx<'_, '_, '_>) -> Result<bool> {
        if self.init_ns == 0 {
            self.read_init_time(cx.symbols);
        }
        let Record::Printf(p) = rec else {
            return Ok(false);
        };
        let kind = p.tag();
        if kind == b"count" {
            // The runtime's count before it counts this cycle; read at a distance
            // from the probe's address, so a bad read is a number out of range.
            let n = p.long(0) + 1;
            if (1..1 << 31).contains(&n) {
                self.number = Some(n);
            } else {
                self.damaged += 1;
            }
            return Ok(false);
        }
        let numbered = matches!(kind, b"start" | b"done");
        // start and done carry the cycle, then the time; stop and world the time.
        let (cycle, t) = if numbered {
            (p.long(0), p.long(1))
        } else {
            (0, p.long(0))
        };
        // Every record carries a wall-clock time of the last minutes and the start
        // and done records a cycle number; a record that does not cannot be right: it
        // is left out and counted, not trusted.
        let cycle_ok = !numbered || (1..1 << 40).contains(&cycle);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        if (t - now).abs() > 600_000_000_000 || !cycle_ok {
            self.damaged += 1;
            return Ok(false);
        }
        self.first_ns.get_or_insert(t);
        self.last_ns = t;
        // Cycles are matched by number: the next cycle may start (on another
        // thread) before the last one's gcMarkTermination has returned.
        match kind {
            b"start" => {
                self.open.insert(
                    cycle,
                    Cycle {
                        start_ns: t,
                        stop_ns: 0,
                        done_ns: 0,
                        pauses: Vec::new(),
                    },
                );
            }
            b"done" => {
                // The kernel's count of the cycles seen done; the runtime's number,
                // which the starts carry too where it can be read.
                self.last_cycle = self.last_cycle.max(cycle);
                let n = self.done_number();
                let key = if self.numbered { n } else { cycle };
                self.cur = match self.open.remove(&key) {
                    Some(c) => c,
                    None => {
                        self.partial += 1;
                        Cycle::default()
                    }
                };
                self.cur.done_ns = t;
                // Starts that no done matched belong to cycles before this one.
                self.open = self.open.split_off(&key);
                self.close(n, cx.out);
            }
            b"stop" | b"clock" => {
                // go.gc.start (gcResetMarkState) runs just before the
                // sweep-termination stop: the pause is the cycle's when the world
                // starts again, and its first stop is where gctrace's cycle begins.
                // Before Go 1.22 the runtime's clock comes before the stop's entry,
                // from 1.22 after it.
                if kind == b"clock" {
                    self.stopped_at = Some(t);
                    self.clocked = true;
                } else if std::mem::take(&mut self.clocked) {
                    return Ok(false);
                } else {
                    self.stopped_at = Some(t);
                }
                if let Some(c) = self.open.values_mut().next_back()
                    && c.stop_ns == 0
                {
                    c.stop_ns = t;
                }
            }
            b"world" => {
                self.clocked = false;
                let Some(s) = self.stopped_at.take() else {
                    return Ok(false);
                };
                let pause = t - s;
                // The pause is the latest started cycle's.
                match self.open.values_mut().next_back() {
                    Some(c) => c.pauses.push(pause),
                    None => self.other_pauses.push(pause),
                }
            }
            _ => {}
        }
        Ok(false)
    }

    /// `go.gc.cycles` as the summary counts them, `go.gc.pause` from the cycles'
    /// pauses, in seconds.
    fn export(&mut self, to: &ToolExport, _from: &mut Reading<'_, '_, '_>) {
        let n = self.cycles.len().max(self.last_cycle as usize);
        to.number(&names::GC_CYCLES, n as f64);
        let hist = runtime::stats::Hist::Log;
        let mut stat = runtime::stats::Stat::new(&hist);
        for p in self.cycles.iter().flat_map(|c| &c.pauses) {
            stat.add(&hist, *p);
        }
        let h = export::stats::histogram(&stat, &hist, 1e-9);
        to.set(
            &names::GC_PAUSE,
            [(Vec::new(), export::Value::Histogram(h))],
        );
    }

    fn finish(&mut self, end: &mut Ending<'_, '_, '_>) -> Result<()> {
        let out = &mut *end.out;
        // The kernel numbers the cycles it sees end, so the count holds even when a
        // cycle's own line was damaged.
        let n = self.cycles.len().max(self.last_cycle as usize);
        let durations: Vec<i64> = self
            .cycles
            .iter()
            .filter(|c| c.start_ns > 0 && c.done_ns > c.start_ns)
            .map(|c| c.done_ns - c.start_ns)
            .collect();
        // The pauses of a cycle the program's exit cut short were pauses too (the
        // runtime counts them), though the cycle is not.
        let pauses: Vec<i64> = self
            .cycles
            .iter()
            .chain(self.open.values())
            .flat_map(|c| c.pauses.iter().copied())
            .collect();
        let pause_total: i64 = pauses.iter().sum();
        let span = self
            .traced_from
            .map_or(1, |t| t.elapsed().as_nanos() as i64)
            .max(1);
        if self.json {
            out.extend_from_slice(
                format!(
                    "{{\"cycles\":{n},\"pause_total_us\":{:.1},\"pause_max_us\":{:.1},\"other_pauses\":{}}}\n",
                    pause_total as f64 / 1e3,
                    pauses.iter().max().copied().unwrap_or(0) as f64 / 1e3,
                    self.other_pauses.len()
                )
                .as_bytes(),
            );
            return Ok(());
        }
        let mut s = String::new();
        let _ = writeln!(s, "\n{n} GC cycles");
        if n > 0 {
            let avg = |v: &[i64]| {
                if v.is_empty() {
                    0
                } else {
                    v.iter().sum::<i64>() / v.len() as i64
                }
            };
            let _ = writeln!(
                s,
                "  cycle duration: avg {}  max {}",
                us(avg(&durations)),
                us(durations.iter().max().copied().unwrap_or(0))
            );
            let _ = writeln!(
                s,
                "  stop-the-world pauses: {} in all, total {}, avg {}, max {} ({:.3}% of the traced time)",
                pauses.len(),
                us(pause_total),
                us(avg(&pauses)),
                us(pauses.iter().max().copied().unwrap_or(0)),
                pause_total as f64 * 100.0 / span as f64
            );
        }
        if self.damaged > 0 {
            eprintln!(
                "WARNING: {} damaged event records were left out",
                self.damaged
            );
        }
        if self.partial > 0 {
            let _ = writeln!(
                s,
                "  {} cycle(s) were under way when tracing began",
                self.partial
            );
        }
        if !self.other_pauses.is_empty() {
            let _ = writeln!(
                s,
                "  {} stop(s) of the world outside GC cycles, total {}",
                self.other_pauses.len(),
                us(self.other_pauses.iter().sum())
            );
        }
        out.extend_from_slice(s.as_bytes());
        if !pauses.is_empty() {
            out.extend_from_slice(b"\nGC pauses (ns):\n");
            histogram(&pauses, out);
        }
        Ok(())
    }
}
