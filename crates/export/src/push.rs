//! Pushing OTLP, bounded whatever the collector does. One thread owns the sending:
//! every export interval it encodes a [`Snapshot`] into a batch, and log records
//! gathered meanwhile into another, and puts them on a queue of at most
//! [`QUEUE_BATCHES`]; it sends the oldest batch first, and a failure (no answer,
//! a 5xx, a 429, a timeout) keeps it at the head and waits, doubling from
//! [`BACKOFF_MIN`] to [`BACKOFF_MAX`]. A full queue drops its oldest batch; every
//! drop is counted in `gotap.export.dropped.batches{signal}` and every failed request
//! in `gotap.export.failed.requests{signal}`, which are metrics like the others, so
//! the collector learns of them when it is back. A 4xx other than 429 means the
//! batch itself is refused: it is dropped (and counted) rather than retried forever.
//!
//! Printed events ([`Pusher::log`]) wait at most [`LOG_DELAY`] (OpenTelemetry's
//! batch log processor's default delay) or until [`LOG_BATCH`] of them are waiting,
//! then go as one logs batch; at most [`LOG_WAITING`] wait, and an event past that is
//! dropped and counted in `gotap.export.dropped.logs`, so that a printing storm
//! against a slow collector costs bounded memory.
//!
//! [`Pusher::shutdown`] encodes a last snapshot and sends what it can before a
//! deadline, then gives up: SIGTERM ends the agent in bounded time. A request
//! already hanging on a frozen collector cannot be interrupted, so past the deadline
//! the sender thread is left to its timeout and the process exits without it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::{AGENT, FamilyId, Registry};
use crate::names;
use crate::otlp::{self, LogEvent, OtlpConfig};

/// Batches the queue holds at most.
pub const QUEUE_BATCHES: usize = 32;
/// Log records gathered into one batch at most; a burst past it is sent early.
pub const LOG_BATCH: usize = 512;
/// How long a log record waits for others to share its batch.
pub const LOG_DELAY: Duration = Duration::from_secs(1);
/// Log records waiting at most; past it they are dropped and counted.
pub const LOG_WAITING: usize = 4 * LOG_BATCH;
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Metrics,
    Logs,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

struct Batch {
    signal: Signal,
    body: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Batch>,
    logs: Vec<LogEvent>,
    /// When the oldest waiting log record came.
    logs_since: Option<Instant>,
    /// Log records dropped because [`LOG_WAITING`] were waiting.
    logs_dropped: u64,
    /// Set by `shutdown`: the deadline for the last sends.
    stop: Option<Instant>,
    /// Asks for a metrics batch now (tests and SIGHUP).
    flush: bool,
}

/// The sender; dropping it shuts it down with a 500 ms deadline.
pub struct Pusher {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    done: std::sync::mpsc::Receiver<Report>,
}

/// What the sender did, for the agent's last words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub sent: u64,
    /// Log records dropped because too many were waiting.
    pub dropped_logs: u64,
    pub failed: u64,
    pub dropped: u64,
    /// Batches still queued when the deadline passed.
    pub unsent_at_exit: u64,
}

struct Counters {
    dropped: FamilyId,
    failed: FamilyId,
    dropped_logs: FamilyId,
}

impl Pusher {
    /// Starts the sender thread.
    pub fn start(config: OtlpConfig, registry: Arc<Registry>) -> std::io::Result<Pusher> {
        let counters = Counters {
            dropped: registry
                .register(&names::DROPPED_BATCHES.desc())
                .map_err(std::io::Error::other)?,
            failed: registry
                .register(&names::FAILED_REQUESTS.desc())
                .map_err(std::io::Error::other)?,
            dropped_logs: registry
                .register(&names::DROPPED_LOGS.desc())
                .map_err(std::io::Error::other)?,
        };
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let s = shared.clone();
        let (tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("gotap-otlp".into())
            .spawn(move || {
                let report = run(&config, &registry, &counters, &s);
                let _ = tx.send(report);
            })?;
        Ok(Pusher {
            shared,
            thread: Some(thread),
            done,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        let (m, cv) = &*self.shared;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut g);
        cv.notify_one();
        out
    }

    /// Queues a printed event for the next logs batch, or drops it (counted) when
    /// [`LOG_WAITING`] are waiting already.
    pub fn log(&self, event: LogEvent) {
        self.logger().log(event);
    }

    /// A handle that queues log records as [`Pusher::log`] does, for the code that
    /// decodes the events; once the pusher is shut down, it queues nothing.
    pub fn logger(&self) -> Logger {
        Logger {
            shared: self.shared.clone(),
        }
    }

    /// Sends a metrics batch now rather than at the next interval.
    pub fn flush(&self) {
        self.with(|s| s.flush = true);
    }

    /// Encodes the last snapshot and sends what it can within `deadline`.
    pub fn shutdown(mut self, deadline: Duration) -> Report {
        self.stop(deadline)
    }

    fn stop(&mut self, deadline: Duration) -> Report {
        let at = Instant::now() + deadline;
        self.with(|s| s.stop = Some(at));
        let Some(thread) = self.thread.take() else {
            return Report::default();
        };
        // A little past the deadline, for the thread to see it and answer.
        match self.done.recv_timeout(deadline + answer_time(deadline)) {
            Ok(report) => {
                let _ = thread.join();
                report
            }
            Err(_) => {
                // Hanging in a request: left behind, counted as unsent.
                let (m, _) = &*self.shared;
                let s = m.lock().unwrap_or_else(|p| p.into_inner());
                Report {
                    unsent_at_exit: 1 + s.queue.len() as u64,
                    ..Report::default()
                }
            }
        }
    }
}

/// How long past a final push's `deadline` its sender is waited for, to see the
/// deadline and answer, before it is left behind (its batches counted as unsent): a
/// fifth of the deadline, from 5 to 50 ms.
pub fn answer_time(deadline: Duration) -> Duration {
    (deadline / 5).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

/// Queues log records for a [`Pusher`].
#[derive(Clone)]
pub struct Logger {
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

impl Logger {
    /// Queues a printed event for the next logs batch, or drops it (counted) when
    /// [`LOG_WAITING`] are waiting already.
    pub fn log(&self, event: LogEvent) {
        let (m, cv) = &*self.shared;
        let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
        if s.stop.is_some() {
            return;
        }
        if s.logs.len() >= LOG_WAITING {
            s.logs_dropped += 1;
            return;
        }
        s.logs_since.get_or_insert_with(Instant::now);
        s.logs.push(event);
        // The sender is woken only when there is a batch to make.
        if s.logs.len() >= LOG_BATCH {
            cv.notify_one();
        }
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(Duration::from_millis(500));
        }
    }
}

fn run(
    config: &OtlpConfig,
    registry: &Registry,
    counters: &Counters,
    shared: &(Mutex<Shared>, Condvar),
) -> Report {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut report = Report::default();
    let mut next_metrics = Instant::now() + config.interval;
    let mut retry_at = Instant::now();
    let mut backoff = BACKOFF_MIN;
    let mut last_taken = false;
    let (m, cv) = shared;
    loop {
        let now = Instant::now();
        // Take what there is to do under the lock, send without it.
        let (stop, batch) = {
            let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
            let stop = s.stop;
            let last = stop.is_some() && !last_taken;
            let due = last || (stop.is_none() && (now >= next_metrics || s.flush));
            if due {
                last_taken |= last;
                s.flush = false;
                next_metrics = now + config.interval;
                let body = otlp::encode(&otlp::metrics_request(&registry.snapshot()));
                enqueue(
                    &mut s,
                    Batch {
                        signal: Signal::Metrics,
                        body,
                    },
                    registry,
                    counters,
                    &mut report,
                );
            }
            if s.logs_dropped > 0 {
                let n = std::mem::take(&mut s.logs_dropped);
                report.dropped_logs += n;
                let _ = registry.add(counters.dropped_logs, AGENT, Vec::new(), n as f64);
            }
            let logs_due = s.logs_since.is_some_and(|t| now >= t + LOG_DELAY);
            if !s.logs.is_empty()
                && (due || logs_due || stop.is_some() || s.logs.len() >= LOG_BATCH)
            {
                s.logs_since = None;
                let events = std::mem::take(&mut s.logs);
                let resources = registry.snapshot().resources;
                let body = otlp::encode(&otlp::logs_request(&events, &resources));
                enqueue(
                    &mut s,
                    Batch {
                        signal: Signal::Logs,
                        body,
                    },
                    registry,
                    counters,
                    &mut report,
                );
            }
            let ready = stop.is_some() || now >= retry_at;
            let batch = if ready { s.queue.pop_front() } else { None };
            if batch.is_none() && stop.is_none() {
                let mut wake = if s.queue.is_empty() {
                    next_metrics
                } else {
                    retry_at.min(next_metrics)
                };
                if let Some(t) = s.logs_since {
                    wake = wake.min(t + LOG_DELAY);
                }
                let wait = wake.saturating_duration_since(now);
                let _ = cv.wait_timeout(s, wait.max(Duration::from_millis(1)));
                continue;
            }
            (stop, batch)
        };
        let Some(batch) = batch else {
            // Stopping with nothing left.
            return report;
        };
        let timeout = match stop {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
                    report.unsent_at_exit = 1 + s.queue.len() as u64;
                    s.queue.clear();
                    return report;
                }
                left.min(config.timeout)
            }
            None => config.timeout,
        };
        let url = match batch.signal {
            Signal::Metrics => &config.metrics_url,
            Signal::Logs => &config.logs_url,
        };
        match send(&agent, url, &config.headers, &batch.body, timeout) {
            Outcome::Sent => {
                report.sent += 1;
                backoff = BACKOFF_MIN;
            }
            Outcome::Refused(status) => {
                report.dropped += 1;
                eprintln!(
                    "gotap: the collector refused a {} batch (HTTP {status}); dropped",
                    batch.signal.name()
                );
                count(registry, counters.dropped, batch.signal);
            }
            Outcome::Retry => {
                report.failed += 1;
                count(registry, counters.failed, batch.signal);
                if stop.is_none() {
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
                    s.queue.push_front(batch);
                    if s.queue.len() > QUEUE_BATCHES {
                        drop_oldest(&mut s, registry, counters, &mut report);
                    }
                }
            }
        }
    }
}

fn enqueue(
    s: &mut Shared,
    b: Batch,
    registry: &Registry,
    counters: &Counters,
    report: &mut Report,
) {
    s.queue.push_back(b);
    while s.queue.len() > QUEUE_BATCHES {
        drop_oldest(s, registry, counters, report);
    }
}

fn drop_oldest(s: &mut Shared, registry: &Registry, counters: &Counters, report: &mut Report) {
    if let Some(old) = s.queue.pop_front() {
        report.dropped += 1;
        count(registry, counters.dropped, old.signal);
    }
}

fn count(registry: &Registry, family: FamilyId, signal: Signal) {
    let labels = vec![("signal".to_string(), signal.name().to_string())];
    // The families were registered at start; a failure here is a programming error
    // that must not stop the sender.
    let _ = registry.add(family, AGENT, labels, 1.0);
}

enum Outcome {
    Sent,
    /// The collector answered that this batch will never be taken.
    Refused(u16),
    Retry,
}

fn send(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Outcome {
    let mut req = agent
        .post(url)
        .header("Content-Type", "application/x-protobuf");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req
        .config()
        .timeout_global(Some(timeout))
        .build()
        .send(body)
    {
        Ok(r) => {
            let status = r.status().as_u16();
            match status {
                200..=299 => Outcome::Sent,
                429 | 500..=599 => Outcome::Retry,
                s => Outcome::Refused(s),
            }
        }
        Err(_) => Outcome::Retry,
    }
}
