//! The one file to copy: `scripts/dist` builds gotap as a static executable, and that
//! file runs on its own — its help, a real trace of a Go program, and the agent
//! pushing OTLP to a collector named by host name (glibc's resolver linked in
//! statically still answers for `localhost`). Needs root; the first run builds the
//! `dist` profile (several minutes).

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use testprogs::peers::{self, Collector};

fn artefact() -> PathBuf {
    let child = Command::new("bash")
        .arg(testprogs::repo_root().join("scripts/dist"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/dist");
    let (out, killed) = wait_output(child, Duration::from_secs(30 * 60));
    assert!(
        !killed && out.status.success(),
        "scripts/dist failed:\n{}",
        text(&out.stderr)
    );
    let path = PathBuf::from(text(&out.stdout).trim());
    assert!(path.exists(), "{}", path.display());
    path
}

#[test]
fn the_static_artefact_is_one_file_that_traces_and_exports() {
    let exe = artefact();
    let ldd = Command::new("ldd").arg(&exe).output().expect("ldd");
    let said = format!("{}{}", text(&ldd.stdout), text(&ldd.stderr));
    // A non-PIE static executable: ldd names no library and says so in these words.
    assert!(said.contains("not a dynamic executable"), "{said}");
    assert!(!said.contains(".so"), "{said}");
    let help = run(Command::new(&exe).arg("--help"));
    assert!(help.status.success());
    assert!(
        text(&help.stdout).contains("gotap agent"),
        "{}",
        text(&help.stdout)
    );

    // A real trace.
    let tc = testprogs::newest();
    let counts = Private::copy(
        &testprogs::build("counts", &tc, Variant::Stripped),
        "dist-counts",
    );
    let out = run(Command::new(&exe)
        .args(["funccount", "-c"])
        .arg(format!("{} 2", counts.path.display()))
        .arg("main.leaf"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        common::counts(&text(&out.stdout)).get("main.leaf"),
        Some(&2000),
        "{}",
        text(&out.stdout)
    );

    // The agent, pushing to a collector named "localhost".
    let col = Collector::start();
    let port = peers::free_port();
    let mut agent = Command::new(&exe)
        .args([
            "agent",
            "--prometheus",
            &format!("127.0.0.1:{port}"),
            "--exe",
            "/nonexistent/*",
        ])
        .args(["--otlp", &format!("http://localhost:{}", col.port)])
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let agent_pid = agent.id().to_string();
    col.wait_for(Duration::from_secs(30), |reqs| {
        peers::metric_points(reqs).into_iter().find(|(a, m, _)| {
            m["name"] == "gotap.agent.binaries"
                && peers::attribute(a, "process.pid").as_deref() == Some(agent_pid.as_str())
        })
    });
    let _ = Command::new("kill").arg(&agent_pid).status();
    let _ = agent.wait();
}
