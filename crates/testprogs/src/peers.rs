//! The real engines gotap exports to, started by tests on 127.0.0.1 and ended (by
//! their pid) when the value drops: a Prometheus server with a scrape configuration
//! for the agent, queried through `/api/v1/query`, and the OpenTelemetry Collector
//! of `scripts/install-peers` with an OTLP/HTTP receiver and a file exporter, whose
//! file is read back as JSON. Both are found where `scripts/install-peers` puts them;
//! a test that needs one fails with that command when it is missing. So does gRPC-Go's
//! route_guide example, a real server for the tools' workload test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use serde_json::Value as Json;

/// A port nobody listens on now (the kernel's choice; released before it is used).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// A fresh folder under the target folder for one peer's files.
fn scratch(what: &str) -> PathBuf {
    let dir = crate::repo_root().join("target/peers").join(format!(
        "{what}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the peer's folder");
    dir
}

/// Waits until something listens on `port`, at most `limit`.
fn wait_listening(port: u16, limit: Duration, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the peer exited ({status}) before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "nothing listens on {port} after {limit:?}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn end(child: &mut Child) {
    // SIGTERM first so that the collector flushes its file; then make sure.
    let pid = child.id() as i32;
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// The collector of `scripts/install-peers`.
pub fn collector_path() -> PathBuf {
    let p = std::env::var_os("GOTAP_OTELCOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("tools/otelcol/otelcol-gotap"));
    assert!(
        p.exists(),
        "no OpenTelemetry Collector at {}: run scripts/install-peers",
        p.display()
    );
    p
}

/// The folder of gRPC-Go's route_guide example built by `scripts/install-peers`
/// (`server` and `client` in it), or `GOTAP_ROUTE_GUIDE`.
pub fn route_guide_dir() -> PathBuf {
    let p = std::env::var_os("GOTAP_ROUTE_GUIDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("tools/route_guide"));
    assert!(
        p.join("server").exists() && p.join("client").exists(),
        "no route_guide server and client in {}: run scripts/install-peers",
        p.display()
    );
    p
}

/// A running OpenTelemetry Collector: OTLP/HTTP in, a JSON-lines file out.
pub struct Collector {
    child: Child,
    pub port: u16,
    pub file: PathBuf,
    dir: PathBuf,
}

impl Collector {
    /// Starts one on a free port.
    pub fn start() -> Collector {
        Collector::start_on(free_port())
    }

    /// Starts one on `port` (a test that first lets the agent find it down).
    pub fn start_on(port: u16) -> Collector {
        Collector::start_with(port, false)
    }

    /// Starts one that also takes profiles: the profiles signal is alpha in the
    /// Collector, behind the `service.profilesSupport` feature gate, and needs a
    /// `profiles` pipeline (without them its receiver answers 404 at
    /// `/v1development/profiles`).
    pub fn start_with_profiles() -> Collector {
        Collector::start_with(free_port(), true)
    }

    fn start_with(port: u16, profiles: bool) -> Collector {
        let dir = scratch("otelcol");
        let file = dir.join("out.json");
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  file:
    path: {}
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file]
    logs:
      receivers: [otlp]
      exporters: [file]
{}",
                file.display(),
                if profiles {
                    "    profiles:\n      receivers: [otlp]\n      exporters: [file]\n"
                } else {
                    ""
                }
            ),
        )
        .expect("write the collector's configuration");
        let log = dir.join("collector.log");
        let mut cmd = Command::new(collector_path());
        if profiles {
            cmd.arg("--feature-gates=service.profilesSupport");
        }
        let mut child = cmd
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(dir.join("collector.err")).expect("log file"))
            .spawn()
            .expect("start the collector");
        wait_listening(
            port,
            Duration::from_secs(30),
            &mut child,
            &dir.join("collector.err"),
        );
        Collector {
            child,
            port,
            file,
            dir,
        }
    }

    /// The base URL for `--otlp`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every request the file exporter wrote so far, each a JSON object
    /// (`resourceMetrics`, `resourceLogs` or `resourceProfiles`).
    pub fn requests(&self) -> Vec<Json> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits at most `limit` for `found` to pick something out of the requests.
    pub fn wait_for<T>(&self, limit: Duration, mut found: impl FnMut(&[Json]) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let reqs = self.requests();
            if let Some(t) = found(&reqs) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "the collector did not get it in {limit:?}; it has {} requests:\n{}\nits log:\n{}",
                reqs.len(),
                reqs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
                std::fs::read_to_string(self.dir.join("collector.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the process where it stands (`SIGSTOP`): a collector that accepts
    /// connections and never answers. [`Collector::resume`] undoes it.
    pub fn freeze(&self) {
        let _ = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status();
    }

    pub fn resume(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.resume();
        end(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every metric data point in the collector's requests: `(resource attributes,
/// metric, point)`, for tests to search.
pub fn metric_points(reqs: &[Json]) -> Vec<(Json, Json, Json)> {
    let mut out = Vec::new();
    for r in reqs {
        for rm in r["resourceMetrics"].as_array().into_iter().flatten() {
            let attrs = rm["resource"]["attributes"].clone();
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    for kind in ["sum", "gauge", "histogram"] {
                        for p in m[kind]["dataPoints"].as_array().into_iter().flatten() {
                            out.push((attrs.clone(), m.clone(), p.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Every point of metric `name` in the collector's requests, in the order they
/// came: `(resource attributes, point)`.
pub fn points(reqs: &[Json], name: &str) -> Vec<(Json, Json)> {
    metric_points(reqs)
        .into_iter()
        .filter(|(_, m, _)| m["name"] == name)
        .map(|(r, _, p)| (r, p))
        .collect()
}

/// An OTLP JSON `uint64` (protobuf's JSON mapping writes it as a string), or
/// `u64::MAX` when it is not one.
pub fn as_u64(v: &Json) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
        .unwrap_or(u64::MAX)
}

/// The value of attribute `key` in an OTLP JSON attribute list, as a string.
pub fn attribute(attrs: &Json, key: &str) -> Option<String> {
    attrs.as_array()?.iter().find(|a| a["key"] == key).map(|a| {
        let v = &a["value"];
        v["stringValue"]
            .as_str()
            .map(str::to_string)
            .or_else(|| v["intValue"].as_str().map(str::to_string))
            .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
            .unwrap_or_else(|| v.to_string())
    })
}

/// A running Prometheus server that scrapes `targets` every `interval`.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Prometheus {
    pub fn start(targets: &[String], interval: Duration) -> Prometheus {
        let exe = Path::new("/usr/bin/prometheus");
        assert!(
            exe.exists(),
            "no Prometheus at {}: run scripts/install-peers",
            exe.display()
        );
        let dir = scratch("prometheus");
        let port = free_port();
        let ms = interval.as_millis();
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:
  scrape_interval: {ms}ms
  scrape_timeout: {ms}ms
  evaluation_interval: {ms}ms
scrape_configs:
  - job_name: gotap
    static_configs:
      - targets: [{list}]
"
            ),
        )
        .expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let mut child = Command::new(exe)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start prometheus");
        wait_listening(port, Duration::from_secs(30), &mut child, &log);
        // It listens before its storage is open, answering 503 until then.
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_agent()
            .get(&ready)
            .call()
            .map_or(true, |r| r.status() != 200)
        {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 30 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Prometheus { child, port, dir }
    }

    /// `GET /api/v1/query?query=…`: the result vector, `(labels, value)`.
    pub fn query(&self, q: &str) -> Vec<(Json, f64)> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let mut r = http_agent()
            .get(&url)
            .query("query", q)
            .call()
            .expect("query prometheus");
        let body: Json = serde_json::from_str(&r.body_mut().read_to_string().expect("body"))
            .expect("a JSON answer");
        assert_eq!(body["status"], "success", "{q}: {body}");
        body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let v = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), v)
            })
            .collect()
    }

    /// Waits at most `limit` for `found` to accept the answer to `q`.
    pub fn wait_for<T>(
        &self,
        q: &str,
        limit: Duration,
        mut found: impl FnMut(&[(Json, f64)]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.query(q);
            if let Some(t) = found(&got) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{q}: not there in {limit:?}; last answer {got:?}; targets: {}",
                self.targets()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What `/api/v1/targets` says, for failure messages.
    pub fn targets(&self) -> String {
        let url = format!("http://127.0.0.1:{}/api/v1/targets", self.port);
        http_agent()
            .get(&url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        end(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
