//! Comparison 1, continued: the probe sites that cost more than a function entry. A
//! frameless leaf has no `push rbp`, so its probe sits on the first instruction, which
//! the kernel single-steps; a return probe sits on each `RET`, single-stepped too; an
//! inlined call site starts wherever the caller's code for it starts. Each row has its
//! own floor (an empty bpftrace program on the same instruction, put there through a
//! moved symbol as in `overhead`) and bpftrace at that same address; the return row also
//! has bpftrace's own `uretprobe`, which is unsafe on Go code (it rewrites the return
//! address on a stack Go may move) but survives this loop, which never grows its stack.

use crate::Config;
use crate::error::{Error, Result};
use crate::overhead::{ns_per_call, times_floor};
use crate::report::Row;
use crate::setup::Env;
use crate::stats::{Case, Cell, interleave, paired_difference};
use crate::tools::{bpftrace, cmdline, gotap_script};
use std::path::Path;
use std::process::Command;

/// The line of `bench_sites.go` that holds the body of the inlined `main.mix`.
fn inlined_line(env: &Env) -> Result<u32> {
    let path = env.repo.join("tests/testprogs/bench_sites.go");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .position(|l| l.trim() == "return i ^ (i >> 3)")
        .map(|i| i as u32 + 1)
        .ok_or_else(|| Error::Setup(format!("{}: no body of main.mix", path.display())))
}

/// The cases of one site: untraced, the floor, gotap, bpftrace at the same address,
/// and any more bpftrace cases, all on `mode`'s loop.
struct Site<'a> {
    mode: &'static str,
    what: &'static str,
    gotap: String,
    same: (&'a Path, &'static str),
    extra: Vec<(&'static str, String)>,
}

pub fn sites(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let g = "1. Per-hit overhead on a tight loop (ns per hit = traced − untraced ns/call)";
    let exe = env.program("bench_sites")?;
    let (ret_copy, ret_off) = env.ret_copy(&exe, "main.framed")?;
    let line = inlined_line(env)?;
    let (inline_copy, inline_off) = env.statement_copy(&exe, "main.main", line)?;
    let n = if cfg.quick { "20000" } else { "100000" };
    let e = exe.display().to_string();
    let sites = [
        Site {
            mode: "leaf",
            what: "1e frameless leaf entry (`main.leaf`: no `push rbp`, first instruction single-stepped)",
            gotap: format!("global n; probe process(\"{e}\").function(\"main.leaf\") {{ n++ }}"),
            same: (&exe, "main.leaf"),
            extra: vec![],
        },
        Site {
            mode: "ret",
            what: "1f return probe (`.return`, a uprobe on the `RET`) vs bpftrace on that `RET`",
            gotap: format!(
                "global n; probe process(\"{e}\").function(\"main.framed\").return {{ n++ }}"
            ),
            same: (&ret_copy, "main.framed"),
            extra: vec![(
                "1f return probe vs bpftrace's `uretprobe` (unsafe on Go: return address rewritten)",
                format!("uretprobe:{e}:main.framed {{ @[probe] = count(); }}"),
            )],
        },
        Site {
            mode: "inline",
            what: "1g inlined call site (`.inline` on `main.mix` inlined in `main.main`)",
            gotap: format!(
                "global n; probe process(\"{e}\").function(\"main.mix\").inline {{ n++ }}"
            ),
            same: (&inline_copy, "main.main"),
            extra: vec![],
        },
    ];
    let mut rows = Vec::new();
    for s in &sites {
        let run = cmdline(&exe, &[s.mode, n]);
        let (copy, sym) = s.same;
        let run_same = cmdline(copy, &[s.mode, n]);
        let c = copy.display().to_string();
        let mut cases = vec![
            Case::new("untraced", || {
                ns_per_call(Command::new(&exe).args([s.mode, n]))
            }),
            Case::new("floor", || {
                ns_per_call(&mut bpftrace(
                    &format!("uprobe:{c}:{sym} {{}}"),
                    &run_same,
                    None,
                ))
            }),
            Case::new("gotap", || {
                ns_per_call(&mut gotap_script(env, &s.gotap, &run, None))
            }),
            Case::new("bpftrace same address", || {
                ns_per_call(&mut bpftrace(
                    &format!("uprobe:{c}:{sym} {{ @[probe] = count(); }}"),
                    &run_same,
                    None,
                ))
            }),
        ];
        for (_, script) in &s.extra {
            let run = run.clone();
            cases.push(Case::new("bpftrace", move || {
                ns_per_call(&mut bpftrace(script, &run, None))
            }));
        }
        let r = interleave(&format!("1 {}", s.mode), cfg.reps, &mut cases);
        drop(cases);
        let d = |i: usize| paired_difference(&r[i], &r[0], "ns");
        let floor = d(1);
        let note = |a: &Cell, b: &Cell| {
            format!(
                "{}; bpftrace {}",
                times_floor(a, &floor),
                times_floor(b, &floor)
            )
        };
        let at = match s.mode {
            "ret" => format!(" (main.framed+{ret_off})"),
            "inline" => format!(" (main.main+{inline_off}, line {line})"),
            _ => String::new(),
        };
        rows.push(Row::new(
            g,
            format!(
                "floor for 1{}: empty bpftrace program at that instruction{at}",
                &s.what[1..2]
            ),
            "ns/hit",
            Cell::None,
            floor.clone(),
        ));
        let (ours, same) = (d(2), d(3));
        rows.push(
            Row::new(g, s.what, "ns/hit", ours.clone(), same.clone()).note(note(&ours, &same)),
        );
        for (i, (what, _)) in s.extra.iter().enumerate() {
            let theirs = d(4 + i);
            rows.push(
                Row::new(g, *what, "ns/hit", ours.clone(), theirs.clone())
                    .note(note(&ours, &theirs)),
            );
        }
    }
    Ok(rows)
}
