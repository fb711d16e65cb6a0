//! `bench`: gotap against bpftrace, side by side, on the same work in the same run
//! (issue 7). It builds gotap and the workloads, runs every comparison with
//! interleaved repetitions, and rewrites the table in BENCHMARKS.md between its marker
//! comments, keeping the prose around it. Nothing is asserted: every figure is
//! recorded, and those that miss the target an issue names are listed as gaps.
//!
//!   cargo run --release -p bench [-- --reps N] [--quick] [--only 1,3] [--out FILE]
//!
//! `--quick` runs each comparison once on small inputs to check the harness itself;
//! it writes target/bench/BENCHMARKS.quick.md and exits non-zero only if a comparison
//! produced no numbers at all.
#![forbid(unsafe_code)]

mod agent;
mod elf;
mod error;
mod exec;
mod funclatency;
mod listing;
mod offcpu;
mod overhead;
mod profile;
mod progsize;
mod report;
mod setup;
mod sites;
mod stackgrow;
mod startup;
mod stats;
mod throughput;
mod tools;

use error::Result;
use report::Row;
use setup::Env;
use stats::Cell;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

pub struct Config {
    pub quick: bool,
    pub reps: usize,
    pub only: Option<Vec<String>>,
    pub out: Option<PathBuf>,
}

const USAGE: &str =
    "usage: bench [--reps N] [--quick] [--only 1,1e,2,3,3c,4,5,6,7,8,9,9e,10,11,12] [--out FILE]";

fn parse_args() -> std::result::Result<Config, String> {
    let mut cfg = Config {
        quick: false,
        reps: 5,
        only: None,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => cfg.quick = true,
            "--reps" => {
                cfg.reps = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--reps takes a number above 0")?
            }
            "--only" => {
                cfg.only = Some(
                    it.next()
                        .ok_or("--only takes a list like 1,3")?
                        .split(',')
                        .map(String::from)
                        .collect(),
                )
            }
            "--out" => cfg.out = Some(it.next().ok_or("--out takes a file")?.into()),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if cfg.quick {
        cfg.reps = 1;
    }
    Ok(cfg)
}

type Comparison = fn(&Env, &Config) -> Result<Vec<Row>>;

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let env = match Env::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let all: [(&str, &str, Comparison); 15] = [
        (
            "1",
            "1. Per-hit overhead on a tight loop",
            overhead::tight_loops,
        ),
        (
            "1e",
            "1e. Per-hit overhead of leaf, return and inlined-site probes",
            sites::sites,
        ),
        ("2", "2. Per-growth overhead", overhead::growth),
        ("3", "3. Command to armed probes", startup::startup),
        (
            "3c",
            "3c. Command to armed probes on cmd/go",
            startup::startup_dwarf,
        ),
        ("4", "4. Listing", listing::listing),
        ("5", "5. Events to user space", throughput::throughput),
        ("6", "6. Peak memory", startup::memory),
        ("7", "7. gotap's eBPF programs", progsize::sizes),
        ("8", "8. `gotap stackgrow` per growth", stackgrow::stackgrow),
        ("9", "9. The agent under churn and at rest", agent::churn),
        ("9e", "9e. Exporting 10,000 series", agent::export),
        (
            "10",
            "10. `gotap funclatency` per call",
            funclatency::funclatency,
        ),
        ("11", "11. `gotap profile -F 99`", profile::profile),
        ("12", "12. `gotap offcpu` per wait", offcpu::offcpu),
    ];
    let mut rows = Vec::new();
    let mut empty = Vec::new();
    for (id, name, f) in all {
        if cfg
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|x| x == id))
        {
            continue;
        }
        let t = Instant::now();
        let got = f(&env, &cfg).unwrap_or_else(|e| {
            vec![Row::new(
                name,
                "comparison",
                "",
                Cell::Failed(e.to_string()),
                Cell::None,
            )]
        });
        eprintln!("bench: {name}: {:.1} s", t.elapsed().as_secs_f64());
        if !got
            .iter()
            .any(|r| matches!(r.gotap, Cell::Value(_)) || matches!(r.peer, Cell::Value(_)))
        {
            empty.push(name);
        }
        rows.extend(got);
    }
    let header = header(&env, &cfg, started.elapsed().as_secs_f64());
    let body = report::render(&rows, &header);
    let out = cfg.out.clone().unwrap_or_else(|| {
        if cfg.quick {
            env.work.join("BENCHMARKS.quick.md")
        } else {
            env.repo.join("BENCHMARKS.md")
        }
    });
    if let Err(e) = report::splice(&out, &body) {
        eprintln!("bench: {e}");
        return ExitCode::FAILURE;
    }
    for r in rows.iter().filter(|r| r.failed()) {
        eprintln!(
            "bench: failed: {} / {}: gotap {:?} peer {:?}",
            r.group, r.what, r.gotap, r.peer
        );
    }
    eprintln!(
        "bench: wrote {} in {:.0} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    if empty.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("bench: no numbers from: {}", empty.join(", "));
        ExitCode::FAILURE
    }
}

fn header(env: &Env, cfg: &Config, secs: f64) -> String {
    let rev = setup::version_of(Command::new("git").args(["-C"]).arg(&env.repo).args([
        "rev-parse",
        "--short",
        "HEAD",
    ]));
    let bpftrace = setup::version_of(Command::new("bpftrace").arg("--version"));
    format!(
        "Run of {} on {}: {}. gotap at {rev}{}, {bpftrace}, workloads built with {}. {} repetition(s) per case, interleaved{}; the run took {:.0} s; load average (1 min) {} at the start, {} at the end (the machine is shared). Cells: median (min–max); per-hit figures are traced minus untraced of the same repetition.",
        setup::now(),
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim(),
        setup::machine(),
        env.stale_gotap
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
        env.tc.version,
        cfg.reps,
        if cfg.quick {
            " (--quick: small inputs, not figures to quote)"
        } else {
            ""
        },
        secs,
        env.load_at_start,
        setup::load_average()
    )
}
