//! Comparison 11: what `gotap profile -F 99` costs a CPU-bound Go program (issue 14),
//! and how much of each stack it recovers. The workload is bench_cpu.go, two
//! goroutines doing a fixed amount of work that allocates (so the garbage collector
//! runs on the system stack too) and timing it. The overhead is the traced wall time
//! minus the untraced one of the same repetition, as a share of the untraced time and
//! per sample taken; the peer is bpftrace's `profile:hz:99 { @[ustack] = count(); }`
//! with a `/pid == cpid/` filter, so that both count the samples of the program only
//! (without it bpftrace counts every process on the CPU). A stack "stops in the
//! system stack" when its outermost frame is one of the runtime's system-stack
//! functions (the scheduler's `mstart`, `mcall`, `systemstack`, `morestack`, a signal
//! handler's `sigtramp`): frame pointers end there, and only a tool that goes on into
//! `m.curg` reaches the goroutine's `runtime.goexit`. bpftrace names frames from the
//! live process, which has exited by the time `-c` ends and it prints its map, so it
//! prints bare addresses; they are named here from the binary's `.symtab`.

use crate::Config;
use crate::error::{Error, Result};
use crate::exec::{self, Finished};
use crate::report::{Goal, Row};
use crate::setup::Env;
use crate::stats::{Case, Cell, Runs, Sample, interleave};
use crate::tools::{bpftrace, cmdline};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const GROUP: &str = "11. `gotap profile -F 99` on a CPU-bound program (bench_cpu.go: two goroutines, fixed work, timing itself)";

/// Outermost frames at which a frame-pointer walk has stopped on the system stack
/// (or a signal stack) instead of reaching the goroutine's first frame.
const SYSTEM_STACK_ENDS: &[&str] = &[
    "runtime.mcall",
    "runtime.systemstack",
    "runtime.systemstack_switch",
    "runtime.morestack",
    "runtime.morestack_noctxt",
    "runtime.mstart",
    "runtime.mstart0",
    "runtime.mstart1",
    "runtime.rt0_go",
    "runtime.sigtramp",
    "runtime.asmcgocall",
];

/// A frame's function without bpftrace's `+offset` and ` (module)`, and without the
/// `.abi0` the linker's symbol table gives assembly functions (`runtime.goexit.abi0`).
fn function(frame: &str) -> &str {
    let f = frame.trim();
    let f = f.split_once(' ').map_or(f, |(a, _)| a);
    let f = f.split_once('+').map_or(f, |(a, _)| a);
    f.strip_suffix(".abi0").unwrap_or(f)
}

/// (samples, samples stopped in the system stack, samples reaching `runtime.goexit`)
/// from `(outermost frame, count)` pairs.
fn tally(stacks: &[(String, f64)]) -> (f64, f64, f64) {
    let (mut all, mut system, mut whole) = (0.0, 0.0, 0.0);
    for (outer, n) in stacks {
        let n = *n;
        all += n;
        if SYSTEM_STACK_ENDS.contains(&function(outer)) {
            system += n;
        } else if function(outer) == "runtime.goexit" {
            whole += n;
        }
    }
    (all, system, whole)
}

/// The stacks of gotap's `--folded` file (outermost frame first, `;` between frames,
/// then the count).
fn folded_stacks(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let (stack, n) = l.rsplit_once(' ')?;
            Some((stack.split(';').next()?.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// The stacks of bpftrace's `@[ustack] = count()` map as it prints it: `@[`, one
/// frame a line innermost first, then `]: COUNT`. A frame it printed as a bare
/// address (it names frames from the live process, gone by the time `-c` ends) is
/// named by `name`.
fn bpftrace_stacks(text: &str, name: &dyn Fn(&str) -> String) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut outer = None;
    for l in text.lines() {
        let t = l.trim();
        if t == "@[" {
            outer = Some("?");
        } else if let Some(n) = t.strip_prefix("]: ") {
            if let (Some(o), Ok(n)) = (outer.take(), n.parse()) {
                out.push((name(o), n));
            }
        } else if outer.is_some() && !t.is_empty() {
            outer = Some(t);
        }
    }
    out
}

/// Reads a tracer's stacks file into (outermost frame, samples) pairs.
type Stacks<'a> = &'a dyn Fn(&str) -> Vec<(String, f64)>;

/// The program's wall time and, when a tracer wrote `stacks` (as `parse` reads
/// them), the samples and where they stop; `extra` adds samples the tracer counted
/// apart.
fn measure(
    cmd: &mut Command,
    stacks: Option<(&Path, Stacks<'_>)>,
    extra: fn(&Finished) -> f64,
) -> Result<Sample> {
    let f = exec::run(cmd, Duration::from_secs(900))?;
    let ms = f.number_after("elapsed_ms").ok_or_else(|| Error::Failed {
        command: exec::describe(cmd),
        detail: "no `elapsed_ms` line".into(),
    })?;
    let mut s = Sample::from([("ms", ms)]);
    if let Some((path, parse)) = stacks {
        let text = std::fs::read_to_string(path).map_err(|source| Error::File {
            path: path.to_path_buf(),
            source,
        })?;
        let (all, system, whole) = tally(&parse(&text));
        s.insert("stacks", all);
        s.insert("system", system);
        s.insert("whole", whole);
        s.insert("samples", all + extra(&f));
    }
    if let Some((per_run, share)) = bpf_cost(&f.stderr) {
        s.insert("bpf_ns", per_run);
        s.insert("bpf_share", share);
    }
    Ok(s)
}

/// gotap `profile -v`'s line on the kernel's timing of its sampling program: (ns a
/// run, % of the CPUs' time).
fn bpf_cost(stderr: &str) -> Option<(f64, f64)> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("profile: the sampling program ran "))?;
    let after =
        |k: &str| -> Option<f64> { line.split(k).nth(1)?.split([' ', '%']).next()?.parse().ok() };
    Some((after(" ms, ")?, after(" a run: ")?))
}

/// Per repetition, `f(traced, untraced)`, summarised.
fn paired(traced: &Runs, untraced: &Runs, f: impl Fn(&Sample, &Sample) -> Option<f64>) -> Cell {
    let v: Vec<f64> = traced
        .samples
        .iter()
        .zip(&untraced.samples)
        .filter_map(|(t, u)| f(t, u))
        .collect();
    Cell::of(&v, traced.errors.first().or(untraced.errors.first()))
}

pub fn profile(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let exe = env.program("bench_cpu")?;
    let rounds = if cfg.quick { "100" } else { "2000" };
    let run = cmdline(&exe, &[rounds]);
    let (ours, theirs) = (
        env.work.join("profile-gotap.folded"),
        env.work.join("profile-bpftrace.out"),
    );
    let script = "profile:hz:99 /pid == cpid/ { @[ustack] = count(); }";
    let funcs = crate::elf::functions(&exe)?;
    let name = |frame: &str| -> String {
        let Some(addr) = frame
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            return frame.to_string();
        };
        let i = funcs.partition_point(|(start, _, _)| *start <= addr);
        match i.checked_sub(1).map(|i| &funcs[i]) {
            Some((_, end, f)) if addr < *end => f.clone(),
            _ => frame.to_string(),
        }
    };
    let parse_ours = |t: &str| folded_stacks(t);
    let parse_theirs = |t: &str| bpftrace_stacks(t, &name);
    let mut cases = vec![
        Case::new("untraced", || {
            measure(Command::new(&exe).arg(rounds), None, |_| 0.0)
        }),
        Case::new("gotap profile -F 99", || {
            measure(
                Command::new(&env.gotap)
                    .args(["profile", "-v", "-F", "99", "--folded"])
                    .arg(&ours)
                    .args(["-c", &run]),
                Some((&ours, &parse_ours)),
                |_| 0.0,
            )
        }),
        Case::new("bpftrace profile:hz:99 @[ustack]", || {
            measure(
                &mut bpftrace(script, &run, Some(&theirs)),
                Some((&theirs, &parse_theirs)),
                |_| 0.0,
            )
        }),
    ];
    let r = interleave("11 profile", cfg.reps, &mut cases);
    drop(cases);
    let diff = |t: &Sample, u: &Sample| Some(t.get("ms")? - u.get("ms")?);
    let share = |i: usize| {
        paired(&r[i], &r[0], |t, u| {
            Some(diff(t, u)? / u.get("ms")? * 100.0)
        })
    };
    let per_sample = |i: usize| {
        paired(&r[i], &r[0], |t, u| {
            let n = *t.get("samples")?;
            (n > 0.0).then(|| diff(t, u).map(|d| d * 1e6 / n))?
        })
    };
    let stopped = |i: usize| {
        let v: Vec<f64> = r[i]
            .samples
            .iter()
            .filter_map(|s| Some(s.get("system")? / s.get("stacks")?.max(1.0) * 100.0))
            .collect();
        Cell::of(&v, r[i].errors.first())
    };
    let counts = |i: usize| {
        let med = |k: &str| r[i].stat(k).median().unwrap_or(f64::NAN);
        format!(
            "{:.0} stacks, {:.0} stopped in the system stack, {:.0} reached runtime.goexit",
            med("stacks"),
            med("system"),
            med("whole")
        )
    };
    let samples = |i: usize| {
        r[i].stat("samples")
            .median()
            .map(|n| format!("{n:.0}"))
            .unwrap_or_else(|| "—".into())
    };
    let kernel_stat = |k: &str| {
        let v: Vec<f64> = r[1]
            .samples
            .iter()
            .filter_map(|s| s.get(k).copied())
            .collect();
        Cell::of(&v, r[1].errors.first())
    };
    Ok(vec![
        Row::new(GROUP, "untraced wall time", "ms", r[0].stat("ms"), Cell::None)
            .note(format!("`bench_cpu {rounds}`")),
        Row::new(
            GROUP,
            "11a overhead: (traced − untraced) / untraced wall time",
            "%",
            share(1),
            share(2),
        )
        .goal(Goal::AtMost(1.0), "#14"),
        Row::new(
            GROUP,
            "11b per sample: (traced − untraced) wall time / samples",
            "ns/sample",
            per_sample(1),
            per_sample(2),
        )
        .note(format!(
            "samples (median): gotap {}, bpftrace {}; both unwind a sample that found the program in the kernel from its user registers",
            samples(1),
            samples(2)
        )),
        Row::new(
            GROUP,
            "11c stacks that stop in the runtime's system stack (outermost frame mstart, mcall, systemstack, morestack, sigtramp …)",
            "% of stacks",
            stopped(1),
            stopped(2),
        )
        .note(format!(
            "gotap: {}; bpftrace: {} (medians)",
            counts(1),
            counts(2)
        )),
        Row::new(
            GROUP,
            "11d the sampling program's own time a run, as the kernel times it (BPF run-time statistics, `profile -v`)",
            "ns/run",
            kernel_stat("bpf_ns"),
            Cell::None,
        )
        .note("every CPU's 99 runs a second, the program's samples and the others' (which the program leaves at once)"),
        Row::new(
            GROUP,
            "11e that time as a share of the CPUs' time",
            "%",
            kernel_stat("bpf_share"),
            Cell::None,
        )
        .goal(Goal::AtMost(1.0), "#14")
        .note("without the timer interrupt that runs it, which 11a's wall time includes"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outermost_frames_of_each_format() {
        let named = |f: &str| f.replace("0x47e881", "runtime.goexit.abi0");
        let b = "Attaching 1 probe...\n\n@[\n    main.mix+23\n    runtime.systemstack+52\n]: 3\n@[\n    0x49ce35\n    0x47e881\n]: 5\n";
        assert_eq!(tally(&bpftrace_stacks(b, &named)), (8.0, 3.0, 5.0));
        let g = "runtime.goexit;main.main.func1;main.mix 7\nruntime.mstart;runtime.schedule 2\n";
        assert_eq!(tally(&folded_stacks(g)), (9.0, 2.0, 7.0));
    }
}
