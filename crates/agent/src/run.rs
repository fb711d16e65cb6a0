//! The agent's loop. Go processes are found by a `/proc` scan at start and by the
//! exec/exit watcher after ([`crate::watch`]), with a periodic rescan as the fallback
//! (and at once when the watcher lost events); each found process is matched
//! against the selects, its binary gets a probe set the first time ([`ProbeSet`],
//! one per build id and inode), and its series get a resource of their own. Every
//! `collect_ms` the counts are read from the kernel into the [`Registry`] that the
//! exporters read on their own threads. An exited process keeps its last values for
//! `exit_linger_ms` (so the last scrape and push see them), then its series, its
//! counts in the kernel and, with the last process of a binary, the probe set go:
//! descriptors and memory return to where they were.
//!
//! Signals: SIGHUP reloads the configuration (counts stay: the registry and the
//! probe sets are kept, only selects and patterns change; what no select asks for
//! any more loses its probes and series); SIGTERM or SIGINT
//! collects once more, pushes the last batch and exits within a second.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use export::{FamilyId, Registry, ResourceEnv, ResourceId, Value, names};
use thiserror::Error;

use crate::binary::{self, BinaryKey, GoFacts};
use crate::config::{Config, ConfigError, Select};
use crate::probes::{ProbeError, ProbeSet};
use crate::procfs::{self, FileId, ProcessInfo};
use crate::watch::{ProcEvent, Watcher};
use crate::work::{Job, Member, Runner, Work};

/// How the agent is started.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub config_file: Option<PathBuf>,
    /// Settings from flags, over the file's.
    pub flags: Config,
    pub verbose: bool,
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Otlp(#[from] export::otlp::ConfigError),
    #[error(transparent)]
    Serve(#[from] export::prometheus::ServeError),
    #[error("--prometheus {0:?}: expected HOST:PORT or :PORT")]
    Address(String),
    #[error("metrics: {0}")]
    Model(#[from] export::ModelError),
    #[error("the OTLP sender: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Sys(#[from] sys::Error),
}

/// The configuration in force: the file's (if any) under the flags', checked as far as
/// it can be without starting anything (`--check-config`).
pub fn resolve(opts: &Options) -> Result<Config, AgentError> {
    let file = match &opts.config_file {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let mut flags = opts.flags.clone();
    flags.resolve_work(Path::new("."), &|key, _| {
        format!("--{}", key.replace('_', "-"))
    })?;
    let c = file.overridden_by(&flags);
    if let Some(addr) = &c.prometheus {
        let full = if addr.starts_with(':') {
            format!("0.0.0.0{addr}")
        } else {
            addr.clone()
        };
        if full.parse::<std::net::SocketAddr>().is_err() {
            return Err(AgentError::Address(addr.clone()));
        }
    }
    export::OtlpConfig::resolve(c.otlp.as_deref(), |k| std::env::var(k).ok())?;
    Ok(c)
}

struct Families {
    calls: FamilyId,
    up: FamilyId,
    probes: FamilyId,
    found: FamilyId,
    exited: FamilyId,
    binaries: FamilyId,
    arm: FamilyId,
    lost: FamilyId,
}

impl Families {
    fn register(r: &Registry) -> Result<Families, export::ModelError> {
        Ok(Families {
            calls: r.register(&names::FUNCTION_CALLS.desc())?,
            up: r.register(&names::PROCESS_UP.desc())?,
            probes: r.register(&names::PROCESS_PROBES.desc())?,
            found: r.register(&names::PROCESSES_FOUND.desc())?,
            exited: r.register(&names::PROCESSES_EXITED.desc())?,
            binaries: r.register(&names::BINARIES.desc())?,
            arm: r.register(&names::ARM_DURATION.desc())?,
            lost: r.register(&names::COUNTS_LOST.desc())?,
        })
    }
}

struct Proc {
    info: ProcessInfo,
    key: BinaryKey,
    resource: ResourceId,
    patterns: Vec<String>,
    works: Vec<Work>,
    exited: Option<Instant>,
    final_read: bool,
}

struct Binary {
    /// funccount's probes, when a select of its processes counts functions.
    set: Option<ProbeSet>,
    /// The tools and scripts on the binary, each armed once for all its processes.
    jobs: Vec<(Work, Box<dyn Job>)>,
    /// The resource of the jobs' series: the binary's processes (`process.pid` while
    /// one runs it).
    resource: ResourceId,
    facts: export::ProcessFacts,
    pids: BTreeSet<u32>,
}

impl Binary {
    fn probes(&self) -> usize {
        self.set.as_ref().map_or(0, ProbeSet::probes)
            + self.jobs.iter().map(|(_, j)| j.probes()).sum::<usize>()
    }
}

/// What the selects that match a process ask for.
struct Wanted {
    patterns: Vec<String>,
    works: Vec<Work>,
}

/// The agent's state between two turns of the loop.
pub struct Agent {
    config: Config,
    selects: Vec<Select>,
    registry: Arc<Registry>,
    env: ResourceEnv,
    fam: Families,
    binaries: HashMap<BinaryKey, Binary>,
    verdicts: HashMap<FileId, Option<GoFacts>>,
    procs: HashMap<u32, Proc>,
    /// Processes looked at and left alone (not Go, or not selected), by start time.
    ignored: HashMap<u32, u64>,
    arm_latency: export::Histogram,
    /// Hits lost by binaries whose probe sets are gone (the counter stays monotonic).
    lost_gone: u64,
    next_resource: u64,
    verbose: bool,
    runner: Option<Box<dyn Runner>>,
    /// Where the scripts' printed lines go (with `--otlp`).
    logs: Option<export::push::Logger>,
    /// Drops the probes it is sent ([`Agent::reap`]).
    reaper: Option<std::sync::mpsc::Sender<Box<dyn Send>>>,
}

/// Verdicts kept on executables; past it the cache starts again.
const VERDICTS_MAX: usize = 4096;

impl Agent {
    pub fn new(
        config: Config,
        registry: Arc<Registry>,
        verbose: bool,
    ) -> Result<Agent, AgentError> {
        let env = ResourceEnv::from_env(|k| std::env::var(k).ok());
        registry.set_resource(export::AGENT, env.agent(std::process::id()));
        let fam = Families::register(&registry)?;
        let agent = Agent {
            selects: config.selects(),
            config,
            registry,
            env,
            fam,
            binaries: HashMap::new(),
            verdicts: HashMap::new(),
            procs: HashMap::new(),
            ignored: HashMap::new(),
            arm_latency: export::Histogram::empty(
                [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0].to_vec(),
            ),
            lost_gone: 0,
            next_resource: 1,
            verbose,
            runner: None,
            logs: None,
            reaper: reaper(),
        };
        agent.set_binaries_gauge();
        Ok(agent)
    }

    /// The agent with `runner` to arm the selects' tools and scripts (without one, a
    /// select that names them is said and left alone).
    pub fn with_runner(mut self, runner: Box<dyn Runner>) -> Agent {
        self.runner = Some(runner);
        self
    }

    /// The agent with the scripts' printed lines sent through `logs`.
    pub fn with_logs(mut self, logs: Option<export::push::Logger>) -> Agent {
        self.logs = logs;
        self
    }

    /// Looks at `pid`, and traces it if it is a selected Go process. `exec_ns` is the
    /// exec event's time, for the exec-to-armed histogram.
    pub fn consider(&mut self, pid: u32, how: &str, exec_ns: Option<u64>) {
        if pid == std::process::id() {
            return;
        }
        let Some(info) = procfs::read(pid) else {
            return;
        };
        if let Some(p) = self.procs.get(&pid) {
            if p.info.start_time == info.start_time && p.info.file == info.file {
                return;
            }
            // The pid was reused, or the process ran exec: the old one is gone.
            self.exited(pid);
            self.finish_exit(pid);
        }
        if self.ignored.get(&pid) == Some(&info.start_time) && exec_ns.is_none() {
            return;
        }
        let Some(facts) = self.verdict(pid, info.file) else {
            self.ignored.insert(pid, info.start_time);
            return;
        };
        let Some(want) = wanted(&self.selects, &info, facts.main_module.as_deref()) else {
            self.ignored.insert(pid, info.start_time);
            return;
        };
        self.ignored.remove(&pid);
        let pfacts = export::ProcessFacts {
            pid,
            executable: info.exe.clone(),
            main_module: facts.main_module.clone(),
            go_version: Some(facts.go_version.clone()),
            container_id: info.container_id.clone(),
            pod_uid: info.pod_uid.clone(),
        };
        if let Err(e) = self.arm(pid, &facts.key, &want, &pfacts) {
            // A process that exited meanwhile is no error worth saying.
            if procfs::current_start_time(pid) == Some(info.start_time) || self.verbose {
                eprintln!("gotap agent: pid {pid} ({}): {e}", info.exe);
            }
            self.ignored.insert(pid, info.start_time);
            return;
        }
        if let Some(t0) = exec_ns {
            let took = (sys::clock::monotonic_ns() - t0 as i64).max(0) as f64 * 1e-9;
            self.arm_latency.observe(took);
            let h = Value::Histogram(self.arm_latency.clone());
            let _ = self
                .registry
                .replace(self.fam.arm, export::AGENT, [(vec![], h)]);
        }
        let resource = ResourceId(self.next_resource);
        self.next_resource += 1;
        self.registry
            .set_resource(resource, self.env.process(&pfacts));
        let probes = self.binaries.get(&facts.key).map_or(0, Binary::probes);
        let _ = self.registry.add(self.fam.up, resource, vec![], 1.0);
        let _ = self
            .registry
            .add(self.fam.probes, resource, vec![], probes as f64);
        let _ = self.registry.add(
            self.fam.found,
            export::AGENT,
            vec![("how".into(), how.into())],
            1.0,
        );
        self.set_binaries_gauge();
        if self.verbose {
            eprintln!(
                "gotap agent: tracing pid {pid} {} ({} probes, cgroup {})",
                info.exe, probes, info.cgroup
            );
        }
        self.procs.insert(
            pid,
            Proc {
                info,
                key: facts.key,
                resource,
                patterns: want.patterns,
                works: want.works,
                exited: None,
                final_read: false,
            },
        );
    }

    /// Whether the executable of `pid` is Go, cached by file.
    fn verdict(&mut self, pid: u32, file: FileId) -> Option<GoFacts> {
        if let Some(v) = self.verdicts.get(&file) {
            return v.clone();
        }
        let v = binary::inspect(&procfs::exe_path(pid), file).ok().flatten();
        if self.verdicts.len() >= VERDICTS_MAX {
            self.verdicts.clear();
        }
        self.verdicts.insert(file, v.clone());
        v
    }

    /// The binary of `pid` with every probe `want` asks for: funccount's patterns
    /// and each tool or script, armed once per binary.
    fn arm(
        &mut self,
        pid: u32,
        key: &BinaryKey,
        want: &Wanted,
        facts: &export::ProcessFacts,
    ) -> Result<(), String> {
        let path = procfs::exe_path(pid);
        let fresh = !self.binaries.contains_key(key);
        if fresh {
            let resource = ResourceId(self.next_resource);
            self.next_resource += 1;
            self.binaries.insert(
                key.clone(),
                Binary {
                    set: None,
                    jobs: Vec::new(),
                    resource,
                    facts: facts.clone(),
                    pids: BTreeSet::new(),
                },
            );
        }
        self.arm_wanted(key, &path, want).inspect_err(|_| {
            // A process not traced is none of the binary's: the binary goes with its
            // last process, and one with none goes now.
            if fresh && let Some(b) = self.binaries.remove(key) {
                self.registry.remove_resource(b.resource);
            }
        })?;
        if let Some(b) = self.binaries.get_mut(key) {
            b.pids.insert(pid);
        }
        self.set_job_resource(key);
        Ok(())
    }

    /// Adds to the binary's probes what `want` asks for and it lacks.
    fn arm_wanted(&mut self, key: &BinaryKey, path: &Path, want: &Wanted) -> Result<(), String> {
        let Some(b) = self.binaries.get_mut(key) else {
            return Ok(());
        };
        if !want.patterns.is_empty() {
            match &mut b.set {
                Some(set) => {
                    set.extend(path, &want.patterns)
                        .map_err(|e| e.to_string())?;
                }
                None => {
                    b.set = Some(
                        ProbeSet::arm(key.clone(), path, &want.patterns)
                            .map_err(|e: ProbeError| e.to_string())?,
                    );
                }
            }
        }
        for w in &want.works {
            // A job that does it already, or one that does part of it (funclatency
            // on fewer functions), which a job on both's functions replaces: its
            // counts start again, as a restarted process's would.
            let (w, replaces) = match b.jobs.iter().position(|(have, _)| have.same_job(w)) {
                Some(i) if b.jobs[i].0.joined(w) == b.jobs[i].0 => continue,
                Some(i) => (b.jobs[i].0.joined(w), Some(i)),
                None => (w.clone(), None),
            };
            let Some(runner) = &self.runner else {
                return Err(format!("{w}: the agent has no script runner"));
            };
            let job = runner
                .arm(&w, path, &self.registry, b.resource, self.logs.as_ref())
                .map_err(|e| format!("{w}: {e}"))?;
            if self.verbose {
                eprintln!(
                    "gotap agent: {w}: {} probes on {}",
                    job.probes(),
                    path.display()
                );
            }
            match replaces {
                Some(i) => b.jobs[i] = (w, job),
                None => b.jobs.push((w, job)),
            }
        }
        Ok(())
    }

    /// The resource of the binary's tool and script series: its first process's
    /// attributes, with `process.pid` while one process runs it (its series are the
    /// sums over all its processes).
    fn set_job_resource(&self, key: &BinaryKey) {
        let Some(b) = self.binaries.get(key) else {
            return;
        };
        if b.jobs.is_empty() {
            return;
        }
        let live: Vec<u32> = b
            .pids
            .iter()
            .copied()
            .filter(|p| self.procs.get(p).is_none_or(|p| p.exited.is_none()))
            .collect();
        // The one process running it; or, all gone, the last one that did.
        let one = match (&live[..], b.pids.len()) {
            ([one], _) => Some(*one),
            ([], 1) => b.pids.first().copied(),
            _ => None,
        };
        let facts = export::ProcessFacts {
            pid: one.unwrap_or(0),
            ..b.facts.clone()
        };
        let mut r = self.env.process(&facts);
        if one.is_none() {
            r.attributes.retain(|(k, _)| k != "process.pid");
        }
        self.registry.set_resource(b.resource, r);
    }

    /// `pid` exited (its last counts are read at the next collection).
    pub fn exited(&mut self, pid: u32) {
        self.ignored.remove(&pid);
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        if p.exited.is_some() {
            return;
        }
        p.exited = Some(Instant::now());
        let _ = self.registry.add(self.fam.up, p.resource, vec![], 0.0);
        let _ = self
            .registry
            .add(self.fam.exited, export::AGENT, vec![], 1.0);
        if self.verbose {
            eprintln!("gotap agent: pid {pid} exited");
        }
    }

    /// Forgets `pid` entirely: its series, its kernel counts, and its binary's probes
    /// if it was the last one running it.
    fn finish_exit(&mut self, pid: u32) {
        let Some(p) = self.procs.remove(&pid) else {
            return;
        };
        self.registry.remove_resource(p.resource);
        let mut drop_binary = false;
        if let Some(b) = self.binaries.get_mut(&p.key) {
            if let Some(set) = &b.set {
                let _ = set.forget(pid);
            }
            for (_, job) in &mut b.jobs {
                job.forget(pid);
            }
            b.pids.remove(&pid);
            drop_binary = b.pids.is_empty();
        }
        if drop_binary {
            if let Some(b) = self.binaries.remove(&p.key) {
                self.lost_gone += b.set.as_ref().map_or(0, ProbeSet::lost);
                self.registry.remove_resource(b.resource);
                self.reap(Box::new(b));
            }
            self.verdicts.remove(&p.key.file);
        } else {
            self.set_job_resource(&p.key);
        }
        self.set_binaries_gauge();
    }

    /// Lets probes go on the reaper's thread (a binary's, or a job's that a reload
    /// took away): each link costs the kernel an RCU grace period (40-100 ms) to
    /// release, and a binary with funccount and two tools has three, which the loop
    /// would otherwise wait out one by one (20 binaries whose last processes exited
    /// together held it 3 s). Inline if the thread is gone.
    fn reap(&self, probes: Box<dyn Send>) {
        if let Some(tx) = &self.reaper
            && let Err(std::sync::mpsc::SendError(probes)) = tx.send(probes)
        {
            drop(probes);
        }
    }

    fn set_binaries_gauge(&self) {
        let _ = self.registry.add(
            self.fam.binaries,
            export::AGENT,
            vec![],
            self.binaries.len() as f64,
        );
    }

    /// Reads every binary's counts into the registry; ends the linger of exited
    /// processes.
    pub fn collect(&mut self) {
        let linger = self.config.exit_linger();
        let mut lost = self.lost_gone;
        let mut done = Vec::new();
        for b in self.binaries.values_mut() {
            // The tools' and scripts' values: the binary's series stay with it until
            // its last process has gone (so its last values, after its processes
            // exited, are read too), a process's until its linger ends.
            let members = members_of(&b.pids, &self.procs);
            if !members.is_empty() {
                for (_, job) in &mut b.jobs {
                    job.collect(&self.registry, &members);
                }
            }
            if let Some(set) = &b.set {
                lost += set.lost();
                match set.read() {
                    Ok(counts) => {
                        for m in members.iter().filter(|m| m.read) {
                            if let Some(p) = self.procs.get(&m.pid) {
                                let points = call_points(set, counts.get(&m.pid), &p.patterns);
                                let _ = self.registry.replace(self.fam.calls, p.resource, points);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("gotap agent: reading counts: {e}");
                        continue;
                    }
                }
            }
            for m in &members {
                let Some(p) = self.procs.get_mut(&m.pid) else {
                    continue;
                };
                if p.final_read {
                    if p.exited.is_some_and(|t| t.elapsed() >= linger) {
                        done.push(m.pid);
                    }
                } else if p.exited.is_some() {
                    // These were its last: the kernel's copy can go.
                    p.final_read = true;
                    if let Some(set) = &b.set {
                        let _ = set.forget(m.pid);
                    }
                    for (_, job) in &mut b.jobs {
                        job.forget(m.pid);
                    }
                }
            }
        }
        let _ = self.registry.replace(
            self.fam.lost,
            export::AGENT,
            [(vec![], Value::Counter(lost as f64))],
        );
        for pid in done {
            self.finish_exit(pid);
        }
    }

    /// Compares the traced processes with `/proc`: finds the new, notices the gone.
    pub fn rescan(&mut self) {
        let live: BTreeSet<u32> = procfs::pids().into_iter().collect();
        let traced: Vec<(u32, u64)> = self
            .procs
            .iter()
            .filter(|(_, p)| p.exited.is_none())
            .map(|(pid, p)| (*pid, p.info.start_time))
            .collect();
        for (pid, start) in traced {
            if procfs::current_start_time(pid) != Some(start) {
                self.exited(pid);
            }
        }
        self.ignored.retain(|pid, _| live.contains(pid));
        for pid in live {
            if !self.procs.contains_key(&pid) {
                self.consider(pid, "scan", None);
            }
        }
    }

    /// Takes a new configuration: selects and patterns change, counts stay.
    pub fn reload(&mut self, config: Config) {
        if config.prometheus != self.config.prometheus || config.otlp != self.config.otlp {
            eprintln!("gotap agent: prometheus and otlp addresses change only on restart");
        }
        self.selects = config.selects();
        self.config = config;
        self.ignored.clear();
        let pids: Vec<u32> = self.procs.keys().copied().collect();
        for pid in pids {
            let Some(p) = self.procs.get(&pid) else {
                continue;
            };
            if p.exited.is_some() {
                continue;
            }
            let module = self
                .verdicts
                .get(&p.info.file)
                .cloned()
                .flatten()
                .and_then(|f| f.main_module);
            let Some(want) = wanted(&self.selects, &p.info, module.as_deref()) else {
                self.finish_exit(pid);
                continue;
            };
            let key = p.key.clone();
            if let Err(e) = self.arm_wanted(&key, &procfs::exe_path(pid), &want) {
                eprintln!("gotap agent: pid {pid}: {e}");
            }
            self.set_job_resource(&key);
            let probes = self.binaries.get(&key).map_or(0, Binary::probes);
            if let Some(p) = self.procs.get_mut(&pid) {
                p.patterns = want.patterns;
                p.works = want.works;
                let _ = self
                    .registry
                    .add(self.fam.probes, p.resource, vec![], probes as f64);
            }
        }
        self.drop_unwanted();
        self.rescan();
    }

    /// After a reload: each binary keeps only the functions, tools and scripts that a
    /// select of one of its live processes still asks for. The counts of a function
    /// left out stay in the kernel (it may come back); a job left out goes with its
    /// probes, and the series of the binary's jobs are read again at once, so those
    /// that stay are not missing from a scrape.
    fn drop_unwanted(&mut self) {
        let keys: Vec<BinaryKey> = self.binaries.keys().cloned().collect();
        for key in keys {
            let live: Vec<&Proc> = self
                .procs
                .values()
                .filter(|p| p.key == key && p.exited.is_none())
                .collect();
            let Some(first) = live.first().map(|p| p.info.pid) else {
                continue;
            };
            let patterns: BTreeSet<String> = live
                .iter()
                .flat_map(|p| p.patterns.iter().cloned())
                .collect();
            // One funclatency on every live process's functions, as `wanted` joins
            // them for one process.
            let works = joined_works(live.iter().flat_map(|p| p.works.iter()));
            let members = self
                .binaries
                .get(&key)
                .map(|b| members_of(&b.pids, &self.procs))
                .unwrap_or_default();
            let Some(b) = self.binaries.get_mut(&key) else {
                continue;
            };
            let narrowed = match &mut b.set {
                Some(set) => set
                    .narrow(&procfs::exe_path(first), &patterns)
                    .unwrap_or_else(|e| {
                        eprintln!("gotap agent: pid {first}: {e}");
                        false
                    }),
                None => false,
            };
            let (kept, mut gone): (Vec<_>, Vec<_>) = std::mem::take(&mut b.jobs)
                .into_iter()
                .partition(|(w, _)| works.contains(w));
            b.jobs = kept;
            let dropped = !gone.is_empty();
            for (_, job) in &mut gone {
                // Its series of each process go with it; the binary's, below.
                job.withdraw(&self.registry, &members);
            }
            // A funclatency that timed more functions than are asked for now: one on
            // those alone (its counts start again).
            let fewer: Vec<Work> = works
                .iter()
                .filter(|w| matches!(w, Work::FuncLatency(_)))
                .filter(|w| !b.jobs.iter().any(|(have, _)| have == *w))
                .cloned()
                .collect();
            if dropped {
                self.reap(Box::new(gone));
            }
            if !fewer.is_empty() {
                let want = Wanted {
                    patterns: Vec::new(),
                    works: fewer,
                };
                if let Err(e) = self.arm_wanted(&key, &procfs::exe_path(first), &want) {
                    eprintln!("gotap agent: pid {first}: {e}");
                }
            }
            if dropped && let Some(b) = self.binaries.get_mut(&key) {
                self.registry.remove_resource(b.resource);
                for (_, job) in &mut b.jobs {
                    job.collect(&self.registry, &members);
                }
                self.set_job_resource(&key);
            }
            if narrowed || dropped {
                let probes = self.binaries.get(&key).map_or(0, Binary::probes);
                for p in self.procs.values().filter(|p| p.key == key) {
                    let _ = self
                        .registry
                        .add(self.fam.probes, p.resource, vec![], probes as f64);
                }
            }
        }
    }

    /// Processes traced now (exited ones in their linger included).
    pub fn traced(&self) -> usize {
        self.procs.len()
    }
}

/// A thread that drops what it is sent, or `None` if none could start.
fn reaper() -> Option<std::sync::mpsc::Sender<Box<dyn Send>>> {
    let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Send>>();
    std::thread::Builder::new()
        .name("gotap-reaper".into())
        .spawn(move || rx.into_iter().for_each(drop))
        .ok()?;
    Some(tx)
}

/// The function patterns, tools and scripts of every select that matches the
/// process, or `None` when none does.
fn wanted(selects: &[Select], p: &ProcessInfo, module: Option<&str>) -> Option<Wanted> {
    let matching: Vec<&Select> = selects.iter().filter(|s| s.matches(p, module)).collect();
    if matching.is_empty() {
        return None;
    }
    let patterns: BTreeSet<String> = matching
        .iter()
        .filter(|s| s.work.is_none())
        .flat_map(|s| s.patterns())
        .collect();
    let works = joined_works(matching.iter().filter_map(|s| s.work.as_ref()));
    Some(Wanted {
        patterns: patterns.into_iter().collect(),
        works: works.into_iter().collect(),
    })
}

/// `works`, each once, funclatency's joined into one on all their functions (one
/// funclatency per binary).
fn joined_works<'w>(works: impl Iterator<Item = &'w Work>) -> BTreeSet<Work> {
    let mut out: BTreeSet<Work> = BTreeSet::new();
    let mut timed: Option<Work> = None;
    for w in works {
        match (w, &timed) {
            (Work::FuncLatency(_), Some(t)) => timed = Some(t.joined(w)),
            (Work::FuncLatency(_), None) => timed = Some(w.clone()),
            _ => {
                out.insert(w.clone());
            }
        }
    }
    out.extend(timed);
    out
}

/// funccount's series of one process: its `counts` of the functions of `set` that
/// its `patterns` match.
fn call_points(
    set: &ProbeSet,
    counts: Option<&Vec<(u32, u64)>>,
    patterns: &[String],
) -> Vec<(export::Labels, Value)> {
    counts
        .into_iter()
        .flatten()
        .filter_map(|(f, n)| {
            let name = set.function(*f)?;
            patterns
                .iter()
                .any(|pat| gobin::glob_match(pat, name))
                .then(|| {
                    (
                        vec![("function".to_string(), name.to_string())],
                        Value::Counter(*n as f64),
                    )
                })
        })
        .collect()
}

/// The processes `pids` of a binary, as its jobs collect them.
fn members_of(pids: &BTreeSet<u32>, procs: &HashMap<u32, Proc>) -> Vec<Member> {
    pids.iter()
        .filter_map(|pid| {
            let p = procs.get(pid)?;
            Some(Member {
                pid: *pid,
                resource: p.resource,
                alive: p.exited.is_none(),
                read: !p.final_read,
            })
        })
        .collect()
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(
    opts: &Options,
    signals: &sys::ServiceSignals,
    runner: Box<dyn Runner>,
) -> Result<(), AgentError> {
    let config = resolve(opts)?;
    let registry = Arc::new(Registry::new(config.max_series()));
    // The watcher first, then the scan: a process that starts meanwhile is found by
    // one or the other. The exporters start once the first view is complete.
    let mut watcher = match Watcher::start() {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("gotap agent: {e}; finding processes by rescanning /proc every second");
            None
        }
    };
    let collect_every = config.collect_every();
    let rescan_every = if watcher.is_some() {
        config.rescan_every()
    } else {
        config.rescan_every().min(Duration::from_secs(1))
    };
    let prometheus = config.prometheus.clone();
    let otlp = export::OtlpConfig::resolve(config.otlp.as_deref(), |k| std::env::var(k).ok())?;
    // The sender first: the scripts armed at the first scan send it their lines.
    let pusher = match otlp {
        Some(c) => {
            eprintln!(
                "gotap agent: pushing OTLP to {} every {:?}",
                c.metrics_url, c.interval
            );
            Some(export::push::Pusher::start(c, registry.clone()).map_err(AgentError::Thread)?)
        }
        None => None,
    };
    let mut agent = Agent::new(config, registry.clone(), opts.verbose)?
        .with_runner(runner)
        .with_logs(pusher.as_ref().map(export::push::Pusher::logger));
    agent.rescan();
    agent.collect();
    let server = match &prometheus {
        Some(addr) => Some(export::prometheus::Server::start(addr, registry.clone())?),
        None => None,
    };
    if let Some(s) = &server {
        eprintln!("gotap agent: metrics at http://{}/metrics", s.local_addr());
    }
    eprintln!("gotap agent: tracing {} Go processes", agent.traced());
    let mut next_collect = Instant::now() + collect_every;
    let mut next_rescan = Instant::now() + rescan_every;
    let mut lost_seen = 0;
    let mut events = Vec::new();
    loop {
        let now = Instant::now();
        let wait = next_collect.min(next_rescan).saturating_duration_since(now);
        let mut ready = [false; 2];
        {
            let mut fds = vec![signals.as_fd()];
            if let Some(w) = &watcher {
                fds.push(w.as_fd());
            }
            sys::wait_readable(&fds, wait.min(Duration::from_secs(1)), &mut ready)?;
        }
        match signals.pending() {
            Some(sys::ServiceSignal::Reload) => match resolve(opts) {
                Ok(c) => {
                    eprintln!("gotap agent: configuration reloaded");
                    agent.reload(c);
                }
                Err(e) => eprintln!("gotap agent: not reloaded: {e}"),
            },
            Some(sys::ServiceSignal::Stop) => break,
            None => {}
        }
        if let Some(w) = &mut watcher {
            events.clear();
            if let Err(e) = w.drain(|e| events.push(e)) {
                eprintln!("gotap agent: {e}");
            }
            for e in &events {
                match *e {
                    ProcEvent::Exec { pid, ktime_ns } => {
                        agent.consider(pid, "exec", Some(ktime_ns))
                    }
                    ProcEvent::Exit { pid, .. } => agent.exited(pid),
                }
            }
            let lost = w.lost();
            if lost > lost_seen {
                eprintln!(
                    "gotap agent: {} process events lost; rescanning /proc",
                    lost - lost_seen
                );
                lost_seen = lost;
                next_rescan = Instant::now();
            }
        }
        let now = Instant::now();
        if now >= next_rescan {
            agent.rescan();
            next_rescan = now + rescan_every;
        }
        if now >= next_collect {
            agent.collect();
            next_collect = now + collect_every;
        }
    }
    // The last counts, then the exporters, within a second in all.
    let t0 = Instant::now();
    agent.collect();
    drop(watcher);
    if let Some(p) = pusher {
        let left = Duration::from_millis(700).saturating_sub(t0.elapsed());
        let r = p.shutdown(left);
        if r.unsent_at_exit > 0 {
            eprintln!(
                "gotap agent: {} OTLP batches not sent at exit",
                r.unsent_at_exit
            );
        }
    }
    if let Some(s) = server {
        s.stop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::FileId;

    #[test]
    fn one_funclatency_times_every_matching_selects_functions() {
        let p = ProcessInfo {
            pid: 1,
            exe: "/srv/api".into(),
            file: FileId { dev: 1, ino: 2 },
            cgroup: "/".into(),
            container_id: None,
            pod_uid: None,
            mnt_ns: 0,
            pid_ns: 0,
            start_time: 0,
        };
        let timed = |exe: &str, pats: &[&str]| Select {
            exe: Some(exe.into()),
            work: Some(Work::FuncLatency(
                pats.iter().map(|s| s.to_string()).collect(),
            )),
            ..Select::default()
        };
        let selects = [
            timed("/srv/*", &["main.a", "main.b"]),
            timed("/srv/api", &["main.b", "net/http.*"]),
            timed("/other", &["main.c"]),
            Select {
                work: Some(Work::Tool("offcpu".into())),
                ..Select::default()
            },
        ];
        let want = wanted(&selects, &p, None).unwrap();
        assert!(want.patterns.is_empty(), "{:?}", want.patterns);
        assert_eq!(
            want.works,
            [
                Work::Tool("offcpu".into()),
                Work::FuncLatency(vec!["main.a".into(), "main.b".into(), "net/http.*".into()]),
            ]
        );
        // A job on fewer functions is the same job, joined; another tool is not.
        let fewer = Work::FuncLatency(vec!["main.a".into()]);
        assert!(fewer.same_job(&want.works[1]));
        assert_eq!(fewer.joined(&want.works[1]), want.works[1]);
        assert!(!fewer.same_job(&want.works[0]));
    }
}
