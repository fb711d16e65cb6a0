//! The front of the pipeline: the script parsed (the Go tapset merged in), the
//! binary it probes found and opened, the script checked against it, compiled, and
//! its programs loaded. Errors come back rendered against the script's sources, at
//! their places, before anything touches the kernel (but the verifier's refusal,
//! which is said on the script line whose code it stopped at).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

use lang::ProbeKind;

use super::Plan;
use crate::args::{Stage, Target};
use crate::binary::Binary;
use crate::nobinary::{NEEDS_A_BINARY, NoBinary};
use crate::session::{self, Armed, Traced};

/// A parsed script, with the Go tapset merged in when it uses it.
pub struct Parsed {
    pub sm: lang::SourceMap,
    pub script: lang::ast::Script,
    pub tapset: Option<lang::FileId>,
}

/// The script parsed (`-d ast` prints it).
pub(super) fn parse(plan: &Plan) -> Result<Parsed> {
    session::phase("parse");
    let mut sm = lang::SourceMap::new();
    let file = sm.add(plan.name.clone(), plan.text.clone());
    let opts = lang::ParseOptions {
        args: Some(plan.args.clone()),
    };
    let (mut script, diags) = lang::parse(file, &plan.text, &opts);
    if lang::has_errors(&diags) {
        bail!("{}", sm.render_all(&diags).trim_end());
    }
    // A tool traces every process of its binary when there is no -c or -x: the
    // tapset's bare `process` probes are bound to it.
    let bound = match (&plan.tool, &plan.target) {
        (Some(t), Target::Any) => t.binary.as_ref().map(|p| p.display().to_string()),
        _ => None,
    };
    let tapset = crate::tapset::add_if_used(&mut sm, &mut script, bound.as_deref())?;
    if let Some(t) = &plan.tool
        && plan.verbose > 0
    {
        eprintln!(
            "{}: the script (the Go tapset is `gotap --tapset`):\n{}",
            t.name, plan.text
        );
    }
    if plan.shows(Stage::Ast) {
        eprint!("{}", lang::print_script(&script));
    }
    Ok(Parsed { sm, script, tapset })
}

/// The script checked without a binary, when the plan names none: its types and
/// diagnostics.
pub(super) type Alone = Option<(lang::TypeInfo, Vec<lang::Diagnostic>)>;

/// The binary the trace probes, opened, if it probes one: a tool's (its `BIN`, or
/// the `-c`/`-x` target's), or the one a script's probe points name, found after
/// checking the script without it (that check is returned too).
pub(super) fn binary(plan: &Plan, parsed: &Parsed) -> Result<(Option<Binary>, Alone)> {
    session::phase("check");
    if let Some(t) = &plan.tool {
        let path = session::tool_binary(t.name, &t.binary, &plan.target)?;
        return Ok((Some(Binary::open(&path)?), None));
    }
    let nobin = NoBinary::default();
    let (info, mut diags) = lang::check_with(&parsed.script, &nobin, plan.limits);
    crate::tapset::keep_user_warnings(&mut diags, parsed.tapset);
    let bin = if nobin.asked() {
        Some(binary_after_own_errors(parsed, &plan.target, &diags)?)
    } else {
        None
    };
    Ok((bin, Some((info, diags))))
}

/// The script checked against the binary it probes (every answer the check without
/// one could not have is there, and so are the script's own errors), or its check
/// without one; warnings said, `-d types` printed.
pub(super) fn check(
    plan: &Plan,
    parsed: &Parsed,
    target: Option<&codegen::GoTarget<'_>>,
    alone: Alone,
) -> Result<lang::TypeInfo> {
    let (info, mut diags) = match (target, alone) {
        (Some(t), _) => {
            let (info, mut diags) = lang::check_with(&parsed.script, t, plan.limits);
            crate::tapset::keep_user_warnings(&mut diags, parsed.tapset);
            (info, diags)
        }
        (None, Some(checked)) => checked,
        (None, None) => bail!("internal error: a tool's trace without its binary"),
    };
    // In the order of the source, whichever pass found them.
    diags.sort_by_key(|d| d.span);
    let text = parsed.sm.render_all(&diags);
    if lang::has_errors(&diags) {
        match (&plan.tool, target) {
            (Some(tool), Some(t)) => bail!(
                "{} cannot trace {}:\n{}",
                tool.name,
                t.path(),
                text.trim_end()
            ),
            _ => bail!("{}", text.trim_end()),
        }
    }
    for w in target.iter().flat_map(|t| t.warnings()) {
        eprintln!("WARNING: {w}");
    }
    if !text.is_empty() {
        eprint!("{text}");
    }
    if plan.shows(Stage::Types) {
        eprint!("{}", lang::dump_types(&parsed.script, &info));
    }
    Ok(info)
}

/// The binary a script that needs one probes, opened. If it cannot be, the script's
/// own errors (`diags`, from the check without a binary) are said first, at their
/// places, then why there is no binary. Not among them: what needs the binary, and
/// the types the check could not infer, since the bodies of process probes, where
/// they may be set, were not checked.
fn binary_after_own_errors(
    parsed: &Parsed,
    target: &Target,
    diags: &[lang::Diagnostic],
) -> Result<Binary> {
    let e = match script_binary(&parsed.script, target) {
        Ok(b) => return Ok(b),
        Err(e) => e,
    };
    let mut own: Vec<lang::Diagnostic> = diags
        .iter()
        .filter(|d| {
            d.severity == lang::Severity::Error
                && d.message != NEEDS_A_BINARY
                && !d.message.starts_with("cannot infer the ")
        })
        .cloned()
        .collect();
    if own.is_empty() {
        return Err(e);
    }
    own.sort_by_key(|d| d.span);
    bail!("{}\nerror: {e:#}", parsed.sm.render_all(&own).trim_end())
}

/// The one executable the script's process probes name (relative paths from the
/// current directory), or the `-c`/`-x` target's, opened. With `-x PID`, a path that
/// names the process's executable is that process's file, even when a redeploy has
/// replaced or removed what is at the path since it started.
fn script_binary(script: &lang::ast::Script, target: &Target) -> Result<Binary> {
    let (named, bare) = named_binaries(script)?;
    let target_path = session::target_binary(target)?;
    let mut others: Vec<PathBuf> = Vec::new();
    let mut names_target = false;
    for p in &named {
        if target_path
            .as_deref()
            .is_some_and(|t| crate::binary::names(p, t))
        {
            names_target = true;
            continue;
        }
        let canon =
            std::fs::canonicalize(p).with_context(|| format!("process(\"{}\")", p.display()))?;
        if !others.contains(&canon) {
            others.push(canon);
        }
    }
    match (target_path, others.len()) {
        (Some(t), 0) => {
            let bin = Binary::open(&t)?;
            if let Target::Pid(pid) = target
                && bin.is_replaced()
            {
                eprintln!(
                    "gotap: note: {} is not the file process {pid} runs (replaced, removed, or in another mount namespace): probing the one it runs, through /proc/{pid}/exe",
                    bin.path.display()
                );
            }
            Ok(bin)
        }
        (_, 1) if !bare && !names_target => Binary::open(&others[0]),
        (None, 0) if bare => bail!("process probes without a path need -c CMD or -x PID"),
        (None, 0) => bail!(
            "the script probes no Go binary: name one with process(\"BIN\"), -c CMD or -x PID"
        ),
        (t, _) => {
            let mut all: Vec<String> = t.iter().map(|t| t.display().to_string()).collect();
            all.extend(others.iter().map(|p| p.display().to_string()));
            bail!(
                "the script probes several binaries ({}); gotap traces one binary per run",
                all.join(", ")
            )
        }
    }
}

/// The paths the script's process probes name (absolute, not yet resolved), and
/// whether any names none.
fn named_binaries(script: &lang::ast::Script) -> Result<(Vec<PathBuf>, bool)> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut bare = false;
    for item in &script.items {
        let points = match item {
            lang::ast::Item::Probe(p) => &p.points,
            lang::ast::Item::Alias(a) => &a.points,
            _ => continue,
        };
        for pt in points {
            if let Ok(ProbeKind::Process(pp)) = lang::probe::probe_kind(pt) {
                match pp.path {
                    Some(p) => {
                        let p = std::path::absolute(Path::new(&p))
                            .with_context(|| format!("process(\"{p}\")"))?;
                        if !paths.contains(&p) {
                            paths.push(p);
                        }
                    }
                    None => bare = true,
                }
            }
        }
    }
    Ok((paths, bare))
}

/// The script compiled for the process `traced` follows, sized for this machine's
/// CPUs (`-d bpf` prints it); with no binary, only its globals' storage and its
/// user-space probes.
pub(super) fn compile(
    plan: &Plan,
    parsed: &Parsed,
    info: &lang::TypeInfo,
    target: Option<&codegen::GoTarget<'_>>,
    traced: &Traced,
) -> Result<codegen::Compiled> {
    session::phase("compile");
    let opts = codegen::Options {
        sources: Some(&parsed.sm),
        target_pid: traced.pid(),
        possible_cpus: sys::possible_cpus().map_or(128, |n| n as u32),
        // A script's printed records carry their goroutine for --otlp's logs.
        goids: plan.export.otlp.is_some() && plan.tool.is_none(),
        ..codegen::Options::default()
    };
    let compiled = match target {
        Some(t) => codegen::compile_full(&parsed.script, info, t, &opts),
        None => codegen::compile_user(&parsed.script, info, &opts).map(|spec| codegen::Compiled {
            spec,
            spans: Vec::new(),
            event_probes: Vec::new(),
            event_goids: Vec::new(),
        }),
    }
    .map_err(|d| anyhow::anyhow!("{}", parsed.sm.render_all(&d).trim_end()))?;
    if plan.shows(Stage::Bpf) {
        eprint!("{}", compiled.disassemble_with_source(&parsed.sm));
    }
    Ok(compiled)
}

/// The maps created and the programs through the verifier (`-d verifier` prints its
/// log), the scalar globals' first values written. A refusal is said on the script
/// line whose code the verifier stopped at.
pub(super) fn load(
    plan: &Plan,
    compiled: &codegen::Compiled,
    sm: &lang::SourceMap,
) -> Result<Armed> {
    session::phase("load");
    let spec = &compiled.spec;
    let log = plan.shows(Stage::Verifier);
    let armed = Armed::load_script(spec, log).map_err(|e| load_error(e, compiled, sm))?;
    if log {
        for p in &armed.programs {
            eprintln!("{}:\n{}", p.name(), p.verifier_log().unwrap_or(""));
        }
    }
    armed.init_scalars(spec)?;
    Ok(armed)
}

fn load_error(
    e: anyhow::Error,
    compiled: &codegen::Compiled,
    sm: &lang::SourceMap,
) -> anyhow::Error {
    if let Some(sys::Error::Verifier(v)) = e.downcast_ref::<sys::Error>()
        && let Some(i) = compiled
            .spec
            .object
            .programs
            .iter()
            .position(|p| p.name == v.name)
    {
        let d = compiled.verifier_diagnostic(i, &v.log);
        return anyhow::anyhow!("{}", sm.render(&d).trim_end());
    }
    e
}
