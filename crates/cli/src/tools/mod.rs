//! The ready tools built on the Go runtime tapset: `stackgrow`, `gcstat`,
//! `goroutines` and `offcpu`. Each one is a script in the probe language (the tapset's
//! aliases plus probes that aggregate in the kernel or send a record of values per
//! event and, for some, a backtrace), run through the same pipeline as any script
//! (`pipeline/`), and a [`Consumer`] in Rust that reads those records' values and the
//! script's globals as they are (numbers, frames), keeps the tool's tables, and prints
//! them live and at the end. The scripts are printed by `-v`, so what a tool does can
//! be copied into a script.
//!
//! Two tools are not scripts, as `funccount` is not: `funclatency` is one hand-built
//! pair of programs (entry and every `RET`, matched by goroutine and stack depth,
//! `codegen::funclatency`) and `profile` a perf `cpu-clock` program per CPU
//! (`codegen::profile`), which the language has no probe point for yet; both load and
//! attach through `session` as the pipeline does, and read what they need from it.

pub mod funclatency;
pub mod gcstat;
mod goroutines;
pub mod memory;
pub mod offcpu;
mod profile;
pub mod stackgrow;

pub use funclatency::Unit;

use anyhow::Result;
use std::path::PathBuf;

use crate::args::Target;
use crate::pipeline::{self, Consumer, Plan, ToolPlan};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    StackGrow,
    GcStat,
    Goroutines,
    FuncLatency,
    OffCpu,
    Profile,
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
    /// `--prometheus`, `--otlp`: the tool's counts exported while it runs.
    pub export: crate::metrics::ExportFlags,
    /// `funclatency`: the function patterns, and the histograms' unit.
    pub patterns: Vec<String>,
    pub unit: Unit,
    /// `--pprof FILE`: a pprof profile written at the end.
    pub pprof: Option<std::path::PathBuf>,
    /// `profile -F HZ`: samples a second on each CPU.
    pub hz: u64,
}

pub fn run(a: &ToolArgs) -> Result<i32> {
    match a.tool {
        Tool::StackGrow => stackgrow::run(a),
        Tool::GcStat => gcstat::run(a),
        Tool::Goroutines => goroutines::run(a),
        Tool::FuncLatency => funclatency::run(a),
        Tool::OffCpu => offcpu::run(a),
        Tool::Profile => profile::run(a),
    }
}

/// Traces with the tool's `script` (which names the tapset's probes) until the
/// command ends, the process goes or a signal comes, feeding `consumer`, and returns
/// the command's exit status.
pub fn trace(
    a: &ToolArgs,
    name: &'static str,
    script: &str,
    consumer: &mut dyn Consumer,
) -> Result<i32> {
    let mut files = Vec::new();
    files.extend(a.folded.clone().map(|p| ("--folded", p)));
    files.extend(a.svg.clone().map(|p| ("--svg", p)));
    files.extend(a.pprof.clone().map(|p| ("--pprof", p)));
    let plan = Plan {
        name: format!("<{name}>"),
        text: script.to_string(),
        args: Vec::new(),
        limits: lang::Limits::default(),
        target: a.target.clone(),
        tool: Some(ToolPlan {
            name,
            binary: a.binary.clone(),
        }),
        dumps: Vec::new(),
        verbose: a.verbose,
        files,
        output: a.output.clone(),
        export: a.export.clone(),
    };
    pipeline::run(&plan, consumer)
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

/// The global `name` of the tool's script.
pub fn global<'g>(
    specs: &'g [bpf::script::GlobalSpec],
    name: &str,
) -> Result<&'g bpf::script::GlobalSpec> {
    specs
        .iter()
        .find(|g| g.name == name)
        .ok_or_else(|| anyhow::anyhow!("internal error: the tool's script has no global {name}"))
}

/// A tool's stacks written as `--folded` and `--svg` ask, each file named in its
/// error.
fn write_flame(
    folded: &runtime::flame::Folded,
    folded_to: &Option<PathBuf>,
    svg_to: &Option<PathBuf>,
    title: &str,
    unit: &str,
) -> Result<()> {
    use anyhow::Context;
    if let Some(p) = folded_to {
        let mut f =
            std::fs::File::create(p).with_context(|| format!("--folded {}", p.display()))?;
        folded
            .write_folded(&mut f)
            .with_context(|| format!("--folded {}", p.display()))?;
    }
    if let Some(p) = svg_to {
        let mut f = std::fs::File::create(p).with_context(|| format!("--svg {}", p.display()))?;
        folded
            .write_svg(title, unit, &mut f)
            .with_context(|| format!("--svg {}", p.display()))?;
    }
    Ok(())
}
