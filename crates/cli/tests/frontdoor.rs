//! The front door, as a new user meets it: a script that needs no Go program runs
//! (stap's `probe begin { printf("hi\n"); exit() }`), a script's own errors come at
//! their place before any word about a binary, every tool has `--help`, gotap has
//! `--version` with its commit, options stand anywhere (GNU getopt's rules, as stap),
//! tools write to `-o FILE`, a bad option is one line, the usage and exit status 1,
//! shell completions and the man page come from the same definitions, and
//! `funccount`'s table fits a terminal whatever the length of a generic Go name.
//! Real gotap, real kernel, real Go programs. Needs root (the runs that trace).

mod common;
mod live;

use common::*;
use live::*;
use std::process::Command;
use std::time::Duration;

fn counts_copy(tag: &str) -> Private {
    let built = testprogs::build("counts", &testprogs::newest(), Variant::Default);
    Private::copy(&built, tag)
}

/// `file:line:col` of the first `pat` in `src`, as gotap places a diagnostic.
fn place(name: &str, src: &str, pat: &str) -> String {
    let i = src.find(pat).expect("pattern in source");
    let line = src[..i].matches('\n').count() + 1;
    let col = i - src[..i].rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("{name}:{line}:{col}")
}

#[test]
fn a_script_of_begin_end_and_timers_runs_without_a_go_binary() {
    let out = run(gotap().args(["-e", "probe begin { printf(\"hi\\n\"); exit() }"]));
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));

    // Timers and end probes run in user space, with globals, as in stap.
    let out = run(gotap().args([
        "-e",
        "global n, seen[10]\n\
         probe timer.ms(20) { n++; seen[n] = n * n; if (n == 3) exit() }\n\
         probe end { printf(\"n=%d last=%d\\n\", n, seen[3]) }",
    ]));
    assert_eq!(text(&out.stdout), "n=3 last=9\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn without_a_process_probe_nothing_is_loaded_in_the_kernel() {
    // No global: no map, no program, no link. With globals: their maps only.
    for (script, maps_wanted) in [
        ("probe begin { printf(\"ready\\n\") }", false),
        (
            "global n\nprobe begin { n = 5; printf(\"ready\\n\") }\nprobe end { printf(\"n=%d\\n\", n) }",
            true,
        ),
    ] {
        let mut g = Live::start(gotap().args(["-e", script]));
        g.wait_stdout("ready", Duration::from_secs(30));
        let fdinfo = bpf_fdinfo(g.pid());
        let (progs, links) = bpf_ids_of(g.pid());
        assert!(progs.is_empty() && links.is_empty(), "{script}: {fdinfo}");
        assert_eq!(
            fdinfo.contains("map_id:"),
            maps_wanted,
            "{script}: {fdinfo}"
        );
        g.signal("INT");
        let (status, _) = g.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{}", g.transcript());
        if maps_wanted {
            let t = g.transcript();
            assert_eq!(g.stdout, ["ready", "n=5"], "{t}");
        }
    }
}

/// The `key: value` lines of every descriptor's fdinfo that speak of BPF.
fn bpf_fdinfo(pid: u32) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("fdinfo")
        .flatten()
    {
        let info = std::fs::read_to_string(e.path()).unwrap_or_default();
        for l in info.lines() {
            if l.starts_with("map_id:") || l.starts_with("prog_id:") || l.starts_with("link_id:") {
                all.push_str(l);
                all.push('\n');
            }
        }
    }
    all
}

#[test]
fn with_c_such_a_script_starts_the_command_and_waits_for_it() {
    let prog = counts_copy("begin-c");
    let out = run(gotap()
        .args([
            "-e",
            "probe begin { printf(\"begin\\n\") } probe end { printf(\"end\\n\") }",
            "-c",
        ])
        .arg(format!("{} 2", prog.path.display())));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["begin", "round 1", "round 2", "done 20", "end"],
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    // A command that is not a Go program is fine too, and its exit status is gotap's.
    let out = run(gotap().args([
        "-e",
        "probe end { printf(\"end\\n\") }",
        "-c",
        "/bin/sh -c 'echo ran; exit 3'",
    ]));
    assert_eq!(text(&out.stdout), "ran\nend\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn script_errors_are_reported_at_their_place_before_any_word_about_a_binary() {
    let prog = counts_copy("errors");
    let bin = prog.path.display().to_string();
    let type_error = "global x; probe begin { x = \"a\" + 1 }";
    let cases: Vec<(String, Vec<&str>, Vec<String>)> = vec![
        (
            type_error.into(),
            vec![],
            vec![format!(
                "{}: error: an operand of '+' must be long, found string",
                place("<input>", type_error, "\"a\"")
            )],
        ),
        (
            "probe nosuch { }".into(),
            vec![],
            vec!["<input>:1:7: error: unknown probe point 'nosuch'".into()],
        ),
        (
            "probe begin { nosuch_function(1) }".into(),
            vec![],
            vec!["<input>:1:15: error:".into()],
        ),
        (
            "probe begin { printf(\"%d\\n\" }".into(),
            vec![],
            vec!["<input>:1:".into()],
        ),
        // With process probes and nothing that names the binary: the script's own
        // errors first, then what is missing.
        (
            format!("{type_error}\nprobe process.function(\"main.leaf\") {{ }}"),
            vec![],
            vec![
                "<input>:1:29: error: an operand of '+' must be long".into(),
                "error: process probes without a path need -c CMD or -x PID".into(),
            ],
        ),
        (
            format!("{type_error}\nprobe process(\"/nonexistent/prog\").function(\"main.leaf\") {{ }}"),
            vec![],
            vec![
                "<input>:1:29: error: an operand of '+' must be long".into(),
                "/nonexistent/prog".into(),
            ],
        ),
        // A global whose type only a process probe's body sets is not an error of
        // its own when that body could not be checked.
        (
            "global c\nprobe process.function(\"main.leaf\") { c[probefunc()]++ }\nprobe end { foreach (k in c) println(k, c[k]) }".into(),
            vec![],
            vec!["gotap: process probes without a path need -c CMD or -x PID".into()],
        ),
        // With the binary, the same errors and the binary's own, in the source's order.
        (
            format!("{type_error}\nprobe process.function(\"main.lef\") {{ }}"),
            vec!["-c", &bin],
            vec![
                "<input>:1:29: error: an operand of '+' must be long".into(),
                "<input>:2:7: error: no function matches 'main.lef'".into(),
            ],
        ),
    ];
    for (script, extra, wanted) in cases {
        let out = run(gotap().arg("-e").arg(&script).args(&extra));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{script}: {err}");
        let mut from = 0;
        for w in &wanted {
            let at = err[from..]
                .find(w.as_str())
                .unwrap_or_else(|| panic!("{script}: no {w:?} (in order) in\n{err}"));
            from += at + w.len();
        }
        assert!(!err.contains("cannot infer"), "{script}: {err}");
        if extra.is_empty() && !script.contains("process") {
            assert!(!err.contains("binary"), "{script}: {err}");
        }
        assert!(!text(&out.stdout).contains("round"), "the command ran");
    }
}

#[test]
fn every_tool_has_help_and_gotap_a_version_with_its_commit() {
    for tool in [
        "funccount",
        "stackgrow",
        "gcstat",
        "goroutines",
        "agent",
        "completions",
        "man",
    ] {
        for flag in ["--help", "-h"] {
            let out = run(gotap().args([tool, flag]));
            let help = text(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{tool} {flag}: {}",
                text(&out.stderr)
            );
            assert!(
                help.contains(&format!("Usage: gotap {tool}")),
                "{tool} {flag}:\n{help}"
            );
        }
    }
    let out = run(gotap().args(["funccount", "--help"]));
    for opt in ["-x <PID>", "-c <CMD>", "-o <FILE>", "-i <SECS>", "-v"] {
        assert!(
            text(&out.stdout).contains(opt),
            "{opt}:\n{}",
            text(&out.stdout)
        );
    }
    let out = run(gotap().arg("--help"));
    let help = text(&out.stdout);
    for opt in [
        "-e <SCRIPT>",
        "-x <PID>",
        "-d <STAGE>",
        "-l <PROBE>",
        "funccount",
        "Examples:",
    ] {
        assert!(help.contains(opt), "{opt}:\n{help}");
    }

    let out = run(gotap().arg("--version"));
    let version = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    let re =
        regex::Regex::new(r"^gotap \d+\.\d+\.\d+ \(commit ([0-9a-f]{12}) \d{4}-\d\d-\d\d\)\n$")
            .unwrap();
    let caps = re
        .captures(&version)
        .unwrap_or_else(|| panic!("--version: {version:?}"));
    // The commit is the one the source tree is at (the build watches HEAD).
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Ok(head) = head
        && head.status.success()
    {
        assert!(
            text(&head.stdout).starts_with(&caps[1]),
            "{version} vs {}",
            text(&head.stdout)
        );
    }
}

#[test]
fn a_bad_command_line_is_one_line_the_usage_and_exit_1() {
    for (args, first, usage) in [
        (
            vec!["--bogus"],
            "unexpected argument '--bogus'",
            "Usage: gotap [OPTIONS]",
        ),
        (vec![], "no script given", "Usage: gotap [OPTIONS]"),
        (
            vec!["-x", "abc", "-e", "probe begin {}"],
            "invalid value 'abc' for '-x <PID>'",
            "Usage: gotap [OPTIONS]",
        ),
        (
            vec!["-c", "a", "-x", "1", "-e", "probe begin {}"],
            "'-c <CMD>' cannot be used with '-x <PID>'",
            "Usage: gotap [OPTIONS]",
        ),
        (
            vec!["-d", "nosuch", "-e", "probe begin {}"],
            "invalid value 'nosuch' for '-d <STAGE>'",
            "Usage: gotap [OPTIONS]",
        ),
        (
            vec!["funccount", "-q", "./bin", "main.*"],
            "unexpected argument '-q'",
            "Usage: gotap funccount",
        ),
        (
            vec!["funccount", "./bin"],
            "no function pattern given",
            "Usage: gotap funccount",
        ),
        (
            vec!["funccount", "-i", "0", "./bin", "main.*"],
            "invalid value '0' for '-i <SECS>'",
            "Usage: gotap funccount",
        ),
        (
            vec!["stackgrow"],
            "the following required arguments",
            "Usage: gotap stackgrow",
        ),
        (
            vec!["gcstat", "./bin", "--time"],
            "unexpected argument '--time'",
            "Usage: gotap gcstat",
        ),
    ] {
        let out = run(gotap().args(&args));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        let line = err.lines().next().unwrap_or_default();
        assert!(
            line.starts_with("gotap: ") && line.contains(first),
            "{args:?}:\n{err}"
        );
        assert!(err.contains(usage), "{args:?}:\n{err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(text(&out.stdout), "", "{args:?}");
    }
}

#[test]
fn options_stand_anywhere_and_double_dash_ends_them() {
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-getopt", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("args.stp");
    std::fs::write(
        &script,
        "probe begin { printf(\"%s|%s|%s\\n\", @1, @2, @3); exit() }\n",
    )
    .expect("write");
    let out_file = dir.join("out.txt");
    // Options after the script and among its arguments are gotap's (GNU getopt
    // permutes them); after `--` everything is the script's, dashes and tool names too.
    let out = run(gotap()
        .arg(&script)
        .arg("a")
        .arg("-o")
        .arg(&out_file)
        .args(["funccount", "--", "-x"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        std::fs::read_to_string(&out_file).expect("-o file"),
        "a|funccount|-x\n"
    );
    let out = run(gotap().args([
        "-e",
        "probe begin { printf(\"%s %d\\n\", @1, $2); exit() }",
        "--",
        "-v",
        "-5",
    ]));
    assert_eq!(text(&out.stdout), "-v -5\n", "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tool_options_may_follow_the_patterns_and_the_binary() {
    let prog = counts_copy("anywhere");
    // -c after the pattern, the Go program's own count as the oracle.
    let out = run(gotap()
        .args(["funccount", "main.leaf", "-c"])
        .arg(format!("{} 2", prog.path.display())));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(counts(&text(&out.stdout)).get("main.leaf"), Some(&2000));

    // -x after the pattern, on a running program.
    let mut target = Live::start(Command::new(&prog.path).args(["100", "20"]));
    target.wait_stdout("round 1", Duration::from_secs(30));
    let mut g =
        Live::start(gotap().args(["funccount", "main.leaf", "-x", &target.pid().to_string()]));
    g.wait_stderr("Tracing", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    g.signal("INT");
    let (status, _) = g.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", g.transcript());
    let n = counts(&g.stdout.join("\n"))
        .get("main.leaf")
        .copied()
        .unwrap_or(0);
    assert!(
        (1000..100_000).contains(&n),
        "counted {n}\n{}",
        g.transcript()
    );
    target.signal("KILL");
    let _ = target.wait_exit(Duration::from_secs(10));
}

#[test]
fn tools_write_their_output_to_o() {
    let prog = counts_copy("output");
    let dir = prog.path.parent().expect("dir").to_path_buf();
    let file = dir.join("counts.txt");
    let out = run(gotap()
        .args(["funccount", "-c"])
        .arg(format!("{} 2", prog.path.display()))
        .arg("main.leaf")
        .arg("-o")
        .arg(&file));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The command's own output stays on stdout; the table goes to the file.
    assert!(text(&out.stdout).contains("done 20"));
    assert!(!text(&out.stdout).contains("FUNC"), "{}", text(&out.stdout));
    let written = std::fs::read_to_string(&file).expect("-o file");
    assert_eq!(counts(&written).get("main.leaf"), Some(&2000), "{written}");

    let gc = testprogs::build("rt_gc", &testprogs::newest(), Variant::Default);
    let file = dir.join("gc.json");
    let out = run(gotap()
        .args(["gcstat", "--json", "-o"])
        .arg(&file)
        .arg("-c")
        .arg(format!("{} 8 2", gc.display())));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&file).expect("-o file");
    assert!(written.contains("\"cycles\""), "{written}");
    assert!(!text(&out.stdout).contains("\"cycles\""));
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    let out = run(gotap().args(["completions", "bash"]));
    assert_eq!(out.status.code(), Some(0));
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-compl", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("gotap.bash");
    std::fs::write(&file, &out.stdout).expect("write");
    // What bash offers after `gotap func<TAB>` and `gotap funccount -<TAB>`.
    let complete = |words: &str| -> Vec<String> {
        let script = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             _gotap gotap \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let out = Command::new("bash")
            .args(["-c", &script])
            .output()
            .expect("bash");
        text(&out.stdout).lines().map(String::from).collect()
    };
    assert_eq!(complete("gotap func"), ["funccount", "funclatency"]);
    let opts = complete("gotap funccount -");
    for o in ["-x", "-c", "-o", "-i", "--help"] {
        assert!(opts.iter().any(|x| x == o), "{o} not in {opts:?}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(gotap().args(["completions", shell]));
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out.stdout).contains("funccount"), "{shell}");
    }
    let _ = std::fs::remove_dir_all(&dir);

    // The man page, as `man` shows it.
    for (page, args, says) in [
        (
            "gotap",
            vec!["man"],
            vec![
                "SYNOPSIS",
                "-x <PID>",
                "gotap-funccount(1)",
                "EXAMPLES",
                "EXIT STATUS",
            ],
        ),
        (
            "gotap-funccount",
            vec!["man", "funccount"],
            vec!["SYNOPSIS", "-i <SECS>"],
        ),
    ] {
        let out = run(gotap().args(&args));
        assert_eq!(out.status.code(), Some(0));
        let roff = text(&out.stdout);
        assert!(roff.contains(&format!(".TH {page} 1")), "{roff}");
        let mut man = Command::new("man")
            .args(["-l", "-"])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(child) = man.as_mut() else {
            eprintln!("no `man` here: the roff is checked, not its rendering");
            continue;
        };
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(roff.as_bytes())
            .expect("write");
        let rendered = man.expect("man").wait_with_output().expect("man");
        let shown = text(&rendered.stdout);
        for s in says {
            assert!(shown.contains(s), "{page}: {s} not in\n{shown}");
        }
    }
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    // As `gotap man | head`: the pipe is closed before gotap writes (or while it
    // does); it ends quietly with status 0, as after a full read.
    for args in [
        vec!["--help"],
        vec!["funccount", "--help"],
        vec!["--version"],
        vec!["man"],
        vec!["completions", "bash"],
    ] {
        let mut child = gotap()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start gotap");
        drop(child.stdout.take());
        let (out, killed) = wait_output(child, Duration::from_secs(30));
        assert!(!killed, "{args:?}");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
}

#[test]
fn funccount_fits_80_columns_and_a_long_generic_name_overflows_only_its_own_row() {
    let tc = testprogs::newest();
    let built = testprogs::build("generic", &tc, Variant::Default);
    let prog = Private::copy(&built, "generic");
    // The instantiation's name, as the Go toolchain writes it.
    let nm = tc
        .go_command()
        .args(["tool", "nm"])
        .arg(&prog.path)
        .output()
        .expect("nm");
    let fold = text(&nm.stdout)
        .lines()
        .filter_map(|l| l.trim_start().splitn(3, ' ').nth(2))
        .find(|name| name.starts_with("main.Fold["))
        .expect("main.Fold's instantiation in go tool nm")
        .to_string();
    assert!(fold.len() > 100, "{fold}");
    let out = run(gotap()
        .args(["funccount", "main.*", "-c"])
        .arg(format!("{} 3", prog.path.display())));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let folds: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fold calls "))
        .and_then(|n| n.parse().ok())
        .expect("the program's own count");
    assert_eq!(folds, 300);
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("FUNC "))
        .collect();
    assert!(table.len() >= 4, "{stdout}");
    let (long, others): (Vec<&str>, Vec<&str>) =
        table.iter().partition(|l| l.starts_with("main.Fold["));
    // The long name is whole, then its count as BCC's funccount prints one.
    assert_eq!(long, [format!("{fold} {folds:>8}")], "{stdout}");
    // Every other row fits 80 columns, and their counts line up.
    let width = others[0].chars().count();
    assert!(width <= 80, "{stdout}");
    for row in &others {
        assert_eq!(row.chars().count(), width, "{row:?}\n{stdout}");
    }
    assert_eq!(counts(&stdout).get("main.leaf"), Some(&3000));
}
