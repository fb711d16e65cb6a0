//! Comparison 12: what `gotap offcpu` adds to each wait (issue 14). The workload is
//! bench_park.go, two goroutines passing a token over unbuffered channels with
//! `GOMAXPROCS=1`, so that each round trip is two waits, each a `runtime.gopark` and
//! then a `runtime.execute` of the parked goroutine; it prints its time per wait. The
//! floor is two empty bpftrace programs on the instructions gotap probes (the `push
//! rbp` of `gopark` and of `execute`, through a copy whose two symbols start there,
//! see `elf`): the two uprobes a wait passes, which no program at these sites avoids.
//! gotap's own empty script on the same two functions is measured beside it. No
//! bpftrace program is the peer: bpftrace cannot name the goroutine (it keys by
//! thread), so the issue sets `offcpu` against the floor.

use crate::Config;
use crate::error::Result;
use crate::overhead::{ns_per_call, times_floor};
use crate::report::Row;
use crate::setup::Env;
use crate::stats::{Case, Cell, interleave, paired_difference};
use crate::tools::{bpftrace, cmdline, gotap_script};
use std::process::Command;

const GROUP: &str = "12. `gotap offcpu` per wait (bench_park.go: channel ping-pong on one P; ns per wait = traced − untraced ns per park/ready pair)";

pub fn offcpu(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let exe = env.program("bench_park")?;
    let (copy, offs) = env.aimed_copy(
        &exe,
        "parkrun",
        &[
            ("runtime.gopark", "runtime.gopark", "PUSHQ BP"),
            ("runtime.execute", "runtime.execute", "PUSHQ BP"),
        ],
    )?;
    let n = if cfg.quick { "20000" } else { "200000" };
    let (run, run_copy) = (cmdline(&exe, &[n]), cmdline(&copy, &[n]));
    let (e, c) = (exe.display().to_string(), copy.display().to_string());
    let floor = format!("uprobe:{c}:runtime.gopark {{}} uprobe:{c}:runtime.execute {{}}");
    let empty = format!(
        "probe process(\"{e}\").function(\"runtime.gopark\") {{}} probe process(\"{e}\").function(\"runtime.execute\") {{}}"
    );
    // One P: every wait is a park and an execute, and the workload's count is exact.
    let one_p = |mut c: Command| {
        c.env("GOMAXPROCS", "1");
        c
    };
    let mut cases = vec![
        Case::new("untraced", || {
            ns_per_call(&mut one_p({
                let mut c = Command::new(&exe);
                c.arg(n);
                c
            }))
        }),
        Case::new("floor: bpftrace {} at gopark and execute", || {
            ns_per_call(&mut one_p(bpftrace(&floor, &run_copy, None)))
        }),
        Case::new("gotap empty gopark and execute", || {
            ns_per_call(&mut one_p(gotap_script(env, &empty, &run, None)))
        }),
        Case::new("gotap offcpu", || {
            let mut c = Command::new(&env.gotap);
            c.args(["offcpu", "-c", &run]);
            ns_per_call(&mut one_p(c))
        }),
    ];
    let r = interleave("12 offcpu", cfg.reps, &mut cases);
    drop(cases);
    let d = |i: usize| paired_difference(&r[i], &r[0], "ns");
    let (floor, empty, ours) = (d(1), d(2), d(3));
    Ok(vec![
        Row::new(
            GROUP,
            "untraced, ns per wait",
            "ns",
            r[0].stat("ns"),
            Cell::None,
        ),
        Row::new(
            GROUP,
            format!(
                "floor: empty bpftrace programs at `push rbp` of runtime.gopark (+{}) and runtime.execute (+{})",
                offs[0], offs[1]
            ),
            "ns/wait",
            Cell::None,
            floor.clone(),
        ),
        Row::new(
            GROUP,
            "gotap's empty script on the same two functions vs the floor",
            "ns/wait",
            empty.clone(),
            floor.clone(),
        )
        .peer_name("floor"),
        Row::new(
            GROUP,
            "12a `offcpu` (park time, reason and backtrace kept per goroutine; time added per reason and stack) vs the floor",
            "ns/wait",
            ours.clone(),
            floor.clone(),
        )
        .peer_name("floor")
        .note(times_floor(&ours, &floor)),
    ])
}
