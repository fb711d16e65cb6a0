//! One trace from start to end, whatever the tool: load the programs, attach them,
//! release the `-c` command, wait for events, signals, the command's end or a timer,
//! then stop the command, detach and pass its exit status on.
//!
//! Attachment is one multi-uprobe link per binary (Linux 6.6), however many probe
//! statements a script has: identical programs are loaded once, and different ones
//! share the link through a dispatcher (see `codegen::dispatch`). Releasing a link
//! costs an RCU grace period (~46 ms) in uninterruptible sleep; where several links
//! exist (a kernel without multi-uprobe links, or cookies no dispatcher can choose
//! by), they are released from several threads at once so the periods overlap.
//!
//! Signals are answered by a thread of their own (`sys::Signals`): outside the trace
//! a signal ends gotap at once, during it the first one ends the trace in order.
//!
//! For tests, `GOTAP_TEST_STALL=PHASE` makes gotap stop at the start of a phase
//! (`parse`, `check`, `compile`, `load`, `attach`, `detach`, `end`) after saying so on
//! stderr, and never go on: a stand-in for a pass that runs for minutes without
//! checking anything, so that a test can signal gotap there.

use anyhow::{Context, Result, bail};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::args::Target;
use crate::binary::{self, Binary};

/// How long a `-c` command gets to end after `SIGTERM` when the trace ends first.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// At most this many threads release links at once.
const RELEASE_THREADS: usize = 128;

/// The process side of a trace: what `-c` started, what `-x` named, or nothing.
pub enum Traced {
    Any,
    Pid(u32),
    Child(sys::HeldChild),
}

impl Traced {
    /// Starts the `-c` command held, or notes the `-x` process.
    pub fn start(target: &Target) -> Result<Traced> {
        match target {
            Target::Any => Ok(Traced::Any),
            Target::Pid(p) => {
                binary::pid_path(*p)?;
                Ok(Traced::Pid(*p))
            }
            Target::Command(cmd) => {
                let words = binary::split_command(cmd)?;
                let args: Vec<std::ffi::OsString> = words[1..].iter().map(Into::into).collect();
                let child = sys::spawn_held(words[0].as_ref(), &args)
                    .with_context(|| format!("-c {cmd:?}"))?;
                Ok(Traced::Child(child))
            }
        }
    }

    /// The process events are limited to, if any.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Traced::Any => None,
            Traced::Pid(p) => Some(*p),
            Traced::Child(c) => Some(c.pid()),
        }
    }

    /// Whether the traced process is gone (the `-c` command reaped, the `-x`
    /// process ended), so that no probe scoped to it can fire any more.
    pub fn gone(&self) -> bool {
        match self {
            Traced::Any => false,
            Traced::Pid(p) => !Path::new(&format!("/proc/{p}")).exists(),
            Traced::Child(c) => c.reaped(),
        }
    }

    pub fn scope(&self) -> sys::Scope {
        self.pid().map_or(sys::Scope::All, sys::Scope::Pid)
    }

    /// Stops the `-c` command if the trace ended before it (`SIGTERM`, then `SIGKILL`
    /// after half a second), reaps it, and returns the exit code gotap passes on: the
    /// command's own when it ended by itself, 0 when gotap ended it (or never let it
    /// run) or there is none. A `-x` process is never signalled.
    pub fn finish(&mut self, end: End) -> Result<i32> {
        if let End::ChildExited(code) = end {
            return Ok(code);
        }
        let Traced::Child(c) = self else {
            return Ok(0);
        };
        if !c.released() {
            // Ended before it ran (`exit()` in a begin probe): gotap killed it.
            c.kill();
            return Ok(0);
        }
        if let Some(status) = c.try_wait()? {
            return Ok(sys::exit_code(status));
        }
        c.stop(STOP_GRACE)?;
        Ok(0)
    }
}

/// The binary a tool traces: the `BIN` it was given, else the `-c`/`-x` target's;
/// `tool` names it in the error when there is neither.
pub fn tool_binary(
    tool: &str,
    binary: &Option<std::path::PathBuf>,
    target: &Target,
) -> Result<std::path::PathBuf> {
    match (binary, target_binary(target)?) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(p)) => Ok(p),
        (None, None) => anyhow::bail!("{tool}: name a binary, -x PID or -c CMD"),
    }
}

/// The binary a trace is about when the command line names none: the `-c` command's
/// program or the `-x` process's executable (`/proc/PID/exe`, which reaches it even
/// when its path was replaced or is in another mount namespace).
pub fn target_binary(target: &Target) -> Result<Option<std::path::PathBuf>> {
    match target {
        Target::Any => Ok(None),
        Target::Pid(p) => {
            binary::pid_path(*p)?;
            Ok(Some(format!("/proc/{p}/exe").into()))
        }
        Target::Command(cmd) => {
            let words = binary::split_command(cmd)?;
            binary::command_path(&words[0]).map(Some)
        }
    }
}

/// Says a phase begins; stops there for good if `GOTAP_TEST_STALL` names it (see the
/// module's documentation).
pub fn phase(name: &str) {
    static STALL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let stall = STALL.get_or_init(|| std::env::var("GOTAP_TEST_STALL").ok());
    if stall.as_deref() == Some(name) {
        eprintln!("gotap: test stall at {name}");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Checks, before anything is attached, that gotap can write the file `path` given
/// to `flag`, so that a long trace does not end in an error about it. An existing file
/// is opened for appending (not truncated); a new one is created and removed again.
pub fn check_output(flag: &str, path: &Path) -> Result<()> {
    let what = || format!("{flag} {}", path.display());
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!("{}: is a directory", what()),
        // A device or a named pipe (`/dev/null`, a FIFO) is written as it is; opening
        // a pipe nobody reads yet would wait.
        Ok(m) if !m.is_file() => {}
        Ok(_) => {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .with_context(what)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(what)?;
            let _ = std::fs::remove_file(path);
        }
        Err(e) => return Err(e).with_context(what),
    }
    Ok(())
}

/// Where a run writes what it prints: stdout, or the `-o` file, created (or emptied)
/// only when this is called, once the probes are placed, so that a run that failed
/// before leaves an existing file as it was.
pub fn output(path: Option<&Path>) -> Result<Box<dyn std::io::Write>> {
    Ok(match path {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("-o {}", p.display()))?)
        }
        None => Box::new(std::io::stdout()),
    })
}

/// Writes `folded` where asked: as collapsed stacks to `--folded`, as a flame graph
/// (its title and what it counts) to `--svg`.
pub fn write_flame_graph(
    folded: &runtime::flame::Folded,
    folded_file: Option<&Path>,
    svg: Option<&Path>,
    (title, counts): (&str, &str),
) -> Result<()> {
    if let Some(p) = folded_file {
        let what = || format!("--folded {}", p.display());
        let mut f = std::fs::File::create(p).with_context(what)?;
        folded.write_folded(&mut f).with_context(what)?;
    }
    if let Some(p) = svg {
        let what = || format!("--svg {}", p.display());
        let mut f = std::io::BufWriter::new(std::fs::File::create(p).with_context(what)?);
        folded.write_svg(title, counts, &mut f).with_context(what)?;
        std::io::Write::flush(&mut f).with_context(what)?;
    }
    Ok(())
}

/// Programs in the kernel, with their maps and the probes that run them.
pub struct Armed {
    pub maps: Vec<sys::Map>,
    pub programs: Vec<sys::LoadedProgram>,
    /// Released by [`Armed::detach`] while the maps are still read.
    links: std::cell::RefCell<Vec<Link>>,
    multi: bool,
    /// Where a script's programs go, as `codegen::dispatch` planned it.
    planned: Vec<bpf::script::AttachSpec>,
    /// A script's sampling programs, by their index in `programs`.
    sampled: Vec<bpf::script::SampleSpec>,
}

#[allow(dead_code)] // The links are held for their file descriptors.
enum Link {
    Multi(sys::UprobeMulti),
    Single(sys::Uprobe),
    /// One CPU's sampling event.
    Clock(sys::CpuClock),
}

/// Where one program goes: file offsets in one binary, each with its cookie.
pub struct Placement<'a> {
    pub program: usize,
    pub binary: &'a Path,
    pub offsets: &'a [u64],
    pub cookies: &'a [u64],
}

impl Armed {
    /// Creates the maps and loads the programs of `object`, for multi-uprobe links
    /// when the kernel has them.
    pub fn load(object: &bpf::ObjectSpec, verbose_log: bool) -> Result<Armed> {
        Armed::load_sampling(object, verbose_log, &[])
    }

    /// [`Armed::load`], the programs at the indexes of `sampling` loaded for a
    /// sampling perf event instead.
    fn load_sampling(
        object: &bpf::ObjectSpec,
        verbose_log: bool,
        sampling: &[usize],
    ) -> Result<Armed> {
        let multi = multi_links(object);
        let attach = if multi {
            sys::AttachKind::UprobeMulti
        } else {
            sys::AttachKind::PerfEvent
        };
        let mut maps = Vec::with_capacity(object.maps.len());
        for m in &object.maps {
            maps.push(sys::Map::create(m).with_context(|| format!("creating map {}", m.name))?);
        }
        let mut programs = Vec::with_capacity(object.programs.len());
        for (i, p) in object.programs.iter().enumerate() {
            let opts = sys::LoadOptions {
                attach: if sampling.contains(&i) {
                    sys::AttachKind::PerfSample
                } else {
                    attach
                },
                verbose_log,
            };
            programs.push(
                sys::LoadedProgram::load(p, &maps, opts)
                    .with_context(|| format!("loading program {}", p.name))?,
            );
        }
        Ok(Armed {
            maps,
            programs,
            links: std::cell::RefCell::new(Vec::new()),
            multi,
            planned: Vec::new(),
            sampled: Vec::new(),
        })
    }

    /// Loads a compiled script as `codegen::dispatch` plans it: each distinct program
    /// once, and a dispatcher when different programs share a binary, with its
    /// tables filled.
    pub fn load_script(spec: &bpf::script::ScriptSpec, verbose_log: bool) -> Result<Armed> {
        let multi = multi_links(&spec.object);
        let plan = codegen::dispatch::plan(&spec.object, &spec.attachments, multi);
        let sampled: Vec<bpf::script::SampleSpec> = spec
            .samples
            .iter()
            .map(|s| bpf::script::SampleSpec {
                program: plan.loaded_as.get(s.program).copied().unwrap_or(s.program),
                ..s.clone()
            })
            .collect();
        let sampling: Vec<usize> = sampled.iter().map(|s| s.program).collect();
        let mut armed = Armed::load_sampling(&plan.object, verbose_log, &sampling)?;
        if let Some(t) = &plan.table {
            armed.fill(t).context("filling the dispatcher's tables")?;
        }
        armed.planned = plan.attachments;
        armed.sampled = sampled;
        Ok(armed)
    }

    /// Writes the dispatcher's cookie → slot array and its program array.
    fn fill(&self, t: &codegen::dispatch::Table) -> Result<()> {
        use std::os::fd::AsRawFd;
        let map = |id: bpf::MapId| self.maps.get(id.0 as usize).context("dispatcher map");
        let cookies = map(t.cookies)?;
        for (cookie, slot) in &t.entries {
            cookies.update(
                &cookie.to_le_bytes(),
                &slot.to_le_bytes(),
                sys::UpdateFlags::Any,
            )?;
        }
        let programs = map(t.programs)?;
        for (slot, p) in t.slots.iter().enumerate() {
            let fd = self.programs.get(*p).context("dispatched program")?;
            let fd = fd.as_fd().as_raw_fd() as u32;
            programs.update(
                &(slot as u32).to_le_bytes(),
                &fd.to_le_bytes(),
                sys::UpdateFlags::Any,
            )?;
        }
        Ok(())
    }

    /// Places the probes of one program.
    pub fn attach(&mut self, p: &Placement<'_>, scope: sys::Scope) -> Result<()> {
        let prog = self
            .programs
            .get(p.program)
            .context("placement names a program that was not loaded")?;
        if p.offsets.is_empty() {
            return Ok(());
        }
        if self.multi {
            let link = sys::UprobeMulti::attach(prog, p.binary, p.offsets, p.cookies, scope)
                .with_context(|| format!("attaching {} probes", p.offsets.len()))?;
            self.links.get_mut().push(Link::Multi(link));
        } else {
            for (i, off) in p.offsets.iter().enumerate() {
                let cookie = p.cookies.get(i).copied().unwrap_or(0);
                let probe = sys::Uprobe::attach(prog, p.binary, *off, scope, cookie)?;
                self.links.get_mut().push(Link::Single(probe));
            }
        }
        // The trace begins with its probes: from here the first signal ends it in
        // order (`session::run` sees it), where before it ended gotap at once.
        sys::trace_begins();
        Ok(())
    }

    /// Places every probe of a script loaded with [`Armed::load_script`] in `bin`,
    /// through the path it was opened by.
    pub fn attach_script(&mut self, bin: &Binary, scope: sys::Scope) -> Result<()> {
        let shown = bin.path.display().to_string();
        for at in std::mem::take(&mut self.planned) {
            let offsets: Vec<u64> = at.sites.iter().map(|s| s.file_offset).collect();
            let cookies: Vec<u64> = at.sites.iter().map(|s| s.cookie).collect();
            let path = if at.binary == shown {
                bin.attach_path()
            } else {
                Path::new(&at.binary)
            };
            let placement = Placement {
                program: at.program,
                binary: path,
                offsets: &offsets,
                cookies: &cookies,
            };
            self.attach(&placement, scope)
                .with_context(|| format!("{} in {}", at.probe, at.binary))?;
        }
        self.attach_samples()
    }

    /// Starts the sampling events of a script's sampling programs, one per CPU
    /// (an offline CPU has no clock and is skipped); the programs choose the
    /// traced process's samples.
    fn attach_samples(&mut self) -> Result<()> {
        if self.sampled.is_empty() {
            return Ok(());
        }
        let cpus = sys::possible_cpus()? as u32;
        for s in std::mem::take(&mut self.sampled) {
            let prog = self
                .programs
                .get(s.program)
                .context("a sampling program that was not loaded")?;
            let mut refused = None;
            let mut started = 0;
            for cpu in 0..cpus {
                match sys::CpuClock::attach(prog, cpu, s.hz) {
                    Ok(c) => {
                        self.links.get_mut().push(Link::Clock(c));
                        started += 1;
                    }
                    Err(e) => refused = Some(e),
                }
            }
            if started == 0 {
                return Err(refused.map_or_else(|| anyhow::anyhow!("no CPU"), Into::into))
                    .with_context(|| format!("{}: opening the cpu-clock events", s.probe));
            }
        }
        sys::trace_begins();
        Ok(())
    }

    /// Writes the scalar globals' first values, with the wall-clock offset probes add
    /// to the kernel's monotonic clock.
    pub fn init_scalars(&self, spec: &bpf::script::ScriptSpec) -> Result<()> {
        let Some(s) = &spec.scalars else {
            return Ok(());
        };
        let mut init = s.initial.clone();
        let o = s.realtime_offset as usize;
        if let Some(slot) = init.get_mut(o..o + 8) {
            slot.copy_from_slice(&sys::clock::realtime_offset_ns().to_le_bytes());
        }
        let map = self.maps.get(s.map.0 as usize).context("scalars map")?;
        map.update(&0u32.to_le_bytes(), &init, sys::UpdateFlags::Any)?;
        Ok(())
    }

    /// How many probes are placed.
    pub fn probe_count(&self) -> usize {
        self.links
            .borrow()
            .iter()
            .map(|l| match l {
                Link::Multi(m) => m.len(),
                Link::Single(_) | Link::Clock(_) => 1,
            })
            .sum()
    }

    /// How many links hold the probes.
    pub fn link_count(&self) -> usize {
        self.links.borrow().len()
    }

    /// Removes every probe now (the maps stay readable), releasing the links from
    /// several threads at once so that their grace periods overlap.
    pub fn detach(&self) {
        release(self.links.take());
    }

    /// Removes every probe at the end of a trace that ended as `end` said, for
    /// `traced`. Where no process can hit the probes any more (the `-c` command
    /// reaped, the `-x` process gone) nothing waits for the kernel: the links go to a
    /// child of ours (`sys::handoff`), which waits out the grace period after gotap.
    /// After a signal the user waits for gotap, which promises to end within 100 ms:
    /// the links go to the child too, and gotap waits for it only until
    /// [`SIGNAL_RELEASE`] after the signal. If the kernel is slower, the probes may
    /// still fire while gotap drains and prints: the [`Late`] returned holds `hits()`
    /// (the probes' hits so far) to tell at the end whether any did. Otherwise the
    /// links are released here.
    pub fn detach_after(&self, end: End, traced: &Traced, hits: &dyn Fn() -> u64) -> Late {
        let deadline = if traced.gone() {
            None
        } else {
            match signal_seen().filter(|_| end == End::Signal) {
                Some(seen) => Some(seen + SIGNAL_RELEASE),
                None => {
                    self.detach();
                    return Late(None);
                }
            }
        };
        let links = self.links.take();
        if links.is_empty() {
            return Late(None);
        }
        let mut child = match sys::handoff::hand_off(sys::handoff::When::Told) {
            Ok(c) => c,
            Err(_) => {
                release(links);
                return Late(None);
            }
        };
        drop(links);
        child.go();
        match deadline {
            Some(d) if !child.wait_until(d) => Late(Some(hits())),
            _ => Late(None),
        }
    }
}

/// The probes' hits when gotap stopped waiting for the kernel to remove them
/// ([`Armed::detach_after`]), if it did before they were gone.
#[must_use]
pub struct Late(Option<u64>);

impl Late {
    /// Says, once everything is printed, how many hits came after gotap stopped
    /// waiting (`hits`: the probes' hits now): their records may be missing and
    /// their counts may be in what was printed. Nothing when none came.
    pub fn say(self, hits: u64) {
        if let Some(before) = self.0
            && hits > before
        {
            eprintln!(
                "WARNING: {} probe hits came after the trace ended, while the kernel was still removing the probes ({} ms after the signal): what they printed is not in the output, and what they counted may be",
                hits - before,
                SIGNAL_RELEASE.as_millis()
            );
        }
    }
}

/// How long after the signal that ended a trace gotap waits for the kernel to
/// release its probes ([`Armed::detach_after`]): the grace period was measured at
/// 25–86 ms, and the rest of gotap's end (the drain, end probes, printing) at a few.
const SIGNAL_RELEASE: Duration = Duration::from_millis(80);

/// When the main loop saw the signal that ended the trace.
static SIGNAL_SEEN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn signal_seen() -> Option<Instant> {
    SIGNAL_SEEN.get().copied()
}

/// The time since the main loop saw the signal that ended the trace, if one did.
pub fn since_signal() -> Option<Duration> {
    signal_seen().map(|t| t.elapsed())
}

impl Drop for Armed {
    /// On an error path too, links go as [`Armed::detach`] releases them.
    fn drop(&mut self) {
        self.detach();
    }
}

/// Whether `object`'s programs go through multi-uprobe links. Asking the kernel loads a
/// program: an object without programs (a script that runs in user space) does not.
fn multi_links(object: &bpf::ObjectSpec) -> bool {
    !object.programs.is_empty() && sys::uprobe_multi_supported()
}

/// Drops `links`, each thread of up to [`RELEASE_THREADS`] a share of them: one
/// release waits for a grace period, and waits in different threads overlap
/// (measured on multi-uprobe links: 20 released from one thread in 924 ms, from 20
/// threads in 68 ms). A thread that cannot be started leaves its share to this one.
fn release(links: Vec<Link>) {
    if links.len() <= 1 {
        return;
    }
    let threads = links.len().min(RELEASE_THREADS);
    let mut shares: Vec<Vec<Link>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, l) in links.into_iter().enumerate() {
        shares[i % threads].push(l);
    }
    std::thread::scope(|s| {
        for share in shares {
            // On failure the closure, and the share with it, is dropped here.
            let _ = std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn_scoped(s, move || drop(share));
        }
    });
}

/// Why a trace ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal,
    /// The `-c` command ended with this exit code.
    ChildExited(i32),
    /// The `-x` process is gone.
    ProcessGone,
    /// The script asked (`exit()`), or the tool decided.
    Requested,
}

/// What the main loop asks of a tool between waits.
pub trait Handler {
    /// Called with each ring buffer record; return true to end the trace.
    fn record(&mut self, _rec: &[u8]) -> bool {
        false
    }
    /// Called every `tick()`; return true to end the trace.
    fn tick(&mut self, _now: Instant) -> Result<bool> {
        Ok(false)
    }
    /// How long the loop may sleep when nothing happens. Records submitted without a
    /// wakeup are seen within this time.
    fn tick_every(&self) -> Duration {
        Duration::from_millis(10)
    }
}

/// Waits until the trace ends, handing records and ticks to `h`. The signals must
/// have been blocked (`sys::Signals::new`) before any thread or child was started.
/// During the wait the first signal is the loop's; once it returns, any signal ends
/// gotap at once.
pub fn run(
    signals: &sys::Signals,
    ring: Option<&mut sys::RingBuf>,
    traced: &mut Traced,
    h: &mut dyn Handler,
) -> Result<End> {
    sys::trace_begins();
    let end = wait(signals, ring, traced, h);
    sys::trace_ends();
    end
}

fn wait(
    signals: &sys::Signals,
    ring: Option<&mut sys::RingBuf>,
    traced: &mut Traced,
    h: &mut dyn Handler,
) -> Result<End> {
    let mut ring = ring;
    let mut ready = [false; 2];
    loop {
        let every = h.tick_every();
        match ring.as_deref() {
            Some(r) => sys::wait_readable(&[signals.as_fd(), r.as_fd()], every, &mut ready)?,
            None => sys::wait_readable(&[signals.as_fd()], every, &mut ready)?,
        }
        if let Some(r) = ring.as_deref_mut() {
            let mut stop = false;
            r.drain(|rec| stop |= h.record(rec))?;
            if stop {
                return Ok(End::Requested);
            }
        }
        if signals.pending().is_some() {
            let _ = SIGNAL_SEEN.set(Instant::now());
            return Ok(End::Signal);
        }
        match traced {
            Traced::Child(c) => {
                if let Some(status) = c.try_wait()? {
                    // What the command did last may still be in the buffer.
                    if let Some(r) = ring.as_deref_mut() {
                        r.drain(|rec| {
                            h.record(rec);
                        })?;
                    }
                    return Ok(End::ChildExited(sys::exit_code(status)));
                }
            }
            Traced::Pid(p) => {
                if !Path::new(&format!("/proc/{p}")).exists() {
                    if let Some(r) = ring.as_deref_mut() {
                        r.drain(|rec| {
                            h.record(rec);
                        })?;
                    }
                    return Ok(End::ProcessGone);
                }
            }
            Traced::Any => {}
        }
        if h.tick(Instant::now())? {
            return Ok(End::Requested);
        }
    }
}

/// The sum over CPUs of the `u64` at `key` of a per-CPU array (counters, funccount).
pub fn per_cpu_sum(map: &sys::Map, key: u32) -> Result<u64> {
    let per_cpu = map.get_per_cpu(&key.to_le_bytes())?.unwrap_or_default();
    Ok(per_cpu
        .iter()
        .filter_map(|v| v.get(..8)?.try_into().ok().map(u64::from_le_bytes))
        .sum())
}
