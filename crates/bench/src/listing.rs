//! Comparison 4: listing the probe points of a large binary. gotap reads
//! `.gopclntab`, bpftrace and `go tool nm` read the ELF symbol table; each is timed
//! from start to exit with its output read (and counted) through a pipe.

use crate::Config;
use crate::error::Result;
use crate::exec;
use crate::report::{Goal, Row};
use crate::setup::Env;
use crate::stats::{Case, Cell, Sample, interleave};
use std::process::Command;
use std::time::Duration;

fn listed(cmd: &mut Command) -> Result<Sample> {
    let f = exec::run(cmd, Duration::from_secs(300))?;
    let mut s = Sample::new();
    s.insert("ms", exec::ms(f.wall));
    s.insert("lines", f.lines.len() as f64);
    Ok(s)
}

pub fn listing(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let g = "4. Listing the probe points of a large binary";
    let compile = env
        .compile_125
        .clone()
        .unwrap_or_else(|| env.compile.clone());
    let gocmd = env.gocmd()?;
    let size = std::fs::metadata(&compile)
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0);
    let all = format!("process(\"{}\").function(\"*\")", compile.display());
    let dotted = format!("process(\"{}\").function(\"*.*\")", compile.display());
    let bt = format!("uprobe:{}:*", compile.display());
    let one = format!("process(\"{}\").function(\"main.main\")", gocmd.display());
    let bt_one = format!("uprobe:{}:main.main", gocmd.display());
    let mut cases = vec![
        Case::new("gotap -l *", || {
            listed(Command::new(&env.gotap).args(["-l", &all]))
        }),
        Case::new("gotap -l *.*", || {
            listed(Command::new(&env.gotap).args(["-l", &dotted]))
        }),
        Case::new("bpftrace -l", || {
            listed(Command::new("bpftrace").args(["-l", &bt]))
        }),
        Case::new("go tool nm", || listed(Command::new(&env.nm).arg(&compile))),
        Case::new("gotap -L cmd/go main.main", || {
            listed(Command::new(&env.gotap).args(["-L", &one]))
        }),
        Case::new("bpftrace -l cmd/go main.main", || {
            listed(Command::new("bpftrace").args(["-l", &bt_one]))
        }),
        Case::new("go tool nm cmd/go", || {
            listed(Command::new(&env.nm).arg(&gocmd))
        }),
    ];
    let r = interleave("4 listing", cfg.reps, &mut cases);
    drop(cases);
    let lines = |i: usize| {
        r[i].stat("lines")
            .median()
            .map(|x| format!("{x:.0}"))
            .unwrap_or_else(|| "?".into())
    };
    let name = format!(
        "`compile` of go{} ({size:.0} MB, no DWARF)",
        if env.compile_125.is_some() {
            "1.25"
        } else {
            &env.tc.minor
        }
    );
    Ok(vec![
        Row::new(
            g,
            format!("`-l function(\"*\")` on {name}"),
            "ms",
            r[0].stat("ms"),
            r[2].stat("ms"),
        )
        .goal(Goal::RatioAtMost(1.0), "#2")
        .note(format!("gotap {} lines, bpftrace {}", lines(0), lines(2))),
        Row::new(
            g,
            format!("`-l function(\"*.*\")` on {name}"),
            "ms",
            r[1].stat("ms"),
            r[2].stat("ms"),
        )
        .goal(Goal::RatioAtMost(1.0), "#2")
        .note(format!("gotap {} lines, bpftrace {}", lines(1), lines(2))),
        Row::new(
            g,
            format!("`-l function(\"*.*\")` on {name} vs `go tool nm`"),
            "ms",
            r[1].stat("ms"),
            r[3].stat("ms"),
        )
        .peer_name("go tool nm")
        .goal(Goal::RatioAtMost(1.0), "#2")
        .note(format!("nm {} lines (all symbols)", lines(3))),
        Row::new(
            g,
            "`-L` on `main.main` of `cmd/go` (DWARF) vs `bpftrace -l` of it",
            "ms",
            r[4].stat("ms"),
            r[5].stat("ms"),
        )
        .goal(Goal::RatioAtMost(1.0), "#2"),
        Row::new(
            g,
            "`-L` on `main.main` of `cmd/go` vs `go tool nm` of the binary",
            "ms",
            r[4].stat("ms"),
            r[6].stat("ms"),
        )
        .peer_name("go tool nm")
        .goal(Goal::RatioAtMost(1.0), "#2"),
        Row::new(
            g,
            "lines listed by `-l \"*\"`",
            "lines",
            r[0].stat("lines"),
            Cell::None,
        ),
    ])
}
