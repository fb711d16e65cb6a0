//! The kernel's run-time statistics of BPF programs: while a descriptor from
//! `bpf(BPF_ENABLE_STATS, BPF_STATS_RUN_TIME)` is open (Linux 5.8), the kernel times
//! every run of every program, and a program's `run_time_ns` and `run_cnt` (as
//! `/proc/PID/fdinfo` shows them) say what it cost. The timing itself costs two
//! clock reads a run, so it is on only while asked for.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::LoadedProgram;
use crate::attr::{BpfAttr, EnableStats, cmd};
use crate::error::{Error, Result};
use crate::syscall::{Call, owned_fd, syscall};

/// Run-time statistics on while this lives.
pub struct RunTimeStats {
    _fd: OwnedFd,
}

impl RunTimeStats {
    /// Turns the kernel's timing of BPF programs on.
    pub fn enable() -> Result<RunTimeStats> {
        let mut attr = BpfAttr::enable_stats(EnableStats { stats_type: 0 });
        let fd = syscall(Call::Bpf {
            cmd: cmd::ENABLE_STATS,
            attr: &mut attr,
        })
        .map_err(|e| Error::syscall("bpf(BPF_ENABLE_STATS)", e))?;
        let fd = owned_fd(fd).map_err(|e| Error::syscall("bpf(BPF_ENABLE_STATS)", e))?;
        Ok(RunTimeStats { _fd: fd })
    }
}

/// A program's runs and their time in nanoseconds so far (0 and 0 while the
/// statistics were off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Runs {
    pub count: u64,
    pub ns: u64,
}

/// The runs of `prog`, from `/proc/self/fdinfo` of its descriptor.
pub fn runs(prog: &LoadedProgram) -> Result<Runs> {
    let path = format!("/proc/self/fdinfo/{}", prog.as_fd().as_raw_fd());
    let text = std::fs::read_to_string(&path).map_err(|source| Error::File {
        path: path.clone().into(),
        source,
    })?;
    Ok(parse(&text))
}

fn parse(fdinfo: &str) -> Runs {
    let field = |name: &str| {
        fdinfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    Runs {
        count: field("run_cnt:"),
        ns: field("run_time_ns:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_fields_are_read() {
        let t = "pos:\t0\nflags:\t02000002\nprog_type:\t7\nrun_time_ns:\t123456\nrun_cnt:\t42\nverified_insns:\t9\n";
        assert_eq!(
            parse(t),
            Runs {
                count: 42,
                ns: 123456
            }
        );
    }
}
