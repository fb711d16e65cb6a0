//! Probe placement never refuses a pattern because of one function: sites the kernel
//! cannot take (`int3` in `runtime.abort`, a `lock` prefix, AVX, an address inside an
//! instruction) are left out with one warning that names them, on every test
//! program built by every toolchain; what is placed, the kernel takes (the oracle:
//! attaching to a process that maps the binary, where the kernel checks every
//! instruction) and the program runs on unharmed.

mod common;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// Every program under tests/testprogs/.
fn programs() -> Vec<String> {
    let dir = testprogs::repo_root().join("tests/testprogs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/testprogs")
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".go").map(String::from)
        })
        .collect();
    names.sort();
    names
}

const VARIANTS: [Variant; 3] = [Variant::Default, Variant::Stripped, Variant::Pie];

/// A test program started with its stdout and stderr on a pipe that is already full:
/// it runs its start-up and then waits at its first write, alive, whatever its
/// arguments would have made it do, until the test ends it. Its stdin is a pipe
/// nobody writes to, so a program that reads its input waits there instead.
struct Held {
    child: Child,
    pipe: Option<std::io::PipeReader>,
    _input: std::io::PipeWriter,
}

/// Fills the pipe until a write would block, through a second, non-blocking open of
/// its write end (`/proc/self/fd/N` with O_NONBLOCK): full however loaded the machine
/// is, where writing from a thread until it seems stuck is not.
fn fill(writer: &std::io::PipeWriter) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", writer.as_raw_fd()))
        .expect("reopen the pipe's write end");
    loop {
        match out.write(&[b'.'; 512]) {
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // A pipe takes a partial page's worth past the 512-byte writes.
                while out.write(b".").is_ok() {}
                return;
            }
            Err(e) => panic!("filling the pipe: {e}"),
        }
    }
}

impl Held {
    fn start(prog: &Path) -> Held {
        let (reader, writer) = std::io::pipe().expect("pipe");
        fill(&writer);
        let (input, input_writer) = std::io::pipe().expect("pipe");
        let child = Command::new(prog)
            .stdin(input)
            .stdout(writer.try_clone().expect("pipe"))
            .stderr(writer.try_clone().expect("pipe"))
            .spawn()
            .expect("start test program");
        drop(writer);
        std::thread::sleep(Duration::from_millis(100));
        Held {
            child,
            pipe: Some(reader),
            _input: input_writer,
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.pipe.take();
    }
}

/// Where gotap says it is ready.
#[derive(Clone, Copy, PartialEq)]
enum Says {
    Stdout,
    Stderr,
}

/// Runs gotap with `args` until it prints a line with `ready` (on `on`), lets it
/// trace for `linger`, then sends it SIGINT; its whole output. Fails the test if it
/// is not ready within a minute.
fn until_ready_then_interrupt(
    args: &[&str],
    ready: &str,
    on: Says,
    linger: Duration,
) -> std::process::Output {
    let mut tracer = gotap()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gotap");
    let watched: Box<dyn std::io::Read + Send> = match on {
        Says::Stdout => Box::new(tracer.stdout.take().expect("stdout")),
        Says::Stderr => Box::new(tracer.stderr.take().expect("stderr")),
    };
    let (tx, rx) = mpsc::channel();
    let lines = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in std::io::BufReader::new(watched)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => seen = line.contains(ready),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if tracer.try_wait().expect("try_wait").is_some() {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if seen {
        std::thread::sleep(linger);
        let _ = Command::new("kill")
            .args(["-INT", &tracer.id().to_string()])
            .status();
    }
    let (mut out, killed) = wait_output(tracer, Duration::from_secs(30));
    assert!(!killed, "gotap {args:?} did not end");
    let watched = lines.join().unwrap_or_default().join("\n").into_bytes();
    match on {
        Says::Stdout => out.stdout = watched,
        Says::Stderr => out.stderr = watched,
    }
    assert!(
        seen,
        "gotap {args:?} never said {ready:?}:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// The skipped-site warning of gotap's stderr.
fn skipped(stderr: &str) -> Option<&str> {
    stderr.lines().find(|l| l.starts_with("WARNING: skipped "))
}

#[test]
fn funccount_x_runtime_star_succeeds_on_every_program_and_toolchain() {
    for tc in testprogs::toolchains() {
        for variant in VARIANTS {
            for name in programs() {
                let what = format!("go{} {variant} {name}", tc.minor);
                let prog = Private::copy(&testprogs::build(&name, &tc, variant), "fc-runtime");
                let mut target = Held::start(&prog.path);
                assert!(target.alive(), "{what}: the program did not wait");
                let pid = target.child.id().to_string();
                let out = until_ready_then_interrupt(
                    &["funccount", "-x", &pid, "runtime.*"],
                    "Tracing",
                    Says::Stderr,
                    Duration::ZERO,
                );
                let err = text(&out.stderr);
                assert_eq!(out.status.code(), Some(0), "{what}:\n{err}");
                // runtime.abort opens with `int 3`: named, with its offset and why.
                let warning = skipped(&err).unwrap_or_else(|| panic!("{what}: no warning:\n{err}"));
                assert!(
                    warning.contains("runtime.abort+0x0 (") && warning.contains("trap"),
                    "{what}: {warning}"
                );
                // The program waits in a write, so few runtime functions run; the
                // table is there all the same.
                assert!(text(&out.stdout).contains("FUNC"), "{what}: no table");
                assert!(target.alive(), "{what}: the program died");
            }
        }
    }
}

#[test]
fn listing_every_statement_succeeds_on_every_program_and_toolchain() {
    let mut builds = Vec::new();
    for tc in testprogs::toolchains() {
        for variant in VARIANTS {
            for name in programs() {
                let what = format!("go{} {variant} {name}", tc.minor);
                builds.push((what, testprogs::build(&name, &tc, variant)));
            }
        }
    }
    // Two at a time: a listing is one busy thread.
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some((what, exe)) = builds.get(next.fetch_add(1, Ordering::Relaxed)) {
                    check_statement_listing(what, exe);
                }
            });
        }
    });
}

/// `-l` of every statement of `exe` succeeds, lists them as probe points, and names
/// what it left out once.
fn check_statement_listing(what: &str, exe: &Path) {
    let point = format!("process(\"{}\").statement(\"*@*:*\")", exe.display());
    let out = run(gotap().args(["-l", &point]));
    let (stdout, err) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{what}:\n{err}");
    let listed = stdout.lines().count();
    assert!(listed > 5000, "{what}: {listed} statements listed");
    assert!(
        stdout
            .lines()
            .all(|l| l.contains(").statement(\"") && l.ends_with("\")")),
        "{what}: a line is not a probe point"
    );
    // What was left out is said once, with runtime.abort's int 3 in it.
    let warning = skipped(&err).unwrap_or_else(|| panic!("{what}: no warning:\n{err}"));
    assert!(warning.contains("runtime.abort+0x0 ("), "{what}: {warning}");
    assert_eq!(err.lines().filter(|l| l.contains("skipped")).count(), 1);
}

/// Every statement of a program probed at once: the kernel takes every site gotap
/// places (a refused one would fail the one link they share), and the program,
/// traced while it runs, ends with its own output intact.
#[test]
fn every_statement_site_is_taken_and_the_program_runs_on_unharmed() {
    for tc in testprogs::toolchains() {
        for variant in VARIANTS {
            let what = format!("go{} {variant}", tc.minor);
            let prog = Private::copy(&testprogs::build("counts", &tc, variant), "all-stmts");
            // 4 s of rounds: time for a debug build to resolve and place every
            // statement of the program while it runs.
            let target = Command::new(&prog.path)
                .args(["200", "20"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start counts");
            let pid = target.id().to_string();
            let script = "global n; probe process.statement(\"*@*:*\") { n++ } \
                          probe begin { printf(\"attached\\n\") } \
                          probe end { printf(\"hits %d\\n\", n) }";
            let out = until_ready_then_interrupt(
                &["-x", &pid, "-e", script],
                "attached",
                Says::Stdout,
                Duration::from_millis(300),
            );
            let (stdout, err) = (text(&out.stdout), text(&out.stderr));
            assert_eq!(out.status.code(), Some(0), "{what}:\n{err}");
            let hits: u64 = stdout
                .lines()
                .find_map(|l| l.strip_prefix("hits ")?.parse().ok())
                .unwrap_or_else(|| panic!("{what}: no hits line:\n{stdout}\n{err}"));
            assert!(hits > 1000, "{what}: {hits} hits");
            assert!(
                skipped(&err).is_some(),
                "{what}: nothing said skipped:\n{err}"
            );
            let (tout, killed) = wait_output(target, Duration::from_secs(60));
            assert!(
                !killed && tout.status.success(),
                "{what}: the program was harmed: {:?}\n{}",
                tout.status,
                text(&tout.stderr)
            );
            assert!(
                text(&tout.stdout).contains("done 2000"),
                "{what}: the program's output changed:\n{}",
                text(&tout.stdout)
            );
        }
    }
}

/// The kernel is the oracle of which instructions it refuses: one probe at a time on
/// a process that maps the binary, where the kernel checks the instruction at once.
/// What gobin says the kernel refuses (a trap, a `lock` prefix), it refuses; what
/// gobin places, it takes.
#[test]
fn the_kernel_refuses_what_gobin_says_it_refuses() {
    use gobin::x86::{Decoded, Refusal};
    let tc = testprogs::newest();
    let prog = Private::copy(
        &testprogs::build("counts", &tc, Variant::Default),
        "kernel-oracle",
    );
    let data = std::fs::read(&prog.path).unwrap();
    let bin = gobin::GoBinary::parse(&data).unwrap();
    // The first instruction of each kind, and the first few that may be placed.
    let mut trap = None;
    let mut lock = None;
    let mut placeable = Vec::new();
    for f in bin.functions() {
        let Ok(code) = Decoded::of(&bin, &f) else {
            continue;
        };
        for insn in code.instructions() {
            let at = gobin::VirtAddr(insn.ip());
            match code.check(at) {
                Err(Refusal::Trap) => trap = trap.or(Some(at)),
                Err(Refusal::Prefix(0xf0)) => lock = lock.or(Some(at)),
                Ok(()) if placeable.len() < 20 && f.name.starts_with("runtime.") => {
                    placeable.push(at)
                }
                _ => {}
            }
        }
    }
    let mut target = Held::start(&prog.path);
    let fc = codegen::funccount::funccount(1, None).unwrap();
    let object = sys::LoadedObject::load(
        &fc.object,
        sys::LoadOptions {
            attach: sys::AttachKind::UprobeMulti,
            verbose_log: false,
        },
    )
    .unwrap();
    let takes = |addr: gobin::VirtAddr| {
        let off = bin.file_offset(addr).unwrap().0;
        let scope = sys::Scope::Pid(target.child.id());
        sys::UprobeMulti::attach(&object.programs[0], &prog.path, &[off], &[], scope).is_ok()
    };
    for (kind, at) in [("int3/int 3", trap), ("lock", lock)] {
        let at = at.unwrap_or_else(|| panic!("no {kind} instruction in counts"));
        assert!(!takes(at), "the kernel took a probe on {kind} at {at}");
    }
    assert_eq!(placeable.len(), 20);
    for at in placeable {
        assert!(takes(at), "the kernel refused a probe at {at}");
    }
    assert!(target.alive());
}
