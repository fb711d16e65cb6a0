//! `gotap funccount` as a user runs it, on real Go programs built by every installed
//! toolchain, through the real kernel. Needs root.

mod common;

use common::*;
use std::process::Stdio;
use std::time::Duration;

/// What tests/testprogs/counts.go calls, per round, as its comment says.
fn expected(rounds: u64) -> Vec<(&'static str, u64)> {
    vec![
        ("main.leaf", rounds * 1000),
        ("main.recurse", rounds * 8 * 200),
        ("main.(*T).Method", rounds * 10),
        ("main.once", 1),
        ("main.main", 1),
    ]
}

fn check_counts(out: &std::process::Output, rounds: u64, what: &str) {
    let stdout = text(&out.stdout);
    let got = counts(&stdout);
    for (f, n) in expected(rounds) {
        assert_eq!(
            got.get(f).copied(),
            Some(n),
            "{what}: {f}\nstdout:\n{stdout}\nstderr:\n{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn counts_are_exact_on_every_toolchain_and_variant() {
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::Stripped, Variant::Pie] {
            let bin = testprogs::build("counts", &tc, v);
            let out = run(gotap()
                .args(["funccount", "-c"])
                .arg(format!("{} 3", bin.display()))
                .arg("main.*"));
            let what = format!("go{} {v}", tc.minor);
            assert!(out.status.success(), "{what}: {}", text(&out.stderr));
            assert!(
                text(&out.stdout).contains("done 30"),
                "{what}: the program's own output is missing"
            );
            check_counts(&out, 3, &what);
        }
    }
}

#[test]
fn the_command_exit_status_is_passed_on() {
    // counts.go exits 0; a missing program is gotap's own error, exit 1.
    let tc = testprogs::newest();
    let bin = testprogs::build("counts", &tc, Variant::Default);
    let out = run(gotap()
        .args(["funccount", "-c"])
        .arg(format!("{} 1", bin.display()))
        .arg("main.leaf"));
    assert_eq!(out.status.code(), Some(0));
    let out = run(gotap().args(["funccount", "-c", "/nonexistent/prog", "main.leaf"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/prog"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_input_is_one_line_and_exit_1() {
    let tc = testprogs::newest();
    let bin = testprogs::build("counts", &tc, Variant::Default);
    for (args, needle) in [
        (
            vec!["funccount", "/nonexistent/bin", "main.*"],
            "/nonexistent/bin",
        ),
        (vec!["funccount", "/etc/passwd", "main.*"], "not an ELF"),
        (
            vec!["funccount", "/bin/true", "main.*"],
            "not a Go executable",
        ),
        (
            vec!["funccount", bin.to_str().expect("utf-8 path"), "nosuch.*"],
            "no function",
        ),
        (vec!["funccount", "-x", "999999999", "main.*"], "999999999"),
    ] {
        let out = run(gotap().args(&args));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// The compile tool of the newest toolchain, a 20+ MB Go program no one here wrote.
fn compile_tool(tc: &Toolchain) -> std::path::PathBuf {
    let out = tc
        .go_command()
        .args(["tool", "-n", "compile"])
        .output()
        .expect("go tool -n compile");
    std::path::PathBuf::from(text(&out.stdout).trim())
}

#[test]
fn five_thousand_functions_of_the_compiler() {
    let tc = testprogs::newest();
    let compile = compile_tool(&tc);
    let dir = tempdir("compile");
    let src = dir.join("p.go");
    std::fs::write(&src, "package p\n\nfunc F(n int) int {\n\ts := 0\n\tfor i := 0; i < n; i++ {\n\t\ts += i * i\n\t}\n\treturn s\n}\n").expect("write p.go");
    let cmd = format!(
        "{} -p p -o {} {}",
        compile.display(),
        dir.join("p.o").display(),
        src.display()
    );
    let out = run(gotap().args([
        "funccount",
        "-v",
        "-c",
        &cmd,
        "cmd/compile/internal/ssa.*",
        "cmd/compile/internal/types2.*",
        "cmd/compile/internal/noder.*",
        "cmd/compile/internal/ir.*",
    ]));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let n: usize = err
        .lines()
        .find_map(|l| {
            l.strip_prefix("Tracing ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no Tracing line:\n{err}"));
    assert!(n >= 5000, "only {n} functions");
    let got = counts(&text(&out.stdout));
    assert!(
        got.len() > 300,
        "only {} functions ran while compiling:\n{}",
        got.len(),
        text(&out.stdout)
    );
    assert!(
        got.contains_key("cmd/compile/internal/ssa.Compile"),
        "ssa.Compile did not run"
    );
    assert!(
        dir.join("p.o").exists(),
        "the compiler did not write its output"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gotap-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Starts `counts ROUNDS 20` (20 ms between rounds) and gotap funccount -x on it.
fn traced_pair(prog: &std::path::Path, rounds: u32) -> (std::process::Child, std::process::Child) {
    let target = std::process::Command::new(prog)
        .args([rounds.to_string(), "20".into()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start counts");
    let tracer = gotap()
        .args(["funccount", "-x", &target.id().to_string(), "main.leaf"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gotap");
    (target, tracer)
}

fn wait_tracing(tracer: &std::process::Child) -> (Vec<u32>, Vec<u32>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (p, l) = bpf_ids_of(tracer.id());
        if !p.is_empty() && !l.is_empty() {
            // Attached once a link exists; give it a moment to count some rounds.
            std::thread::sleep(Duration::from_millis(300));
            return (p, l);
        }
        assert!(std::time::Instant::now() < deadline, "gotap did not attach");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigint_and_sigterm_print_the_summary_and_leave_the_target_running() {
    let tc = testprogs::newest();
    let prog = Private::copy(
        &testprogs::build("counts", &tc, Variant::Default),
        "signals",
    );
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let (target, tracer) = traced_pair(&prog.path, 60);
        let (progs, links) = wait_tracing(&tracer);
        send_signal(tracer.id(), sig);
        let (out, killed) = wait_output(tracer, Duration::from_secs(10));
        assert!(!killed, "gotap did not end on signal {sig}");
        assert_eq!(
            out.status.code(),
            Some(0),
            "signal {sig}: {}",
            text(&out.stderr)
        );
        let n = counts(&text(&out.stdout))
            .get("main.leaf")
            .copied()
            .unwrap_or(0);
        // Attached for at least the 300 ms wait_tracing sleeps (about 10 rounds of
        // 1000 calls), detached before the 60th round ended.
        assert!(
            (1000..60_000).contains(&n),
            "signal {sig}: counted {n} calls of main.leaf"
        );
        assert_gone(&progs, &links);
        let (tout, tkilled) = wait_output(target, Duration::from_secs(30));
        assert!(!tkilled && tout.status.success(), "the target was harmed");
        assert!(
            text(&tout.stdout).contains("done 600"),
            "the target's output changed:\n{}",
            text(&tout.stdout)
        );
    }
}

#[test]
fn sigkill_of_gotap_leaves_no_probe_behind() {
    let tc = testprogs::newest();
    let prog = Private::copy(
        &testprogs::build("counts", &tc, Variant::Default),
        "sigkill",
    );
    let (target, mut tracer) = traced_pair(&prog.path, 60);
    let (progs, links) = wait_tracing(&tracer);
    tracer.kill().expect("SIGKILL gotap");
    let _ = tracer.wait();
    assert_gone(&progs, &links);
    let (tout, tkilled) = wait_output(target, Duration::from_secs(30));
    assert!(!tkilled && tout.status.success(), "the target was harmed");
    assert!(
        text(&tout.stdout).contains("done 600"),
        "the target's output changed:\n{}",
        text(&tout.stdout)
    );
}

#[test]
fn two_gotaps_on_one_binary_both_count() {
    let tc = testprogs::newest();
    let prog = Private::copy(&testprogs::build("counts", &tc, Variant::Default), "two");
    let start = |_: u8| {
        gotap()
            .args(["funccount"])
            .arg(&prog.path)
            .arg("main.*")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gotap")
    };
    let a = start(0);
    let b = start(1);
    wait_tracing(&a);
    wait_tracing(&b);
    let out = run(std::process::Command::new(&prog.path).arg("3"));
    assert!(out.status.success());
    for t in [a, b] {
        send_signal(t.id(), libc::SIGINT);
        let (out, killed) = wait_output(t, Duration::from_secs(10));
        assert!(!killed);
        check_counts(&out, 3, "one of two gotaps");
    }
}

fn send_signal(pid: u32, sig: i32) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn without_privileges_one_sentence_says_what_is_needed() {
    let tc = testprogs::newest();
    let dir = tempdir("noperm");
    let gotap_copy = dir.join("gotap");
    let prog = dir.join("counts");
    std::fs::copy(env!("CARGO_BIN_EXE_gotap"), &gotap_copy).expect("copy gotap");
    std::fs::copy(testprogs::build("counts", &tc, Variant::Default), &prog).expect("copy counts");
    for p in [&dir, &gotap_copy, &prog] {
        let _ = std::process::Command::new("chmod")
            .arg("755")
            .arg(p)
            .status();
    }
    let out = run(std::process::Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(&gotap_copy)
        .arg("funccount")
        .arg(&prog)
        .arg("main.*"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("gotap needs root, or CAP_BPF and CAP_PERFMON"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
