//! The one door to the kernel, and the only crate with `unsafe`: `bpf(2)` (maps,
//! program loads, links), `perf_event_open` on the uprobe PMU, ring buffer consumption,
//! feature probing, and read-only file maps. Everything here needs root, or CAP_BPF
//! with CAP_PERFMON.
