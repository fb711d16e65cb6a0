//! What `gotap agent` runs on a binary besides funccount (its [`agent::Runner`]): a
//! tool's script or a user's, through the same front as the one-shot pipeline
//! (parsed with the Go tapset, checked and compiled against the binary, loaded),
//! its probes placed once for every process of the file (`sys::Scope::All`, through
//! `/proc/PID/exe`). A job's values are its globals, read from the kernel's maps at
//! each collection — a script's every global as `export::script` shapes them (as
//! the one-shot `--prometheus` does), a tool's counts under the documented names
//! (`export::names`). What a script prints is read from its ring buffer at each
//! collection and sent as OTLP log records (with `--otlp`; dropped, said once,
//! without), each named for its probe and goroutine, as the one-shot `--otlp` sends
//! them. Bare `process` probe points mean the binary the select found.
//!
//! Three tools are not a script here, as in the one-shot CLI:
//! - `funclatency` is its own pair of programs (`tools::funclatency::arm`, without a
//!   process filter: its pending calls are keyed by process and goroutine), its
//!   maps read whole at each collection; the histograms are the binary's, summed
//!   over its processes, as a script's globals are.
//! - `offcpu` is a script ([`offcpu::AGENT_SCRIPT`]) whose keys hold the process,
//!   so each process's waits are its own series, under its own resource.
//! - `goroutines` places no probe: `go_goroutines` of each process is read from
//!   `runtime.allgs` through `/proc/PID/mem` at each collection, the goroutines
//!   neither dead nor the runtime's own, which is `runtime.NumGoroutine()`'s count
//!   (the one-shot tool counts the ones alive at attach the same way). One read of
//!   the `allgs` slice and one of each `g` a second costs less than probes on every
//!   goroutine's creation and exit, which a busy server makes thousands of times a
//!   second, and needs no count carried from before attach.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::Path;

use agent::{Job, Member, Work};
use export::{FamilyId, Registry, ResourceId, names};
use runtime::globals::Globals;

use crate::binary::Binary;
use crate::maps::KernelGlobals;
use crate::session::Armed;
use crate::symbols::{Symbols, process_bias};
use crate::tools::memory::{self, Memory};
use crate::tools::{funclatency, gcstat, global, offcpu, stackgrow};

/// The CLI's pipeline, lent to the agent.
pub struct Runner;

impl agent::Runner for Runner {
    fn arm(
        &self,
        work: &Work,
        exe: &Path,
        registry: &Registry,
        resource: ResourceId,
        logs: Option<&export::push::Logger>,
    ) -> Result<Box<dyn Job>, String> {
        arm(work, exe, registry, resource, logs).map_err(|e| format!("{e:#}"))
    }
}

fn arm(
    work: &Work,
    exe: &Path,
    registry: &Registry,
    resource: ResourceId,
    logs: Option<&export::push::Logger>,
) -> Result<Box<dyn Job>> {
    let bin = Binary::open(exe)?;
    Ok(match work {
        Work::FuncLatency(patterns) => Box::new(TimedJob::arm(bin, patterns, registry, resource)?),
        Work::Tool(t) if t == "goroutines" => Box::new(LiveGoroutines::new(bin, registry)?),
        _ => Box::new(ArmedJob::arm(work, bin, registry, resource, logs)?),
    })
}

/// A script's printed lines: its ring buffer, read at each collection, and where
/// the lines go.
struct Printed {
    ring: sys::RingBuf,
    decoder: runtime::events::Decoder,
    text: runtime::events::Text,
    line: Vec<u8>,
    /// `None` without `--otlp`: the lines are read and dropped.
    logs: Option<crate::metrics::Logs>,
    /// A record that did not decode, said once.
    warned: bool,
}

impl Printed {
    /// Reads every record in the ring buffer and sends its line.
    fn read(&mut self, symbols: &mut Symbols<'_, '_>, what: &Path) {
        let Printed {
            ring,
            decoder,
            text,
            line,
            logs,
            warned,
        } = self;
        let r = ring.drain(|rec| {
            let Some(logs) = logs else { return };
            match decoder.decode(rec) {
                Ok(r) => {
                    line.clear();
                    if text.write(&r, symbols.stacks(), line).is_ok() && !line.is_empty() {
                        logs.log_record(rec, line);
                    }
                }
                Err(e) if !*warned => {
                    *warned = true;
                    eprintln!("gotap agent: {}: bad event record: {e}", what.display());
                }
                Err(_) => {}
            }
        });
        if let Err(e) = r
            && !*warned
        {
            *warned = true;
            eprintln!(
                "gotap agent: {}: reading printed lines: {e}",
                what.display()
            );
        }
    }
}

/// What a job exports.
enum Exports {
    /// A script's globals.
    Script(export::script::ScriptMetrics),
    /// `stackgrow`'s growths per function.
    StackGrow(FamilyId),
    /// `gcstat`'s cycles and pauses.
    GcStat,
    /// `offcpu`'s time and waits per reason, of each process: the families, and the
    /// binary's names of the wait reasons.
    OffCpu([FamilyId; 2], Vec<String>),
}

/// A work's programs in the kernel, on one binary.
struct ArmedJob {
    bin: Binary,
    spec: bpf::script::ScriptSpec,
    armed: Armed,
    exports: Exports,
    resource: ResourceId,
    warned: bool,
    /// A script that prints: its lines.
    printed: Option<Printed>,
}

impl ArmedJob {
    /// What the script's probes could not keep, from its counters (summed over the
    /// CPUs), as `gotap.agent.script.losses{cause}`: the one-shot CLI says these in
    /// words at its end; an agent that never ends exports them.
    fn export_losses(&self, registry: &Registry) -> Result<()> {
        use bpf::script::counter;
        let Some(map) = self
            .spec
            .counters
            .and_then(|id| self.armed.maps.get(id.0 as usize))
        else {
            return Ok(());
        };
        let f = registry.register(&names::SCRIPT_LOSSES.desc())?;
        let mut points = Vec::new();
        for (cause, i) in [
            ("lost_events", counter::LOST_EVENTS),
            ("read_faults", counter::READ_FAULTS),
            ("map_full", counter::MAP_FULL),
            ("entry_missed", counter::ENTRY_MISSED),
        ] {
            let n = crate::session::per_cpu_sum(map, i)?;
            points.push((
                vec![("cause".to_string(), cause.to_string())],
                export::Value::Counter(n as f64),
            ));
        }
        registry.replace(f, self.resource, points)?;
        Ok(())
    }
}

/// The script of `work` on `bin`, named for messages.
fn script_of(work: &Work, bin: &Binary) -> Result<(String, String)> {
    match work {
        Work::Tool(t) if t == "stackgrow" => {
            Ok(("<stackgrow>".into(), stackgrow::AGENT_SCRIPT.to_string()))
        }
        Work::Tool(t) if t == "gcstat" => Ok(("<gcstat>".into(), gcstat::agent_script(bin))),
        Work::Tool(t) if t == "offcpu" => Ok(("<offcpu>".into(), offcpu::AGENT_SCRIPT.to_string())),
        Work::Tool(t) => bail!("the agent does not run tool {t} as a script"),
        Work::FuncLatency(_) => bail!("funclatency is not a script"),
        Work::Script { name, text } => Ok((name.clone(), text.clone())),
    }
}

/// The families of `names`' rows, registered in `registry`.
fn families<const N: usize>(registry: &Registry, rows: [&names::Name; N]) -> Result<[FamilyId; N]> {
    let ids: Vec<FamilyId> = rows
        .iter()
        .map(|n| registry.register(&n.desc()))
        .collect::<Result<_, _>>()?;
    ids.try_into()
        .map_err(|_| anyhow::anyhow!("internal error: families"))
}

impl ArmedJob {
    fn arm(
        work: &Work,
        bin: Binary,
        registry: &Registry,
        resource: ResourceId,
        logs: Option<&export::push::Logger>,
    ) -> Result<ArmedJob> {
        let (name, text) = script_of(work, &bin)?;
        let mut sm = lang::SourceMap::new();
        let file = sm.add(name.clone(), text.clone());
        let popts = lang::ParseOptions {
            args: Some(Vec::new()),
        };
        let (mut script, diags) = lang::parse(file, &text, &popts);
        if lang::has_errors(&diags) {
            bail!("{}", sm.render_all(&diags).trim_end());
        }
        let tapset = crate::tapset::add_if_used(&mut sm, &mut script, None)?;
        let go = bin.go()?;
        let target =
            codegen::GoTarget::new(go, bin.path.display().to_string()).releasing(bin.releaser());
        let limits = lang::Limits::default();
        let (info, mut diags) = lang::check_with(&script, &target, limits);
        crate::tapset::keep_user_warnings(&mut diags, tapset);
        if lang::has_errors(&diags) {
            diags.sort_by_key(|d| d.span);
            bail!("{}", sm.render_all(&diags).trim_end());
        }
        let opts = codegen::Options {
            sources: Some(&sm),
            target_pid: None,
            possible_cpus: sys::possible_cpus().map_or(128, |n| n as u32),
            // A printed line sent as a log record names its goroutine.
            goids: logs.is_some() && matches!(work, Work::Script { .. }),
            ..codegen::Options::default()
        };
        let compiled = codegen::compile_full(&script, &info, &target, &opts)
            .map_err(|d| anyhow::anyhow!("{}", sm.render_all(&d).trim_end()))?;
        let mut armed = Armed::load_script(&compiled.spec, false)?;
        armed.init_scalars(&compiled.spec)?;
        let exports = match work {
            Work::Script { .. } => {
                let uses = lang::uses::global_uses(&script, &info);
                Exports::Script(export::script::ScriptMetrics::new(
                    registry,
                    &compiled.spec.globals,
                    &uses,
                    resource,
                )?)
            }
            Work::Tool(t) if t == "gcstat" => {
                families(registry, [&names::GC_CYCLES, &names::GC_PAUSE])?;
                Exports::GcStat
            }
            Work::Tool(t) if t == "offcpu" => Exports::OffCpu(
                families(registry, [&names::OFFCPU, &names::OFFCPU_WAITS])?,
                offcpu::wait_reasons(&bin.go()?),
            ),
            _ => Exports::StackGrow(registry.register(&names::STACK_GROWTHS.desc())?),
        };
        // A user's script that prints (a tool's scripts keep their values in maps).
        let prints = matches!(work, Work::Script { .. }) && !compiled.spec.events.is_empty();
        let printed = match compiled.spec.ringbuf.filter(|_| prints) {
            Some(id) => {
                let map = armed.maps.get(id.0 as usize).context("ring buffer map")?;
                if logs.is_none() {
                    eprintln!(
                        "gotap agent: {name}: what the script prints is sent as OTLP log records with --otlp; without, it is dropped"
                    );
                }
                Some(Printed {
                    ring: sys::RingBuf::new(map)?,
                    decoder: runtime::events::Decoder::new(&compiled.spec)?,
                    text: runtime::events::Text::new(info.limits.max_printf as usize),
                    line: Vec::new(),
                    logs: logs.map(|l| {
                        crate::metrics::Logs::new(l.clone(), resource, &compiled, &script)
                    }),
                    warned: false,
                })
            }
            None => None,
        };
        armed.attach_script(&bin, sys::Scope::All)?;
        drop(target);
        bin.release_all();
        Ok(ArmedJob {
            spec: compiled.spec,
            bin,
            armed,
            exports,
            resource,
            warned: false,
            printed,
        })
    }
}

impl Job for ArmedJob {
    fn probes(&self) -> usize {
        self.armed.probe_count()
    }

    fn collect(&mut self, registry: &Registry, members: &[Member]) {
        let Ok(go) = self.bin.go() else {
            return;
        };
        let mut symbols = Symbols::new(
            Some((&self.bin, &go)),
            &self.spec,
            &self.armed.maps,
            agent::bias_member(members).map(|m| m.pid),
        );
        symbols.learn_bias();
        if let Some(p) = &mut self.printed {
            p.read(&mut symbols, &self.bin.path);
        }
        let mut store = KernelGlobals {
            maps: &self.armed.maps,
            stacks: &mut symbols,
        };
        let r = match &self.exports {
            Exports::Script(m) => m.collect(registry, &mut store).map_err(|e| e.to_string()),
            Exports::StackGrow(f) => {
                let named = stackgrow::growths_by_function(
                    &self.spec.globals,
                    &self.armed.maps,
                    &mut symbols,
                );
                let points =
                    crate::metrics::function_points(named.iter().map(|(f, n)| (f.as_str(), *n)));
                registry
                    .replace(*f, self.resource, points)
                    .map_err(|e| e.to_string())
            }
            Exports::GcStat => gcstat::agent_export(&self.spec.globals, &mut store)
                .map_err(|e| format!("{e:#}"))
                .and_then(|values| {
                    for (name, v) in values {
                        let f = registry.register(&name.desc()).map_err(|e| e.to_string())?;
                        registry
                            .replace(f, self.resource, [(Vec::new(), v)])
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                }),
            Exports::OffCpu(fams, reasons) => {
                offcpu_by_process(&self.spec.globals, &mut store, reasons)
                    .map_err(|e| format!("{e:#}"))
                    .and_then(|mut by| {
                        for m in members.iter().filter(|m| m.read) {
                            let waits = by.remove(&m.pid).unwrap_or_default();
                            for (f, (_, points)) in fams.iter().zip(offcpu::export_points(&waits)) {
                                registry
                                    .replace(*f, m.resource, points)
                                    .map_err(|e| e.to_string())?;
                            }
                        }
                        Ok(())
                    })
            }
        };
        let r = r.and_then(|()| self.export_losses(registry).map_err(|e| format!("{e:#}")));
        if let Err(e) = r
            && !self.warned
        {
            self.warned = true;
            eprintln!("gotap agent: {}: {e}", self.bin.path.display());
        }
        // The pages of the binary read to name what was counted go until the next
        // collection: a binary's mapping kept resident for each job made the agent
        // 125 MiB under a churn of 20 binaries.
        self.bin.release_all();
    }

    fn withdraw(&mut self, registry: &Registry, members: &[Member]) {
        if let Exports::OffCpu(fams, _) = &self.exports {
            for (f, m) in fams
                .iter()
                .flat_map(|f| members.iter().map(move |m| (f, m)))
            {
                let _ = registry.replace(*f, m.resource, []);
            }
        }
    }

    /// offcpu's keys of the process: its waits, and its goroutines parked when it
    /// exited (whose ids a later process of the same pid would reuse).
    fn forget(&mut self, pid: u32) {
        if !matches!(self.exports, Exports::OffCpu(..)) {
            return;
        }
        let Ok(go) = self.bin.go() else {
            return;
        };
        let mut symbols = Symbols::new(Some((&self.bin, &go)), &self.spec, &self.armed.maps, None);
        let mut store = KernelGlobals {
            maps: &self.armed.maps,
            stacks: &mut symbols,
        };
        let ours = |keys: &[runtime::globals::Value]| {
            keys.first().is_some_and(|k| k.as_long() == i64::from(pid))
        };
        for name in ["__oc_waits", "__oc_t", "__oc_why"] {
            let Ok(g) = global(&self.spec.globals, name) else {
                continue;
            };
            let keys: Vec<Vec<runtime::globals::Value>> = if name == "__oc_waits" {
                store
                    .stat_entries(g)
                    .map(|e| e.into_iter().map(|(k, _)| k).collect())
            } else {
                store
                    .entries(g)
                    .map(|e| e.into_iter().map(|(k, _)| k).collect())
            }
            .unwrap_or_default();
            for k in keys.iter().filter(|k| ours(k)) {
                let _ = store.delete(g, Some(k));
            }
        }
    }
}

/// offcpu's waits that ended, by process, then reason: `(count, ns)`.
fn offcpu_by_process(
    specs: &[bpf::script::GlobalSpec],
    store: &mut KernelGlobals<'_>,
    reasons: &[String],
) -> Result<HashMap<u32, offcpu::ByReason>> {
    let mut by: HashMap<u32, offcpu::ByReason> = HashMap::new();
    for (keys, stat) in store.stat_entries(global(specs, "__oc_waits")?)? {
        let [pid, why] = [0, 1].map(|i| keys.get(i).map_or(0, |k| k.as_long()));
        let Ok(pid) = u32::try_from(pid) else {
            continue;
        };
        let w = by
            .entry(pid)
            .or_default()
            .entry(offcpu::reason_name(reasons, why))
            .or_default();
        w.0 += u64::try_from(stat.count).unwrap_or(0);
        w.1 += u64::try_from(stat.sum).unwrap_or(0);
    }
    Ok(by)
}

/// funclatency on a binary's functions, every process of it timed.
struct TimedJob {
    armed: Armed,
    prog: codegen::funclatency::Funclatency,
    names: Vec<String>,
    families: [FamilyId; 2],
    resource: ResourceId,
    path: String,
    /// Calls that exited processes left under way, by function index: calls that
    /// did not return.
    left: HashMap<u64, u64>,
    warned: bool,
}

/// The agent's histograms read in nanoseconds, as the one-shot tool's default.
const TIMED_UNIT: funclatency::Unit = funclatency::Unit::Ns;

impl TimedJob {
    fn arm(
        bin: Binary,
        patterns: &[String],
        registry: &Registry,
        resource: ResourceId,
    ) -> Result<TimedJob> {
        let timed = funclatency::resolve(&bin, patterns)?;
        let path = bin.path.display().to_string();
        if !timed.unmatched.is_empty() {
            eprintln!(
                "gotap agent: funclatency: no function of {path} matches {}",
                timed.unmatched.join(", ")
            );
        }
        for s in &timed.skipped {
            eprintln!("gotap agent: funclatency on {path}: {s}");
        }
        let (armed, prog) = funclatency::arm(&bin, &timed, TIMED_UNIT, None, sys::Scope::All)
            .context("funclatency")?;
        Ok(TimedJob {
            armed,
            prog,
            names: timed.names,
            families: families(
                registry,
                [&names::FUNCTION_LATENCY, &names::FUNCTION_UNTIMED],
            )?,
            resource,
            path,
            left: HashMap::new(),
            warned: false,
        })
    }
}

impl Job for TimedJob {
    fn probes(&self) -> usize {
        self.armed.probe_count()
    }

    fn collect(&mut self, registry: &Registry, _members: &[Member]) {
        let maps = funclatency::Maps::of(&self.prog, &self.armed.maps);
        let r = funclatency::read(&maps, &self.names, None)
            .and_then(|mut rows| {
                for (f, n) in &self.left {
                    if let Some(r) = rows.get_mut(*f as usize) {
                        r.no_return += n;
                    }
                }
                funclatency::export_points(&rows, TIMED_UNIT)
            })
            .and_then(|series| {
                for (f, (_, points)) in self.families.iter().zip(series) {
                    registry.replace(*f, self.resource, points)?;
                }
                Ok(())
            });
        if let Err(e) = r
            && !self.warned
        {
            self.warned = true;
            eprintln!("gotap agent: {}: funclatency: {e:#}", self.path);
        }
    }

    fn forget(&mut self, pid: u32) {
        if let Err(e) = self.forget_process(pid) {
            eprintln!("gotap agent: {}: funclatency: {e:#}", self.path);
        }
    }
}

impl TimedJob {
    fn forget_process(&mut self, pid: u32) -> Result<()> {
        let maps = funclatency::Maps::of(&self.prog, &self.armed.maps);
        for f in funclatency::forget_process(&maps, pid)? {
            *self.left.entry(f).or_default() += 1;
        }
        Ok(())
    }
}

/// `go_goroutines` of each process of a binary, read from its memory.
struct LiveGoroutines {
    bin: Binary,
    allgs: u64,
    layout: gobin::layout::RuntimeLayout,
    family: FamilyId,
    /// Whether the function at a start pc (as linked) is the runtime's own.
    system: HashMap<u64, bool>,
}

impl LiveGoroutines {
    fn new(bin: Binary, registry: &Registry) -> Result<LiveGoroutines> {
        let allgs = bin
            .go()?
            .allgs_address()
            .context("goroutines: no runtime.allgs in this binary")?;
        let layout = memory::runtime_layout(&bin)
            .context("goroutines: no runtime layout for this Go release")?;
        Ok(LiveGoroutines {
            bin,
            allgs,
            layout,
            family: registry.register(&names::GOROUTINES.desc())?,
            system: HashMap::new(),
        })
    }
}

/// `runtime.NumGoroutine()` of process `pid` of `bin`, or `None` when its memory
/// cannot be read (it exited); `system` keeps whether the function at a start pc (as
/// linked) is the runtime's own.
fn num_goroutine(
    bin: &Binary,
    go: &gobin::GoBinary<'_>,
    (allgs, layout): (u64, &gobin::layout::RuntimeLayout),
    system: &mut HashMap<u64, bool>,
    pid: u32,
) -> Option<usize> {
    let bias = if go.is_pie() {
        process_bias(bin, go, pid)?
    } else {
        0
    };
    let mem = Memory::open(pid, bias).ok()?;
    let gs = memory::goroutines(&mem, allgs, layout)?;
    Some(
        gs.iter()
            .filter(|g| {
                let linked = g.startpc.wrapping_sub(bias);
                !*system.entry(linked).or_insert_with(|| {
                    go.function_at(gobin::VirtAddr(linked))
                        .is_some_and(|f| memory::is_system_goroutine(f.name))
                })
            })
            .count(),
    )
}

impl Job for LiveGoroutines {
    fn probes(&self) -> usize {
        0
    }

    fn collect(&mut self, registry: &Registry, members: &[Member]) {
        let Ok(go) = self.bin.go() else {
            return;
        };
        for m in members.iter().filter(|m| m.read && m.alive) {
            let at = (self.allgs, &self.layout);
            if let Some(n) = num_goroutine(&self.bin, &go, at, &mut self.system, m.pid) {
                let v = export::Value::Gauge(n as f64);
                let _ = registry.replace(self.family, m.resource, [(Vec::new(), v)]);
            }
        }
        self.bin.release_all();
    }

    fn withdraw(&mut self, registry: &Registry, members: &[Member]) {
        for m in members {
            let _ = registry.replace(self.family, m.resource, []);
        }
    }
}
