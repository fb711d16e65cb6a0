//! What `gotap agent` runs on a binary besides funccount (its [`agent::Runner`]): a
//! tool's script or a user's, through the same front as the one-shot pipeline
//! (parsed with the Go tapset, checked and compiled against the binary, loaded),
//! its probes placed once for every process of the file (`sys::Scope::All`, through
//! `/proc/PID/exe`). Nothing is sent through the ring buffer that the agent reads:
//! a job's values are its globals, read from the kernel's maps at each collection —
//! a script's every global as `export::script` shapes them (as the one-shot
//! `--prometheus` does), a tool's counts under the documented names
//! (`export::names`). Bare `process` probe points mean the binary the select found.

use anyhow::{Result, bail};
use std::path::Path;

use agent::{Job, Work};
use export::{FamilyId, Registry, ResourceId, names};

use crate::binary::Binary;
use crate::maps::KernelGlobals;
use crate::session::Armed;
use crate::symbols::Symbols;
use crate::tools::{gcstat, stackgrow};

/// The CLI's pipeline, lent to the agent.
pub struct Runner;

impl agent::Runner for Runner {
    fn arm(
        &self,
        work: &Work,
        exe: &Path,
        registry: &Registry,
        resource: ResourceId,
    ) -> Result<Box<dyn Job>, String> {
        arm(work, exe, registry, resource)
            .map(|j| Box::new(j) as Box<dyn Job>)
            .map_err(|e| format!("{e:#}"))
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
}

/// A work's programs in the kernel, on one binary.
struct ArmedJob {
    bin: Binary,
    spec: bpf::script::ScriptSpec,
    armed: Armed,
    exports: Exports,
    resource: ResourceId,
    warned: bool,
}

/// The script of `work` on `bin`, named for messages.
fn script_of(work: &Work, bin: &Binary) -> Result<(String, String)> {
    match work {
        Work::Tool(t) if t == "stackgrow" => {
            Ok(("<stackgrow>".into(), stackgrow::AGENT_SCRIPT.to_string()))
        }
        Work::Tool(t) if t == "gcstat" => Ok(("<gcstat>".into(), gcstat::agent_script(bin))),
        Work::Tool(t) => bail!("the agent does not run tool {t}"),
        Work::Script { name, text } => Ok((name.clone(), text.clone())),
    }
}

fn arm(work: &Work, exe: &Path, registry: &Registry, resource: ResourceId) -> Result<ArmedJob> {
    let bin = Binary::open(exe)?;
    let (name, text) = script_of(work, &bin)?;
    let mut sm = lang::SourceMap::new();
    let file = sm.add(name, text.clone());
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
            for n in [&names::GC_CYCLES, &names::GC_PAUSE] {
                registry.register(&n.desc())?;
            }
            Exports::GcStat
        }
        Work::Tool(_) => Exports::StackGrow(registry.register(&names::STACK_GROWTHS.desc())?),
    };
    armed.attach_script(&bin, sys::Scope::All)?;
    drop(target);
    Ok(ArmedJob {
        spec: compiled.spec,
        bin,
        armed,
        exports,
        resource,
        warned: false,
    })
}

impl Job for ArmedJob {
    fn probes(&self) -> usize {
        self.armed.probe_count()
    }

    fn collect(&mut self, registry: &Registry, pid: u32) {
        let Ok(go) = self.bin.go() else {
            return;
        };
        let mut symbols = Symbols::new(
            Some((&self.bin, &go)),
            &self.spec,
            &self.armed.maps,
            Some(pid),
        );
        symbols.learn_bias();
        let r = match &self.exports {
            Exports::Script(m) => m
                .collect(
                    registry,
                    &mut KernelGlobals {
                        maps: &self.armed.maps,
                        stacks: &mut symbols,
                    },
                )
                .map_err(|e| e.to_string()),
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
            Exports::GcStat => {
                let mut store = KernelGlobals {
                    maps: &self.armed.maps,
                    stacks: &mut symbols,
                };
                gcstat::agent_export(&self.spec.globals, &mut store)
                    .map_err(|e| format!("{e:#}"))
                    .and_then(|values| {
                        for (name, v) in values {
                            let f = registry.register(&name.desc()).map_err(|e| e.to_string())?;
                            registry
                                .replace(f, self.resource, [(Vec::new(), v)])
                                .map_err(|e| e.to_string())?;
                        }
                        Ok(())
                    })
            }
        };
        if let Err(e) = r
            && !self.warned
        {
            self.warned = true;
            eprintln!("gotap agent: {}: {e}", self.bin.path.display());
        }
    }
}
