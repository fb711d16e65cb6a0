//! The fuzz targets in the test suite: every target runs a bounded number of inputs
//! from the committed corpus (the same inputs on every run), every saved crash is
//! replayed, and the supervisor is shown to catch each way an input can fail.

use std::path::PathBuf;
use std::time::Duration;

use fuzz::run::{self, Fault, Options};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fuzz"))
}

fn options(iterations: u64) -> Options {
    Options {
        iterations,
        seed: 1,
        // Generous: this is a debug build on a busy machine; a spinning input is
        // still caught.
        time_limit: Duration::from_secs(60),
        memory_limit: 1 << 30,
        findings: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-findings"),
        fault: None,
    }
}

/// Inputs per target in the test suite; `scripts/fuzz` runs 100,000.
const BOUNDED: u64 = 120;

#[test]
fn every_target_survives_a_bounded_run_from_the_corpus() {
    for t in fuzz::TARGETS {
        let r = run::supervise(&exe(), t, &options(BOUNDED));
        let found: Vec<String> = r
            .findings
            .iter()
            .map(|f| {
                format!(
                    "input {}: {} ({})\n{}",
                    f.input,
                    f.kind,
                    f.saved.display(),
                    f.detail
                )
            })
            .collect();
        assert!(found.is_empty(), "{}:\n{}", t.name, found.join("\n"));
    }
}

#[test]
fn every_saved_crash_replays_clean() {
    for t in fuzz::TARGETS {
        for (path, _) in fuzz::corpus::crashes(t) {
            let out = std::process::Command::new(exe())
                .args(["--replay", t.name])
                .arg(&path)
                .output()
                .expect("run fuzz --replay");
            assert!(
                out.status.success(),
                "{}: {:?}\n{}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn the_driver_catches_each_kind_of_failure_and_goes_on() {
    let t = fuzz::targets::by_name("buildinfo").unwrap();
    for (fault, kind) in [
        (Fault::Panic(3), "panic"),
        (Fault::Abort(4), "signal 6"),
        (Fault::Spin(5), "timeout"),
        (Fault::Hog(6), "memory"),
    ] {
        let mut opts = options(10);
        opts.time_limit = Duration::from_secs(3);
        opts.memory_limit = 256 << 20;
        opts.fault = Some(fault);
        let r = run::supervise(&exe(), t, &opts);
        assert_eq!(r.findings.len(), 1, "{fault:?}: {:?}", r.findings);
        let f = &r.findings[0];
        assert!(f.kind.starts_with(kind), "{fault:?}: {}", f.kind);
        let at = match fault {
            Fault::Panic(n) | Fault::Abort(n) | Fault::Spin(n) | Fault::Hog(n) => n,
        };
        assert_eq!(f.input, at, "{fault:?}");
        // The finding is saved as edits that make the same input again.
        let text = std::fs::read_to_string(&f.saved).unwrap();
        let seeds = fuzz::corpus::seeds(t);
        let again = fuzz::mutate::Input::parse(&text, &seeds).unwrap();
        assert_eq!(again, fuzz::mutate::Input::make(&seeds, opts.seed, at));
    }
}

#[test]
fn the_script_target_reaches_the_checker_and_the_lowering() {
    use fuzz::script::{Stage, stage};
    let t = fuzz::targets::by_name("script").unwrap();
    let seeds = fuzz::corpus::seeds(t);
    let mut reached = std::collections::BTreeMap::new();
    for s in &seeds {
        *reached.entry(stage(&s.bytes)).or_insert(0) += 1;
    }
    // The repository's scripts name functions of other programs, so many stop at
    // the checker; the hostile shapes stop at the parser. Enough must go all the way.
    let lowered = reached.get(&Some(Stage::Lowered)).copied().unwrap_or(0);
    let refused = reached.get(&None).copied().unwrap_or(0);
    assert!(lowered >= 20, "{} seeds: {reached:?}", seeds.len());
    assert!(
        refused >= seeds.len() / 5,
        "{} seeds: {reached:?}",
        seeds.len()
    );
}
