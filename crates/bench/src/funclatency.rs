//! Comparison 10: what `gotap funclatency` adds to each call it times (issue 14). The
//! workload is bench_sites.go's `ret` loop, which times its own calls of `main.framed`
//! (a framed function with one `RET`). gotap probes the function's `push rbp` and its
//! `RET`, and times each call in the kernel by goroutine. The floor is an empty
//! bpftrace program on each of those two instructions; bpftrace takes no offsets, so
//! it gets a copy of the workload whose `main.framed` starts at the `push rbp` and
//! whose `main.leaf` (not run by this loop) is aimed at the `RET` (see `elf`). The peer
//! is bpftrace timing the same calls at the same two addresses as its users write it,
//! a start time in a map keyed by thread id; bpftrace's own `uretprobe` is run too and
//! reported as what it does to the target (it rewrites the return address on a stack
//! Go may move, and the program dies of it), with the number of runs it killed.

use crate::Config;
use crate::error::{Error, Result};
use crate::exec;
use crate::overhead::{crashed, ns_per_call, times_floor};
use crate::report::{Goal, Row};
use crate::setup::Env;
use crate::stats::{Case, Cell, Sample, interleave, paired_difference};
use crate::tools::{bpftrace, cmdline, gotap_script};
use std::process::Command;
use std::time::Duration;

/// The group's heading in the table.
const GROUP: &str = "10. `gotap funclatency` per call (bench_sites.go `ret`: main.framed in a loop; ns per call = traced − untraced ns/call)";

/// `ns/call` of a run, or an error that says which signal killed the traced program
/// (`crashed (SIGILL)`), whatever the tracer's exit status.
fn ns_or_crash(cmd: &mut Command) -> Result<Sample> {
    let f = exec::run_any(cmd, Duration::from_secs(900))?;
    if let Some(sig) = crashed(&f) {
        return Err(Error::Failed {
            command: exec::describe(cmd),
            detail: format!("the traced program crashed ({sig})"),
        });
    }
    let ns = f.number_after("ns/call").ok_or_else(|| Error::Failed {
        command: exec::describe(cmd),
        detail: format!("{}: no `ns/call` line", f.status),
    })?;
    Ok(Sample::from([("ns", ns)]))
}

/// How many of `errors` are a crash of the traced program, and the signals named.
fn crashes(errors: &[String]) -> (usize, Vec<String>) {
    let mut signals: Vec<String> = Vec::new();
    let mut n = 0;
    for e in errors {
        let Some(rest) = e.split("crashed (").nth(1) else {
            continue;
        };
        n += 1;
        let sig = rest.split(')').next().unwrap_or("").to_string();
        if !signals.contains(&sig) {
            signals.push(sig);
        }
    }
    (n, signals)
}

pub fn funclatency(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let exe = env.program("bench_sites")?;
    let (copy, offs) = env.aimed_copy(
        &exe,
        "latency",
        &[
            ("main.framed", "main.framed", "PUSHQ BP"),
            ("main.leaf", "main.framed", "RET"),
        ],
    )?;
    let n = if cfg.quick { "20000" } else { "100000" };
    let (run, run_copy) = (cmdline(&exe, &["ret", n]), cmdline(&copy, &["ret", n]));
    let (e, c) = (exe.display().to_string(), copy.display().to_string());
    let floor = format!("uprobe:{c}:main.framed {{}} uprobe:{c}:main.leaf {{}}");
    let empty = format!(
        "probe process(\"{e}\").function(\"main.framed\") {{}} probe process(\"{e}\").function(\"main.framed\").return {{}}"
    );
    let timed = |entry: &str, ret: &str| {
        format!(
            "{entry} {{ @start[tid] = nsecs; }} {ret} /@start[tid]/ {{ @ns = hist(nsecs - @start[tid]); delete(@start[tid]); }}"
        )
    };
    let same = timed(
        &format!("uprobe:{c}:main.framed"),
        &format!("uprobe:{c}:main.leaf"),
    );
    let uret = timed(
        &format!("uprobe:{e}:main.framed"),
        &format!("uretprobe:{e}:main.framed"),
    );
    let mut cases = vec![
        Case::new("untraced", || {
            ns_per_call(Command::new(&exe).args(["ret", n]))
        }),
        Case::new("floor: bpftrace {} at push rbp and RET", || {
            ns_per_call(&mut bpftrace(&floor, &run_copy, None))
        }),
        Case::new("gotap empty entry and .return", || {
            ns_per_call(&mut gotap_script(env, &empty, &run, None))
        }),
        Case::new("gotap funclatency", || {
            ns_per_call(
                Command::new(&env.gotap)
                    .args(["funclatency", "-c", &run])
                    .arg("main.framed"),
            )
        }),
        Case::new("bpftrace uprobe+uprobe @start[tid]", || {
            ns_per_call(&mut bpftrace(&same, &run_copy, None))
        }),
        Case::new("bpftrace uprobe+uretprobe", || {
            ns_or_crash(&mut bpftrace(&uret, &run, None))
        }),
    ];
    let r = interleave("10 funclatency", cfg.reps, &mut cases);
    drop(cases);
    let d = |i: usize| paired_difference(&r[i], &r[0], "ns");
    let (floor, empty, ours, theirs) = (d(1), d(2), d(3), d(4));
    let (entry_off, ret_off) = (offs[0], offs[1]);
    let (killed, signals) = crashes(&r[5].errors);
    let runs = r[5].samples.len() + r[5].errors.len();
    let uret_cell = if r[5].samples.is_empty() && killed > 0 {
        Cell::Failed(format!(
            "the target crashed ({}) in {killed} of {runs} runs",
            signals.join(", ")
        ))
    } else {
        d(5)
    };
    Ok(vec![
        Row::new(
            GROUP,
            "untraced loop, ns per call",
            "ns",
            r[0].stat("ns"),
            Cell::None,
        ),
        Row::new(
            GROUP,
            format!(
                "floor: empty bpftrace programs at `push rbp` and `RET` (main.framed+{entry_off}, +{ret_off})"
            ),
            "ns/call",
            Cell::None,
            floor.clone(),
        ),
        Row::new(
            GROUP,
            "gotap's empty script on the same two sites (`.function` and `.return`) vs the floor",
            "ns/call",
            empty.clone(),
            floor.clone(),
        )
        .peer_name("floor"),
        Row::new(
            GROUP,
            "10a `funclatency main.framed` vs the floor",
            "ns/call",
            ours.clone(),
            floor.clone(),
        )
        .peer_name("floor")
        .goal(Goal::RatioAtMost(1.1), "#14"),
        Row::new(
            GROUP,
            "10b `funclatency` vs bpftrace `uprobe`+`uprobe` at the same addresses (`@start[tid]`, `hist()`)",
            "ns/call",
            ours.clone(),
            theirs.clone(),
        )
        .note(format!(
            "{}; bpftrace {}; bpftrace keys by thread, which is wrong when a goroutine moves between threads during the call",
            times_floor(&ours, &floor),
            times_floor(&theirs, &floor)
        )),
        Row::new(
            GROUP,
            "10c `funclatency` vs bpftrace `uprobe`+`uretprobe` on main.framed",
            "ns/call",
            ours.clone(),
            uret_cell,
        )
        .note(format!(
            "bpftrace's uretprobe killed the target in {killed} of {runs} runs{}",
            if signals.is_empty() {
                String::new()
            } else {
                format!(" ({})", signals.join(", "))
            }
        )),
    ])
}
