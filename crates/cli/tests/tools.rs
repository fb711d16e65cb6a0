//! The Go runtime tools (`gotap stackgrow`, `gcstat`, `goroutines`) and the tapset they
//! stand on, as a user runs them: real Go programs built by every installed toolchain,
//! the Go distribution's own `gofmt`, the real kernel. Needs root.

mod common;

use common::*;
use regex::Regex;
use std::collections::HashMap;

/// The table rows `COUNT  NAME` under the heading line that contains `heading`.
fn table<'a>(stdout: &'a str, heading: &str) -> Vec<(u64, &'a str)> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in stdout.lines() {
        if line.contains(heading) {
            inside = true;
            continue;
        }
        if inside {
            let t = line.trim_start();
            let Some((n, rest)) = t.split_once("  ") else {
                break;
            };
            let Ok(n) = n.parse::<u64>() else { break };
            rows.push((n, rest.trim()));
        }
    }
    rows
}

#[test]
fn stackgrow_counts_each_growth_of_a_known_recursion_on_every_toolchain_and_variant() {
    let g = 6u64;
    let live = Regex::new(r"^runtime: newstack: (\d+) -> (\d+) goid=(\d+)$").unwrap();
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::Stripped, Variant::Pie] {
            let bin = testprogs::build("rt_grow", &tc, v);
            let what = format!("go{} {v}", tc.minor);
            let (depth, k) = depth_for(frame_size(&bin, "main.recurse"), 64 << 10);
            // Adaptive starting stacks (Go 1.19+) start goroutines bigger after a GC
            // has measured them; this program's growths are counted from the minimum.
            let out = run(gotap()
                .env("GODEBUG", "adaptivestackstart=0")
                .args(["stackgrow", "--time", "--top", "50", "-c"])
                .arg(format!("{} {g} {depth}", bin.display())));
            let stdout = text(&out.stdout);
            let ctx = format!(
                "{what}: depth {depth}, {k} growths each\nstdout:\n{stdout}\nstderr:\n{}",
                text(&out.stderr)
            );
            assert!(out.status.success(), "{ctx}");
            assert!(
                stdout.contains(&format!("goroutines {g} depth {depth}")),
                "the program's own output: {ctx}"
            );
            let funcs = table(&stdout, "FUNCTION (whose frame did not fit)");
            let recurse = funcs
                .iter()
                .find(|(_, f)| *f == "main.recurse")
                .map(|r| r.0);
            assert_eq!(
                recurse,
                Some(g * u64::from(k)),
                "growths in main.recurse: {ctx}"
            );
            // Every goroutine doubled its stack from the minimum, one step at a time.
            let sizes: HashMap<String, u64> = table(&stdout, "SIZE TRANSITION")
                .into_iter()
                .map(|(n, s)| (s.to_string(), n))
                .collect();
            for step in 0..k {
                let t = format!("{} -> {}", STACK_MIN << step, STACK_MIN << (step + 1));
                assert!(
                    sizes.get(&t).copied().unwrap_or(0) >= g,
                    "transition {t}: {ctx}"
                );
            }
            // The live lines, each with the growing goroutine's backtrace.
            let lines: Vec<&str> = stdout.lines().collect();
            let mut with_recurse = 0;
            for (i, l) in lines.iter().enumerate() {
                if let Some(c) = live.captures(l) {
                    let (old, new): (u64, u64) = (c[1].parse().unwrap(), c[2].parse().unwrap());
                    assert!(new >= 2 * old, "{l}: {ctx}");
                    if lines
                        .get(i + 1)
                        .is_some_and(|n| n.contains(": main.recurse+0x"))
                    {
                        with_recurse += 1;
                    }
                }
            }
            assert_eq!(
                with_recurse,
                g * u64::from(k),
                "live lines whose backtrace starts in main.recurse: {ctx}"
            );
            assert!(
                stdout.contains("time spent copying a growing stack (ns):"),
                "{ctx}"
            );
        }
    }
}

#[test]
fn stackgrow_every_n_prints_every_nth_and_still_counts_all() {
    let tc = testprogs::newest();
    let bin = testprogs::build("rt_grow", &tc, Variant::Stripped);
    let (depth, k) = depth_for(frame_size(&bin, "main.recurse"), 64 << 10);
    let g = 10u64;
    let dir = std::env::temp_dir().join(format!("gotap-stackgrow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let folded = dir.join("grow.folded");
    let out = run(gotap()
        .env("GODEBUG", "adaptivestackstart=0")
        .args(["stackgrow", "--every", "4", "--folded"])
        .arg(&folded)
        .arg("-c")
        .arg(format!("{} {g} {depth}", bin.display())));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let total: u64 = Regex::new(r"(?m)^(\d+) stack growths")
        .unwrap()
        .captures(&stdout)
        .expect("a total")[1]
        .parse()
        .unwrap();
    let live = stdout
        .lines()
        .filter(|l| l.starts_with("runtime: newstack: "))
        .count() as u64;
    // The sampling counter is a global that two CPUs may bump at once (a
    // non-atomic ++), so every 4th is every 4th give or take a couple.
    assert!(
        live.abs_diff(total / 4) <= 2,
        "{live} live lines for {total}: {stdout}"
    );
    let funcs = table(&stdout, "FUNCTION (whose frame did not fit)");
    assert_eq!(
        funcs
            .iter()
            .find(|(_, f)| *f == "main.recurse")
            .map(|r| r.0),
        Some(g * u64::from(k)),
        "{stdout}"
    );
    assert!(
        !stdout.contains("time spent copying"),
        "no --time: {stdout}"
    );
    // Folded stacks, outermost first, for flame graph tools.
    let f = std::fs::read_to_string(&folded).expect("the folded file");
    assert!(
        f.lines().any(|l| l.starts_with("runtime.goexit;main.main.")
            && l.contains(";main.recurse;main.recurse;")),
        "{f}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gcstat_counts_the_cycles_gctrace_prints() {
    // A line the program's exit cut short ("gc 13 @0.180s 3%: ") is a cycle the
    // runtime did not finish reporting; gcstat does not count it either.
    let trace_line = Regex::new(r"^gc \d+ @.* P$").unwrap();
    let summary_re = Regex::new(r"(?m)^(\d+) GC cycles$").unwrap();
    let pauses_re = Regex::new(r"stop-the-world pauses: (\d+) in all").unwrap();
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::Stripped] {
            let bin = testprogs::build("rt_gc", &tc, v);
            let what = format!("go{} {v}", tc.minor);
            let out = run(gotap()
                .env("GODEBUG", "gctrace=1")
                .args(["gcstat", "-c"])
                .arg(format!("{} 256 4", bin.display())));
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert!(out.status.success(), "{what}: {stderr}");
            let gctrace = stderr.lines().filter(|l| trace_line.is_match(l)).count();
            let ours = stdout.lines().filter(|l| l.starts_with("gc ")).count();
            let summary: usize = summary_re.captures(&stdout).expect("a summary")[1]
                .parse()
                .unwrap();
            assert!(
                gctrace > 2,
                "{what}: the program should run a few GC cycles\n{stderr}"
            );
            assert_eq!(
                summary, gctrace,
                "{what}\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
            assert_eq!(ours, gctrace, "{what}: one line per cycle\n{stdout}");
            // Two stops of the world per cycle, each with a duration, and those of a
            // cycle the program's exit cut short.
            let pauses: usize = pauses_re.captures(&stdout).expect("a pause count")[1]
                .parse()
                .unwrap();
            assert!(
                (2 * gctrace..=2 * gctrace + 2).contains(&pauses),
                "{what}: {pauses} pauses for {gctrace} cycles\n{stdout}"
            );
        }
    }
}

#[test]
fn goroutines_names_where_the_live_ones_were_created() {
    let summary_re =
        Regex::new(r"(?m)^(\d+) goroutines created, (\d+) exited, (\d+) alive at the end").unwrap();
    for tc in [testprogs::newest(), testprogs::toolchains()[0].clone()] {
        let bin = testprogs::build("rt_gc", &tc, Variant::Stripped);
        let out = run(gotap()
            .args(["goroutines", "-c"])
            .arg(format!("{} 16 7", bin.display())));
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let c = summary_re.captures(&stdout).expect("a summary");
        let (created, exited, alive): (u64, u64, u64) = (
            c[1].parse().unwrap(),
            c[2].parse().unwrap(),
            c[3].parse().unwrap(),
        );
        // The 7 parked goroutines were created by main.main; each has exited or,
        // when main returned before it reached goexit, is alive with main.main as
        // its creation site. The main goroutine is alive; the runtime's helpers are
        // too, but are not counted (runtime.NumGoroutine does not count them).
        let rows = table(&stdout, "CREATED AT (live goroutines)");
        assert_eq!(rows.iter().map(|r| r.0).sum::<u64>(), alive, "{stdout}");
        let from_main: u64 = rows
            .iter()
            .filter(|(_, r)| r.starts_with("main.main ("))
            .map(|r| r.0)
            .sum();
        assert!(
            created >= 7 + alive - from_main && exited + from_main >= 7 && from_main <= 7,
            "{stdout}"
        );
        assert!(
            rows.iter().any(|(_, r)| r.ends_with("  runtime.main")),
            "{stdout}"
        );
        assert!(
            rows.iter()
                .all(|(_, r)| !r.contains("runtime.forcegchelper")),
            "{stdout}"
        );
        assert!(
            stdout.contains("of the runtime's own, not counted"),
            "{stdout}"
        );
        assert!(
            rows.iter()
                .all(|(_, r)| r.contains(".go:") || r.contains("<autogenerated>")),
            "symbolised with file:line: {stdout}"
        );
    }
}

/// The Go distribution's own gofmt, stripped, formatting the runtime's proc.go.
fn stripped_gofmt(tc: &Toolchain) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("gotap-gofmt-{}", tc.minor));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("gofmt");
    if !bin.exists() {
        let st = tc
            .go_command()
            .args(["build", "-ldflags=-s -w", "-o"])
            .arg(&bin)
            .arg("cmd/gofmt")
            .status()
            .expect("go build");
        assert!(st.success(), "building cmd/gofmt");
    }
    (bin, tc.goroot().join("src/runtime/proc.go"))
}

#[test]
fn stackgrow_and_goroutines_on_gofmt_give_symbolised_results() {
    let tc = testprogs::newest();
    let (gofmt, proc_go) = stripped_gofmt(&tc);
    let out = run(gotap().args(["stackgrow", "-c"]).arg(format!(
        "{} -l {}",
        gofmt.display(),
        proc_go.display()
    )));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let funcs = table(&stdout, "FUNCTION (whose frame did not fit)");
    assert!(!funcs.is_empty(), "{stdout}");
    assert!(
        funcs.iter().all(|(_, f)| !f.starts_with("0x")),
        "every function named: {stdout}"
    );
    assert!(
        funcs.iter().any(|(_, f)| f.starts_with("go/")),
        "gofmt's parser or printer grows stacks: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" : go/") && l.contains(".go:")),
        "symbolised backtraces: {stdout}"
    );

    let out = run(gotap().args(["goroutines", "-c"]).arg(format!(
        "{} -l {}",
        gofmt.display(),
        proc_go.display()
    )));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = table(&stdout, "CREATED AT (live goroutines)");
    assert!(!rows.is_empty(), "{stdout}");
    assert!(rows.iter().all(|(_, r)| !r.starts_with("0x")), "{stdout}");
}

#[test]
fn the_tapset_is_printed_and_tools_refuse_bad_arguments() {
    let out = run(gotap().arg("--tapset"));
    let t = text(&out.stdout);
    for alias in [
        "go.stack.grow",
        "go.stack.copy",
        "go.gc.start",
        "go.gc.done",
        "go.goroutine.create",
        "go.goroutine.exit",
        "go.sched.park",
        "go.sched.ready",
        "go.malloc",
    ] {
        assert!(
            t.contains(&format!("probe {alias} =")),
            "{alias} in --tapset"
        );
    }
    for args in [
        vec!["stackgrow"],
        vec!["stackgrow", "--every", "0", "./x"],
        vec!["gcstat", "-c", "a", "-x", "1"],
        vec!["goroutines", "--bogus", "./x"],
    ] {
        let out = run(gotap().args(&args));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            text(&out.stderr)
                .lines()
                .next()
                .map(|l| l.starts_with("gotap: ")),
            Some(true),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
