//! Fuzzing that needs no nightly toolchain and gives the same inputs on every run:
//! a seeded mutation driver ([`mutate`]) over a committed corpus ([`corpus`]), run
//! under a supervisor ([`run`]) that bounds each input's time and memory, and the
//! targets ([`targets`]) that feed the inputs through the readers a user's trace
//! goes through, and the script front end ([`script`]).
//!
//! An input is a corpus seed and a short list of edits (bytes written, a cut), made
//! from the run's seed and the input's number alone, so input 48,213 of a run can be
//! made again anywhere, and a finding is saved as its edits (a few lines of text),
//! not as a copy of a 2 MB binary. Edits are aimed where they do the most harm:
//! each target names the fields of the structures it reads (ELF headers, the
//! `.gopclntab` header and function records, compression headers, unit headers), and
//! half of the edits land there; the rest flip bits, cut, splice and zero anywhere.
//!
//! The inputs run in a child process, so that a panic, an abort, a stack overflow, a
//! hang or a runaway allocation is seen, named and saved by the parent, which then
//! goes on from the next input: a stated size must not allocate gigabytes, a loop
//! must not spin.
//!
//! Another crate's target plugs in as one more row of [`targets::TARGETS`] (a
//! [`targets::Target`]: its name, its corpus folder, how a corpus file becomes seeds,
//! which fields to aim at, and the function that runs one input), with its crate as
//! a dependency of this one.
#![forbid(unsafe_code)]

pub mod corpus;
pub mod mutate;
pub mod run;
pub mod script;
pub mod targets;

pub use targets::{TARGETS, Target};
