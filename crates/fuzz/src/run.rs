//! Running inputs: the child side ([`child`]) runs a range of inputs and says the
//! number of each before it runs it; the parent ([`supervise`]) watches it, bounds
//! each input's time and the child's memory, and when the child dies or is killed,
//! makes the input again from its number, saves it as edits, and goes on with the
//! next one in a new child.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::corpus;
use crate::mutate::{Input, Seed};
use crate::targets::Target;

/// The bounds and length of a run.
#[derive(Clone, Debug)]
pub struct Options {
    pub iterations: u64,
    pub seed: u64,
    /// The most one input may take.
    pub time_limit: Duration,
    /// The most resident memory the child may hold, in bytes.
    pub memory_limit: u64,
    /// Where findings are saved.
    pub findings: PathBuf,
    /// A failure for the child to make at one input (see [`Fault`]), to test the
    /// supervisor itself.
    pub fault: Option<Fault>,
}

/// A failure a child makes on purpose at input `at`: what the supervisor must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Panic(u64),
    Abort(u64),
    /// A loop that does not end.
    Spin(u64),
    /// Memory allocated and touched until the child is stopped.
    Hog(u64),
}

impl Fault {
    /// `panic:N`, `abort:N`, `spin:N` or `hog:N`.
    pub fn parse(s: &str) -> Option<Fault> {
        let (kind, at) = s.split_once(':')?;
        let at = at.parse().ok()?;
        Some(match kind {
            "panic" => Fault::Panic(at),
            "abort" => Fault::Abort(at),
            "spin" => Fault::Spin(at),
            "hog" => Fault::Hog(at),
            _ => return None,
        })
    }

    fn text(self) -> String {
        match self {
            Fault::Panic(n) => format!("panic:{n}"),
            Fault::Abort(n) => format!("abort:{n}"),
            Fault::Spin(n) => format!("spin:{n}"),
            Fault::Hog(n) => format!("hog:{n}"),
        }
    }

    /// Makes the failure if `i` is its input.
    fn strike(self, i: u64) {
        match self {
            Fault::Panic(n) if n == i => panic!("fault injected at input {i}"),
            Fault::Abort(n) if n == i => std::process::abort(),
            Fault::Spin(n) if n == i => loop {
                std::hint::spin_loop();
            },
            Fault::Hog(n) if n == i => {
                let mut held: Vec<Vec<u8>> = Vec::new();
                loop {
                    held.push(vec![1; 64 << 20]);
                    std::hint::black_box(&held);
                }
            }
            _ => {}
        }
    }
}

/// An input that broke a target.
#[derive(Clone, Debug)]
pub struct Finding {
    pub input: u64,
    /// `panic`, `abort`, `stack overflow`, `allocation failure`, `signal N`,
    /// `exit N`, `timeout` or `memory`.
    pub kind: String,
    /// The end of what the child printed.
    pub detail: String,
    /// The saved edits.
    pub saved: PathBuf,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub target: &'static str,
    pub iterations: u64,
    pub elapsed: Duration,
    pub findings: Vec<Finding>,
}

/// The child side: runs inputs `from..to` of the run with `seed`, printing each
/// input's number on stdout before it runs it, and `done` at the end.
pub fn child(target: &Target, seed: u64, from: u64, to: u64, fault: Option<Fault>) {
    let seeds = corpus::seeds(target);
    let mut out = std::io::stdout().lock();
    for i in from..to {
        let _ = writeln!(out, "{i}");
        let _ = out.flush();
        if let Some(f) = fault {
            f.strike(i);
        }
        let bytes = Input::make(&seeds, seed, i).apply(&seeds);
        (target.run)(&bytes);
    }
    let _ = writeln!(out, "done");
    let _ = out.flush();
}

/// Runs the input that `text` (edits of a seed) describes.
pub fn replay(target: &Target, text: &str) -> Result<(), String> {
    let seeds = corpus::seeds(target);
    let input = Input::parse(text, &seeds)?;
    (target.run)(&input.apply(&seeds));
    Ok(())
}

/// Runs `opts.iterations` inputs of `target` in children of `exe` (this crate's
/// `fuzz` binary), each input bounded in time and the child in memory.
pub fn supervise(exe: &Path, target: &'static Target, opts: &Options) -> Report {
    let seeds = corpus::seeds(target);
    let t0 = Instant::now();
    let mut findings = Vec::new();
    let mut next = 0;
    while next < opts.iterations {
        match run_child(exe, target, opts, next) {
            Ok(()) => break,
            Err((input, kind, detail)) => {
                let saved = save(target, &seeds, opts, input, &kind, &detail);
                findings.push(Finding {
                    input,
                    kind,
                    detail,
                    saved,
                });
                next = input + 1;
            }
        }
    }
    Report {
        target: target.name,
        iterations: opts.iterations,
        elapsed: t0.elapsed(),
        findings,
    }
}

/// One child from input `from` to the end; `Err` with the input it was on, the kind
/// of failure and what it printed, if it did not finish.
fn run_child(
    exe: &Path,
    target: &Target,
    opts: &Options,
    from: u64,
) -> Result<(), (u64, String, String)> {
    let mut child = Command::new(exe)
        .args(["--child", target.name])
        .args([opts.seed, from, opts.iterations].map(|n| n.to_string()))
        .args(opts.fault.map(Fault::text))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let err = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        all
    });
    let (mut current, mut started, mut done) = (from, Instant::now(), false);
    let mut killed = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) if line == "done" => done = true,
            Ok(line) => {
                current = line.parse().unwrap_or(current);
                started = Instant::now();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if done {
            continue;
        }
        let over_time = started.elapsed() > opts.time_limit;
        let over_memory = resident(child.id()).is_some_and(|r| r > opts.memory_limit);
        if over_time || over_memory {
            killed = Some(if over_time {
                format!("timeout (over {:?})", opts.time_limit)
            } else {
                format!("memory (over {} MiB resident)", opts.memory_limit >> 20)
            });
            let _ = child.kill();
            break;
        }
    }
    let status = child.wait().expect("reap the child");
    let err = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if done && status.success() {
        return Ok(());
    }
    let kind = killed.unwrap_or_else(|| failure_kind(&status, &err));
    let tail: Vec<&str> = err.lines().rev().take(12).collect();
    let detail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    Err((current, kind, detail))
}

/// What ended a child, from its status and what it printed.
fn failure_kind(status: &std::process::ExitStatus, err: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    if err.contains("has overflowed its stack") {
        "stack overflow".into()
    } else if err.contains("memory allocation of") {
        "allocation failure".into()
    } else if err.contains("panicked at") {
        "panic".into()
    } else if let Some(sig) = status.signal() {
        format!("signal {sig}")
    } else {
        format!("exit {}", status.code().unwrap_or(-1))
    }
}

/// A process's resident memory in bytes, from `/proc/PID/status`.
fn resident(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Saves input `i` as edits, with what it did as comments.
fn save(
    target: &Target,
    seeds: &[Seed],
    opts: &Options,
    i: u64,
    kind: &str,
    detail: &str,
) -> PathBuf {
    let input = Input::make(seeds, opts.seed, i);
    let mut text = format!(
        "# {} input {i} of the run with seed {}: {kind}\n",
        target.name, opts.seed
    );
    for l in detail.lines() {
        text.push_str(&format!("#   {l}\n"));
    }
    text.push_str(&input.to_text(seeds));
    let _ = std::fs::create_dir_all(&opts.findings);
    let path = opts
        .findings
        .join(format!("{}-{}-{i}.edits", target.name, opts.seed));
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("fuzz: saving {}: {e}", path.display());
    }
    path
}
