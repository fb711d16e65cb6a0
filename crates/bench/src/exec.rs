//! Running the tracers and the workloads: a command with a time limit, its output
//! captured line by line with the moment each line arrived, so that "time until the
//! traced program printed its first line" and "time until the tracer exited" come
//! from one run. A command that outlives its limit is killed by its process id.

use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What one run of a command left behind.
#[derive(Debug)]
pub struct Finished {
    /// Stdout lines with the time since the start at which each was read.
    pub lines: Vec<(Duration, String)>,
    pub stderr: String,
    pub status: ExitStatus,
    /// From spawn to exit.
    pub wall: Duration,
    /// Wall-clock time just before spawning, in Unix nanoseconds.
    pub started_unix_ns: u128,
}

impl Finished {
    /// The time at which the first stdout line starting with `prefix` arrived.
    pub fn line_at(&self, prefix: &str) -> Option<Duration> {
        self.lines
            .iter()
            .find(|(_, l)| l.starts_with(prefix))
            .map(|(t, _)| *t)
    }

    /// The first stdout line starting with `prefix`.
    pub fn line(&self, prefix: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(_, l)| l.starts_with(prefix))
            .map(|(_, l)| l.as_str())
    }

    /// The number after `word` in the first line (stdout, then stderr) that has it:
    /// `number_after("ns/call")` on `calls 1000 ns/call 5.3` is 5.3.
    pub fn number_after(&self, word: &str) -> Option<f64> {
        let all = self
            .lines
            .iter()
            .map(|(_, l)| l.as_str())
            .chain(self.stderr.lines());
        all.filter_map(|l| number_after(l, word)).next()
    }
}

/// The number that follows `word` (separated by blanks) in `line`.
pub fn number_after(line: &str, word: &str) -> Option<f64> {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == word {
            return it
                .next()
                .and_then(|n| n.trim_end_matches(['.', ',', ':']).parse().ok());
        }
    }
    None
}

/// A short form of a command for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.len() > 60 {
            s.push_str(&a[..a.char_indices().nth(57).map_or(a.len(), |(i, _)| i)]);
            s.push_str("...");
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` to its end (or kills it after `limit`), reading its output as it comes.
/// A non-zero exit is an error that carries the end of stderr.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<Finished> {
    let f = run_any(cmd, limit)?;
    if !f.status.success() {
        let tail: Vec<&str> = f.stderr.lines().filter(|l| !is_bpftrace_noise(l)).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
        return Err(Error::Failed {
            command: describe(cmd),
            detail: format!("{}: {tail}", f.status),
        });
    }
    Ok(f)
}

/// As [`run`], but a non-zero exit is returned, not an error.
pub fn run_any(cmd: &mut Command, limit: Duration) -> Result<Finished> {
    let command = describe(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().map(|o| {
        std::thread::spawn(move || {
            for line in BufReader::new(o).lines() {
                let Ok(line) = line else { break };
                if tx.send((start.elapsed(), line)).is_err() {
                    break;
                }
            }
        })
    });
    let err = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = e.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
    let status = wait_limited(&mut child, start, limit, &command)?;
    let wall = start.elapsed();
    if let Some(t) = out {
        let _ = t.join();
    }
    let lines: Vec<(Duration, String)> = rx.try_iter().collect();
    let stderr = err.and_then(|t| t.join().ok()).unwrap_or_default();
    Ok(Finished {
        lines,
        stderr,
        status,
        wall,
        started_unix_ns,
    })
}

fn wait_limited(
    child: &mut Child,
    start: Instant,
    limit: Duration,
    command: &str,
) -> Result<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Ok(s),
            Ok(None) => {}
            Err(source) => {
                return Err(Error::Spawn {
                    command: command.to_string(),
                    source,
                });
            }
        }
        if start.elapsed() > limit {
            // Child::kill sends SIGKILL to this child's pid only.
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout {
                command: command.to_string(),
                secs: limit.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// What [`interrupt_when`] saw.
#[derive(Debug)]
pub struct Interrupted {
    /// From spawn to the marker line.
    pub ready: Duration,
    /// From SIGINT to exit.
    pub exit: Duration,
    /// Stdout and stderr, interleaved as they came.
    pub text: String,
}

/// Starts `cmd`, waits for a line (stdout or stderr) containing `marker`, sends it
/// SIGINT (with kill(1), by its pid) and times its exit: how long a tracer takes to
/// arm its probes and to detach them when asked to stop.
pub fn interrupt_when(cmd: &mut Command, marker: &str, limit: Duration) -> Result<Interrupted> {
    while_armed(cmd, marker, limit, || Ok(())).map(|(_, i)| i)
}

/// As [`interrupt_when`], with `during` run between the marker and the SIGINT: a
/// tracer watching a binary while something else runs it.
pub fn while_armed<T>(
    cmd: &mut Command,
    marker: &str,
    limit: Duration,
    during: impl FnOnce() -> Result<T>,
) -> Result<(T, Interrupted)> {
    armed_then_interrupted(cmd, false, marker, limit, during)
}

/// As [`while_armed`], for a tracer started under a wrapper such as
/// `/usr/bin/time` (which ignores SIGINT while it waits): the command runs in a
/// process group of its own, and the SIGINT goes to the whole group.
pub fn while_armed_wrapped<T>(
    cmd: &mut Command,
    marker: &str,
    limit: Duration,
    during: impl FnOnce() -> Result<T>,
) -> Result<(T, Interrupted)> {
    armed_then_interrupted(cmd, true, marker, limit, during)
}

fn armed_then_interrupted<T>(
    cmd: &mut Command,
    group: bool,
    marker: &str,
    limit: Duration,
    during: impl FnOnce() -> Result<T>,
) -> Result<(T, Interrupted)> {
    use std::os::unix::process::CommandExt;
    let command = describe(cmd);
    if group {
        cmd.process_group(0);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    let out: Option<Box<dyn Read + Send>> = child
        .stdout
        .take()
        .map(|o| Box::new(o) as Box<dyn Read + Send>);
    let err: Option<Box<dyn Read + Send>> = child
        .stderr
        .take()
        .map(|e| Box::new(e) as Box<dyn Read + Send>);
    for r in [out, err].into_iter().flatten() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut text = String::new();
    let ready = loop {
        let left = limit.saturating_sub(start.elapsed());
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(l) => {
                let hit = l.contains(marker);
                text.push_str(&l);
                text.push('\n');
                if hit {
                    break start.elapsed();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) if start.elapsed() < limit => {
                if let Ok(Some(st)) = child.try_wait() {
                    return Err(Error::Failed {
                        command,
                        detail: format!("{st} before `{marker}`: {}", text.trim_end()),
                    });
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                for l in rx.try_iter() {
                    text.push_str(&l);
                    text.push('\n');
                }
                let said: Vec<&str> = text.lines().filter(|l| !is_bpftrace_noise(l)).collect();
                return Err(Error::Failed {
                    command,
                    detail: format!("no `{marker}`: {}", said.join(" / ")),
                });
            }
        }
    };
    let got = during();
    let t = Instant::now();
    let pid = if group {
        format!("-{}", child.id())
    } else {
        child.id().to_string()
    };
    let sent = Command::new("kill").args(["-INT", "--", &pid]).status();
    if !sent.is_ok_and(|s| s.success()) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Failed {
            command,
            detail: "kill -INT failed".into(),
        });
    }
    wait_limited(&mut child, t, limit, &command)?;
    let exit = t.elapsed();
    for r in readers {
        let _ = r.join();
    }
    for l in rx.try_iter() {
        text.push_str(&l);
        text.push('\n');
    }
    Ok((got?, Interrupted { ready, exit, text }))
}

/// Lines bpftrace 0.17 prints on this machine that say nothing about the measurement:
/// it cannot raise RLIMIT_MEMLOCK (not needed on this kernel) and, at exit, looks for
/// the legacy tracefs file of probes it did not create there.
pub fn is_bpftrace_noise(line: &str) -> bool {
    line.contains("RLIMIT_MEMLOCK")
        || line.contains("uprobe_events")
        || line.contains("failed to detach probe")
}

/// The events a tracer says it lost: gotap's `WARNING: N events lost`, bpftrace's
/// `Lost N events`. Zero when neither says so.
pub fn lost_events(stderr_and_stdout: &str) -> f64 {
    let mut lost = 0.0;
    for l in stderr_and_stdout.lines() {
        if let Some(n) = number_after(l, "WARNING:").filter(|_| l.contains("events lost")) {
            lost += n;
        } else if let Some(n) = number_after(l, "Lost").filter(|_| l.contains("events")) {
            lost += n;
        }
    }
    lost
}

/// Milliseconds in a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_after_words() {
        assert_eq!(number_after("calls 1000 ns/call 5.3", "ns/call"), Some(5.3));
        assert_eq!(
            number_after("attached 5006 probes in 14.3 ms", "in"),
            Some(14.3)
        );
        assert_eq!(number_after("calls 1000", "ns/call"), None);
    }

    #[test]
    fn loss_as_each_tool_reports_it() {
        assert_eq!(
            lost_events("WARNING: 7305 events lost: the ring buffer was full"),
            7305.0
        );
        assert_eq!(lost_events("Attaching 1 probe...\nLost 12 events\n"), 12.0);
        assert_eq!(lost_events("calls 10 ns/call 3"), 0.0);
    }
}
