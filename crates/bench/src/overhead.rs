//! Comparisons 1 and 2: what a probe hit costs the traced program. A workload times
//! its own loop (ns per call) or is timed from outside (wall time); the cost of a hit
//! is the traced figure minus the untraced one of the same repetition. bpftrace
//! probes a function at its entry, where the kernel single-steps Go's stack-check
//! `cmp`; gotap probes the `push rbp` after it, which the kernel emulates. The floor
//! is an empty bpftrace program on that same `push rbp` (through a moved symbol, see
//! `elf`), so every figure can also be read as a multiple of the bare uprobe.

use crate::Config;
use crate::error::Result;
use crate::exec::{self, Finished};
use crate::report::{Goal, Row};
use crate::setup::Env;
use crate::stats::{Case, Cell, Sample, Stat, interleave, paired_difference};
use crate::tools::{bpftrace, cmdline, gotap_funccount, gotap_script};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(900);

pub(crate) fn ns_per_call(cmd: &mut Command) -> Result<Sample> {
    let f = exec::run(cmd, LIMIT)?;
    ns_sample(&f, cmd)
}

fn ns_sample(f: &Finished, cmd: &Command) -> Result<Sample> {
    let ns = f
        .number_after("ns/call")
        .ok_or_else(|| crate::error::Error::Failed {
            command: exec::describe(cmd),
            detail: match crashed(f) {
                Some(how) => format!("the traced program crashed ({how})"),
                None => "no `ns/call` line".into(),
            },
        })?;
    let mut s = Sample::new();
    s.insert("ns", ns);
    s.insert("lost", exec::lost_events(&f.stderr));
    Ok(s)
}

/// The signal a Go program reports when it dies of one (`SIGILL: illegal
/// instruction`), from the command's output.
pub(crate) fn crashed(f: &Finished) -> Option<&str> {
    let all = f
        .lines
        .iter()
        .map(|(_, l)| l.as_str())
        .chain(f.stderr.lines());
    all.filter_map(|l| l.split_once(": ").map(|(sig, _)| sig))
        .find(|sig| {
            sig.starts_with("SIG")
                && sig.len() <= 8
                && sig[3..].chars().all(|c| c.is_ascii_uppercase())
        })
}

/// Case `i`'s time over case 0's (the untraced run) in µs per one of `count` events
/// (`ms` samples; NaN when nothing was counted).
pub fn micros_each(r: &[crate::stats::Runs], i: usize, count: f64) -> Cell {
    micros_per(&r[i], &r[0], "ms", count)
}

/// `traced`'s `key` (milliseconds) over `untraced`'s, in µs per one of `count` events
/// (NaN when nothing was counted).
pub fn micros_per(
    traced: &crate::stats::Runs,
    untraced: &crate::stats::Runs,
    key: &str,
    count: f64,
) -> Cell {
    scaled(
        &paired_difference(traced, untraced, key),
        if count > 0.0 {
            1000.0 / count
        } else {
            f64::NAN
        },
    )
}

/// A cell's figures multiplied by `k` (k > 0).
pub fn scaled(c: &Cell, k: f64) -> Cell {
    match c {
        Cell::Value(s) => Cell::Value(Stat {
            median: s.median * k,
            min: s.min * k,
            max: s.max * k,
            n: s.n,
        }),
        other => other.clone(),
    }
}

/// `c` as a multiple of `floor`'s median, for a row's note.
pub fn times_floor(c: &Cell, floor: &Cell) -> String {
    match (c.median(), floor.median()) {
        (Some(a), Some(f)) if f > 0.0 => format!("{:.1}× floor", a / f),
        _ => "× floor: —".into(),
    }
}

/// 1: per-hit overhead on tight loops.
pub fn tight_loops(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let g = "1. Per-hit overhead on a tight loop (ns per hit = traced − untraced ns/call)";
    let loop_exe = env.program("loop")?;
    let (floor_exe, off) = env.pushrbp_copy(&loop_exe, "main.target")?;
    let n = if cfg.quick { "20000" } else { "300000" };
    let run = cmdline(&loop_exe, &[n]);
    let run_floor = cmdline(&floor_exe, &[n]);
    let fun = |exe: &Path| format!("process(\"{}\").function(\"main.target\")", exe.display());
    let p = fun(&loop_exe);
    let (l, lf) = (
        loop_exe.display().to_string(),
        floor_exe.display().to_string(),
    );
    let empty = format!("probe {p} {{}}");
    let counter = format!("global n; probe {p} {{ n++ }}");
    let mut cases = vec![
        Case::new("untraced", || ns_per_call(Command::new(&loop_exe).arg(n))),
        Case::new("floor: bpftrace {} at push rbp", || {
            ns_per_call(&mut bpftrace(
                &format!("uprobe:{lf}:main.target {{}}"),
                &run_floor,
                None,
            ))
        }),
        Case::new("gotap empty", || {
            ns_per_call(&mut gotap_script(env, &empty, &run, None))
        }),
        Case::new("bpftrace empty", || {
            ns_per_call(&mut bpftrace(
                &format!("uprobe:{l}:main.target {{}}"),
                &run,
                None,
            ))
        }),
        Case::new("gotap funccount", || {
            ns_per_call(&mut gotap_funccount(env, "main.target", &run))
        }),
        Case::new("gotap n++", || {
            ns_per_call(&mut gotap_script(env, &counter, &run, None))
        }),
        Case::new("bpftrace count", || {
            ns_per_call(&mut bpftrace(
                &format!("uprobe:{l}:main.target {{ @[probe] = count(); }}"),
                &run,
                None,
            ))
        }),
        Case::new("bpftrace count at push rbp", || {
            ns_per_call(&mut bpftrace(
                &format!("uprobe:{lf}:main.target {{ @[probe] = count(); }}"),
                &run_floor,
                None,
            ))
        }),
    ];
    let r = interleave("1 loop", cfg.reps, &mut cases);
    drop(cases);
    let d = |i: usize| paired_difference(&r[i], &r[0], "ns");
    let floor = d(1);
    let fl = |c: &Cell, p: &Cell| {
        format!(
            "{}; bpftrace {}",
            times_floor(c, &floor),
            times_floor(p, &floor)
        )
    };
    let mut rows = vec![
        Row::new(
            g,
            "untraced loop, ns per call",
            "ns",
            r[0].stat("ns"),
            Cell::None,
        ),
        Row::new(
            g,
            format!("floor: empty bpftrace program at `push rbp` (main.target+{off})"),
            "ns/hit",
            Cell::None,
            floor.clone(),
        ),
    ];
    let pairs: [(&str, usize, usize, bool); 4] = [
        ("1a empty probe on main.target", 2, 3, true),
        (
            "1b counter: `funccount main.target` vs `@[probe] = count()`",
            4,
            6,
            true,
        ),
        (
            "1b counter: script `n++` vs `@[probe] = count()`",
            5,
            6,
            true,
        ),
        (
            "1b counter at the same address (bpftrace on `push rbp`)",
            4,
            7,
            false,
        ),
    ];
    for (what, a, b, goal) in pairs {
        let (ca, cb) = (d(a), d(b));
        let mut row = Row::new(g, what, "ns/hit", ca.clone(), cb.clone()).note(fl(&ca, &cb));
        if goal {
            row = row.goal(Goal::RatioAtMost(0.125), "#3, #4");
        }
        rows.push(row);
    }
    rows.extend(sampling(env, cfg, g, &floor)?);
    rows.extend(backtrace(env, cfg, g, &floor)?);
    Ok(rows)
}

/// 1c: the seed's sampling logic (every 1000th hit reads two fields through three
/// pointers and prints), on a function whose argument mimics g → m → curg → stack.
fn sampling(env: &Env, cfg: &Config, g: &str, floor: &Cell) -> Result<Vec<Row>> {
    let exe = env.program("bench_sample")?;
    let (copy, _) = env.pushrbp_copy(&exe, "main.target")?;
    let off = exec::run(Command::new(&exe).arg("offsets"), LIMIT)?;
    let field = |w| off.number_after(w).map(|x| x as u64).unwrap_or(0);
    let (m, curg, hi) = (field("m"), field("curg"), field("hi"));
    let n = if cfg.quick { "20000" } else { "300000" };
    let (run, run_copy) = (cmdline(&exe, &[n]), cmdline(&copy, &[n]));
    let gotap = format!(
        "global n; probe process(\"{}\").function(\"main.target\") {{ s = n % 1000 == 0; n++; if (s) {{ old = $g->m->curg->stack->hi - $g->m->curg->stack->lo; printf(\"runtime: newstack: %d -> %d\\n\", old, old * 2) }} }}",
        exe.display()
    );
    let bt = |bin: &Path| {
        format!(
            "uprobe:{}:main.target {{ $s = @n % 1000 == 0; @n++; if ($s) {{ $m = *(uint64*)(reg(\"ax\") + {m}); $c = *(uint64*)($m + {curg}); $old = *(uint64*)($c + {hi}) - *(uint64*)$c; printf(\"runtime: newstack: %d -> %d\\n\", $old, $old * 2); }} }}",
            bin.display()
        )
    };
    let (bt_entry, bt_same) = (bt(&exe), bt(&copy));
    let null = Path::new("/dev/null");
    let mut cases = vec![
        Case::new("untraced", || ns_per_call(Command::new(&exe).arg(n))),
        Case::new("gotap sampling", || {
            ns_per_call(&mut gotap_script(env, &gotap, &run, Some(null)))
        }),
        Case::new("bpftrace sampling", || {
            ns_per_call(&mut bpftrace(&bt_entry, &run, Some(null)))
        }),
        Case::new("bpftrace sampling at push rbp", || {
            ns_per_call(&mut bpftrace(&bt_same, &run_copy, Some(null)))
        }),
    ];
    let r = interleave("1c sampling", cfg.reps, &mut cases);
    drop(cases);
    let d = |i: usize| paired_difference(&r[i], &r[0], "ns");
    let (a, b, c) = (d(1), d(2), d(3));
    Ok(vec![
        Row::new(
            g,
            "1c sampling probe (`%1000`, g→m→curg→stack, printf) vs bpftrace at entry",
            "ns/hit",
            a.clone(),
            b.clone(),
        )
        .goal(Goal::RatioAtMost(0.125), "#4")
        .note(format!(
            "{}; bpftrace {}",
            times_floor(&a, floor),
            times_floor(&b, floor)
        )),
        Row::new(
            g,
            "1c sampling probe vs bpftrace at the same address",
            "ns/hit",
            a.clone(),
            c.clone(),
        )
        .goal(Goal::RatioAtMost(1.0), "#4")
        .note("bpftrace reads the fields with reg(\"ax\") and offsets"),
    ])
}

/// 1d: a 20-frame user stack on every hit.
fn backtrace(env: &Env, cfg: &Config, g: &str, floor: &Cell) -> Result<Vec<Row>> {
    let exe = env.program("bench_deep")?;
    let n = if cfg.quick { "5000" } else { "50000" };
    let run = cmdline(&exe, &[n]);
    let gotap = format!(
        "probe process(\"{}\").function(\"main.leaf\") {{ print_ubacktrace() }}",
        exe.display()
    );
    let bt = format!(
        "uprobe:{}:main.leaf {{ @[ustack] = count(); }}",
        exe.display()
    );
    let null = Path::new("/dev/null");
    let mut cases = vec![
        Case::new("untraced", || ns_per_call(Command::new(&exe).arg(n))),
        Case::new("gotap print_ubacktrace", || {
            ns_per_call(&mut gotap_script(env, &gotap, &run, Some(null)))
        }),
        Case::new("bpftrace @[ustack]", || {
            ns_per_call(&mut bpftrace(&bt, &run, Some(null)))
        }),
    ];
    let r = interleave("1d backtrace", cfg.reps, &mut cases);
    drop(cases);
    let d = |i: usize| paired_difference(&r[i], &r[0], "ns");
    let (a, b) = (d(1), d(2));
    let lost = r[1].stat("lost").median().unwrap_or(0.0);
    let calls: f64 = n.parse().unwrap_or(1.0);
    Ok(vec![
        Row::new(g, "1d 20-frame backtrace: `print_ubacktrace()` vs `@[ustack] = count()`", "ns/hit", a.clone(), b.clone())
            .goal(Goal::RatioAtMost(1.0), "#7")
            .note(format!(
                "{}; bpftrace {}; gotap lost {lost:.0} of {calls:.0} backtraces (median); `print_ubacktrace()` sends and symbolises every stack (`s[ubacktrace()] <<< 1` aggregates in the kernel)",
                times_floor(&a, floor),
                times_floor(&b, floor)
            )),
    ])
}

/// 2: probes on runtime.newstack in a program that grows stacks many times.
pub fn growth(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let g =
        "2. Per-growth overhead, probes on runtime.newstack (bench_grow.go: grow.go timing itself)";
    let exe = env.program("bench_grow")?;
    let line = env.seed_line(&exe)?;
    let (copy, off) = env.statement_copy(&exe, "runtime.newstack", line)?;
    let layout =
        gobin::layout::RuntimeLayout::builtin(1, env.tc.minor_number().1).ok_or_else(|| {
            crate::error::Error::Setup(format!("no runtime layout for go{}", env.tc.minor))
        })?;
    let args: &[&str] = if cfg.quick {
        &["100", "200", "2"]
    } else {
        &["1000", "200", "72"]
    };
    let (run, run_copy) = (cmdline(&exe, args), cmdline(&copy, args));
    let seed = seed_script(&exe, line);
    let same = format!(
        "uprobe:{}:runtime.newstack {{ $s = @n % 1000 == 0; @n++; if ($s) {{ $m = *(uint64*)(reg(\"r14\") + {}); $c = *(uint64*)($m + {}); $old = *(uint64*)($c + {}) - *(uint64*)($c + {}); printf(\"runtime: newstack: %d -> %d\\n\", $old, $old * 2); }} }}",
        copy.display(),
        layout.g_m,
        layout.m_curg,
        layout.g_stack_hi,
        layout.g_stack_lo
    );
    let count = format!(
        "uprobe:{}:runtime.newstack {{ @c = count(); }}",
        exe.display()
    );
    let (out_g, out_b) = (
        env.work.join("seed-gotap.out"),
        env.work.join("seed-bpftrace.out"),
    );
    let wall = |cmd: &mut Command| -> Result<Sample> {
        let f = exec::run(cmd, LIMIT)?;
        let mut s = Sample::new();
        let ms = f
            .number_after("elapsed_ms")
            .ok_or_else(|| crate::error::Error::Failed {
                command: exec::describe(cmd),
                detail: "no `elapsed_ms` line".into(),
            })?;
        s.insert("ms", ms);
        if let Some(c) = f.number_after("@c:") {
            s.insert("growths", c);
        }
        if let Some(c) = f
            .lines
            .iter()
            .find_map(|(_, l)| exec::number_after(l, "runtime.newstack"))
        {
            s.insert("growths", c);
        }
        Ok(s)
    };
    let mut cases = vec![
        Case::new("untraced", || wall(Command::new(&exe).args(args))),
        Case::new("gotap seed", || {
            wall(&mut gotap_script(env, &seed, &run, Some(&out_g)))
        }),
        Case::new("bpftrace seed at same address", || {
            wall(&mut bpftrace(&same, &run_copy, Some(&out_b)))
        }),
        Case::new("gotap funccount", || {
            wall(&mut gotap_funccount(env, "runtime.newstack", &run))
        }),
        Case::new("bpftrace count", || wall(&mut bpftrace(&count, &run, None))),
    ];
    let r = interleave("2 growth", cfg.reps, &mut cases);
    drop(cases);
    let growths = Stat::of(&[r[3].values("growths"), r[4].values("growths")].concat())
        .map(|s| s.median)
        .unwrap_or(0.0);
    let per = |i: usize| micros_each(&r, i, growths);
    let sizes = format!(
        "sizes printed (last run): gotap {}, bpftrace {}",
        printed_sizes(&out_g),
        printed_sizes(&out_b)
    );
    Ok(vec![
        Row::new(g, "untraced wall time", "ms", r[0].stat("ms"), Cell::None).note(format!("{growths:.0} stack growths (counted by both tools)")),
        Row::new(g, format!("seed script (every 1000th, no backtrace) vs same logic in bpftrace at the same address (runtime.newstack+{off}, stack.go:{line})"), "µs/growth", per(1), per(2))
            .goal(Goal::RatioAtMost(1.0), "#4")
            .note(sizes),
        Row::new(g, "counter: `funccount runtime.newstack` vs `@c = count()` at entry", "µs/growth", per(3), per(4)).goal(Goal::RatioAtMost(0.125), "#3"),
        Row::new(g, "seed script vs bpftrace `@c = count()` at entry", "µs/growth", per(1), per(4)),
    ])
}

/// The seed's sampling script without the backtrace, at `stack.go:LINE` of `exe`.
pub fn seed_script(exe: &Path, line: u32) -> String {
    format!(
        "global printstackgrow\nprobe process(\"{}\").statement(\"runtime.newstack@runtime/stack.go:{line}\")\n{{\n  shouldPrintStack = printstackgrow % 1000 == 0\n  printstackgrow++\n  if (shouldPrintStack) {{\n    oldSize = $thisg->m->curg->stack->hi - $thisg->m->curg->stack->lo\n    newSize = oldSize * 2\n    printf(\"runtime: newstack: %d -> %d\\n\", oldSize, newSize)\n  }}\n}}\n",
        exe.display()
    )
}

/// The old sizes a sampling script printed, each with how often, to show that both
/// tools read the same fields (which hits are sampled differs with scheduling).
fn printed_sizes(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut m = std::collections::BTreeMap::<u64, u32>::new();
    for l in text.lines() {
        if let Some(n) = exec::number_after(l, "newstack:") {
            *m.entry(n as u64).or_default() += 1;
        }
    }
    let v: Vec<String> = m.iter().map(|(k, n)| format!("{k}×{n}")).collect();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(" ")
    }
}
