//! `gotap SCRIPT.stp` and `gotap -e 'SCRIPT'`: the whole life of a script. Parse and
//! check it against the traced binary, compile its process probes to eBPF, load and
//! attach them, run `begin` probes, release the `-c` command, format the events the
//! probes send, run timer probes, and at the end (`exit()`, the command's end, or a
//! signal) detach, drain, run `end` probes and print the globals the script wrote but
//! never read, as stap does.
//!
//! The script is checked first with no binary (`nobinary.rs`), so that its own errors
//! come before anything about a binary. A script whose probes are all `begin`, `end`
//! and `timer.*` needs none: it runs in user space, with its globals in maps of the
//! kernel (the same storage as beside kernel probes) or, without globals, nothing in
//! the kernel at all; `-c CMD` still starts the command and waits for it.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bpf::script::{ScriptSpec, UserProbe, UserProbeKind, counter};
use lang::ProbeKind;

use crate::args::{ScriptArgs, ScriptSource, Target};
use crate::binary::Binary;
use crate::maps::KernelGlobals;
use crate::nobinary::{NEEDS_A_BINARY, NoBinary};
use crate::session::{self, Armed, End, Handler, Traced};

pub fn run(a: &ScriptArgs) -> Result<i32> {
    let started = Instant::now();
    let signals = sys::Signals::new()?;
    check_outputs(a)?;
    let (name, text) = match &a.source {
        Some(ScriptSource::File(p)) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?,
        ),
        Some(ScriptSource::Inline(s)) => ("<input>".to_string(), s.clone()),
        None => bail!("no script given"),
    };
    // -d STAGE prints a stage; the run stops after the last stage asked for (stap's -p).
    let dumps: Vec<&str> = a.dump.iter().map(String::as_str).collect();
    let mut last_stage = None;
    for d in &dumps {
        match DUMP_STAGES.iter().position(|s| s == d) {
            Some(i) => last_stage = last_stage.max(Some(i)),
            None => bail!("-d {d}: the stages are {}", DUMP_STAGES.join(", ")),
        }
    }
    let stop_after = |stage: &str| last_stage.map(|i| DUMP_STAGES[i]) == Some(stage);
    let mut limits = lang::Limits::default();
    for d in &a.defines {
        limits.define(d).map_err(anyhow::Error::msg)?;
    }
    session::phase("parse");
    let mut sm = lang::SourceMap::new();
    let file = sm.add(&name, &text);
    let (mut script, diags) = lang::parse(
        file,
        &text,
        &lang::ParseOptions {
            args: Some(a.args.clone()),
        },
    );
    if lang::has_errors(&diags) {
        bail!("{}", sm.render_all(&diags).trim_end());
    }
    let tapset = crate::tapset::add_if_used(&mut sm, &mut script, None)?;
    if dumps.contains(&"ast") {
        eprint!("{}", lang::print_script(&script));
    }
    if stop_after("ast") {
        return Ok(0);
    }

    session::phase("check");
    let (bin, info, diags) = check_without_binary(&script, &sm, &a.target, tapset, limits)?;
    let target = match &bin {
        Some(b) => Some(
            codegen::GoTarget::new(b.go()?, b.path.display().to_string()).releasing(b.releaser()),
        ),
        None => None,
    };
    // With a binary, the script is checked again against it: every answer the first
    // check could not have is there, and so are the script's own errors.
    let (info, mut diags) = match &target {
        Some(t) => {
            let (info, mut diags) = lang::check_with(&script, t, limits);
            crate::tapset::keep_user_warnings(&mut diags, tapset);
            (info, diags)
        }
        None => (info, diags),
    };
    // In the order of the source, whichever pass found them.
    diags.sort_by_key(|d| d.span);
    let warnings = sm.render_all(&diags);
    if lang::has_errors(&diags) {
        bail!("{}", warnings.trim_end());
    }
    for w in target.iter().flat_map(codegen::GoTarget::warnings) {
        eprintln!("WARNING: {w}");
    }
    if !warnings.is_empty() {
        eprint!("{warnings}");
    }
    if dumps.contains(&"types") {
        eprint!("{}", lang::dump_types(&script, &info));
    }
    if stop_after("types") {
        return Ok(0);
    }

    // With -v, the time of each pass, as `stap -v` reports its passes.
    let mut pass = started;
    let mut passed = |what: &str| {
        if a.verbose > 0 {
            eprintln!(
                "gotap: {what} in {:.1} ms",
                pass.elapsed().as_secs_f64() * 1e3
            );
        }
        pass = Instant::now();
    };
    passed("parsed the script, resolved its probe points and checked its types");
    let mut traced = Traced::start(&a.target)?;
    session::phase("compile");
    let compiled = match &target {
        Some(t) => session::compile(&script, &info, t, &sm, &traced)?,
        None => codegen::Compiled {
            spec: session::compile_user(&script, &info, &sm, &traced)?,
            spans: Vec::new(),
        },
    };
    passed("compiled the probes to eBPF");
    if dumps.contains(&"bpf") {
        eprint!("{}", compiled.disassemble_with_source(&sm));
    }
    if stop_after("bpf") {
        return Ok(0);
    }
    let spec = &compiled.spec;
    session::phase("load");
    let mut armed = match Armed::load_script(spec, dumps.contains(&"verifier")) {
        Ok(a) => a,
        Err(e) => return Err(load_error(e, &compiled, &sm)),
    };
    if dumps.contains(&"verifier") {
        for p in &armed.programs {
            eprintln!("{}:\n{}", p.name(), p.verifier_log().unwrap_or(""));
        }
    }
    if stop_after("verifier") {
        return Ok(0);
    }
    armed.init_scalars(spec)?;
    passed("loaded the programs (the kernel's verifier)");
    let mut out = session::output(a.output.as_deref())?;
    session::phase("attach");
    if let Some(bin) = &bin {
        armed.attach_script(bin, traced.scope())?;
    }
    // With no probe to place, the trace begins here all the same: a signal from now
    // on (during the begin probes too) ends it in order, end probes and all.
    sys::trace_begins();
    passed(&format!(
        "{} probes attached through {} links",
        armed.probe_count(),
        armed.link_count()
    ));

    let ctx = runtime::interp::Context {
        pid: i64::from(std::process::id()),
        tid: i64::from(std::process::id()),
        target: traced.pid().map_or(0, i64::from),
        ..runtime::interp::Context::default()
    };
    let go = bin.as_ref().map(Binary::go).transpose()?;
    let mut interp = runtime::interp::Interp::new(
        &script,
        &info,
        &spec.globals,
        ctx,
        runtime::interp::Limits::default(),
    );
    if let (Some(b), Some(go)) = (&bin, &go) {
        interp = interp.with_symbols(usymname(go, &b.path, traced.pid()));
    }
    let mut run = Run {
        decoder: runtime::events::Decoder::new(spec)?
            .with_max_line(info.limits.max_printf as usize),
        sym: bin.as_ref().zip(go.as_ref()).map(|(b, go)| {
            runtime::symbolize::Symbolizer::new(go, b.path.display().to_string(), 0)
        }),
        buf: Vec::with_capacity(4096),
        failed: None,
        timers: Vec::new(),
        user: Vec::new(),
        write_error: None,
        stacks: crate::stacks::Stacks::new(spec),
        held: runtime::regroup::Regroup::new(),
    };
    let mut exit_requested = false;
    let mut failed = false;
    {
        let mut globals = KernelGlobals { maps: &armed.maps };
        for p in spec
            .user_probes
            .iter()
            .filter(|p| p.when == UserProbeKind::Begin)
        {
            match interp.run(p, &mut globals, &mut run.user) {
                Ok(o) => exit_requested |= o.exit,
                Err(e) => {
                    eprintln!("ERROR: {}", e.render(&sm));
                    failed = true;
                    exit_requested = true;
                }
            }
        }
    }
    out.write_all(&run.user)?;
    out.flush()?;
    run.user.clear();
    let now = Instant::now();
    run.timers = spec
        .user_probes
        .iter()
        .filter_map(|p| match p.when {
            UserProbeKind::Timer { period_ns } => {
                Some((*p, Duration::from_nanos(period_ns.max(1_000_000)), now))
            }
            _ => None,
        })
        .collect();

    if let Traced::Child(c) = &mut traced {
        if exit_requested {
            c.kill();
        } else {
            c.release()?;
        }
    }
    let mut ring = match spec.ringbuf {
        Some(id) => Some(sys::RingBuf::new(
            armed.maps.get(id.0 as usize).context("ring buffer map")?,
        )?),
        None => None,
    };
    let end = if exit_requested {
        End::Requested
    } else {
        let mut loop_h = Loop {
            run: &mut run,
            out: &mut out,
            interp: &mut interp,
            maps: &armed.maps,
            sm: &sm,
            bias_pid: traced.pid(),
            bias_done: false,
            bin: bin.as_ref(),
            go: go.as_ref(),
        };
        session::run(&signals, ring.as_mut(), &mut traced, &mut loop_h)?
    };
    sys::trace_ends();
    let code = traced.finish(end)?;
    session::phase("detach");
    let detaching = Instant::now();
    armed.detach();
    if a.verbose > 0 {
        eprintln!(
            "gotap: detached in {:.1} ms",
            detaching.elapsed().as_secs_f64() * 1e3
        );
    }
    if let Some(r) = ring.as_mut() {
        r.drain(|rec| run.held.push(rec))?;
    }
    run.flush_held(&armed.maps);
    out.write_all(&run.buf)?;
    run.buf.clear();
    if let Some(msg) = run.failed.take() {
        eprintln!("ERROR: {msg}");
        failed = true;
    }
    session::phase("end");
    {
        let mut globals = KernelGlobals { maps: &armed.maps };
        for p in spec
            .user_probes
            .iter()
            .filter(|p| p.when == UserProbeKind::End)
        {
            if let Err(e) = interp.run(p, &mut globals, &mut run.user) {
                eprintln!("ERROR: {}", e.render(&sm));
                failed = true;
                break;
            }
        }
        if let Err(e) =
            runtime::interp::write_unread_globals(&spec.globals, &mut globals, &mut run.user)
        {
            eprintln!("ERROR: {e}");
            failed = true;
        }
    }
    run.expand_user(&armed.maps);
    out.write_all(&run.user)?;
    flame_graphs(a, spec, &mut run, &armed.maps)?;
    out.flush()?;
    report_counters(spec, &armed)?;
    report_cuts(&run.decoder, &interp, &info.limits);
    if let Some(e) = run.write_error.take() {
        return Err(e.into());
    }
    // What is left is memory, which the kernel takes back at exit at no cost:
    // freeing the structures of 10,000 probe statements one by one took 60–110 ms
    // after everything was printed, time a user waiting for the end of gotap sees.
    std::mem::forget(run);
    std::mem::forget(interp);
    std::mem::forget(compiled);
    std::mem::forget(target);
    std::mem::forget(info);
    std::mem::forget(script);
    std::mem::forget(sm);
    if failed {
        return Ok(1);
    }
    Ok(code)
}

/// Every file the run will write is checked before anything is attached, so that a
/// trace does not end in an error about it.
fn check_outputs(a: &ScriptArgs) -> Result<()> {
    for (flag, path) in [
        ("-o", &a.output),
        ("--folded", &a.folded),
        ("--svg", &a.svg),
    ] {
        if let Some(p) = path {
            session::check_output(flag, p)?;
        }
    }
    Ok(())
}

/// The stages `-d` prints, in the order the script passes through them.
pub(crate) const DUMP_STAGES: [&str; 4] = ["ast", "types", "bpf", "verifier"];

/// `usymname(addr)` in user-space probes: the function of the traced binary at a
/// run-time address (a PIE's load bias read once from the process's maps).
fn usymname<'g>(
    go: &'g gobin::GoBinary<'_>,
    path: &std::path::Path,
    pid: Option<u32>,
) -> impl FnMut(u64) -> Option<String> + 'g {
    let path = path.display().to_string();
    let mut bias = None;
    move |addr| {
        let b = *bias.get_or_insert_with(|| {
            let maps = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/maps")).ok());
            match maps {
                Some(m) if go.is_pie() => runtime::symbolize::bias_from_maps(&m, &path, 0),
                _ => None,
            }
            .unwrap_or(0)
        });
        go.function_at(gobin::VirtAddr(addr.wrapping_sub(b)))
            .map(|f| f.name.to_string())
    }
}

/// The script checked with no binary (its types and diagnostics), and the binary
/// opened if the script needs one.
fn check_without_binary(
    script: &lang::ast::Script,
    sm: &lang::SourceMap,
    target: &Target,
    tapset: Option<lang::FileId>,
    limits: lang::Limits,
) -> Result<(Option<Binary>, lang::TypeInfo, Vec<lang::Diagnostic>)> {
    let nobin = NoBinary::default();
    let (info, mut diags) = lang::check_with(script, &nobin, limits);
    crate::tapset::keep_user_warnings(&mut diags, tapset);
    let bin = if nobin.asked() {
        Some(binary_after_own_errors(script, target, sm, &diags)?)
    } else {
        None
    };
    Ok((bin, info, diags))
}

/// The binary a script that needs one probes, opened. If it cannot be, the script's
/// own errors (`diags`, from the check without a binary) are said first, at their
/// places, then why there is no binary. Not among them: what needs the binary, and
/// the types the check could not infer, since the bodies of process probes, where
/// they may be set, were not checked.
fn binary_after_own_errors(
    script: &lang::ast::Script,
    target: &Target,
    sm: &lang::SourceMap,
    diags: &[lang::Diagnostic],
) -> Result<Binary> {
    let e = match script_binary(script, target) {
        Ok(b) => return Ok(b),
        Err(e) => e,
    };
    let mut own: Vec<lang::Diagnostic> = diags
        .iter()
        .filter(|d| {
            d.severity == lang::Severity::Error
                && d.message != NEEDS_A_BINARY
                && !d.message.starts_with("cannot infer the ")
        })
        .cloned()
        .collect();
    if own.is_empty() {
        return Err(e);
    }
    own.sort_by_key(|d| d.span);
    bail!("{}\nerror: {e:#}", sm.render_all(&own).trim_end())
}

/// The one executable the script's process probes name (relative paths from the
/// current directory), or the `-c`/`-x` target's, opened. With `-x PID`, a path that
/// names the process's executable is that process's file, even when a redeploy has
/// replaced or removed what is at the path since it started.
fn script_binary(script: &lang::ast::Script, target: &Target) -> Result<Binary> {
    let (named, bare) = named_binaries(script)?;
    let target_path = session::target_binary(target)?;
    let mut others: Vec<PathBuf> = Vec::new();
    let mut names_target = false;
    for p in &named {
        if target_path
            .as_deref()
            .is_some_and(|t| crate::binary::names(p, t))
        {
            names_target = true;
            continue;
        }
        let canon =
            std::fs::canonicalize(p).with_context(|| format!("process(\"{}\")", p.display()))?;
        if !others.contains(&canon) {
            others.push(canon);
        }
    }
    match (target_path, others.len()) {
        (Some(t), 0) => {
            let bin = Binary::open(&t)?;
            if let Target::Pid(pid) = target
                && bin.is_replaced()
            {
                eprintln!(
                    "gotap: note: {} is not the file process {pid} runs (replaced, removed, or in another mount namespace): probing the one it runs, through /proc/{pid}/exe",
                    bin.path.display()
                );
            }
            Ok(bin)
        }
        (_, 1) if !bare && !names_target => Binary::open(&others[0]),
        (None, 0) if bare => bail!("process probes without a path need -c CMD or -x PID"),
        (None, 0) => bail!(
            "the script probes no Go binary: name one with process(\"BIN\"), -c CMD or -x PID"
        ),
        (t, _) => {
            let mut all: Vec<String> = t.iter().map(|t| t.display().to_string()).collect();
            all.extend(others.iter().map(|p| p.display().to_string()));
            bail!(
                "the script probes several binaries ({}); gotap traces one binary per run",
                all.join(", ")
            )
        }
    }
}

/// The paths the script's process probes name (absolute, not yet resolved), and
/// whether any names none.
fn named_binaries(script: &lang::ast::Script) -> Result<(Vec<PathBuf>, bool)> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut bare = false;
    for item in &script.items {
        let points = match item {
            lang::ast::Item::Probe(p) => &p.points,
            lang::ast::Item::Alias(a) => &a.points,
            _ => continue,
        };
        for pt in points {
            if let Ok(ProbeKind::Process(pp)) = lang::probe::probe_kind(pt) {
                match pp.path {
                    Some(p) => {
                        let p = std::path::absolute(Path::new(&p))
                            .with_context(|| format!("process(\"{p}\")"))?;
                        if !paths.contains(&p) {
                            paths.push(p);
                        }
                    }
                    None => bare = true,
                }
            }
        }
    }
    Ok((paths, bare))
}

fn load_error(
    e: anyhow::Error,
    compiled: &codegen::Compiled,
    sm: &lang::SourceMap,
) -> anyhow::Error {
    if let Some(sys::Error::Verifier(v)) = e.downcast_ref::<sys::Error>()
        && let Some(i) = compiled
            .spec
            .object
            .programs
            .iter()
            .position(|p| p.name == v.name)
    {
        let d = compiled.verifier_diagnostic(i, &v.log);
        return anyhow::anyhow!("{}", sm.render(&d).trim_end());
    }
    e
}

/// `--folded FILE` and `--svg FILE`: every array or statistic keyed by
/// `ubacktrace()`, as collapsed stacks and as a flame graph.
fn flame_graphs(
    a: &ScriptArgs,
    spec: &ScriptSpec,
    run: &mut Run<'_, '_>,
    maps: &[sys::Map],
) -> Result<()> {
    if a.folded.is_none() && a.svg.is_none() {
        return Ok(());
    }
    let folded = match &mut run.sym {
        Some(sym) => run.stacks.folded(sym, maps, spec)?,
        None => runtime::flame::Folded::default(),
    };
    if folded.is_empty() {
        eprintln!(
            "WARNING: no array or statistic keyed by ubacktrace() has elements: the flame graph is empty"
        );
    }
    if let Some(p) = &a.folded {
        let mut f =
            std::fs::File::create(p).with_context(|| format!("--folded {}", p.display()))?;
        folded
            .write_folded(&mut f)
            .with_context(|| format!("--folded {}", p.display()))?;
    }
    if let Some(p) = &a.svg {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("--svg {}", p.display()))?,
        );
        folded
            .write_svg("gotap", "samples", &mut f)
            .with_context(|| format!("--svg {}", p.display()))?;
        f.flush()?;
    }
    Ok(())
}

/// Strings printed at the string limit (marked, as they may have been cut) and lines
/// cut at the printf limit are said at exit, with how to raise the limit.
fn report_cuts(
    decoder: &runtime::events::Decoder,
    interp: &runtime::interp::Interp<'_>,
    limits: &lang::Limits,
) {
    let mut cuts = decoder.cuts();
    cuts.add(interp.cuts());
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

/// Lost events and failed reads are said, never silently dropped.
fn report_counters(spec: &ScriptSpec, armed: &Armed) -> Result<()> {
    let Some(id) = spec.counters else {
        return Ok(());
    };
    let Some(map) = armed.maps.get(id.0 as usize) else {
        return Ok(());
    };
    let read = |i: u32| session::per_cpu_sum(map, i);
    let lost = read(counter::LOST_EVENTS)?;
    let faults = read(counter::READ_FAULTS)?;
    let full = read(counter::MAP_FULL)?;
    let missed = read(counter::ENTRY_MISSED)?;
    if missed > 0 {
        eprintln!(
            "WARNING: {missed} returns found no @entry values (read as 0): their calls began before tracing, or more calls were pending than gotap keeps"
        );
    }
    if lost > 0 {
        eprintln!("WARNING: {lost} events lost: the ring buffer was full");
    }
    if faults > 0 {
        eprintln!(
            "WARNING: {faults} reads of the target's memory failed (the values read as 0 or \"\")"
        );
    }
    if full > 0 {
        eprintln!("WARNING: {full} updates of a full array were dropped");
    }
    Ok(())
}

/// What the loop keeps between records.
struct Run<'a, 'd> {
    decoder: runtime::events::Decoder,
    /// The binary's symbols (none for a script that needs no binary).
    sym: Option<runtime::symbolize::Symbolizer<'a, 'd>>,
    buf: Vec<u8>,
    /// An error a probe reported; the run ends with it.
    failed: Option<String>,
    timers: Vec<(UserProbe, Duration, Instant)>,
    /// Output of user-space probes.
    user: Vec<u8>,
    write_error: Option<std::io::Error>,
    /// The stacks `ubacktrace()` names.
    stacks: crate::stacks::Stacks,
    /// Records of the last drain, held to be printed hit by hit.
    held: runtime::regroup::Regroup,
}

impl Run<'_, '_> {
    /// Formats one record into `buf`; true if the run must end.
    fn record(&mut self, rec: &[u8], maps: &[sys::Map]) -> bool {
        // After an error, as stap, nothing more is printed: the run is ending.
        if self.failed.is_some() {
            return true;
        }
        let from = self.buf.len();
        let stop = self.decode(rec);
        if let Some(sym) = &mut self.sym {
            self.stacks.expand(sym, maps, &mut self.buf, from);
        }
        stop
    }

    /// Formats the records held, each probe hit's together; true if the run must end.
    fn flush_held(&mut self, maps: &[sys::Map]) -> bool {
        let mut held = std::mem::take(&mut self.held);
        let mut stop = false;
        held.drain(|rec| stop |= self.record(rec, maps));
        self.held = held;
        stop
    }

    /// Stacks named in the user-space probes' output, expanded.
    fn expand_user(&mut self, maps: &[sys::Map]) {
        if let Some(sym) = &mut self.sym {
            self.stacks.expand(sym, maps, &mut self.user, 0);
        }
    }

    fn decode(&mut self, rec: &[u8]) -> bool {
        match self.decoder.handle(rec, &mut self.buf) {
            Ok(runtime::events::Action::Continue) => false,
            Ok(runtime::events::Action::Exit) => true,
            Ok(runtime::events::Action::Error(msg)) => {
                self.failed = Some(msg.to_string());
                true
            }
            Ok(runtime::events::Action::Backtrace {
                frames,
                fileline,
                first_is_return,
                bias,
            }) => {
                if let Some(sym) = &mut self.sym {
                    sym.set_bias(bias);
                    sym.write_stack(&mut self.buf, frames, first_is_return, fileline);
                }
                false
            }
            Err(e) => {
                self.failed = Some(format!("bad event record: {e}"));
                true
            }
        }
    }
}

struct Loop<'r, 'a, 'd, 'i> {
    run: &'r mut Run<'a, 'd>,
    out: &'r mut Box<dyn Write>,
    interp: &'r mut runtime::interp::Interp<'i>,
    maps: &'r [sys::Map],
    sm: &'r lang::SourceMap,
    bias_pid: Option<u32>,
    bias_done: bool,
    bin: Option<&'r Binary>,
    go: Option<&'r gobin::GoBinary<'d>>,
}

impl Loop<'_, '_, '_, '_> {
    /// A PIE's addresses at run time are shifted by where it was loaded; learn that
    /// once from the traced process's maps.
    fn learn_bias(&mut self) {
        let (Some(bin), Some(go), Some(sym)) = (self.bin, self.go, &mut self.run.sym) else {
            return;
        };
        if self.bias_done || !go.is_pie() {
            return;
        }
        // The mapping is found by inode: its name is the path as the process sees
        // it, which differs from ours in another mount namespace.
        if let Some(pid) = self.bias_pid
            && let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            && let Some(b) = runtime::symbolize::bias_from_maps(&maps, &bin.maps_name(&maps), 0)
        {
            sym.set_bias(b);
            self.bias_done = true;
        }
    }

    fn flush(&mut self) {
        if !self.run.buf.is_empty() {
            if let Err(e) = self
                .out
                .write_all(&self.run.buf)
                .and_then(|_| self.out.flush())
            {
                self.run.write_error.get_or_insert(e);
            }
            self.run.buf.clear();
        }
    }
}

impl Handler for Loop<'_, '_, '_, '_> {
    fn record(&mut self, rec: &[u8]) -> bool {
        self.run.held.push(rec);
        false
    }

    fn tick(&mut self, now: Instant) -> Result<bool> {
        let mut stop = false;
        if !self.run.held.is_empty() {
            self.learn_bias();
            stop |= self.run.flush_held(self.maps);
        }
        self.flush();
        stop |= self.run.write_error.is_some();
        let mut globals = KernelGlobals { maps: self.maps };
        for i in 0..self.run.timers.len() {
            let (probe, every, next) = self.run.timers[i];
            if now < next + every {
                continue;
            }
            self.run.timers[i].2 = next + every;
            match self.interp.run(&probe, &mut globals, &mut self.run.user) {
                Ok(o) => stop |= o.exit,
                Err(e) => {
                    self.run.failed = Some(e.render(self.sm));
                    stop = true;
                }
            }
        }
        if !self.run.user.is_empty() {
            self.run.expand_user(self.maps);
            self.out.write_all(&self.run.user)?;
            self.out.flush()?;
            self.run.user.clear();
        }
        Ok(stop)
    }
}
