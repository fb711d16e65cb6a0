//! Lowers what a user asked for (a script, or a ready tool such as `funccount`) to eBPF
//! programs against one Go binary: probe placement, register use, built-ins, location
//! expressions, goroutine and stack-walk code.
//!
//! A checked script becomes a [`bpf::script::ScriptSpec`] in an ordered pipeline, one
//! pass per file:
//!
//! ```text
//! ast::Script + TypeInfo ──storage.rs──▶ maps, global layout (bpf::stats slots)
//!   ──compile_full: per probe, group_sites ▶ entry_programs (entry.rs) ▶ per group,
//!     lower_bodies (lower.rs + window.rs, access.rs, builtins.rs, format.rs,
//!     backtrace.rs) ▶ attach──▶ finish: Compiled { ScriptSpec, insn → span }
//!                                       (-d bpf: disassemble_with_source)
//! ```
//!
//! `begin`, `end` and timer probes are not compiled: they are listed in
//! `user_probes` and run in user space against the same globals. A sampling probe
//! (`timer.profile`, `timer.hz(N)`) is one program per point, run by a perf
//! `cpu-clock` event on every CPU ([`bpf::script::SampleSpec`]): it first drops the
//! samples of other processes, then reads the traced thread's user registers (those
//! the kernel saved at its entry when the sample found it in a system call or a
//! fault: `sample.rs`, shared with `gotap profile`), so that its body sees what a
//! process probe sees: the traced thread's registers, its `g`, its stack; and
//! `user_mode()` says which it was.
//!
//! How the kernel side works, and its limits:
//! - Programs are `BPF_PROG_TYPE_KPROBE`, for perf-event or multi uprobes alike. A
//!   body that reads context (`$x`, backtraces, `@defined`, `@entry`) gets one
//!   program per site, since where `$x` lives differs per address; any other body is
//!   one program attached at all its sites, each with its own cookie (consecutive
//!   per program), from which `pp()` and `probefunc()` pick their site's string.
//! - Locals, strings and records live in a per-CPU scratch map (R9), not on the
//!   512-byte stack; a uprobe program is not re-entered on one CPU, but a preempted
//!   one could share its scratch with another program on that CPU.
//! - Records go out with `bpf_ringbuf_output(…, BPF_RB_NO_WAKEUP)`: built in
//!   scratch, then copied. A reservation held while arguments are evaluated would
//!   have to be released on every error path; a failed output is counted in
//!   `counters[LOST_EVENTS]`.
//! - `printf`/`print`/`println` send the values, formatted in user space with the
//!   format the checker parsed (`%m`/`%M` send the bytes they dump).
//!   `sprintf`/`sprint` are built in the kernel (the conversions
//!   `lang::format::Conversion::kernel_sprintf` allows; the checker refuses the rest).
//!   `$x$`, `$x$$` and `$$vars` travel whole, as the bytes their plan reads
//!   (`pretty.rs`), and are printed in user space as Go's `%+v` prints them.
//! - Loops are real loops with a hidden counter on the BPF stack, which is how the
//!   verifier sees them end; past [`Options::max_loop_iterations`] the probe stops
//!   with an error record. The verifier walks every turn, so the bound is kept low.
//! - Division by zero and reading an empty aggregate (but for `@count`) send stap's
//!   error record, worded as user space words it (`lang::stop`), and end the probe.
//! - `@count`/`@sum`/`@min`/`@max`/`@avg` in the kernel merge every CPU's slot with
//!   `bpf_map_lookup_percpu_elem` (Linux 5.19); histograms are read in user space.
//! - `@entry(x)`: see the `entry` module (an entry program, keyed by goroutine and
//!   the frame's distance from the top of its stack).
//! - `delete a` of a whole array or keyed statistic: `bpf_for_each_map_elem` calls
//!   back a function that deletes each element (a program with BPF functions
//!   carries BTF `func_info`, see `bpf::btf`); a plain statistic is zeroed on every
//!   CPU.
//! - `foreach` in a kernel probe: the body becomes a BPF function that
//!   `bpf_for_each_map_elem` calls for each element, in the map's order; sorting
//!   needs user space and is refused by the checker.
//! - What kernel probes cannot run (`=~`, `isinstr`, `usymname`, recursion: functions
//!   are inlined) is refused by the checker at its place (`lang::backend`); built-ins
//!   are lowered by one exhaustive match on `lang::BuiltinId` (`builtins.rs`).
//! - Fields of one struct read through one pointer are copied in one
//!   `bpf_probe_read_user` (see the `window` module): the call is what costs.
//! - Backtraces: see the `backtrace` module (a goroutine-aware frame-pointer walk;
//!   `ubacktrace()` is an id into a stack map the probes fill).
#![forbid(unsafe_code)]

mod access;
mod backtrace;
mod builtins;
pub mod dispatch;
mod emit;
mod entry;
mod format;
pub mod funccount;
pub mod funclatency;
mod lower;
mod pretty;
pub mod profile;
mod sample;
pub mod storage;
pub mod target;
pub mod types;
mod user;
mod window;

use bpf::script::{
    AttachSite, AttachSpec, SampleSpec, ScalarsSpec, ScriptSpec, UserProbe, UserProbeKind,
};
use bpf::{AluOp, Cond, Helper, Insn, ProgramSpec, Reg, Size};
use lang::ast::{Expr, ExprKind, Item, Probe, Script, walk_stmt};
use lang::{Diagnostic, ProbeInfo, ProbeKind, Site as ProbeSite, SourceMap, Span, TypeInfo};

pub use target::GoTarget;
pub use user::compile_user;

use crate::emit::{CTX, KEY_SLOT, SCRATCH, SCRATCH_LIMIT};

/// The most instructions a probe's program may have: the kernel grows a program
/// as it loads it, and its jumps must stay within 32,767 instructions.
const MAX_PROGRAM: usize = 24 * 1024;

/// How to compile.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    /// The script's sources, to name positions in runtime error messages.
    pub sources: Option<&'a SourceMap>,
    /// What `target()` returns: the pid of the `-c`/`-x` process, when known at
    /// compile time (else user space writes it; see `bpf::script::ScalarsSpec`).
    pub target_pid: Option<u32>,
    /// A loop that runs more often than this ends the probe with an error. Every
    /// iteration is checked by the verifier, so this also bounds load time.
    pub max_loop_iterations: u32,
    /// The number of possible CPUs (`sys::possible_cpus()`): reading `@count(s)` and
    /// friends in a kernel probe merges this many per-CPU slots. The verifier
    /// follows each turn of that loop, so it should not be much larger than true.
    pub possible_cpus: u32,
    /// Whether each printed record of a process probe also carries the goroutine
    /// id of the probe (0 where it has none), for the records exported as logs
    /// ([`Compiled::event_goids`]): a few reads of the `g` more per `printf`.
    pub goids: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            sources: None,
            target_pid: None,
            max_loop_iterations: 100,
            possible_cpus: 128,
            goids: false,
        }
    }
}

/// What every lowering pass reads.
pub struct Env<'a, 'd> {
    pub script: &'a Script,
    pub info: &'a TypeInfo,
    pub target: &'a GoTarget<'d>,
    pub opts: &'a Options<'a>,
    pub storage: &'a storage::Storage,
}

impl Env<'_, '_> {
    /// `file:line:col` of a span, for messages the probe sends.
    pub fn position(&self, span: Span) -> String {
        match self.opts.sources {
            Some(sm) => sm.position(span),
            None => format!("byte {}", span.start),
        }
    }

    /// The message a probe stops with, worded as user space words it
    /// ([`lang::stop::message`]): `division by 0 near operator '/' at x.stp:3:9 (called
    /// from identifier 'f' at x.stp:7:3) in probe process.function("main.f")`.
    pub fn stop_message(&self, what: &str, near: Span, calls: &[Span], probe: &str) -> String {
        match self.opts.sources {
            Some(sm) => lang::stop::message(sm, what, Some(near), calls, probe),
            None => format!("{what} near byte {}", near.start),
        }
    }
}

/// What a program knows about where it runs: its address when it has one site.
#[derive(Clone, Debug, Default)]
pub struct Site {
    pub addr: Option<u64>,
    /// `pp()`: the probe point, with the resolved function name.
    pub pp: String,
    /// `probefunc()`.
    pub function: String,
    /// For a program with several sites: (`pp()`, `probefunc()`) of each, indexed by
    /// the attach cookie minus `first_cookie`.
    pub each: Vec<(String, String)>,
    pub first_cookie: u64,
    /// The probe points it serves, as written in the script, for error messages.
    pub written: String,
    /// A sampling point's program (`timer.profile`): its context is the copy of the
    /// user registers `sample::user_registers` made, not a probe's.
    pub sample: bool,
}

/// A compiled script and, per program, where its instructions came from.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub spec: ScriptSpec,
    /// For each program: (first instruction, span of the script code) in order.
    pub spans: Vec<Vec<(usize, Span)>>,
    /// For each event of `spec.events`: the probe points of the program that sends
    /// it, as written (`process.function("main.handle")`), what a printed record
    /// names when it is exported as a log; empty for events of no one probe.
    pub event_probes: Vec<String>,
    /// For each event: where its records hold the goroutine id (a `u64` at this
    /// offset from the record's start), with [`Options::goids`].
    pub event_goids: Vec<Option<u32>>,
}

impl Compiled {
    /// The script code instruction `insn` of program `program` was emitted for.
    pub fn span_of(&self, program: usize, insn: usize) -> Option<Span> {
        let spans = self.spans.get(program)?;
        let i = spans.partition_point(|(at, _)| *at <= insn);
        spans.get(i.checked_sub(1)?).map(|(_, s)| *s)
    }

    /// A verifier refusal as a diagnostic on the script line that produced the
    /// instruction the verifier stopped at, with its reason.
    pub fn verifier_diagnostic(&self, program: usize, log: &str) -> Diagnostic {
        let lines: Vec<&str> = log.lines().collect();
        let mut last_insn = None;
        let mut reason = None;
        for (i, l) in lines.iter().enumerate() {
            if let Some((num, _)) = l.split_once(": ")
                && let Ok(n) = num.trim().parse::<usize>()
            {
                last_insn = Some(n);
                reason = lines.get(i + 1).copied();
            }
        }
        let reason = reason
            .filter(|r| {
                r.split_once(": ")
                    .is_none_or(|(n, _)| n.trim().parse::<usize>().is_err())
            })
            // Else the last line that is not the statistics line the kernel ends
            // every log with ("processed N insns …").
            .or_else(|| {
                lines
                    .iter()
                    .rev()
                    .find(|l| !l.trim().is_empty() && !l.starts_with("processed "))
                    .copied()
            })
            .unwrap_or("no reason given")
            .trim()
            .to_string();
        let span = last_insn
            .and_then(|n| self.span_of(program, n))
            .unwrap_or_default();
        let name = self
            .spec
            .object
            .programs
            .get(program)
            .map_or("?", |p| p.name.as_str());
        Diagnostic::error(
            span,
            format!("the kernel verifier rejected this code: {reason}"),
        )
        .with_note(
            None,
            format!(
                "program {name}, instruction {}",
                last_insn.map_or("?".into(), |n| n.to_string())
            ),
        )
    }

    /// `-d bpf` with the script's lines: before the instructions of each statement,
    /// a `; file:line: text` comment.
    pub fn disassemble_with_source(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        for (i, p) in self.spec.object.programs.iter().enumerate() {
            out.push_str(&format!("{}:\n", p.name));
            let text = p.disassemble(&self.spec.object.maps);
            let spans = self.spans.get(i).map(Vec::as_slice).unwrap_or(&[]);
            let mut last_line = None;
            for line in text.lines() {
                let insn = line
                    .split_once(':')
                    .and_then(|(n, _)| n.trim().parse::<usize>().ok());
                if let Some(n) = insn
                    && let Some((_, span)) = spans.iter().find(|(at, _)| *at == n)
                {
                    let (l, _) = sources.line_col(*span);
                    if last_line != Some((span.file, l)) {
                        last_line = Some((span.file, l));
                        let src = sources
                            .file(span.file)
                            .map(|f| f.line_text(l).trim().to_string())
                            .unwrap_or_default();
                        out.push_str(&format!("; {}: {src}\n", sources.position(*span)));
                    }
                }
                out.push_str(line);
                out.push('\n');
            }
            out.push('\n');
        }
        out
    }

    /// `-d bpf`: every program's instructions.
    pub fn disassemble(&self) -> String {
        let mut out = String::new();
        for p in &self.spec.object.programs {
            out.push_str(&format!("{}:\n", p.name));
            out.push_str(&p.disassemble(&self.spec.object.maps));
            out.push('\n');
        }
        out
    }
}

/// Compiles a checked script to programs, maps and the contract with user space.
pub fn compile(
    script: &Script,
    info: &TypeInfo,
    target: &GoTarget<'_>,
    opts: &Options<'_>,
) -> Result<ScriptSpec, Vec<Diagnostic>> {
    compile_full(script, info, target, opts).map(|c| c.spec)
}

/// Whether a body needs to know its one site: it reads context (`$x`, `@defined`)
/// or calls a built-in whose table row needs the site (the backtraces).
fn needs_site<'a>(
    script: &'a Script,
    info: &'a TypeInfo,
) -> impl Fn(&lang::ast::Block) -> bool + 'a {
    move |b| {
        let mut needs = false;
        let mut visit = |e: &Expr| match &e.kind {
            ExprKind::Target(_) | ExprKind::Defined(_) => needs = true,
            ExprKind::Call { .. } => {
                if let Some(lang::Callee::Builtin(id)) = info.callee(e) {
                    needs |= id.row().needs.has(lang::builtins::Needs::SITE);
                }
            }
            _ => {}
        };
        for s in &b.stmts {
            walk_stmt(s, &mut visit);
        }
        // Functions the body might call may read context too (only built-ins do).
        for item in &script.items {
            if let Item::Function(f) = item {
                for s in &f.body.stmts {
                    walk_stmt(s, &mut visit);
                }
            }
        }
        needs
    }
}

fn point_text(path: &str, kind: &ProbeKind, loc: &lang::Location) -> String {
    match kind {
        ProbeKind::Process(p) => match &p.site {
            ProbeSite::Function { ret, .. } => format!(
                "process(\"{path}\").function(\"{}\"){}",
                loc.function,
                if *ret { ".return" } else { "" }
            ),
            ProbeSite::Statement { .. } => format!(
                "process(\"{path}\").statement(\"{}@{}:{}\")",
                loc.function,
                loc.file.as_deref().unwrap_or("?"),
                loc.line.unwrap_or(0)
            ),
            ProbeSite::Address(a) => format!("process(\"{path}\").statement({a:#x})"),
        },
        ProbeKind::Begin => "begin".into(),
        ProbeKind::End => "end".into(),
        ProbeKind::Timer { .. } => "timer".into(),
        ProbeKind::Sample { hz } => sample_text(*hz),
    }
}

/// `pp()` of a sampling probe.
fn sample_text(hz: u64) -> String {
    if hz == lang::probe::PROFILE_HZ {
        "timer.profile".into()
    } else {
        format!("timer.hz({hz})")
    }
}

/// The probe points a program's sites come from, as written, for its error messages.
fn written_points(
    script: &Script,
    pinfo: &lang::ProbeInfo,
    sites: &[(usize, lang::Location)],
) -> String {
    let mut points: Vec<usize> = sites.iter().map(|(pi, _)| *pi).collect();
    points.dedup();
    let texts: Vec<String> = points
        .iter()
        .map(|&pi| lang::stop::written_point(script, pinfo.points[pi].span))
        .collect();
    texts.join(", ")
}

/// The sites one program serves: its alias prologue, and (point index, location).
type Group = (Option<usize>, Vec<(usize, lang::Location)>);

/// [`compile`], keeping the instruction → source map for verifier errors. The steps:
/// lay out the storage; for each probe, group its kernel sites into programs (one per
/// site when the body reads context) and note its user-space points; compile the
/// `@entry` programs it needs; lower each group to a program with its attachments;
/// then put the object, the events and the contract with user space together.
pub fn compile_full(
    script: &Script,
    info: &TypeInfo,
    target: &GoTarget<'_>,
    opts: &Options<'_>,
) -> Result<Compiled, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let storage = storage::layout(script, info, &mut diags);
    let env = Env {
        script,
        info,
        target,
        opts,
        storage: &storage,
    };
    let mut b = Build::new(diags);
    let stacks = backtrace::stack_map(script, info, storage.object.maps.len(), &mut b.object_maps);
    for pinfo in &info.probes {
        let Some(Item::Probe(probe)) = script.items.get(pinfo.item) else {
            continue;
        };
        let groups = b.group_sites(&env, probe, pinfo);
        let entry = b.entry_programs(&env, probe, pinfo, &groups);
        let p = ThisProbe {
            probe,
            pinfo,
            entry,
            stacks,
        };
        for (prologue, sites) in groups {
            b.probe_program(&env, &p, prologue, &sites);
        }
        for (pi, point) in pinfo.points.iter().enumerate() {
            if let ProbeKind::Sample { hz } = point.kind {
                b.sample_program(&env, &p, pi, hz);
            }
        }
    }
    if lang::has_errors(&b.diags) {
        return Err(b.diags);
    }
    Ok(b.finish(&storage, opts, stacks))
}

/// The probe being compiled, and what its programs share.
struct ThisProbe<'a> {
    probe: &'a Probe,
    pinfo: &'a ProbeInfo,
    /// Where its return programs find the `@entry` values.
    entry: Option<entry::Saved>,
    /// The stack map, when the script stores stacks.
    stacks: Option<bpf::MapId>,
}

/// What compiling a script accumulates, program by program.
struct Build {
    diags: Vec<Diagnostic>,
    events: Vec<bpf::script::EventSpec>,
    /// The probe points (as written) each event is sent by.
    event_probes: Vec<String>,
    /// Where each event's records hold the goroutine id.
    event_goids: Vec<Option<u32>>,
    programs: Vec<ProgramSpec>,
    spans: Vec<Vec<(usize, Span)>>,
    attachments: Vec<AttachSpec>,
    samples: Vec<SampleSpec>,
    user_probes: Vec<UserProbe>,
    /// The most scratch space a program uses.
    high: u32,
    /// The next attach cookie.
    cookie: u64,
    /// Maps added while lowering (the stack map, the `@entry` stores), after the
    /// storage's.
    object_maps: Vec<bpf::MapSpec>,
    /// The shapes of the Go values records carry.
    values: Vec<bpf::govalue::Shape>,
}

impl Build {
    fn new(diags: Vec<Diagnostic>) -> Build {
        Build {
            diags,
            events: Vec::new(),
            event_probes: Vec::new(),
            event_goids: Vec::new(),
            programs: Vec::new(),
            spans: Vec::new(),
            attachments: Vec::new(),
            samples: Vec::new(),
            user_probes: Vec::new(),
            high: 0,
            cookie: 0,
            object_maps: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Notes the probe's `begin`, `end` and timer points (run in user space) and
    /// groups its kernel sites into programs: one program for all sites of a
    /// prologue, or one per site when the body needs to know its site.
    fn group_sites(&mut self, env: &Env<'_, '_>, probe: &Probe, pinfo: &ProbeInfo) -> Vec<Group> {
        let script = env.script;
        let mut groups: Vec<Group> = Vec::new();
        for (pi, point) in pinfo.points.iter().enumerate() {
            let when = match user_probe_kind(&point.kind) {
                Some(when) => when,
                None => {
                    let prologue_body = point.prologue.and_then(|a| match script.items.get(a) {
                        Some(Item::Alias(al)) => Some(&al.body),
                        _ => None,
                    });
                    let per_site = needs_site(script, env.info)(&probe.body)
                        || prologue_body.is_some_and(|b| needs_site(script, env.info)(b));
                    for loc in &point.locations {
                        let shared = if per_site {
                            None
                        } else {
                            groups.iter_mut().find(|(pro, _)| *pro == point.prologue)
                        };
                        match shared {
                            Some((_, sites)) => sites.push((pi, loc.clone())),
                            _ => groups.push((point.prologue, vec![(pi, loc.clone())])),
                        }
                    }
                    continue;
                }
            };
            self.user_probes.push(UserProbe {
                item: pinfo.item,
                when,
            });
        }
        groups
    }

    /// `@entry(x)` in a return probe: the values, saved by a program at the entry of
    /// each function the probe's sites return from.
    fn entry_programs(
        &mut self,
        env: &Env<'_, '_>,
        probe: &Probe,
        pinfo: &ProbeInfo,
        groups: &[Group],
    ) -> Option<entry::Saved> {
        let script = env.script;
        let first_map = env.storage.object.maps.len() as u32;
        let mut prologues: Vec<&lang::ast::Block> = Vec::new();
        for (prologue, _) in groups {
            if let Some(Item::Alias(a)) = prologue.and_then(|ai| script.items.get(ai))
                && !prologues.iter().any(|b| std::ptr::eq(*b, &a.body))
            {
                prologues.push(&a.body);
            }
        }
        let entry = entry::saved_values(
            env.info,
            probe,
            &prologues,
            first_map,
            &mut self.object_maps,
        );
        let e = entry.as_ref()?;
        let target = env.target;
        let path = target.path().to_string();
        let mut done = std::collections::HashSet::new();
        for (_, loc) in groups.iter().flat_map(|(_, s)| s.iter()) {
            let Some(f) = target.binary().function_at(gobin::VirtAddr(loc.address)) else {
                continue;
            };
            let Ok(site) = gobin::x86::probe_site(target.binary(), &f) else {
                continue;
            };
            if !done.insert(site.addr.0) {
                continue;
            }
            let at = entry::EntrySite {
                addr: site.addr.0,
                function: f.name.to_string(),
                pp: format!("process(\"{path}\").function(\"{}\")", f.name),
            };
            let out = entry::Out {
                events: &mut self.events,
                programs: &mut self.programs,
                spans: &mut self.spans,
                attachments: &mut self.attachments,
                cookie: &mut self.cookie,
                diags: &mut self.diags,
                high: &mut self.high,
            };
            entry::entry_program(env, e, pinfo, &at, out);
        }
        entry
    }

    /// Lowers the probe body (after its alias prologue) for one group of sites, and
    /// adds the program and its attachments.
    fn probe_program(
        &mut self,
        env: &Env<'_, '_>,
        p: &ThisProbe<'_>,
        prologue: Option<usize>,
        sites: &[(usize, lang::Location)],
    ) {
        let Some(site) = self.site(env, p.pinfo, sites) else {
            return;
        };
        let alias = match prologue.and_then(|a| env.script.items.get(a)) {
            Some(Item::Alias(a)) => Some(&a.body),
            _ => None,
        };
        self.event_probes.resize(self.events.len(), String::new());
        let lowered = self.lower_bodies(env, p, alias, &site, false);
        self.event_probes
            .resize(self.events.len(), site.written.clone());
        let Some((program, prog_spans)) = lowered else {
            return;
        };
        let index = self.programs.len();
        self.programs
            .push(ProgramSpec::new(format!("gotap_p{index}"), program));
        self.spans.push(prog_spans);
        self.attach(env, p.pinfo, sites, &site, index);
    }

    /// The program of sampling point `pi` (after its alias prologue), run `hz`
    /// times a second on every CPU. It has no site: `pp()` is the point, the walk
    /// of `ubacktrace()` starts from the interrupted registers.
    fn sample_program(&mut self, env: &Env<'_, '_>, p: &ThisProbe<'_>, pi: usize, hz: u64) {
        let point = &p.pinfo.points[pi];
        let pp = sample_text(hz);
        let site = Site {
            addr: None,
            pp: pp.clone(),
            function: String::new(),
            each: vec![(pp, String::new())],
            first_cookie: self.cookie,
            written: lang::stop::written_point(env.script, point.span),
            sample: true,
        };
        let alias = match point.prologue.and_then(|a| env.script.items.get(a)) {
            Some(Item::Alias(a)) => Some(&a.body),
            _ => None,
        };
        self.event_probes.resize(self.events.len(), String::new());
        let lowered = self.lower_bodies(env, p, alias, &site, true);
        self.event_probes
            .resize(self.events.len(), site.written.clone());
        let Some((program, prog_spans)) = lowered else {
            return;
        };
        let index = self.programs.len();
        self.programs
            .push(ProgramSpec::new(format!("gotap_p{index}"), program));
        self.spans.push(prog_spans);
        self.samples.push(SampleSpec {
            program: index,
            hz,
            probe: site.written.clone(),
        });
    }

    /// What the program of these sites knows about where it runs.
    fn site(
        &self,
        env: &Env<'_, '_>,
        pinfo: &ProbeInfo,
        sites: &[(usize, lang::Location)],
    ) -> Option<Site> {
        let path = env.target.path();
        let (first_point, first_loc) = sites.first()?;
        Some(Site {
            addr: (sites.len() == 1).then_some(first_loc.address),
            pp: point_text(path, &pinfo.points[*first_point].kind, first_loc),
            function: first_loc.function.clone(),
            each: sites
                .iter()
                .map(|(pi, loc)| {
                    (
                        point_text(path, &pinfo.points[*pi].kind, loc),
                        loc.function.clone(),
                    )
                })
                .collect(),
            first_cookie: self.cookie,
            written: written_points(env.script, pinfo, sites),
            sample: false,
        })
    }

    /// The program: the prologue (after the choice of samples, for a sampling
    /// probe), the alias's body and the probe's, and the common end; with where
    /// each instruction came from.
    fn lower_bodies(
        &mut self,
        env: &Env<'_, '_>,
        p: &ThisProbe<'_>,
        alias: Option<&lang::ast::Block>,
        site: &Site,
        sample: bool,
    ) -> Option<(bpf::Program, Vec<(usize, Span)>)> {
        let probe = p.probe;
        let mut l = lower::Lower::new(env, &mut self.events, site);
        l.value_base = self.values.len();
        l.entry = p.entry.clone();
        l.stacks = p.stacks;
        if sample {
            traced_samples(&mut l.em);
        }
        prologue_code(&mut l.em);
        if sample {
            // A sample is read from the user registers, in the kernel too; a copy
            // the kernel did not give is a read that faulted, and ends the sample.
            let (unread, user) = (l.em.a.label(), l.em.a.label());
            sample::user_registers(&mut l.em, unread);
            l.em.a.ja(user);
            l.em.a.bind(unread);
            l.em.count(bpf::script::counter::READ_FAULTS);
            let abort = l.em.abort;
            l.em.a.ja(abort);
            l.em.a.bind(user);
        }
        l.enter_probe(&p.pinfo.locals);
        let bodies: Vec<&lang::ast::Block> = alias.into_iter().chain([&probe.body]).collect();
        l.plan_windows(&bodies);
        if let Some(a) = alias {
            l.block(a);
        }
        l.block(&probe.body);
        let end = l.em.end;
        l.em.a.bind(end);
        l.forget_entry();
        let abort = l.em.abort;
        l.em.a.bind(abort);
        l.em.e(Insn::mov64(Reg::R0, 0));
        l.em.a.exit();
        l.em.emit_callbacks();
        for (span, msg) in l.em.errors.drain(..) {
            self.diags.push(Diagnostic::error(span, msg));
        }
        if l.em.high > SCRATCH_LIMIT {
            self.diags.push(Diagnostic::error(
                probe.span,
                format!(
                    "this probe needs {} bytes of scratch space, more than {SCRATCH_LIMIT}",
                    l.em.high
                ),
            ));
        }
        self.high = self.high.max(l.em.high);
        self.values.append(&mut l.values);
        for (id, at) in l.goids.drain(..) {
            if self.event_goids.len() <= id {
                self.event_goids.resize(id + 1, None);
            }
            self.event_goids[id] = Some(at);
        }
        let prog_spans = std::mem::take(&mut l.em.spans);
        let asm = std::mem::take(&mut l.em.a);
        match asm.finish() {
            // The kernel patches a program as it loads it (inlined helpers, loop
            // bounds), so a jump across a program this long may no longer fit its
            // 16-bit offset: say so here, with what makes programs long.
            Ok(p) if p.insns.len() > MAX_PROGRAM => {
                self.diags.push(
                    Diagnostic::error(
                        probe.span,
                        format!(
                            "this probe compiles to {} eBPF instructions, more than {MAX_PROGRAM}",
                            p.insns.len()
                        ),
                    )
                    .with_help(
                        "each pretty-printed value ($x$, $x$$) reads up to -D MAXPRETTYBYTES=N bytes: lower it, or print fewer values in one probe",
                    ),
                );
                None
            }
            Ok(p) => Some((p, prog_spans)),
            Err(e) => {
                self.diags.push(Diagnostic::error(
                    probe.span,
                    format!("internal error: {e}"),
                ));
                None
            }
        }
    }

    /// The attachments of program `index`: one per probe point (so messages name the
    /// point as written), its sites with consecutive cookies in the order of
    /// `site.each`.
    fn attach(
        &mut self,
        env: &Env<'_, '_>,
        pinfo: &ProbeInfo,
        sites: &[(usize, lang::Location)],
        site: &Site,
        index: usize,
    ) {
        let target = env.target;
        let mut by_point: Vec<(usize, Vec<AttachSite>)> = Vec::new();
        for (i, (pi, loc)) in sites.iter().enumerate() {
            let cookie = site.first_cookie + i as u64;
            let Some(off) = target.binary().file_offset(gobin::VirtAddr(loc.address)) else {
                self.diags.push(Diagnostic::error(
                    pinfo.points[*pi].span,
                    format!("address {:#x} is not in the file", loc.address),
                ));
                continue;
            };
            let s = AttachSite {
                addr: loc.address,
                file_offset: off.0,
                cookie,
            };
            match by_point.iter_mut().find(|(p, _)| p == pi) {
                Some((_, v)) => v.push(s),
                None => by_point.push((*pi, vec![s])),
            }
        }
        self.cookie += sites.len() as u64;
        for (pi, sites) in by_point {
            let text = match env.opts.sources {
                Some(sm) => {
                    let sp = pinfo.points[pi].span;
                    sm.file(sp.file)
                        .and_then(|f| f.text.get(sp.start as usize..sp.end as usize))
                        .map(String::from)
                }
                None => None,
            }
            .unwrap_or_else(|| site.pp.clone());
            self.attachments.push(AttachSpec {
                program: index,
                binary: target.path().to_string(),
                probe: text,
                sites,
            });
        }
    }

    /// The compiled script: the storage's object with the added maps and the
    /// programs, the scratch area sized for the largest program, and the contract
    /// with user space.
    fn finish(
        self,
        storage: &storage::Storage,
        opts: &Options<'_>,
        stacks: Option<bpf::MapId>,
    ) -> Compiled {
        let mut object = storage.object.clone();
        object.maps.extend(self.object_maps);
        object.programs = self.programs;
        if let Some(m) = object.maps.get_mut(storage.scratch.0 as usize) {
            m.value_size = (self.high + storage.max_string).div_ceil(8) * 8;
        }
        let kernel = Kernel {
            attachments: self.attachments,
            samples: self.samples,
            events: self.events,
            stacks,
            values: self.values,
        };
        let spec = script_spec(storage, opts, object, self.user_probes, Some(kernel));
        let mut event_probes = self.event_probes;
        event_probes.resize(spec.events.len(), String::new());
        let mut event_goids = self.event_goids;
        event_goids.resize(spec.events.len(), None);
        Compiled {
            spec,
            spans: self.spans,
            event_probes,
            event_goids,
        }
    }
}

/// When a probe point runs in user space: `begin`, `end`, `timer.*`; `None` for a
/// process or sampling probe, which runs in the kernel.
fn user_probe_kind(kind: &ProbeKind) -> Option<UserProbeKind> {
    match *kind {
        ProbeKind::Begin => Some(UserProbeKind::Begin),
        ProbeKind::End => Some(UserProbeKind::End),
        ProbeKind::Timer { period_ns } => Some(UserProbeKind::Timer { period_ns }),
        ProbeKind::Process(_) | ProbeKind::Sample { .. } => None,
    }
}

/// What the programs of a script tell user space besides the storage.
struct Kernel {
    attachments: Vec<AttachSpec>,
    samples: Vec<SampleSpec>,
    events: Vec<bpf::script::EventSpec>,
    stacks: Option<bpf::MapId>,
    /// The shapes of the Go values its records carry.
    values: Vec<bpf::govalue::Shape>,
}

/// The contract with user space around `object`: the globals' layout, the scalars'
/// first values (with `target()`'s pid when it is known) if their map is in the
/// object, the user-space probes, and what the programs send, if there are any
/// (without, no ring buffer or counters either).
fn script_spec(
    storage: &storage::Storage,
    opts: &Options<'_>,
    object: bpf::ObjectSpec,
    user_probes: Vec<UserProbe>,
    kernel: Option<Kernel>,
) -> ScriptSpec {
    let scalars = (object.maps.len() > storage.scalars.0 as usize).then(|| {
        let mut initial = storage.scalars_initial.clone();
        let o = storage.target_offset as usize;
        let pid = i64::from(opts.target_pid.unwrap_or(0));
        initial[o..o + 8].copy_from_slice(&pid.to_le_bytes());
        ScalarsSpec {
            map: storage.scalars,
            initial,
            realtime_offset: storage.realtime_offset,
            target_offset: storage.target_offset,
        }
    });
    let programs = kernel.is_some();
    let kernel = kernel.unwrap_or(Kernel {
        attachments: Vec::new(),
        samples: Vec::new(),
        events: Vec::new(),
        stacks: None,
        values: Vec::new(),
    });
    ScriptSpec {
        object,
        attachments: kernel.attachments,
        samples: kernel.samples,
        events: kernel.events,
        globals: storage.globals.clone(),
        ringbuf: programs.then_some(storage.ringbuf),
        counters: programs.then_some(storage.counters),
        user_probes,
        scalars,
        stacks: kernel.stacks,
        values: kernel.values,
    }
}

/// The start of a sampling program: the samples of the traced process (`target()`,
/// in the scalars map) go on, in user mode or in the kernel; the others end here,
/// before the hit is counted. R1 is the context again at the end.
fn traced_samples(em: &mut emit::Emitter<'_>) {
    let out = em.abort;
    em.e(Insn::mov64(CTX, Reg::R1));
    em.a.call(Helper::GetCurrentPidTgid);
    em.e(Insn::alu64(AluOp::Rsh, Reg::R0, 32));
    em.a.ld_map_value(Reg::R1, em.storage.scalars, em.storage.target_offset);
    em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R1, 0));
    em.a.jmp(Cond::Ne, Reg::R0, Reg::R1, out);
    em.e(Insn::mov64(Reg::R1, CTX));
}

/// The start of every program: keep the context, find the scratch area, count the hit.
pub(crate) fn prologue_code(em: &mut emit::Emitter<'_>) {
    let end = em.abort;
    em.e(Insn::mov64(CTX, Reg::R1));
    em.e(Insn::st(Size::W, Reg::R10, KEY_SLOT, 0));
    em.a.ld_map(Reg::R1, em.storage.scratch);
    em.e(Insn::mov64(Reg::R2, Reg::R10));
    em.e(Insn::alu64(AluOp::Add, Reg::R2, i32::from(KEY_SLOT)));
    em.a.call(Helper::MapLookupElem);
    em.a.jmp(Cond::Eq, Reg::R0, 0, end);
    em.e(Insn::mov64(SCRATCH, Reg::R0));
    em.count_and_tag_hit();
}
