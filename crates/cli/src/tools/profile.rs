//! `gotap profile`: on-CPU sampling of a Go process at `-F HZ` (99 by default) with
//! a perf `cpu-clock` event per CPU and the kernel program of `codegen::profile`,
//! which unwinds each sample by frame pointers and goes on from the system stack
//! into the goroutine. At the end: the functions by samples (flat, as `go tool pprof
//! -top` ranks them, and cumulative), and with `--folded`, `--svg` or `--pprof` the
//! stacks (the pprof file as `runtime/pprof` writes a CPU profile, the goroutine id
//! and the goroutine's pprof labels as its labels, so `go tool pprof -tags` shows
//! them); with `--otlp` the same profile goes to a collector
//! (`metrics::send_profile`).

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::fmt::Write as _;

use runtime::symbolize::Symbolizer;

use super::ToolArgs;
use crate::binary::Binary;
use crate::session::{self, Handler, Traced};
use codegen::profile::{
    Counter, KEY_FRAMES, KEY_HEAD, KEY_LABELS, LABEL_BYTES, LABEL_TEXT, LabelSet, MAX_LABELS,
};

/// Nothing to do between waits but wait.
struct Idle;

impl Handler for Idle {}

/// The traced binary's names at its load bias in the process (the samples carry
/// bare addresses).
struct Symbols<'a, 'd> {
    sym: Symbolizer<'a, 'd>,
}

impl<'a, 'd> Symbols<'a, 'd> {
    /// Names for `bin`'s addresses in process `pid`. A released `-c` command maps
    /// the binary once it has run exec: its bias is waited for, briefly.
    fn new(go: &'a gobin::GoBinary<'d>, bin: &'a Binary, pid: u32) -> Self {
        let mut sym = Symbolizer::new(go, bin.path.display().to_string(), 0);
        for _ in 0..2000 {
            if !go.is_pie() {
                break;
            }
            if let Some(b) = crate::symbols::process_bias(bin, go, pid) {
                sym.set_bias(b);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Symbols { sym }
    }
}

/// One (goroutine, stack)'s samples, frames innermost first.
struct Sample {
    goid: u64,
    /// The goroutine's pprof labels, as (key, value).
    labels: Vec<(String, String)>,
    stack: Vec<(u64, Vec<runtime::pprof::Frame>)>,
    count: u64,
}

pub fn run(a: &ToolArgs) -> Result<i32> {
    let signals = sys::Signals::new()?;
    for (flag, p) in [
        ("-o", &a.output),
        ("--folded", &a.folded),
        ("--svg", &a.svg),
        ("--pprof", &a.pprof),
    ] {
        if let Some(p) = p {
            session::check_output(flag, p)?;
        }
    }
    let path = session::target_binary(&a.target)?
        .context("profile: name the process, -x PID or -c CMD")?;
    let bin = Binary::open(&path)?;
    let go = bin.go()?;
    let layout = super::memory::runtime_layout(&bin);
    let mut traced = Traced::start(&a.target)?;
    let Some(pid) = traced.pid() else {
        bail!("profile: name the process, -x PID or -c CMD");
    };
    let v = go.go_version();
    let set = LabelSet::of(v.major, v.minor);
    let prog = codegen::profile::profile(pid, layout.as_ref(), set, go.text_len())?;
    let opts = sys::LoadOptions {
        attach: sys::AttachKind::PerfSample,
        verbose_log: false,
    };
    let loaded = sys::LoadedObject::load(&prog.object, opts).context("loading the profiler")?;
    let program = loaded.programs.first().context("the profiler's program")?;
    let cpus = sys::possible_cpus()?;
    // -v says what the sampling cost, from the kernel's own timing of the program.
    let timing = match (a.verbose > 0).then(sys::stats::RunTimeStats::enable) {
        Some(Err(e)) => {
            eprintln!("WARNING: -v: the BPF run-time statistics are not available: {e}");
            None
        }
        Some(Ok(t)) => Some(t),
        None => None,
    };
    let mut clocks = Vec::new();
    let mut refused = None;
    for cpu in 0..cpus as u32 {
        match sys::CpuClock::attach(program, cpu, a.hz) {
            Ok(c) => clocks.push(c),
            // An offline CPU has no clock to sample.
            Err(e) => refused = Some(e),
        }
    }
    if clocks.is_empty() {
        return Err(refused.map_or_else(|| anyhow::anyhow!("no CPU"), Into::into))
            .context("profile: opening the cpu-clock events");
    }
    eprintln!(
        "Sampling process {pid} at {} Hz on {} CPUs... Hit Ctrl-C to end.",
        a.hz,
        clocks.len()
    );
    let mut out = session::output(a.output.as_deref())?;
    let started = std::time::SystemTime::now();
    if let Traced::Child(c) = &mut traced {
        c.release()?;
    }
    let mut sym = Symbols::new(&go, &bin, pid);
    let end = session::run(&signals, None, &mut traced, &mut Idle)?;
    let code = traced.finish(end)?;
    let cpu_count = clocks.len();
    drop(clocks);
    if timing.is_some() {
        let runs = sys::stats::runs(program)?;
        eprintln!(
            "{}",
            cost_line(runs, started.elapsed().unwrap_or_default(), cpu_count)
        );
    }
    drop(timing);
    let samples = read(&loaded, &prog, &mut sym)?;
    let count = |c: Counter| session::per_cpu_sum(&loaded.maps[prog.counts.0 as usize], c as u32);
    let (kernel, dropped) = (count(Counter::Kernel)?, count(Counter::Dropped)?);
    let mut text = String::new();
    write_top(&mut text, &samples, a.top);
    if kernel > 0 {
        let _ = writeln!(
            text,
            "{kernel} of them found the process in the kernel (system calls, faults), unwound from where it entered"
        );
    }
    if dropped > 0 {
        let _ = writeln!(
            text,
            "WARNING: {dropped} samples lost: the sample map was full"
        );
    }
    out.write_all(text.as_bytes())?;
    out.flush()?;
    let prof = (a.pprof.is_some() || a.export.otlp.is_some()).then(|| pprof(a, &samples, started));
    write_files(a, &samples, prof.as_ref())?;
    if let Some(prof) = &prof {
        crate::metrics::send_profile(&a.export, prof, &bin, pid, a.pprof.as_deref(), end)?;
    }
    Ok(code)
}

/// What the sampling program cost (`-v`): its runs, their time, and that time's
/// share of the `cpus` CPUs' time over `wall`.
fn cost_line(runs: sys::stats::Runs, wall: std::time::Duration, cpus: usize) -> String {
    let per_run = runs.ns.checked_div(runs.count).unwrap_or(0);
    let share = runs.ns as f64 * 100.0 / (wall.as_nanos() as f64 * cpus.max(1) as f64).max(1.0);
    format!(
        "profile: the sampling program ran {} times for {:.3} ms, {per_run} ns a run: {share:.4}% of {cpus} CPUs over {:.3} s (the kernel's BPF run-time statistics)",
        runs.count,
        runs.ns as f64 / 1e6,
        wall.as_secs_f64()
    )
}

/// The samples the kernel counted, summed over CPUs and symbolised.
fn read(
    loaded: &sys::LoadedObject,
    prog: &codegen::profile::Profile,
    sym: &mut Symbols,
) -> Result<Vec<Sample>> {
    let map = &loaded.maps[prog.samples.0 as usize];
    let word = |b: &[u8], i: usize| {
        b.get(8 * i..8 * i + 8)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let sets = label_sets(&loaded.maps[prog.labels.0 as usize])?;
    let mut out = Vec::new();
    for key in map.keys()? {
        let count: u64 = map
            .get_per_cpu(&key)?
            .unwrap_or_default()
            .iter()
            .map(|v| word(v, 0))
            .sum();
        let head = KEY_HEAD as usize;
        let n = (word(&key, head) & bpf::script::STACK_COUNT_MASK).min(u64::from(KEY_FRAMES));
        let frames: Vec<u64> = (0..n as usize).map(|i| word(&key, head + 1 + i)).collect();
        // The caller of a function sampled before its frame was built is one of
        // the walk's tentative frames, kept by the pclntab's SP delta.
        let pcs: Vec<(u64, bool)> = sym.sym.logical(&frames, false).to_vec();
        let stack = pcs
            .iter()
            .enumerate()
            .map(|(i, (pc, _))| {
                let frames = sym
                    .sym
                    .frames(*pc, i == 0)
                    .iter()
                    .map(|f| runtime::pprof::Frame {
                        function: f.function.clone(),
                        file: f.file.clone(),
                        line: i64::from(f.line),
                    })
                    .collect::<Vec<_>>();
                let frames = if frames.is_empty() {
                    vec![runtime::pprof::Frame {
                        function: format!("0x{pc:x}"),
                        file: String::new(),
                        line: 0,
                    }]
                } else {
                    frames
                };
                (*pc, frames)
            })
            .collect();
        out.push(Sample {
            goid: word(&key, 0),
            labels: sets
                .get(&word(&key, KEY_LABELS as usize))
                .cloned()
                .unwrap_or_default(),
            stack,
            count,
        });
    }
    Ok(out)
}

/// The label sets the samples saw, by their `g.labels` pointer (see
/// `codegen::profile`'s layout of them).
fn label_sets(map: &sys::Map) -> Result<HashMap<u64, Vec<(String, String)>>> {
    let word = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let mut out = HashMap::new();
    for key in map.keys()? {
        let Some(v) = map.get(&key)? else {
            continue;
        };
        let text = |at: usize, len: u64| {
            let n = (len as usize).min(LABEL_TEXT as usize);
            String::from_utf8_lossy(v.get(at..at + n).unwrap_or_default()).into_owned()
        };
        let mut set = Vec::new();
        for i in 0..MAX_LABELS as usize {
            let e = i * LABEL_BYTES as usize;
            if word(&v, e) != 1 {
                continue;
            }
            let (k, val) = (word(&v, e + 8), word(&v, e + 16));
            set.push((text(e + 24, k), text(e + 24 + LABEL_TEXT as usize, val)));
        }
        set.sort();
        out.insert(word(&key, 0), set);
    }
    Ok(out)
}

/// The `top` functions by flat samples (where the CPU was), with their cumulative
/// samples (on the stack), as `go tool pprof -top` lists them.
fn write_top(out: &mut String, samples: &[Sample], top: usize) {
    let total: u64 = samples.iter().map(|s| s.count).sum();
    let mut flat: HashMap<&str, u64> = HashMap::new();
    let mut cum: HashMap<&str, u64> = HashMap::new();
    for s in samples {
        if let Some(f) = s.stack.first().and_then(|(_, fr)| fr.first()) {
            *flat.entry(f.function.as_str()).or_default() += s.count;
        }
        let mut seen = std::collections::HashSet::new();
        for f in s.stack.iter().flat_map(|(_, fr)| fr) {
            if seen.insert(f.function.as_str()) {
                *cum.entry(f.function.as_str()).or_default() += s.count;
            }
        }
    }
    let mut rows: Vec<(&str, u64)> = flat.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let pct = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
    let _ = writeln!(out, "{total} samples");
    let _ = writeln!(
        out,
        "{:>8} {:>6} {:>8} {:>6}  FUNCTION",
        "FLAT", "FLAT%", "CUM", "CUM%"
    );
    for (f, n) in rows.iter().take(top) {
        let c = cum.get(f).copied().unwrap_or(0);
        let _ = writeln!(out, "{n:>8} {:>5.1}% {c:>8} {:>5.1}%  {f}", pct(*n), pct(c));
    }
}

fn write_files(
    a: &ToolArgs,
    samples: &[Sample],
    prof: Option<&runtime::pprof::Profile>,
) -> Result<()> {
    let mut folded = runtime::flame::Folded::default();
    for s in samples {
        let path: Vec<&str> = s
            .stack
            .iter()
            .rev()
            .flat_map(|(_, fr)| fr.iter().rev())
            .map(|f| f.function.as_str())
            .collect();
        folded.add(path.join(";"), s.count);
    }
    super::write_flame(&folded, &a.folded, &a.svg, "on-CPU samples", "samples")?;
    if let (Some(p), Some(prof)) = (&a.pprof, prof) {
        let mut f = std::fs::File::create(p).with_context(|| format!("--pprof {}", p.display()))?;
        prof.write(&mut f)
            .with_context(|| format!("--pprof {}", p.display()))?;
    }
    Ok(())
}

/// The samples as a pprof CPU profile (the goroutine id as a label), for `--pprof`
/// and `--otlp`.
fn pprof(
    a: &ToolArgs,
    samples: &[Sample],
    started: std::time::SystemTime,
) -> runtime::pprof::Profile {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    };
    let period = 1_000_000_000 / a.hz.max(1) as i64;
    let mut prof = runtime::pprof::Profile::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        period,
        unix(started),
        unix(std::time::SystemTime::now()) - unix(started),
    );
    for s in samples {
        let n = s.count as i64;
        let mut labels = vec![("goroutine", runtime::pprof::LabelValue::Num(s.goid as i64))];
        labels.extend(
            s.labels
                .iter()
                .map(|(k, v)| (k.as_str(), runtime::pprof::LabelValue::Str(v.clone()))),
        );
        prof.add(&s.stack, &[n, n * period], &labels);
    }
    prof
}
