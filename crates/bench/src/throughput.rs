//! Comparison 5: events to user space. A workload calls a probed function at a steady
//! rate; each hit prints one line (`printf("%d\n", i)`) into a file. Counting the
//! lines received, and reading the loss each tool reports, shows the rate each tracer
//! sustains and where loss begins, and whether any loss went unreported.

use crate::Config;
use crate::error::{Error, Result};
use crate::exec;
use crate::report::{Goal, Row};
use crate::setup::Env;
use crate::stats::{Case, Cell, Sample, interleave};
use crate::tools::{bpftrace, cmdline, gotap_script};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn events(cmd: &mut Command, out: &Path, calls: f64) -> Result<Sample> {
    let _ = std::fs::remove_file(out);
    let f = exec::run(cmd, Duration::from_secs(900))?;
    let text = std::fs::read_to_string(out).map_err(|source| Error::File {
        path: out.to_path_buf(),
        source,
    })?;
    // Count distinct call numbers: a probe on a function's entry fires twice for one
    // call when the goroutine's stack must grow first (morestack restarts the
    // function), and those repeats are no delivered events.
    let mut seen = std::collections::HashSet::new();
    let mut printed = 0usize;
    for l in text.lines() {
        if let Ok(i) = l.trim().parse::<u64>() {
            printed += 1;
            if (i as f64) < calls {
                seen.insert(i);
            }
        }
    }
    let lines = seen.len() as f64;
    let lost = exec::lost_events(&format!("{}\n{text}", f.stderr));
    let persec = f.number_after("persec").unwrap_or(f64::NAN);
    let mut s = Sample::new();
    s.insert("lines", lines);
    s.insert("repeats", printed as f64 - lines);
    s.insert("lost", lost);
    s.insert("calls_per_s", persec);
    s.insert("delivered_per_s", lines / (calls / persec));
    s.insert("unreported", (calls - lines - lost).max(0.0));
    Ok(s)
}

pub fn throughput(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let g = "5. Events to user space: one printf per hit, at increasing call rates";
    let exe = env.program("bench_rate")?;
    let rates: &[u64] = if cfg.quick {
        &[20_000, 0]
    } else {
        &[20_000, 50_000, 100_000, 200_000, 400_000, 0]
    };
    let (out_g, out_b) = (
        env.work.join("rate-gotap.out"),
        env.work.join("rate-bpftrace.out"),
    );
    let mut rows = Vec::new();
    let mut first_loss: [Option<String>; 2] = [None, None];
    for &rate in rates {
        let calls: u64 = if cfg.quick {
            20_000
        } else if rate == 0 {
            500_000
        } else {
            rate.max(50_000)
        };
        let args = [calls.to_string(), rate.to_string()];
        let run = cmdline(&exe, &[&args[0], &args[1]]);
        let gs = format!(
            "probe process(\"{}\").function(\"main.target\") {{ printf(\"%d\\n\", $i) }}",
            exe.display()
        );
        let bs = format!(
            "uprobe:{}:main.target {{ printf(\"%d\\n\", reg(\"ax\")); }}",
            exe.display()
        );
        let c = calls as f64;
        let mut cases = vec![
            Case::new("gotap printf", || {
                events(&mut gotap_script(env, &gs, &run, Some(&out_g)), &out_g, c)
            }),
            Case::new("bpftrace printf", || {
                events(&mut bpftrace(&bs, &run, Some(&out_b)), &out_b, c)
            }),
        ];
        let label = if rate == 0 {
            "as fast as traced".to_string()
        } else {
            format!("{rate}/s")
        };
        let r = interleave(&format!("5 rate {label}"), cfg.reps, &mut cases);
        drop(cases);
        for (i, slot) in first_loss.iter_mut().enumerate() {
            let missing = r[i].values("lines").iter().any(|l| *l < c)
                || r[i].values("lost").iter().any(|l| *l > 0.0);
            if slot.is_none() && missing {
                *slot = Some(label.clone());
            }
        }
        let m = |i: usize, k: &str| {
            r[i].stat(k)
                .median()
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "?".into())
        };
        rows.push(
            Row::new(g, format!("calls at {label}: events delivered per second"), "events/s", r[0].stat("delivered_per_s"), r[1].stat("delivered_per_s")).note(format!(
                "{calls} calls; gotap: calls ran at {}/s, received {} distinct, reported lost {}, repeated {}; bpftrace: calls ran at {}/s, received {} distinct, reported lost {}, repeated {} (medians)",
                m(0, "calls_per_s"),
                m(0, "lines"),
                m(0, "lost"),
                m(0, "repeats"),
                m(1, "calls_per_s"),
                m(1, "lines"),
                m(1, "lost"),
                m(1, "repeats")
            )),
        );
        rows.push(
            Row::new(
                g,
                format!("calls at {label}: events missing and not reported lost"),
                "events",
                r[0].stat("unreported"),
                r[1].stat("unreported"),
            )
            .goal(Goal::AtMost(0.0), "#3: loss must be reported"),
        );
    }
    let show = |s: &Option<String>| {
        s.clone()
            .unwrap_or_else(|| "no loss at any rate tried".into())
    };
    rows.push(
        Row::new(g, "loss begins at", "", Cell::None, Cell::None).note(format!(
            "gotap: {}; bpftrace: {}",
            show(&first_loss[0]),
            show(&first_loss[1])
        )),
    );
    Ok(rows)
}
