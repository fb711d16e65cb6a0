//! The trace itself: the `begin` probes, the `-c` command released, then records
//! decoded and handed to the consumer hit by hit and timer probes run, until
//! `exit()`, the command's end or a signal; after the probes are gone, the records
//! left and the `end` probes.

use anyhow::{Context, Result};
use std::io::Write;
use std::time::{Duration, Instant};

use bpf::script::{ScriptSpec, UserProbe, UserProbeKind};
use runtime::events::{Decoder, Record};
use runtime::interp::Interp;

use super::{Consumer, Cx, Ending, Parsed, Reading, Tally};
use crate::maps::KernelGlobals;
use crate::session::{self, Armed, End, Handler, Traced};
use crate::symbols::{self, Symbols};

/// The interpreter of the user-space probes: `pid()` and `tid()` are gotap's,
/// `target()` the traced process, `usymname()` names the binary's functions with the
/// bias the trace learns.
pub(super) fn interpreter<'s>(
    parsed: &'s Parsed,
    info: &'s lang::TypeInfo,
    spec: &'s ScriptSpec,
    traced: &Traced,
    go: Option<&'s gobin::GoBinary<'_>>,
    symbols: &Symbols<'_, '_>,
) -> Interp<'s> {
    let ctx = runtime::interp::Context {
        pid: i64::from(std::process::id()),
        tid: i64::from(std::process::id()),
        target: traced.pid().map_or(0, i64::from),
        ..runtime::interp::Context::default()
    };
    let interp = Interp::new(
        &parsed.script,
        info,
        &spec.globals,
        ctx,
        runtime::interp::Limits::default(),
    );
    match go {
        Some(go) => interp.with_symbols(symbols::usymname(go, symbols.bias())),
        None => interp,
    }
}

/// What the trace keeps from its start to its end.
pub(super) struct Trace<'r, 'a, 'd, 's> {
    pub(super) decoder: Decoder,
    /// Records of the last drain, held to be handed out hit by hit.
    pub(super) held: runtime::regroup::Regroup,
    pub(super) consumer: &'r mut dyn Consumer,
    pub(super) symbols: &'r mut Symbols<'a, 'd>,
    pub(super) interp: &'r mut Interp<'s>,
    /// The timer probes: each with its period and when it last ran.
    pub(super) timers: Vec<(UserProbe, Duration, Instant)>,
    pub(super) maps: &'r [sys::Map],
    pub(super) sm: &'r lang::SourceMap,
    /// What the consumer wrote, not yet on the sink.
    pub(super) out: Vec<u8>,
    /// What the user-space probes printed.
    pub(super) printed: Vec<u8>,
    /// Stdout or the `-o` file.
    pub(super) sink: Box<dyn Write>,
    /// An error a probe reported; the run ends with it, and exits 1.
    pub(super) failed: Option<String>,
    /// The first failure to write to `sink`; the trace goes on to its end.
    pub(super) write_error: Option<std::io::Error>,
    /// Learn the PIE bias before the first record (a tool names bare addresses).
    pub(super) early_bias: bool,
    pub(super) spec: &'r ScriptSpec,
    /// `--prometheus`, `--otlp`: what is read every interval, and the logs.
    pub(super) export: Option<&'r mut crate::metrics::Export>,
}

impl Trace<'_, '_, '_, '_> {
    /// The `begin` probes, then the `-c` command released (or killed, if they asked
    /// to exit), then records and timers until the trace ends.
    pub(super) fn trace(
        &mut self,
        spec: &ScriptSpec,
        signals: &sys::Signals,
        traced: &mut Traced,
    ) -> Result<End> {
        let exit = self.user_probes(spec, UserProbeKind::Begin);
        self.flush();
        let now = Instant::now();
        self.timers = spec
            .user_probes
            .iter()
            .filter_map(|p| match p.when {
                UserProbeKind::Timer { period_ns } => {
                    Some((*p, Duration::from_nanos(period_ns.max(1_000_000)), now))
                }
                _ => None,
            })
            .collect();
        if let Traced::Child(c) = traced {
            if exit {
                c.kill();
            } else {
                c.release()?;
            }
        }
        if exit {
            sys::trace_ends();
            return Ok(End::Requested);
        }
        if self.early_bias {
            self.wait_for_bias(traced);
            let mut cx = Cx {
                symbols: &mut *self.symbols,
                out: &mut self.out,
            };
            self.consumer.started(&mut cx);
        }
        let mut ring = ring_buffer(spec, self.maps)?;
        session::run(signals, ring.as_mut(), traced, self)
    }

    /// A held command execs once released: wait (briefly) for its mapping, so that
    /// its addresses can be named even if it is gone before its records are read.
    fn wait_for_bias(&mut self, traced: &Traced) {
        for _ in 0..2000 {
            self.symbols.learn_bias();
            if self.symbols.ready() || traced.pid().is_none() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs the user-space probes of one kind; true if one asked to exit (or failed).
    fn user_probes(&mut self, spec: &ScriptSpec, when: UserProbeKind) -> bool {
        let mut exit = false;
        let mut globals = KernelGlobals {
            maps: self.maps,
            stacks: &mut *self.symbols,
        };
        for p in spec.user_probes.iter().filter(|p| p.when == when) {
            let from = self.printed.len();
            let ran = self.interp.run(p, &mut globals, &mut self.printed);
            log_user(self.export.as_deref(), p, &self.printed[from..]);
            match ran {
                Ok(o) => exit |= o.exit,
                Err(e) => {
                    eprintln!("ERROR: {}", e.render(self.sm));
                    self.failed.get_or_insert(e.message);
                    exit = true;
                    if when == UserProbeKind::End {
                        break;
                    }
                }
            }
        }
        self.hand_printed();
        exit
    }

    /// The timer probes that are due; true if one asked to exit.
    fn timers(&mut self, now: Instant) -> bool {
        let mut exit = false;
        let mut globals = KernelGlobals {
            maps: self.maps,
            stacks: &mut *self.symbols,
        };
        for i in 0..self.timers.len() {
            let (probe, every, last) = self.timers[i];
            if now < last + every {
                continue;
            }
            self.timers[i].2 = last + every;
            let from = self.printed.len();
            let ran = self.interp.run(&probe, &mut globals, &mut self.printed);
            log_user(self.export.as_deref(), &probe, &self.printed[from..]);
            match ran {
                Ok(o) => exit |= o.exit,
                Err(e) => {
                    self.failed.get_or_insert(e.render(self.sm));
                    exit = true;
                }
            }
        }
        self.hand_printed();
        exit
    }

    /// What the user-space probes printed, to the consumer.
    fn hand_printed(&mut self) {
        if !self.printed.is_empty() {
            self.consumer.printed(&self.printed, &mut self.out);
            self.printed.clear();
        }
    }

    /// Decodes the records held and hands them to the consumer, each probe hit's
    /// together; true if the trace must end.
    fn records(&mut self) -> bool {
        let mut held = std::mem::take(&mut self.held);
        let mut stop = false;
        held.drain(|rec| stop |= self.record(rec));
        self.held = held;
        stop
    }

    /// One record; true if the trace must end. After an error, as stap, nothing more
    /// is printed: the run is ending.
    fn record(&mut self, rec: &[u8]) -> bool {
        if self.failed.is_some() {
            return true;
        }
        let decoded = match self.decoder.decode(rec) {
            Ok(r) => r,
            Err(e) => {
                self.failed = Some(format!("bad event record: {e}"));
                return true;
            }
        };
        match decoded {
            Record::Exit => true,
            Record::Error(msg) => {
                self.failed = Some(msg.to_string());
                true
            }
            r => {
                // What the record prints, as a log record (--otlp), in text
                // whatever the output's format.
                if let Some(x) = self.export.as_deref_mut()
                    && let Some(logs) = &x.logs
                {
                    x.line.clear();
                    if x.text.write(&r, self.symbols.stacks(), &mut x.line).is_ok()
                        && !x.line.is_empty()
                    {
                        logs.log_record(rec, &x.line);
                    }
                }
                let mut cx = Cx {
                    symbols: self.symbols,
                    out: &mut self.out,
                };
                match self.consumer.record(&r, &mut cx) {
                    Ok(stop) => stop,
                    Err(e) => {
                        self.failed = Some(format!("{e:#}"));
                        true
                    }
                }
            }
        }
    }

    /// Writes what the consumer wrote to the sink.
    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        if let Err(e) = self
            .sink
            .write_all(&self.out)
            .and_then(|_| self.sink.flush())
        {
            self.write_error.get_or_insert(e);
        }
        self.out.clear();
    }

    /// The records left in the ring buffer once the probes are gone.
    pub(super) fn drain(&mut self, spec: &ScriptSpec, armed: &Armed) -> Result<()> {
        if let Some(r) = ring_buffer(spec, &armed.maps)?.as_mut() {
            r.drain(|rec| self.held.push(rec))?;
        }
        self.records();
        self.flush();
        if let Some(msg) = &self.failed {
            eprintln!("ERROR: {msg}");
        }
        Ok(())
    }

    /// The `end` probes.
    pub(super) fn end_probes(&mut self, spec: &ScriptSpec) {
        session::phase("end");
        self.user_probes(spec, UserProbeKind::End);
    }

    /// The consumer's last output, on the sink.
    pub(super) fn finish(
        &mut self,
        spec: &ScriptSpec,
        info: &lang::TypeInfo,
        parsed: &Parsed,
        tally: Tally,
        ended: End,
    ) -> Result<()> {
        let globals = spec
            .globals
            .iter()
            .filter(|g| {
                info.global(&g.name)
                    .is_none_or(|v| Some(v.span.file) != parsed.tapset)
            })
            .collect();
        let mut end = Ending {
            symbols: self.symbols,
            spec,
            maps: self.maps,
            globals,
            tally,
            out: &mut self.out,
            end: ended,
        };
        let r = self.consumer.finish(&mut end);
        self.flush();
        r
    }
}

impl Handler for Trace<'_, '_, '_, '_> {
    fn record(&mut self, rec: &[u8]) -> bool {
        self.held.push(rec);
        false
    }

    fn tick(&mut self, now: Instant) -> Result<bool> {
        self.symbols.learn_bias();
        let mut stop = false;
        if !self.held.is_empty() {
            stop |= self.records();
        }
        stop |= self.timers(now);
        let mut cx = Cx {
            symbols: self.symbols,
            out: &mut self.out,
        };
        self.consumer.tick(now, &mut cx);
        self.flush();
        if self.export.as_deref_mut().is_some_and(|x| x.due(now)) {
            self.export_now();
        }
        Ok(stop || self.write_error.is_some())
    }

    fn tick_every(&self) -> Duration {
        self.consumer.tick_every()
    }
}

impl Trace<'_, '_, '_, '_> {
    /// A script's globals or a tool's counts, into the exporters' registry.
    fn export_now(&mut self) {
        let Some(x) = self.export.as_deref_mut() else {
            return;
        };
        x.collect_globals(&mut KernelGlobals {
            maps: self.maps,
            stacks: &mut *self.symbols,
        });
        let mut from = Reading {
            symbols: self.symbols,
            spec: self.spec,
            maps: self.maps,
        };
        self.consumer.export(&x.tool, &mut from);
    }

    /// The values at the end (after the `end` probes), pushed within the bound for
    /// how the trace ended.
    pub(super) fn export_last(&mut self, end: End) {
        self.export_now();
        if let Some(x) = self.export.take() {
            x.tool.exporter.finish(Some(end));
        }
    }
}

/// What a user-space probe printed in one run, as a log record (--otlp).
fn log_user(export: Option<&crate::metrics::Export>, p: &UserProbe, text: &[u8]) {
    if let Some(logs) = export.and_then(|x| x.logs.as_ref())
        && !text.is_empty()
    {
        logs.log_user(p.item, text);
    }
}

/// The ring buffer the programs send records through, if any does.
fn ring_buffer(spec: &ScriptSpec, maps: &[sys::Map]) -> Result<Option<sys::RingBuf>> {
    match spec.ringbuf {
        Some(id) => Ok(Some(sys::RingBuf::new(
            maps.get(id.0 as usize).context("ring buffer map")?,
        )?)),
        None => Ok(None),
    }
}
