//! Every global of a script as a metric, read through the runtime's
//! [`Globals`] trait (the kernel's maps in the CLI, [`runtime::globals::MemGlobals`]
//! in the tests) and written into the [`Registry`] as the whole truth each time:
//!
//! | the global | the metric `gotap.script.NAME` (Prometheus `gotap_script_NAME`) |
//! |---|---|
//! | a number the script only counts up (`lang::uses`) | a counter (`…_total`) |
//! | any other number | a gauge |
//! | a string | a gauge of 1, the string in the label `value` |
//! | an array | one series per element, keyed by the labels `key` (one key) or `key1`, `key2`, … (integers in decimal, strings as they are) |
//! | a statistic (`<<<`) | a histogram: `@count`, `@sum`, `@min`, `@max`, and the buckets of `@hist_log`/`@hist_linear` bound for bound ([`crate::stats`]) |
//! | `@avg` of a statistic, where the script asks for it | the gauge `gotap.script.NAME.avg` |
//!
//! Prometheus shows a histogram's count and sum as `_count` and `_sum`, its extremes
//! as the gauges `_min` and `_max`; OTLP carries all four in the histogram point.
//! Names are made Prometheus-safe by the exporters ([`crate::model::sanitize`]);
//! strings that are not UTF-8 are shown with U+FFFD in their place.

use bpf::script::{FieldKind, GlobalShape, GlobalSpec, ValueKind};
use lang::ast::StatOp;
use lang::uses::GlobalUse;
use runtime::globals::{self, Globals, GlobalsError, Value as ScriptValue};
use runtime::stats::{Hist, Stat};
use thiserror::Error;

use crate::model::{Desc, FamilyId, Kind, Labels, ModelError, Registry, ResourceId, Value};
use crate::names;

/// Why the globals could not be exported.
#[derive(Debug, Error)]
pub enum ScriptMetricsError {
    #[error(transparent)]
    Read(#[from] GlobalsError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// How one global is exported.
#[derive(Debug)]
enum Shape {
    Number,
    Text,
    Stats(Hist),
}

#[derive(Debug)]
struct Exported {
    spec: GlobalSpec,
    shape: Shape,
    family: FamilyId,
    kind: Kind,
    /// The `.avg` gauge of a statistic the script takes `@avg` of.
    avg: Option<FamilyId>,
}

/// A script's globals, registered as families of one resource; [`collect`] reads
/// them.
///
/// [`collect`]: ScriptMetrics::collect
#[derive(Debug)]
pub struct ScriptMetrics {
    globals: Vec<Exported>,
    resource: ResourceId,
}

impl ScriptMetrics {
    /// Registers a family per global of `globals` (the compiled script's), shaped by
    /// what `uses` (the checker's `lang::uses::global_uses`) says the script does
    /// with it.
    pub fn new(
        registry: &Registry,
        globals: &[GlobalSpec],
        uses: &[GlobalUse],
        resource: ResourceId,
    ) -> Result<ScriptMetrics, ScriptMetricsError> {
        let mut out = Vec::with_capacity(globals.len());
        for spec in globals {
            let usage = uses.iter().find(|u| u.name == spec.name);
            let counts_up = usage.is_some_and(|u| u.counts_up);
            let (shape, kind) = match &spec.shape {
                GlobalShape::Scalar { value, .. } | GlobalShape::Array { value, .. } => match value
                {
                    ValueKind::Long if counts_up => (Shape::Number, Kind::Counter),
                    ValueKind::Long => (Shape::Number, Kind::Gauge),
                    ValueKind::Str { .. } | ValueKind::Stack => (Shape::Text, Kind::Gauge),
                },
                GlobalShape::Stats { hist, .. } => {
                    let h = globals::hist(hist).map_err(|source| GlobalsError::Stats {
                        global: spec.name.clone(),
                        source,
                    })?;
                    (Shape::Stats(h), Kind::Histogram)
                }
            };
            let family = registry.register(&names::script_global(&spec.name, kind))?;
            let avg = match (&shape, usage) {
                (Shape::Stats(_), Some(u)) if u.uses(StatOp::Avg) => {
                    Some(registry.register(&avg_desc(&spec.name))?)
                }
                _ => None,
            };
            out.push(Exported {
                spec: spec.clone(),
                shape,
                family,
                kind,
                avg,
            });
        }
        Ok(ScriptMetrics {
            globals: out,
            resource,
        })
    }

    /// Reads every global and replaces its series with what it holds now.
    pub fn collect(
        &self,
        registry: &Registry,
        store: &mut dyn Globals,
    ) -> Result<(), ScriptMetricsError> {
        for g in &self.globals {
            let (key_kinds, value_kind): (&[FieldKind], _) = match &g.spec.shape {
                GlobalShape::Scalar { value, .. } => (&[], Some(*value)),
                GlobalShape::Array { keys, value } => (keys, Some(*value)),
                GlobalShape::Stats { keys, .. } => (keys, None),
            };
            let names = names::script_key_labels(key_kinds.len());
            let labels = |store: &mut dyn Globals, keys: &[ScriptValue]| -> Labels {
                if key_kinds.is_empty() {
                    return Vec::new();
                }
                names
                    .iter()
                    .zip(key_kinds.iter().zip(keys))
                    .map(|(n, (kind, k))| {
                        let stack = matches!(kind, FieldKind::Stack);
                        (n.clone(), label_value(store, k, stack))
                    })
                    .collect()
            };
            match &g.shape {
                Shape::Number | Shape::Text => {
                    let elements = if key_kinds.is_empty() {
                        vec![(Vec::new(), store.get(&g.spec, &[])?)]
                    } else {
                        store.entries(&g.spec)?
                    };
                    let stack = value_kind == Some(ValueKind::Stack);
                    let mut points = Vec::with_capacity(elements.len());
                    for (k, v) in &elements {
                        let mut l = labels(store, k);
                        let x = match (&g.shape, v) {
                            (Shape::Number, ScriptValue::Long(n)) => *n as f64,
                            _ => {
                                l.push(("value".to_string(), label_value(store, v, stack)));
                                1.0
                            }
                        };
                        let value = match g.kind {
                            Kind::Counter => Value::Counter(x),
                            _ => Value::Gauge(x),
                        };
                        points.push((l, value));
                    }
                    registry.replace(g.family, self.resource, points)?;
                }
                Shape::Stats(h) => {
                    let elements: Vec<(Vec<ScriptValue>, Stat)> = if key_kinds.is_empty() {
                        vec![(Vec::new(), store.stat(&g.spec, &[])?)]
                    } else {
                        store.stat_entries(&g.spec)?
                    };
                    let keyed: Vec<Labels> =
                        elements.iter().map(|(k, _)| labels(store, k)).collect();
                    registry.replace(
                        g.family,
                        self.resource,
                        keyed.iter().zip(&elements).map(|(l, (_, s))| {
                            (
                                l.clone(),
                                Value::Histogram(crate::stats::histogram(s, h, 1.0)),
                            )
                        }),
                    )?;
                    if let Some(avg) = g.avg {
                        registry.replace(
                            avg,
                            self.resource,
                            keyed.iter().zip(&elements).filter_map(|(l, (_, s))| {
                                s.avg().ok().map(|a| (l.clone(), Value::Gauge(a as f64)))
                            }),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `gotap.script.NAME.avg`: `@avg`, as the script computes it (`sum / count`,
/// truncated toward zero).
fn avg_desc(global: &str) -> Desc {
    Desc::new(
        &format!("gotap.script.{global}.avg"),
        "",
        Kind::Gauge,
        &format!("@avg of the script's statistic {global}."),
    )
}

/// A key or string value as a label value: integers in decimal, strings as they
/// are (bytes that are not UTF-8 as U+FFFD), a stack (`ubacktrace()`) as its
/// addresses in hex, as the script prints it, on one line.
fn label_value(store: &mut dyn Globals, v: &ScriptValue, stack: bool) -> String {
    match v {
        ScriptValue::Long(n) if stack => {
            let mut text = Vec::new();
            store.write_stack(*n as u64, &mut text);
            let text = String::from_utf8_lossy(&text);
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        }
        ScriptValue::Long(n) => n.to_string(),
        ScriptValue::Str(s) => String::from_utf8_lossy(s).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf::script::{FieldKind, HistSpec, ValueKind};
    use bpf::spec::MapId;
    use runtime::globals::MemGlobals;

    fn spec(name: &str, shape: GlobalShape) -> GlobalSpec {
        GlobalSpec {
            name: name.into(),
            map: MapId(0),
            shape,
            read: true,
        }
    }

    fn counted(name: &str) -> GlobalUse {
        GlobalUse {
            name: name.into(),
            counts_up: true,
            extractors: Vec::new(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn numbers_become_counters_or_gauges_and_keys_become_labels() {
        let hits = spec(
            "hits",
            GlobalShape::Array {
                keys: vec![FieldKind::Str { len: 16 }, FieldKind::Long],
                value: ValueKind::Long,
            },
        );
        let level = spec(
            "level",
            GlobalShape::Scalar {
                offset: 0,
                value: ValueKind::Long,
            },
        );
        let who = spec(
            "who",
            GlobalShape::Array {
                keys: vec![FieldKind::Long],
                value: ValueKind::Str { len: 16 },
            },
        );
        let mut mem = MemGlobals::new();
        let s = |x: &str| ScriptValue::Str(x.as_bytes().to_vec());
        mem.set(
            &hits,
            &[s("main.f"), ScriptValue::Long(-3)],
            ScriptValue::Long(7),
        )
        .unwrap();
        mem.set(
            &hits,
            &[s("main.g"), ScriptValue::Long(4)],
            ScriptValue::Long(2),
        )
        .unwrap();
        mem.set(&level, &[], ScriptValue::Long(-5)).unwrap();
        mem.set(&who, &[ScriptValue::Long(1)], s("gopher")).unwrap();
        let r = Registry::new(100);
        let m =
            ScriptMetrics::new(&r, &[hits, level, who], &[counted("hits")], ResourceId(1)).unwrap();
        m.collect(&r, &mut mem).unwrap();
        let snap = r.snapshot();
        let h = snap.family("gotap.script.hits").unwrap();
        assert_eq!(h.desc.kind, Kind::Counter);
        assert_eq!(h.desc.prometheus_name(), "gotap_script_hits_total");
        let got: Vec<(Labels, Value)> = h
            .points
            .iter()
            .map(|p| (p.labels.clone(), p.value.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    labels(&[("key1", "main.f"), ("key2", "-3")]),
                    Value::Counter(7.0)
                ),
                (
                    labels(&[("key1", "main.g"), ("key2", "4")]),
                    Value::Counter(2.0)
                ),
            ]
        );
        let l = snap.family("gotap.script.level").unwrap();
        assert_eq!(l.desc.kind, Kind::Gauge);
        assert_eq!(l.points[0].value, Value::Gauge(-5.0));
        assert!(l.points[0].labels.is_empty());
        let w = snap.family("gotap.script.who").unwrap();
        assert_eq!(
            w.points[0].labels,
            labels(&[("key", "1"), ("value", "gopher")])
        );
        assert_eq!(w.points[0].value, Value::Gauge(1.0));
    }

    #[test]
    fn statistics_become_histograms_with_their_buckets_and_avg() {
        let sizes = spec(
            "sizes",
            GlobalShape::Stats {
                keys: vec![],
                hist: HistSpec::Log,
            },
        );
        let lat = spec(
            "lat",
            GlobalShape::Stats {
                keys: vec![FieldKind::Long],
                hist: HistSpec::None,
            },
        );
        let mut mem = MemGlobals::new();
        for v in [1, 2, 3, 100] {
            mem.record(&sizes, &[], v).unwrap();
        }
        for v in [10, 11] {
            mem.record(&lat, &[ScriptValue::Long(7)], v).unwrap();
        }
        let uses = [GlobalUse {
            name: "lat".into(),
            counts_up: false,
            extractors: vec![StatOp::Count, StatOp::Avg],
        }];
        let r = Registry::new(100);
        let m = ScriptMetrics::new(&r, &[sizes, lat], &uses, ResourceId(1)).unwrap();
        m.collect(&r, &mut mem).unwrap();
        let snap = r.snapshot();
        let Value::Histogram(h) = &snap.family("gotap.script.sizes").unwrap().points[0].value
        else {
            panic!("not a histogram");
        };
        assert_eq!((h.count, h.sum), (4, 106.0));
        assert_eq!((h.min, h.max), (Some(1.0), Some(100.0)));
        // 1 ≤ 1, 2 and 3 ≤ 3, 100 ≤ 127, as @hist_log buckets them.
        let nonzero: Vec<(f64, u64)> = h.buckets().into_iter().filter(|b| b.1 > 0).collect();
        assert_eq!(nonzero, [(1.0, 1), (3.0, 2), (127.0, 1)]);
        assert!(snap.family("gotap.script.sizes.avg").is_none(), "no @avg");
        let lat = snap.family("gotap.script.lat").unwrap();
        assert_eq!(lat.points[0].labels, labels(&[("key", "7")]));
        let avg = snap.family("gotap.script.lat.avg").unwrap();
        assert_eq!(avg.desc.prometheus_name(), "gotap_script_lat_avg");
        assert_eq!(avg.points[0].value, Value::Gauge(10.0), "21 / 2, truncated");
    }

    #[test]
    fn each_collection_is_the_whole_truth() {
        let a = spec(
            "a",
            GlobalShape::Array {
                keys: vec![FieldKind::Long],
                value: ValueKind::Long,
            },
        );
        let mut mem = MemGlobals::new();
        mem.set(&a, &[ScriptValue::Long(1)], ScriptValue::Long(1))
            .unwrap();
        let r = Registry::new(100);
        let m = ScriptMetrics::new(&r, std::slice::from_ref(&a), &[], ResourceId(1)).unwrap();
        m.collect(&r, &mut mem).unwrap();
        mem.delete(&a, Some(&[ScriptValue::Long(1)])).unwrap();
        mem.set(&a, &[ScriptValue::Long(2)], ScriptValue::Long(5))
            .unwrap();
        m.collect(&r, &mut mem).unwrap();
        let snap = r.snapshot();
        let pts = &snap.family("gotap.script.a").unwrap().points;
        assert_eq!(pts.len(), 1);
        assert_eq!(pts[0].labels, labels(&[("key", "2")]));
    }
}
