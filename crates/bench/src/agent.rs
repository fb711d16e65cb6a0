//! Comparison 9: the agent under churn and at rest, and the cost of exporting
//! (issue 15's figures). There is no peer that does the same work, so each figure
//! stands against the target the issue names.
//!
//! Churn: copies of `agent_work` (distinct inodes, so distinct binaries to the agent)
//! are started one after another, at most 20 alive, each run for one round and then
//! told to exit, under an agent that runs funccount `main.*`, stackgrow and gcstat
//! on each (a configuration file of three selects, as issue 15 names the churn; a
//! binary's tools are compiled and armed with its first process). "Armed" is when
//! the agent, run with `-v`, says it traces the pid,
//! measured from the moment the bench spawned it; counts are read back from a real
//! Prometheus scraping the agent and compared with what the programs count
//! themselves. The agent's descriptors and links are counted from `/proc`, its peak
//! memory is its `VmHWM`, its CPU at rest is its `utime + stime` over a quiet spell
//! with every program alive and idle.
//!
//! Export: 10,000 series in the export crate's registry, scraped over HTTP from its
//! `/metrics` server and pushed as one OTLP/HTTP request to a real Collector.

use crate::Config;
use crate::error::{Error, Result};
use crate::report::{Goal, Row};
use crate::setup::Env;
use crate::stats::{Cell, Stat};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testprogs::peers::{Collector, Prometheus, free_port};

const GROUP: &str = "9. The agent under churn, at rest, and exporting (issue 15; no peer)";

/// A traced program: its pipes and when it was spawned.
struct Work {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    spawned: Instant,
}

impl Work {
    fn start(exe: &Path) -> Result<Work> {
        let spawned = Instant::now();
        let mut child = Command::new(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::File {
                path: exe.to_path_buf(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Setup("agent_work without pipes".into()));
        };
        Ok(Work {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            spawned,
        })
    }

    /// One round; the program's own total of `main.work` calls so far.
    fn round(&mut self) -> Result<u64> {
        let failed = |what: &str| Error::Setup(format!("agent_work: {what}"));
        writeln!(self.stdin, "go").map_err(|_| failed("write"))?;
        self.stdin.flush().map_err(|_| failed("flush"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|_| failed("read"))?;
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("main.work="))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| failed(&format!("no main.work= in {line:?}")))
    }

    fn exit(mut self) {
        let _ = writeln!(self.stdin, "exit");
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

/// The agent, with the moment each "tracing pid N" line arrived.
struct Agent {
    child: Child,
    port: u16,
    armed: Arc<Mutex<HashMap<u32, Instant>>>,
}

impl Agent {
    fn start(env: &Env, dir: &Path) -> Result<Agent> {
        let port = free_port();
        // Issue 15's churn: funccount 'main.*', stackgrow and gcstat on every
        // process of the directory.
        let exe = format!("{}/*", dir.display());
        let config = dir.join("agent.toml");
        let text = format!(
            "[[select]]\nexe = \"{exe}\"\nfunccount = [\"main.*\"]\n\n\
             [[select]]\nexe = \"{exe}\"\ntool = \"stackgrow\"\n\n\
             [[select]]\nexe = \"{exe}\"\ntool = \"gcstat\"\n"
        );
        std::fs::write(&config, text).map_err(|source| Error::File {
            path: config.clone(),
            source,
        })?;
        let mut child = Command::new(&env.gotap)
            .arg("agent")
            .args(["--prometheus", &format!("127.0.0.1:{port}")])
            .args(["--collect-ms", "500", "--exit-linger-ms", "5000"])
            .arg("--config")
            .arg(&config)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::File {
                path: env.gotap.clone(),
                source,
            })?;
        let armed = Arc::new(Mutex::new(HashMap::new()));
        let (pipe, sink) = (child.stderr.take(), armed.clone());
        std::thread::spawn(move || {
            let Some(pipe) = pipe else { return };
            for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                let pid = line
                    .strip_prefix("gotap agent: tracing pid ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|p| p.parse::<u32>().ok());
                if let Some(pid) = pid {
                    sink.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(pid, Instant::now());
                }
            }
        });
        let agent = Agent { child, port, armed };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(Error::Setup("the agent never listened".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(agent)
    }

    /// When the agent said it traces `pid`, waiting at most 10 s.
    fn armed_at(&self, pid: u32) -> Option<Instant> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(t) = self.armed.lock().ok()?.get(&pid) {
                return Some(*t);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id())).unwrap_or_default()
    }

    /// Its open descriptors other than sockets (Prometheus keeps its scrape
    /// connection open), and how many of them are BPF links.
    fn fds(&self) -> (usize, usize) {
        let dir = PathBuf::from(format!("/proc/{}/fd", self.child.id()));
        let mut all = 0;
        let mut links = 0;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            if target.to_string_lossy().starts_with("socket:") {
                continue;
            }
            all += 1;
            if target.to_string_lossy().contains("bpf_link") {
                links += 1;
            }
        }
        (all, links)
    }

    /// CPU seconds used so far (utime + stime).
    fn cpu_secs(&self) -> f64 {
        let stat = self.proc_file("stat");
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = after
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // Fields 14 and 15 of stat; `after` starts at field 3.
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        ticks as f64 / 100.0
    }

    /// Peak resident memory in MiB.
    fn peak_mib(&self) -> f64 {
        self.proc_file("status")
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn one(x: f64) -> Cell {
    Cell::Value(Stat {
        median: x,
        min: x,
        max: x,
        n: 1,
    })
}

/// The `q`-quantile of `xs` (sorted here).
fn quantile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() as f64 - 1.0) * q).round() as usize;
    xs[i.min(xs.len() - 1)]
}

pub fn churn(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let (processes, binaries, span) = if cfg.quick {
        (20, 4, Duration::from_secs(10))
    } else {
        (200, 20, Duration::from_secs(120))
    };
    let exe = env.program("agent_work")?;
    let dir = env.work.join("churn");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|source| Error::File {
        path: dir.clone(),
        source,
    })?;
    let copies: Vec<PathBuf> = (0..binaries)
        .map(|i| {
            let p = dir.join(format!("svc-{i:02}"));
            std::fs::copy(&exe, &p)
                .map(|_| p.clone())
                .map_err(|source| Error::File { path: p, source })
        })
        .collect::<Result<_>>()?;
    let agent = Agent::start(env, &dir)?;
    std::thread::sleep(Duration::from_millis(500));
    // Its own links (the exec and exit watchers) are there before any process.
    let (fds0, links0) = agent.fds();
    let prom = std::panic::catch_unwind(|| {
        Prometheus::start(
            &[format!("127.0.0.1:{}", agent.port)],
            Duration::from_millis(500),
        )
    })
    .map_err(|_| Error::Setup("Prometheus did not start (see above)".into()))?;

    let mut alive: VecDeque<Work> = VecDeque::new();
    let mut latencies = Vec::new();
    let mut missed = 0usize;
    let mut own_total = 0u64;
    let mut links_full = 0usize;
    let mut idle_cpu = f64::NAN;
    let tick = span / processes as u32;
    let start = Instant::now();
    for i in 0..processes {
        let due = start + tick * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut w = Work::start(&copies[i % binaries])?;
        match agent.armed_at(w.child.id()) {
            Some(t) => latencies.push(t.duration_since(w.spawned).as_secs_f64() * 1e3),
            None => missed += 1,
        }
        // One round now, and the total at exit is what the program counted.
        w.round()?;
        alive.push_back(w);
        if alive.len() == binaries {
            links_full = links_full.max(agent.fds().1 - links0);
            if idle_cpu.is_nan() {
                // Every program alive and idle: the agent at rest.
                let quiet = if cfg.quick { 2.0 } else { 10.0 };
                let c0 = agent.cpu_secs();
                std::thread::sleep(Duration::from_secs_f64(quiet));
                idle_cpu = (agent.cpu_secs() - c0) / quiet * 100.0;
            }
        }
        if alive.len() > binaries
            && let Some(mut old) = alive.pop_front()
        {
            own_total += old.round()?;
            old.exit();
        }
    }
    for mut w in alive.drain(..) {
        own_total += w.round()?;
        w.exit();
    }
    // The last counts are read at the next collection, then scraped.
    // Each process's series ends with its linger; its last value stays in
    // Prometheus's history, which max_over_time reads.
    let q = "sum(max_over_time(go_function_calls_total{function=\"main.work\"}[15m]))";
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut in_prom = f64::NAN;
    while Instant::now() < deadline {
        in_prom = prom.query(q).first().map_or(f64::NAN, |r| r.1);
        if in_prom == own_total as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Past the linger of the last exit, the last binary's probes are gone too (their
    // links released on the agent's reaper thread, an RCU grace period each): up to
    // 10 s more for that.
    std::thread::sleep(Duration::from_secs(7));
    let settle = Instant::now() + Duration::from_secs(10);
    while agent.fds() != (fds0, links0) && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(250));
    }
    let (fds1, links1) = agent.fds();
    let peak = agent.peak_mib();
    let found = latencies.len();
    let p50 = quantile(&mut latencies.clone(), 0.5);
    let p99 = quantile(&mut latencies, 0.99);
    let note = format!(
        "{processes} processes of {binaries} binaries over {} s",
        span.as_secs()
    );
    Ok(vec![
        Row::new(
            GROUP,
            "churn: processes found and traced",
            "processes",
            one(found as f64),
            Cell::None,
        )
        .note(format!("{note}; {missed} not traced within 10 s")),
        Row::new(
            GROUP,
            "churn: exec to probes armed, median",
            "ms",
            one(p50),
            Cell::None,
        ),
        Row::new(
            GROUP,
            "churn: exec to probes armed, p99",
            "ms",
            one(p99),
            Cell::None,
        )
        .goal(Goal::AtMost(100.0), "#15"),
        Row::new(
            GROUP,
            "churn: probe links with every binary alive",
            "links",
            one(links_full as f64),
            Cell::None,
        )
        .note(format!(
            "{binaries} binaries, {:.1} links each (funccount's one multi-uprobe link, stackgrow's and gcstat's), however many processes run them",
            links_full as f64 / binaries as f64
        )),
        Row::new(
            GROUP,
            "churn: `main.work` calls in Prometheus − the programs' own count",
            "calls",
            one(in_prom - own_total as f64),
            Cell::None,
        )
        .note(format!("the programs counted {own_total}")),
        Row::new(
            GROUP,
            "churn: descriptors (not sockets) left after every process exited, − before any",
            "fds",
            one(fds1 as f64 - fds0 as f64),
            Cell::None,
        )
        .note(format!(
            "{} BPF links left besides the agent's own {links0}",
            links1 - links0
        )),
        Row::new(
            GROUP,
            "churn: agent peak resident memory (VmHWM)",
            "MiB",
            one(peak),
            Cell::None,
        )
        .goal(Goal::AtMost(50.0), "#15"),
        Row::new(
            GROUP,
            "agent at rest, every program alive and idle: CPU",
            "% of a core",
            one(idle_cpu),
            Cell::None,
        )
        .goal(Goal::AtMost(1.0), "#15"),
    ])
}

pub fn export(_env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    use export::{Registry, ResourceEnv, ResourceId, names};
    let series = 10_000usize;
    let registry = Arc::new(Registry::new(series));
    let calls = registry
        .register(&names::FUNCTION_CALLS.desc())
        .map_err(|e| Error::Setup(e.to_string()))?;
    let renv = ResourceEnv::from_env(|_| None);
    let per = 1000;
    for r in 0..series / per {
        let id = ResourceId(r as u64 + 1);
        registry.set_resource(
            id,
            renv.process(&export::ProcessFacts {
                pid: 10_000 + r as u32,
                executable: format!("/srv/svc-{r}"),
                main_module: Some(format!("example.com/svc{r}")),
                go_version: Some("go1.27.3".into()),
                container_id: None,
                pod_uid: None,
            }),
        );
        for f in 0..per {
            registry
                .add(
                    calls,
                    id,
                    vec![("function".into(), format!("main.handler{f:04}"))],
                    f as f64,
                )
                .map_err(|e| Error::Setup(e.to_string()))?;
        }
    }
    let reps = if cfg.quick { 1 } else { cfg.reps.max(5) };
    let server = export::prometheus::Server::start("127.0.0.1:0", registry.clone())
        .map_err(|e| Error::Setup(e.to_string()))?;
    let addr = server.local_addr();
    let mut scrape = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let body = http_get(addr)?;
        scrape.push(t.elapsed().as_secs_f64() * 1e3);
        if !body.contains("main.handler0999") {
            return Err(Error::Setup("/metrics lacks a series".into()));
        }
    }
    server.stop();
    let collector = std::panic::catch_unwind(Collector::start)
        .map_err(|_| Error::Setup("the Collector did not start (see above)".into()))?;
    let url = format!("{}/v1/metrics", collector.endpoint());
    let mut push = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let body = export::otlp::encode(&export::otlp::metrics_request(&registry.snapshot()));
        let sent = ureq::post(&url)
            .header("Content-Type", "application/x-protobuf")
            .send(&body[..]);
        push.push(t.elapsed().as_secs_f64() * 1e3);
        sent.map_err(|e| Error::Setup(format!("OTLP push: {e}")))?;
    }
    let cell = |xs: &mut Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        Cell::Value(Stat {
            median: quantile(xs, 0.5),
            min: xs[0],
            max: xs[xs.len() - 1],
            n: xs.len(),
        })
    };
    Ok(vec![
        Row::new(
            GROUP,
            "export: 10,000 series scraped from /metrics (HTTP GET, text)",
            "ms",
            cell(&mut scrape),
            Cell::None,
        )
        .goal(Goal::AtMost(50.0), "#15"),
        Row::new(
            GROUP,
            "export: 10,000 series pushed to the Collector (snapshot, encode, OTLP/HTTP POST)",
            "ms",
            cell(&mut push),
            Cell::None,
        )
        .goal(Goal::AtMost(50.0), "#15"),
    ])
}

/// `GET /metrics` over a plain socket; the body.
fn http_get(addr: std::net::SocketAddr) -> Result<String> {
    use std::io::Read;
    let failed = |e: std::io::Error| Error::Setup(format!("GET /metrics: {e}"));
    let mut s = std::net::TcpStream::connect(addr).map_err(failed)?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(failed)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(failed)?;
    Ok(out)
}
