//! Go-safe return probes under stress: `.function("F").return` with `$return` and
//! `@entry($n)` on tests/testprogs/ret_stress.go, whose goroutines recurse deep enough
//! for the runtime to copy their stacks mid-recursion, and leave the recursion
//! normally, through `defer`, through `panic`/`recover` and through `runtime.Goexit`.
//!
//! The script checks in the kernel that every return's `$return` is what the function
//! computes from its `@entry($n)`, and counts entries and returns per process; the
//! program counts, per run, the calls it made and the calls that really returned. A
//! traced run must print exactly what an untraced run prints. Needs root.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Counts, per traced process, the entries of main.rec, its returns, and the returns
/// whose `$return` is not tri(@entry($n)), which every way out of rec that returns
/// gives (see ret_stress.go).
fn script(bin: &Path) -> String {
    let p = bin.display();
    format!(
        r#"global entries, returns, bad
probe process("{p}").function("main.rec") {{ entries[pid()]++ }}
probe process("{p}").function("main.rec").return {{
  returns[pid()]++
  n = @entry($n)
  if ($return != n * (n + 1) / 2) bad[pid()]++
}}
probe begin {{ printf("ready\n") }}
probe end {{
  foreach ([p] in entries)
    printf("pid %d entries %d returns %d bad %d\n", p, entries[p], returns[p], bad[p])
}}
"#
    )
}

/// What the script counted for one process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Seen {
    entries: u64,
    returns: u64,
    bad: u64,
}

fn seen_per_pid(stdout: &str) -> BTreeMap<u32, Seen> {
    let mut m = BTreeMap::new();
    for line in stdout.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let ["pid", pid, "entries", e, "returns", r, "bad", b] = w[..] {
            let n = |s: &str| s.parse::<u64>().expect("a count");
            m.insert(
                pid.parse().expect("a pid"),
                Seen {
                    entries: n(e),
                    returns: n(r),
                    bad: n(b),
                },
            );
        }
    }
    m
}

/// `calls C returns R checksum X`, as ret_stress.go prints it: (C, R).
fn program_counts(stdout: &str) -> (u64, u64) {
    let w: Vec<&str> = stdout.split_whitespace().collect();
    match w[..] {
        ["calls", c, "returns", r, "checksum", _] => {
            (c.parse().expect("calls"), r.parse().expect("returns"))
        }
        _ => panic!("unexpected program output: {stdout:?}"),
    }
}

/// A gotap running `script` on a private binary, with every probe attached.
struct Tracer {
    /// Taken by `stop`; a tracer dropped without it (a failed assertion) is killed.
    child: Option<Child>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Tracer {
    fn start(script_file: &Path) -> Tracer {
        let mut child = gotap()
            .arg(script_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gotap");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
        // `begin` runs once every probe is attached.
        let mut first = String::new();
        lines.read_line(&mut first).expect("read gotap's output");
        if first.trim() != "ready" {
            let (out, _) = wait_output(child, Duration::from_secs(10));
            panic!(
                "gotap did not start: {first:?}\nstderr:\n{}",
                text(&out.stderr)
            );
        }
        let stdout = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut lines, &mut rest);
            rest
        });
        Tracer {
            child: Some(child),
            stdout: Some(stdout),
        }
    }

    /// Ends the run as a user would (SIGINT) and returns (stdout, stderr).
    fn stop(mut self) -> (String, String) {
        let child = self.child.take().expect("a running tracer");
        let status = Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let (out, killed) = wait_output(child, Duration::from_secs(30));
        assert!(!killed, "gotap did not end on SIGINT");
        assert_eq!(
            out.status.code(),
            Some(0),
            "gotap failed: {}",
            text(&out.stderr)
        );
        let stdout = self.stdout.take().map(|h| h.join().unwrap_or_default());
        (stdout.unwrap_or_default(), text(&out.stderr))
    }
}

/// Runs `bin ARGS` `runs` times under one gotap, each run compared with an untraced
/// run, and checks what the probes saw of each against what the run says it did.
fn stress(tc: &Toolchain, variant: Variant, runs: usize, args: &[&str]) {
    let what = format!("go{} {variant}", tc.minor);
    let prog = Private::copy(
        &testprogs::build("ret_stress", tc, variant),
        // Each test its own copy: a probe on the file sees every process running it,
        // and tests run in parallel.
        &format!("ret-{}-{variant}-{runs}", tc.minor),
    );
    let untraced = run(Command::new(&prog.path).args(args));
    assert!(untraced.status.success(), "{what}: untraced run failed");
    let (calls, returns) = program_counts(&text(&untraced.stdout));
    assert!(
        returns < calls,
        "{what}: the panic and Goexit paths should leave calls unreturned"
    );

    let script_file = prog.path.with_file_name("returns.stp");
    std::fs::write(&script_file, script(&prog.path)).expect("write script");
    let tracer = Tracer::start(&script_file);
    let mut pids = Vec::with_capacity(runs);
    let t0 = Instant::now();
    for i in 0..runs {
        let child = Command::new(&prog.path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run program");
        pids.push(child.id());
        let (out, killed): (Output, bool) = wait_output(child, Duration::from_secs(60));
        assert!(!killed, "{what}: traced run {i} hung");
        assert_eq!(
            out.status.code(),
            untraced.status.code(),
            "{what}: traced run {i}: exit status"
        );
        assert_eq!(
            text(&out.stdout),
            text(&untraced.stdout),
            "{what}: traced run {i}: output"
        );
        assert_eq!(
            text(&out.stderr),
            text(&untraced.stderr),
            "{what}: traced run {i}: stderr"
        );
    }
    let elapsed = t0.elapsed();
    let (stdout, stderr) = tracer.stop();
    assert!(
        !stderr.contains("WARNING"),
        "{what}: events or values were lost:\n{stderr}"
    );
    let seen = seen_per_pid(&stdout);
    assert_eq!(seen.len(), runs, "{what}: processes seen\n{stdout}");
    let expected = Seen {
        entries: calls,
        returns,
        bad: 0,
    };
    for pid in pids {
        assert_eq!(
            seen.get(&pid),
            Some(&expected),
            "{what}: pid {pid} (calls, real returns, bad $return)"
        );
    }
    eprintln!(
        "{what}: {runs} traced runs of {calls} calls and {returns} returns in {:.1} s",
        elapsed.as_secs_f64()
    );
}

#[test]
fn entries_and_returns_are_exact_over_500_runs() {
    stress(&testprogs::newest(), Variant::Default, 500, &["8", "300"]);
}

#[test]
fn entries_and_returns_are_exact_on_every_toolchain_and_build() {
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::Pie, Variant::NoOpt] {
            stress(&tc, v, 10, &["8", "300"]);
        }
    }
}

/// Processes running one binary at once have the same goroutine ids at the same
/// stack depths; the `@entry` values of one must never be read by another. Each
/// process recurses to a different depth, so a value read from another process's
/// call at the same place would be another `n`.
#[test]
fn concurrent_processes_keep_their_own_entry_values() {
    let tc = testprogs::newest();
    let prog = Private::copy(
        &testprogs::build("ret_stress", &tc, Variant::Default),
        "ret-concurrent",
    );
    let script_file = prog.path.with_file_name("returns.stp");
    std::fs::write(&script_file, script(&prog.path)).expect("write script");
    let tracer = Tracer::start(&script_file);
    let mut expected = BTreeMap::new();
    for round in 0..3 {
        let children: Vec<Child> = (0..6)
            .map(|k| {
                Command::new(&prog.path)
                    .args(["8", &(200 + 5 * k + round).to_string()])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run program")
            })
            .collect();
        for c in children {
            let pid = c.id();
            let (out, killed) = wait_output(c, Duration::from_secs(60));
            assert!(!killed && out.status.success(), "run {pid} failed");
            let (calls, returns) = program_counts(&text(&out.stdout));
            expected.insert(
                pid,
                Seen {
                    entries: calls,
                    returns,
                    bad: 0,
                },
            );
        }
    }
    let (stdout, stderr) = tracer.stop();
    assert!(!stderr.contains("WARNING"), "{stderr}");
    assert_eq!(seen_per_pid(&stdout), expected, "\n{stdout}");
}

/// Calls that never return leave their `@entry` values behind: far more of them than
/// the map holds must not push out the values of calls that do return.
#[test]
fn calls_that_never_return_do_not_crowd_out_the_rest() {
    let tc = testprogs::newest();
    let prog = Private::copy(
        &testprogs::build("ret_stress", &tc, Variant::Default),
        "ret-crowd",
    );
    // 100 goroutines end with Goexit and 100 panic, leaving about 30,000 calls that
    // never return, three times what the map holds.
    let untraced = run(Command::new(&prog.path).args(["400", "100"]));
    let (calls, returns) = program_counts(&text(&untraced.stdout));
    let script_file = prog.path.with_file_name("returns.stp");
    std::fs::write(&script_file, script(&prog.path)).expect("write script");
    let out = run(gotap()
        .arg(&script_file)
        .arg("-c")
        .arg(format!("{} 400 100", prog.path.display())));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&text(&untraced.stdout)),
        "the program's output changed:\n{stdout}"
    );
    assert!(!stderr.contains("WARNING"), "{stderr}");
    let seen: Vec<Seen> = seen_per_pid(&stdout).into_values().collect();
    assert_eq!(
        seen,
        vec![Seen {
            entries: calls,
            returns,
            bad: 0
        }],
        "\n{stdout}"
    );
}

/// Every return that sends an event either arrives or is counted as lost: the lines
/// printed plus the events gotap reports lost equal the returns the kernel counted,
/// which equal the calls the program saw return; every line that arrives is right.
#[test]
fn every_return_event_arrives_or_is_counted_lost() {
    let tc = testprogs::newest();
    let prog = Private::copy(
        &testprogs::build("ret_stress", &tc, Variant::Default),
        "ret-events",
    );
    // About 190,000 returns in a few seconds, each event carrying two long strings:
    // more than the ring buffer holds when user space falls behind, which it does
    // on a loaded machine (and if it does not, nothing is lost, which must add up
    // as well).
    let args = "1000 300";
    let untraced = run(Command::new(&prog.path).args(args.split(' ')));
    let (_, returns) = program_counts(&text(&untraced.stdout));
    let script_file = prog.path.with_file_name("events.stp");
    let p = prog.path.display();
    let pad = "0123456789".repeat(12);
    std::fs::write(
        &script_file,
        format!(
            r#"global returns
probe process("{p}").function("main.rec").return {{
  returns++
  printf("ret %d %d %s %s\n", @entry($n), $return, "{pad}", "{pad}")
}}
probe end {{ printf("returns %d\n", returns) }}
"#
        ),
    )
    .expect("write script");
    let out_file = prog.path.with_file_name("events.out");
    let out = run(gotap()
        .arg(&script_file)
        .arg("-o")
        .arg(&out_file)
        .arg("-c")
        .arg(format!("{p} {args}")));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        text(&out.stdout),
        text(&untraced.stdout),
        "the program's output changed"
    );
    let printed = std::fs::read_to_string(&out_file).expect("read -o output");
    let lost: u64 = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("WARNING: ")?
                .split_once(" events lost")?
                .0
                .parse()
                .ok()
        })
        .unwrap_or(0);
    // A return whose call's `@entry` values were pushed out (more calls pending
    // than gotap keeps) reads n as 0, and is counted as such.
    let missed: u64 = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("WARNING: ")?
                .split_once(" returns found no @entry values")?
                .0
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let (mut arrived, mut wrong) = (0u64, 0u64);
    for line in printed.lines().filter(|l| l.starts_with("ret ")) {
        let w: Vec<i64> = line
            .split_whitespace()
            .skip(1)
            .take(2)
            .filter_map(|x| x.parse().ok())
            .collect();
        match w[..] {
            [n, r] if r == n * (n + 1) / 2 => {}
            [0, _] => wrong += 1,
            _ => panic!("a wrong return value: {line:?}"),
        }
        arrived += 1;
    }
    assert!(
        printed.lines().any(|l| l == format!("returns {returns}")),
        "returns counted in the kernel\n{stderr}"
    );
    assert_eq!(
        arrived + lost,
        returns,
        "events printed {arrived}, lost {lost}\n{stderr}"
    );
    assert!(
        wrong <= missed,
        "{wrong} returns read n as 0, {missed} counted\n{stderr}"
    );
    eprintln!(
        "{returns} return events: {arrived} printed, {lost} counted lost; {wrong} printed without @entry, {missed} counted"
    );
}
