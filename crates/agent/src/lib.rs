//! `gotap agent`: a long-running tracer for every Go process on a host, containers
//! included, that exports what it measures to Prometheus and OpenTelemetry
//! ([`export`]). The pieces, each usable alone:
//!
//! - [`procfs`] and [`cgroup`]: a process's executable (through `/proc/PID/exe`, in
//!   any mount namespace), cgroup, container id, pod UID, namespaces;
//! - [`binary`]: is it Go (its build info), its key (build id + inode), its probe sites;
//! - [`watch`]: exec and exit as they happen, from two raw-tracepoint programs;
//! - [`config`]: the TOML file, the flags, the selects;
//! - [`probes`]: one multi-uprobe link per distinct binary, counts keyed by process;
//! - [`run`]: the loop that joins them, and its signals.
//!
//! Today the agent exports discovery metrics and `go_function_calls_total{function}`
//! of the selected patterns (`main.*` by default); the tools' and scripts' metrics
//! plug into the same [`export::Registry`] once the session pipeline is unified.
#![forbid(unsafe_code)]

pub mod binary;
pub mod cgroup;
pub mod config;
pub mod probes;
pub mod procfs;
pub mod run;
pub mod watch;

pub use config::{Config, Select};
pub use run::{AgentError, Options, resolve, run};
