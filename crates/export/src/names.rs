//! The metric names gotap exports, in one table: each tool's, the agent's own, and
//! the rule for a script's globals. Names are OpenTelemetry names (dotted, the unit
//! apart); the Prometheus name follows from the name, the unit and the kind by the
//! OpenTelemetry-to-Prometheus rules ([`crate::Desc::prometheus_name`]), so the
//! same series has the same name whether it is scraped from gotap or sent through a
//! Collector's Prometheus exporter. The README's table is this one.

use crate::model::{Desc, Kind};

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Name {
    pub name: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    /// The labels its series carry, besides the resource's.
    pub labels: &'static [&'static str],
    /// Who exports it.
    pub source: &'static str,
    pub help: &'static str,
}

impl Name {
    pub fn desc(&self) -> Desc {
        Desc::new(self.name, self.unit, self.kind, self.help)
    }
}

const fn row(
    name: &'static str,
    unit: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    source: &'static str,
    help: &'static str,
) -> Name {
    Name {
        name,
        unit,
        kind,
        labels,
        source,
        help,
    }
}

pub const FUNCTION_CALLS: Name = row(
    "go.function.calls",
    "{call}",
    Kind::Counter,
    &["function"],
    "funccount",
    "Calls of the Go function, counted in the kernel after its stack-check prologue.",
);
pub const FUNCTION_LATENCY: Name = row(
    "go.function.latency",
    "s",
    Kind::Histogram,
    &["function"],
    "funclatency",
    "Wall time per call of the Go function, per goroutine, from its entry to its RET.",
);
pub const FUNCTION_UNTIMED: Name = row(
    "go.function.untimed_calls",
    "{call}",
    Kind::Counter,
    &["function", "cause"],
    "funclatency",
    "Calls of the Go function that funclatency saw but could not time: cause=\"no_return\" (a panic unwound past it, or runtime.Goexit), \"no_entry\" (it began before tracing), \"unsaved\" (too many calls under way at once).",
);
pub const STACK_GROWTHS: Name = row(
    "go.stack.growths",
    "{growth}",
    Kind::Counter,
    &["function"],
    "stackgrow",
    "Goroutine stack growths, by the function whose frame did not fit.",
);
pub const STACK_COPY: Name = row(
    "go.stack.copy.duration",
    "s",
    Kind::Histogram,
    &[],
    "stackgrow --time",
    "Time spent copying a growing goroutine stack.",
);
pub const GC_CYCLES: Name = row(
    "go.gc.cycles",
    "{cycle}",
    Kind::Counter,
    &[],
    "gcstat",
    "Completed GC cycles (the count GODEBUG=gctrace=1 prints).",
);
pub const GC_PAUSE: Name = row(
    "go.gc.pause",
    "s",
    Kind::Histogram,
    &[],
    "gcstat",
    "Stop-the-world pauses of the garbage collector.",
);
pub const GOROUTINES: Name = row(
    "go.goroutines",
    "{goroutine}",
    Kind::Gauge,
    &[],
    "goroutines",
    "Live goroutines.",
);
pub const GOROUTINES_CREATED: Name = row(
    "go.goroutines.created",
    "{goroutine}",
    Kind::Counter,
    &[],
    "goroutines",
    "Goroutines created since the trace began.",
);
pub const OFFCPU: Name = row(
    "go.offcpu",
    "s",
    Kind::Counter,
    &["reason"],
    "offcpu",
    "Time goroutines spent parked, by the runtime's wait reason.",
);
pub const OFFCPU_WAITS: Name = row(
    "go.offcpu.waits",
    "{wait}",
    Kind::Counter,
    &["reason"],
    "offcpu",
    "Waits of goroutines that ended (parked, then running again), by the runtime's wait reason.",
);
pub const PROCESS_UP: Name = row(
    "gotap.process.up",
    "{process}",
    Kind::Gauge,
    &[],
    "agent",
    "1 for each Go process the agent found and traces.",
);
pub const PROCESS_PROBES: Name = row(
    "gotap.process.probes",
    "{probe}",
    Kind::Gauge,
    &[],
    "agent",
    "Probes armed in the process's executable (shared by every process of it).",
);
pub const PROCESSES_FOUND: Name = row(
    "gotap.agent.processes.found",
    "{process}",
    Kind::Counter,
    &["how"],
    "agent",
    "Go processes found: how=\"scan\" at start or by rescan, how=\"exec\" as they started.",
);
pub const PROCESSES_EXITED: Name = row(
    "gotap.agent.processes.exited",
    "{process}",
    Kind::Counter,
    &[],
    "agent",
    "Traced Go processes that exited.",
);
pub const BINARIES: Name = row(
    "gotap.agent.binaries",
    "{binary}",
    Kind::Gauge,
    &[],
    "agent",
    "Distinct executables (build id and inode) with probes armed.",
);
pub const ARM_DURATION: Name = row(
    "gotap.agent.arm.duration",
    "s",
    Kind::Histogram,
    &[],
    "agent",
    "Time from a process's exec to its probes armed (or found armed).",
);
pub const COUNTS_LOST: Name = row(
    "gotap.agent.counts.lost",
    "{hit}",
    Kind::Counter,
    &[],
    "agent",
    "Probe hits not counted because a binary's count map was full.",
);
pub const SCRIPT_LOSSES: Name = row(
    "gotap.agent.script.losses",
    "{event}",
    Kind::Counter,
    &["cause"],
    "agent",
    "What a script's probes could not keep, by cause: events the ring buffer had no room for (lost_events), reads of the target's memory that failed (read_faults), updates of a full array (map_full), returns with no entry values (entry_missed).",
);
pub const DROPPED_BATCHES: Name = row(
    "gotap.export.dropped.batches",
    "{batch}",
    Kind::Counter,
    &["signal"],
    "agent",
    "OTLP batches dropped because the collector was down or slow and the queue was full.",
);
pub const FAILED_REQUESTS: Name = row(
    "gotap.export.failed.requests",
    "{request}",
    Kind::Counter,
    &["signal"],
    "agent",
    "OTLP requests that failed and were retried.",
);
pub const DROPPED_LOGS: Name = row(
    "gotap.export.dropped.logs",
    "{log_record}",
    Kind::Counter,
    &[],
    "agent, --otlp",
    "Printed events not sent as OTLP logs because too many were waiting for a slow collector.",
);
pub const SERIES_OVERFLOW: Name = row(
    "gotap.export.series.overflow",
    "{series}",
    Kind::Gauge,
    &["metric"],
    "agent",
    "Series of the metric summed into its overflow series because it reached its series limit.",
);

/// Every name in the table, for the documentation and its test.
pub const ALL: &[Name] = &[
    FUNCTION_CALLS,
    FUNCTION_LATENCY,
    FUNCTION_UNTIMED,
    STACK_GROWTHS,
    STACK_COPY,
    GC_CYCLES,
    GC_PAUSE,
    GOROUTINES,
    GOROUTINES_CREATED,
    OFFCPU,
    OFFCPU_WAITS,
    PROCESS_UP,
    PROCESS_PROBES,
    PROCESSES_FOUND,
    PROCESSES_EXITED,
    BINARIES,
    ARM_DURATION,
    COUNTS_LOST,
    SCRIPT_LOSSES,
    DROPPED_BATCHES,
    FAILED_REQUESTS,
    DROPPED_LOGS,
    SERIES_OVERFLOW,
];

pub(crate) fn series_overflow() -> Desc {
    SERIES_OVERFLOW.desc()
}

/// What a script's global becomes: `gotap.script.NAME`, a counter for a scalar or
/// array of numbers that only `++`/`+=` touch, a gauge for any other number, and a
/// histogram for a statistics aggregate. An array's keys are the labels `key` (one
/// key) or `key1`, `key2`, … (several).
pub fn script_global(global: &str, kind: Kind) -> Desc {
    Desc::new(
        &format!("gotap.script.{global}"),
        "",
        kind,
        &format!("The script's global {global}."),
    )
}

/// The label names of an array global with `arity` keys.
pub fn script_key_labels(arity: usize) -> Vec<String> {
    match arity {
        1 => vec!["key".to_string()],
        n => (1..=n).map(|i| format!("key{i}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_names_come_out_in_prometheus() {
        let prom = |n: &Name| n.desc().prometheus_name();
        assert_eq!(prom(&FUNCTION_CALLS), "go_function_calls_total");
        assert_eq!(prom(&FUNCTION_LATENCY), "go_function_latency_seconds");
        assert_eq!(prom(&STACK_GROWTHS), "go_stack_growths_total");
        assert_eq!(prom(&GC_CYCLES), "go_gc_cycles_total");
        assert_eq!(prom(&GC_PAUSE), "go_gc_pause_seconds");
        assert_eq!(prom(&GOROUTINES), "go_goroutines");
        assert_eq!(prom(&OFFCPU), "go_offcpu_seconds_total");
        assert_eq!(prom(&FUNCTION_UNTIMED), "go_function_untimed_calls_total");
        assert_eq!(prom(&OFFCPU_WAITS), "go_offcpu_waits_total");
        assert_eq!(prom(&PROCESS_UP), "gotap_process_up");
    }

    #[test]
    fn names_are_unique_and_documented() {
        let mut seen = std::collections::HashSet::new();
        for n in ALL {
            assert!(seen.insert(n.name), "{} twice", n.name);
            assert!(n.help.ends_with('.'), "{}: help is a sentence", n.name);
        }
        let readme = include_str!("../README.md");
        for n in ALL {
            let prom = n.desc().prometheus_name();
            assert!(
                readme.contains(&format!("`{prom}`")),
                "README lacks `{prom}`"
            );
        }
    }

    #[test]
    fn script_globals_are_named_and_keyed() {
        let d = script_global("hits", Kind::Counter);
        assert_eq!(d.prometheus_name(), "gotap_script_hits_total");
        assert_eq!(script_key_labels(1), ["key"]);
        assert_eq!(script_key_labels(2), ["key1", "key2"]);
    }
}
