//! Comparison 8: what `gotap stackgrow` adds to each goroutine stack growth (issue
//! 6), against bpftrace counting the same growths with a counter on
//! `runtime.newstack`. The workload is bench_grow.go, which times its own rounds, so
//! neither tracer's start or exit is counted; the cost of a growth is the traced time
//! minus the untraced time of the same repetition, over the growths both tools count.
//! The floor is an empty bpftrace program on the instruction gotap probes
//! (`runtime.copystack`'s `push rbp`, through a moved symbol, see `elf`): the uprobe
//! itself, which no program can avoid.
//!
//! Wall time on a shared machine moves by a microsecond a growth from run to run, so
//! the same cases are also measured as the kernel time the program is charged for
//! (`/usr/bin/time`'s system seconds, with `GOMAXPROCS=1` so that no idle thread
//! spins): a uprobe's trap and its program run in the traced thread's system time.
//! There each tracer watches the binary and is stopped with SIGINT once the
//! program has run, so its own start and exit are not charged to the program.

use crate::Config;
use crate::error::{Error, Result};
use crate::exec::{self, Finished};
use crate::overhead::{micros_each, micros_per, times_floor};
use crate::report::{Goal, Row};
use crate::setup::Env;
use crate::stats::{Case, Cell, Sample, Stat, interleave};
use crate::tools::{bpftrace, bpftrace_bare, cmdline};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(900);

/// Every how many growths `stackgrow` prints one with its backtrace here: the seed
/// article's rate.
const EVERY: &str = "1000";

/// The growths a run counted: `stackgrow`'s "N stack growths", bpftrace's `@n: N`.
fn growths(f: &Finished) -> Option<f64> {
    f.lines
        .iter()
        .find_map(|(_, l)| {
            l.strip_suffix(" stack growths")
                .and_then(|n| n.trim().parse().ok())
        })
        .or_else(|| f.number_after("@n:"))
}

fn wall(cmd: &mut Command) -> Result<Sample> {
    let f = exec::run(cmd, LIMIT)?;
    let ms = f.number_after("elapsed_ms").ok_or_else(|| Error::Failed {
        command: exec::describe(cmd),
        detail: "no `elapsed_ms` line".into(),
    })?;
    let mut s = Sample::new();
    s.insert("ms", ms);
    if let Some(n) = growths(&f) {
        s.insert("growths", n);
    }
    s.insert("lost", exec::lost_events(&f.stderr));
    Ok(s)
}

/// The program's system time (ms) run by `/usr/bin/time` on one P while `tracer`
/// (if any) watches its binary, armed when it prints `marker`; and the growths the
/// tracer counted.
fn sys_ms(
    exe: &std::path::Path,
    args: &[&str],
    tracer: Option<(&mut Command, &str)>,
) -> Result<Sample> {
    let mut prog = Command::new("/usr/bin/time");
    prog.args(["-f", "cpu_s %U %S"])
        .arg(exe)
        .args(args)
        .env("GOMAXPROCS", "1");
    let (f, text) = match tracer {
        Some((t, marker)) => {
            let (f, i) = exec::while_armed(t, marker, LIMIT, || exec::run(&mut prog, LIMIT))?;
            (f, i.text)
        }
        None => (exec::run(&mut prog, LIMIT)?, String::new()),
    };
    let sys = f
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("cpu_s "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| Error::Failed {
            command: exec::describe(&prog),
            detail: "no `cpu_s` line from /usr/bin/time".into(),
        })?;
    let mut s = Sample::new();
    s.insert("sys_ms", sys * 1000.0);
    let counted = text.lines().find_map(|l| {
        l.strip_suffix(" stack growths")
            .and_then(|n| n.trim().parse().ok())
            .or_else(|| exec::number_after(l, "@n:"))
    });
    if let Some(n) = counted {
        s.insert("growths", n);
    }
    Ok(s)
}

/// 8: `gotap stackgrow --every 1000` against bpftrace's `@n++` on runtime.newstack.
pub fn stackgrow(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let g = "8. `gotap stackgrow` per growth (bench_grow.go; µs per growth = traced − untraced wall time over the growths counted)";
    let exe = env.program("bench_grow")?;
    let (floor_exe, off) = env.pushrbp_copy(&exe, "runtime.copystack")?;
    let args: &[&str] = if cfg.quick {
        &["100", "100", "4"]
    } else {
        &["1000", "100", "84"]
    };
    let (run, run_floor) = (cmdline(&exe, args), cmdline(&floor_exe, args));
    let count = format!("uprobe:{}:runtime.newstack {{ @n++ }}", exe.display());
    let empty = format!("uprobe:{}:runtime.copystack {{}}", floor_exe.display());
    // bpftrace runs BEGIN once every probe is attached; its line marks "armed".
    let armed = |s: &str| format!("BEGIN {{ printf(\"armed\\n\"); }} {s}");
    let (count_watch, empty_watch) = (armed(&count), armed(&empty));
    let gotap_watch = || {
        let mut c = Command::new(&env.gotap);
        c.args(["stackgrow", "-v", "--every", EVERY]).arg(&exe);
        c
    };
    let bpftrace_watch = |script: &str| {
        let mut c = bpftrace_bare();
        c.args(["-e", script]);
        c
    };
    let mut cases = vec![
        Case::new("untraced", || wall(Command::new(&exe).args(args))),
        Case::new("gotap stackgrow", || {
            wall(
                Command::new(&env.gotap)
                    .args(["stackgrow", "--every", EVERY, "-c"])
                    .arg(&run),
            )
        }),
        Case::new("bpftrace @n++ on runtime.newstack", || {
            wall(&mut bpftrace(&count, &run, None))
        }),
        Case::new("floor: bpftrace {} at copystack's push rbp", || {
            wall(&mut bpftrace(&empty, &run_floor, None))
        }),
        Case::new("sys: untraced", || sys_ms(&exe, args, None)),
        Case::new("sys: gotap stackgrow", || {
            sys_ms(&exe, args, Some((&mut gotap_watch(), "probes attached")))
        }),
        Case::new("sys: bpftrace @n++", || {
            sys_ms(
                &exe,
                args,
                Some((&mut bpftrace_watch(&count_watch), "armed")),
            )
        }),
        Case::new("sys: floor", || {
            sys_ms(
                &floor_exe,
                args,
                Some((&mut bpftrace_watch(&empty_watch), "armed")),
            )
        }),
    ];
    let r = interleave("8 stackgrow", cfg.reps, &mut cases);
    drop(cases);
    // bpftrace's `@n++` is not atomic and loses a few counts when two CPUs add at
    // once; gotap's count is exact (its tests assert it), so it is the one used.
    let growths = [r[1].values("growths"), r[2].values("growths")]
        .iter()
        .find_map(|v| Stat::of(v))
        .map(|s| s.median)
        .unwrap_or(0.0);
    let per = |i: usize| micros_each(&r, i, growths);
    let (tool, peer, floor) = (per(1), per(2), per(3));
    let lost = r[1].stat("lost").median().unwrap_or(0.0);
    // A tracer that missed growths (armed late) would look cheap: such runs count.
    let short = r[5..7]
        .iter()
        .flat_map(|x| x.values("growths"))
        .filter(|n| *n < growths)
        .count();
    let per_sys = |i: usize| micros_per(&r[i], &r[4], "sys_ms", growths);
    let (tool_sys, peer_sys, floor_sys) = (per_sys(5), per_sys(6), per_sys(7));
    Ok(vec![
        Row::new(g, "untraced wall time", "ms", r[0].stat("ms"), Cell::None).note(format!(
            "{growths:.0} stack growths (as gotap counts them; `{}` args {})",
            exe.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            args.join(" ")
        )),
        Row::new(
            g,
            format!("floor: empty bpftrace program at `push rbp` (runtime.copystack+{off})"),
            "µs/growth",
            Cell::None,
            floor.clone(),
        )
        .note(match (floor.median(), peer.median()) {
            (Some(f), Some(p)) if p > 0.0 => format!(
                "the uprobe alone is {:.2}× bpftrace's counter: no program at this placement can do better",
                f / p
            ),
            _ => String::new(),
        }),
        Row::new(
            g,
            format!(
                "`gotap stackgrow --every {EVERY}` vs bpftrace `uprobe:BIN:runtime.newstack {{ @n++ }}`"
            ),
            "µs/growth",
            tool.clone(),
            peer.clone(),
        )
        .goal(Goal::RatioAtMost(0.2), "#6")
        .note(format!(
            "{}; bpftrace {}; gotap counts every growth per function and sizes in the kernel and prints every {EVERY}th with its backtrace (lost records, median: {lost:.0})",
            times_floor(&tool, &floor),
            times_floor(&peer, &floor)
        )),
        Row::new(
            g,
            "the same in the kernel: system time per growth (GOMAXPROCS=1, tracer watching the binary)",
            "µs/growth",
            tool_sys.clone(),
            peer_sys.clone(),
        )
        .note(format!(
            "{}; bpftrace {}; the floor (empty bpftrace program at copystack's `push rbp`) {}; runs in which a watching tracer counted fewer growths than there were (armed late): {short}",
            times_floor(&tool_sys, &floor_sys),
            times_floor(&peer_sys, &floor_sys),
            floor_sys
                .median()
                .map(|f| format!("{f:.2} µs"))
                .unwrap_or_else(|| "—".into())
        )),
    ])
}
