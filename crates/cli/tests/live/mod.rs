//! A process a test talks to while it runs (gotap, or a Go program it traces): its
//! stdout and stderr read line by line as they come, its stdin written on demand,
//! signals sent by pid (with the `kill` command, as a user would), and its exit timed
//! from the moment a signal was sent. Killed and reaped if the test ends first.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

pub struct Live {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
    err: Receiver<String>,
    /// Every line read so far.
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    what: String,
}

fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Live {
    /// Starts `cmd` with its three standard streams piped.
    pub fn start(cmd: &mut Command) -> Live {
        let mut what = format!("{cmd:?}");
        if what.len() > 400 {
            let cut = (0..=400)
                .rev()
                .find(|i| what.is_char_boundary(*i))
                .unwrap_or(0);
            what.truncate(cut);
            what.push('…');
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let out = lines(child.stdout.take().expect("stdout"));
        let err = lines(child.stderr.take().expect("stderr"));
        Live {
            stdin: child.stdin.take(),
            child,
            out,
            err,
            stdout: Vec::new(),
            stderr: Vec::new(),
            what,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything read so far, for failure messages.
    pub fn transcript(&mut self) -> String {
        self.collect();
        format!(
            "{}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout.join("\n"),
            self.stderr.join("\n")
        )
    }

    fn collect(&mut self) {
        self.stdout.extend(self.out.try_iter());
        self.stderr.extend(self.err.try_iter());
    }

    /// Waits (at most `limit`) for a line of stdout that contains `needle`, and
    /// returns it.
    pub fn wait_stdout(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_line(true, needle, limit)
    }

    /// The same for stderr.
    pub fn wait_stderr(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_line(false, needle, limit)
    }

    fn wait_line(&mut self, stdout: bool, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let rx = if stdout { &self.out } else { &self.err };
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(line) => {
                    let found = line.contains(needle);
                    if stdout {
                        self.stdout.push(line.clone());
                    } else {
                        self.stderr.push(line.clone());
                    }
                    if found {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    let t = self.transcript();
                    panic!("no line with {needle:?} within {limit:?}: {t}");
                }
            }
        }
    }

    /// Writes `line` and a newline to stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Closes stdin: the program sees its end.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `sig` (`INT`, `TERM`, `KILL`, ...) and returns when it was sent.
    pub fn signal(&self, sig: &str) -> Instant {
        signal(self.pid(), sig)
    }

    /// Waits (at most `limit`) for the process to end; its status and when it ended.
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Instant) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let at = Instant::now();
                // Let the reader threads see the end of the pipes.
                std::thread::sleep(Duration::from_millis(20));
                self.collect();
                return (status, at);
            }
            if Instant::now() >= deadline {
                let t = self.transcript();
                panic!("still running after {limit:?}: {t}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends `sig` and returns how long the process took to end after it, and its
    /// status.
    pub fn time_to_exit(&mut self, sig: &str, limit: Duration) -> (Duration, ExitStatus) {
        let sent = self.signal(sig);
        let (status, ended) = self.wait_exit(limit);
        (ended - sent, status)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `sig` to `pid` with the `kill` command; when it was sent.
pub fn signal(pid: u32, sig: &str) -> Instant {
    let at = Instant::now();
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
    at
}

/// Whether process `pid` is gone: no such process, or a zombie no one reaped yet.
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Waits (at most `limit`) until process `pid` is gone.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    gone(pid)
}
