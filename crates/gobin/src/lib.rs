//! Reads Go executables without running them: the ELF container, the build info that
//! names the Go version, `.gopclntab` (functions, pc → file:line, SP deltas, inlined
//! frames; it survives stripping), DWARF when present (types, variables, locations,
//! line tables), the Go runtime's struct layouts, and the x86-64 machine code that
//! decides where a probe may sit.
//!
//! Everything borrows the bytes of the executable, which the caller maps; nothing here
//! does I/O beyond what the caller hands in. One [`GoBinary`] is built per executable
//! and its indexes are built lazily, on the first query that needs them.
#![forbid(unsafe_code)]

pub mod addr;
pub mod dwarf;
pub mod layout;

pub use addr::{FileOffset, VirtAddr};
