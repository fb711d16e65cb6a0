//! The one error type of this crate: everything that can be wrong with an executable
//! handed to [`crate::GoBinary`], as data a caller can match on and print.

use crate::VirtAddr;

/// What went wrong while reading a Go executable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not an ELF file at all.
    #[error("not an ELF file")]
    NotElf,
    /// An ELF file of a kind this crate does not read (32-bit, another machine, ...).
    #[error("unsupported ELF file: {what}")]
    Unsupported { what: &'static str },
    /// An ELF file, but not one built by the Go toolchain.
    #[error("not a Go executable: {reason}")]
    NotGo { reason: &'static str },
    /// The file ends before a structure that it announces.
    #[error("truncated executable: {what} runs past the end of its data")]
    Truncated { what: &'static str },
    /// A structure is present but its contents make no sense.
    #[error("corrupt executable: {what}")]
    Corrupt { what: &'static str },
    /// The ELF parser refused the file.
    #[error("malformed ELF: {0}")]
    Elf(String),
    /// An address that no function of the executable contains.
    #[error("no function contains address {0}")]
    NoFunction(VirtAddr),
    /// Machine code that does not decode.
    #[error("undecodable instruction at {0}")]
    BadInstruction(VirtAddr),
}

impl From<object::read::Error> for Error {
    fn from(e: object::read::Error) -> Error {
        Error::Elf(e.to_string())
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
