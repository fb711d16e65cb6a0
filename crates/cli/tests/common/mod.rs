//! What the end-to-end tests share: running `gotap` as a user would, with a deadline,
//! and private copies of test programs (a uprobe belongs to the file, so a probe on a
//! shared build would also count other tests' runs of it).
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use testprogs::{Toolchain, Variant};

pub mod oracle;

/// Held by the tests of a file whose numbers are times and counts at moments: two at
/// once make each other's programs wait for the machine's 2 CPUs, and a wait that
/// falls where only one side measures (right after a probe) is not the program's.
static QUIET: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The test's turn alone among those that take it (a failed test's turn is over too).
pub fn quiet() -> std::sync::MutexGuard<'static, ()> {
    QUIET.lock().unwrap_or_else(|p| p.into_inner())
}
pub use oracle::*;

pub fn gotap() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gotap"));
    c.stdin(Stdio::null());
    c
}

/// Waits for `child` at most `limit`, then kills it; the output so far either way.
/// Its pipes are read meanwhile, so a child with much to say does not block on them.
pub fn wait_output(mut child: Child, limit: Duration) -> (Output, bool) {
    use std::io::Read;
    fn drain(p: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let mut killed = false;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(s) => break s,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                killed = true;
                break child.wait().expect("reap");
            }
        }
    };
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    (output, killed)
}

/// Runs `cmd` to its end (at most two minutes) and returns its output.
pub fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let (out, killed) = wait_output(child, Duration::from_secs(120));
    assert!(
        !killed,
        "timed out: {cmd:?}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A copy of a built test program that only this test runs.
pub struct Private {
    pub path: PathBuf,
}

impl Private {
    pub fn copy(src: &Path, tag: &str) -> Private {
        let dir = std::env::temp_dir().join(format!("gotap-test-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("private dir");
        let path = dir.join(src.file_name().expect("file name"));
        // Copied by `cp`, not by this process: while this process held the copy
        // open for writing, a test on another thread could fork, its child would
        // inherit the descriptor until it execs, and running the copy meanwhile
        // fails with ETXTBSY ("Text file busy").
        let status = Command::new("cp")
            .arg(src)
            .arg(&path)
            .status()
            .expect("run cp");
        assert!(status.success(), "cp {} {}", src.display(), path.display());
        Private { path }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        if let Some(d) = self.path.parent() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The `FUNC COUNT` rows of a funccount table (an INLINED column after is left out).
pub fn counts(stdout: &str) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    let mut in_table = false;
    for line in stdout.lines() {
        if line.starts_with("FUNC ") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        // `FUNC COUNT`, or `FUNC COUNT INLINED` when inlined calls were probed.
        let mut parts = line.split_whitespace();
        if let (Some(name), Some(n)) = (parts.next(), parts.next())
            && let Ok(n) = n.parse()
        {
            m.insert(name.to_string(), n);
        }
    }
    m
}

/// The BPF program and link ids a process holds, from its `/proc/PID/fdinfo`.
pub fn bpf_ids_of(pid: u32) -> (Vec<u32>, Vec<u32>) {
    let (mut progs, mut links) = (Vec::new(), Vec::new());
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (progs, links);
    };
    for e in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in info.lines() {
            if let Some(v) = line.strip_prefix("prog_id:") {
                progs.extend(v.trim().parse::<u32>().ok());
            } else if let Some(v) = line.strip_prefix("link_id:") {
                links.extend(v.trim().parse::<u32>().ok());
            }
        }
    }
    progs.sort_unstable();
    progs.dedup();
    links.sort_unstable();
    links.dedup();
    (progs, links)
}

/// Waits (up to 10 s) until none of `progs` and `links` is in the kernel's lists.
pub fn assert_gone(progs: &[u32], links: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = sys::inventory::programs().expect("list programs");
        let l = sys::inventory::links().expect("list links");
        let left_p: Vec<u32> = progs
            .iter()
            .copied()
            .filter(|id| p.iter().any(|x| x.id == *id))
            .collect();
        let left_l: Vec<u32> = links
            .iter()
            .copied()
            .filter(|id| l.iter().any(|x| x.id == *id))
            .collect();
        if left_p.is_empty() && left_l.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still in the kernel: programs {left_p:?}, links {left_l:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The runtime's smallest goroutine stack on linux/amd64 (`_StackMin`, `stackMin`), and
/// the guard newstack keeps below a frame (`_StackGuard`, 928 bytes since Go 1.17, more
/// with -race), as the Go sources define them.
pub const STACK_MIN: u64 = 2048;
pub const STACK_GUARD: u64 = 928;

/// The frame of `func` in `bin` (bytes below its entry SP at its deepest, plus the
/// return address), read from the binary's pclntab by gobin, not by the tool.
pub fn frame_size(bin: &std::path::Path, func: &str) -> u64 {
    let data = std::fs::read(bin).expect("read test program");
    let go = gobin::GoBinary::parse(&data).expect("a Go binary");
    let f = go
        .function_by_name(func)
        .expect("the function is in the binary");
    let max = gobin::x86::instructions(&go, &f)
        .expect("decode")
        .iter()
        .filter_map(|i| go.sp_delta(&f, gobin::VirtAddr(i.ip())))
        .max()
        .unwrap_or(0);
    max as u64 + 8
}

/// Depth and expected growths: `recurse` needs (depth + 1) frames plus a little for the
/// goroutine's own function; the depth is chosen so that this sits in the middle of a
/// power of two, where the stack must have doubled exactly `k` times from STACK_MIN.
pub fn depth_for(frame: u64, target: u64) -> (u64, u32) {
    let depth = target * 3 / 4 / frame;
    let need = (depth + 1) * frame + STACK_GUARD;
    let mut k = 0;
    while STACK_MIN << k < need {
        k += 1;
    }
    // The margins both ways are far larger than the goroutine's other frames.
    assert!(
        (STACK_MIN << k) - need > 2048 && need - (STACK_MIN << (k - 1)) > 2048,
        "depth {depth}: too close to a boundary"
    );
    (depth, k)
}

/// `function → flat %` of the top 10 of `go tool pprof -top` on `profile`, with
/// `extra` arguments.
pub fn pprof_top(
    profile: &std::path::Path,
    extra: &[&str],
) -> std::collections::BTreeMap<String, f64> {
    let out = std::process::Command::new(testprogs::newest().goroot().join("bin/go"))
        .args(["tool", "pprof", "-top", "-nodecount=10"])
        .args(extra)
        .arg(profile)
        .output()
        .expect("go tool pprof");
    let text = text(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let share = w.get(1)?.strip_suffix('%')?.parse().ok()?;
            Some((w.get(5..)?.join(" "), share))
        })
        .collect()
}

/// The instructions of `function` as `go tool objdump` lists them: (address, text).
pub fn objdump(tc: &Toolchain, exe: &std::path::Path, function: &str) -> Vec<(u64, String)> {
    let out = std::process::Command::new(tc.goroot().join("bin/go"))
        .args(["tool", "objdump", "-s"])
        .arg(format!("^{}$", function.replace('.', "\\.")))
        .arg(exe)
        .output()
        .expect("go tool objdump");
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l
                .split('\t')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .collect();
            let addr = u64::from_str_radix(w.get(1)?.strip_prefix("0x")?, 16).ok()?;
            Some((addr, w.get(3)?.to_string()))
        })
        .collect()
}
