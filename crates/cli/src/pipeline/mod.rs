//! The one pipeline every trace of a script goes through, the user's script
//! (`gotap SCRIPT.stp`, `-e`) and the tools' (`stackgrow`, `gcstat`, `goroutines`)
//! alike. [`run`] reads as its steps:
//!
//! ```text
//! Plan ─parse─▶ script + tapset ─check─▶ TypeInfo (+ the binary it probes, if any)
//!   ─compile─▶ codegen::Compiled ─load─▶ Armed ─attach─▶ probes placed
//!   ─trace─▶ begin probes, the -c command released, records decoded and handed to
//!            the Consumer, timer probes, until exit(), the command's end or a signal
//!   ─detach─▶ ─drain─▶ the records left ─end probes─▶ ─finish─▶ the consumer's last
//!   output ─report─▶ what was lost or cut, on stderr ─export─▶ the last values pushed
//! ```
//!
//! With `--prometheus` or `--otlp` (`metrics.rs`), every interval of the trace a
//! script's globals, or a tool's counts ([`Consumer::export`]), are read into the
//! exporters, and with `--otlp` each record's text is a log record.
//!
//! What differs between a script and a tool is the [`Plan`] (where the script and
//! its binary come from, what `-d` prints) and the [`Consumer`]: the script's writes
//! records as text or JSON, a tool's keeps its tables from the records' values. A
//! consumer is handed decoded records ([`Record`]: an event and its typed values,
//! stacks as ids), never printed text.
//!
//! The script is checked first with no binary (`nobinary.rs`) when the plan names
//! none, so that its own errors come before anything about a binary. A script whose
//! probes are all `begin`, `end` and `timer.*` needs none: it runs in user space,
//! with its globals in maps of the kernel (the same storage as beside kernel probes)
//! or, without globals, nothing in the kernel at all; `-c CMD` still starts the
//! command and waits for it.

mod front;
mod trace;

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bpf::script::{GlobalSpec, ScriptSpec, counter};
use runtime::events::{Decoder, Record};
use runtime::format::Cuts;

use crate::args::{Stage, Target};
use crate::binary::Binary;
use crate::maps::KernelGlobals;
use crate::metrics::{Export, ToolExport};
use crate::session::{self, Armed, Traced};
use crate::symbols::Symbols;
use front::{Parsed, binary, check, compile, load, parse};
use trace::{Trace, interpreter};

/// What to trace, and how.
pub struct Plan {
    /// The script's name in messages: its file, `<input>`, `<stackgrow>`.
    pub name: String,
    pub text: String,
    /// `$1`, `@1`, …: the script's own arguments.
    pub args: Vec<String>,
    pub limits: lang::Limits,
    pub target: Target,
    /// A tool's trace: the tool and the binary it was given. A user's script finds
    /// its binary in its probe points (or `-c`/`-x`).
    pub tool: Option<ToolPlan>,
    /// `-d`: the stages to print; the run stops after the last.
    pub dumps: Vec<Stage>,
    pub verbose: u8,
    /// The files the run writes besides the output (`--folded`, `--svg`), by flag:
    /// checked before anything is attached.
    pub files: Vec<(&'static str, PathBuf)>,
    /// `-o FILE`.
    pub output: Option<PathBuf>,
    /// `--prometheus`, `--otlp`: what the trace measures, exported while it runs.
    pub export: crate::metrics::ExportFlags,
}

/// What a tool's plan adds.
pub struct ToolPlan {
    /// `stackgrow`, … (in messages).
    pub name: &'static str,
    /// The binary named on the command line, if any (else the `-c`/`-x` target's).
    pub binary: Option<PathBuf>,
}

/// What a trace does with what its probes send.
pub trait Consumer {
    /// One decoded record: a `printf`'s values or a backtrace's frames (`exit()`
    /// and errors are the pipeline's). `Ok(true)` ends the trace; an error ends it
    /// too, said as the probes' errors are, and gotap exits 1.
    fn record(&mut self, rec: &Record<'_>, cx: &mut Cx<'_, '_, '_>) -> Result<bool>;
    /// What a user-space probe printed.
    fn printed(&mut self, text: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(text);
    }
    /// Called between waits.
    fn tick(&mut self, _now: Instant, _cx: &mut Cx<'_, '_, '_>) {}
    /// How long the trace may wait for records between ticks.
    fn tick_every(&self) -> Duration {
        Duration::from_millis(10)
    }
    /// Once the probes are placed.
    fn attached(&mut self, _probes: usize, _out: &mut Vec<u8>) {}
    /// Once the probes are placed and a `-c` command released, before the first
    /// record: what the process already holds can be read now without missing a
    /// change (a tool's trace only).
    fn started(&mut self, _cx: &mut Cx<'_, '_, '_>) {}
    /// The last output, after the `end` probes; the globals are still readable.
    fn finish(&mut self, end: &mut Ending<'_, '_, '_>) -> Result<()>;
    /// What its printing cut, for the report.
    fn cuts(&self) -> Cuts {
        Cuts::default()
    }
    /// With `--prometheus` or `--otlp`: a tool's counts so far, into `to` (every
    /// interval while the trace runs, and once more after `finish`). A script's
    /// globals are the pipeline's to export.
    fn export(&mut self, _to: &ToolExport, _from: &mut Reading<'_, '_, '_>) {}
}

/// What a consumer reads its counts from while the trace runs.
pub struct Reading<'x, 'a, 'd> {
    pub symbols: &'x mut Symbols<'a, 'd>,
    pub spec: &'x ScriptSpec,
    pub maps: &'x [sys::Map],
}

impl Reading<'_, '_, '_> {
    /// The script's globals, for reading.
    pub fn storage(&mut self) -> KernelGlobals<'_> {
        KernelGlobals {
            maps: self.maps,
            stacks: self.symbols,
        }
    }
}

/// What a consumer is handed with a record or a tick.
pub struct Cx<'x, 'a, 'd> {
    pub symbols: &'x mut Symbols<'a, 'd>,
    pub out: &'x mut Vec<u8>,
}

/// What a consumer is handed at the end.
pub struct Ending<'x, 'a, 'd> {
    pub symbols: &'x mut Symbols<'a, 'd>,
    pub spec: &'x ScriptSpec,
    pub maps: &'x [sys::Map],
    /// The globals of the script itself (not the tapset's).
    pub globals: Vec<&'x GlobalSpec>,
    pub tally: Tally,
    pub out: &'x mut Vec<u8>,
    /// How the trace ended.
    pub end: session::End,
}

impl Ending<'_, '_, '_> {
    /// The script's globals, for reading.
    pub fn storage(&mut self) -> KernelGlobals<'_> {
        KernelGlobals {
            maps: self.maps,
            stacks: self.symbols,
        }
    }
}

/// What the probes could not do, from the script's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub lost_events: u64,
    pub read_faults: u64,
    pub map_full: u64,
    pub entry_missed: u64,
    /// What the user-space probes' printing cut.
    pub user_cuts: Cuts,
}

/// Traces as `plan` says, handing what the probes send to `consumer`; the exit
/// status gotap passes on.
pub fn run(plan: &Plan, consumer: &mut dyn Consumer) -> Result<i32> {
    let signals = sys::Signals::new()?;
    check_files(plan)?;
    let mut passes = Passes::new(plan.verbose);
    let parsed = parse(plan)?;
    if plan.stops_after(Stage::Ast) {
        return Ok(0);
    }
    let (bin, alone) = binary(plan, &parsed)?;
    let target = match &bin {
        Some(b) => Some(
            codegen::GoTarget::new(b.go()?, b.path.display().to_string()).releasing(b.releaser()),
        ),
        None => None,
    };
    let info = check(plan, &parsed, target.as_ref(), alone)?;
    if plan.stops_after(Stage::Types) {
        return Ok(0);
    }
    passes.done("parsed the script, resolved its probe points and checked its types");
    let mut traced = Traced::start(&plan.target)?;
    let compiled = compile(plan, &parsed, &info, target.as_ref(), &traced)?;
    if let Some(s) = compiled.spec.samples.first()
        && traced.pid().is_none()
    {
        bail!(
            "{}: a sampling probe samples one process: name it with -x PID or -c CMD",
            s.probe
        );
    }
    passes.done("compiled the probes to eBPF");
    if plan.stops_after(Stage::Bpf) {
        return Ok(0);
    }
    let mut armed = load(plan, &compiled, &parsed.sm)?;
    if plan.stops_after(Stage::Verifier) {
        return Ok(0);
    }
    passes.done("loaded the programs (the kernel's verifier)");
    // Before anything is attached: a port in use or a bad URL ends the run here.
    let script = plan.tool.is_none().then_some((&parsed.script, &info));
    let mut export = Export::start(&plan.export, bin.as_ref(), traced.pid(), script, &compiled)?;
    attach(&mut armed, bin.as_ref(), &traced)?;
    passes.done(&format!(
        "{} probes attached through {} links",
        armed.probe_count(),
        armed.link_count()
    ));
    let spec = &compiled.spec;
    let go = target.as_ref().map(codegen::GoTarget::binary);
    let mut symbols = Symbols::new(bin.as_ref().zip(go), spec, &armed.maps, traced.pid());
    let mut interp = interpreter(&parsed, &info, spec, &traced, go, &symbols);
    let mut t = Trace {
        decoder: Decoder::new(spec)?,
        held: runtime::regroup::Regroup::new(),
        consumer,
        symbols: &mut symbols,
        interp: &mut interp,
        timers: Vec::new(),
        maps: &armed.maps,
        sm: &parsed.sm,
        out: Vec::with_capacity(4096),
        printed: Vec::new(),
        sink: session::output(plan.output.as_deref())?,
        failed: None,
        write_error: None,
        early_bias: plan.tool.is_some(),
        spec,
        export: export.as_mut(),
    };
    t.consumer.attached(armed.probe_count(), &mut t.out);
    let end = t.trace(spec, &signals, &mut traced)?;
    let code = traced.finish(end)?;
    let hits = || {
        spec.counters
            .and_then(|id| armed.maps.get(id.0 as usize))
            .map_or(0, |m| session::per_cpu_sum(m, counter::HITS).unwrap_or(0))
    };
    let late = detach(&armed, end, &traced, plan.verbose, &hits);
    t.drain(spec, &armed)?;
    t.end_probes(spec);
    let tally = Tally::read(spec, &armed, t.interp.cuts())?;
    t.finish(spec, &info, &parsed, tally, end)?;
    report(&tally, t.consumer.cuts(), &info.limits);
    late.say(hits());
    t.export_last(end);
    if let Some(e) = t.write_error.take() {
        return Err(e).context(match &plan.output {
            Some(p) => format!("-o {}", p.display()),
            None => "writing the output".to_string(),
        });
    }
    let failed = t.failed.is_some();
    // What is left is memory, which the kernel takes back at exit at no cost:
    // freeing the structures of 10,000 probe statements one by one took 60–110 ms
    // after everything was printed, time a user waiting for the end of gotap sees.
    std::mem::forget(t);
    std::mem::forget(interp);
    std::mem::forget(symbols);
    std::mem::forget(compiled);
    std::mem::forget(target);
    std::mem::forget(info);
    std::mem::forget(parsed);
    Ok(if failed { 1 } else { code })
}

impl Plan {
    fn shows(&self, stage: Stage) -> bool {
        self.dumps.contains(&stage)
    }

    /// Whether the run ends after `stage`: it is the last `-d` asked for.
    fn stops_after(&self, stage: Stage) -> bool {
        self.dumps.iter().max() == Some(&stage)
    }
}

/// Every file the run will write is checked before anything is attached, so that a
/// trace does not end in an error about it.
fn check_files(plan: &Plan) -> Result<()> {
    if let Some(p) = &plan.output {
        session::check_output("-o", p)?;
    }
    for (flag, p) in &plan.files {
        session::check_output(flag, p)?;
    }
    Ok(())
}

/// With `-v`, the time of each pass, as `stap -v` reports its passes.
struct Passes {
    verbose: u8,
    since: Instant,
}

impl Passes {
    fn new(verbose: u8) -> Passes {
        Passes {
            verbose,
            since: Instant::now(),
        }
    }

    fn done(&mut self, what: &str) {
        if self.verbose > 0 {
            eprintln!(
                "gotap: {what} in {:.1} ms",
                self.since.elapsed().as_secs_f64() * 1e3
            );
        }
        self.since = Instant::now();
    }
}

/// The probes placed in the binary, for the process `traced` follows. With no probe
/// to place, the trace begins here all the same: a signal from now on (during the
/// `begin` probes too) ends it in order, `end` probes and all.
fn attach(armed: &mut Armed, bin: Option<&Binary>, traced: &Traced) -> Result<()> {
    session::phase("attach");
    if let Some(bin) = bin {
        armed.attach_script(bin, traced.scope())?;
    }
    sys::trace_begins();
    Ok(())
}

/// Every probe removed (`-v` times it: releasing links waits for the kernel), as
/// [`Armed::detach_after`] does after the trace's `end`.
fn detach(
    armed: &Armed,
    end: session::End,
    traced: &Traced,
    verbose: u8,
    hits: &dyn Fn() -> u64,
) -> session::Late {
    session::phase("detach");
    let detaching = Instant::now();
    let late = armed.detach_after(end, traced, hits);
    if verbose > 0 {
        eprintln!(
            "gotap: detached in {:.1} ms",
            detaching.elapsed().as_secs_f64() * 1e3
        );
    }
    late
}

impl Tally {
    /// The script's counters, summed over the CPUs.
    fn read(spec: &ScriptSpec, armed: &Armed, user_cuts: Cuts) -> Result<Tally> {
        let mut t = Tally {
            user_cuts,
            ..Tally::default()
        };
        let Some(map) = spec.counters.and_then(|id| armed.maps.get(id.0 as usize)) else {
            return Ok(t);
        };
        let read = |i: u32| session::per_cpu_sum(map, i);
        t.lost_events = read(counter::LOST_EVENTS)?;
        t.read_faults = read(counter::READ_FAULTS)?;
        t.map_full = read(counter::MAP_FULL)?;
        t.entry_missed = read(counter::ENTRY_MISSED)?;
        Ok(t)
    }
}

/// Lost events, failed reads, dropped updates and cut output are said, never
/// silently dropped; cuts with how to raise the limit.
fn report(t: &Tally, printed: Cuts, limits: &lang::Limits) {
    let counted = [
        (
            t.entry_missed,
            "returns found no @entry values (read as 0): their calls began before tracing, or more calls were pending than gotap keeps",
        ),
        (t.lost_events, "events lost: the ring buffer was full"),
        (
            t.read_faults,
            "reads of the target's memory failed (the values read as 0 or \"\")",
        ),
        (t.map_full, "updates of a full array were dropped"),
    ];
    for (n, what) in counted.into_iter().filter(|(n, _)| *n > 0) {
        eprintln!("WARNING: {n} {what}");
    }
    let mut cuts = printed;
    cuts.add(t.user_cuts);
    if cuts.strings > 0 {
        eprintln!(
            "WARNING: {} printed strings reached the {}-byte string limit and may have been cut (marked {}); -D MAXSTRINGLEN=N raises it",
            cuts.strings,
            limits.string_bytes(),
            lang::limits::CUT_MARK
        );
    }
    if cuts.lines > 0 {
        eprintln!(
            "WARNING: {} printed lines were cut at {} bytes (marked {}); -D MAXPRINTFLEN=N raises the limit",
            cuts.lines,
            limits.max_printf,
            lang::limits::CUT_MARK
        );
    }
    if cuts.values > 0 {
        eprintln!(
            "WARNING: {} parts of pretty-printed values were left out (marked {}) by the limits of {} levels, {} elements and {} bytes a value; -D MAXPRETTYDEPTH=N, MAXPRETTYITEMS=N, MAXPRETTYBYTES=N raise them",
            cuts.values,
            lang::limits::CUT_MARK,
            limits.pretty_depth,
            limits.pretty_items,
            limits.pretty_bytes
        );
    }
}
