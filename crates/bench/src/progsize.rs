//! Where a gotap probe's time goes, as far as the program itself tells: the number of
//! eBPF instructions of each script used above (`gotap -d bpf`) and the number the
//! verifier processed (`gotap -d verifier`), which bounds the work of one hit.

use crate::Config;
use crate::error::Result;
use crate::exec;
use crate::overhead::seed_script;
use crate::report::Row;
use crate::setup::Env;
use crate::stats::{Cell, Stat};
use crate::tools::cmdline;
use std::process::Command;
use std::time::Duration;

fn one(x: f64) -> Cell {
    Stat::of(&[x]).map(Cell::Value).unwrap_or(Cell::None)
}

pub fn sizes(env: &Env, _cfg: &Config) -> Result<Vec<Row>> {
    let g = "7. gotap's eBPF programs (instructions, verifier-processed instructions)";
    let lp = env.program("loop")?;
    let sample = env.program("bench_sample")?;
    let deep = env.program("bench_deep")?;
    let grow = env.program("bench_grow")?;
    let line = env.seed_line(&grow)?;
    let f = |exe: &std::path::Path, func: &str| {
        format!("process(\"{}\").function(\"{func}\")", exe.display())
    };
    let scripts = [
        (
            "empty probe",
            format!("probe {} {{}}", f(&lp, "main.target")),
            cmdline(&lp, &["10"]),
        ),
        (
            "counter `n++`",
            format!("global n; probe {} {{ n++ }}", f(&lp, "main.target")),
            cmdline(&lp, &["10"]),
        ),
        (
            "sampling probe (1c)",
            format!(
                "global n; probe {} {{ s = n % 1000 == 0; n++; if (s) {{ old = $g->m->curg->stack->hi - $g->m->curg->stack->lo; printf(\"runtime: newstack: %d -> %d\\n\", old, old * 2) }} }}",
                f(&sample, "main.target")
            ),
            cmdline(&sample, &["10"]),
        ),
        (
            "print_ubacktrace() (1d)",
            format!("probe {} {{ print_ubacktrace() }}", f(&deep, "main.leaf")),
            cmdline(&deep, &["10"]),
        ),
        (
            "seed script, no backtrace (2)",
            seed_script(&grow, line),
            cmdline(&grow, &["1", "10", "1"]),
        ),
        (
            "printf per hit (5)",
            format!(
                "probe {} {{ printf(\"%d\\n\", $i) }}",
                f(&lp, "main.target")
            ),
            cmdline(&lp, &["10"]),
        ),
    ];
    let mut rows = Vec::new();
    for (what, script, run) in scripts {
        let dump = |stage: &str| -> Result<String> {
            let out = exec::run(
                Command::new(&env.gotap).args([
                    "-d",
                    stage,
                    "-o",
                    "/dev/null",
                    "-e",
                    &script,
                    "-c",
                    &run,
                ]),
                Duration::from_secs(60),
            )?;
            Ok(format!(
                "{}\n{}",
                out.lines
                    .iter()
                    .map(|(_, l)| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                out.stderr
            ))
        };
        let insns = dump("bpf").map(|t| {
            t.lines()
                .filter(|l| {
                    l.trim_start()
                        .split(':')
                        .next()
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count() as f64
        });
        let processed = dump("verifier").map(|t| {
            t.lines()
                .filter_map(|l| exec::number_after(l, "processed"))
                .sum::<f64>()
        });
        let cell = |r: Result<f64>| match r {
            Ok(x) => one(x),
            Err(e) => Cell::Failed(e.to_string()),
        };
        rows.push(
            Row::new(g, what, "insns", cell(insns), Cell::None).note(match processed {
                Ok(p) => format!("verifier processed {p:.0} instructions"),
                Err(e) => format!("verifier count failed: {e}"),
            }),
        );
    }
    Ok(rows)
}
