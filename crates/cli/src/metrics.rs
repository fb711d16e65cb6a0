//! `--prometheus ADDR` and `--otlp URL` for the one-shot commands (a script, and the
//! tools): what the trace measures, exported while it runs and once more at its end,
//! through the `export` crate as the agent exports. The owner of the trace puts its
//! values into [`Exporter::registry`] whenever [`Exporter::due`] says so (a script's
//! globals through [`ScriptExport`], a tool's tables through its consumer); the
//! Prometheus server answers scrapes from that registry and the OTLP sender pushes
//! it every `OTEL_METRIC_EXPORT_INTERVAL`. With `--otlp`, every line a script prints
//! is also an OTLP log record.
//!
//! The values are read every second, or every `OTEL_METRIC_EXPORT_INTERVAL` if that
//! is shorter. At the end of the trace the last values are read and pushed within a
//! bound (30 ms after a signal, so that Ctrl-C still ends gotap at once; otherwise
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, at most 1 s); what could not be sent is said.

use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use export::push::Pusher;
use export::{LogEvent, OtlpConfig, ProcessFacts, Registry, ResourceEnv, ResourceId};

use crate::binary::Binary;
use crate::session::End;

/// The flags, shared by the script and every tool.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportFlags {
    /// Serve the trace's metrics on ADDR (host:port, or :port) at /metrics while it
    /// runs, for Prometheus
    #[arg(long, value_name = "ADDR")]
    pub prometheus: Option<String>,
    /// Push the trace's metrics (and a script's printed lines, as logs) by OTLP/HTTP
    /// to URL while it runs and at its end; `profile` sends its profile at the end
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
}

/// Series per metric for the one-shot commands (the agent's default too).
const SERIES_LIMIT: usize = 2000;
/// How often values are read when `OTEL_METRIC_EXPORT_INTERVAL` asks no more often.
const READ_EVERY: Duration = Duration::from_secs(1);
/// The final push's bound after a signal, at most; it ends by [`SIGNAL_END`] after
/// the signal in any case.
const SIGNAL_DEADLINE: Duration = Duration::from_millis(30);
/// The final push's bound otherwise, at most.
const END_DEADLINE: Duration = Duration::from_secs(1);
/// When, after the signal that ended a trace, the final push (a profile's too) has
/// given up and its sender has answered: gotap ends within 100 ms of the signal.
const SIGNAL_END: Duration = Duration::from_millis(88);

/// The final push's bound for a trace that ended as `end` said, `timeout` the
/// exporter's own. After a signal, what is left of the window until [`SIGNAL_END`]
/// (less the sender's time to answer, `export::push::answer_time`), at most
/// [`SIGNAL_DEADLINE`]: the probes' release may have used most of it.
fn final_deadline(end: Option<End>, timeout: Duration) -> Duration {
    match end {
        Some(End::Signal) => {
            let left =
                crate::session::since_signal().map_or(SIGNAL_END, |t| SIGNAL_END.saturating_sub(t));
            let answer = export::push::answer_time(SIGNAL_DEADLINE);
            SIGNAL_DEADLINE.min(left.saturating_sub(answer))
        }
        _ => timeout.min(END_DEADLINE),
    }
}

/// The exporters of one trace.
pub struct Exporter {
    registry: Arc<Registry>,
    /// The traced process's resource (or gotap's, for a script with no binary).
    pub resource: ResourceId,
    server: Option<export::prometheus::Server>,
    pusher: Option<(Pusher, OtlpConfig)>,
    every: Duration,
    next: Instant,
}

impl Exporter {
    /// Starts the exporters the flags ask for, or `None` if they ask for none. `bin`
    /// and `pid` describe what is traced (its resource attributes).
    pub fn start(
        flags: &ExportFlags,
        bin: Option<&Binary>,
        pid: Option<u32>,
    ) -> Result<Option<Exporter>> {
        if flags.prometheus.is_none() && flags.otlp.is_none() {
            return Ok(None);
        }
        let var = |k: &str| std::env::var(k).ok();
        // Only the flag makes a one-shot command push; the variables tune it.
        let otlp = match &flags.otlp {
            Some(url) => OtlpConfig::resolve(Some(url), var)?,
            None => None,
        };
        let registry = Arc::new(Registry::new(SERIES_LIMIT));
        let resource = ResourceId(1);
        registry.set_resource(resource, traced_resource(bin, pid)?);
        let server = match &flags.prometheus {
            Some(addr) => Some(export::prometheus::Server::start(addr, registry.clone())?),
            None => None,
        };
        let every = otlp
            .as_ref()
            .map_or(READ_EVERY, |c| c.interval.min(READ_EVERY));
        let pusher = match otlp {
            Some(c) => Some((
                Pusher::start(c.clone(), registry.clone()).context("the OTLP sender")?,
                c,
            )),
            None => None,
        };
        Ok(Some(Exporter {
            registry,
            resource,
            server,
            pusher,
            every,
            next: Instant::now(),
        }))
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether the values are to be read now (then not again for an interval).
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.every;
        true
    }

    /// Where printed events go as OTLP logs, with `--otlp`; `compiled` names the
    /// probe of each event and where its records hold their goroutine id, `script`
    /// the points of its user-space probes.
    pub fn logs(&self, compiled: &codegen::Compiled, script: &lang::ast::Script) -> Option<Logs> {
        self.pusher
            .as_ref()
            .map(|(p, _)| Logs::new(p.logger(), self.resource, compiled, script))
    }

    /// Pushes the last values (read by the caller just before) within the bound for
    /// how the trace ended, says what was not sent, and stops the server.
    pub fn finish(&mut self, end: Option<End>) {
        if let Some((p, c)) = self.pusher.take() {
            let deadline = final_deadline(end, c.timeout);
            let r = p.shutdown(deadline);
            if r.unsent_at_exit > 0 || r.dropped > 0 || r.dropped_logs > 0 {
                eprintln!(
                    "WARNING: OTLP to {}: {} batches not sent within {} ms at the end, {} dropped, {} printed lines dropped",
                    c.metrics_url,
                    r.unsent_at_exit,
                    deadline.as_millis(),
                    r.dropped,
                    r.dropped_logs
                );
            }
        }
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

/// The points of the user-space probe at `item` of the script, as written: what a
/// log record of its output names.
pub fn user_probe_name(script: &lang::ast::Script, item: usize) -> String {
    match script.items.get(item) {
        Some(lang::ast::Item::Probe(p)) => p
            .points
            .iter()
            .map(lang::print::print_probe_point)
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

/// Printed events, sent as OTLP log records.
#[derive(Clone)]
pub struct Logs {
    logger: export::push::Logger,
    resource: ResourceId,
    /// Per event id: its probe's points as written, and where its records hold
    /// the goroutine id.
    events: Arc<Vec<(String, Option<u32>)>>,
    /// Each user-space probe's points as written, by its item in the script.
    user: Arc<Vec<(usize, String)>>,
}

impl Logs {
    /// The log records of `compiled`'s printed lines (`script`'s user-space probes
    /// named as written), sent through `logger` under `resource`.
    pub fn new(
        logger: export::push::Logger,
        resource: ResourceId,
        compiled: &codegen::Compiled,
        script: &lang::ast::Script,
    ) -> Logs {
        Logs {
            logger,
            resource,
            events: Arc::new(
                (0..compiled.spec.events.len())
                    .map(|i| {
                        (
                            compiled.event_probes.get(i).cloned().unwrap_or_default(),
                            compiled.event_goids.get(i).copied().flatten(),
                        )
                    })
                    .collect(),
            ),
            user: Arc::new(
                compiled
                    .spec
                    .user_probes
                    .iter()
                    .map(|p| (p.item, user_probe_name(script, p.item)))
                    .collect(),
            ),
        }
    }

    /// What the ring buffer record `rec` printed (`text`), named for the probe of its
    /// event (the record's first 4 bytes, `bpf::script::EVENT_HEADER`) and, where the
    /// record carries one, the goroutine that printed it (0: none).
    pub fn log_record(&self, rec: &[u8], text: &[u8]) {
        let id = rec
            .first_chunk::<4>()
            .map_or(usize::MAX, |b| u32::from_le_bytes(*b) as usize);
        let Some((probe, goid_at)) = self.events.get(id) else {
            return self.log(text, "", None);
        };
        let goid = goid_at
            .and_then(|at| rec.get(at as usize..)?.first_chunk::<8>().copied())
            .map(u64::from_le_bytes)
            .filter(|g| *g != 0);
        self.log(text, probe, goid);
    }

    /// What the user-space probe at `item` of the script printed in one run.
    pub fn log_user(&self, item: usize, text: &[u8]) {
        let probe = self
            .user
            .iter()
            .find(|(i, _)| *i == item)
            .map_or("", |(_, n)| n.as_str());
        self.log(text, probe, None);
    }

    /// One printed event: its text without the last newline, the probe that printed
    /// it as the script names it, and its goroutine if known.
    pub fn log(&self, text: &[u8], probe: &str, goid: Option<u64>) {
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        self.logger.log(LogEvent {
            resource: self.resource,
            time: SystemTime::now(),
            body: String::from_utf8_lossy(text).into_owned(),
            probe: probe.to_string(),
            goid,
        });
    }
}

/// The traced process by the OpenTelemetry conventions: its executable and build
/// info, its pid when one process is traced; gotap's own without a binary.
fn traced_resource(bin: Option<&Binary>, pid: Option<u32>) -> Result<export::Resource> {
    let env = ResourceEnv::from_env(|k| std::env::var(k).ok());
    let Some(bin) = bin else {
        return Ok(env.agent(std::process::id()));
    };
    let go = bin.go()?;
    let info = go.build_info();
    let mut r = env.process(&ProcessFacts {
        pid: pid.unwrap_or(0),
        executable: bin.path.display().to_string(),
        main_module: info.main_module.or(info.path).map(str::to_string),
        go_version: Some(info.go_version_string.to_string()),
        container_id: None,
        pod_uid: None,
    });
    if pid.is_none() {
        // Every process of the binary: no one pid.
        r.attributes.retain(|(k, _)| k != "process.pid");
    }
    Ok(r)
}

/// What the pipeline exports of one trace: a tool's counts (its consumer puts them
/// in, `pipeline::Consumer::export`), or a script's globals and, with `--otlp`, its
/// printed lines.
pub struct Export {
    pub tool: ToolExport,
    /// A script's globals (none for a tool: its script's globals are its own).
    globals: Option<export::script::ScriptMetrics>,
    pub logs: Option<Logs>,
    /// The text of each record for the logs, whatever the output's format.
    pub text: runtime::events::Text,
    /// Reused for each record's text.
    pub line: Vec<u8>,
    warned: bool,
}

impl Export {
    /// The exporters the flags ask for, with a family for every global of a user's
    /// compiled script (`for_script`); `None` if the flags ask for none.
    pub fn start(
        flags: &ExportFlags,
        bin: Option<&Binary>,
        pid: Option<u32>,
        for_script: Option<(&lang::ast::Script, &lang::TypeInfo)>,
        compiled: &codegen::Compiled,
    ) -> Result<Option<Export>> {
        let Some(exporter) = Exporter::start(flags, bin, pid)? else {
            return Ok(None);
        };
        let max_line = for_script.map_or(0, |(_, info)| info.limits.max_printf as usize);
        let (globals, logs) = match for_script {
            Some((script, info)) => {
                let uses = lang::uses::global_uses(script, info);
                let globals = export::script::ScriptMetrics::new(
                    exporter.registry(),
                    &compiled.spec.globals,
                    &uses,
                    exporter.resource,
                )?;
                (Some(globals), exporter.logs(compiled, script))
            }
            None => (None, None),
        };
        Ok(Some(Export {
            tool: ToolExport { exporter },
            globals,
            logs,
            text: runtime::events::Text::new(max_line),
            line: Vec::new(),
            warned: false,
        }))
    }

    /// Whether the values are to be read now.
    pub fn due(&mut self, now: Instant) -> bool {
        self.tool.exporter.due(now)
    }

    /// Reads a script's globals into the registry; a failure is said once.
    pub fn collect_globals(&mut self, store: &mut dyn runtime::globals::Globals) {
        let Some(g) = &self.globals else { return };
        if let Err(e) = g.collect(self.tool.exporter.registry(), store)
            && !self.warned
        {
            self.warned = true;
            eprintln!("WARNING: exporting the globals: {e}");
        }
    }
}

/// A tool's counts, exported under the names of `export::names`.
pub struct ToolExport {
    pub exporter: Exporter,
}

impl ToolExport {
    /// The exporters the flags ask for; `None` if they ask for none.
    pub fn start(
        flags: &ExportFlags,
        bin: Option<&Binary>,
        pid: Option<u32>,
    ) -> Result<Option<ToolExport>> {
        Ok(Exporter::start(flags, bin, pid)?.map(|exporter| ToolExport { exporter }))
    }

    /// Replaces the series of metric `name` with `points` (each label set once).
    pub fn set(
        &self,
        name: &export::names::Name,
        points: impl IntoIterator<Item = (export::Labels, export::Value)>,
    ) {
        let r = self.exporter.registry();
        // The names are the table's, one kind each: registering cannot conflict.
        if let Ok(f) = r.register(&name.desc()) {
            let _ = r.replace(f, self.exporter.resource, points);
        }
    }

    /// A counter or gauge of `name` without labels.
    pub fn number(&self, name: &export::names::Name, v: f64) {
        let value = match name.kind {
            export::Kind::Counter => export::Value::Counter(v),
            _ => export::Value::Gauge(v),
        };
        self.set(name, [(Vec::new(), value)]);
    }

    /// A counter of `name` per function.
    pub fn by_function<'f>(
        &self,
        name: &export::names::Name,
        counts: impl IntoIterator<Item = (&'f str, u64)>,
    ) {
        self.set(name, function_points(counts));
    }
}

/// Counters labelled `function`, the counts of each function summed.
pub fn function_points<'f>(
    counts: impl IntoIterator<Item = (&'f str, u64)>,
) -> Vec<(export::Labels, export::Value)> {
    let mut sums: Vec<(&str, u64)> = Vec::new();
    for (f, n) in counts {
        match sums.iter_mut().find(|(g, _)| *g == f) {
            Some((_, c)) => *c += n,
            None => sums.push((f, n)),
        }
    }
    sums.into_iter()
        .map(|(f, n)| {
            (
                vec![("function".to_string(), f.to_string())],
                export::Value::Counter(n as f64),
            )
        })
        .collect()
}

/// `--otlp` on a profiling tool: its profile sent as OTLP's profiles signal
/// (`export::profiles`), once, at the end, within the bound of the final metrics
/// push (30 ms after a signal, so that Ctrl-C still ends gotap at once). A
/// collector that does not take it (the OpenTelemetry Collector takes profiles only
/// with `--feature-gates=service.profilesSupport` and a `profiles` pipeline, and
/// answers 404 without them) costs no samples: the profile is then a pprof file,
/// `--pprof`'s if given (already written), else `gotap-profile-PID.pb.gz` here, and
/// the collector's answer is said.
pub fn send_profile(
    flags: &ExportFlags,
    profile: &runtime::pprof::Profile,
    bin: &Binary,
    pid: u32,
    pprof: Option<&std::path::Path>,
    end: End,
) -> Result<()> {
    let var = |k: &str| std::env::var(k).ok();
    let Some(config) = OtlpConfig::resolve(flags.otlp.as_deref(), var)? else {
        return Ok(());
    };
    let deadline = final_deadline(Some(end), config.timeout);
    let req = export::profiles::request(profile, &traced_resource(Some(bin), Some(pid))?);
    let Err(e) = export::profiles::send(&config, &req, deadline) else {
        return Ok(());
    };
    let kept = match pprof {
        Some(p) => p.to_path_buf(),
        None => {
            let p = std::path::PathBuf::from(format!("gotap-profile-{pid}.pb.gz"));
            let mut f = std::fs::File::create(&p).with_context(|| {
                format!("the profile the collector did not take: {}", p.display())
            })?;
            profile.write(&mut f).with_context(|| {
                format!("the profile the collector did not take: {}", p.display())
            })?;
            p
        }
    };
    let hint = match &e {
        export::profiles::SendError::Refused { status: 404, .. } => {
            " (an OpenTelemetry Collector takes profiles only when started with --feature-gates=service.profilesSupport and a profiles pipeline)"
        }
        _ => "",
    };
    eprintln!(
        "WARNING: --otlp: the profile was not sent: {e}{hint}; it is in {} (go tool pprof opens it)",
        kept.display()
    );
    Ok(())
}
