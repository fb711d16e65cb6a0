//! What gotap measures, exported to the engines that already exist: Prometheus
//! scrapes `/metrics` ([`prometheus`]), an OpenTelemetry Collector takes OTLP/HTTP
//! pushes ([`otlp`], [`push`]), and a profiling tool's profile as OTLP's profiles
//! signal ([`profiles`]). No storage, query or dashboard of gotap's own.
//!
//! The [`model`] is the one place both read: families of counters, gauges and
//! histograms with labelled series per [`resource`] (a traced process, described by
//! the OpenTelemetry semantic conventions, or the agent), bounded by a series limit
//! per family. [`stats`] turns the language's statistics aggregates (`@hist_log`,
//! `@hist_linear`, `@count/@sum/@min/@max`) into exported histograms bucket for
//! bucket; [`script`] exports every global of a script. [`names`] is the table of
//! every metric name gotap exports, which the README repeats:
//!
//! | OpenTelemetry name | Prometheus name | kind | labels | from |
//! |---|---|---|---|---|
//! | `go.function.calls` | `go_function_calls_total` | counter | `function` | funccount |
//! | `go.function.latency` | `go_function_latency_seconds` | histogram | `function` | funclatency |
//! | `go.function.untimed_calls` | `go_function_untimed_calls_total` | counter | `function`, `cause` | funclatency |
//! | `go.stack.growths` | `go_stack_growths_total` | counter | `function` | stackgrow |
//! | `go.stack.copy.duration` | `go_stack_copy_duration_seconds` | histogram | | stackgrow --time |
//! | `go.gc.cycles` | `go_gc_cycles_total` | counter | | gcstat |
//! | `go.gc.pause` | `go_gc_pause_seconds` | histogram | | gcstat |
//! | `go.goroutines` | `go_goroutines` | gauge | | goroutines |
//! | `go.goroutines.created` | `go_goroutines_created_total` | counter | | goroutines |
//! | `go.offcpu` | `go_offcpu_seconds_total` | counter | `reason` | offcpu |
//! | `go.offcpu.waits` | `go_offcpu_waits_total` | counter | `reason` | offcpu |
//! | `gotap.script.NAME` | `gotap_script_NAME[_total]` | any | `key` or `key1…` | a script's global ([`script`]) |
//! | `gotap.script.NAME.avg` | `gotap_script_NAME_avg` | gauge | as `NAME` | `@avg` of a statistic |
//! | `gotap.process.up` | `gotap_process_up` | gauge | | agent |
//! | `gotap.process.probes` | `gotap_process_probes` | gauge | | agent |
//! | `gotap.agent.processes.found` | `gotap_agent_processes_found_total` | counter | `how` | agent |
//! | `gotap.agent.processes.exited` | `gotap_agent_processes_exited_total` | counter | | agent |
//! | `gotap.agent.binaries` | `gotap_agent_binaries` | gauge | | agent |
//! | `gotap.agent.arm.duration` | `gotap_agent_arm_duration_seconds` | histogram | | agent |
//! | `gotap.agent.counts.lost` | `gotap_agent_counts_lost_total` | counter | | agent |
//! | `gotap.export.dropped.batches` | `gotap_export_dropped_batches_total` | counter | `signal` | agent |
//! | `gotap.export.failed.requests` | `gotap_export_failed_requests_total` | counter | `signal` | agent |
//! | `gotap.export.dropped.logs` | `gotap_export_dropped_logs_total` | counter | | agent, `--otlp` |
//! | `gotap.export.series.overflow` | `gotap_export_series_overflow` | gauge | `metric` | agent |
#![forbid(unsafe_code)]

pub mod model;
pub mod names;
pub mod otlp;
pub mod profiles;
pub mod prometheus;
pub mod push;
pub mod resource;
pub mod script;
pub mod stats;

pub use model::{
    AGENT, Desc, FamilyId, Histogram, Kind, Labels, ModelError, Registry, ResourceId, Snapshot,
    Value,
};
pub use otlp::{LogEvent, OtlpConfig};
pub use resource::{AttrValue, ProcessFacts, Resource, ResourceEnv};
