//! One trace from start to end, whatever the tool: load the programs, attach them,
//! release the `-c` command, wait for events, signals, the command's end or a timer,
//! then detach. Attachment prefers multi-uprobe links (Linux 6.6), which place and
//! remove thousands of probes at once; one perf-event uprobe costs about 0.1 s to
//! remove, so a fallback trace with many probes is slow to end.

use anyhow::{Context, Result};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::args::Target;
use crate::binary;

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

    pub fn scope(&self) -> sys::Scope {
        self.pid().map_or(sys::Scope::All, sys::Scope::Pid)
    }
}

/// The binary a trace is about when the command line names none: the `-c` command's
/// program or the `-x` process's executable.
pub fn target_binary(target: &Target) -> Result<Option<std::path::PathBuf>> {
    match target {
        Target::Any => Ok(None),
        Target::Pid(p) => binary::pid_path(*p).map(Some),
        Target::Command(cmd) => {
            let words = binary::split_command(cmd)?;
            binary::command_path(&words[0]).map(Some)
        }
    }
}

/// Programs in the kernel, with their maps and the probes that run them.
pub struct Armed {
    pub maps: Vec<sys::Map>,
    pub programs: Vec<sys::LoadedProgram>,
    links: Vec<Link>,
    multi: bool,
}

#[allow(dead_code)] // The links are held for their file descriptors.
enum Link {
    Multi(sys::UprobeMulti),
    Single(sys::Uprobe),
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
        let multi = sys::uprobe_multi_supported();
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
        for p in &object.programs {
            let opts = sys::LoadOptions {
                attach,
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
            links: Vec::new(),
            multi,
        })
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
                .with_context(|| {
                    format!(
                        "attaching {} probes to {}",
                        p.offsets.len(),
                        p.binary.display()
                    )
                })?;
            self.links.push(Link::Multi(link));
        } else {
            for (i, off) in p.offsets.iter().enumerate() {
                let cookie = p.cookies.get(i).copied().unwrap_or(0);
                let probe = sys::Uprobe::attach(prog, p.binary, *off, scope, cookie)?;
                self.links.push(Link::Single(probe));
            }
        }
        Ok(())
    }

    /// Places every attachment of a compiled script.
    pub fn attach_all(
        &mut self,
        attachments: &[bpf::script::AttachSpec],
        scope: sys::Scope,
    ) -> Result<()> {
        for at in attachments {
            let offsets: Vec<u64> = at.sites.iter().map(|s| s.file_offset).collect();
            let cookies: Vec<u64> = at.sites.iter().map(|s| s.cookie).collect();
            let placement = Placement {
                program: at.program,
                binary: at.binary.as_ref(),
                offsets: &offsets,
                cookies: &cookies,
            };
            self.attach(&placement, scope)
                .with_context(|| at.probe.clone())?;
        }
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
            .iter()
            .map(|l| match l {
                Link::Multi(m) => m.len(),
                Link::Single(_) => 1,
            })
            .sum()
    }

    /// Removes every probe now (the maps stay readable).
    pub fn detach(&mut self) {
        self.links.clear();
    }
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
pub fn run(
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

/// Compiles a checked script for the process `traced` follows, sized for this
/// machine's CPUs; errors come back rendered against the script's sources.
pub fn compile(
    script: &lang::ast::Script,
    info: &lang::TypeInfo,
    target: &codegen::GoTarget<'_>,
    sm: &lang::SourceMap,
    traced: &Traced,
) -> Result<codegen::Compiled> {
    let opts = codegen::Options {
        sources: Some(sm),
        target_pid: traced.pid(),
        possible_cpus: sys::possible_cpus().map_or(128, |n| n as u32),
        ..codegen::Options::default()
    };
    codegen::compile_full(script, info, target, &opts)
        .map_err(|d| anyhow::anyhow!("{}", sm.render_all(&d).trim_end()))
}

/// The sum over CPUs of the `u64` at `key` of a per-CPU array (counters, funccount).
pub fn per_cpu_sum(map: &sys::Map, key: u32) -> Result<u64> {
    let per_cpu = map.get_per_cpu(&key.to_le_bytes())?.unwrap_or_default();
    Ok(per_cpu
        .iter()
        .filter_map(|v| v.get(..8)?.try_into().ok().map(u64::from_le_bytes))
        .sum())
}
