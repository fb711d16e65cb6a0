//! Errors from the kernel, each naming the call that failed. A refusal for lack of
//! privilege is its own variant, so the CLI can tell the user what to do.

use std::io;
use std::path::PathBuf;

/// A system call that failed, and how.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed: {source}")]
pub struct SyscallError {
    pub call: &'static str,
    #[source]
    pub source: io::Error,
}

/// The verifier refused a program; `log` is what it said (the end of it, if it said
/// more than gotap kept).
#[derive(Debug, thiserror::Error)]
#[error("the kernel verifier rejected program {name} ({source}):\n{log}")]
pub struct VerifierError {
    pub name: String,
    #[source]
    pub source: io::Error,
    pub log: String,
}

/// Everything that can go wrong in `sys`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `EPERM` from the kernel.
    #[error("gotap needs root, or CAP_BPF and CAP_PERFMON ({call} was not permitted)")]
    NotPermitted { call: &'static str },
    #[error(transparent)]
    Syscall(#[from] SyscallError),
    /// A uprobe could not be placed (a missing file, an offset past its end, ...).
    #[error("cannot place a uprobe at {}+{offset:#x}: {source}", path.display())]
    Attach {
        path: PathBuf,
        offset: u64,
        #[source]
        source: SyscallError,
    },
    #[error(transparent)]
    Verifier(#[from] VerifierError),
    #[error(transparent)]
    Reloc(#[from] bpf::RelocError),
    /// A file gotap reads to learn about the system.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot parse {text:?}", path.display())]
    Parse { path: PathBuf, text: String },
    /// A request gotap refuses before asking the kernel (a key of the wrong size, a
    /// path with a NUL byte, ...).
    #[error("{0}")]
    Invalid(String),
    /// The command of `-c` could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// A feature the running kernel lacks.
    #[error("{feature} is not supported by this kernel (needs Linux {needs})")]
    Unsupported {
        feature: &'static str,
        needs: &'static str,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error for `call` failing with `source`.
    pub(crate) fn syscall(call: &'static str, source: io::Error) -> Error {
        if source.raw_os_error() == Some(libc::EPERM) {
            Error::NotPermitted { call }
        } else {
            Error::Syscall(SyscallError { call, source })
        }
    }

    /// The error for placing a uprobe at `path`+`offset` failing in `call`; a
    /// refusal for lack of privilege (`EPERM`, or `EACCES` from `perf_event_open`)
    /// stays [`Error::NotPermitted`].
    pub(crate) fn attach(
        call: &'static str,
        path: &std::path::Path,
        offset: u64,
        source: io::Error,
    ) -> Error {
        let errno = source.raw_os_error();
        if errno == Some(libc::EPERM)
            || (errno == Some(libc::EACCES) && call.starts_with("perf_event_open"))
        {
            return Error::NotPermitted { call };
        }
        Error::Attach {
            path: path.into(),
            offset,
            source: SyscallError { call, source },
        }
    }

    /// The `errno` behind this error, if it came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::NotPermitted { .. } => Some(libc::EPERM),
            Error::Syscall(e) | Error::Attach { source: e, .. } => e.source.raw_os_error(),
            Error::Verifier(e) => e.source.raw_os_error(),
            _ => None,
        }
    }
}
