//! The runtime tools' numbers held to Go's own: `goroutines` against
//! `runtime.NumGoroutine()` printed by the program at the same moments, `gcstat`
//! against `GODEBUG=gctrace=1` and `runtime/metrics`, `funclatency` against the
//! program's own `time.Since`, `offcpu` against its own `time.Now` around the calls
//! that wait, printed and exported (a real Prometheus scraping funclatency, a real
//! OpenTelemetry Collector receiving offcpu's pushes). Real programs built by every
//! installed toolchain, stripped and not, traced from their start (`-c`) and attached
//! mid-run (`-x`). Needs root.

mod common;
mod live;

use common::*;
use live::Live;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;
use testprogs::peers::{self, Collector, Prometheus, as_u64, points};

/// How long a test waits for a line, a scrape or a push.
const LONG: Duration = Duration::from_secs(60);

/// `(unix ms, NumGoroutine)` from the program's `n MS N` lines.
fn program_counts(out: &str) -> Vec<(u64, i64)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("n ")?.split(' ');
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect()
}

/// `(unix ms, live, created, exited)` from the tool's JSON lines.
fn tool_samples(out: &str) -> Vec<(u64, i64, u64, u64)> {
    out.lines()
        .filter(|l| l.starts_with("{\"t\":"))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON sample");
            let n = |k: &str| v[k].as_i64().unwrap_or_else(|| panic!("{k} in {l}"));
            (
                n("unix_ms") as u64,
                n("live"),
                n("created") as u64,
                n("exited") as u64,
            )
        })
        .collect()
}

/// Compares each sample of the tool with the program's count at the same moment,
/// where the program's count held steady around it (the step did not change within
/// 150 ms either side); returns how many were compared.
fn compare(what: &str, program: &[(u64, i64)], tool: &[(u64, i64, u64, u64)]) -> usize {
    let mut compared = 0;
    for &(t, live, _, _) in tool {
        let before = program.iter().rev().find(|p| p.0 <= t && t - p.0 <= 150);
        let after = program.iter().find(|p| p.0 >= t && p.0 - t <= 150);
        let (Some(b), Some(a)) = (before, after) else {
            continue;
        };
        if a.1 != b.1 {
            continue;
        }
        assert!(
            (live - b.1).abs() <= 2,
            "{what}: at {t} gotap says {live} live, the program's NumGoroutine {}\nprogram: {program:?}\ntool: {tool:?}",
            b.1
        );
        compared += 1;
    }
    compared
}

#[test]
fn goroutines_counts_what_num_goroutine_says_from_the_start_and_when_attached_mid_run() {
    let _quiet = quiet();
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::Stripped] {
            let bin = testprogs::build("goroutine_steps", &tc, v);
            let what = format!("go{} {v}", tc.minor);
            // From the start: the program's lines and the tool's share stdout.
            let out = run(gotap()
                .args(["goroutines", "--json", "-i", "1", "-c"])
                .arg(format!("{} 1500", bin.display())));
            let stdout = text(&out.stdout);
            let ctx = format!("{what} -c\n{stdout}\n{}", text(&out.stderr));
            assert!(out.status.success(), "{ctx}");
            let tool = tool_samples(&stdout);
            let n = compare(&ctx, &program_counts(&stdout), &tool);
            assert!(n >= 4, "{ctx}: only {n} samples compared");
            // The columns count each interval: they add up to what was created in all
            // (the program's own goroutines, main's included).
            let created: u64 = tool.iter().map(|s| s.2).sum();
            let total: u64 = stdout
                .lines()
                .find_map(|l| l.strip_prefix("created "))
                .and_then(|n| n.parse().ok())
                .expect("the program's total");
            assert!(
                created.abs_diff(total) <= 2,
                "{ctx}: created per interval add up to {created}, the program made {total}"
            );
            assert!(
                tool.iter().any(|s| s.2 == 0),
                "{ctx}: an interval without creations says 0, not a running total"
            );

            // Attached mid-run, with goroutines already alive.
            let mut prog = std::process::Command::new(&bin)
                .arg("1500")
                .stdout(Stdio::piped())
                .spawn()
                .expect("start the program");
            let pid = prog.id();
            let mut lines = BufReader::new(prog.stdout.take().expect("stdout")).lines();
            let mut seen = String::new();
            for l in lines.by_ref() {
                let l = l.expect("a line");
                seen.push_str(&l);
                seen.push('\n');
                if l == "ready" {
                    break;
                }
            }
            let reader = std::thread::spawn(move || {
                let mut rest = String::new();
                for l in lines.map_while(Result::ok) {
                    rest.push_str(&l);
                    rest.push('\n');
                }
                rest
            });
            let tracer = gotap()
                .args(["goroutines", "--json", "-i", "1", "-x", &pid.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start gotap");
            // Reaped here, so that gotap sees it gone.
            let _ = prog.wait();
            let (out, killed) = wait_output(tracer, std::time::Duration::from_secs(30));
            assert!(!killed, "{what}: gotap -x did not end with its process");
            let program = format!("{seen}{}", reader.join().expect("reader"));
            let stdout = text(&out.stdout);
            let ctx = format!("{what} -x\n{stdout}\n{}", text(&out.stderr));
            assert!(out.status.success(), "{ctx}");
            let tool = tool_samples(&stdout);
            assert!(
                tool.first().is_some_and(|s| s.1 >= 10),
                "{ctx}: the goroutines alive at attach are counted"
            );
            let n = compare(&ctx, &program_counts(&program), &tool);
            assert!(n >= 4, "{ctx}: only {n} samples compared\n{program}");
        }
    }
}

/// `(cycle, @seconds)` of the program's `GODEBUG=gctrace=1` lines that were finished
/// (`gc 3 @0.012s 2%: … P`).
fn gctrace(stderr: &str) -> Vec<(u64, f64)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("gc ") && l.ends_with(" P"))
        .filter_map(|l| {
            let mut w = l.split(' ');
            w.next();
            let n = w.next()?.parse().ok()?;
            let at = w
                .next()?
                .strip_prefix('@')?
                .strip_suffix('s')?
                .parse()
                .ok()?;
            Some((n, at))
        })
        .collect()
}

#[test]
fn gcstat_times_cycles_from_program_start_and_its_pauses_add_up_to_runtime_metrics() {
    let _quiet = quiet();
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::Stripped] {
            let bin = testprogs::build("gc_pauses", &tc, v);
            let what = format!("go{} {v}", tc.minor);
            let out = run(gotap()
                .env("GODEBUG", "gctrace=1")
                .args(["gcstat", "--json", "-c"])
                .arg(format!("{} 192", bin.display())));
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert!(out.status.success(), "{what}: {stderr}");
            check_gcstat(&what, &stdout, &stderr, &stdout);
            if v != Variant::Default {
                continue;
            }
            // Attached mid-run: the program's start is read from the process.
            let mut prog = std::process::Command::new(&bin)
                .args(["192", "1000"])
                .env("GODEBUG", "gctrace=1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the program");
            let mut lines = BufReader::new(prog.stdout.take().expect("stdout")).lines();
            assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
            let tracer = gotap()
                .args(["gcstat", "--json", "-x", &prog.id().to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start gotap");
            let rest: Vec<String> = lines.map_while(Result::ok).collect();
            let (pout, _) = wait_output(prog, std::time::Duration::from_secs(60));
            let (out, killed) = wait_output(tracer, std::time::Duration::from_secs(30));
            assert!(!killed, "{what}: gcstat -x did not end with its process");
            assert!(out.status.success(), "{what}: {}", text(&out.stderr));
            check_gcstat(
                &format!("{what} -x"),
                &text(&out.stdout),
                &text(&pout.stderr),
                &rest.join("\n"),
            );
        }
    }
}

/// Attached to a program that has run GC cycles for a while, gcstat numbers each
/// cycle as gctrace does (the runtime's count, from the program's start, not from
/// the attach) at the time gctrace gives it; on the oldest and newest Go, one of
/// them a stripped position-independent build, as the count is read at a distance
/// from the probe's own address.
#[test]
fn gcstat_attached_mid_run_numbers_the_cycles_as_gctrace_does() {
    let _quiet = quiet();
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-gcloop", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let all = testprogs::toolchains();
    for (tc, v) in [
        (all.first().expect("a toolchain"), Variant::Default),
        (all.last().expect("a toolchain"), Variant::Pie),
    ] {
        let bin = testprogs::build("gc_loop", tc, v);
        let what = format!("go{} {v}", tc.minor);
        let trace_file = dir.join(format!("gctrace-{}-{v}", tc.minor));
        let prog = std::process::Command::new(&bin)
            .arg("4")
            .env("GODEBUG", "gctrace=1")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&trace_file).expect("gctrace file"))
            .spawn()
            .expect("start the program");
        let cycles_so_far =
            || gctrace(&std::fs::read_to_string(&trace_file).unwrap_or_default()).len();
        let t0 = std::time::Instant::now();
        while cycles_so_far() < 20 && t0.elapsed() < LONG {
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = cycles_so_far();
        assert!(before >= 20, "{what}: the program's first cycles");
        let tracer = gotap()
            .args(["gcstat", "--json", "-x", &prog.id().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gotap");
        let (pout, _) = wait_output(prog, Duration::from_secs(60));
        let (out, killed) = wait_output(tracer, Duration::from_secs(30));
        let trace = gctrace(&std::fs::read_to_string(&trace_file).unwrap_or_default());
        let stdout = text(&out.stdout);
        let ctx = format!(
            "{what}\n{stdout}\n{}\n{}",
            text(&out.stderr),
            text(&pout.stdout)
        );
        assert!(!killed && out.status.success(), "{ctx}");
        let at: BTreeMap<u64, f64> = trace.iter().copied().collect();
        // A cycle under way when the probes were attached has no start time.
        let ours: Vec<(u64, Option<f64>)> = stdout
            .lines()
            .filter(|l| l.starts_with("{\"cycle\""))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
                (v["cycle"].as_u64().expect("cycle"), v["at_s"].as_f64())
            })
            .collect();
        let timed = ours.iter().filter(|(_, t)| t.is_some()).count();
        assert!(timed + 8 >= ours.len(), "{ctx}: {timed} timed");
        assert!(ours.len() >= 20, "{ctx}: the cycles after the attach");
        assert!(
            ours[0].0 >= before as u64,
            "{ctx}: numbered from the program's start"
        );
        let numbers: Vec<u64> = ours.iter().map(|c| c.0).collect();
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "{ctx}: one after the other"
        );
        for (n, t) in &ours {
            let Some(theirs) = at.get(n) else {
                panic!("{ctx}: cycle {n} is not in gctrace");
            };
            let Some(t) = t else { continue };
            assert!(
                t - theirs >= -0.001 && t - theirs < 0.003,
                "{ctx}: cycle {n} at {t} s, gctrace's @{theirs}s"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// gcstat's JSON (`stdout`) against gctrace's lines (`stderr`) and the program's own
/// `runtime/metrics` numbers (`program`).
fn check_gcstat(what: &str, stdout: &str, stderr: &str, program: &str) {
    {
        {
            let ctx = format!("{what}\nstdout:\n{stdout}\nstderr:\n{stderr}");
            let json: Vec<serde_json::Value> = stdout
                .lines()
                .filter(|l| l.starts_with('{'))
                .map(|l| serde_json::from_str(l).expect("JSON"))
                .collect();
            let cycles: Vec<&serde_json::Value> =
                json.iter().filter(|v| v.get("cycle").is_some()).collect();
            let summary = json
                .iter()
                .find(|v| v.get("cycles").is_some())
                .expect("a summary");
            let trace = gctrace(stderr);
            assert!(trace.len() >= 3, "{ctx}: a few cycles");
            assert_eq!(
                summary["cycles"].as_u64(),
                Some(trace.len() as u64),
                "{ctx}: the cycle count is gctrace's"
            );
            assert_eq!(cycles.len(), trace.len(), "{ctx}");
            // gctrace prints milliseconds, cut (not rounded) to three decimals.
            for (c, (n, at)) in cycles.iter().zip(&trace) {
                assert_eq!(c["cycle"].as_u64(), Some(*n), "{ctx}: gctrace's number");
                let ours = c["at_s"].as_f64().expect("at_s");
                assert!(
                    ours - at >= -0.001 && ours - at < 0.003,
                    "{ctx}: cycle {n} at {ours} s, gctrace @{at}s"
                );
            }
            let field = |name: &str| -> f64 {
                program
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name} ")))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{ctx}: the program's {name}"))
            };
            let metrics_ns = field("pauses_ns");
            let ours_ns = summary["pause_total_us"].as_f64().expect("pause total") * 1e3;
            // MemStats.PauseNs: the runtime's own sum of each cycle's pauses, timed
            // from the clocks gcstat's probes sit at. A probe's trap is a point where
            // the kernel may give the CPU to another thread, between the probe's clock
            // and the runtime's (measured here: 190 µs once in 90 runs on a loaded
            // machine): at most one cycle in ten may be off by more than 10% and 3 µs
            // a pause; the others are what the runtime says.
            let exact: std::collections::HashMap<u64, f64> = program
                .lines()
                .filter_map(|l| {
                    let mut w = l.strip_prefix("pause_ns ")?.split(' ');
                    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
                })
                .collect();
            // A cycle may finish after the program read its numbers, before it exits.
            let read = field("cycles") as u64;
            let number = |c: &serde_json::Value| c["cycle"].as_u64().expect("a cycle number");
            let pauses_ns = |c: &serde_json::Value| {
                c["pause_total_us"].as_f64().expect("a cycle's pauses") * 1e3
            };
            let known: Vec<&serde_json::Value> = cycles
                .iter()
                .copied()
                .filter(|c| number(c) <= read)
                .collect();
            assert!(
                cycles.len() - known.len() <= 1,
                "{ctx}: the program read {read} cycles"
            );
            let mut off = Vec::new();
            // What the cycles allowed off (a preemption at a probe) are off by.
            let mut off_by = 0.0;
            for c in &known {
                let n = number(c);
                let ours = pauses_ns(c);
                let pauses = c["pauses_us"].as_array().map_or(0, Vec::len);
                assert!(pauses >= 2, "{ctx}: cycle {n} has two pauses or more");
                let want = *exact
                    .get(&n)
                    .unwrap_or_else(|| panic!("{ctx}: the program's pause of cycle {n}"));
                if (ours - want).abs() > 0.10 * want + 3_000.0 * pauses as f64 {
                    off.push(format!("cycle {n}: {ours} ns, MemStats.PauseNs {want} ns"));
                    off_by += (ours - want).abs();
                }
            }
            assert!(
                off.len() <= (known.len() / 10).max(1),
                "{ctx}: {} of {} cycles off: {off:?}",
                off.len(),
                known.len()
            );
            // And the total within 10% of the runtime's, besides what the cycle
            // allowed off above is off by (CI: one preemption of about 300 µs put a
            // 2 ms total 15% long while every other cycle agreed).
            let known_ns: f64 = known.iter().map(|c| pauses_ns(c)).sum();
            let exact_ns: f64 = known.iter().map(|c| exact[&number(c)]).sum();
            assert!(
                (known_ns - exact_ns).abs() <= 0.10 * exact_ns + off_by,
                "{ctx}: the pauses of the {read} cycles read {known_ns} ns, their PauseNs {exact_ns} ns"
            );
            let cycles_ns: f64 = cycles.iter().map(|c| pauses_ns(c)).sum();
            // The summary adds the pauses of a cycle the exit cut short (each total is
            // rounded to 0.1 µs).
            assert!(
                ours_ns + 50.0 * cycles.len() as f64 >= cycles_ns,
                "{ctx}: the summary's pauses {ours_ns} ns, the cycles' {cycles_ns} ns"
            );
            // /gc/pauses:seconds, a histogram that the program sums at its buckets'
            // midpoints (10.7–12.4% from gctrace's sum on a loaded machine), read
            // with the cycles it counts, may hold the first pause of the next.
            let later = (ours_ns - known_ns).max(0.0);
            assert!(
                known_ns - metrics_ns <= 0.15 * metrics_ns
                    && metrics_ns - known_ns <= 0.15 * metrics_ns + later,
                "{ctx}: the pauses of the {read} cycles read {known_ns} ns, /gc/pauses:seconds {metrics_ns} ns"
            );
        }
    }
}

/// Every function's count equals the program's, its total time agrees with the
/// program's own (`oracle::latency_agrees`), and the calls that panicked are the
/// ones said not to return. Before Go 1.21 (`single_stepped`) only the lower side
/// of the time is held, and the tool says why.
fn check_latency(what: &str, program: &str, tool: &str, single_stepped: bool) {
    let want = program_latency(program);
    let got = tool_latency(tool);
    let panics = program_panics(program);
    assert_eq!(want.len(), 4, "{what}: the program's lines\n{program}");
    for (name, (calls, ns, longest)) in &want {
        let (c, t, _, t_longest) = got.get(name).copied().unwrap_or_default();
        assert_eq!(c, *calls, "{what}: calls of {name}\n{tool}\n{program}");
        if let Err(e) = latency_agrees(*calls, (t, t_longest), (*ns, *longest), single_stepped) {
            panic!("{what}: {name}: {e}\n{tool}\n{program}");
        }
    }
    let no_return = got.get("main.doMayPanic").map_or(0, |r| r.2);
    assert_eq!(no_return, panics, "{what}: calls that panicked\n{tool}");
    assert!(panics > 0);
}

#[test]
fn funclatency_totals_match_the_programs_own_time_since_and_counts_equal() {
    let _quiet = quiet();
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::Stripped] {
            let bin = Private::copy(
                &testprogs::build("latency", &tc, v),
                &format!("lat-{}-{v}", tc.minor),
            );
            let what = format!("go{} {v}", tc.minor);
            let out = run(gotap()
                .args(["funclatency", "--json", "--us", "-c"])
                .arg(format!("{} 50", bin.path.display()))
                .arg("main.do*"));
            let stdout = text(&out.stdout);
            let ctx = format!("{what} -c\n{}", text(&out.stderr));
            assert!(out.status.success(), "{ctx}\n{stdout}");
            let old = tc.minor_number() < (1, 21);
            assert_eq!(ctx.contains("single-steps"), old, "{ctx}");
            check_latency(&ctx, &stdout, &stdout, old);
        }
    }
    // As a user reads it: the histograms, and what was not timed said in words.
    let bin = Private::copy(
        &testprogs::build("latency", &testprogs::newest(), Variant::Default),
        "lat-text",
    );
    let out = run(gotap()
        .args(["funclatency", "--us", "-c"])
        .arg(format!("{} 50", bin.path.display()))
        .args(["main.doMayPanic", "main.doRecurse"]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("Function = main.doMayPanic: 40 calls"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Function = main.doRecurse: 90 calls"),
        "{stdout}"
    );
    assert!(stdout.contains("usecs"), "{stdout}");
    assert!(
        stdout.contains("10 calls did not return (panic or goexit)"),
        "{stdout}"
    );
}

/// Starts the latency program (stripped) with "wait" and runs gotap with `args`
/// then `-x PID main.do*` on it ([`run_mid_run`]; its phases 1.5 s apart).
fn attached_mid_run(tc: &Toolchain, args: &[&str]) -> (String, String, String) {
    let bin = Private::copy(
        &testprogs::build("latency", tc, Variant::Stripped),
        &format!("latx-{}-{}", tc.minor, args[0]),
    );
    let what = format!("go{} stripped {args:?} -x", tc.minor);
    run_mid_run(&bin.path, "50", (args, &["main.do*"]), "Hit Ctrl-C", &what)
}

/// Starts `bin ROUNDS wait`, runs gotap with `args.0`, then `-x PID`, then `args.1`
/// on it, lets the program go once gotap's stderr says `ready` (the probes are in
/// place), and returns the program's output, gotap's stdout and what to say on
/// failure. gotap must end with the process, successfully.
fn run_mid_run(
    bin: &std::path::Path,
    rounds: &str,
    args: (&[&str], &[&str]),
    ready: &str,
    what: &str,
) -> (String, String, String) {
    let mut prog = std::process::Command::new(bin)
        .args([rounds, "wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the program");
    let mut lines = BufReader::new(prog.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    let mut tracer = gotap()
        .args(args.0)
        .args(["-x", &prog.id().to_string()])
        .args(args.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gotap");
    // The program goes on once the probes are in place.
    let mut err = BufReader::new(tracer.stderr.take().expect("stderr"));
    let mut said = String::new();
    while !said.contains(ready) {
        assert!(
            err.read_line(&mut said).expect("gotap's stderr") > 0,
            "{what}: {said}"
        );
    }
    let errs = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        rest
    });
    use std::io::Write;
    prog.stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("start the program");
    let program: String = lines.map_while(Result::ok).map(|l| l + "\n").collect();
    let _ = prog.wait();
    let (out, killed) = wait_output(tracer, std::time::Duration::from_secs(30));
    let stdout = text(&out.stdout);
    let ctx = format!("{what}\n{said}{}", errs.join().unwrap_or_default());
    assert!(!killed, "{ctx}: gotap -x did not end with its process");
    assert!(out.status.success(), "{ctx}\n{stdout}");
    (program, stdout, ctx)
}

/// The first Go toolchain whose frames open with `push rbp`, and the newest.
fn push_rbp_toolchains() -> [Toolchain; 2] {
    let first = testprogs::toolchains()
        .into_iter()
        .find(|tc| tc.minor_number() >= (1, 21))
        .expect("Go 1.21 or later");
    [first, testprogs::newest()]
}

#[test]
fn funclatency_attached_mid_run_with_intervals_adds_up_to_the_programs_own_totals() {
    let _quiet = quiet();
    for tc in push_rbp_toolchains() {
        let (program, stdout, ctx) = attached_mid_run(&tc, &["funclatency", "--json", "-i", "1"]);
        let intervals = stdout
            .lines()
            .filter(|l| l.contains("\"main.doWork\"") || l.contains("\"main.doRecurse\""))
            .count();
        assert!(
            intervals >= 2,
            "{ctx}: the phases fall in different intervals\n{stdout}"
        );
        check_latency(&ctx, &program, &stdout, false);
    }
}

/// funccount's intervals: the counts of each, added up, are the program's calls
/// (those that panicked included), none lost at an interval's edge.
#[test]
fn funccount_intervals_add_up_to_the_programs_calls() {
    let _quiet = quiet();
    for tc in push_rbp_toolchains() {
        let (program, stdout, ctx) = attached_mid_run(&tc, &["funccount", "-i", "1"]);
        let mut want = program_latency(&program);
        want.get_mut("main.doMayPanic").expect("doMayPanic").0 += program_panics(&program);
        let mut got = std::collections::BTreeMap::<String, u64>::new();
        let mut tables = 0;
        for l in stdout.lines() {
            tables += usize::from(l.starts_with("FUNC"));
            let mut w = l.split_whitespace();
            if let (Some(f), Some(n), None) = (w.next(), w.next(), w.next())
                && f.starts_with("main.do")
            {
                *got.entry(f.to_string()).or_default() += n.parse::<u64>().expect("a count");
            }
        }
        assert!(tables >= 3, "{ctx}: intervals and the end\n{stdout}");
        let want: std::collections::BTreeMap<String, u64> =
            want.into_iter().map(|(f, (n, _, _))| (f, n)).collect();
        assert_eq!(got, want, "{ctx}\n{stdout}\n{program}");
    }
}

/// offcpu's waits (count, ns) in `reason` whose backtrace holds `function`.
fn tool_waits(json: &serde_json::Value, reason: &str, function: &str) -> (u64, u64) {
    let mut sum = (0, 0);
    for s in json["stacks"].as_array().expect("stacks") {
        let holds = s["stack"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == function));
        if s["reason"] == reason && holds {
            sum.0 += s["waits"].as_u64().unwrap_or(0);
            sum.1 += s["total_ns"].as_u64().unwrap_or(0);
        }
    }
    sum
}

/// offcpu's time in "chan receive" (in main.receive) and "sleep" (in main.nap)
/// against the program's own time.Now around those calls (`oracle::offcpu_agrees`).
fn check_offcpu(what: &str, program: &str, stdout: &str) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("{\"reasons\""))
        .unwrap_or_else(|| panic!("{what}: no JSON in\n{stdout}"));
    let json: serde_json::Value = serde_json::from_str(line).expect("offcpu's JSON");
    for (reason, function, mine) in [
        ("chan receive", "main.receive", "recv "),
        ("sleep", "main.nap", "sleep "),
    ] {
        let (_, want) = program_blocking(program, mine);
        let (waits, got) = tool_waits(&json, reason, function);
        assert!(
            waits > 0,
            "{what}: no {reason:?} waits in {function}\n{stdout}"
        );
        if let Err(e) = offcpu_agrees(got, want) {
            panic!("{what}: {reason:?} in {function}: {e}\n{stdout}\n{program}");
        }
    }
}

#[test]
fn offcpu_time_in_chan_receive_and_sleep_matches_the_programs_own_within_5_percent() {
    let _quiet = quiet();
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-offcpu", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::Stripped] {
            let bin = Private::copy(
                &testprogs::build("blocking", &tc, v),
                &format!("oc-{}-{v}", tc.minor),
            );
            let what = format!("go{} {v} -c", tc.minor);
            let profile = dir.join(format!("{}-{v}.pb.gz", tc.minor));
            let out = run(gotap()
                .args(["offcpu", "--json", "--pprof"])
                .arg(&profile)
                .arg("-c")
                .arg(format!("{} 100", bin.path.display())));
            let stdout = text(&out.stdout);
            let ctx = format!("{what}\n{}", text(&out.stderr));
            assert!(out.status.success(), "{ctx}\n{stdout}");
            check_offcpu(&ctx, &stdout, &stdout);
            // go tool pprof reads the profile as a block profile, with the names.
            let top = std::process::Command::new(testprogs::newest().goroot().join("bin/go"))
                .args(["tool", "pprof", "-top", "-sample_index=delay"])
                .arg(&profile)
                .output()
                .expect("go tool pprof");
            let listing = text(&top.stdout);
            assert!(top.status.success(), "{what}: {}", text(&top.stderr));
            for f in ["main.receive", "main.nap", "runtime.gopark"] {
                assert!(listing.contains(f), "{what}: {f} in\n{listing}");
            }
            assert!(listing.contains("Type: delay"), "{what}: {listing}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn offcpu_attached_mid_run_times_what_it_saw_and_writes_folded_stacks() {
    let _quiet = quiet();
    let tc = testprogs::newest();
    let bin = Private::copy(&testprogs::build("blocking", &tc, Variant::Stripped), "ocx");
    let folded = bin.path.with_file_name("offcpu.folded");
    let folded_arg = folded.to_str().expect("a UTF-8 path");
    // The program blocks once the probes are in place (`-v` says so on stderr).
    let (program, stdout, ctx) = run_mid_run(
        &bin.path,
        "100",
        (&["offcpu", "-v", "--json", "--folded", folded_arg], &[]),
        "probes attached",
        &format!("go{} stripped -x", tc.minor),
    );
    check_offcpu(&ctx, &program, &stdout);
    let folded = std::fs::read_to_string(&folded).expect("--folded file");
    assert!(
        folded
            .lines()
            .any(|l| l.contains("main.nap;time.Sleep;runtime.gopark;[sleep] ")),
        "{ctx}\n{folded}"
    );
}

/// funclatency scraped by a real Prometheus (`--prometheus`, every process of the
/// binary, the program run while gotap traces it): each function's
/// `go_function_latency_seconds_count` is the program's own count of its calls, its
/// `_sum` is the total gotap prints and agrees with the program's own time as the
/// printed total must (`oracle::latency_agrees`, gotap's longest call from its JSON
/// at the end), and the calls that panicked are
/// `go_function_untimed_calls_total{cause="no_return"}`.
#[test]
fn funclatency_scraped_by_prometheus_counts_the_programs_calls_and_sums_their_time() {
    let _quiet = quiet();
    let bin = Private::copy(
        &testprogs::build("latency", &testprogs::newest(), Variant::Default),
        "lat-prom",
    );
    let port = peers::free_port();
    let prom = Prometheus::start(&[format!("127.0.0.1:{port}")], Duration::from_millis(200));
    let addr = format!("127.0.0.1:{port}");
    let mut g = Live::start(
        gotap()
            .args(["funclatency", "--json", "--prometheus", &addr])
            .arg(&bin.path)
            .arg("main.do*"),
    );
    g.wait_stderr("Hit Ctrl-C", LONG);
    // Scraped before the program runs: every function's series is there from the
    // start, at 0, and Prometheus has settled (it and the program share 2 CPUs).
    prom.wait_for("go_function_latency_seconds_count", LONG, |r| {
        (r.len() == 4 && r.iter().all(|(_, v)| *v == 0.0)).then_some(())
    });
    let out = run(std::process::Command::new(&bin.path).arg("50"));
    let program = text(&out.stdout);
    assert!(out.status.success(), "{program}");
    let want = program_latency(&program);
    assert_eq!(want.len(), 4, "the program's lines\n{program}");
    let series = |metric: &str, f: &str| format!("{metric}{{function=\"{f}\"}}");
    let mut sums = std::collections::BTreeMap::new();
    for (f, (calls, _, _)) in &want {
        let q = series("go_function_latency_seconds_count", f);
        prom.wait_for(&q, LONG, |r| {
            (r.len() == 1 && r[0].1 == *calls as f64).then_some(())
        });
        // Read with the final count: no call of the program is left to add to it.
        let sum = prom.query(&series("go_function_latency_seconds_sum", f));
        assert_eq!(sum.len(), 1, "{f}: {sum:?}");
        sums.insert(f.clone(), sum[0].1);
    }
    let panics = program_panics(&program);
    assert!(panics > 0);
    prom.wait_for(
        r#"go_function_untimed_calls_total{function="main.doMayPanic",cause="no_return"}"#,
        LONG,
        |r| (r.len() == 1 && r[0].1 == panics as f64).then_some(()),
    );
    let (_, status) = g.time_to_exit("INT", LONG);
    let t = g.transcript();
    assert!(status.success(), "{t}");
    let printed = tool_latency(&g.stdout.join("\n"));
    for (f, (calls, ns, longest)) in &want {
        let (c, total, _, t_longest) = printed.get(f).copied().unwrap_or_default();
        assert_eq!(c, *calls, "{f}: printed calls\n{t}");
        let scraped = (sums[f] * 1e9).round() as u64;
        assert_eq!(
            scraped, total,
            "{f}: Prometheus's _sum, the printed total\n{t}"
        );
        if let Err(e) = latency_agrees(*calls, (scraped, t_longest), (*ns, *longest), false) {
            panic!("{f}: Prometheus's _sum: {e}\n{t}\n{program}");
        }
    }
}

/// offcpu pushing to a real OpenTelemetry Collector (`--otlp`, `-c`): its last push
/// (after the program ended) holds `go.offcpu.waits{reason="sleep"}` equal to the
/// program's own count of its sleeps, and `go.offcpu{reason}` seconds equal to the
/// totals it prints, which in "sleep" and "chan receive" agree with the program's
/// own time in those calls (`oracle::offcpu_agrees`). A reason's exported time
/// counts every wait of the process for that reason, the runtime's too (a receive
/// in `runtime.gcenable` at start, some µs), where the printed test holds the waits
/// in `main.receive` and `main.nap` alone.
#[test]
fn offcpu_pushes_the_programs_own_time_in_sleep_and_chan_receive_within_5_percent() {
    let _quiet = quiet();
    let bin = Private::copy(
        &testprogs::build("blocking", &testprogs::newest(), Variant::Default),
        "oc-otlp",
    );
    let col = Collector::start();
    // This collector takes no profiles: the block profile is kept as a pprof file in
    // the working directory, said so.
    let dir = bin.path.parent().expect("dir").to_path_buf();
    let out = run(gotap()
        .current_dir(&dir)
        .args(["offcpu", "--json", "--otlp", &col.endpoint(), "-c"])
        .arg(format!("{} 100", bin.path.display())));
    let stdout = text(&out.stdout);
    let ctx = format!("{}\n{stdout}", text(&out.stderr));
    assert!(out.status.success(), "{ctx}");
    assert!(
        text(&out.stderr).contains("the profile was not sent"),
        "{ctx}"
    );
    let json: serde_json::Value = stdout
        .lines()
        .find(|l| l.starts_with("{\"reasons\""))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("offcpu's JSON in\n{ctx}"));
    let printed = |reason: &str| -> u64 {
        json["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["reason"] == reason)
            .and_then(|r| r["total_ns"].as_u64())
            .unwrap_or_else(|| panic!("no {reason:?} in\n{ctx}"))
    };
    let (sleeps, _) = program_blocking(&stdout, "sleep ");
    // The last point of `metric` for `reason`, as a number.
    let last = |reqs: &[peers::Json], metric: &str, reason: &str| -> Option<f64> {
        let (_, p) = points(reqs, metric).into_iter().rev().find(|(_, p)| {
            peers::attribute(&p["attributes"], "reason").as_deref() == Some(reason)
        })?;
        p["asDouble"]
            .as_f64()
            .or_else(|| Some(as_u64(&p["asInt"]) as f64))
    };
    // In nanoseconds: the collector's JSON writes a double to about 15 digits.
    let ns = |seconds: f64| (seconds * 1e9).round() as u64;
    let reqs = col.wait_for(LONG, |reqs| {
        let final_push = last(reqs, "go.offcpu.waits", "sleep")? == sleeps as f64
            && ns(last(reqs, "go.offcpu", "sleep")?) == printed("sleep")
            && ns(last(reqs, "go.offcpu", "chan receive")?) == printed("chan receive");
        final_push.then(|| reqs.to_vec())
    });
    for (reason, mine) in [("sleep", "sleep "), ("chan receive", "recv ")] {
        let (_, own) = program_blocking(&stdout, mine);
        let pushed = last(&reqs, "go.offcpu", reason).map_or(0, ns);
        if let Err(e) = offcpu_agrees(pushed, own) {
            panic!("{reason:?}: the pushed go.offcpu: {e}\n{ctx}");
        }
    }
}

/// `profile`'s top 10 functions by flat samples against runtime/pprof's CPU profile
/// of the same run (the program profiles itself while gotap samples it at the
/// default 99 Hz): every function with 3% or more of the samples in either is in the
/// other's top 10, and the shares differ by at most 10 points, not the 5 asked for.
/// (Go's profile also counts time the kernel spends for the program, such as the page
/// faults of `runtime.memclrNoHeapPointers`, 2% in one run; gotap's samples are of
/// user mode only, so such a function can be in Go's top 10 alone.)
/// Why, as measured on this 2-core VM: Go's own profile puts a third of its samples
/// on `runtime.asyncPreempt` (its SIGPROF is delivered as the preemption signal
/// returns; gotap's cpu-clock samples find 0.5% there), so it is read with
/// asyncPreempt hidden, its samples charged to the function it interrupted; that
/// charge leans to the tight loop (`main.mix`), which Go's profile then gives 2.5 to
/// 8.5 points more than gotap over five 6 s runs (the other functions within 3).
/// The oldest and newest installed Go, each fixed-address, stripped and PIE.
#[test]
fn profile_top_functions_agree_with_runtime_pprof_within_10_points() {
    let _quiet = quiet();
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-profile", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut toolchains: Vec<Toolchain> = testprogs::toolchains();
    toolchains.drain(1..toolchains.len().saturating_sub(1));
    for tc in toolchains {
        for v in [Variant::Default, Variant::Stripped, Variant::Pie] {
            let bin = Private::copy(
                &testprogs::build("cpuwork", &tc, v),
                &format!("pf-{}-{v}", tc.minor),
            );
            let what = format!("go{} {v}", tc.minor);
            let tag = format!("{}-{v}", tc.minor);
            let (theirs, ours) = (
                dir.join(format!("go-{tag}.pb.gz")),
                dir.join(format!("gotap-{tag}.pb.gz")),
            );
            let folded = dir.join(format!("gotap-{tag}.folded"));
            let out = run(gotap()
                .args(["profile", "-v", "--folded"])
                .arg(&folded)
                .arg("--pprof")
                .arg(&ours)
                .arg("-c")
                .arg(format!("{} 6 {}", bin.path.display(), theirs.display())));
            let stdout = text(&out.stdout);
            let ctx = format!("{what}\n{stdout}\n{}", text(&out.stderr));
            assert!(out.status.success(), "{ctx}");
            check_sampling_cost(&ctx, &text(&out.stderr), 6.0);
            let go = pprof_top(&theirs, &["-hide=^runtime\\.asyncPreempt$"]);
            let us = pprof_top(&ours, &[]);
            let ctx = format!("{ctx}\nruntime/pprof: {go:?}\ngotap: {us:?}");
            shares_agree(&ctx, ("runtime/pprof", &go), ("gotap", &us), 10.0);
            assert!(us.get("main.mix").is_some_and(|s| *s > 20.0), "{ctx}");
            // The work's goroutines run main.main.func1: the walk reaches it from
            // every function, frameless leaves (main.mix) and the system stack
            // included, as Go's own profile does (99% there).
            let folded = std::fs::read_to_string(&folded).expect("--folded");
            let weight = |l: &str| -> u64 {
                l.rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            let all: u64 = folded.lines().map(weight).sum();
            let under: u64 = folded
                .lines()
                .filter(|l| l.contains("main.main.func1;"))
                .map(weight)
                .sum();
            assert!(
                under * 100 >= all * 90,
                "{ctx}\n{under} of {all} samples under main.main.func1\n{folded}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The flat shares of `profile` against bpftrace's own sampling of the same run
/// (`profile:hz:999`, each sample's instruction pointer, named by `go tool nm`'s
/// table): within 5 points, the bound issue 14 sets against runtime/pprof. Two
/// samplers of the kernel's clock agree that closely, while Go's SIGPROF profile of
/// the same run differs from both by up to 7 points on this VM (one run: bpftrace
/// mix 45.1%, sieve 25.7%, fib 10.8%; gotap 45.0, 25.9, 9.3; runtime/pprof, its
/// asyncPreempt samples given back, 46.2, 22.6, 14.0), which is why the test above
/// allows 10. At 999 Hz over 8 s each side has ~15,000 samples, so chance alone
/// moves a share by well under a point.
#[test]
fn profile_flat_shares_agree_with_bpftrace_sampling_the_same_run_within_5_points() {
    let _quiet = quiet();
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-vsbpftrace", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let all = testprogs::toolchains();
    for tc in [
        all.first().expect("a toolchain"),
        all.last().expect("a toolchain"),
    ] {
        let bin = Private::copy(
            &testprogs::build("cpuwork", tc, Variant::Default),
            &format!("vsbt-{}", tc.minor),
        );
        let ours = dir.join(format!("gotap-{}.pb.gz", tc.minor));
        let mut prog = Live::start(
            std::process::Command::new(&bin.path).args([
                "8",
                dir.join(format!("go-{}.pb.gz", tc.minor))
                    .to_str()
                    .expect("path"),
                "wait",
            ]),
        );
        prog.wait_stdout("ready", LONG);
        let pid = prog.pid().to_string();
        let mut bt = Live::start(std::process::Command::new("bpftrace").args([
            "-e",
            &format!("profile:hz:999 /pid == {pid}/ {{ @[reg(\"ip\")] = count(); }}"),
        ]));
        bt.wait_stdout("Attaching", LONG);
        let mut g = Live::start(
            gotap()
                .args(["profile", "-F", "999", "--pprof"])
                .arg(&ours)
                .args(["-x", &pid]),
        );
        g.wait_stderr("Hit Ctrl-C", LONG);
        prog.send("go");
        let (status, _) = prog.wait_exit(LONG);
        assert!(status.success(), "{}", prog.transcript());
        let (status, _) = g.wait_exit(LONG);
        let ctx = format!("go{}\n{}", tc.minor, g.transcript());
        assert!(status.success(), "{ctx}");
        bt.signal("INT");
        bt.wait_exit(LONG);
        let theirs = bpftrace_flat(&bin.path, &bt.transcript());
        let us = pprof_top(&ours, &[]);
        let ctx = format!("{ctx}\nbpftrace: {theirs:?}\ngotap: {us:?}");
        let checked = shares_agree(&ctx, ("bpftrace", &theirs), ("gotap", &us), 5.0);
        assert!(checked >= 8, "{ctx}: the four work functions on both sides");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Holds two profiles' flat shares (function → % of samples) to each other: every
/// function with 3% or more in either is in both, its shares within `points`. The
/// names say whose each profile is in messages; returns how many were compared.
fn shares_agree(
    ctx: &str,
    (a_name, a): (&str, &BTreeMap<String, f64>),
    (b_name, b): (&str, &BTreeMap<String, f64>),
    points: f64,
) -> usize {
    let mut compared = 0;
    for (f, share) in a.iter().chain(b.iter()) {
        if *share < 3.0 {
            continue;
        }
        let (Some(x), Some(y)) = (a.get(f), b.get(f)) else {
            panic!("{ctx}\n{f} ({share}%) is in one of the two only");
        };
        assert!(
            (x - y).abs() <= points,
            "{ctx}\n{f}: {x}% by {a_name}, {y}% by {b_name}"
        );
        compared += 1;
    }
    compared
}

/// Function → share of samples (%) of bpftrace's `@[reg("ip")] = count()` map in
/// `transcript`, each address named by the function `go tool nm -size` places it in.
fn bpftrace_flat(bin: &std::path::Path, transcript: &str) -> BTreeMap<String, f64> {
    let nm = std::process::Command::new(testprogs::newest().goroot().join("bin/go"))
        .args(["tool", "nm", "-n", "-size"])
        .arg(bin)
        .output()
        .expect("go tool nm");
    let mut funcs: Vec<(u64, u64, String)> = text(&nm.stdout)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let (addr, size, kind) = (w.first()?, w.get(1)?, w.get(2)?);
            matches!(*kind, "T" | "t").then_some(())?;
            Some((
                u64::from_str_radix(addr, 16).ok()?,
                size.parse().ok()?,
                w.get(3..)?.join(" "),
            ))
        })
        .collect();
    funcs.sort();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0;
    for l in transcript.lines() {
        let Some((ip, n)) = l
            .strip_prefix("@[")
            .and_then(|r| r.split_once("]: "))
            .and_then(|(ip, n)| Some((ip.parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?)))
        else {
            continue;
        };
        total += n;
        let i = funcs.partition_point(|f| f.0 <= ip);
        let name = match i.checked_sub(1).map(|i| &funcs[i]) {
            Some((start, size, name)) if ip < start + size => name.clone(),
            _ => "?".to_string(),
        };
        *counts.entry(name).or_default() += n;
    }
    assert!(total > 1000, "bpftrace's samples:\n{transcript}");
    counts
        .into_iter()
        .map(|(f, n)| (f, 100.0 * n as f64 / total as f64))
        .collect()
}

/// Time in system calls, as runtime/pprof counts it (SIGPROF charges a thread's
/// system time to the user code that made the call): a sample that finds the
/// process in the kernel is unwound from the user registers the kernel saved at its
/// entry, so the function that made the call has the share Go's profile gives it,
/// within 10 points, as every other function of both top 10s. Oldest and newest Go.
#[test]
fn profile_charges_system_calls_to_their_callers_as_runtime_pprof_does() {
    let _quiet = quiet();
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-syscalls", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let all = testprogs::toolchains();
    for tc in [
        all.first().expect("a toolchain"),
        all.last().expect("a toolchain"),
    ] {
        let bin = Private::copy(
            &testprogs::build("syscalls", tc, Variant::Default),
            &format!("sc-{}", tc.minor),
        );
        let (theirs, ours) = (
            dir.join(format!("go-{}.pb.gz", tc.minor)),
            dir.join(format!("gotap-{}.pb.gz", tc.minor)),
        );
        let out = run(gotap()
            .args(["profile", "--pprof"])
            .arg(&ours)
            .arg("-c")
            .arg(format!("{} 4 {}", bin.path.display(), theirs.display())));
        let stdout = text(&out.stdout);
        let ctx = format!("go{}\n{stdout}\n{}", tc.minor, text(&out.stderr));
        assert!(out.status.success(), "{ctx}");
        let in_kernel: u64 = stdout
            .lines()
            .find_map(|l| l.strip_suffix(" of them found the process in the kernel (system calls, faults), unwound from where it entered")?.parse().ok())
            .unwrap_or_else(|| panic!("{ctx}: the samples in the kernel"));
        let go = pprof_top(&theirs, &["-hide=^runtime\\.asyncPreempt$"]);
        let us = pprof_top(&ours, &[]);
        let ctx = format!("{ctx}\nruntime/pprof: {go:?}\ngotap: {us:?}");
        shares_agree(&ctx, ("runtime/pprof", &go), ("gotap", &us), 10.0);
        // The writes' goroutine spends most of its time in system calls, so many
        // samples find it in the kernel; not all of them, as a timer interrupt that
        // comes while the kernel has interrupts off is taken on the way back to user
        // mode, just after the SYSCALL (in CI: 152 of the 293 samples in Syscall6,
        // 19.5% of all). Without the kernel's samples, Syscall6's share is ~20
        // points short of runtime/pprof's, which the loop above does not allow.
        let samples: f64 = stdout
            .lines()
            .find_map(|l| l.strip_suffix(" samples")?.parse().ok())
            .expect("the samples line");
        assert!(
            in_kernel as f64 >= 0.1 * samples,
            "{ctx}: {in_kernel} of {samples} in the kernel"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `profile -v`'s cost line, from the kernel's run-time statistics of the sampling
/// program: it ran 99 times a second on each CPU over the program's `seconds` (its
/// own length; gotap's window is a little longer), a few µs a run, well under the 1%
/// of the CPUs' time that issue 14 allows.
fn check_sampling_cost(ctx: &str, stderr: &str, seconds: f64) {
    let cpus: f64 = stderr
        .lines()
        .find_map(|l| l.split(" on ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{ctx}: the CPUs sampled"));
    let line = stderr
        .lines()
        .find(|l| l.starts_with("profile: the sampling program ran "))
        .unwrap_or_else(|| panic!("{ctx}: the cost line"));
    let word = |after: &str| -> f64 {
        line.split(after)
            .nth(1)
            .and_then(|r| r.split([' ', '%']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{ctx}: {after:?} in {line}"))
    };
    let (runs, per_run, share) = (word(" ran "), word(" ms, "), word(" a run: "));
    let want = 99.0 * cpus * seconds;
    assert!(
        runs >= 0.9 * want && runs <= 1.3 * want,
        "{ctx}: {runs} runs, 99 Hz on {cpus} CPUs over {seconds} s is {want}"
    );
    assert!(per_run > 0.0 && per_run < 100_000.0, "{ctx}: {line}");
    assert!(share < 1.0, "{ctx}: {line}");
}

/// The script of a sampling probe keyed by stacks and goroutines, which prints
/// each stack's samples and each goroutine's at the end, and how many samples
/// found the process in the kernel.
const SAMPLING_SCRIPT: &str = r#"global s, g, k
probe timer.profile {
  if (pid() == target()) {
    s[ubacktrace()] <<< 1
    g[goid()] <<< 1
    if (user_mode() == 0) k <<< 1
  }
}
probe end {
  foreach (st in s) {
    printf("stack %d\n", @count(s[st]))
    print_usyms(st)
  }
  foreach (id in g) printf("goroutine %d %d\n", id, @count(g[id]))
  printf("in the kernel %d\n", @count(k))
}
"#;

/// The stacks the script printed (`stack N` followed by its frames, ` 0xPC :
/// FUNC+OFF/SIZE [PATH]` or ` 0xPC : FUNC (inlined) [PATH]`): each stack's samples
/// and its functions, innermost first.
fn sampled_stacks(out: &str) -> Vec<(u64, Vec<String>)> {
    let mut stacks: Vec<(u64, Vec<String>)> = Vec::new();
    for l in out.lines() {
        if let Some(n) = l.strip_prefix("stack ") {
            stacks.push((n.parse().expect("a count"), Vec::new()));
        } else if let (Some((_, frames)), Some(f)) = (
            stacks.last_mut(),
            l.strip_prefix(" 0x").and_then(|r| r.split(" : ").nth(1)),
        ) {
            let f = f.split(['+', ' ']).next().unwrap_or(f);
            frames.push(f.to_string());
        }
    }
    stacks
}

/// Samples by the function of each stack's innermost frame, and by goroutine id.
fn sampled_functions(out: &str) -> (BTreeMap<String, u64>, BTreeMap<u64, u64>) {
    let mut functions = BTreeMap::new();
    for (n, frames) in sampled_stacks(out) {
        let f = frames.first().cloned().unwrap_or_default();
        *functions.entry(f).or_default() += n;
    }
    let goroutines = out
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("goroutine ")?.split(' ');
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect();
    (functions, goroutines)
}

/// `caller → ms` of the samples whose innermost function is `leaf` in `go tool
/// pprof -traces` of `profile` (blocks of `     10ms   LEAF` then a caller a line).
fn pprof_callers(profile: &std::path::Path, leaf: &str) -> BTreeMap<String, f64> {
    let out = std::process::Command::new(testprogs::newest().goroot().join("bin/go"))
        .args(["tool", "pprof", "-traces"])
        .arg(profile)
        .output()
        .expect("go tool pprof");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut callers = BTreeMap::new();
    let mut lines = text(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter();
    while let Some(l) = lines.next() {
        let w: Vec<&str> = l.split_whitespace().collect();
        let [value, f] = w.as_slice() else { continue };
        let ms = if let Some(v) = value.strip_suffix("ms") {
            v.parse::<f64>().ok()
        } else if let Some(v) = value.strip_suffix("us").or(value.strip_suffix("µs")) {
            v.parse::<f64>().ok().map(|v| v / 1000.0)
        } else {
            value
                .strip_suffix('s')
                .and_then(|v| v.parse::<f64>().ok())
                .map(|v| v * 1000.0)
        };
        let (Some(ms), true) = (ms, *f == leaf) else {
            continue;
        };
        let caller = lines
            .next()
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        *callers.entry(caller).or_default() += ms;
    }
    callers
}

/// The function that calls `leaf` in most of its samples, with that share in %.
fn main_caller<'a>(callers: impl Iterator<Item = (&'a str, f64)>) -> Option<(String, f64)> {
    let all: Vec<(&str, f64)> = callers.collect();
    let total: f64 = all.iter().map(|c| c.1).sum();
    let (f, n) = all.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some((f.to_string(), 100.0 * n / total.max(1e-9)))
}

/// `probe timer.profile` with `ubacktrace()` and `goid()`: the functions the
/// script's stacks end in, by samples, against runtime/pprof's CPU profile of the
/// same run (read with `runtime.asyncPreempt` hidden, as in the test above): the
/// top function is the same, and every function with 5% of Go's samples has 2% of
/// the script's. Shares are not held within points here: at load average 19 the
/// work got ~130 samples in 6 s and `main.sieve` differed by 13 points (the test
/// above holds `profile`'s shares, the same walk, on longer runs). The work's two
/// goroutines have each a tenth of the samples or more, and samples with no
/// goroutine (0) are at most 10%.
/// `main.mix` and `main.collatz` are frameless leaves (`go tool objdump` shows no
/// `PUSHQ BP` in them, checked here): in the script's stacks that end in one, the
/// caller runtime/pprof names for most of its samples (`main.main.func1`) is the
/// second frame as often as Go's profile has it there, within 10 points (the
/// frame-pointer walk alone starts at the caller's caller and never has it).
/// The oldest Go installed and the newest, fixed-address and PIE (a sample carries
/// no load bias: its stacks are named at the process's).
#[test]
fn timer_profile_stacks_agree_with_runtime_pprof_and_name_the_work_goroutines() {
    let _quiet = quiet();
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-tprofile", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("sample.stp");
    std::fs::write(&script, SAMPLING_SCRIPT).expect("script");
    for &(ref tc, v) in &sampled_builds() {
        let bin = Private::copy(
            &testprogs::build("cpuwork", tc, v),
            &format!("tp-{}-{v}", tc.minor),
        );
        for leaf in LEAVES {
            assert!(
                !pushes_bp(tc, &bin.path, leaf),
                "go{} {v}: {leaf} builds a frame",
                tc.minor
            );
        }
        let theirs = dir.join(format!("go-{}-{v}.pb.gz", tc.minor));
        let (stdout, ctx) = sampled_by_script(&script, &bin.path, 6, &theirs, tc, v);
        let (functions, goroutines) = sampled_functions(&stdout);
        let total: u64 = functions.values().sum();
        // 6 s on 2 CPUs is up to 1,200 samples; at load average 20 the work got 90.
        assert!(total > 30, "{ctx}\n{total} samples");
        let us: BTreeMap<String, f64> = functions
            .iter()
            .map(|(f, n)| (f.clone(), 100.0 * *n as f64 / total as f64))
            .collect();
        let go = pprof_top(&theirs, &["-hide=^runtime\\.asyncPreempt$"]);
        let ctx = format!("{ctx}\nruntime/pprof: {go:?}\ngotap: {us:?}");
        let top = |m: &BTreeMap<String, f64>| {
            m.iter()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(f, _)| f.clone())
        };
        assert_eq!(top(&go), top(&us), "{ctx}");
        for (f, share) in &go {
            if *share >= 5.0 {
                assert!(
                    us.get(f).is_some_and(|s| *s >= 2.0),
                    "{ctx}\n{f}: {share}% by runtime/pprof, not in the script's stacks"
                );
            }
        }
        let g_total: u64 = goroutines.values().sum();
        assert_eq!(g_total, total, "{ctx}");
        let busy = goroutines
            .iter()
            .filter(|(id, n)| **id != 0 && **n * 10 >= total)
            .count();
        assert!(busy >= 2, "{ctx}\n{goroutines:?}");
        let none = goroutines.get(&0).copied().unwrap_or(0);
        assert!(none * 10 <= total, "{ctx}\n{goroutines:?}");
        let stacks = sampled_stacks(&stdout);
        for leaf in LEAVES {
            let theirs = pprof_callers(&theirs, leaf);
            let Some((caller, go_share)) =
                main_caller(theirs.iter().map(|(f, n)| (f.as_str(), *n)))
            else {
                continue;
            };
            let ours: Vec<(&str, f64)> = stacks
                .iter()
                .filter(|(_, f)| f.first().is_some_and(|f| f == leaf))
                .map(|(n, f)| (f.get(1).map_or("", String::as_str), *n as f64))
                .collect();
            let n: f64 = ours.iter().map(|c| c.1).sum();
            // A leaf with a handful of samples says little either way.
            if n < 10.0 {
                continue;
            }
            let with: f64 = ours.iter().filter(|c| c.0 == caller).map(|c| c.1).sum();
            let share = 100.0 * with / n;
            assert!(
                (share - go_share).abs() <= 10.0,
                "{ctx}\n{leaf}: called from {caller} in {go_share:.1}% of runtime/pprof's samples, in {share:.1}% of the script's {n}: {ours:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The builds the sampling scripts' tests run: the oldest Go installed and the
/// newest, fixed-address and PIE.
fn sampled_builds() -> [(Toolchain, Variant); 4] {
    let (oldest, newest) = (testprogs::toolchains()[0].clone(), testprogs::newest());
    [
        (oldest.clone(), Variant::Default),
        (oldest, Variant::Pie),
        (newest.clone(), Variant::Default),
        (newest, Variant::Pie),
    ]
}

/// `script` run with `-c` on `bin` (`tc`'s `v` build) for `seconds`, the program
/// writing its own CPU profile to `theirs`: the script's output, and the context
/// for messages. The run must succeed.
fn sampled_by_script(
    script: &std::path::Path,
    bin: &std::path::Path,
    seconds: u32,
    theirs: &std::path::Path,
    tc: &Toolchain,
    v: Variant,
) -> (String, String) {
    let out = run(gotap().arg(script).arg("-c").arg(format!(
        "{} {seconds} {}",
        bin.display(),
        theirs.display()
    )));
    let stdout = text(&out.stdout);
    let ctx = format!("go{} {v}\n{stdout}\n{}", tc.minor, text(&out.stderr));
    assert!(out.status.success(), "{ctx}");
    (stdout, ctx)
}

/// cpuwork's frameless leaves.
const LEAVES: [&str; 2] = ["main.mix", "main.collatz"];

/// Whether `go tool objdump` shows `function` saving the frame pointer.
fn pushes_bp(tc: &Toolchain, exe: &std::path::Path, function: &str) -> bool {
    let code = objdump(tc, exe, function);
    assert!(!code.is_empty(), "objdump of {function}: no instructions");
    code.iter().any(|(_, i)| i.contains("PUSHQ BP"))
}

/// `probe timer.profile` on a program that spends about half its time in
/// `write(2)` (syscalls.go): a sample that finds the process in the kernel is the
/// user code's that made the call, so the script's stacks end in the functions
/// runtime/pprof charges, each function of either top 10 with 3% or more within
/// 10 points of Go's share (as `gotap profile` is held above), and `user_mode()`
/// says 0 for some samples. The oldest Go and the newest, fixed-address and PIE.
#[test]
fn timer_profile_charges_system_calls_to_their_callers_as_runtime_pprof_does() {
    let _quiet = quiet();
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-tpsyscalls", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("sample.stp");
    std::fs::write(&script, SAMPLING_SCRIPT).expect("script");
    for &(ref tc, v) in &sampled_builds() {
        let bin = Private::copy(
            &testprogs::build("syscalls", tc, v),
            &format!("tsc-{}-{v}", tc.minor),
        );
        let theirs = dir.join(format!("go-{}-{v}.pb.gz", tc.minor));
        let (stdout, ctx) = sampled_by_script(&script, &bin.path, 4, &theirs, tc, v);
        let (functions, _) = sampled_functions(&stdout);
        let total: u64 = functions.values().sum();
        assert!(total > 30, "{ctx}\n{total} samples");
        let mut ranked: Vec<(&String, &u64)> = functions.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1));
        let us: BTreeMap<String, f64> = ranked
            .iter()
            .take(10)
            .map(|(f, n)| ((*f).clone(), 100.0 * **n as f64 / total as f64))
            .collect();
        let go = pprof_top(&theirs, &["-hide=^runtime\\.asyncPreempt$"]);
        let ctx = format!("{ctx}\nruntime/pprof: {go:?}\ngotap: {us:?}");
        shares_agree(&ctx, ("runtime/pprof", &go), ("the script", &us), 10.0);
        let in_kernel: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("in the kernel ")?.parse().ok())
            .unwrap_or_else(|| panic!("{ctx}: the samples in the kernel"));
        assert!(
            in_kernel > 0 && in_kernel <= total,
            "{ctx}: {in_kernel} in the kernel"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tag → (value → %)` of `go tool pprof -tags` on `profile`: each tag's values'
/// shares of its samples (` worker: Total …` then `   2.99s (75.32%): heavy`).
fn pprof_tags(profile: &std::path::Path) -> BTreeMap<String, BTreeMap<String, f64>> {
    let out = std::process::Command::new(testprogs::newest().goroot().join("bin/go"))
        .args(["tool", "pprof", "-tags"])
        .arg(profile)
        .output()
        .expect("go tool pprof");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut tags: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut tag = String::new();
    for l in text(&out.stdout).lines() {
        if let Some((name, _)) = l.trim().split_once(": Total") {
            tag = name.to_string();
        } else if let Some((share, value)) = l.split_once("%): ") {
            let share = share.rsplit('(').next().and_then(|s| s.trim().parse().ok());
            if let Some(share) = share {
                tags.entry(tag.clone())
                    .or_default()
                    .insert(value.trim().to_string(), share);
            }
        }
    }
    tags
}

/// `profile`'s pprof file carries the goroutines' pprof labels (`pprof.Do` and
/// `SetGoroutineLabels`) as sample labels: `go tool pprof -tags` shows the same
/// tags and values as on the program's own runtime/pprof profile of the same run,
/// each value's share within 10 points of Go's (the bound of the test above), with
/// the heavy worker ahead. Every installed Go: before 1.24 a label set is a
/// `map[string]string`, from 1.24 a slice.
#[test]
fn profile_labels_are_pprof_tags_in_the_proportions_of_runtime_pprof() {
    let _quiet = quiet();
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-labels", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for tc in testprogs::toolchains() {
        let bin = Private::copy(
            &testprogs::build("labels", &tc, Variant::Default),
            &format!("lb-{}", tc.minor),
        );
        let what = format!("go{}", tc.minor);
        let theirs = dir.join(format!("go-{}.pb.gz", tc.minor));
        let ours = dir.join(format!("gotap-{}.pb.gz", tc.minor));
        let out = run(gotap()
            .args(["profile", "--pprof"])
            .arg(&ours)
            .arg("-c")
            .arg(format!("{} 5 {}", bin.path.display(), theirs.display())));
        let ctx = format!("{what}\n{}\n{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{ctx}");
        let (go, us) = (pprof_tags(&theirs), pprof_tags(&ours));
        let ctx = format!("{ctx}\nruntime/pprof: {go:?}\ngotap: {us:?}");
        for tag in ["worker", "weight"] {
            let (Some(a), Some(b)) = (go.get(tag), us.get(tag)) else {
                panic!("{ctx}\nno tag {tag}");
            };
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{ctx}"
            );
            for (value, share) in a {
                let ours = b[value];
                assert!(
                    (share - ours).abs() <= 10.0,
                    "{ctx}\n{tag}={value}: {share}% by runtime/pprof, {ours}% by gotap"
                );
            }
        }
        let worker = &us["worker"];
        assert!(worker["heavy"] > worker["light"], "{ctx}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
