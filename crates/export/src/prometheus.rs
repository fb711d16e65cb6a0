//! The Prometheus exposition: `GET /metrics` on `--prometheus ADDR`, in the text
//! format 0.0.4 or OpenMetrics 1.0 as the scraper's `Accept` header prefers (a
//! Prometheus server asks for OpenMetrics first; `curl` gets text). The bytes are
//! written by the `prometheus-client` crate's two encoders from a [`Snapshot`]; the
//! server is `tiny_http` on one thread of its own, so a scrape never waits on the
//! tracer and the tracer never waits on a scrape.
//!
//! Series of a traced process carry its identifying resource attributes as labels
//! (`service_name`, `process_pid`, `container_id`, `k8s_pod_uid`); all its attributes
//! are on `target_info`, as the OpenTelemetry-to-Prometheus rules have it. A
//! histogram's `@min`/`@max` are the gauges `NAME_min_UNIT` and `NAME_max_UNIT`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry as PromRegistry, Unit};
use thiserror::Error;

use crate::model::{Desc, FamilySnapshot, Kind, Labels, Registry, Snapshot, Value, sanitize};
use crate::resource::{IDENTIFYING, Resource};

/// The two formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: the media range with the highest `q`
    /// that names one (`*/*`, `text/*` and `text/plain` mean text); text without one.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best = (Format::Text, -1.0f64);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f64>().ok())
                .unwrap_or(1.0);
            let format = match media.as_str() {
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" | "text/*" | "*/*" => Format::Text,
                _ => continue,
            };
            if q > best.1 {
                best = (format, q);
            }
        }
        best.0
    }
}

/// The exposition of `snap` in `format`.
pub fn encode(snap: Snapshot, format: Format) -> String {
    let mut reg = PromRegistry::default();
    reg.register_collector(Box::new(SnapshotCollector(snap)));
    let mut out = String::new();
    // Writing to a String cannot fail, and the collector only fails on a write.
    let _ = match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &reg),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &reg),
    };
    out
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = &self.0;
        for f in &snap.families {
            encode_family(&mut encoder, snap, f)?;
        }
        if !snap.resources.is_empty() {
            let mut m = encoder.encode_descriptor(
                "target",
                "Resource attributes of each traced process and of the agent.",
                None,
                MetricType::Info,
            )?;
            for r in snap.resources.values() {
                m.encode_info(&all_labels(r))?;
            }
        }
        Ok(())
    }
}

fn unit_of(desc: &Desc) -> Option<Unit> {
    desc.prometheus_unit().map(|u| match u {
        "seconds" => Unit::Seconds,
        "bytes" => Unit::Bytes,
        "ratio" => Unit::Ratios,
        other => Unit::Other(other.to_string()),
    })
}

fn encode_family(
    encoder: &mut DescriptorEncoder,
    snap: &Snapshot,
    f: &FamilySnapshot,
) -> Result<(), std::fmt::Error> {
    let base = f.desc.prometheus_base();
    let unit = unit_of(&f.desc);
    let ty = match f.desc.kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    };
    let labelled: Vec<(Labels, &Value)> = f
        .points
        .iter()
        .map(|p| {
            (
                series_labels(&p.labels, snap.resources.get(&p.resource)),
                &p.value,
            )
        })
        .collect();
    {
        let mut m = encoder.encode_descriptor(&base, &f.desc.help, unit.as_ref(), ty)?;
        for (labels, value) in &labelled {
            let mut s = m.encode_family(labels)?;
            match value {
                Value::Counter(c) => s.encode_counter::<NoLabelSet, f64, f64>(c, None)?,
                Value::Gauge(g) => s.encode_gauge(g)?,
                Value::Histogram(h) => {
                    s.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets(), None)?
                }
            }
        }
    }
    // A histogram's extremes, where the source keeps them (the language's @min/@max).
    for (suffix, pick) in [("min", true), ("max", false)] {
        let values: Vec<(&Labels, f64)> = labelled
            .iter()
            .filter_map(|(labels, v)| match v {
                Value::Histogram(h) => if pick { h.min } else { h.max }.map(|x| (labels, x)),
                _ => None,
            })
            .collect();
        if values.is_empty() {
            continue;
        }
        let name = format!("{base}_{suffix}");
        let help = format!(
            "The {} value of {}.",
            if pick { "smallest" } else { "largest" },
            f.desc.name
        );
        let mut m = encoder.encode_descriptor(&name, &help, unit.as_ref(), MetricType::Gauge)?;
        for (labels, x) in values {
            m.encode_family(labels)?.encode_gauge(&x)?;
        }
    }
    Ok(())
}

/// The point's labels, sanitised, then the resource's identifying attributes.
fn series_labels(labels: &Labels, resource: Option<&Resource>) -> Labels {
    let mut out: Labels = labels
        .iter()
        .map(|(k, v)| (sanitize(k), v.clone()))
        .collect();
    if let Some(r) = resource {
        for key in IDENTIFYING {
            if let Some(v) = r.get(key) {
                out.push((sanitize(key), v.to_string()));
            }
        }
    }
    out
}

fn all_labels(r: &Resource) -> Labels {
    r.attributes
        .iter()
        .map(|(k, v)| (sanitize(k), v.to_string()))
        .collect()
}

/// Errors of the exposition server.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("--prometheus {addr}: {message}")]
    Bind { addr: String, message: String },
}

/// The `/metrics` server; dropping it (or [`Server::stop`]) stops it.
pub struct Server {
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Server {
    /// Listens on `addr` (`127.0.0.1:9464`, `:9464`, port 0 for any) and serves
    /// `registry`'s snapshot on every `GET /metrics`.
    pub fn start(addr: &str, registry: Arc<Registry>) -> Result<Server, ServeError> {
        let bind = if addr.starts_with(':') {
            format!("0.0.0.0{addr}")
        } else {
            addr.to_string()
        };
        let http = tiny_http::Server::http(&bind).map_err(|e| ServeError::Bind {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
        let local = http.server_addr().to_ip().ok_or_else(|| ServeError::Bind {
            addr: addr.to_string(),
            message: "not an IP address".into(),
        })?;
        let http = Arc::new(http);
        let h = http.clone();
        let thread = std::thread::Builder::new()
            .name("gotap-metrics".into())
            .spawn(move || serve(&h, &registry))
            .map_err(|e| ServeError::Bind {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
        Ok(Server {
            http,
            thread: Some(thread),
            addr: local,
        })
    }

    /// The address it listens on (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.http.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(http: &tiny_http::Server, registry: &Registry) {
    for req in http.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        let response = match (req.method(), path) {
            (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
                let accept = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Accept"))
                    .map(|h| h.value.as_str().to_string());
                let format = Format::negotiate(accept.as_deref());
                let body = encode(registry.snapshot(), format);
                tiny_http::Response::from_string(body).with_header(header(format.content_type()))
            }
            _ => tiny_http::Response::from_string("gotap: metrics are at /metrics\n")
                .with_status_code(404)
                .with_header(header("text/plain; charset=utf-8")),
        };
        // A scraper that went away is not the agent's problem.
        let _ = req.respond(response);
    }
}

fn header(content_type: &str) -> tiny_http::Header {
    tiny_http::Header {
        field: "Content-Type"
            .parse()
            .unwrap_or_else(|_| unreachable!("a valid header name")),
        value: content_type
            .parse()
            .unwrap_or_else(|_| unreachable!("an ASCII header value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Histogram, ResourceId};
    use crate::names;
    use crate::resource::{AttrValue, Resource};

    fn registry() -> Arc<Registry> {
        let r = Arc::new(Registry::new(100));
        r.set_resource(
            ResourceId(1),
            Resource {
                attributes: vec![
                    (
                        "service.name".into(),
                        AttrValue::Str("example.com/api".into()),
                    ),
                    ("process.pid".into(), AttrValue::Int(42)),
                    ("host.name".into(), AttrValue::Str("node-1".into())),
                ],
            },
        );
        let calls = r.register(&names::FUNCTION_CALLS.desc()).unwrap();
        r.replace(
            calls,
            ResourceId(1),
            [(
                vec![("function".into(), "main.(*T).Method".into())],
                Value::Counter(30.0),
            )],
        )
        .unwrap();
        let pause = r.register(&names::GC_PAUSE.desc()).unwrap();
        let mut h = Histogram::empty(vec![0.001, 0.01]);
        h.observe(0.0005);
        h.observe(0.002);
        r.replace(pause, ResourceId(1), [(vec![], Value::Histogram(h))])
            .unwrap();
        r
    }

    #[test]
    fn accept_headers_choose_the_format() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        // What Prometheus 2.x sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Text
        );
        assert_eq!(Format::negotiate(Some("application/json")), Format::Text);
    }

    #[test]
    fn text_format_has_total_suffixes_resource_labels_and_target_info() {
        let text = encode(registry().snapshot(), Format::Text);
        assert!(
            text.contains("# TYPE go_function_calls_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "go_function_calls_total{function=\"main.(*T).Method\",service_name=\"example.com/api\",process_pid=\"42\"} 30"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE go_gc_pause_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("go_gc_pause_seconds_bucket{le=\"0.001\",service_name=\"example.com/api\",process_pid=\"42\"} 1")
                || text.contains("go_gc_pause_seconds_bucket{service_name=\"example.com/api\",process_pid=\"42\",le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(text.contains("go_gc_pause_seconds_count{"), "{text}");
        // The encoder makes the counts cumulative: +Inf is the count.
        assert!(
            text.contains("le=\"+Inf\"} 2\n") && text.contains("le=\"0.01\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("go_gc_pause_min_seconds{"), "{text}");
        assert!(text.contains("host_name=\"node-1\""), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn openmetrics_declares_units_and_ends_with_eof() {
        let text = encode(registry().snapshot(), Format::OpenMetrics);
        assert!(
            text.contains("# TYPE go_function_calls counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT go_gc_pause_seconds seconds\n"),
            "{text}"
        );
        assert!(text.contains("target_info{"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_server_answers_by_content_negotiation_and_stops() {
        let server = Server::start("127.0.0.1:0", registry()).unwrap();
        let url = format!("http://{}/metrics", server.local_addr());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent.get(&url).call().unwrap();
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        assert!(
            r.body_mut()
                .read_to_string()
                .unwrap()
                .contains("go_function_calls_total{")
        );
        let mut r = agent
            .get(&url)
            .header("Accept", "application/openmetrics-text; version=1.0.0")
            .call()
            .unwrap();
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        assert!(r.body_mut().read_to_string().unwrap().ends_with("# EOF\n"));
        let r = agent
            .get(&format!("http://{}/", server.local_addr()))
            .call()
            .unwrap();
        assert_eq!(r.status(), 404);
        let addr = server.local_addr();
        server.stop();
        // tiny_http's accept thread closes the socket on its own, just after.
        let closed = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::net::TcpStream::connect(addr).is_err()
        });
        assert!(closed, "still listening 2 s after stop");
    }

    #[test]
    fn a_bad_address_is_an_error_with_the_address() {
        let e = Server::start("256.0.0.1:1", registry()).err().unwrap();
        assert!(e.to_string().contains("256.0.0.1:1"), "{e}");
    }
}
