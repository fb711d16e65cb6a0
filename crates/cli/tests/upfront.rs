//! Errors up front: every file gotap will write is checked before a probe is placed
//! (a long trace must not end in "cannot create --folded …"), and a path that is not
//! an executable says what it is. Needs root (the runs that get as far as tracing).

mod common;

use common::*;
use std::time::Duration;

fn calls(tag: &str) -> Private {
    let built = testprogs::build("calls", &testprogs::newest(), Variant::Default);
    Private::copy(&built, tag)
}

#[test]
fn output_paths_are_checked_before_anything_is_attached() {
    let bin = calls("outputs");
    let script = format!(
        "global s\nprobe process(\"{}\").function(\"main.deep\") {{ s[ubacktrace()]++ }}\n",
        bin.path.display()
    );
    let cmd = format!("{} 10 0 now", bin.path.display());
    let dir = bin.path.parent().expect("dir").display().to_string();
    let mut cases: Vec<(Vec<String>, String)> = Vec::new();
    for flag in ["-o", "--folded", "--svg"] {
        for (path, says) in [
            (
                "/nonexistent/gotap/out".to_string(),
                "No such file or directory",
            ),
            (dir.clone(), "is a directory"),
        ] {
            let args = vec![
                "-v".into(),
                "-e".into(),
                script.clone(),
                "-c".into(),
                cmd.clone(),
                flag.into(),
                path.clone(),
            ];
            cases.push((args, format!("{flag} {path}: {says}")));
        }
    }
    for flag in ["--folded", "--svg"] {
        let args = vec![
            "stackgrow".into(),
            "-v".into(),
            "-c".into(),
            cmd.clone(),
            flag.into(),
            "/nonexistent/gotap/out".into(),
        ];
        cases.push((args, format!("{flag} /nonexistent/gotap/out: No such file")));
    }
    // The tools' -o, wherever it stands.
    for tool in ["funccount", "stackgrow", "gcstat", "goroutines"] {
        let mut args: Vec<String> = vec![tool.into(), "-v".into(), "-c".into(), cmd.clone()];
        if tool == "funccount" {
            args.push("main.deep".into());
        }
        args.extend(["-o".into(), dir.clone()]);
        cases.push((args, format!("-o {dir}: is a directory")));
    }
    for (args, says) in cases {
        let out = run(gotap().args(&args));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&says), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("attached"),
            "{args:?}: probes were placed\n{stderr}"
        );
        assert!(
            !stdout.contains("calls"),
            "{args:?}: the command ran\n{stdout}"
        );
    }
}

#[test]
fn an_output_file_that_exists_is_not_emptied_by_a_failed_run() {
    let bin = calls("keep");
    let kept = bin.path.with_file_name("kept.txt");
    std::fs::write(&kept, "earlier\n").expect("write");
    // The script fails to check; the file given to --folded must be left as it was.
    let out = run(gotap()
        .args(["-e", "probe process.function(\"main.nosuch\") { }", "-c"])
        .arg(bin.path.display().to_string())
        .arg("--folded")
        .arg(&kept));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&kept).expect("read"), "earlier\n");
}

#[test]
fn a_path_that_is_not_an_executable_says_what_it_is() {
    let bin = calls("kinds");
    let dir = bin.path.parent().expect("dir").to_path_buf();
    let fifo = dir.join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    for (path, kind) in [(&dir, "a directory"), (&fifo, "a named pipe")] {
        let p = path.display().to_string();
        let point = format!("process(\"{p}\").function(\"main.deep\")");
        for args in [
            vec!["funccount".to_string(), p.clone(), "main.*".into()],
            vec!["-e".into(), format!("probe {point} {{ }}")],
            vec!["-l".into(), point.clone()],
            vec!["gcstat".into(), p.clone()],
        ] {
            let child = gotap()
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start gotap");
            // A named pipe opened for reading would wait for a writer: it must not.
            let (out, killed) = wait_output(child, Duration::from_secs(30));
            let err = text(&out.stderr);
            assert!(!killed, "{args:?}: gotap hung");
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(
                err.contains(&format!("{p} is {kind}, not a Go executable")),
                "{args:?}: {err}"
            );
            assert!(!err.contains("os error 19"), "{args:?}: {err}");
        }
    }
}

/// A sampling probe samples one process: with no binary at all, and with a binary
/// named by a process probe but no -x/-c process, it says so before anything is
/// attached; with -c it runs, and pp(), goid() and execname() are the sample's.
#[test]
fn a_sampling_probe_needs_the_process_and_says_so_before_attaching() {
    let bin = calls("sampling");
    let out = run(gotap().args(["-e", "probe timer.profile { printf(\"%d\\n\", goid()) }"]));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("probes no Go binary"), "{err}");
    let script = format!(
        "probe process(\"{}\").function(\"main.deep\") {{ exit() }}\nprobe timer.hz(50) {{ printf(\"%d\\n\", goid()) }}",
        bin.path.display()
    );
    let out = run(gotap().args(["-e", &script]));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "timer.hz(50): a sampling probe samples one process: name it with -x PID or -c CMD"
        ),
        "{err}"
    );
    let built = testprogs::build("cpuwork", &testprogs::newest(), Variant::Default);
    let work = Private::copy(&built, "sampling-work");
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-sampling", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = run(gotap()
        .args([
            "-e",
            "probe timer.hz(20) { printf(\"%s %d %s\\n\", pp(), goid(), execname()); exit() }",
            "-c",
        ])
        .arg(format!(
            "{} 2 {}",
            work.path.display(),
            dir.join("p.pb.gz").display()
        )));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let first = stdout.lines().next().unwrap_or("");
    let w: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(w.first(), Some(&"timer.hz(20)"), "{stdout}");
    assert!(
        w.get(1).and_then(|g| g.parse::<u64>().ok()).is_some(),
        "{stdout}"
    );
    // The comm of a copied program is its file name, cut to 15 bytes.
    let comm: String = work
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .chars()
        .take(15)
        .collect();
    assert_eq!(w.get(2), Some(&comm.as_str()), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
