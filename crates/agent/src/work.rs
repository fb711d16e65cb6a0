//! What a select runs besides funccount: a tool of the one-shot CLI or a script, on
//! the probes of one binary shared by its processes. The agent does not compile
//! scripts itself (the pipeline that does lives in the CLI): the CLI hands it a
//! [`Runner`], which arms a [`Work`] on a binary and returns a [`Job`] whose values
//! the agent collects into its registry every `collect_ms`.

use std::path::Path;

use export::{Registry, ResourceId};

/// A tool (other than funccount) or a script, as a select names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    /// A tool by its command's name (`stackgrow`).
    Tool(String),
    /// A script: its name in messages (its file, or where its text is in the
    /// configuration) and its text.
    Script { name: String, text: String },
}

impl std::fmt::Display for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Tool(t) => write!(f, "tool {t}"),
            Work::Script { name, .. } => write!(f, "script {name}"),
        }
    }
}

/// One work's probes on one binary, and the metrics they feed.
pub trait Job {
    /// Probes in place.
    fn probes(&self) -> usize;
    /// Reads the kernel's values into `registry` (under the resource the job was
    /// armed with); `pid` is a live process of the binary, for its load bias.
    fn collect(&mut self, registry: &Registry, pid: u32);
}

/// Arms works on binaries: the CLI's script pipeline.
pub trait Runner {
    /// Compiles `work` for the executable at `exe` (a `/proc/PID/exe`), places its
    /// probes for every process of that file, and registers its metrics under
    /// `resource`; the error is said as the script's diagnostics are.
    fn arm(
        &self,
        work: &Work,
        exe: &Path,
        registry: &Registry,
        resource: ResourceId,
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
