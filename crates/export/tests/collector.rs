//! OTLP pushes to the real OpenTelemetry Collector (`scripts/install-peers`), read
//! back from its file exporter: names, types, resource attributes and values as the
//! collector decoded them, and what happens when it is down, frozen, or the agent
//! is told to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use export::push::Pusher;
use export::{
    Kind, LogEvent, OtlpConfig, ProcessFacts, Registry, ResourceEnv, ResourceId, Value, names,
};
use runtime::stats::{Hist, Stat};
use testprogs::peers::{Collector, Json, attribute, free_port, metric_points};

fn config(endpoint: &str, interval_ms: u64, timeout_ms: u64) -> OtlpConfig {
    OtlpConfig {
        metrics_url: format!("{endpoint}/v1/metrics"),
        logs_url: format!("{endpoint}/v1/logs"),
        profiles_url: format!("{endpoint}/v1development/profiles"),
        headers: vec![("x-gotap-test".into(), "1".into())],
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
    }
}

fn process_resource(pid: u32) -> export::Resource {
    ResourceEnv::from_env(|_| None).process(&ProcessFacts {
        pid,
        executable: "/srv/shop/api".into(),
        main_module: Some("example.com/shop/api".into()),
        go_version: Some("go1.25.5".into()),
        container_id: Some("4f1c2e".into()),
        pod_uid: Some("0b3c9d7e-1111-2222-3333-444455556666".into()),
    })
}

/// The value of a counter point from the collector's JSON.
fn number(p: &Json) -> f64 {
    p["asDouble"]
        .as_f64()
        .or_else(|| p["asInt"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn counter_value(reqs: &[Json], metric: &str, label: Option<(&str, &str)>) -> Option<f64> {
    metric_points(reqs)
        .iter()
        .rev()
        .find(|(_, m, p)| {
            m["name"] == metric
                && label.is_none_or(|(k, v)| attribute(&p["attributes"], k).as_deref() == Some(v))
        })
        .map(|(_, _, p)| number(p))
}

#[test]
fn metrics_and_logs_reach_the_real_collector_with_names_types_resources_and_values() {
    let col = Collector::start();
    let reg = Arc::new(Registry::new(100));
    let pid = ResourceId(4242);
    reg.set_resource(pid, process_resource(4242));
    let calls = reg.register(&names::FUNCTION_CALLS.desc()).unwrap();
    reg.replace(
        calls,
        pid,
        [(
            vec![("function".into(), "main.leaf".into())],
            Value::Counter(3000.0),
        )],
    )
    .unwrap();
    let gor = reg.register(&names::GOROUTINES.desc()).unwrap();
    reg.add(gor, pid, vec![], 17.0).unwrap();
    // A statistics aggregate as the kernel leaves it: nanoseconds, log buckets.
    let mut st = Stat::new(&Hist::Log);
    for ns in [1_500, 3_000, 3_500, 1_000_000] {
        st.add(&Hist::Log, ns);
    }
    let pause = reg.register(&names::GC_PAUSE.desc()).unwrap();
    reg.replace(
        pause,
        pid,
        [(
            vec![],
            Value::Histogram(export::stats::histogram(&st, &Hist::Log, 1e-9)),
        )],
    )
    .unwrap();
    let pusher = Pusher::start(config(&col.endpoint(), 200, 2000), reg.clone()).unwrap();
    pusher.log(LogEvent {
        resource: pid,
        time: std::time::SystemTime::now(),
        body: "runtime: newstack: 2048 -> 4096".into(),
        probe: "go.stack.grow".into(),
        goid: Some(17),
    });
    let reqs = col.wait_for(Duration::from_secs(20), |reqs| {
        let points = metric_points(reqs);
        let logs = reqs.iter().any(|r| r.get("resourceLogs").is_some());
        (points.iter().any(|(_, m, _)| m["name"] == "go.gc.pause") && logs).then(|| reqs.to_vec())
    });
    let points = metric_points(&reqs);
    let (attrs, m, p) = points
        .iter()
        .find(|(_, m, _)| m["name"] == "go.function.calls")
        .expect("go.function.calls");
    assert_eq!(m["unit"], "{call}");
    assert_eq!(m["sum"]["isMonotonic"], true);
    // Cumulative is 2 in OTLP's enum.
    assert_eq!(m["sum"]["aggregationTemporality"], 2);
    assert_eq!(number(p), 3000.0);
    assert_eq!(
        attribute(&p["attributes"], "function").as_deref(),
        Some("main.leaf")
    );
    for (k, v) in [
        ("service.name", "example.com/shop/api"),
        ("process.pid", "4242"),
        ("process.executable.path", "/srv/shop/api"),
        ("process.runtime.name", "go"),
        ("process.runtime.version", "go1.25.5"),
        ("container.id", "4f1c2e"),
        ("k8s.pod.uid", "0b3c9d7e-1111-2222-3333-444455556666"),
    ] {
        assert_eq!(attribute(attrs, k).as_deref(), Some(v), "{k}");
    }
    assert!(attribute(attrs, "host.name").is_some());
    let (_, m, p) = points
        .iter()
        .find(|(_, m, _)| m["name"] == "go.goroutines")
        .unwrap();
    assert!(m.get("gauge").is_some(), "{m}");
    assert_eq!(number(p), 17.0);
    let (_, m, p) = points
        .iter()
        .find(|(_, m, _)| m["name"] == "go.gc.pause")
        .unwrap();
    assert_eq!(m["unit"], "s");
    assert_eq!(p["count"], "4");
    assert!((p["sum"].as_f64().unwrap() - 0.001008).abs() < 1e-12, "{p}");
    assert_eq!(p["min"].as_f64(), Some(1.5e-6));
    assert_eq!(p["max"].as_f64(), Some(1e-3));
    // Every value is in the bucket whose bound is the first at or above it.
    let bounds: Vec<f64> = p["explicitBounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_f64().unwrap())
        .collect();
    let counts: Vec<u64> = p["bucketCounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().parse().unwrap())
        .collect();
    let mut want = vec![0u64; bounds.len() + 1];
    for ns in [1_500.0, 3_000.0, 3_500.0, 1_000_000.0] {
        want[bounds.partition_point(|b| *b < ns * 1e-9)] += 1;
    }
    assert_eq!(counts, want);
    let log = reqs
        .iter()
        .find_map(|r| r.get("resourceLogs"))
        .and_then(|rl| rl[0]["scopeLogs"][0]["logRecords"][0].as_object().cloned())
        .expect("a log record");
    assert_eq!(
        log["body"]["stringValue"],
        "runtime: newstack: 2048 -> 4096"
    );
    let la = Json::Array(log["attributes"].as_array().unwrap().clone());
    assert_eq!(
        attribute(&la, "gotap.probe").as_deref(),
        Some("go.stack.grow")
    );
    assert_eq!(attribute(&la, "go.goroutine.id").as_deref(), Some("17"));
    let report = pusher.shutdown(Duration::from_millis(500));
    assert!(report.sent >= 2, "{report:?}");
}

#[test]
fn a_collector_that_is_down_then_back_gets_the_counts_and_the_failures() {
    let port = free_port();
    let reg = Arc::new(Registry::new(100));
    let calls = reg.register(&names::FUNCTION_CALLS.desc()).unwrap();
    reg.replace(
        calls,
        export::AGENT,
        [(
            vec![("function".into(), "main.f".into())],
            Value::Counter(7.0),
        )],
    )
    .unwrap();
    let pusher = Pusher::start(
        config(&format!("http://127.0.0.1:{port}"), 100, 500),
        reg.clone(),
    )
    .unwrap();
    // Nobody listens: requests fail and are counted, the batches wait.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let snap = reg.snapshot();
        let failed = snap
            .family("gotap.export.failed.requests")
            .map(|f| f.points.len())
            .unwrap_or(0);
        if failed > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no failed request counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let col = Collector::start_on(port);
    let failed = col.wait_for(Duration::from_secs(30), |reqs| {
        counter_value(
            reqs,
            "gotap.export.failed.requests",
            Some(("signal", "metrics")),
        )
        .filter(|_| counter_value(reqs, "go.function.calls", None) == Some(7.0))
    });
    assert!(failed >= 1.0);
    pusher.shutdown(Duration::from_millis(500));
}

#[test]
fn a_frozen_collector_fills_the_queue_which_drops_its_oldest_and_counts() {
    let col = Collector::start();
    let reg = Arc::new(Registry::new(100));
    let g = reg
        .register(&export::Desc::new(
            "gotap.test.tick",
            "",
            Kind::Counter,
            "A tick.",
        ))
        .unwrap();
    reg.add(g, export::AGENT, vec![], 1.0).unwrap();
    col.freeze();
    let pusher = Pusher::start(config(&col.endpoint(), 10, 100), reg.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dropped = reg
            .snapshot()
            .family("gotap.export.dropped.batches")
            .map(|f| f.points.len())
            .unwrap_or(0);
        if dropped > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the queue never dropped a batch");
        std::thread::sleep(Duration::from_millis(50));
    }
    col.resume();
    let dropped = col.wait_for(Duration::from_secs(30), |reqs| {
        counter_value(
            reqs,
            "gotap.export.dropped.batches",
            Some(("signal", "metrics")),
        )
    });
    assert!(dropped >= 1.0);
    let report = pusher.shutdown(Duration::from_millis(500));
    assert!(report.dropped >= 1, "{report:?}");
}

#[test]
fn shutdown_with_a_frozen_collector_ends_within_1s() {
    let col = Collector::start();
    let reg = Arc::new(Registry::new(100));
    col.freeze();
    let pusher = Pusher::start(config(&col.endpoint(), 50, 10_000), reg).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let report = pusher.shutdown(Duration::from_millis(500));
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    assert!(report.unsent_at_exit >= 1, "{report:?}");
}

/// A profile of two stacks (one with an inlined frame) and two sample types.
fn two_stack_profile() -> runtime::pprof::Profile {
    use runtime::pprof::{Frame, LabelValue, Profile};
    let frame = |f: &str, line| Frame {
        function: f.into(),
        file: "/src/shop/main.go".into(),
        line,
    };
    let mut p = Profile::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_101_010,
        1_700_000_000_000_000_000,
        2_000_000_000,
    );
    let main = (0x4010, vec![frame("main.main", 30)]);
    p.add(
        &[
            (0x4020, vec![frame("main.leaf", 3), frame("main.work", 12)]),
            main.clone(),
        ],
        &[5, 50_505_050],
        &[("goroutine", LabelValue::Num(1))],
    );
    p.add(
        &[(0x4030, vec![frame("main.other", 20)]), main],
        &[2, 20_202_020],
        &[("goroutine", LabelValue::Num(9))],
    );
    p
}

/// `(sample type, leaf function, value)` of every sample in the collector's
/// profile requests, read through each request's dictionary.
fn profile_samples(reqs: &[Json]) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for r in reqs {
        let d = &r["dictionary"];
        let text = |i: &Json| {
            d["stringTable"][i.as_u64().unwrap_or(0) as usize]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        let at = |t: &str, i: &Json| d[t][i.as_u64().unwrap_or(0) as usize].clone();
        for rp in r["resourceProfiles"].as_array().into_iter().flatten() {
            for sp in rp["scopeProfiles"].as_array().into_iter().flatten() {
                for p in sp["profiles"].as_array().into_iter().flatten() {
                    let ty = text(&p["sampleType"]["typeStrindex"]);
                    for s in p["samples"].as_array().into_iter().flatten() {
                        let stack = at("stackTable", &s["stackIndex"]);
                        let leaf = at("locationTable", &stack["locationIndices"][0]);
                        let f = at("functionTable", &leaf["lines"][0]["functionIndex"]);
                        let v = &s["values"][0];
                        let v = v
                            .as_i64()
                            .or_else(|| v.as_str()?.parse().ok())
                            .unwrap_or(-1);
                        out.push((ty.clone(), text(&f["nameStrindex"]), v));
                    }
                }
            }
        }
    }
    out
}

/// A resource attribute of a profile request. The Collector's file exporter writes
/// the keys and string values of a profile's resource through the request's string
/// table (`keyStrindex`, `stringValueStrindex`), though gotap sends them inline.
fn profile_resource(req: &Json, key: &str) -> Option<String> {
    let strings = &req["dictionary"]["stringTable"];
    let text = |i: &Json| strings[i.as_u64()? as usize].as_str().map(str::to_string);
    req["resourceProfiles"][0]["resource"]["attributes"]
        .as_array()?
        .iter()
        .find(|a| {
            a["key"]
                .as_str()
                .map(str::to_string)
                .or_else(|| text(&a["keyStrindex"]))
                .as_deref()
                == Some(key)
        })
        .and_then(|a| {
            let v = &a["value"];
            v["stringValue"]
                .as_str()
                .map(str::to_string)
                .or_else(|| text(&v["stringValueStrindex"]))
        })
}

#[test]
fn a_profile_reaches_a_collector_that_takes_profiles_and_a_404_from_one_that_does_not() {
    let col = Collector::start_with_profiles();
    let c = config(&col.endpoint(), 60_000, 5_000);
    let req = export::profiles::request(&two_stack_profile(), &process_resource(4242));
    export::profiles::send(&c, &req, Duration::from_secs(5)).expect("the collector takes it");
    let got = col.wait_for(Duration::from_secs(10), |reqs| {
        let s = profile_samples(reqs);
        (!s.is_empty()).then_some((s, reqs.to_vec()))
    });
    let mut samples = got.0;
    samples.sort();
    assert_eq!(
        samples,
        [
            ("cpu".into(), "main.leaf".into(), 50_505_050),
            ("cpu".into(), "main.other".into(), 20_202_020),
            ("samples".into(), "main.leaf".into(), 5),
            ("samples".into(), "main.other".into(), 2),
        ]
    );
    assert_eq!(
        profile_resource(&got.1[0], "service.name").as_deref(),
        Some("example.com/shop/api")
    );
    // The collector the other tests start has no profiles pipeline.
    let plain = Collector::start();
    let e = export::profiles::send(
        &config(&plain.endpoint(), 60_000, 5_000),
        &req,
        Duration::from_secs(5),
    )
    .expect_err("no profiles pipeline");
    assert!(
        matches!(e, export::profiles::SendError::Refused { status: 404, .. }),
        "{e}"
    );
}
