//! What can go wrong while benchmarking: a command that cannot start, fails or
//! prints something we cannot read, a file that cannot be read or written. A failed
//! measurement is recorded in the table rather than ending the run, so these errors
//! carry enough context to be printed in a table cell.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("run {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command}: {detail}")]
    Failed { command: String, detail: String },
    #[error("{command}: timed out after {secs} s")]
    Timeout { command: String, secs: u64 },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

pub type Result<T> = std::result::Result<T, Error>;
