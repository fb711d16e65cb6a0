//! Targets as they are in production: `-x PID` on a process whose executable was
//! deleted or replaced since it started (an ordinary redeploy), and on a process in
//! its own mount namespace and root, as in a container, where the path it was started
//! from means nothing outside. gotap reaches the file through `/proc/PID/exe` in every
//! case. Scripts, `funccount` and the tools, each count checked against the program's
//! own (`tests/testprogs/calls.go`). Real gotap, real kernel. Needs root.

mod common;
mod live;

use common::*;
use live::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

const COUNT: &str = "global c\nprobe process.function(\"main.deep\") { c++ }\nprobe end { printf(\"c=%d\\n\", c) }\n";

/// A running `calls 10` the tests talk to, and the total of its calls so far.
struct Target {
    live: Live,
    /// The pid in this test's namespace.
    pid: u32,
    total: u64,
}

impl Target {
    fn start(cmd: &mut Command) -> Target {
        let mut live = Live::start(cmd);
        let pid: u32 = live.wait_stdout("pid ", LONG)[4..].parse().expect("pid");
        Target {
            live,
            pid,
            total: 0,
        }
    }

    /// Has the program call `main.deep` 10 more times, and waits until it did.
    fn call(&mut self) {
        self.total += 10;
        self.live.send("go");
        self.live
            .wait_stdout(&format!("calls {}", self.total), LONG);
    }

    /// Has the program run a GC cycle; the cycles it has completed since it started.
    fn gc(&mut self) -> u64 {
        self.live.send("gc");
        self.live.wait_stdout("gcs ", LONG)[4..]
            .parse()
            .expect("a count")
    }
}

/// Runs gotap with `args`, waits for `ready` on its stderr, has the target call
/// `main.deep` 10 times, and ends gotap with SIGINT; gotap's stdout.
fn traced(t: &mut Target, args: &[&str], ready: &str) -> Vec<String> {
    let mut g = Live::start(gotap().args(args));
    g.wait_stderr(ready, LONG);
    t.call();
    let (_, status) = g.time_to_exit("INT", LONG);
    let tr = g.transcript();
    assert_eq!(status.code(), Some(0), "{tr}");
    assert!(!gone(t.pid), "the target was stopped\n{tr}");
    g.stdout.clone()
}

fn script(t: &mut Target, text: &str) -> Vec<String> {
    let x = t.pid.to_string();
    traced(t, &["-v", "-x", &x, "-e", text], "probes attached")
}

fn funccount(t: &mut Target) -> u64 {
    let x = t.pid.to_string();
    let out = traced(t, &["funccount", "-x", &x, "main.deep"], "Tracing");
    counts(&out.join("\n"))
        .get("main.deep")
        .copied()
        .unwrap_or_else(|| panic!("no main.deep row: {out:?}"))
}

/// `gcstat -x` over three forced collections: the cycles it counted, and the
/// program's own count of them.
fn gcstat(t: &mut Target) -> (u64, u64) {
    let x = t.pid.to_string();
    let before = t.gc();
    let mut g = Live::start(gotap().args(["gcstat", "-v", "-x", &x]));
    g.wait_stderr("probes attached", LONG);
    let mut after = before;
    for _ in 0..3 {
        after = t.gc();
    }
    g.time_to_exit("INT", LONG);
    let out = g.stdout.join("\n");
    let summary = out
        .lines()
        .find_map(|l| l.strip_suffix(" GC cycles")?.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {}", g.transcript()));
    (summary, after - before)
}

/// `print_ubacktrace()` of the first hit names the probed function and its callers.
fn backtrace(t: &mut Target) -> Vec<String> {
    let text = "global done\nprobe process.function(\"main.deep\") { if (!done) { print_ubacktrace(); done = 1 } }\n";
    script(t, text)
}

fn assert_backtrace(lines: &[String], what: &str) {
    for f in ["main.deep+", "main.round+", "main.main+"] {
        assert!(
            lines.iter().any(|l| l.contains(&format!(" : {f}"))),
            "{what}: no frame of {f}\n{lines:?}"
        );
    }
}

fn calls(variant: Variant, tag: &str) -> Private {
    let built = testprogs::build("calls", &testprogs::newest(), variant);
    Private::copy(&built, tag)
}

fn exe_link(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .expect("readlink")
        .display()
        .to_string()
}

#[test]
fn a_deleted_binary_is_traced_through_proc_pid_exe() {
    for v in [Variant::Default, Variant::Pie] {
        let bin = calls(v, &format!("deleted-{v}"));
        let mut t = Target::start(Command::new(&bin.path).arg("10"));
        std::fs::remove_file(&bin.path).expect("delete the binary");
        assert!(exe_link(t.pid).ends_with(" (deleted)"));
        let out = script(&mut t, COUNT);
        assert!(out.contains(&"c=10".to_string()), "{v}: {out:?}");
        // The path it was started from, named in the script, is the running file.
        let named = COUNT.replace("process.", &format!("process(\"{}\").", bin.path.display()));
        let out = script(&mut t, &named);
        assert!(out.contains(&"c=10".to_string()), "{v}: {out:?}");
        assert_eq!(funccount(&mut t), 10, "{v}");
        assert_backtrace(&backtrace(&mut t), &format!("{v}"));
        let (seen, ran) = gcstat(&mut t);
        assert_eq!(seen, ran, "{v}: GC cycles");
        assert!(ran >= 3, "{v}: {ran} cycles");
    }
}

#[test]
fn a_replaced_binary_is_traced_as_the_process_runs_it() {
    let bin = calls(Variant::Default, "replaced");
    let mut t = Target::start(Command::new(&bin.path).arg("10"));
    // A redeploy: another build renamed over the path. It has no main.deep at all, so
    // a probe placed in it would not even compile.
    let other = testprogs::build("counts", &testprogs::newest(), Variant::Default);
    let tmp = bin.path.with_file_name(".next");
    std::fs::copy(&other, &tmp).expect("copy the new build");
    std::fs::rename(&tmp, &bin.path).expect("replace the binary");
    assert!(exe_link(t.pid).ends_with(" (deleted)"));
    let named = COUNT.replace("process.", &format!("process(\"{}\").", bin.path.display()));
    let out = script(&mut t, &named);
    assert!(out.contains(&"c=10".to_string()), "{out:?}");
    let out = script(&mut t, COUNT);
    assert!(out.contains(&"c=10".to_string()), "{out:?}");
    assert_eq!(funccount(&mut t), 10);
    let (seen, ran) = gcstat(&mut t);
    assert_eq!(seen, ran, "GC cycles");
}

/// Starts `calls 10` as a container would: in new mount and pid namespaces, from a
/// tmpfs mounted only in its namespace and made its root. Outside, the path the
/// program was started from is an empty directory. The root holds the program and,
/// for a PIE (which Go links against the dynamic loader), the loader.
fn contained(bin: &Path, root: &Path) -> Target {
    std::fs::create_dir_all(root).expect("root dir");
    let loader = "/lib64/ld-linux-x86-64.so.2";
    let inside = format!(
        "mount -t tmpfs gotap-test {root} && cp {bin} {root}/calls && mkdir {root}/lib64 && cp {loader} {root}/lib64/ && exec chroot {root} /calls 10",
        root = root.display(),
        bin = bin.display()
    );
    let mut unshare = Command::new("unshare");
    unshare.args([
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        &inside,
    ]);
    let mut t = Target::start(&mut unshare);
    // The program says "pid 1": its pid inside. Outside it is unshare's child.
    assert_eq!(t.pid, 1);
    let outer = t.live.pid();
    t.pid = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
        .expect("children of unshare")
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the contained program's pid");
    t
}

#[test]
fn a_process_in_its_own_mount_namespace_and_root_is_traced() {
    for v in [Variant::Default, Variant::Pie] {
        let bin = calls(v, &format!("contained-{v}"));
        let root: PathBuf = bin.path.with_file_name("root");
        let mut t = contained(&bin.path, &root);
        let link = exe_link(t.pid);
        assert!(
            !Path::new(&link).exists(),
            "{v}: {link} is reachable outside the namespace; the test means to start it where it is not"
        );
        let out = script(&mut t, COUNT);
        assert!(out.contains(&"c=10".to_string()), "{v}: {out:?}");
        assert_eq!(funccount(&mut t), 10, "{v}");
        assert_backtrace(&backtrace(&mut t), &format!("{v}"));
        let (seen, ran) = gcstat(&mut t);
        assert_eq!(seen, ran, "{v}: GC cycles");
    }
}
