//! The deployment files in `deploy/`: each parses as what it is (a systemd unit as
//! INI, a Dockerfile's instructions, the Kubernetes manifest as YAML), and the command
//! line each one starts is one gotap accepts (run with `--check-config`, with the
//! configuration the file ships). The capabilities the DaemonSet and the unit grant
//! are tried for real: the agent runs under exactly those (`setpriv`) and counts.
//! A cluster and a container engine cannot run here; the README says so.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn deploy(name: &str) -> PathBuf {
    testprogs::repo_root().join("deploy").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// Runs gotap with `args` (the deployment's, with its paths mapped to the
/// repository's files) and `--check-config`; panics with the output unless it is
/// accepted.
fn accepted(args: &[String], env: &[(String, String)], what: &str) {
    let mut cmd = gotap();
    cmd.args(args).arg("--check-config");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "{what}: gotap {args:?} was refused:\n{}",
        text(&out.stderr)
    );
}

/// The paths the deployment files use, mapped to where their files are here.
fn mapped(arg: &str) -> String {
    match arg {
        "/etc/gotap/agent.toml" => deploy("agent.toml").display().to_string(),
        a => a.to_string(),
    }
}

/// `[Section]` → key → values (a key may repeat), as systemd reads unit files.
fn ini(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            out.entry(name.to_string()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line:?}", n + 1));
        let s = section
            .as_ref()
            .unwrap_or_else(|| panic!("line {}: a key before any section", n + 1));
        out.get_mut(s)
            .unwrap()
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    out
}

const CAPS: [&str; 5] = [
    "BPF",
    "PERFMON",
    "SYS_PTRACE",
    "DAC_READ_SEARCH",
    "SYS_RESOURCE",
];

#[test]
fn the_systemd_unit_parses_and_starts_a_command_gotap_accepts() {
    let unit = ini(&read("gotap-agent.service"));
    for s in ["Unit", "Service", "Install"] {
        assert!(unit.contains_key(s), "no [{s}]");
    }
    let service = &unit["Service"];
    let exec = &service["ExecStart"];
    assert_eq!(exec.len(), 1);
    let words: Vec<String> = exec[0].split_whitespace().map(mapped).collect();
    assert_eq!(words[0], "/usr/local/bin/gotap");
    assert_eq!(words[1], "agent");
    accepted(&words[1..], &[], "gotap-agent.service");
    let caps: Vec<&str> = service["AmbientCapabilities"][0]
        .split_whitespace()
        .collect();
    let want: Vec<String> = CAPS.iter().map(|c| format!("CAP_{c}")).collect();
    assert_eq!(caps, want);
    assert_eq!(
        service["CapabilityBoundingSet"],
        service["AmbientCapabilities"]
    );
    assert_eq!(service["KillSignal"], ["SIGTERM"]);
    assert!(service["ExecReload"][0].contains("-HUP"));
}

/// A Dockerfile's instructions: `(INSTRUCTION, arguments)`, continuations joined.
fn dockerfile(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(cont) = t.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let (ins, args) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        out.push((ins.to_ascii_uppercase(), args.trim().to_string()));
        pending.clear();
    }
    out
}

fn json_words(s: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(s).unwrap_or_else(|e| panic!("not an exec-form JSON array: {s}: {e}"));
    v.as_array()
        .expect("an array")
        .iter()
        .map(|w| w.as_str().expect("a string").to_string())
        .collect()
}

/// The image's ENTRYPOINT and CMD.
fn image_command() -> (Vec<String>, Vec<String>) {
    let ins = dockerfile(&read("Dockerfile"));
    const KNOWN: [&str; 8] = [
        "FROM",
        "COPY",
        "ENTRYPOINT",
        "CMD",
        "EXPOSE",
        "LABEL",
        "ENV",
        "USER",
    ];
    for (i, _) in &ins {
        assert!(KNOWN.contains(&i.as_str()), "unknown instruction {i}");
    }
    assert_eq!(ins[0].0, "FROM", "a Dockerfile starts with FROM");
    let get = |name: &str| {
        ins.iter()
            .rev()
            .find(|(i, _)| i == name)
            .map(|(_, a)| json_words(a))
            .unwrap_or_default()
    };
    // What the image copies must exist after scripts/dist (the binary) or now.
    for (_, args) in ins.iter().filter(|(i, _)| i == "COPY") {
        let src = args.split_whitespace().next().unwrap();
        if src != "target/static/gotap" {
            assert!(
                testprogs::repo_root().join(src).exists(),
                "COPY {src}: no such file"
            );
        }
    }
    (get("ENTRYPOINT"), get("CMD"))
}

#[test]
fn the_dockerfile_parses_and_its_entrypoint_and_cmd_are_accepted() {
    let (entry, cmd) = image_command();
    assert_eq!(entry[0], "/gotap");
    let args: Vec<String> = entry[1..].iter().chain(&cmd).map(|a| mapped(a)).collect();
    accepted(&args, &[], "Dockerfile");
}

fn yaml_str(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

#[test]
fn the_daemonset_parses_uses_host_pid_and_capabilities_and_its_command_is_accepted() {
    let docs = YamlLoader::load_from_str(&read("daemonset.yaml")).expect("YAML");
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("no {k} in daemonset.yaml"))
    };
    let ds = kind("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    let added: Vec<String> = sc["capabilities"]["add"]
        .as_vec()
        .expect("capabilities.add")
        .iter()
        .map(yaml_str)
        .collect();
    assert_eq!(added, CAPS);
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    // The selector picks the template's pods.
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"],
        ds["spec"]["template"]["metadata"]["labels"]
    );
    // The configuration it mounts, written where the command reads it.
    let cm = kind("ConfigMap");
    let toml = cm["data"]["agent.toml"]
        .as_str()
        .expect("agent.toml in the ConfigMap");
    let dir = std::env::temp_dir().join(format!("gotap-test-{}-daemonset", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("agent.toml");
    std::fs::write(&conf, toml).unwrap();
    let mount = c["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some("config"))
        .and_then(|m| m["mountPath"].as_str())
        .expect("the config mount");
    // Kubernetes runs the image's ENTRYPOINT with the container's args.
    let (entry, _) = image_command();
    let args: Vec<String> = entry[1..]
        .iter()
        .cloned()
        .chain(c["args"].as_vec().unwrap().iter().map(yaml_str))
        .map(|a| {
            if a == format!("{mount}/agent.toml") {
                conf.display().to_string()
            } else {
                a
            }
        })
        .collect();
    // The environment, with $(VAR) expanded as the kubelet does (fieldRefs get
    // documentation addresses).
    let mut env: Vec<(String, String)> = Vec::new();
    for e in c["env"].as_vec().unwrap() {
        let name = yaml_str(&e["name"]);
        let mut value = match &e["value"] {
            Yaml::BadValue => match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("status.hostIP") => "192.0.2.10".to_string(),
                Some("spec.nodeName") => "node-1".to_string(),
                other => panic!("{name}: unexpected fieldRef {other:?}"),
            },
            v => yaml_str(v),
        };
        for (k, v) in &env {
            value = value.replace(&format!("$({k})"), v);
        }
        env.push((name, value));
    }
    accepted(&args, &env, "daemonset.yaml");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shipped_configuration_is_valid() {
    accepted(
        &[
            "agent".into(),
            "--config".into(),
            deploy("agent.toml").display().to_string(),
        ],
        &[],
        "deploy/agent.toml",
    );
}

#[test]
fn the_agent_counts_with_only_the_capabilities_the_deployments_grant() {
    let tc = testprogs::newest();
    let bin = Private::copy(
        &testprogs::build("agent_work", &tc, Variant::Stripped),
        "deploy-caps",
    );
    let port = testprogs::peers::free_port();
    let bounding = format!(
        "-all,{}",
        CAPS.iter()
            .map(|c| format!("+{}", c.to_ascii_lowercase()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut agent = Command::new("setpriv")
        .arg(format!("--bounding-set={bounding}"))
        .arg(env!("CARGO_BIN_EXE_gotap"))
        .args([
            "agent",
            "--prometheus",
            &format!("127.0.0.1:{port}"),
            "--collect-ms",
            "100",
            "--exe",
        ])
        .arg(&bin.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv");
    let status =
        |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let metrics = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        use std::io::{Read, Write};
        write!(s, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metrics().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The agent holds those capabilities and no other (less any this machine's
    // own bounding set lacks: this sandbox has no SYS_RESOURCE).
    let mask = |text: &str, field: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no {field} in {text}"))
    };
    let granted: u64 = [39u32, 38, 19, 2, 24].iter().map(|b| 1u64 << b).sum();
    let ours = mask(&status(std::process::id()), "CapBnd:");
    assert_eq!(mask(&status(agent.id()), "CapEff:"), granted & ours);
    let mut w = Command::new(&bin.path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = w.id().to_string();
    while !metrics().unwrap_or_default().lines().any(|l| {
        l.starts_with("gotap_process_probes{") && l.contains(&format!("process_pid=\"{pid}\""))
    }) {
        assert!(
            std::time::Instant::now() < deadline + std::time::Duration::from_secs(30),
            "not armed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    {
        use std::io::{BufRead, Write};
        let mut stdin = w.stdin.take().unwrap();
        writeln!(stdin, "go").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(w.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("main.work=1000"), "{line}");
    }
    let want = format!(
        "go_function_calls_total{{function=\"main.work\",service_name=\"unknown_service:agent_work\",process_pid=\"{pid}\"}} 1000"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !metrics().unwrap_or_default().contains(&want) {
        assert!(
            std::time::Instant::now() < deadline,
            "no count under the granted capabilities:\n{}",
            metrics().unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = w.kill();
    let _ = w.wait();
    let _ = agent.kill();
    let _ = agent.wait();
}
