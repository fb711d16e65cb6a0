//! The metric model every exporter reads: families (a name, a unit, a kind, a help
//! line), each with series keyed by the resource (one traced process, or the agent)
//! and a label set, holding cumulative values. Sources *replace* a resource's series
//! of a family with what they read (a BPF map holds running totals, so each read is
//! the whole truth) or *add* to a counter; exporters take a [`Snapshot`].
//!
//! A family holds at most [`Registry::series_limit`] series. Past it, new label sets
//! are folded into one overflow series per resource, labelled
//! `otel.metric.overflow="true"` as the OpenTelemetry SDKs do; how many series are
//! folded is the gauge `gotap.export.series.overflow{metric}`, and the first time is
//! warned about once per family: memory stays bounded whatever a script keys its
//! arrays by.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

use thiserror::Error;

use crate::names;
use crate::resource::Resource;

/// What kind of values a family holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic running total (an OTLP cumulative monotonic sum; a Prometheus
    /// counter, whose name gets `_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution: count, sum, min, max and, when the source has them, buckets.
    Histogram,
}

/// A family's description. `name` is the OpenTelemetry name (dotted, no unit, no
/// `_total`: `go.function.calls`); `unit` is UCUM (`s`, `By`, `{call}`); the
/// Prometheus name is derived from both ([`Desc::prometheus_base`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desc {
    pub name: String,
    pub unit: String,
    pub help: String,
    pub kind: Kind,
}

impl Desc {
    pub fn new(name: &str, unit: &str, kind: Kind, help: &str) -> Desc {
        Desc {
            name: name.to_string(),
            unit: unit.to_string(),
            help: help.to_string(),
            kind,
        }
    }

    /// The Prometheus name without the unit and `_total` suffixes, as the
    /// OpenTelemetry-to-Prometheus compatibility rules make it: every character
    /// outside `[a-zA-Z0-9_:]` becomes `_`.
    pub fn prometheus_base(&self) -> String {
        sanitize(&self.name)
    }

    /// The unit suffix Prometheus names carry (`seconds`, `bytes`), if the UCUM unit
    /// has one; annotations such as `{call}` have none.
    pub fn prometheus_unit(&self) -> Option<&'static str> {
        match self.unit.as_str() {
            "s" => Some("seconds"),
            "ms" => Some("milliseconds"),
            "us" => Some("microseconds"),
            "ns" => Some("nanoseconds"),
            "By" => Some("bytes"),
            "1" if self.kind == Kind::Gauge => Some("ratio"),
            _ => None,
        }
    }

    /// The full Prometheus name of the family's samples (without `_bucket`-style
    /// suffixes): `go_function_calls_total`, `go_gc_pause_seconds`.
    pub fn prometheus_name(&self) -> String {
        let mut n = self.prometheus_base();
        if let Some(u) = self.prometheus_unit() {
            n.push('_');
            n.push_str(u);
        }
        if self.kind == Kind::Counter {
            n.push_str("_total");
        }
        n
    }
}

/// A Prometheus-safe name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// A series' labels, in the order the source gives them.
pub type Labels = Vec<(String, String)>;

/// Which resource a series belongs to: chosen by the caller (the agent uses one per
/// traced process and [`AGENT`] for itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId(pub u64);

/// The agent's own resource.
pub const AGENT: ResourceId = ResourceId(0);

/// One series' cumulative value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Counter(f64),
    Gauge(f64),
    Histogram(Histogram),
}

impl Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Counter(_) => Kind::Counter,
            Value::Gauge(_) => Kind::Gauge,
            Value::Histogram(_) => Kind::Histogram,
        }
    }

    /// Folds `other` into `self` (for the overflow series): sums, and for
    /// histograms the buckets too when both have the same bounds.
    fn fold(&mut self, other: &Value) {
        match (self, other) {
            (Value::Counter(a), Value::Counter(b)) | (Value::Gauge(a), Value::Gauge(b)) => *a += b,
            (Value::Histogram(a), Value::Histogram(b)) => a.fold(b),
            _ => {}
        }
    }
}

/// A distribution with explicit bucket bounds. `counts[i]` counts the values in
/// `(bounds[i-1], bounds[i]]` (upper bounds inclusive, as Prometheus' `le` and OTLP's
/// explicit bounds mean them), and the last count those above every bound:
/// `counts.len() == bounds.len() + 1`. No bounds at all is a count and a sum.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Histogram {
    /// A histogram of nothing, with `bounds`.
    pub fn empty(bounds: Vec<f64>) -> Histogram {
        let counts = vec![0; bounds.len() + 1];
        Histogram {
            bounds,
            counts,
            count: 0,
            sum: 0.0,
            min: None,
            max: None,
        }
    }

    /// Adds one value: what a source that sees single values does.
    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.count += 1;
        self.sum += v;
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }

    /// `(upper bound, count)` per bucket, the last bound `+Inf`; not cumulative
    /// (the Prometheus encoder adds them up into its `le` buckets).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| (self.bounds.get(i).copied().unwrap_or(f64::INFINITY), *c))
            .collect()
    }

    fn fold(&mut self, other: &Histogram) {
        if self.bounds == other.bounds {
            for (a, b) in self.counts.iter_mut().zip(&other.counts) {
                *a += b;
            }
        } else {
            // Different layouts cannot be merged bucket by bucket: the folded
            // values go above every bound, so the count stays right.
            if let Some(last) = self.counts.last_mut() {
                *last += other.count;
            }
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Errors in using the model.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("metric {name}: registered as a {old:?}, now asked for as a {new:?}")]
    KindConflict { name: String, old: Kind, new: Kind },
    #[error("metric {name}: a {value:?} value given to a {kind:?} family")]
    ValueKind {
        name: String,
        kind: Kind,
        value: Kind,
    },
    #[error("no metric family number {0}")]
    NoFamily(usize),
}

/// A registered family's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FamilyId(usize);

/// One series in a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub resource: ResourceId,
    pub labels: Labels,
    /// When the series began counting (OTLP's `start_time_unix_nano`).
    pub start: SystemTime,
    pub value: Value,
}

/// One family in a snapshot, its points sorted by resource and labels.
#[derive(Clone, Debug)]
pub struct FamilySnapshot {
    pub desc: Desc,
    pub points: Vec<Point>,
}

/// Everything at one moment: what an exporter encodes.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub time: SystemTime,
    pub resources: BTreeMap<ResourceId, Resource>,
    pub families: Vec<FamilySnapshot>,
}

impl Snapshot {
    /// The family named `name` (its OpenTelemetry name), for tests and tools.
    pub fn family(&self, name: &str) -> Option<&FamilySnapshot> {
        self.families.iter().find(|f| f.desc.name == name)
    }

    /// The number of series, all families together.
    pub fn series(&self) -> usize {
        self.families.iter().map(|f| f.points.len()).sum()
    }
}

struct Series {
    start: SystemTime,
    value: Value,
}

struct Family {
    desc: Desc,
    /// Series folded into the overflow series, by resource.
    folded: HashMap<ResourceId, u64>,
    series: HashMap<(ResourceId, Labels), Series>,
    /// Series per resource, overflow series excluded: to find a resource's series
    /// without scanning, and to count against the limit.
    regular: usize,
    warned: bool,
}

struct State {
    families: Vec<Family>,
    by_name: HashMap<String, FamilyId>,
    resources: BTreeMap<ResourceId, Resource>,
    overflow: FamilyId,
}

/// The store sources write and exporters read; shared between threads.
pub struct Registry {
    state: Mutex<State>,
    limit: usize,
}

/// The label that marks the overflow series.
pub const OVERFLOW_LABEL: &str = "otel.metric.overflow";

impl Registry {
    /// A registry whose families hold at most `series_limit` series each.
    pub fn new(series_limit: usize) -> Registry {
        let overflow = names::series_overflow();
        let mut by_name = HashMap::new();
        by_name.insert(overflow.name.clone(), FamilyId(0));
        Registry {
            state: Mutex::new(State {
                families: vec![Family::new(overflow)],
                by_name,
                resources: BTreeMap::new(),
                overflow: FamilyId(0),
            }),
            limit: series_limit.max(1),
        }
    }

    pub fn series_limit(&self) -> usize {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind; the
        // exporters may still read it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `desc` (again, which returns the same handle) and returns its handle.
    pub fn register(&self, desc: &Desc) -> Result<FamilyId, ModelError> {
        let mut s = self.lock();
        if let Some(id) = s.by_name.get(&desc.name).copied() {
            let old = s.families[id.0].desc.kind;
            if old != desc.kind {
                return Err(ModelError::KindConflict {
                    name: desc.name.clone(),
                    old,
                    new: desc.kind,
                });
            }
            return Ok(id);
        }
        let id = FamilyId(s.families.len());
        s.families.push(Family::new(desc.clone()));
        s.by_name.insert(desc.name.clone(), id);
        Ok(id)
    }

    /// Sets (or replaces) a resource's attributes.
    pub fn set_resource(&self, id: ResourceId, resource: Resource) {
        self.lock().resources.insert(id, resource);
    }

    /// Forgets a resource and every series it had: a process that exited.
    pub fn remove_resource(&self, id: ResourceId) {
        let mut s = self.lock();
        s.resources.remove(&id);
        let overflow_id = s.overflow;
        let mut refolded = Vec::new();
        for f in &mut s.families {
            if f.folded.remove(&id).is_some() {
                refolded.push((f.desc.name.clone(), f.folded.values().sum::<u64>()));
            }
            f.series.retain(|(r, labels), _| {
                if *r != id {
                    return true;
                }
                if !is_overflow(labels) {
                    f.regular -= 1;
                }
                false
            });
        }
        for (name, total) in refolded {
            set_overflow(&mut s, overflow_id, &name, total, SystemTime::now());
        }
    }

    /// Replaces the series of `resource` in `family` by `points`: a source that reads
    /// running totals gives the whole truth each time. Series that continue keep their
    /// start time; past the family's limit, points are folded into the overflow series.
    pub fn replace(
        &self,
        family: FamilyId,
        resource: ResourceId,
        points: impl IntoIterator<Item = (Labels, Value)>,
    ) -> Result<(), ModelError> {
        let now = SystemTime::now();
        let limit = self.limit;
        let mut s = self.lock();
        let overflow_id = s.overflow;
        let f = s
            .families
            .get_mut(family.0)
            .ok_or(ModelError::NoFamily(family.0))?;
        let mut old: HashMap<Labels, SystemTime> = HashMap::new();
        f.series.retain(|(r, labels), series| {
            if *r != resource {
                return true;
            }
            old.insert(labels.clone(), series.start);
            false
        });
        f.regular -= old.keys().filter(|l| !is_overflow(l)).count();
        let mut folded = 0u64;
        for (labels, value) in points {
            if value.kind() != f.desc.kind {
                return Err(ModelError::ValueKind {
                    name: f.desc.name.clone(),
                    kind: f.desc.kind,
                    value: value.kind(),
                });
            }
            if f.regular < limit {
                let start = old.get(&labels).copied().unwrap_or(now);
                f.series.insert((resource, labels), Series { start, value });
                f.regular += 1;
            } else {
                let key = (resource, overflow_labels());
                let start = old.get(&key.1).copied().unwrap_or(now);
                f.series
                    .entry(key)
                    .and_modify(|s| s.value.fold(&value))
                    .or_insert(Series { start, value });
                folded += 1;
            }
        }
        let changed = f.folded.get(&resource).copied().unwrap_or(0) != folded;
        if folded > 0 {
            f.warn_once(limit);
            f.folded.insert(resource, folded);
        } else {
            f.folded.remove(&resource);
        }
        if changed {
            let (name, total) = (f.desc.name.clone(), f.folded.values().sum());
            set_overflow(&mut s, overflow_id, &name, total, now);
        }
        Ok(())
    }

    /// Adds `delta` to a counter kept in user space (or sets a gauge to `delta`).
    pub fn add(
        &self,
        family: FamilyId,
        resource: ResourceId,
        labels: Labels,
        delta: f64,
    ) -> Result<(), ModelError> {
        let now = SystemTime::now();
        let limit = self.limit;
        let mut s = self.lock();
        let overflow_id = s.overflow;
        let f = s
            .families
            .get_mut(family.0)
            .ok_or(ModelError::NoFamily(family.0))?;
        let value = match f.desc.kind {
            Kind::Counter => Value::Counter(delta),
            Kind::Gauge => Value::Gauge(delta),
            Kind::Histogram => {
                return Err(ModelError::ValueKind {
                    name: f.desc.name.clone(),
                    kind: Kind::Histogram,
                    value: Kind::Counter,
                });
            }
        };
        let key = (resource, labels);
        if let Some(series) = f.series.get_mut(&key) {
            match (&mut series.value, value) {
                (Value::Counter(a), Value::Counter(d)) => *a += d,
                (Value::Gauge(a), Value::Gauge(d)) => *a = d,
                _ => {}
            }
            return Ok(());
        }
        if f.regular < limit {
            f.series.insert(key, Series { start: now, value });
            f.regular += 1;
            return Ok(());
        }
        f.series
            .entry((resource, overflow_labels()))
            .and_modify(|s| s.value.fold(&value))
            .or_insert(Series { start: now, value });
        f.warn_once(limit);
        // A label set added in user space is not remembered once folded, so each
        // fold counts: the agent's own families stay far below any limit.
        *f.folded.entry(resource).or_default() += 1;
        let (name, total) = (f.desc.name.clone(), f.folded.values().sum());
        set_overflow(&mut s, overflow_id, &name, total, now);
        Ok(())
    }

    /// A consistent copy of everything, sorted.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.lock();
        let families = s
            .families
            .iter()
            .filter(|f| !f.series.is_empty())
            .map(|f| {
                let mut points: Vec<Point> = f
                    .series
                    .iter()
                    .map(|((r, labels), series)| Point {
                        resource: *r,
                        labels: labels.clone(),
                        start: series.start,
                        value: series.value.clone(),
                    })
                    .collect();
                points.sort_by(|a, b| (a.resource, &a.labels).cmp(&(b.resource, &b.labels)));
                FamilySnapshot {
                    desc: f.desc.clone(),
                    points,
                }
            })
            .collect();
        Snapshot {
            time: SystemTime::now(),
            resources: s.resources.clone(),
            families,
        }
    }
}

impl Family {
    fn new(desc: Desc) -> Family {
        Family {
            desc,
            folded: HashMap::new(),
            series: HashMap::new(),
            regular: 0,
            warned: false,
        }
    }

    fn warn_once(&mut self, limit: usize) {
        if !self.warned {
            self.warned = true;
            eprintln!(
                "gotap: metric {} has more than {limit} series; the rest are summed into one labelled {OVERFLOW_LABEL}=\"true\"",
                self.desc.name
            );
        }
    }
}

fn overflow_labels() -> Labels {
    vec![(OVERFLOW_LABEL.to_string(), "true".to_string())]
}

fn is_overflow(labels: &Labels) -> bool {
    labels.len() == 1 && labels[0].0 == OVERFLOW_LABEL
}

fn set_overflow(s: &mut State, id: FamilyId, metric: &str, folded: u64, now: SystemTime) {
    let f = &mut s.families[id.0];
    let key = (AGENT, vec![("metric".to_string(), metric.to_string())]);
    match f.series.get_mut(&key) {
        Some(series) => series.value = Value::Gauge(folded as f64),
        None => {
            f.series.insert(
                key,
                Series {
                    start: now,
                    value: Value::Gauge(folded as f64),
                },
            );
            f.regular += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(k: &str, v: &str) -> Labels {
        vec![(k.to_string(), v.to_string())]
    }

    #[test]
    fn prometheus_names_follow_the_otel_compatibility_rules() {
        let calls = Desc::new("go.function.calls", "{call}", Kind::Counter, "");
        assert_eq!(calls.prometheus_name(), "go_function_calls_total");
        let pause = Desc::new("go.gc.pause", "s", Kind::Histogram, "");
        assert_eq!(pause.prometheus_name(), "go_gc_pause_seconds");
        let off = Desc::new("go.offcpu", "s", Kind::Counter, "");
        assert_eq!(off.prometheus_name(), "go_offcpu_seconds_total");
        let g = Desc::new("go.goroutines", "{goroutine}", Kind::Gauge, "");
        assert_eq!(g.prometheus_name(), "go_goroutines");
        assert_eq!(sanitize("gotap.script.9lives-x"), "gotap_script_9lives_x");
        assert_eq!(sanitize("1a"), "_1a");
    }

    #[test]
    fn replace_keeps_start_times_and_drops_series_that_went_away() {
        let r = Registry::new(10);
        let f = r
            .register(&Desc::new("go.function.calls", "{call}", Kind::Counter, ""))
            .unwrap();
        let p = ResourceId(7);
        r.replace(
            f,
            p,
            [
                (labels("function", "main.a"), Value::Counter(1.0)),
                (labels("function", "main.b"), Value::Counter(2.0)),
            ],
        )
        .unwrap();
        let first = r.snapshot();
        let start = first.family("go.function.calls").unwrap().points[0].start;
        r.replace(f, p, [(labels("function", "main.a"), Value::Counter(5.0))])
            .unwrap();
        let snap = r.snapshot();
        let fam = snap.family("go.function.calls").unwrap();
        assert_eq!(fam.points.len(), 1);
        assert_eq!(fam.points[0].value, Value::Counter(5.0));
        assert_eq!(fam.points[0].start, start);
    }

    #[test]
    fn past_the_limit_points_fold_into_one_overflow_series_and_are_counted() {
        let r = Registry::new(3);
        let f = r
            .register(&Desc::new("gotap.script.hits", "1", Kind::Counter, ""))
            .unwrap();
        let points: Vec<(Labels, Value)> = (0..10)
            .map(|i| (labels("key", &i.to_string()), Value::Counter(f64::from(i))))
            .collect();
        r.replace(f, ResourceId(1), points).unwrap();
        let snap = r.snapshot();
        let fam = snap.family("gotap.script.hits").unwrap();
        assert_eq!(fam.points.len(), 4, "3 series and the overflow");
        let total: f64 = fam
            .points
            .iter()
            .map(|p| match p.value {
                Value::Counter(c) => c,
                _ => 0.0,
            })
            .sum();
        assert_eq!(total, 45.0, "nothing is lost, only merged");
        let over = fam.points.iter().find(|p| is_overflow(&p.labels)).unwrap();
        assert_eq!(
            over.value,
            Value::Counter(3.0 + 4.0 + 5.0 + 6.0 + 7.0 + 8.0 + 9.0)
        );
        let warned = snap.family("gotap.export.series.overflow").unwrap();
        assert_eq!(
            warned.points[0].labels,
            labels("metric", "gotap.script.hits")
        );
        assert_eq!(warned.points[0].value, Value::Gauge(7.0));
        // Replacing again does not grow anything.
        let points: Vec<(Labels, Value)> = (0..10)
            .map(|i| (labels("key", &i.to_string()), Value::Counter(f64::from(i))))
            .collect();
        r.replace(f, ResourceId(1), points).unwrap();
        assert_eq!(
            r.snapshot()
                .family("gotap.script.hits")
                .unwrap()
                .points
                .len(),
            4
        );
    }

    #[test]
    fn removing_a_resource_frees_its_series_and_its_room_under_the_limit() {
        let r = Registry::new(2);
        let f = r
            .register(&Desc::new("go.goroutines", "{goroutine}", Kind::Gauge, ""))
            .unwrap();
        r.add(f, ResourceId(1), vec![], 3.0).unwrap();
        r.add(f, ResourceId(2), vec![], 4.0).unwrap();
        r.remove_resource(ResourceId(1));
        r.add(f, ResourceId(3), vec![], 5.0).unwrap();
        let snap = r.snapshot();
        let fam = snap.family("go.goroutines").unwrap();
        let ids: Vec<u64> = fam.points.iter().map(|p| p.resource.0).collect();
        assert_eq!(ids, [2, 3]);
        assert!(snap.family("gotap.export.series.overflow").is_none());
    }

    #[test]
    fn a_name_is_one_kind() {
        let r = Registry::new(10);
        r.register(&Desc::new("x", "1", Kind::Counter, "")).unwrap();
        assert!(matches!(
            r.register(&Desc::new("x", "1", Kind::Gauge, "")),
            Err(ModelError::KindConflict { .. })
        ));
        let f = r.register(&Desc::new("x", "1", Kind::Counter, "")).unwrap();
        assert!(matches!(
            r.replace(f, AGENT, [(vec![], Value::Gauge(1.0))]),
            Err(ModelError::ValueKind { .. })
        ));
    }

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let mut h = Histogram::empty(vec![0.0, 1.0, 3.0]);
        for v in [0.0, 1.0, 2.0, 3.0, 4.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, [1, 1, 2, 1]);
        assert_eq!(
            h.buckets(),
            [(0.0, 1), (1.0, 1), (3.0, 2), (f64::INFINITY, 1)]
        );
        assert_eq!((h.min, h.max, h.sum), (Some(0.0), Some(4.0), 10.0));
    }
}
