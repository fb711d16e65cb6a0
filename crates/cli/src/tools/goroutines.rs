//! `gotap goroutines`: how many goroutines are alive, every `-i` seconds, and at the
//! end where the goroutines still alive were created (the `go` statement, from
//! `g.gopc`) and what they run (`g.startpc`). Built on the tapset's
//! `go.goroutine.create` (the return of runtime.newproc1) and `go.goroutine.exit`
//! (runtime.goexit0), and on the goroutines alive when tracing began, read once from
//! `runtime.allgs` through `/proc/PID/mem` (read only) after the probes are
//! attached, so that none falls between the two. The count is the one
//! `runtime.NumGoroutine` gives: the runtime's own goroutines (those that run a
//! function of package `runtime` but `runtime.main`) are left out, as there. The
//! `created` and `exited` columns count what happened in each interval.

use anyhow::Result;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use runtime::events::Record;
use runtime::json::quoted;

use super::ToolArgs;
use super::memory::{self, Memory};
use crate::metrics::ToolExport;
use crate::pipeline::{Consumer, Cx, Ending, Reading};
use crate::symbols::Symbols;
use export::names;

const SCRIPT: &str = "\
probe go.goroutine.create { printf(\"new %d %d %d %d\\n\", new_goid, creator_goid, create_pc, start_pc) }
probe go.goroutine.exit { printf(\"exit %d\\n\", goid) }
";

pub fn run(a: &ToolArgs) -> Result<i32> {
    let mut g = Goroutines {
        every: Duration::from_secs(a.interval),
        top: a.top,
        json: a.json,
        started: Instant::now(),
        next: None,
        alive: HashMap::new(),
        system: std::collections::HashSet::new(),
        created: 0,
        exited: 0,
        unknown_exits: 0,
        peak: 0,
        samples: Vec::new(),
        // A `-c` command is traced from its start: every goroutine's creation is
        // seen. (Its memory is not even its own until it has run exec.)
        scanned: !matches!(a.target, crate::args::Target::Pid(_)),
        early_exits: std::collections::HashSet::new(),
        at_attach: None,
        last: (0, 0),
    };
    super::trace(a, "goroutines", SCRIPT, &mut g)
}

struct Goroutines {
    every: Duration,
    top: usize,
    json: bool,
    started: Instant,
    next: Option<Instant>,
    /// goid → (creation pc, start pc) of the user goroutines alive.
    alive: HashMap<i64, (u64, u64)>,
    /// The runtime's own goroutines alive (not counted, as NumGoroutine does not).
    system: std::collections::HashSet<i64>,
    created: u64,
    exited: u64,
    unknown_exits: u64,
    peak: usize,
    /// (seconds since start, live goroutines).
    samples: Vec<(f64, usize)>,
    /// Whether `runtime.allgs` has been read (or cannot be).
    scanned: bool,
    /// Goroutines whose exit was seen before `allgs` was read: the read may still
    /// find them alive.
    early_exits: std::collections::HashSet<i64>,
    /// How many were alive when tracing began (None: not read).
    at_attach: Option<usize>,
    /// `created` and `exited` at the last sample, for the counts per interval.
    last: (u64, u64),
}

impl Goroutines {
    fn sample(&mut self, now: Instant, out: &mut Vec<u8>) {
        let t = now.duration_since(self.started).as_secs_f64();
        self.samples.push((t, self.alive.len()));
        let (created, exited) = (self.created - self.last.0, self.exited - self.last.1);
        self.last = (self.created, self.exited);
        let line = if self.json {
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            format!(
                "{{\"t\":{t:.3},\"unix_ms\":{unix_ms},\"live\":{},\"created\":{created},\"exited\":{exited}}}\n",
                self.alive.len(),
            )
        } else {
            format!(
                "{t:>8.1}s  live {:>7}  created {created:>9}  exited {exited:>9}\n",
                self.alive.len(),
            )
        };
        out.extend_from_slice(line.as_bytes());
    }

    /// Adds the goroutines alive in the process now, from `runtime.allgs`.
    fn scan(&mut self, sym: &mut Symbols<'_, '_>) {
        self.scanned = true;
        let (Some(pid), Some((bin, go))) = (sym.pid(), sym.binary()) else {
            return;
        };
        let (Some(allgs), Some(layout)) = (go.allgs_address(), memory::runtime_layout(bin)) else {
            return;
        };
        let Ok(mem) = Memory::open(pid, sym.load_bias()) else {
            return;
        };
        let Some(gs) = memory::goroutines(&mem, allgs, &layout) else {
            return;
        };
        let mut n = 0;
        for g in gs {
            if self.early_exits.contains(&g.goid) {
                continue;
            }
            if memory::is_system_goroutine(&sym.function(g.startpc, true)) {
                self.system.insert(g.goid);
                continue;
            }
            self.alive.insert(g.goid, (g.gopc, g.startpc));
            n += 1;
        }
        self.early_exits.clear();
        self.at_attach = Some(n);
        self.peak = self.peak.max(self.alive.len());
    }
}

impl Consumer for Goroutines {
    fn record(&mut self, rec: &Record<'_>, cx: &mut Cx<'_, '_, '_>) -> Result<bool> {
        let Record::Printf(p) = rec else {
            return Ok(false);
        };
        match p.tag() {
            b"new" => {
                let (goid, start) = (p.long(0), p.long(3) as u64);
                if memory::is_system_goroutine(&cx.symbols.function(start, true)) {
                    self.system.insert(goid);
                    return Ok(false);
                }
                self.created += 1;
                self.alive.insert(goid, (p.long(2) as u64, start));
                self.peak = self.peak.max(self.alive.len());
            }
            b"exit" => {
                let goid = p.long(0);
                if self.system.remove(&goid) {
                    return Ok(false);
                }
                if self.alive.remove(&goid).is_some() {
                    self.exited += 1;
                } else {
                    self.unknown_exits += 1;
                    if !self.scanned {
                        self.early_exits.insert(goid);
                    }
                }
            }
            _ => {}
        }
        Ok(false)
    }

    fn started(&mut self, cx: &mut Cx<'_, '_, '_>) {
        if !self.scanned {
            self.scan(cx.symbols);
        }
    }

    fn tick(&mut self, now: Instant, cx: &mut Cx<'_, '_, '_>) {
        let next = *self.next.get_or_insert(self.started + self.every);
        if now >= next {
            self.sample(now, cx.out);
            self.next = Some(next + self.every);
        }
    }

    fn tick_every(&self) -> Duration {
        Duration::from_millis(20)
    }

    /// `go.goroutines` as the live count printed, `go.goroutines.created`.
    fn export(&mut self, to: &ToolExport, _from: &mut Reading<'_, '_, '_>) {
        to.number(&names::GOROUTINES, self.alive.len() as f64);
        to.number(&names::GOROUTINES_CREATED, self.created as f64);
    }

    fn finish(&mut self, end: &mut Ending<'_, '_, '_>) -> Result<()> {
        let (sym, out) = (&mut *end.symbols, &mut *end.out);
        self.sample(Instant::now(), out);
        // The live goroutines by where they were created and what they run.
        let mut sites: HashMap<(String, String), u64> = HashMap::new();
        for (create, start) in self.alive.values() {
            let at = sym.place(*create, false);
            let runs = sym.function(*start, true);
            *sites.entry((at, runs)).or_default() += 1;
        }
        let mut rows: Vec<_> = sites.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(self.top);
        let mut s = String::new();
        if self.json {
            let r: Vec<String> = rows
                .iter()
                .map(|((at, runs), n)| {
                    format!(
                        "{{\"created_at\":{},\"runs\":{},\"live\":{n}}}",
                        quoted(at),
                        quoted(runs)
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "{{\"live\":{},\"peak\":{},\"created\":{},\"exited\":{},\"exited_unknown\":{},\"sites\":[{}]}}",
                self.alive.len(),
                self.peak,
                self.created,
                self.exited,
                self.unknown_exits,
                r.join(",")
            );
        } else {
            let _ = writeln!(
                s,
                "\n{} goroutines created, {} exited, {} alive at the end (peak {})",
                self.created,
                self.exited,
                self.alive.len(),
                self.peak
            );
            if !self.system.is_empty() {
                let _ = writeln!(
                    s,
                    "({} goroutines of the runtime's own, not counted, as runtime.NumGoroutine does not count them)",
                    self.system.len()
                );
            }
            if self.unknown_exits > 0 {
                let _ = writeln!(
                    s,
                    "{} goroutines created before tracing began exited",
                    self.unknown_exits
                );
            }
            let _ = writeln!(s, "\n{:>8}  CREATED AT (live goroutines)  RUNNING", "LIVE");
            for ((at, runs), n) in rows {
                let _ = writeln!(s, "{n:>8}  {at}  {runs}");
            }
        }
        out.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
