//! `gotap agent` as an operator runs it, with the real engines it exports to: a
//! Prometheus server scraping it, an OpenTelemetry Collector receiving its pushes.
//! The traced program (tests/testprogs/agent_work.go) counts its own calls and
//! prints them; every number is compared with those. Each agent selects only the
//! test's private copy of the program (`--exe`), so tests running beside it, and
//! other work on the machine, are not probed. The tests take turns (`quiet`): the
//! funclatency and offcpu ones compare times with the programs' own, which another
//! test's programs on the 2 CPUs put off by more than their bounds. Needs root.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use testprogs::peers::{self, Collector, Prometheus};

/// A running agent; killed (SIGKILL) and reaped if the test did not stop it.
struct Agent {
    child: Child,
    port: u16,
    /// Its stderr, read as it comes so that the pipe never fills.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Agent {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Agent {
        let port = peers::free_port();
        let mut cmd = gotap();
        cmd.arg("agent")
            .args(["--prometheus", &format!("127.0.0.1:{port}")])
            .args(["--collect-ms", "100"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the agent");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let Some(pipe) = pipe else { return };
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let agent = Agent {
            child,
            port,
            stderr,
        };
        // Ready once /metrics answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the agent never listened:\n{}",
                agent.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The text exposition, as `curl` gets it.
    fn metrics(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(s, "GET /metrics HTTP/1.0\r\n\r\n").expect("request");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).expect("response");
        out
    }

    /// The value of the first sample whose line starts with `name{` and holds every
    /// `label="value"` of `labels`.
    fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sample_in(&self.metrics(), name, labels)
    }

    /// Waits at most `limit` for `ok` to accept the sample.
    fn wait_sample(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        limit: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.sample(name, labels).filter(|v| ok(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{labels:?} not as expected after {limit:?}:\n{}\nstderr:\n{}",
                self.metrics(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Sends SIGTERM and returns how long the agent took to exit, and its stderr.
    fn terminate(mut self) -> (Duration, String) {
        let t = Instant::now();
        self.signal("-TERM");
        let deadline = t + Duration::from_secs(10);
        loop {
            if self.child.try_wait().expect("try_wait").is_some() {
                let took = t.elapsed();
                // The reader thread sees the end of the pipe a moment later.
                std::thread::sleep(Duration::from_millis(100));
                return (took, self.stderr());
            }
            assert!(Instant::now() < deadline, "the agent ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn sample_in(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The traced program: rounds on demand, its own counts read back.
struct Work {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// What the program printed after a round.
#[derive(Debug, Clone, Copy)]
struct Round {
    work: u64,
    add: u64,
    round_add: u64,
}

impl Work {
    fn start(cmd: &mut Command) -> Work {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start agent_work");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Work {
            child,
            stdin,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn round(&mut self) -> Round {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "go").expect("write to agent_work");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read agent_work");
        let field = |key: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        Round {
            work: field("main.work"),
            add: field("main.(*Acc).Add"),
            round_add: field("round.main.(*Acc).Add"),
        }
    }

    fn exit(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn program(tag: &str) -> Private {
    let tc = testprogs::newest();
    Private::copy(&testprogs::build("agent_work", &tc, Variant::Stripped), tag)
}

fn glob_of(p: &Path) -> String {
    p.display().to_string()
}

fn pid_label(w: &Work) -> String {
    w.pid().to_string()
}

#[test]
fn counts_in_prometheus_equal_the_programs_own_for_processes_found_by_scan_and_by_exec() {
    let _quiet = quiet();
    let bin = program("agent-prom");
    // One process before the agent (found by the /proc scan), one after (by exec).
    let mut early = Work::start(&mut Command::new(&bin.path));
    let agent = Agent::start(&["--exe", &glob_of(&bin.path)], &[]);
    let mut late = Work::start(&mut Command::new(&bin.path));
    for w in [&early, &late] {
        agent.wait_sample(
            "gotap_process_probes",
            &[("process_pid", &pid_label(w))],
            Duration::from_secs(20),
            |v| v >= 2.0,
        );
    }
    let prom = Prometheus::start(&[agent.target()], Duration::from_millis(500));
    let a = early.round();
    late.round();
    let b = late.round();
    for (w, r) in [(&early, a), (&late, b)] {
        let pid = pid_label(w);
        for (function, want) in [("main.work", r.work), ("main.(*Acc).Add", r.add)] {
            let q =
                format!("go_function_calls_total{{function=\"{function}\",process_pid=\"{pid}\"}}");
            prom.wait_for(&q, Duration::from_secs(30), |res| {
                (res.len() == 1 && res[0].1 == want as f64).then_some(())
            });
        }
    }
    // The resource: the runtime version from the build info, on target_info.
    let q = format!("target_info{{process_pid=\"{}\"}}", late.pid());
    let labels = prom.wait_for(&q, Duration::from_secs(30), |res| {
        res.first().map(|r| r.0.clone())
    });
    let tc = testprogs::newest();
    assert_eq!(labels["process_runtime_name"], "go");
    assert_eq!(labels["process_runtime_version"], tc.version.as_str());
    assert_eq!(
        labels["process_executable_path"],
        glob_of(&bin.path).as_str()
    );
    assert_eq!(labels["service_name"], "unknown_service:agent_work");
    let how = prom.query("gotap_agent_processes_found_total");
    let by = |h: &str| {
        how.iter()
            .find(|r| r.0["how"] == h)
            .map(|r| r.1)
            .unwrap_or(0.0)
    };
    assert!(by("scan") >= 1.0 && by("exec") >= 1.0, "{how:?}");
    early.exit();
    agent.wait_sample(
        "gotap_process_up",
        &[("process_pid", &pid_label(&late))],
        Duration::from_secs(1),
        |v| v == 1.0,
    );
    late.exit();
    let (took, err) = agent.terminate();
    assert!(
        took < Duration::from_secs(1),
        "SIGTERM took {took:?}\n{err}"
    );
}

/// A script's printed lines reach the collector as log records, one per line the
/// probes printed: as many as the program's own calls, each naming its probe and the
/// goroutine that printed it, under the binary's resource.
#[test]
fn a_scripts_printed_lines_reach_the_collector_as_log_records() {
    let _quiet = quiet();
    let col = Collector::start();
    // With DWARF, for `$v`.
    let bin = Private::copy(
        &testprogs::build("agent_work", &testprogs::newest(), Variant::Default),
        "agent-logs",
    );
    let dir = bin.path.parent().unwrap().to_path_buf();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[select]]\nexe = \"{}\"\nscript_text = \'\'\'\nprobe process.function(\"main.(*Acc).Add\") {{ printf(\"add %d\\n\", $v) }}\n\'\'\'\n",
            glob_of(&bin.path)
        ),
    )
    .unwrap();
    let agent = Agent::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--otlp",
            &col.endpoint(),
        ],
        &[("OTEL_METRIC_EXPORT_INTERVAL", "200")],
    );
    let mut w = Work::start(&mut Command::new(&bin.path));
    let pid = pid_label(&w);
    agent.wait_sample(
        "gotap_process_probes",
        &[("process_pid", &pid)],
        Duration::from_secs(20),
        |v| v >= 1.0,
    );
    let r1 = w.round();
    let r2 = w.round();
    let own = r2.add - r1.add + r1.round_add;
    let lines = col.wait_for(Duration::from_secs(20), |reqs| {
        let mut lines = Vec::new();
        for r in reqs {
            for rl in r["resourceLogs"].as_array().into_iter().flatten() {
                for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                    for rec in sl["logRecords"].as_array().into_iter().flatten() {
                        lines.push((rl["resource"]["attributes"].clone(), rec.clone()));
                    }
                }
            }
        }
        (lines.len() as u64 >= own).then_some(lines)
    });
    w.exit();
    let (_, err) = agent.terminate();
    assert_eq!(lines.len() as u64, own, "{err}");
    // The program's Add(i) takes i = 0..9 each round: each value twice.
    let mut values = std::collections::BTreeMap::<String, usize>::new();
    for (resource, rec) in &lines {
        let body = rec["body"]["stringValue"].as_str().unwrap_or_default();
        *values.entry(body.to_string()).or_default() += 1;
        assert_eq!(
            peers::attribute(&rec["attributes"], "gotap.probe").as_deref(),
            Some("process.function(\"main.(*Acc).Add\")"),
            "{rec}"
        );
        // The program calls Add from main.main, whose goroutine Go numbers 1.
        assert_eq!(
            peers::attribute(&rec["attributes"], "go.goroutine.id").as_deref(),
            Some("1"),
            "{rec}"
        );
        assert_eq!(
            peers::attribute(resource, "process.executable.path").as_deref(),
            Some(bin.path.to_str().unwrap())
        );
    }
    let want: std::collections::BTreeMap<String, usize> =
        (0..10).map(|i| (format!("add {i}"), 2)).collect();
    assert_eq!(values, want, "{err}");
}

/// What a script's probes could not keep reaches the metrics: an array of 4 keys
/// that a probe writes 10 keys into (`main.work(i)`, `i % 10`, i = 0..999 a round)
/// keeps the first four (0 to 3) and drops the updates of the other six, which
/// `gotap_agent_script_losses_total{cause="map_full"}` counts: 6 calls in 10, by the
/// program's own count of its calls.
#[test]
fn a_scripts_dropped_updates_are_counted_in_its_losses_metric() {
    let _quiet = quiet();
    let bin = program("agent-losses");
    let config = bin.path.parent().unwrap().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[select]]\nexe = \"{}\"\nscript_text = \'\'\'\nglobal seen[4]\nprobe process.function(\"main.work\") {{ seen[register(\"rax\") % 10]++ }}\n\'\'\'\n",
            glob_of(&bin.path)
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--config", config.to_str().unwrap()], &[]);
    let mut w = Work::start(&mut Command::new(&bin.path));
    let pid = pid_label(&w);
    agent.wait_sample(
        "gotap_process_probes",
        &[("process_pid", &pid)],
        Duration::from_secs(20),
        |v| v >= 1.0,
    );
    w.round();
    let calls = w.round().work;
    agent.wait_sample(
        "gotap_script_seen_total",
        &[("key", "3")],
        Duration::from_secs(10),
        |v| v == (calls / 10) as f64,
    );
    agent.wait_sample(
        "gotap_agent_script_losses_total",
        &[("cause", "map_full")],
        Duration::from_secs(10),
        |v| v == (calls * 6 / 10) as f64,
    );
    for cause in ["lost_events", "read_faults", "entry_missed"] {
        assert_eq!(
            agent.sample("gotap_agent_script_losses_total", &[("cause", cause)]),
            Some(0.0),
            "{cause}\n{}",
            agent.metrics()
        );
    }
    w.exit();
    agent.terminate();
}

#[test]
fn otlp_reaches_the_collector_with_resources_and_counts_and_sigterm_flushes_within_1s() {
    let _quiet = quiet();
    let col = Collector::start();
    let bin = program("agent-otlp");
    // A long interval: only the SIGTERM flush can deliver the second round.
    let agent = Agent::start(
        &["--exe", &glob_of(&bin.path), "--otlp", &col.endpoint()],
        &[
            ("OTEL_METRIC_EXPORT_INTERVAL", "60000"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci"),
            ("OTEL_SERVICE_NAME", "agent-work-svc"),
        ],
    );
    let mut w = Work::start(&mut Command::new(&bin.path));
    let pid = pid_label(&w);
    agent.wait_sample(
        "gotap_process_probes",
        &[("process_pid", &pid)],
        Duration::from_secs(20),
        |v| v >= 2.0,
    );
    w.round();
    let r = w.round();
    // Past one collection, so the agent has read the counts.
    agent.wait_sample(
        "go_function_calls_total",
        &[("process_pid", &pid), ("function", "main.work")],
        Duration::from_secs(10),
        |v| v == r.work as f64,
    );
    let (took, err) = agent.terminate();
    assert!(
        took < Duration::from_secs(1),
        "SIGTERM took {took:?}\n{err}"
    );
    let (attrs, metric, point) = col.wait_for(Duration::from_secs(10), |reqs| {
        peers::metric_points(reqs).into_iter().find(|(a, m, p)| {
            m["name"] == "go.function.calls"
                && peers::attribute(a, "process.pid").as_deref() == Some(pid.as_str())
                && peers::attribute(&p["attributes"], "function").as_deref()
                    == Some("main.(*Acc).Add")
        })
    });
    assert_eq!(metric["sum"]["isMonotonic"], true);
    assert_eq!(point["asDouble"].as_f64(), Some(r.add as f64), "{point}");
    assert_eq!(
        peers::attribute(&attrs, "service.name").as_deref(),
        Some("agent-work-svc")
    );
    assert_eq!(
        peers::attribute(&attrs, "deployment.environment").as_deref(),
        Some("ci")
    );
    assert_eq!(
        peers::attribute(&attrs, "process.runtime.name").as_deref(),
        Some("go")
    );
    assert_eq!(
        peers::attribute(&attrs, "process.executable.path"),
        Some(glob_of(&bin.path))
    );
    w.exit();
}

/// The cgroup v2 hierarchy's mount point.
fn cgroup2_root() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .expect("a cgroup2 mount")
}

/// A Kubernetes-like cgroup made for the test, removed (deepest first) at the end.
struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    fn make(parts: &[String]) -> Cgroup {
        let mut dirs = Vec::new();
        let mut p = cgroup2_root();
        for part in parts {
            p = p.join(part);
            std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
            dirs.push(p.clone());
        }
        Cgroup { dirs }
    }

    fn leaf(&self) -> &Path {
        self.dirs.last().expect("a leaf")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            // Processes leave a cgroup a moment after they are reaped.
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn a_process_in_its_own_mount_and_pid_namespace_and_cgroup_is_traced_and_labelled() {
    let _quiet = quiet();
    let bin = program("agent-ns");
    // A private root holding only the program (Go builds it static).
    let root = bin.path.parent().unwrap().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let inside = root.join("agent_work");
    let cp = Command::new("cp")
        .arg(&bin.path)
        .arg(&inside)
        .status()
        .unwrap();
    assert!(cp.success());
    let cid = format!("{:064x}", u128::from(std::process::id()) << 64 | 0xfeed);
    let uid = format!("{:08x}-1a2b-4c3d-8e9f-0123456789ab", std::process::id());
    let cg = Cgroup::make(&[
        format!("gotap-test-{}", std::process::id()),
        "kubepods.slice".into(),
        format!("kubepods-pod{}.slice", uid.replace('-', "_")),
        format!("cri-containerd-{cid}.scope"),
    ]);
    // Every field of the select must match: the path inside, the cgroup, the container.
    let agent = Agent::start(
        &[
            "--exe",
            "/agent_work",
            "--cgroup",
            "*/kubepods.slice/*",
            "--container",
            &format!("{}*", &cid[..12]),
        ],
        &[],
    );
    // The shell moves itself into the cgroup, then becomes unshare, whose child runs
    // the program as pid 1 of a new pid namespace, in a new mount namespace, chrooted.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec unshare --mount --pid --fork --root={} /agent_work",
        cg.leaf().display(),
        root.display()
    );
    let mut w = Work::start(Command::new("sh").args(["-c", &script]));
    // The host pid of the program: the child of unshare (whose pid the shell had).
    let deadline = Instant::now() + Duration::from_secs(20);
    let host_pid = loop {
        let text = agent.metrics();
        if let Some(line) = text.lines().find(|l| {
            l.starts_with("gotap_process_probes{") && l.contains(&format!("container_id=\"{cid}\""))
        }) {
            let pid = line
                .split("process_pid=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .expect("a pid label")
                .to_string();
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "not found in its container:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(
        host_pid,
        w.pid().to_string(),
        "the program is unshare's child"
    );
    let ns = std::fs::read_link(format!("/proc/{host_pid}/ns/pid")).unwrap();
    assert_ne!(
        ns,
        std::fs::read_link("/proc/self/ns/pid").unwrap(),
        "same pid namespace"
    );
    let r = w.round();
    let labels = [
        ("process_pid", host_pid.as_str()),
        ("container_id", cid.as_str()),
        ("k8s_pod_uid", uid.as_str()),
        ("function", "main.work"),
    ];
    agent.wait_sample(
        "go_function_calls_total",
        &labels,
        Duration::from_secs(10),
        |v| v == r.work as f64,
    );
    let info = agent.metrics();
    let target = info
        .lines()
        .find(|l| {
            l.starts_with("target_info{") && l.contains(&format!("process_pid=\"{host_pid}\""))
        })
        .unwrap_or_else(|| panic!("no target_info:\n{info}"));
    assert!(
        target.contains("process_executable_path=\"/agent_work\""),
        "{target}"
    );
    w.exit();
    drop(agent);
    drop(cg);
}

#[test]
fn sighup_adds_functions_without_losing_counts() {
    let _quiet = quiet();
    let bin = program("agent-hup");
    let dir = bin.path.parent().unwrap().to_path_buf();
    let config = dir.join("agent.toml");
    let write = |funcs: &str| {
        std::fs::write(
            &config,
            format!(
                "[[select]]\nexe = \"{}\"\nfunccount = [{funcs}]\n",
                glob_of(&bin.path)
            ),
        )
        .unwrap()
    };
    write("\"main.work\"");
    let agent = Agent::start(&["--config", config.to_str().unwrap()], &[]);
    let mut w = Work::start(&mut Command::new(&bin.path));
    let pid = pid_label(&w);
    agent.wait_sample(
        "gotap_process_probes",
        &[("process_pid", &pid)],
        Duration::from_secs(20),
        |v| v == 1.0,
    );
    let r1 = w.round();
    agent.wait_sample(
        "go_function_calls_total",
        &[("process_pid", &pid), ("function", "main.work")],
        Duration::from_secs(10),
        |v| v == r1.work as f64,
    );
    write("\"main.work\", \"main.(*Acc).Add\"");
    agent.signal("-HUP");
    agent.wait_sample(
        "gotap_process_probes",
        &[("process_pid", &pid)],
        Duration::from_secs(20),
        |v| v == 2.0,
    );
    let r2 = w.round();
    // main.work kept its count across the reload; Add counts from the reload on.
    agent.wait_sample(
        "go_function_calls_total",
        &[("process_pid", &pid), ("function", "main.work")],
        Duration::from_secs(10),
        |v| v == r2.work as f64,
    );
    agent.wait_sample(
        "go_function_calls_total",
        &[("process_pid", &pid), ("function", "main.(*Acc).Add")],
        Duration::from_secs(10),
        |v| v == r2.round_add as f64,
    );
    // A broken file is refused and the running configuration stays.
    std::fs::write(&config, "[[select]\n").unwrap();
    agent.signal("-HUP");
    let r3 = w.round();
    agent.wait_sample(
        "go_function_calls_total",
        &[("process_pid", &pid), ("function", "main.(*Acc).Add")],
        Duration::from_secs(10),
        |v| v == (r3.add - r1.add) as f64,
    );
    w.exit();
    let (_, err) = agent.terminate();
    assert!(
        err.contains("not reloaded") && err.contains("agent.toml:1:"),
        "{err}"
    );
}

/// SIGHUP with a configuration that asks for less: the functions and the tool no
/// select asks for any more lose their probes and their series; what stays keeps
/// counting from where it was.
#[test]
fn sighup_takes_away_the_functions_and_tools_no_select_asks_for() {
    let _quiet = quiet();
    let bin = program("agent-hup-less");
    let dir = bin.path.parent().unwrap().to_path_buf();
    let config = dir.join("agent.toml");
    let exe = glob_of(&bin.path);
    std::fs::write(
        &config,
        format!(
            "[[select]]\nexe = \"{exe}\"\nfunccount = [\"main.work\", \"main.(*Acc).Add\"]\n\
             [[select]]\nexe = \"{exe}\"\ntool = \"gcstat\"\n"
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--config", config.to_str().unwrap()], &[]);
    let mut w = Work::start(&mut Command::new(&bin.path));
    let pid = pid_label(&w);
    let all = agent.wait_sample(
        "gotap_process_probes",
        &[("process_pid", &pid)],
        Duration::from_secs(20),
        |v| v > 2.0,
    );
    let r1 = w.round();
    agent.wait_sample(
        "go_function_calls_total",
        &[("process_pid", &pid), ("function", "main.work")],
        Duration::from_secs(10),
        |v| v == r1.work as f64,
    );
    agent.wait_sample("go_gc_cycles_total", &[], Duration::from_secs(10), |_| true);
    std::fs::write(
        &config,
        format!("[[select]]\nexe = \"{exe}\"\nfunccount = [\"main.(*Acc).Add\"]\n"),
    )
    .unwrap();
    agent.signal("-HUP");
    agent.wait_sample(
        "gotap_process_probes",
        &[("process_pid", &pid)],
        Duration::from_secs(20),
        |v| v == 1.0,
    );
    let r2 = w.round();
    agent.wait_sample(
        "go_function_calls_total",
        &[("process_pid", &pid), ("function", "main.(*Acc).Add")],
        Duration::from_secs(10),
        |v| v == r2.add as f64,
    );
    let metrics = agent.metrics();
    for gone in ["function=\"main.work\"", "go_gc_cycles_total"] {
        assert!(
            !metrics.contains(gone),
            "{gone} after the reload (probes before: {all})\n{metrics}"
        );
    }
    w.exit();
    let (_, err) = agent.terminate();
    assert!(!err.contains("panicked"), "{err}");
}

/// SIGHUP with less asked of the tools whose series are each process's or whose
/// program times every select's functions: goroutines goes with its series, and
/// funclatency on fewer functions is armed again on those alone (its
/// counts start again, and equal the program's from then on).
#[test]
fn sighup_takes_away_per_process_tools_and_times_fewer_functions() {
    let _quiet = quiet();
    let bin = program("agent-hup-tools");
    let dir = bin.path.parent().unwrap().to_path_buf();
    let config = dir.join("agent.toml");
    let exe = glob_of(&bin.path);
    let tool = |t: &str| format!("[[select]]\nexe = \"{exe}\"\ntool = \"{t}\"\n");
    let timed = |fs: &str| format!("[[select]]\nexe = \"{exe}\"\nfunclatency = [{fs}]\n");
    std::fs::write(
        &config,
        tool("goroutines") + &timed("\"main.work\", \"main.(*Acc).Add\""),
    )
    .unwrap();
    let agent = Agent::start(&["--config", config.to_str().unwrap()], &[]);
    let mut w = Work::start(&mut Command::new(&bin.path));
    let pid = pid_label(&w);
    let count = |f: &str| vec![("process_pid", pid.clone()), ("function", f.to_string())];
    let wait = |name: &str, l: &[(&str, String)], ok: &dyn Fn(f64) -> bool| {
        let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
        agent.wait_sample(name, &l, Duration::from_secs(20), ok)
    };
    for f in ["main.work", "main.(*Acc).Add"] {
        wait("go_function_latency_seconds_count", &count(f), &|v| {
            v == 0.0
        });
    }
    let r1 = w.round();
    wait(
        "go_function_latency_seconds_count",
        &count("main.work"),
        &|v| v == r1.work as f64,
    );
    wait("go_goroutines", &[("process_pid", pid.clone())], &|v| {
        v >= 1.0
    });
    std::fs::write(&config, timed("\"main.work\"")).unwrap();
    agent.signal("-HUP");
    // Armed again: main.work counts from 0.
    wait(
        "go_function_latency_seconds_count",
        &count("main.work"),
        &|v| v == 0.0,
    );
    let r2 = w.round();
    wait(
        "go_function_latency_seconds_count",
        &count("main.work"),
        &|v| v == (r2.work - r1.work) as f64,
    );
    let metrics = agent.metrics();
    for gone in [
        "main.(*Acc).Add",
        "go_goroutines{",
        "go_offcpu_waits_total{",
    ] {
        assert!(
            !metrics.contains(gone),
            "{gone} after the reload\n{metrics}"
        );
    }
    w.exit();
    let (_, err) = agent.terminate();
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_select_on_the_main_module_picks_processes_by_their_build_info() {
    let _quiet = quiet();
    let a = program("agent-mod-a");
    let b = program("agent-mod-b");
    let dir = a.path.parent().unwrap().to_path_buf();
    let config = dir.join("agent.toml");
    let write = |module: &str| {
        std::fs::write(
            &config,
            format!(
                "[[select]]\nexe = \"{}\"\n[[select]]\nexe = \"{}\"\nmodule = \"{module}\"\n",
                glob_of(&a.path),
                glob_of(&b.path)
            ),
        )
        .unwrap()
    };
    // `go build file.go` records the main package as command-line-arguments.
    write("example.com/*");
    let agent = Agent::start(&["--config", config.to_str().unwrap()], &[]);
    let wb = Work::start(&mut Command::new(&b.path));
    let wa = Work::start(&mut Command::new(&a.path));
    // Events are handled in order: once the later process is traced, the earlier
    // one has been looked at and left alone.
    agent.wait_sample(
        "gotap_process_probes",
        &[("process_pid", &pid_label(&wa))],
        Duration::from_secs(20),
        |v| v >= 1.0,
    );
    assert_eq!(
        agent.sample("gotap_process_up", &[("process_pid", &pid_label(&wb))]),
        None
    );
    write("command-line-*");
    agent.signal("-HUP");
    agent.wait_sample(
        "gotap_process_probes",
        &[("process_pid", &pid_label(&wb))],
        Duration::from_secs(20),
        |v| v >= 1.0,
    );
    wa.exit();
    wb.exit();
}

#[test]
fn past_the_series_limit_counts_are_summed_into_the_overflow_series_and_counted() {
    let _quiet = quiet();
    let bin = program("agent-limit");
    let agent = Agent::start(
        &[
            "--exe",
            &glob_of(&bin.path),
            "--max-series",
            "1",
            "--funccount",
            "main.work",
            "--funccount",
            "main.(*Acc).Add",
        ],
        &[],
    );
    let mut w = Work::start(&mut Command::new(&bin.path));
    let pid = pid_label(&w);
    agent.wait_sample(
        "gotap_process_probes",
        &[("process_pid", &pid)],
        Duration::from_secs(20),
        |v| v == 2.0,
    );
    let r = w.round();
    let overflow = agent.wait_sample(
        "go_function_calls_total",
        &[("process_pid", &pid), ("otel_metric_overflow", "true")],
        Duration::from_secs(10),
        |v| v > 0.0,
    );
    let text = agent.metrics();
    let regular: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("go_function_calls_total{function="))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(regular.len(), 1, "{text}");
    // Nothing is lost, only merged.
    assert_eq!(regular[0] + overflow, (r.work + r.add) as f64, "{text}");
    let folded = sample_in(
        &text,
        "gotap_export_series_overflow",
        &[("metric", "go.function.calls")],
    );
    assert_eq!(folded, Some(1.0), "one series folded\n{text}");
    w.exit();
    let (_, err) = agent.terminate();
    assert!(
        err.contains("go.function.calls has more than 1 series"),
        "{err}"
    );
}

/// The kinds of descriptors a process holds: `anon_inode:bpf-prog` and the like.
fn fd_kinds(pid: u32) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(e.path())
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        let kind = if target.starts_with("anon_inode:") {
            target
        } else {
            target.split(':').next().unwrap_or("").to_string()
        };
        *m.entry(kind).or_default() += 1;
    }
    // Scrape connections come and go with the test's own requests: only the
    // listening socket is the agent's to keep.
    m.remove("socket");
    m
}

/// Sockets the process holds.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

#[test]
fn descriptors_and_bpf_objects_return_to_the_baseline_after_processes_exit() {
    let _quiet = quiet();
    let a = program("agent-fd-a");
    // A second, distinct binary: another toolchain's build of the same program.
    let tcs = testprogs::toolchains();
    let b = Private::copy(
        &testprogs::build("agent_work", &tcs[tcs.len() - 2], Variant::Default),
        "agent-fd-b",
    );
    let glob = format!(
        "{}*",
        std::env::temp_dir()
            .join(format!("gotap-test-{}-agent-fd-", std::process::id()))
            .display()
    );
    let agent = Agent::start(&["--exe", &glob, "--exit-linger-ms", "300", "-v"], &[]);
    // Steady: one collection and a scrape have happened.
    agent.wait_sample("gotap_agent_binaries", &[], Duration::from_secs(10), |v| {
        v == 0.0
    });
    let before = fd_kinds(agent.pid());
    let (progs0, links0) = bpf_ids_of(agent.pid());
    for _ in 0..2 {
        let mut ws: Vec<Work> = [&a.path, &a.path, &b.path]
            .iter()
            .map(|p| Work::start(&mut Command::new(p)))
            .collect();
        for w in &ws {
            agent.wait_sample(
                "gotap_process_probes",
                &[("process_pid", &pid_label(w))],
                Duration::from_secs(20),
                |v| v >= 2.0,
            );
        }
        agent.wait_sample("gotap_agent_binaries", &[], Duration::from_secs(10), |v| {
            v == 2.0
        });
        let (progs, links) = bpf_ids_of(agent.pid());
        assert_eq!(
            links.len(),
            links0.len() + 2,
            "one link per distinct binary"
        );
        assert_eq!(progs.len(), progs0.len() + 2);
        for w in &mut ws {
            w.round();
        }
        for w in ws {
            w.exit();
        }
        agent.wait_sample("gotap_agent_binaries", &[], Duration::from_secs(20), |v| {
            v == 0.0
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while agent.metrics().contains("go_function_calls_total{") {
            assert!(
                Instant::now() < deadline,
                "series of exited processes stay:\n{}",
                agent.metrics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The links and the maps go on the agent's reaper thread, an RCU grace
        // period each, shortly after the binaries leave the gauge.
        let deadline = Instant::now() + Duration::from_secs(10);
        while fd_kinds(agent.pid()) != before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(fd_kinds(agent.pid()), before);
    // The listener alone, once the test's last scrape is closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sockets(agent.pid()) != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sockets(agent.pid()), 1);
    assert_eq!(bpf_ids_of(agent.pid()), (progs0, links0));
}

#[test]
fn check_config_accepts_good_settings_and_names_bad_ones() {
    let _quiet = quiet();
    let out = run(gotap().args([
        "agent",
        "--check-config",
        "--prometheus",
        ":9464",
        "--module",
        "example.com/*",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("example.com/*"));
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-agent-check", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "prometheus = \":1\"\n[[select]]\nexe = 3\n").unwrap();
    let out = run(gotap()
        .args(["agent", "--check-config", "--config"])
        .arg(&bad));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:3:7", bad.display())), "{err}");
    let out = run(gotap().args([
        "agent",
        "--check-config",
        "--otlp",
        "https://collector:4318",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("http://"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Go program (a file of tests/testprogs) built as the main package of module
/// `module`, so that its build info names it (`go build file.go` records
/// `command-line-arguments`), in a folder of its own.
fn build_in_module(name: &str, module: &str, tag: &str) -> PathBuf {
    let tc = testprogs::newest();
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("go.mod"), format!("module {module}\n\ngo 1.19\n")).unwrap();
    std::fs::copy(testprogs::source(name), dir.join("main.go")).unwrap();
    let exe = dir.join(name);
    let out = tc
        .go_command()
        .args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .current_dir(&dir)
        .output()
        .expect("run go build");
    assert!(out.status.success(), "{}", text(&out.stderr));
    exe
}

/// A program with stdin and stdout piped, its lines read one at a time.
struct Piped {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Piped {
    fn start(cmd: &mut Command) -> Piped {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the program");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Piped {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends "go" and returns the line the program answers with.
    fn round(&mut self) -> String {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "go").expect("write");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        line
    }

    fn exit(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `key=value` numbers of a line the programs print.
fn fields(line: &str) -> std::collections::BTreeMap<String, i64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// The agent's configuration in README.md, as it is there.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(testprogs::repo_root().join("README.md")).unwrap();
    let block = &readme[readme
        .find("### The agent's configuration")
        .expect("the section")..];
    let start = block.find("```toml\n").expect("its example") + 8;
    block[start..start + block[start..].find("```").unwrap()].to_string()
}

/// The script the module's select runs (README.md shows it): `main.handle`'s calls by code, and its sizes.
const COUNTS_SCRIPT: &str = r#"global calls, sizes
probe process.function("main.handle") {
    calls[$code]++
    sizes <<< $size
}
"#;

#[test]
fn a_config_runs_stackgrow_by_exe_and_a_script_by_module_with_the_programs_own_counts() {
    let _quiet = quiet();
    let readme = std::fs::read_to_string(testprogs::repo_root().join("README.md")).unwrap();
    assert!(
        readme.contains(COUNTS_SCRIPT),
        "README shows the script the test runs"
    );
    let tc = testprogs::newest();
    let grow = Private::copy(
        &testprogs::build("agent_grow", &tc, Variant::Stripped),
        "agent-tools-grow",
    );
    let module = format!("example.com/gotap-agent-{}", std::process::id());
    let work = build_in_module("export_work", &module, "agent-tools-script");
    let dir = grow.path.parent().unwrap().to_path_buf();
    std::fs::write(dir.join("counts.stp"), COUNTS_SCRIPT).unwrap();
    let config = dir.join("agent.toml");
    // The README's example, with the test's own paths (its --prometheus flag wins
    // over the file's address).
    let example = readme_example();
    let ours = example
        .replace("/srv/grow/*", &glob_of(&grow.path))
        .replace("example.com/shop/*", &module);
    assert!(
        ours.contains(&module) && ours.contains(&glob_of(&grow.path)),
        "{example}"
    );
    std::fs::write(&config, ours).unwrap();
    let agent = Agent::start(&["-v", "--config", config.to_str().unwrap()], &[]);
    let (g, (depth, k)) = (
        6u64,
        depth_for(frame_size(&grow.path, "main.recurse"), 64 << 10),
    );
    let mut grower = Piped::start(
        Command::new(&grow.path)
            .env("GODEBUG", "adaptivestackstart=0")
            .args([g.to_string(), depth.to_string()]),
    );
    let mut handler = Piped::start(&mut Command::new(&work));
    for p in [&grower, &handler] {
        agent.wait_sample(
            "gotap_process_probes",
            &[("process_pid", &p.child.id().to_string())],
            Duration::from_secs(30),
            |v| v >= 1.0,
        );
    }
    let prom = Prometheus::start(&[agent.target()], Duration::from_millis(500));
    let rounds = 3;
    for _ in 0..rounds {
        let own = fields(&grower.round());
        assert_eq!((own["goroutines"], own["depth"]), (g as i64, depth as i64));
    }
    let mut totals = Default::default();
    for _ in 0..rounds {
        totals = fields(&handler.round());
    }
    // stackgrow: each goroutine's stack doubled k times in main.recurse.
    let grow_pid = grower.child.id().to_string();
    let want = (rounds * g * u64::from(k)) as f64;
    let q =
        format!("go_stack_growths_total{{function=\"main.recurse\",process_pid=\"{grow_pid}\"}}");
    let labels = prom.wait_for(&q, Duration::from_secs(30), |res| {
        (res.len() == 1 && res[0].1 == want).then(|| res[0].0.clone())
    });
    assert_eq!(labels["service_name"], "unknown_service:agent_grow");
    // The script: its globals as the one-shot --prometheus exports them.
    let work_pid = handler.child.id().to_string();
    for code in ["200", "404", "500"] {
        let want = totals[&format!("calls.{code}")] as f64;
        let q = format!("gotap_script_calls_total{{key=\"{code}\",process_pid=\"{work_pid}\"}}");
        let labels = prom.wait_for(&q, Duration::from_secs(30), |res| {
            (res.len() == 1 && res[0].1 == want).then(|| res[0].0.clone())
        });
        assert_eq!(labels["service_name"], module.as_str());
    }
    let q = format!("gotap_script_sizes_count{{process_pid=\"{work_pid}\"}}");
    prom.wait_for(&q, Duration::from_secs(30), |res| {
        (res.len() == 1 && res[0].1 == totals["count"] as f64).then_some(())
    });
    let q = format!("gotap_script_sizes_sum{{process_pid=\"{work_pid}\"}}");
    prom.wait_for(&q, Duration::from_secs(30), |res| {
        (res.len() == 1 && res[0].1 == totals["sum"] as f64).then_some(())
    });
    // Neither select runs on the other's program.
    assert!(
        prom.query(&format!(
            "gotap_script_calls_total{{process_pid=\"{grow_pid}\"}}"
        ))
        .is_empty()
    );
    assert!(
        prom.query(&format!(
            "go_stack_growths_total{{process_pid=\"{work_pid}\"}}"
        ))
        .is_empty()
    );
    grower.exit();
    handler.exit();
    let (_, err) = agent.terminate();
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(work.parent().unwrap());
}

/// `gotap agent --check-config --config FILE` with `body` as the file: its exit
/// status and stderr.
fn check_config(dir: &Path, body: &str) -> (Option<i32>, String, PathBuf) {
    let file = dir.join("agent.toml");
    std::fs::write(&file, body).unwrap();
    let out = run(gotap()
        .args(["agent", "--check-config", "--config"])
        .arg(&file));
    (out.status.code(), text(&out.stderr), file)
}

#[test]
fn bad_tools_and_scripts_in_the_config_are_errors_at_their_places() {
    let _quiet = quiet();
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-agent-bad", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // An unknown tool: the place of its value.
    let (code, err, file) = check_config(&dir, "[[select]]\nexe = \"/x\"\ntool = \"stakgrow\"\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:3:8: unknown tool \"stakgrow\"",
            file.display()
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // The one tool the agent does not run, with why.
    let (code, err, file) = check_config(&dir, "[[select]]\ntool = \"profile\"\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:2:8:", file.display()))
            && err.contains("not run by the agent: it samples"),
        "{err}"
    );
    // Patterns are for the tool they are named for.
    let (code, err, file) = check_config(
        &dir,
        "[[select]]\ntool = \"offcpu\"\nfunclatency = [\"main.*\"]\n",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2:8: funclatency patterns with tool \"offcpu\"",
            file.display()
        )),
        "{err}"
    );
    // A script file that is not there: the key's place and the path.
    let (code, err, file) = check_config(&dir, "[[select]]\n  script = \"nowhere.stp\"\n");
    assert_eq!(code, Some(1), "{err}");
    let missing = dir.join("nowhere.stp");
    assert!(
        err.contains(&format!(
            "{}:2:12: script {}",
            file.display(),
            missing.display()
        )),
        "{err}"
    );
    // A script with a syntax error: the key's place, then the script's.
    let script = dir.join("bad.stp");
    std::fs::write(
        &script,
        "global n\nprobe process.function(\"main.x\") {\n    n++ +\n}\n",
    )
    .unwrap();
    let (code, err, file) = check_config(&dir, "[[select]]\nscript = \"bad.stp\"\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("{}:2:10:", file.display())), "{err}");
    assert!(err.contains(&format!("{}:4:1", script.display())), "{err}");
    // The same in script_text: its lines counted from the text's start.
    let (code, err, file) = check_config(
        &dir,
        "[[select]]\nscript_text = \"\"\"\nprobe process.function(\"main.x\") { n = }\n\"\"\"\n",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:2:15: script_text", file.display())),
        "{err}"
    );
    assert!(err.contains(":1:"), "{err}");
    // The flags say which flag.
    let out = run(gotap().args(["agent", "--check-config", "--tool", "nope"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--tool: unknown tool \"nope\""),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gcstat_by_flags_counts_the_cycles_and_pauses_the_runtime_reports_after_the_process_exits() {
    let _quiet = quiet();
    // The oldest and the newest Go: their pauses start at different clocks
    // (gobin's `pause_start_clocks`), and the agent's script differs with them.
    let all = testprogs::toolchains();
    for tc in [
        all.first().expect("a toolchain"),
        all.last().expect("a toolchain"),
    ] {
        let bin = Private::copy(
            &testprogs::build("gc_pauses", tc, Variant::Default),
            &format!("agent-gcstat-{}", tc.minor),
        );
        let agent = Agent::start(&["--exe", &glob_of(&bin.path), "--tool", "gcstat"], &[]);
        // It says "ready", then waits 2 s before it allocates: the probes are armed by
        // then (the test waits for them), so every cycle is seen.
        let mut prog = Command::new(&bin.path)
            .args(["192", "2000"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start gc_pauses");
        let pid = prog.id().to_string();
        agent.wait_sample(
            "gotap_process_probes",
            &[("process_pid", &pid)],
            Duration::from_secs(30),
            |v| v >= 3.0,
        );
        let mut out = String::new();
        std::io::Read::read_to_string(prog.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(prog.wait().unwrap().success());
        let own = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("the program's {name}: {out}"))
        };
        let (cycles, pauses_ns) = (own("cycles"), own("pauses_ns"));
        assert!(cycles >= 3.0, "{out}");
        // Read after the process exited: its last values stay for exit_linger_ms. A
        // cycle may end between the program's reading of its count and its exit
        // (it prints more after, and reads MemStats, which stops the world).
        agent.wait_sample(
            "go_gc_cycles_total",
            &[("process_pid", &pid)],
            Duration::from_secs(10),
            |v| v == cycles || v == cycles + 1.0,
        );
        let sum = agent.wait_sample(
            "go_gc_pause_seconds_sum",
            &[("process_pid", &pid)],
            Duration::from_secs(10),
            |v| v > 0.0,
        );
        // /gc/pauses:seconds is a histogram the program sums at its buckets' midpoints:
        // within 15% of the pauses, as the one-shot gcstat is held (go_numbers.rs).
        assert!(
            (sum * 1e9 - pauses_ns).abs() <= 0.15 * pauses_ns,
            "pauses {} ns, /gc/pauses:seconds {pauses_ns} ns\n{}",
            sum * 1e9,
            agent.metrics()
        );
        let (_, err) = agent.terminate();
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A program's stdout, read line by line on a thread as it comes (so that its pipe
/// never fills), all of it once it has exited.
struct Lines {
    child: Child,
    stdin: Option<ChildStdin>,
    text: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Lines {
    fn start(cmd: &mut Command) -> Lines {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the program");
        let stdin = child.stdin.take();
        let pipe = child.stdout.take().expect("stdout");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Lines {
            child,
            stdin,
            text,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits at most 30 s for the line `line`.
    fn wait_line(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.text().lines().any(|l| l == line) {
            assert!(Instant::now() < deadline, "no {line:?} in\n{}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends the line the programs wait for before they work.
    fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin).expect("write");
        stdin.flush().expect("flush");
    }

    /// Waits for the program to exit successfully; all it printed.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        assert!(status.success(), "{}", self.text());
        self.text()
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// funclatency in the agent (`--funclatency`, a stripped binary), scraped by a real
/// Prometheus: each function's `go_function_latency_seconds_count` is the latency
/// program's own count of its calls, its `_sum` agrees with the program's own
/// time as the one-shot tool's must (`oracle::latency_agrees`), and the calls that
/// panicked are `go_function_untimed_calls_total{cause="no_return"}`. The agent
/// exports no longest call, so the program's own longest is left out of both
/// totals: gotap times every call at least as long as the program does, so its own
/// longest is no shorter, and the bound is the one-shot test's or tighter above.
#[test]
fn funclatency_counts_each_functions_calls_and_sums_the_time_the_program_measures() {
    let _quiet = quiet();
    let bin = Private::copy(
        &testprogs::build("latency", &testprogs::newest(), Variant::Stripped),
        "agent-lat",
    );
    let agent = Agent::start(
        &["--exe", &glob_of(&bin.path), "--funclatency", "main.do*"],
        &[],
    );
    let mut prog = Lines::start(Command::new(&bin.path).args(["50", "wait"]));
    prog.wait_line("ready");
    let pid = prog.pid();
    // Armed: every function's series is there, at 0, before the program calls any.
    for f in [
        "main.doWork",
        "main.doRecurse",
        "main.doGrow",
        "main.doMayPanic",
    ] {
        agent.wait_sample(
            "go_function_latency_seconds_count",
            &[("process_pid", &pid), ("function", f)],
            Duration::from_secs(30),
            |v| v == 0.0,
        );
    }
    let prom = Prometheus::start(&[agent.target()], Duration::from_millis(200));
    prog.go();
    let program = prog.finish();
    let want = program_latency(&program);
    assert_eq!(want.len(), 4, "the program's lines\n{program}");
    let series =
        |metric: &str, f: &str| format!("{metric}{{function=\"{f}\",process_pid=\"{pid}\"}}");
    for (f, (calls, ns, longest)) in &want {
        prom.wait_for(
            &series("go_function_latency_seconds_count", f),
            Duration::from_secs(30),
            |r| (r.len() == 1 && r[0].1 == *calls as f64).then_some(()),
        );
        // Read with the final count: no call is left to add to it.
        let sum = prom.query(&series("go_function_latency_seconds_sum", f));
        assert_eq!(sum.len(), 1, "{f}: {sum:?}");
        let got = ((sum[0].1 * 1e9).round() as u64, *longest);
        if let Err(e) = latency_agrees(*calls, got, (*ns, *longest), false) {
            panic!(
                "{f}: Prometheus's _sum: {e}\n{program}\n{}",
                agent.metrics()
            );
        }
    }
    let panics = program_panics(&program);
    assert!(panics > 0);
    prom.wait_for(
        &format!(
            "go_function_untimed_calls_total{{function=\"main.doMayPanic\",cause=\"no_return\",process_pid=\"{pid}\"}}"
        ),
        Duration::from_secs(30),
        |r| (r.len() == 1 && r[0].1 == panics as f64).then_some(()),
    );
    let (_, err) = agent.terminate();
    assert!(!err.contains("panicked"), "{err}");
}

/// offcpu in the agent on two processes of one binary at once, scraped by a real
/// Prometheus: each process's `go_offcpu_waits_total{reason="sleep"}` is its own
/// count of its sleeps, and its `go_offcpu_seconds_total` in "sleep" and "chan
/// receive" agree with its own time in those calls within 5%
/// (`oracle::offcpu_agrees`), as the one-shot tool's exported values are held. The
/// two run different numbers of rounds: goroutine ids of one process counted for
/// the other would show.
#[test]
fn offcpu_of_two_processes_of_one_binary_is_each_ones_own_time_in_sleep_and_chan_receive() {
    let _quiet = quiet();
    let bin = Private::copy(
        &testprogs::build("blocking", &testprogs::newest(), Variant::Default),
        "agent-offcpu",
    );
    let agent = Agent::start(&["--exe", &glob_of(&bin.path), "--tool", "offcpu"], &[]);
    let mut progs: Vec<Lines> = ["120", "60"]
        .iter()
        .map(|rounds| Lines::start(Command::new(&bin.path).args([rounds, "wait"])))
        .collect();
    for p in &progs {
        p.wait_line("ready");
        agent.wait_sample(
            "gotap_process_probes",
            &[("process_pid", &p.pid())],
            Duration::from_secs(30),
            |v| v >= 2.0,
        );
    }
    let prom = Prometheus::start(&[agent.target()], Duration::from_millis(200));
    for p in &mut progs {
        p.go();
    }
    let done: Vec<(String, String)> = progs.into_iter().map(|p| (p.pid(), p.finish())).collect();
    for (pid, program) in &done {
        let (sleeps, _) = program_blocking(program, "sleep ");
        let q = format!("go_offcpu_waits_total{{reason=\"sleep\",process_pid=\"{pid}\"}}");
        prom.wait_for(&q, Duration::from_secs(30), |r| {
            (r.len() == 1 && r[0].1 == sleeps as f64).then_some(())
        });
        for (reason, mine) in [("sleep", "sleep "), ("chan receive", "recv ")] {
            let (_, own) = program_blocking(program, mine);
            let q = format!("go_offcpu_seconds_total{{reason=\"{reason}\",process_pid=\"{pid}\"}}");
            let got = prom.wait_for(&q, Duration::from_secs(30), |r| {
                (r.len() == 1).then(|| (r[0].1 * 1e9).round() as u64)
            });
            if let Err(e) = offcpu_agrees(got, own) {
                panic!("pid {pid} {reason:?}: {e}\n{program}\n{}", agent.metrics());
            }
        }
    }
    let (_, err) = agent.terminate();
    assert!(!err.contains("panicked"), "{err}");
}

/// `(unix ms, NumGoroutine)` of goroutine_steps's `n UNIX_MS N` lines.
fn num_goroutine_lines(out: &str) -> Vec<(u64, i64)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("n ")?.split(' ');
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect()
}

/// goroutines in the agent on two processes of one binary at once, each holding its
/// own steps of goroutines at its own pace: every `go_goroutines` sample of each
/// process, taken where the program's `runtime.NumGoroutine()` held steady from
/// 300 ms before the scrape (the agent collects every 100 ms) to after it, is
/// within 2 of it, as the one-shot tool's count is held (go_numbers.rs), and each
/// process is seen through at least three of its steps.
#[test]
fn go_goroutines_of_two_processes_of_one_binary_is_each_ones_num_goroutine() {
    let _quiet = quiet();
    let bin = Private::copy(
        &testprogs::build("goroutine_steps", &testprogs::newest(), Variant::Stripped),
        "agent-goroutines",
    );
    let agent = Agent::start(&["--exe", &glob_of(&bin.path), "--tool", "goroutines"], &[]);
    let progs: Vec<Lines> = ["1500", "2100"]
        .iter()
        .map(|ms| Lines::start(Command::new(&bin.path).arg(ms)))
        .collect();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    // (scrape time, value) per process, until both have exited.
    let mut samples: Vec<Vec<(u64, i64)>> = vec![Vec::new(); progs.len()];
    let pids: Vec<String> = progs.iter().map(Lines::pid).collect();
    let mut progs: Vec<Option<Lines>> = progs.into_iter().map(Some).collect();
    let mut outputs = vec![String::new(); pids.len()];
    let deadline = Instant::now() + Duration::from_secs(60);
    while progs.iter().any(Option::is_some) {
        assert!(Instant::now() < deadline, "the programs did not end");
        let text = agent.metrics();
        let t = now_ms();
        for (i, pid) in pids.iter().enumerate() {
            if let Some(v) = sample_in(&text, "go_goroutines", &[("process_pid", pid)]) {
                samples[i].push((t, v as i64));
            }
            if let Some(p) = &mut progs[i]
                && p.child.try_wait().expect("try_wait").is_some()
            {
                outputs[i] = progs[i].take().expect("a program").finish();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, pid) in pids.iter().enumerate() {
        let program = num_goroutine_lines(&outputs[i]);
        let mut compared = 0;
        let mut steps = std::collections::BTreeSet::new();
        for &(t, live) in &samples[i] {
            let before = program
                .iter()
                .rev()
                .find(|p| p.0 + 300 <= t && t - p.0 <= 450);
            let after = program.iter().find(|p| p.0 >= t && p.0 - t <= 150);
            let (Some(b), Some(a)) = (before, after) else {
                continue;
            };
            // Steady: every line from `before` to `after` says the same.
            if program
                .iter()
                .filter(|p| p.0 >= b.0 && p.0 <= a.0)
                .any(|p| p.1 != b.1)
            {
                continue;
            }
            assert!(
                (live - b.1).abs() <= 2,
                "pid {pid}: at {t} the agent says {live}, the program's NumGoroutine {}\nprogram: {program:?}\nagent: {:?}",
                b.1,
                samples[i]
            );
            compared += 1;
            steps.insert(b.1);
        }
        assert!(
            compared >= 6 && steps.len() >= 3,
            "pid {pid}: {compared} samples compared over steps {steps:?}\nprogram: {program:?}\nagent: {:?}",
            samples[i]
        );
    }
    let (_, err) = agent.terminate();
    assert!(!err.contains("panicked"), "{err}");
}
