//! OTLP over HTTP with protobuf bodies (`http/protobuf`): the configuration, read as
//! the OpenTelemetry SDKs read it, and the messages, built with the
//! `opentelemetry-proto` crate's types and encoded by `prost`. Sending, queueing
//! and retrying are [`crate::push`]'s.
//!
//! Configuration: `--otlp URL` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) is the base URL,
//! to which `/v1/metrics`, `/v1/logs` and `/v1development/profiles` are added;
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, `…_LOGS_ENDPOINT` and `…_PROFILES_ENDPOINT`
//! are full URLs used as they are (when no flag is given); `OTEL_EXPORTER_OTLP_HEADERS` adds request headers; `OTEL_METRIC_EXPORT_
//! INTERVAL` (ms, default 60000) paces the metric pushes; `OTEL_EXPORTER_OTLP_TIMEOUT`
//! (ms, default 10000) bounds a request. Only plain `http://` is spoken: TLS belongs
//! to the collector the agent sends to, usually on the same node.
//!
//! Metrics are cumulative, so a batch lost while the collector was away costs
//! resolution, not counts. Every series' resource becomes a `ResourceMetrics` with
//! one scope, `gotap`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram as OtlpHistogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use prost::Message;
use thiserror::Error;

use crate::model::{Labels, ResourceId, Snapshot, Value};
use crate::resource::{AttrValue, Resource, parse_key_values};

/// Where and how to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    pub metrics_url: String,
    pub logs_url: String,
    /// Where a profiling tool's profile goes ([`crate::profiles`]).
    pub profiles_url: String,
    pub headers: Vec<(String, String)>,
    pub interval: Duration,
    pub timeout: Duration,
}

/// A configuration that cannot be used, with the setting at fault.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "{setting}={value:?}: gotap speaks OTLP over plain http:// (put TLS in the collector on the node)"
    )]
    Scheme { setting: String, value: String },
    #[error("{setting}={value:?}: expected a whole number of milliseconds")]
    Millis { setting: String, value: String },
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0:?}: gotap sends http/protobuf only")]
    Protocol(String),
}

const DEFAULT_INTERVAL_MS: u64 = 60_000;
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

impl OtlpConfig {
    /// The configuration from the `--otlp` flag and the environment (`var`), or
    /// `None` when neither names a destination.
    pub fn resolve(
        flag: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpConfig>, ConfigError> {
        let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        if let Some(p) = var("OTEL_EXPORTER_OTLP_PROTOCOL")
            && p != "http/protobuf"
        {
            return Err(ConfigError::Protocol(p));
        }
        let base = match flag {
            Some(f) => Some(("--otlp".to_string(), f.to_string())),
            None => var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|v| ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), v)),
        };
        let signal = |name: &str, path: &str| -> Option<(String, String)> {
            if flag.is_none()
                && let Some(v) = var(name)
            {
                return Some((name.to_string(), v));
            }
            base.as_ref().map(|(setting, b)| {
                (
                    setting.clone(),
                    format!("{}/{path}", b.trim_end_matches('/')),
                )
            })
        };
        let (Some(metrics), Some(logs), Some(profiles)) = (
            signal("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "v1/metrics"),
            signal("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "v1/logs"),
            signal(
                "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT",
                "v1development/profiles",
            ),
        ) else {
            return Ok(None);
        };
        for (setting, url) in [&metrics, &logs, &profiles] {
            if !url.starts_with("http://") {
                return Err(ConfigError::Scheme {
                    setting: setting.clone(),
                    value: url.clone(),
                });
            }
        }
        let millis = |name: &str, default: u64| -> Result<Duration, ConfigError> {
            match var(name) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis)
                    .ok_or(ConfigError::Millis {
                        setting: name.to_string(),
                        value: v,
                    }),
            }
        };
        Ok(Some(OtlpConfig {
            metrics_url: metrics.1,
            logs_url: logs.1,
            profiles_url: profiles.1,
            headers: var("OTEL_EXPORTER_OTLP_HEADERS")
                .map(|h| parse_key_values(&h))
                .unwrap_or_default(),
            interval: millis("OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_INTERVAL_MS)?,
            timeout: millis("OTEL_EXPORTER_OTLP_TIMEOUT", DEFAULT_TIMEOUT_MS)?,
        }))
    }
}

/// A printed event, as an OTLP log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    pub resource: ResourceId,
    pub time: SystemTime,
    pub body: String,
    /// The probe point that printed it, as the script names it.
    pub probe: String,
    /// The goroutine it was printed on, when known.
    pub goid: Option<u64>,
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn label_attributes(labels: &Labels) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| kv(k, any_value::Value::StringValue(v.clone())))
        .collect()
}

pub(crate) fn resource_message(r: Option<&Resource>) -> OtlpResource {
    OtlpResource {
        attributes: r
            .map(|r| {
                r.attributes
                    .iter()
                    .map(|(k, v)| match v {
                        AttrValue::Str(s) => kv(k, any_value::Value::StringValue(s.clone())),
                        AttrValue::Int(i) => kv(k, any_value::Value::IntValue(*i)),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ..OtlpResource::default()
    }
}

pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "gotap".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    }
}

/// The metrics of `snap`, one `ResourceMetrics` per resource.
pub fn metrics_request(snap: &Snapshot) -> ExportMetricsServiceRequest {
    let now = nanos(snap.time);
    let cumulative = AggregationTemporality::Cumulative as i32;
    let mut by_resource: BTreeMap<ResourceId, Vec<Metric>> = BTreeMap::new();
    for f in &snap.families {
        let mut per: BTreeMap<ResourceId, Vec<&crate::model::Point>> = BTreeMap::new();
        for p in &f.points {
            per.entry(p.resource).or_default().push(p);
        }
        for (rid, points) in per {
            let number = |p: &crate::model::Point, v: f64| NumberDataPoint {
                attributes: label_attributes(&p.labels),
                start_time_unix_nano: nanos(p.start),
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..NumberDataPoint::default()
            };
            let data = match f.desc.kind {
                crate::model::Kind::Counter => metric::Data::Sum(Sum {
                    data_points: points
                        .iter()
                        .filter_map(|p| match p.value {
                            Value::Counter(v) => Some(number(p, v)),
                            _ => None,
                        })
                        .collect(),
                    aggregation_temporality: cumulative,
                    is_monotonic: true,
                }),
                crate::model::Kind::Gauge => metric::Data::Gauge(Gauge {
                    data_points: points
                        .iter()
                        .filter_map(|p| match p.value {
                            Value::Gauge(v) => Some(number(p, v)),
                            _ => None,
                        })
                        .collect(),
                }),
                crate::model::Kind::Histogram => metric::Data::Histogram(OtlpHistogram {
                    data_points: points
                        .iter()
                        .filter_map(|p| match &p.value {
                            Value::Histogram(h) => Some(HistogramDataPoint {
                                attributes: label_attributes(&p.labels),
                                start_time_unix_nano: nanos(p.start),
                                time_unix_nano: now,
                                count: h.count,
                                sum: Some(h.sum),
                                bucket_counts: h.counts.clone(),
                                explicit_bounds: h.bounds.clone(),
                                min: h.min,
                                max: h.max,
                                ..HistogramDataPoint::default()
                            }),
                            _ => None,
                        })
                        .collect(),
                    aggregation_temporality: cumulative,
                }),
            };
            by_resource.entry(rid).or_default().push(Metric {
                name: f.desc.name.clone(),
                description: f.desc.help.clone(),
                unit: f.desc.unit.clone(),
                data: Some(data),
                ..Metric::default()
            });
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: by_resource
            .into_iter()
            .map(|(rid, metrics)| ResourceMetrics {
                resource: Some(resource_message(snap.resources.get(&rid))),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            })
            .collect(),
    }
}

/// `events` as log records, grouped by resource.
pub fn logs_request(
    events: &[LogEvent],
    resources: &BTreeMap<ResourceId, Resource>,
) -> ExportLogsServiceRequest {
    let mut by_resource: BTreeMap<ResourceId, Vec<LogRecord>> = BTreeMap::new();
    let observed = nanos(SystemTime::now());
    for e in events {
        let mut attributes = vec![kv(
            "gotap.probe",
            any_value::Value::StringValue(e.probe.clone()),
        )];
        if let Some(g) = e.goid {
            attributes.push(kv(
                "go.goroutine.id",
                any_value::Value::IntValue(i64::try_from(g).unwrap_or(i64::MAX)),
            ));
        }
        by_resource.entry(e.resource).or_default().push(LogRecord {
            time_unix_nano: nanos(e.time),
            observed_time_unix_nano: observed,
            severity_number: SeverityNumber::Info as i32,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(e.body.clone())),
            }),
            attributes,
            ..LogRecord::default()
        });
    }
    ExportLogsServiceRequest {
        resource_logs: by_resource
            .into_iter()
            .map(|(rid, records)| ResourceLogs {
                resource: Some(resource_message(resources.get(&rid))),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            })
            .collect(),
    }
}

/// A message's protobuf bytes.
pub fn encode(m: &impl Message) -> Vec<u8> {
    m.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Histogram, Registry};
    use crate::names;

    fn vars(v: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let v: Vec<(String, String)> = v
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |k| v.iter().find(|(n, _)| n == k).map(|(_, x)| x.clone())
    }

    #[test]
    fn the_endpoint_gets_signal_paths_and_the_flag_wins() {
        let c = OtlpConfig::resolve(
            None,
            vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.metrics_url, "http://c:4318/v1/metrics");
        assert_eq!(c.logs_url, "http://c:4318/v1/logs");
        assert_eq!(c.profiles_url, "http://c:4318/v1development/profiles");
        assert_eq!(c.interval, Duration::from_secs(60));
        let c = OtlpConfig::resolve(
            Some("http://flag:4318"),
            vars(&[
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://env:1/m"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-token=a%3Db,tenant=7"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.metrics_url, "http://flag:4318/v1/metrics");
        assert_eq!(
            c.headers,
            vec![
                ("x-token".into(), "a=b".into()),
                ("tenant".into(), "7".into())
            ]
        );
        assert_eq!(c.interval, Duration::from_millis(250));
        let c = OtlpConfig::resolve(
            None,
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://env:1/m"),
                ("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", "http://env:1/p"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.metrics_url, "http://env:1/m");
        assert_eq!(c.profiles_url, "http://env:1/p");
        assert_eq!(OtlpConfig::resolve(None, vars(&[])).unwrap(), None);
    }

    #[test]
    fn bad_settings_say_which() {
        let e = OtlpConfig::resolve(Some("https://c:4318"), vars(&[])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--otlp=\"https://c:4318/v1/metrics\""),
            "{e}"
        );
        let e = OtlpConfig::resolve(
            Some("http://c"),
            vars(&[("OTEL_METRIC_EXPORT_INTERVAL", "10s")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("OTEL_METRIC_EXPORT_INTERVAL"), "{e}");
        let e = OtlpConfig::resolve(
            Some("http://c"),
            vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
        )
        .unwrap_err();
        assert_eq!(e, ConfigError::Protocol("grpc".into()));
    }

    #[test]
    fn metrics_are_grouped_by_resource_and_typed() {
        let r = Registry::new(10);
        r.set_resource(
            ResourceId(1),
            Resource {
                attributes: vec![("process.pid".into(), AttrValue::Int(42))],
            },
        );
        let calls = r.register(&names::FUNCTION_CALLS.desc()).unwrap();
        r.replace(
            calls,
            ResourceId(1),
            [(
                vec![("function".into(), "main.leaf".into())],
                Value::Counter(3.0),
            )],
        )
        .unwrap();
        let pause = r.register(&names::GC_PAUSE.desc()).unwrap();
        let mut h = Histogram::empty(vec![1.0]);
        h.observe(0.5);
        r.replace(pause, ResourceId(1), [(vec![], Value::Histogram(h))])
            .unwrap();
        let req = metrics_request(&r.snapshot());
        let bytes = encode(&req);
        let back = ExportMetricsServiceRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.resource_metrics.len(), 1);
        let rm = &back.resource_metrics[0];
        assert_eq!(
            rm.resource.as_ref().unwrap().attributes[0].key,
            "process.pid"
        );
        let m = &rm.scope_metrics[0].metrics;
        let calls = m.iter().find(|m| m.name == "go.function.calls").unwrap();
        assert_eq!(calls.unit, "{call}");
        let Some(metric::Data::Sum(s)) = &calls.data else {
            panic!("{calls:?}")
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsDouble(3.0))
        );
        let pause = m.iter().find(|m| m.name == "go.gc.pause").unwrap();
        let Some(metric::Data::Histogram(h)) = &pause.data else {
            panic!()
        };
        assert_eq!(h.data_points[0].bucket_counts, [1, 0]);
        assert_eq!(h.data_points[0].explicit_bounds, [1.0]);
        assert_eq!(h.data_points[0].min, Some(0.5));
    }

    #[test]
    fn log_records_carry_the_probe_and_goroutine() {
        let e = LogEvent {
            resource: ResourceId(3),
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(5),
            body: "round 1".into(),
            probe: "process(\"x\").function(\"main.f\")".into(),
            goid: Some(17),
        };
        let req = logs_request(&[e], &BTreeMap::new());
        let rec = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.time_unix_nano, 5_000_000_000);
        assert_eq!(rec.attributes[1].key, "go.goroutine.id");
        assert_eq!(
            rec.attributes[1].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(17))
        );
    }
}
