//! The one-shot commands' `--prometheus` and `--otlp` with the real engines: a
//! Prometheus server scraping gotap while a script runs, an OpenTelemetry Collector
//! receiving its pushes and its printed lines as logs. The traced program
//! (`tests/testprogs/export_work.go`) counts its own calls of `main.handle`, the sizes
//! it passes in `@hist_log`'s buckets, their count and average, and the goroutine it
//! calls from, and prints them; every number exported is compared with those. Needs
//! root.

mod common;
mod live;

use common::*;
use live::*;
use std::path::Path;
use std::time::Duration;
use testprogs::peers::{self, Collector, Json, Prometheus, as_u64, points};

const LONG: Duration = Duration::from_secs(60);

/// The script every test runs: a counter array keyed by a string and an integer, a
/// statistic read with `@hist_log`, `@count` and `@avg`, and a printed line per call.
const SCRIPT: &str = r#"global calls, sizes
probe process.function("main.handle") {
    calls[probefunc(), $code]++
    sizes <<< $size
    printf("handled %d %d\n", $code, $size)
}
probe end {
    print(@hist_log(sizes))
    printf("count %d avg %d\n", @count(sizes), @avg(sizes))
}
"#;

fn program(tag: &str) -> Private {
    let built = testprogs::build("export_work", &testprogs::newest(), Variant::Default);
    Private::copy(&built, tag)
}

/// gotap running [`SCRIPT`] on `-c BIN` with `flags`, stdin piped to the program.
fn traced(bin: &Path, flags: &[&str], env: &[(&str, &str)]) -> Live {
    let file = bin.with_file_name("export.stp");
    std::fs::write(&file, SCRIPT).expect("write the script");
    let mut cmd = gotap();
    cmd.arg("-v").args(flags).arg(&file).arg("-c").arg(bin);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut g = Live::start(&mut cmd);
    g.wait_stderr("probes attached", LONG);
    g
}

/// The program's own totals line, as `name=value` pairs.
fn totals(line: &str) -> std::collections::BTreeMap<String, i64> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().expect("a number")))
        .collect()
}

/// Runs `rounds` rounds and returns the program's totals after the last.
fn run_rounds(g: &mut Live, rounds: usize) -> std::collections::BTreeMap<String, i64> {
    run_rounds_with_goids(g, rounds).0
}

/// The same, and the goroutine of each round.
fn run_rounds_with_goids(
    g: &mut Live,
    rounds: usize,
) -> (std::collections::BTreeMap<String, i64>, Vec<i64>) {
    let mut last = Default::default();
    let mut goids = Vec::new();
    for _ in 0..rounds {
        g.send("go");
        last = totals(&g.wait_stdout("totals ", LONG));
        goids.push(last["goid"]);
    }
    (last, goids)
}

/// `(le, cumulative count)` of the program's own buckets, as Prometheus has them.
fn cumulative(own: &std::collections::BTreeMap<String, i64>) -> Vec<(f64, i64)> {
    let mut les: Vec<(f64, i64)> = own
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("le.")?.parse().ok()?, *v)))
        .collect();
    les.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut sum = 0;
    les.into_iter()
        .map(|(le, n)| {
            sum += n;
            (le, sum)
        })
        .collect()
}

#[test]
fn script_globals_in_prometheus_equal_the_programs_own_counts() {
    let bin = program("export-prom");
    let port = peers::free_port();
    let prom = Prometheus::start(&[format!("127.0.0.1:{port}")], Duration::from_millis(200));
    let mut g = traced(
        &bin.path,
        &["--prometheus", &format!("127.0.0.1:{port}")],
        &[],
    );
    let own = run_rounds(&mut g, 3);
    let t = g.transcript();
    for code in ["200", "404", "500"] {
        let want = own[&format!("calls.{code}")] as f64;
        let q = format!("gotap_script_calls_total{{key1=\"main.handle\",key2=\"{code}\"}}");
        prom.wait_for(&q, LONG, |r| (r.len() == 1 && r[0].1 == want).then_some(()));
    }
    let count = own["count"] as f64;
    prom.wait_for("gotap_script_sizes_count", LONG, |r| {
        (r.len() == 1 && r[0].1 == count).then_some(())
    });
    // Every bucket the program counted, cumulative as `le` is (Prometheus writes
    // the bounds as it likes, `1` or `1.0`: they are compared as numbers).
    let buckets: Vec<(f64, f64)> = prom
        .query("gotap_script_sizes_bucket")
        .into_iter()
        .map(|(labels, v)| {
            let le = labels["le"]
                .as_str()
                .unwrap_or("")
                .parse()
                .unwrap_or(f64::NAN);
            (le, v)
        })
        .collect();
    for (le, n) in cumulative(&own) {
        let got = buckets.iter().find(|b| b.0 == le);
        assert_eq!(
            got.map(|b| b.1),
            Some(n as f64),
            "le {le}: {buckets:?}\n{t}"
        );
    }
    let sum = prom.query("gotap_script_sizes_sum");
    assert_eq!(sum[0].1, own["sum"] as f64, "{t}");
    let avg = prom.query("gotap_script_sizes_avg");
    assert_eq!(
        avg[0].1, own["avg"] as f64,
        "@avg as the program computes it\n{t}"
    );
    // The traced process is the resource: its pid on every series.
    let up = prom.query("gotap_script_sizes_count");
    let pid = up[0].0["process_pid"].as_str().unwrap_or("").to_string();
    assert!(
        pid.parse::<u32>().is_ok_and(|p| p != g.pid()),
        "process_pid {pid:?}: the traced program's, not gotap's"
    );
    g.send("exit");
    let (status, _) = g.wait_exit(LONG);
    assert!(status.success(), "{}", g.transcript());
    assert!(
        g.stdout
            .iter()
            .any(|l| l == &format!("count {} avg {}", own["count"], own["avg"])),
        "the end probe printed what was exported\n{}",
        g.transcript()
    );
}

/// Every log record in the collector's requests: `(resource, record)`.
fn log_records(reqs: &[Json]) -> Vec<(Json, Json)> {
    let mut out = Vec::new();
    for r in reqs {
        for rl in r["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for rec in sl["logRecords"].as_array().into_iter().flatten() {
                    out.push((rl["resource"]["attributes"].clone(), rec.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn script_globals_and_printed_lines_reach_the_collector_with_the_programs_own_counts() {
    let bin = program("export-otlp");
    let col = Collector::start();
    // With -f json: the log records are the text the script prints all the same.
    let mut g = traced(
        &bin.path,
        &["--otlp", &col.endpoint(), "-f", "json"],
        &[("OTEL_METRIC_EXPORT_INTERVAL", "200")],
    );
    let (own, goids) = run_rounds_with_goids(&mut g, 2);
    // While the trace runs, the pushes carry the counts so far.
    let want_404 = own["calls.404"] as f64;
    col.wait_for(LONG, |reqs| {
        points(reqs, "gotap.script.calls").iter().find(|(_, p)| {
            peers::attribute(&p["attributes"], "key2").as_deref() == Some("404")
                && p["asDouble"].as_f64() == Some(want_404)
        })?;
        Some(())
    });
    g.send("exit");
    let (status, _) = g.wait_exit(LONG);
    let t = g.transcript();
    assert!(status.success(), "{t}");
    // The last push, made at the end, holds the final values.
    let reqs = col.wait_for(LONG, |reqs| {
        let last = points(reqs, "gotap.script.sizes").last().cloned()?;
        (as_u64(&last.1["count"]) == own["count"] as u64).then(|| reqs.to_vec())
    });
    let calls = points(&reqs, "gotap.script.calls");
    for code in ["200", "404", "500"] {
        let last = calls
            .iter()
            .rev()
            .find(|(_, p)| peers::attribute(&p["attributes"], "key2").as_deref() == Some(code))
            .unwrap_or_else(|| panic!("no calls for {code}\n{t}"));
        assert_eq!(
            last.1["asDouble"].as_f64(),
            Some(own[&format!("calls.{code}")] as f64),
            "{code}\n{t}"
        );
        assert_eq!(
            peers::attribute(&last.1["attributes"], "key1").as_deref(),
            Some("main.handle")
        );
    }
    let sum_metric = peers::metric_points(&reqs)
        .into_iter()
        .find(|(_, m, _)| m["name"] == "gotap.script.calls")
        .map(|(_, m, _)| m)
        .unwrap();
    assert_eq!(sum_metric["sum"]["isMonotonic"], true, "a counter");
    let (resource, hist) = points(&reqs, "gotap.script.sizes").pop().unwrap();
    assert_eq!(as_u64(&hist["count"]), own["count"] as u64);
    assert_eq!(hist["sum"].as_f64(), Some(own["sum"] as f64));
    // Bucket for bucket: each of the program's buckets has its bound and count.
    let bounds: Vec<f64> = hist["explicitBounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_f64().unwrap())
        .collect();
    let counts: Vec<u64> = hist["bucketCounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(as_u64)
        .collect();
    for (k, n) in &own {
        let Some(le) = k.strip_prefix("le.") else {
            continue;
        };
        let le: f64 = le.parse().unwrap();
        let i = bounds.iter().position(|b| *b == le).unwrap_or_else(|| {
            panic!("no bound {le} in {bounds:?}\n{t}");
        });
        assert_eq!(counts[i], *n as u64, "le {le}\n{t}");
    }
    assert_eq!(counts.iter().sum::<u64>(), own["count"] as u64);
    let (_, avg) = points(&reqs, "gotap.script.sizes.avg").pop().unwrap();
    assert_eq!(avg["asDouble"].as_f64(), Some(own["avg"] as f64));
    assert_eq!(
        peers::attribute(&resource, "process.executable.path").as_deref(),
        Some(bin.path.to_str().unwrap())
    );
    assert_eq!(
        peers::attribute(&resource, "process.runtime.name").as_deref(),
        Some("go")
    );
    // Every printed line is a log record, with the probe that printed it; the end
    // probe's output is a record of its own, named for its probe.
    let from_end = |r: &Json| {
        peers::attribute(&r["attributes"], "gotap.probe").as_deref() == Some("end")
            && r["body"]["stringValue"]
                .as_str()
                .is_some_and(|b| b.contains(&format!("count {}", own["count"])))
    };
    let logs = log_records(&col.wait_for(LONG, |reqs| {
        let logs = log_records(reqs);
        let n = logs
            .iter()
            .filter(|(_, r)| {
                r["body"]["stringValue"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("handled "))
            })
            .count();
        (n as i64 == own["count"] && logs.iter().any(|(_, r)| from_end(r))).then(|| reqs.to_vec())
    }));
    let handled: Vec<&(Json, Json)> = logs
        .iter()
        .filter(|(_, r)| {
            r["body"]["stringValue"]
                .as_str()
                .is_some_and(|b| b.starts_with("handled "))
        })
        .collect();
    let n404 = handled
        .iter()
        .filter(|(_, r)| {
            r["body"]["stringValue"]
                .as_str()
                .is_some_and(|b| b.starts_with("handled 404 "))
        })
        .count();
    assert_eq!(n404 as i64, own["calls.404"], "{t}");
    // Each names its probe as the script writes it, and the goroutine that called
    // main.handle as the program's own stack trace names it: 40 calls in each
    // round's goroutine.
    let mut by_goid = std::collections::BTreeMap::<i64, usize>::new();
    for (_, rec) in &handled {
        assert_eq!(
            peers::attribute(&rec["attributes"], "gotap.probe").as_deref(),
            Some("process.function(\"main.handle\")"),
            "{rec}"
        );
        let g = peers::attribute(&rec["attributes"], "go.goroutine.id")
            .and_then(|g| g.parse().ok())
            .unwrap_or_else(|| panic!("no goroutine id: {rec}"));
        *by_goid.entry(g).or_default() += 1;
    }
    let want: std::collections::BTreeMap<i64, usize> = goids.iter().map(|g| (*g, 40)).collect();
    assert_eq!(by_goid, want, "{t}");
    let (res, _) = handled[0];
    assert_eq!(
        peers::attribute(res, "process.executable.path").as_deref(),
        Some(bin.path.to_str().unwrap())
    );
}

/// The last point of metric `name` in the collector's requests.
fn last_point(reqs: &[Json], name: &str) -> Option<Json> {
    points(reqs, name).pop().map(|(_, p)| p)
}

#[test]
fn the_runtime_tools_push_what_the_runtime_reports_and_what_they_print() {
    let col = Collector::start();
    let tc = testprogs::newest();
    // gcstat: the cycles GODEBUG=gctrace=1 prints, two stops of the world each.
    let gc = testprogs::build("rt_gc", &tc, Variant::Default);
    let out = run(gotap()
        .env("GODEBUG", "gctrace=1")
        .args(["gcstat", "--otlp", &col.endpoint(), "-c"])
        .arg(format!("{} 256 4", gc.display())));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let gctrace = stderr
        .lines()
        .filter(|l| l.starts_with("gc ") && l.ends_with(" P"))
        .count() as f64;
    assert!(gctrace > 2.0, "{stderr}");
    col.wait_for(LONG, |reqs| {
        let cycles = last_point(reqs, "go.gc.cycles")?;
        let pauses = last_point(reqs, "go.gc.pause")?;
        (cycles["asDouble"].as_f64() == Some(gctrace)
            && as_u64(&pauses["count"]) == 2 * gctrace as u64)
            .then_some(())
    });
    // stackgrow: the growths in main.recurse as its table prints them (tools.rs holds
    // that table to the recursion's own arithmetic), and the copies it timed.
    let grow = testprogs::build("rt_grow", &tc, Variant::Default);
    let out = run(gotap()
        .env("GODEBUG", "adaptivestackstart=0")
        .args(["stackgrow", "--time", "--otlp", &col.endpoint(), "-c"])
        .arg(format!("{} 6 200", grow.display())));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: f64 = stdout
        .lines()
        .find_map(|l| {
            let (n, f) = l.trim_start().split_once("  ")?;
            (f.trim() == "main.recurse").then(|| n.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no main.recurse row:\n{stdout}"));
    assert!(printed >= 6.0, "{stdout}");
    col.wait_for(LONG, |reqs| {
        let found = points(reqs, "go.stack.growths")
            .into_iter()
            .rev()
            .find(|(_, p)| {
                peers::attribute(&p["attributes"], "function").as_deref() == Some("main.recurse")
            })?;
        let copies = last_point(reqs, "go.stack.copy.duration")?;
        (found.1["asDouble"].as_f64() == Some(printed) && as_u64(&copies["count"]) > 0)
            .then_some(())
    });
    // goroutines: the live and created counts of its summary.
    let out = run(gotap()
        .args(["goroutines", "--otlp", &col.endpoint(), "-c"])
        .arg(format!("{} 16 7", gc.display())));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = stdout
        .lines()
        .find(|l| l.contains(" goroutines created, "))
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    let words: Vec<f64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (created, alive) = (words[0], words[2]);
    col.wait_for(LONG, |reqs| {
        let live = last_point(reqs, "go.goroutines")?;
        let made = last_point(reqs, "go.goroutines.created")?;
        (live["asDouble"].as_f64() == Some(alive) && made["asDouble"].as_f64() == Some(created))
            .then_some(())
    });
}

#[test]
fn funccount_pushes_the_calls_the_program_counts_itself() {
    let bin = program("export-funccount");
    let col = Collector::start();
    let mut cmd = gotap();
    cmd.args(["funccount", "--otlp", &col.endpoint(), "-c"])
        .arg(&bin.path)
        .arg("main.handle");
    let mut g = Live::start(&mut cmd);
    g.wait_stderr("Tracing", LONG);
    let own = run_rounds(&mut g, 2);
    g.send("exit");
    let (status, _) = g.wait_exit(LONG);
    let t = g.transcript();
    assert!(status.success(), "{t}");
    let want = own["count"] as f64;
    col.wait_for(LONG, |reqs| {
        let (_, last) = points(reqs, "go.function.calls").pop()?;
        (peers::attribute(&last["attributes"], "function").as_deref() == Some("main.handle")
            && last["asDouble"].as_f64() == Some(want))
        .then_some(())
    });
}

#[test]
fn sigint_with_a_frozen_collector_ends_gotap_within_100ms_and_says_what_was_not_sent() {
    let bin = program("export-frozen");
    let col = Collector::start();
    let mut g = traced(
        &bin.path,
        &["--otlp", &col.endpoint()],
        &[("OTEL_METRIC_EXPORT_INTERVAL", "100")],
    );
    run_rounds(&mut g, 1);
    col.freeze();
    // A push is hanging on the frozen collector when the signal comes.
    std::thread::sleep(Duration::from_millis(300));
    let (took, _) = g.time_to_exit("INT", LONG);
    let t = g.transcript();
    col.resume();
    // The trace's end (the probes' release, an RCU grace period, waited for until
    // 80 ms after the signal) and the last push share the 100 ms that signals.rs
    // holds every phase to: the push gives up 88 ms after the signal.
    assert!(took < Duration::from_millis(100), "{took:?}\n{t}");
    assert!(
        g.stderr.iter().any(|l| l.contains("not sent")),
        "the unsent batches are said\n{t}"
    );
}

/// `function → flat samples` of `go tool pprof -top` on a pprof file, every
/// function listed (no node dropped for being small).
fn pprof_flat_samples(profile: &Path) -> std::collections::BTreeMap<String, i64> {
    pprof_flat(profile, "samples")
}

/// `function → flat value` of sample type `index` (a count) as `go tool pprof -top`
/// lists them.
fn pprof_flat(profile: &Path, index: &str) -> std::collections::BTreeMap<String, i64> {
    let out = std::process::Command::new(testprogs::newest().goroot().join("bin/go"))
        .args([
            "tool",
            "pprof",
            "-top",
            &format!("-sample_index={index}"),
            "-nodecount=100000",
            "-nodefraction=0",
        ])
        .arg(profile)
        .output()
        .expect("go tool pprof");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.get(1)?.strip_suffix('%')?;
            let flat: i64 = w.first()?.parse().ok()?;
            // pprof marks a function met only inlined `NAME (inline)`.
            let name = w.get(5..)?.join(" ");
            let name = name.strip_suffix(" (inline)").unwrap_or(&name).to_string();
            Some((name, flat))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The samples of the collector's profiles of sample type `samples`, by the
/// function they were taken in (a stack's first location's first line: the
/// innermost inlined frame, as pprof counts flat samples), read through each
/// request's dictionary; and the resources' attributes (`key=value`).
fn otlp_flat_samples(reqs: &[Json]) -> (std::collections::BTreeMap<String, i64>, Vec<String>) {
    otlp_flat(reqs, "samples")
}

/// [`otlp_flat_samples`] of the sample type `kind`.
fn otlp_flat(reqs: &[Json], kind: &str) -> (std::collections::BTreeMap<String, i64>, Vec<String>) {
    let mut flat = std::collections::BTreeMap::new();
    let mut resource = Vec::new();
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
            // The Collector writes a profile's resource through the string table
            // (`keyStrindex`, `stringValueStrindex`), though gotap sends it inline.
            for a in rp["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let key = a["key"]
                    .as_str()
                    .map_or_else(|| text(&a["keyStrindex"]), str::to_string);
                let v = &a["value"];
                let value = v["stringValue"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| v["intValue"].as_str().map(str::to_string))
                    .unwrap_or_else(|| text(&v["stringValueStrindex"]));
                resource.push(format!("{key}={value}"));
            }
            for sp in rp["scopeProfiles"].as_array().into_iter().flatten() {
                for p in sp["profiles"].as_array().into_iter().flatten() {
                    if text(&p["sampleType"]["typeStrindex"]) != kind {
                        continue;
                    }
                    for s in p["samples"].as_array().into_iter().flatten() {
                        let stack = at("stackTable", &s["stackIndex"]);
                        let leaf = at("locationTable", &stack["locationIndices"][0]);
                        let f = at("functionTable", &leaf["lines"][0]["functionIndex"]);
                        let v = &s["values"][0];
                        let v = v.as_i64().or_else(|| v.as_str()?.parse().ok()).unwrap_or(0);
                        *flat.entry(text(&f["nameStrindex"])).or_insert(0) += v;
                    }
                }
            }
        }
    }
    (flat, resource)
}

/// gotap's own count of samples, from the first line of its table.
fn samples_printed(stdout: &str) -> i64 {
    stdout
        .lines()
        .find_map(|l| l.strip_suffix(" samples")?.parse().ok())
        .expect("the samples line")
}

/// `profile --otlp` to a collector that takes profiles (the feature gate and a
/// profiles pipeline): the profile it receives holds, function by function, the
/// samples of the `--pprof` file of the same run as `go tool pprof -top` reads them,
/// and their sum is the count gotap prints; the resource names the process and
/// carries `OTEL_RESOURCE_ATTRIBUTES`.
#[test]
fn profile_sends_the_collector_the_samples_its_pprof_file_holds() {
    let col = Collector::start_with_profiles();
    let bin = Private::copy(
        &testprogs::build("cpuwork", &testprogs::newest(), Variant::Default),
        "otlp-profile",
    );
    let ours = bin.path.with_file_name("gotap.pb.gz");
    let theirs = bin.path.with_file_name("go.pb.gz");
    let out = run(gotap()
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=profiling-test",
        )
        .args(["profile", "--otlp", &col.endpoint(), "--pprof"])
        .arg(&ours)
        .arg("-c")
        .arg(format!("{} 2 {}", bin.path.display(), theirs.display())));
    let stdout = text(&out.stdout);
    let ctx = format!("{stdout}\n{}", text(&out.stderr));
    assert!(out.status.success(), "{ctx}");
    assert!(!text(&out.stderr).contains("not sent"), "{ctx}");
    let file = pprof_flat_samples(&ours);
    let (sent, resource) = col.wait_for(Duration::from_secs(10), |reqs| {
        let got = otlp_flat_samples(reqs);
        (!got.0.is_empty()).then_some(got)
    });
    assert_eq!(sent, file, "{ctx}");
    assert_eq!(
        sent.values().sum::<i64>(),
        samples_printed(&stdout),
        "{ctx}"
    );
    assert!(sent.get("main.mix").is_some_and(|n| *n > 0), "{ctx}");
    let pid = text(&out.stderr)
        .lines()
        .find_map(|l| {
            l.strip_prefix("Sampling process ")?
                .split(' ')
                .next()
                .map(str::to_string)
        })
        .expect("the pid gotap samples");
    for a in [
        format!("process.pid={pid}"),
        format!("process.executable.path={}", bin.path.display()),
        "deployment.environment.name=profiling-test".to_string(),
    ] {
        assert!(resource.contains(&a), "{a} not in {resource:?}");
    }
}

/// `offcpu --otlp` to a collector that takes profiles: the block profile it
/// receives holds, function by function, the waits (`contentions`) of the
/// `--pprof` file of the same run as `go tool pprof -top` reads them, and the
/// program's own waits are among them.
#[test]
fn offcpu_sends_the_collector_the_waits_its_pprof_file_holds() {
    let col = Collector::start_with_profiles();
    let bin = Private::copy(
        &testprogs::build("blocking", &testprogs::newest(), Variant::Default),
        "otlp-offcpu",
    );
    let ours = bin.path.with_file_name("offcpu.pb.gz");
    let out = run(gotap()
        .args(["offcpu", "--otlp", &col.endpoint(), "--pprof"])
        .arg(&ours)
        .arg("-c")
        .arg(format!("{} 20", bin.path.display())));
    let stdout = text(&out.stdout);
    let ctx = format!("{stdout}\n{}", text(&out.stderr));
    assert!(out.status.success(), "{ctx}");
    assert!(!text(&out.stderr).contains("not sent"), "{ctx}");
    let file = pprof_flat(&ours, "contentions");
    assert!(file.values().sum::<i64>() > 0, "{ctx}: waits in the file");
    let (sent, resource) = col.wait_for(Duration::from_secs(10), |reqs| {
        let got = otlp_flat(reqs, "contentions");
        (!got.0.is_empty()).then_some(got)
    });
    assert_eq!(sent, file, "{ctx}");
    assert!(
        resource.contains(&format!("process.executable.path={}", bin.path.display())),
        "{resource:?}"
    );
}

/// `profile --otlp` to a collector without profiles (the one the other tests start):
/// its 404 is said with the reason, and the profile is kept as a pprof file in the
/// working directory that holds every sample gotap printed.
#[test]
fn profile_to_a_collector_without_profiles_says_its_answer_and_keeps_a_pprof_file() {
    let col = Collector::start();
    let bin = Private::copy(
        &testprogs::build("cpuwork", &testprogs::newest(), Variant::Default),
        "otlp-profile-404",
    );
    let dir = bin.path.parent().expect("dir").to_path_buf();
    let out = run(gotap()
        .current_dir(&dir)
        .args(["profile", "--otlp", &col.endpoint(), "-c"])
        .arg(format!(
            "{} 1 {}",
            bin.path.display(),
            dir.join("go.pb.gz").display()
        )));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let ctx = format!("{stdout}\n{stderr}");
    assert!(out.status.success(), "{ctx}");
    let said = stderr
        .lines()
        .find(|l| l.contains("the profile was not sent"))
        .unwrap_or_else(|| panic!("no warning\n{ctx}"));
    assert!(
        said.contains("/v1development/profiles answered HTTP 404")
            && said.contains("service.profilesSupport"),
        "{said}"
    );
    let kept = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gotap-profile-") && n.ends_with(".pb.gz"))
        })
        .unwrap_or_else(|| panic!("no pprof file kept\n{ctx}"));
    assert!(
        said.contains(&kept.file_name().unwrap().to_string_lossy().to_string()),
        "{said}"
    );
    let file = pprof_flat_samples(&kept);
    assert_eq!(
        file.values().sum::<i64>(),
        samples_printed(&stdout),
        "{ctx}"
    );
}
