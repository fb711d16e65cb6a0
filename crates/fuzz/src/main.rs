//! `fuzz`: runs the fuzz targets from the committed corpus and prints what each did.
//!
//! ```text
//! fuzz [--iterations N] [--seed S] [--time-limit SECS] [--memory-limit MIB]
//!      [--findings DIR] [TARGET...]
//! fuzz --replay TARGET FILE.edits
//! ```
//!
//! Exits 1 when an input broke a target; each such input is saved in the findings
//! folder as edits of a seed, to be replayed with `--replay` and, once fixed, kept in
//! `corpus/<folder>/crashes/`. `--child` is the driver's own.
#![forbid(unsafe_code)]

use std::time::Duration;

use fuzz::run::{self, Options};
use fuzz::targets;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(match args.first().map(String::as_str) {
        Some("--child") => child(&args[1..]),
        Some("--replay") => replay(&args[1..]),
        _ => fuzz(&args),
    });
}

fn target(name: &str) -> &'static fuzz::Target {
    targets::by_name(name).unwrap_or_else(|| {
        let names: Vec<&str> = targets::TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "fuzz: no target {name:?}; the targets: {}",
            names.join(", ")
        );
        std::process::exit(2)
    })
}

fn number(s: Option<&String>, what: &str) -> u64 {
    s.and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        eprintln!("fuzz: {what} needs a number");
        std::process::exit(2)
    })
}

fn child(args: &[String]) -> i32 {
    let t = target(args.first().map_or("", String::as_str));
    run::child(
        t,
        number(args.get(1), "the seed"),
        number(args.get(2), "the first input"),
        number(args.get(3), "the end"),
        args.get(4).and_then(|f| run::Fault::parse(f)),
    );
    0
}

fn replay(args: &[String]) -> i32 {
    let t = target(args.first().map_or("", String::as_str));
    let Some(path) = args.get(1) else {
        eprintln!("fuzz: --replay TARGET FILE.edits");
        return 2;
    };
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("fuzz: {path}: {e}");
        std::process::exit(2)
    });
    match run::replay(t, &text) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("fuzz: {path}: {e}");
            2
        }
    }
}

fn fuzz(args: &[String]) -> i32 {
    let mut opts = Options {
        iterations: 100_000,
        seed: 1,
        time_limit: Duration::from_secs(10),
        memory_limit: 1 << 30,
        findings: fuzz::corpus::root().join("../../../target/fuzz-findings"),
        fault: None,
    };
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--iterations" => opts.iterations = number(it.next(), a),
            "--seed" => opts.seed = number(it.next(), a),
            "--time-limit" => opts.time_limit = Duration::from_secs(number(it.next(), a)),
            "--memory-limit" => opts.memory_limit = number(it.next(), a) << 20,
            "--findings" => opts.findings = it.next().map(Into::into).unwrap_or_default(),
            name => names.push(target(name)),
        }
    }
    if names.is_empty() {
        names = targets::TARGETS.iter().collect();
    }
    let exe = std::env::current_exe().expect("this program's path");
    println!(
        "{:<10} {:>10} {:>10} {:>10}  FINDINGS",
        "TARGET", "INPUTS", "TIME", "PER INPUT"
    );
    let mut found = 0;
    for t in names {
        let r = run::supervise(&exe, t, &opts);
        println!(
            "{:<10} {:>10} {:>9.1}s {:>8.2}ms  {}",
            r.target,
            r.iterations,
            r.elapsed.as_secs_f64(),
            r.elapsed.as_secs_f64() * 1e3 / r.iterations.max(1) as f64,
            r.findings.len()
        );
        for f in &r.findings {
            println!(
                "  input {}: {} (saved {})",
                f.input,
                f.kind,
                f.saved.display()
            );
            for l in f.detail.lines() {
                println!("    {l}");
            }
        }
        found += r.findings.len();
    }
    i32::from(found > 0)
}
