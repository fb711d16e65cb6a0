//! The one door to the kernel, and the only crate with `unsafe`: `bpf(2)` (maps,
//! program loads, links), `perf_event_open` on the uprobe PMU, ring buffer consumption,
//! feature probing, and read-only file maps. Everything here needs root, or CAP_BPF
//! with CAP_PERFMON. Every system call goes through `syscall::syscall`, which unit
//! tests replace with a fake to check what would be sent. Each item says which Linux
//! it needs; gotap targets 5.15 and newer, multi-uprobe links 6.6.

mod attr;
pub mod clock;
pub mod cpu;
mod error;
mod file;
pub mod handoff;
pub mod inventory;
mod map;
mod perf;
pub mod process;
mod prog;
mod ringbuf;
pub mod service;
mod shared;
pub mod stats;
mod syscall;
mod tracepoint;
mod uprobe;

pub use cpu::possible_cpus;
pub use error::{Error, Result, SyscallError, VerifierError};
pub use file::{Mmap, map_file, map_open, release_pages};
pub use map::{Map, UpdateFlags};
pub use perf::CpuClock;
pub use process::{
    HeldChild, Signals, exit_code, spawn_held, trace_begins, trace_ends, wait_readable,
};
pub use prog::{AttachKind, LoadOptions, LoadedObject, LoadedProgram};
pub use ringbuf::RingBuf;
pub use service::{ServiceSignal, ServiceSignals};
pub use shared::Shared;
pub use tracepoint::RawTracepoint;
pub use uprobe::{Scope, Uprobe, UprobeMulti, uprobe_multi_supported, uprobe_pmu_type};
