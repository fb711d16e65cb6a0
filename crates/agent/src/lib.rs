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
//! - [`work`]: what a select runs besides funccount (a tool, a script), armed by the
//!   CLI's pipeline through a [`Runner`].
//!
//! The agent exports discovery metrics, `go_function_calls_total{function}` of the
//! selected patterns (`main.*` by default), and the metrics of each select's tool
//! (`funclatency`, `stackgrow`, `gcstat`, `goroutines`, `offcpu`: their names are in
//! [`config`]'s documentation) or script, all in one [`export::Registry`].
#![forbid(unsafe_code)]

pub mod binary;
pub mod cgroup;
pub mod config;
pub mod probes;
pub mod procfs;
pub mod run;
pub mod watch;
pub mod work;

pub use config::{Config, Select};
pub use run::{AgentError, Options, resolve, run};
pub use work::{Job, Member, Runner, Work, bias_member};
