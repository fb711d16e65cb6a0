//! `gotap goroutines`: how many goroutines are alive, every `-i` seconds, and at the
//! end where the goroutines still alive were created (the `go` statement, from
//! `g.gopc`) and what they run (`g.startpc`). Built on the tapset's
//! `go.goroutine.create` (the return of runtime.newproc1) and `go.goroutine.exit`
//! (runtime.goexit0). Goroutines created before tracing began are not known until
//! they exit; they are counted apart.

use anyhow::Result;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use runtime::events::Record;
use runtime::json::quoted;

use super::ToolArgs;
use crate::metrics::ToolExport;
use crate::pipeline::{Consumer, Cx, Ending, Reading};
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
        created: 0,
        exited: 0,
        unknown_exits: 0,
        peak: 0,
        samples: Vec::new(),
    };
    super::trace(a, "goroutines", SCRIPT, &mut g)
}

struct Goroutines {
    every: Duration,
    top: usize,
    json: bool,
    started: Instant,
    next: Option<Instant>,
    /// goid → (creation pc, start pc).
    alive: HashMap<i64, (u64, u64)>,
    created: u64,
    exited: u64,
    unknown_exits: u64,
    peak: usize,
    /// (seconds since start, live goroutines).
    samples: Vec<(f64, usize)>,
}

impl Goroutines {
    fn sample(&mut self, now: Instant, out: &mut Vec<u8>) {
        let t = now.duration_since(self.started).as_secs_f64();
        self.samples.push((t, self.alive.len()));
        let line = if self.json {
            format!(
                "{{\"t\":{t:.3},\"live\":{},\"created\":{},\"exited\":{}}}\n",
                self.alive.len(),
                self.created,
                self.exited
            )
        } else {
            format!(
                "{t:>8.1}s  live {:>7}  created {:>9}  exited {:>9}\n",
                self.alive.len(),
                self.created,
                self.exited
            )
        };
        out.extend_from_slice(line.as_bytes());
    }
}

impl Consumer for Goroutines {
    fn record(&mut self, rec: &Record<'_>, _cx: &mut Cx<'_, '_, '_>) -> Result<bool> {
        let Record::Printf(p) = rec else {
            return Ok(false);
        };
        match p.tag() {
            b"new" => {
                self.created += 1;
                self.alive
                    .insert(p.long(0), (p.long(2) as u64, p.long(3) as u64));
                self.peak = self.peak.max(self.alive.len());
            }
            b"exit" => {
                self.exited += 1;
                if self.alive.remove(&p.long(0)).is_none() {
                    self.unknown_exits += 1;
                }
            }
            _ => {}
        }
        Ok(false)
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
