//! What a select runs besides funccount: a tool of the one-shot CLI or a script, on
//! the probes of one binary shared by its processes. The agent does not compile
//! scripts itself (the pipeline that does lives in the CLI): the CLI hands it a
//! [`Runner`], which arms a [`Work`] on a binary and returns a [`Job`] whose values
//! the agent collects into its registry every `collect_ms`: a job's series are the
//! binary's (the sums over its processes) or each process's (under the resource of
//! each [`Member`]), as the tool's metrics are.

use std::collections::BTreeSet;
use std::path::Path;

use export::{Registry, ResourceId};

/// A tool (other than funccount) or a script, as a select names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    /// A tool by its command's name (`stackgrow`).
    Tool(String),
    /// `funclatency` on the functions that match these patterns (sorted, each once).
    FuncLatency(Vec<String>),
    /// A script: its name in messages (its file, or where its text is in the
    /// configuration) and its text.
    Script { name: String, text: String },
}

impl std::fmt::Display for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Tool(t) => write!(f, "tool {t}"),
            Work::FuncLatency(p) => write!(f, "tool funclatency ({})", p.join(", ")),
            Work::Script { name, .. } => write!(f, "script {name}"),
        }
    }
}

impl Work {
    /// Whether one job on a binary does both `self` and `other`'s work, once joined
    /// ([`Work::joined`]): funclatency's patterns are one program's functions.
    pub fn same_job(&self, other: &Work) -> bool {
        match (self, other) {
            (Work::FuncLatency(_), Work::FuncLatency(_)) => true,
            _ => self == other,
        }
    }

    /// The work of one job that does `self`'s and `other`'s (of the [`same_job`]):
    /// funclatency on both's patterns.
    ///
    /// [`same_job`]: Work::same_job
    pub fn joined(&self, other: &Work) -> Work {
        match (self, other) {
            (Work::FuncLatency(a), Work::FuncLatency(b)) => {
                let all: BTreeSet<&String> = a.iter().chain(b).collect();
                Work::FuncLatency(all.into_iter().cloned().collect())
            }
            _ => self.clone(),
        }
    }
}

/// A process of a job's binary, as a collection sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub pid: u32,
    /// The resource of the process's own series.
    pub resource: ResourceId,
    pub alive: bool,
    /// Whether its own values are read at this collection: not once an exited
    /// process's last values have been (its series stay until its linger ends).
    pub read: bool,
}

/// One work's probes on one binary, and the metrics they feed.
pub trait Job: Send {
    /// Probes in place.
    fn probes(&self) -> usize;
    /// Reads the kernel's values into `registry`: the binary's series under the
    /// resource the job was armed with, a process's under its member's. `members`
    /// are the binary's processes (never none); a live one gives the load bias.
    fn collect(&mut self, registry: &Registry, members: &[Member]);
    /// Drops what the kernel keeps for process `pid`, exited and read a last time.
    fn forget(&mut self, _pid: u32) {}
    /// Takes the job's series of each process away from `members`' resources: the
    /// job goes while they live (a reload no longer asks for it). Its series of the
    /// binary are the caller's to take away, with the binary's resource.
    fn withdraw(&mut self, _registry: &Registry, _members: &[Member]) {}
}

/// The member whose maps give a binary's load bias: a live one if any is left.
pub fn bias_member(members: &[Member]) -> Option<&Member> {
    members.iter().find(|m| m.alive).or(members.first())
}

/// Arms works on binaries: the CLI's script pipeline.
pub trait Runner {
    /// Compiles `work` for the executable at `exe` (a `/proc/PID/exe`), places its
    /// probes for every process of that file, and registers its metrics under
    /// `resource`; what a script prints goes to `logs` (OTLP log records, with
    /// `--otlp`). The error is said as the script's diagnostics are.
    fn arm(
        &self,
        work: &Work,
        exe: &Path,
        registry: &Registry,
        resource: ResourceId,
        logs: Option<&export::push::Logger>,
    ) -> Result<Box<dyn Job>, String>;
}

/// The syntax errors of a script's `text`, rendered at their places under `name`, or
/// `None` when it parses: checked when the configuration is read, before any process
/// is found (its types are checked against each binary it runs on).
pub fn parse_error(name: &str, text: &str) -> Option<String> {
    let mut sm = lang::SourceMap::new();
    let file = sm.add(name.to_string(), text.to_string());
    let opts = lang::ParseOptions {
        args: Some(Vec::new()),
    };
    let (_, diags) = lang::parse(file, text, &opts);
    lang::has_errors(&diags).then(|| sm.render_all(&diags).trim_end().to_string())
}
