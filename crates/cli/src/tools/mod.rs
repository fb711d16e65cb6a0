//! The ready tools built on the Go runtime tapset: `stackgrow`, `gcstat` and
//! `goroutines`. Each one is a script in the probe language (the tapset's aliases plus
//! probes that `printf` one line of fields per event and, for some, a backtrace),
//! compiled and attached as any script, and a consumer in Rust that reads those lines
//! and frames, keeps the tool's tables, and prints them live and at the end. The
//! scripts are printed by `-v`, so what a tool does can be copied into a script.

mod gcstat;
mod goroutines;
mod stackgrow;

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::args::Target;
use crate::binary::Binary;
use crate::session::{self, Armed, Handler, Traced};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    StackGrow,
    GcStat,
    Goroutines,
}

/// A tool's command line.
#[derive(Debug)]
pub struct ToolArgs {
    pub tool: Tool,
    pub target: Target,
    pub binary: Option<PathBuf>,
    /// `--every N`: print (and take the backtrace of) every Nth event.
    pub every: u64,
    /// `--top K`: rows of each table at the end.
    pub top: usize,
    pub folded: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    pub json: bool,
    /// `-i SECS`: how often `goroutines` prints the count.
    pub interval: u64,
    /// `--time`: `stackgrow` also times the copies, through the return of
    /// `copystack` (a single-stepped probe: several times the cost of the growth
    /// probe, so it is asked for).
    pub time: bool,
    /// `-o FILE`: where the tool's output goes instead of stdout.
    pub output: Option<PathBuf>,
    pub verbose: u8,
}

pub fn run(a: &ToolArgs) -> Result<i32> {
    match a.tool {
        Tool::StackGrow => stackgrow::run(a),
        Tool::GcStat => gcstat::run(a),
        Tool::Goroutines => goroutines::run(a),
    }
}

/// Return addresses to names, with the PIE load bias learnt from the traced process.
pub struct Symbols<'a, 'd> {
    pub sym: runtime::symbolize::Symbolizer<'a, 'd>,
    go: &'a gobin::GoBinary<'d>,
    bin: &'d Binary,
    pid: Option<u32>,
    bias_done: bool,
}

impl Symbols<'_, '_> {
    /// Learnt as early as can be: a short-lived command may be gone (its maps empty)
    /// by the time its records are read.
    fn learn_bias(&mut self) {
        if self.bias_done || !self.go.is_pie() {
            return;
        }
        // The mapping at file offset 0 holds the first segment, linked at its vaddr.
        let first_vaddr = self
            .go
            .elf()
            .segments()
            .iter()
            .find(|s| s.offset == 0)
            .map_or(0, |s| s.vaddr);
        // The mapping is found by inode: its name is the path as the process sees
        // it, which differs from ours in another mount namespace.
        if let Some(pid) = self.pid
            && let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            && let Some(b) = runtime::symbolize::bias_from_maps(
                &private_maps(&maps),
                &self.bin.maps_name(&maps),
                first_vaddr,
            )
        {
            self.sym.set_bias(b);
            self.bias_done = true;
        }
    }

    /// The name of the function holding return address `pc` (its innermost inlined
    /// call), or the address.
    pub fn function(&mut self, pc: u64, exact: bool) -> String {
        self.learn_bias();
        match self.sym.frames(pc, exact).first() {
            Some(f) => f.function.clone(),
            None => format!("0x{pc:x}"),
        }
    }

    /// `function (file:line)` at `pc`, innermost inlined call first.
    pub fn place(&mut self, pc: u64, exact: bool) -> String {
        self.learn_bias();
        match self.sym.frames(pc, exact).first() {
            Some(f) => format!("{} ({}:{})", f.function, f.file, f.line),
            None => format!("0x{pc:x}"),
        }
    }

    /// Every function at `pc`, outermost last (inlined calls first).
    pub fn functions(&mut self, pc: u64, exact: bool) -> Vec<String> {
        self.learn_bias();
        let fr = self.sym.frames(pc, exact);
        if fr.is_empty() {
            return vec![format!("0x{pc:x}")];
        }
        fr.iter().map(|f| f.function.clone()).collect()
    }

    /// SystemTap's frame lines for `pc`.
    pub fn write(&mut self, out: &mut Vec<u8>, pc: u64, exact: bool) {
        self.learn_bias();
        self.sym.write(out, pc, exact, true);
    }
}

/// The private mappings of a maps file: a `-c` command still held before its exec
/// shares gotap's own (shared, read-only) mapping of the binary, which is not where
/// the program is loaded.
fn private_maps(maps: &str) -> String {
    maps.lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.ends_with('p'))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// What a tool does with the events of its script.
pub trait Consumer {
    /// One line its probes printed, split at spaces.
    fn line(&mut self, fields: &[&str], sym: &mut Symbols, out: &mut Vec<u8>);
    /// The frames of a backtrace its probes took.
    fn backtrace(&mut self, _frames: &[u64], _sym: &mut Symbols, _out: &mut Vec<u8>) {}
    /// Called between waits.
    fn tick(&mut self, _now: Instant, _out: &mut Vec<u8>) {}
    fn tick_every(&self) -> Duration {
        Duration::from_millis(50)
    }
    /// The report at the end of the trace.
    fn finish(&mut self, sym: &mut Symbols, out: &mut Vec<u8>) -> Result<()>;
}

/// Compiles `script` (which names the tapset's probes) against the tool's binary,
/// traces until the command ends, the process goes or a signal comes, feeding
/// `consumer`, and returns the command's exit status.
pub fn trace(a: &ToolArgs, name: &str, script: &str, consumer: &mut dyn Consumer) -> Result<i32> {
    let signals = sys::Signals::new()?;
    for (flag, p) in [
        ("-o", &a.output),
        ("--folded", &a.folded),
        ("--svg", &a.svg),
    ] {
        if let Some(p) = p {
            session::check_output(flag, p)?;
        }
    }
    let path = match (&a.binary, session::target_binary(&a.target)?) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => p,
        (None, None) => bail!("{name}: name a binary, -x PID or -c CMD"),
    };
    let bin = Binary::open(&path)?;
    let path = bin.path.clone();
    let go = bin.go()?;
    let bound = (a.target == Target::Any).then(|| path.display().to_string());
    let mut sm = lang::SourceMap::new();
    let file = sm.add(format!("<{name}>"), script.to_string());
    session::phase("parse");
    let (mut parsed, diags) = lang::parse(file, script, &lang::ParseOptions::default());
    if lang::has_errors(&diags) {
        bail!("{}", sm.render_all(&diags).trim_end());
    }
    let tapset = crate::tapset::add_if_used(&mut sm, &mut parsed, bound.as_deref())?;
    if a.verbose > 0 {
        eprintln!(
            "{name}: the script ({} and the Go tapset, `gotap --tapset`):\n{script}",
            path.display()
        );
    }
    let target =
        codegen::GoTarget::new(bin.go()?, path.display().to_string()).releasing(bin.releaser());
    session::phase("check");
    let (info, mut diags) = lang::check(&parsed, &target);
    crate::tapset::keep_user_warnings(&mut diags, tapset);
    if lang::has_errors(&diags) {
        bail!(
            "{name} cannot trace {}:\n{}",
            path.display(),
            sm.render_all(&diags).trim_end()
        );
    }
    let mut traced = Traced::start(&a.target)?;
    session::phase("compile");
    let compiled = session::compile(&parsed, &info, &target, &sm, &traced)?;
    let spec = &compiled.spec;
    session::phase("load");
    let mut armed = Armed::load_script(spec, false)?;
    armed.init_scalars(spec)?;
    let t0 = Instant::now();
    session::phase("attach");
    armed.attach_script(&bin, traced.scope())?;
    if a.verbose > 0 {
        eprintln!(
            "{name}: {} probes attached in {:.1} ms",
            armed.probe_count(),
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    let sink = session::output(a.output.as_deref())?;
    if let Traced::Child(c) = &mut traced {
        c.release()?;
    }
    let mut ring = match spec.ringbuf {
        Some(id) => Some(sys::RingBuf::new(
            armed.maps.get(id.0 as usize).context("ring buffer map")?,
        )?),
        None => None,
    };
    let mut feed = Feed {
        decoder: runtime::events::Decoder::new(spec)?,
        buf: Vec::with_capacity(4096),
        out: Vec::new(),
        sym: Symbols {
            sym: runtime::symbolize::Symbolizer::new(&go, path.display().to_string(), 0),
            go: &go,
            bin: &bin,
            pid: traced.pid(),
            bias_done: false,
        },
        consumer,
        sink,
        write_error: None,
        error: None,
    };
    // A held command execs once released: wait (briefly) for its mapping.
    for _ in 0..2000 {
        feed.sym.learn_bias();
        if feed.sym.bias_done || !go.is_pie() || feed.sym.pid.is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let end = session::run(&signals, ring.as_mut(), &mut traced, &mut feed)?;
    let code = traced.finish(end)?;
    session::phase("detach");
    armed.detach();
    if let Some(r) = ring.as_mut() {
        r.drain(|rec| {
            feed.record(rec);
        })?;
    }
    feed.flush();
    if let Some(e) = feed.error.take() {
        eprintln!("ERROR: {e}");
    }
    // The script's `end` probes read what the kernel aggregated, in user space, and
    // print it as lines for the consumer.
    session::phase("end");
    let ctx = runtime::interp::Context {
        pid: i64::from(std::process::id()),
        ..runtime::interp::Context::default()
    };
    let mut interp = runtime::interp::Interp::new(
        &parsed,
        &info,
        &spec.globals,
        ctx,
        runtime::interp::Limits::default(),
    );
    let mut text = Vec::new();
    {
        let mut globals = crate::maps::KernelGlobals { maps: &armed.maps };
        for p in spec
            .user_probes
            .iter()
            .filter(|p| p.when == bpf::script::UserProbeKind::End)
        {
            if let Err(e) = interp.run(p, &mut globals, &mut text) {
                eprintln!("ERROR: {}", e.render(&sm));
            }
        }
    }
    feed.buf = text;
    feed.buf.push(b'\n');
    feed.lines();
    feed.consumer.finish(&mut feed.sym, &mut feed.out)?;
    feed.flush();
    if let Some(e) = feed.write_error.take() {
        return Err(e).context(match &a.output {
            Some(p) => format!("-o {}", p.display()),
            None => "writing the output".to_string(),
        });
    }
    report_lost(spec, &armed);
    Ok(code)
}

/// Events the ring buffer had no room for make the tool's counts short: say so.
fn report_lost(spec: &bpf::script::ScriptSpec, armed: &Armed) {
    let Some(id) = spec.counters else { return };
    let Some(map) = armed.maps.get(id.0 as usize) else {
        return;
    };
    let read = |i: u32| session::per_cpu_sum(map, i).unwrap_or(0);
    let lost = read(bpf::script::counter::LOST_EVENTS);
    if lost > 0 {
        eprintln!(
            "WARNING: {lost} events lost: the ring buffer was full; the counts above are short"
        );
    }
    let faults = read(bpf::script::counter::READ_FAULTS);
    if faults > 0 {
        eprintln!("WARNING: {faults} reads of the target's memory failed");
    }
}

/// The session's handler: records to lines and frames for the consumer.
struct Feed<'c, 'a, 'd> {
    decoder: runtime::events::Decoder,
    buf: Vec<u8>,
    out: Vec<u8>,
    sym: Symbols<'a, 'd>,
    consumer: &'c mut dyn Consumer,
    /// Stdout or the `-o` file.
    sink: Box<dyn Write>,
    /// The first failure to write to `sink`; the trace goes on to its end.
    write_error: Option<std::io::Error>,
    error: Option<String>,
}

impl Feed<'_, '_, '_> {
    fn record(&mut self, rec: &[u8]) -> bool {
        match self.decoder.handle(rec, &mut self.buf) {
            Ok(runtime::events::Action::Continue) => {
                self.lines();
                false
            }
            Ok(runtime::events::Action::Backtrace {
                frames,
                first_is_return,
                bias,
                ..
            }) => {
                // A backtrace carries the load bias the kernel saw, which holds even
                // when the process is gone before its maps were read.
                if self.sym.go.is_pie() {
                    self.sym.sym.set_bias(bias);
                    self.sym.bias_done = true;
                }
                // Frames after the switch from the system stack that are only maybe
                // return addresses are kept or dropped as the pclntab says.
                let pcs: Vec<u64> = self
                    .sym
                    .sym
                    .logical(frames, first_is_return)
                    .iter()
                    .map(|p| p.0)
                    .collect();
                self.consumer.backtrace(&pcs, &mut self.sym, &mut self.out);
                false
            }
            Ok(runtime::events::Action::Exit) => true,
            Ok(runtime::events::Action::Error(msg)) => {
                self.error.get_or_insert_with(|| msg.to_string());
                false
            }
            Err(e) => {
                self.error
                    .get_or_insert_with(|| format!("bad event record: {e}"));
                false
            }
        }
    }

    /// Hands the complete lines in `buf` to the consumer.
    fn lines(&mut self) {
        let Some(end) = self.buf.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            self.consumer.line(&fields, &mut self.sym, &mut self.out);
        }
        self.buf.drain(..=end);
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            if let Err(e) = self
                .sink
                .write_all(&self.out)
                .and_then(|_| self.sink.flush())
            {
                self.write_error.get_or_insert(e);
            }
            self.out.clear();
        }
    }
}

impl Handler for Feed<'_, '_, '_> {
    fn record(&mut self, rec: &[u8]) -> bool {
        self.sym.learn_bias();
        let stop = self.record(rec);
        if self.out.len() > 1 << 16 {
            self.flush();
        }
        stop
    }

    fn tick(&mut self, now: Instant) -> Result<bool> {
        self.sym.learn_bias();
        self.consumer.tick(now, &mut self.out);
        self.flush();
        Ok(false)
    }

    fn tick_every(&self) -> Duration {
        self.consumer.tick_every()
    }
}

/// A field of a tool's line as a number (the tool's own scripts print them).
pub fn num(fields: &[&str], i: usize) -> i64 {
    fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// A log2 histogram of `values` in the form `@hist_log` prints.
pub fn histogram(values: &[i64], out: &mut Vec<u8>) {
    let hist = runtime::stats::Hist::Log;
    let mut stat = runtime::stats::Stat::new(&hist);
    for v in values {
        stat.add(&hist, *v);
    }
    if runtime::stats::write_histogram(out, &hist, &stat).is_err() {
        out.extend_from_slice(b"(no values)\n");
    }
}

/// Text as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}
