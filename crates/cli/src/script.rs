//! `gotap SCRIPT.stp` and `gotap -e 'SCRIPT'`: the script's plan for the pipeline
//! (`pipeline/`, which parses, checks, compiles, loads, attaches and traces), and
//! what the script's output is. As text (stap's): each record as its format prints
//! it, stacks as their addresses or frames, and at the end the globals the script
//! wrote but never read. As JSON (`-f json`, bpftrace's shapes, see
//! `runtime::json`): the same records as `printf` objects, and at the end every
//! global, histogram and count. Either way `--folded`/`--svg` draw the stacks that
//! key arrays and statistics.

use anyhow::{Context, Result};

use runtime::events::{Record, Text};
use runtime::format::Cuts;

use crate::args::{Format, ScriptArgs, ScriptSource};
use crate::pipeline::{self, Consumer, Cx, Ending, Plan};

pub fn run(a: &ScriptArgs) -> Result<i32> {
    let (name, text) = match &a.source {
        Some(ScriptSource::File(p)) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?,
        ),
        Some(ScriptSource::Inline(s)) => ("<input>".to_string(), s.clone()),
        None => anyhow::bail!("no script given"),
    };
    let mut limits = lang::Limits::default();
    for d in &a.defines {
        limits.define(d).map_err(anyhow::Error::msg)?;
    }
    let mut files = Vec::new();
    files.extend(a.folded.clone().map(|p| ("--folded", p)));
    files.extend(a.svg.clone().map(|p| ("--svg", p)));
    let plan = Plan {
        name,
        text,
        args: a.args.clone(),
        limits,
        target: a.target.clone(),
        tool: None,
        dumps: a.dump.clone(),
        verbose: a.verbose,
        files,
        output: a.output.clone(),
        export: a.export.clone(),
    };
    let mut out = Output {
        format: a.format,
        text: Text::new(limits.max_printf as usize),
        line: Vec::new(),
        a,
    };
    pipeline::run(&plan, &mut out)
}

/// The script's output.
struct Output<'a> {
    format: Format,
    text: Text,
    /// JSON: a user-space probe's line not yet ended.
    line: Vec<u8>,
    a: &'a ScriptArgs,
}

impl Consumer for Output<'_> {
    fn record(&mut self, rec: &Record<'_>, cx: &mut Cx<'_, '_, '_>) -> Result<bool> {
        let written = match self.format {
            Format::Text => self.text.write(rec, cx.symbols.stacks(), cx.out),
            Format::Json => {
                self.line.clear();
                let r = self.text.write(rec, cx.symbols.stacks(), &mut self.line);
                runtime::json::printf(&self.line, cx.out);
                self.line.clear();
                r
            }
        };
        written.map_err(|e| anyhow::anyhow!("bad event record: {e}"))?;
        Ok(false)
    }

    fn printed(&mut self, text: &[u8], out: &mut Vec<u8>) {
        match self.format {
            Format::Text => out.extend_from_slice(text),
            Format::Json => {
                self.line.extend_from_slice(text);
                let ended = self.line.iter().rposition(|b| *b == b'\n');
                if let Some(end) = ended {
                    for l in self.line[..=end].split_inclusive(|b| *b == b'\n') {
                        runtime::json::printf(l, out);
                    }
                    self.line.drain(..=end);
                }
            }
        }
    }

    fn attached(&mut self, probes: usize, out: &mut Vec<u8>) {
        if self.format == Format::Json {
            runtime::json::count("attached_probes", probes as u64, out);
        }
    }

    fn finish(&mut self, end: &mut Ending<'_, '_, '_>) -> Result<()> {
        let specs = &end.spec.globals;
        let mut out = std::mem::take(end.out);
        let written = match self.format {
            Format::Text => {
                runtime::interp::write_unread_globals(specs, &mut end.storage(), &mut out)
            }
            Format::Json => {
                if !self.line.is_empty() {
                    runtime::json::printf(&self.line, &mut out);
                }
                let mine: Vec<bpf::script::GlobalSpec> =
                    end.globals.iter().map(|g| (*g).clone()).collect();
                let w = runtime::json::globals(&mine, &mut end.storage(), &mut out);
                runtime::json::count("lost_events", end.tally.lost_events, &mut out);
                let mut cuts = self.text.cuts();
                cuts.add(end.tally.user_cuts);
                runtime::json::cuts(cuts, &mut out);
                w
            }
        };
        *end.out = out;
        written?;
        flame_graphs(self.a, end)
    }

    fn cuts(&self) -> Cuts {
        self.text.cuts()
    }
}

/// `--folded FILE` and `--svg FILE`: every array or statistic keyed by
/// `ubacktrace()`, as collapsed stacks and as a flame graph.
fn flame_graphs(a: &ScriptArgs, end: &mut Ending<'_, '_, '_>) -> Result<()> {
    if a.folded.is_none() && a.svg.is_none() {
        return Ok(());
    }
    let folded = end.symbols.folded(end.spec, end.maps)?;
    if folded.is_empty() {
        eprintln!(
            "WARNING: no array or statistic keyed by ubacktrace() has elements: the flame graph is empty"
        );
    }
    crate::session::write_flame_graph(
        &folded,
        a.folded.as_deref(),
        a.svg.as_deref(),
        ("gotap", "samples"),
    )
}
