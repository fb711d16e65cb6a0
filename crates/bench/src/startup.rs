//! Comparison 3 and 6: how long from the command to armed probes, and from the traced
//! program's end to the tracer's exit (detaching), on the seed's small example, on
//! 5,000 functions of Go's `compile` tool, and on a DWARF-rich `cmd/go`; and gotap's
//! peak memory on the large binaries. Both tracers start the program held (`-c`) and
//! release it once armed, so the program's first output line marks that moment.

use crate::Config;
use crate::error::{Error, Result};
use crate::exec::{self, Finished};
use crate::overhead::seed_script;
use crate::report::{Goal, Row};
use crate::setup::Env;
use crate::stats::{Case, Cell, Sample, interleave, paired_difference};
use crate::tools::{bpftrace, bpftrace_bare, cmdline, gotap_script};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Two wildcards on `compile` that together match about a thousand functions (767 +
/// 294 in Go 1.27's).
const THOUSAND: [&str; 2] = [
    "cmd/compile/internal/ssa.rewriteValueARM*",
    "cmd/compile/internal/ssa.rewriteValuePPC64*",
];

const LIMIT: Duration = Duration::from_secs(1500);

fn timed(cmd: &mut Command, first_line: &str) -> Result<(Finished, Sample)> {
    let f = exec::run(cmd, LIMIT)?;
    let at = f.line_at(first_line).ok_or_else(|| Error::Failed {
        command: exec::describe(cmd),
        detail: format!("the program never printed `{first_line}`"),
    })?;
    let mut s = Sample::new();
    s.insert("armed_ms", exec::ms(at));
    s.insert("exit_ms", exec::ms(f.wall));
    s.insert("after_ms", exec::ms(f.wall.saturating_sub(at)));
    Ok((f, s))
}

pub fn startup(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let g = "3. From command to armed probes, and from the program's end to the tracer's exit";
    let mut rows = Vec::new();
    // 3a: the seed script on a program that prints the time as its first act.
    let exe = env.program("bench_start")?;
    let line = env.seed_line(&exe)?;
    let layout = gobin::layout::RuntimeLayout::builtin(1, env.tc.minor_number().1)
        .ok_or_else(|| Error::Setup(format!("no runtime layout for go{}", env.tc.minor)))?;
    let seed = seed_script(&exe, line);
    let bt = format!(
        "uprobe:{}:runtime.newstack {{ $s = @n % 1000 == 0; @n++; if ($s) {{ $m = *(uint64*)(reg(\"r14\") + {}); $c = *(uint64*)($m + {}); $old = *(uint64*)($c + {}) - *(uint64*)($c + {}); printf(\"runtime: newstack: %d -> %d\\n\", $old, $old * 2); }} }}",
        exe.display(),
        layout.g_m,
        layout.m_curg,
        layout.g_stack_hi,
        layout.g_stack_lo
    );
    let run = cmdline(&exe, &[]);
    let null = Path::new("/dev/null");
    let armed = |cmd: &mut Command| -> Result<Sample> {
        let (f, mut s) = timed(cmd, "start ")?;
        let printed = f
            .line("start ")
            .and_then(|l| exec::number_after(l, "start"))
            .unwrap_or(0.0);
        s.insert("armed_ms", (printed - f.started_unix_ns as f64) / 1e6);
        Ok(s)
    };
    let mut cases = vec![
        Case::new("untraced", || armed(&mut Command::new(&exe))),
        Case::new("gotap seed", || {
            armed(&mut gotap_script(env, &seed, &run, Some(null)))
        }),
        Case::new("bpftrace seed equivalent", || {
            armed(&mut bpftrace(&bt, &run, Some(null)))
        }),
    ];
    let r = interleave("3a seed start", cfg.reps, &mut cases);
    drop(cases);
    let base = r[0].stat("armed_ms").median().unwrap_or(0.0);
    rows.push(
        Row::new(
            g,
            "3a seed script on the example: command → program running",
            "ms",
            r[1].stat("armed_ms"),
            r[2].stat("armed_ms"),
        )
        .goal(Goal::RatioAtMost(0.2), "#4")
        .note(format!(
            "untraced start {base:.2} ms; bpftrace probes runtime.newstack at entry"
        )),
    );
    rows.push(Row::new(
        g,
        "3a seed script: command → tracer exit",
        "ms",
        r[1].stat("exit_ms"),
        r[2].stat("exit_ms"),
    ));

    // 3b: thousands of probes on compile, a wildcard both tools expand alike; each
    // tracer watches every process of the binary, is told to stop with SIGINT once
    // armed, and is timed to its exit.
    let pattern = if cfg.quick {
        "cmd/compile/internal/ssa.rewriteValueARM64_OpARM64M*"
    } else {
        "cmd/compile/internal/ssa.rewrite*"
    };
    let compile = &env.compile;
    // bpftrace runs BEGIN once every probe is attached; its line marks "armed".
    let bt = format!(
        "BEGIN {{ printf(\"armed\\n\"); }} uprobe:{}:{pattern} {{ @[probe] = count(); }}",
        compile.display()
    );
    let many = |cmd: &mut Command, marker: &str| -> Result<Sample> {
        let f = exec::interrupt_when(cmd, marker, LIMIT)?;
        let mut s = Sample::new();
        s.insert("armed_ms", exec::ms(f.ready));
        s.insert("detach_ms", exec::ms(f.exit));
        for l in f.text.lines() {
            if l.contains("attached") {
                exec::number_after(l, "attached").map(|n| s.insert("probes", n));
                exec::number_after(l, "in").map(|n| s.insert("self_attach_ms", n));
            }
            if l.contains("detached") {
                exec::number_after(l, "in").map(|n| s.insert("self_detach_ms", n));
            }
            // bpftrace's count includes the BEGIN probe.
            exec::number_after(l, "Attaching").map(|n| s.insert("probes", n - 1.0));
        }
        Ok(s)
    };
    let mut cases = vec![
        Case::new("gotap funccount", || {
            let mut c = Command::new(&env.gotap);
            c.args(["funccount", "-v"]).arg(compile).arg(pattern);
            many(&mut c, "Tracing")
        }),
        // One perf-event uprobe takes about 0.1 s to detach: 5,000 take about ten
        // minutes, so bpftrace runs once in a full run.
        Case::new("bpftrace wildcard", || {
            let mut c = bpftrace_bare();
            c.args(["-e", &bt]);
            many(&mut c, "armed")
        })
        .at_most(1),
        // About a thousand probes, the size issue #4 names for SIGINT → exit.
        Case::new("gotap funccount ~1,000", || {
            let mut c = Command::new(&env.gotap);
            c.args(["funccount", "-v"]).arg(compile).args(THOUSAND);
            many(&mut c, "Tracing")
        }),
    ];
    let r = interleave("3b compile probes", cfg.reps, &mut cases);
    drop(cases);
    let probes = |i: usize| {
        r[i].stat("probes")
            .median()
            .map(|x| format!("{x:.0}"))
            .unwrap_or_else(|| "?".into())
    };
    let note = format!(
        "`{pattern}` on `compile` of {}: gotap {} probes, bpftrace {} (one run: ~0.1 s per probe to detach)",
        env.tc.version,
        probes(0),
        probes(1)
    );
    rows.push(
        Row::new(
            g,
            "3b many probes on `compile`: start → armed",
            "ms",
            r[0].stat("armed_ms"),
            r[1].stat("armed_ms"),
        )
        .goal(Goal::RatioAtMost(0.1), "#3")
        .note(note.clone()),
    );
    rows.push(
        Row::new(
            g,
            "3b many probes: SIGINT → exit (detach)",
            "ms",
            r[0].stat("detach_ms"),
            r[1].stat("detach_ms"),
        )
        .goal(Goal::RatioAtMost(0.1), "#3")
        .note(note.clone()),
    );
    rows.push(
        Row::new(
            g,
            "3b many probes: SIGINT → exit, gotap alone",
            "ms",
            r[0].stat("detach_ms"),
            Cell::None,
        )
        .goal(Goal::AtMost(50.0), "#4, for 1,000 probes")
        .note(note.clone()),
    );
    rows.push(Row::new(
        g,
        "3b gotap's own count (-v): attach",
        "ms",
        r[0].stat("self_attach_ms"),
        Cell::None,
    ));
    rows.push(Row::new(
        g,
        "3b gotap's own count (-v): detach",
        "ms",
        r[0].stat("self_detach_ms"),
        Cell::None,
    ));
    rows.push(
        Row::new(
            g,
            "3b ~1,000 probes: SIGINT → exit, gotap alone",
            "ms",
            r[2].stat("detach_ms"),
            Cell::None,
        )
        .goal(Goal::AtMost(50.0), "#4")
        .note(format!(
            "`{}` and `{}`: {} probes; gotap's own count (-v): attach {} ms, detach {} ms",
            THOUSAND[0],
            THOUSAND[1],
            probes(2),
            r[2].stat("self_attach_ms")
                .median()
                .map(|x| format!("{x:.1}"))
                .unwrap_or_else(|| "?".into()),
            r[2].stat("self_detach_ms")
                .median()
                .map(|x| format!("{x:.1}"))
                .unwrap_or_else(|| "?".into())
        )),
    );

    Ok(rows)
}

/// 3c: start-up on a DWARF-rich `cmd/go` (its own id, `--only 3c`, as 3b takes
/// bpftrace minutes).
pub fn startup_dwarf(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let g = "3. From command to armed probes, and from the program's end to the tracer's exit";
    let mut rows = Vec::new();
    let null = Path::new("/dev/null");
    let layout = gobin::layout::RuntimeLayout::builtin(1, env.tc.minor_number().1)
        .ok_or_else(|| Error::Setup(format!("no runtime layout for go{}", env.tc.minor)))?;
    // A script reading a parameter.
    let gocmd = env.gocmd()?;
    let run = cmdline(&gocmd, &["version"]);
    let gs = format!(
        "probe process(\"{}\").function(\"os.Getenv\") {{ printf(\"%s\\n\", $key) }}",
        gocmd.display()
    );
    let bs = format!(
        "uprobe:{}:os.Getenv {{ printf(\"%s\\n\", str(reg(\"ax\"), reg(\"bx\"))); }}",
        gocmd.display()
    );
    // The seed's script on the same binary: a statement probe in runtime.newstack
    // whose variables come from the runtime's compile unit and types.
    let go_seed = seed_script(&gocmd, env.seed_line(&gocmd)?);
    let go_bt = format!(
        "uprobe:{}:runtime.newstack {{ $s = @n % 1000 == 0; @n++; if ($s) {{ $m = *(uint64*)(reg(\"r14\") + {}); $c = *(uint64*)($m + {}); $old = *(uint64*)($c + {}) - *(uint64*)($c + {}); printf(\"runtime: newstack: %d -> %d\\n\", $old, $old * 2); }} }}",
        gocmd.display(),
        layout.g_m,
        layout.m_curg,
        layout.g_stack_hi,
        layout.g_stack_lo
    );
    let go = |cmd: &mut Command| -> Result<Sample> {
        timed(cmd.env("GOTOOLCHAIN", "local"), "go version").map(|(_, s)| s)
    };
    let mut cases = vec![
        Case::new("untraced go version", || {
            go(Command::new(&gocmd).arg("version"))
        }),
        Case::new("gotap os.Getenv $key", || {
            go(&mut gotap_script(env, &gs, &run, Some(null)))
        }),
        Case::new("bpftrace os.Getenv str(ax, bx)", || {
            go(&mut bpftrace(&bs, &run, Some(null)))
        }),
        Case::new("gotap seed on cmd/go", || {
            go(&mut gotap_script(env, &go_seed, &run, Some(null)))
        }),
        Case::new("bpftrace seed equivalent on cmd/go", || {
            go(&mut bpftrace(&go_bt, &run, Some(null)))
        }),
    ];
    let r = interleave("3c cmd/go", cfg.reps, &mut cases);
    drop(cases);
    let size = std::fs::metadata(&gocmd)
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(0.0);
    rows.push(
        Row::new(
            g,
            "3c `cmd/go` with DWARF, script printing a parameter: command → program running",
            "ms",
            paired_difference(&r[1], &r[0], "armed_ms"),
            paired_difference(&r[2], &r[0], "armed_ms"),
        )
        .goal(Goal::RatioAtMost(0.2), "#4")
        .note(format!(
            "{size:.0} MB binary; untraced `go version` prints after {:.1} ms, subtracted",
            r[0].stat("armed_ms").median().unwrap_or(0.0)
        )),
    );
    rows.push(
        Row::new(
            g,
            "3c `cmd/go` with DWARF, the seed script (newstack's statement, `$thisg->m->curg->stack`): command → program running",
            "ms",
            paired_difference(&r[3], &r[0], "armed_ms"),
            paired_difference(&r[4], &r[0], "armed_ms"),
        )
        .goal(Goal::RatioAtMost(0.2), "#4")
        .note("bpftrace reads the same fields through reg(\"r14\") and the runtime's offsets"),
    );
    Ok(rows)
}

/// 6: peak resident memory, from `/usr/bin/time -f %M`.
pub fn memory(env: &Env, cfg: &Config) -> Result<Vec<Row>> {
    let g = "6. Peak memory (maximum resident set)";
    let gocmd = env.gocmd()?;
    let compile = env
        .compile_125
        .clone()
        .unwrap_or_else(|| env.compile.clone());
    let pattern = if cfg.quick {
        "cmd/compile/internal/ssa.rewriteValueARM64_OpARM64M*"
    } else {
        "cmd/compile/internal/ssa.rewrite*"
    };
    let rss_file = env.work.join("maxrss");
    let timed = |cmd: &Command| -> Command {
        let mut t = Command::new("/usr/bin/time");
        t.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                t.env(k, v);
            }
        }
        t
    };
    let read_rss = || -> Result<Sample> {
        let text = std::fs::read_to_string(&rss_file).map_err(|source| Error::File {
            path: rss_file.clone(),
            source,
        })?;
        let kb: f64 = text
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(f64::NAN);
        let mut s = Sample::new();
        s.insert("mb", kb / 1024.0);
        Ok(s)
    };
    let rss = |cmd: &mut Command| -> Result<Sample> {
        exec::run(&mut timed(cmd), LIMIT)?;
        read_rss()
    };
    // A tracer that starts the traced program itself (`-c`) also reaps it, and the
    // maximum resident set a wait reports is then the larger of the two: a Go
    // program's ten megabytes or more, not the tracer's. So in the rows that run a
    // program, each tracer watches the binary, the program runs beside it once it is
    // armed, and SIGINT ends the tracer.
    let rss_watching = |cmd: &mut Command, marker: &str, run: &str| -> Result<Sample> {
        let mut words = run.split(' ');
        let exe = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        exec::while_armed_wrapped(&mut timed(cmd), marker, LIMIT, || {
            exec::run(
                Command::new(exe).args(&args).env("GOTOOLCHAIN", "local"),
                LIMIT,
            )
        })?;
        read_rss()
    };
    let list_g = format!("process(\"{}\").function(\"*.*\")", compile.display());
    let list_b = format!("uprobe:{}:*", compile.display());
    let run_c = cmdline(&env.compile, &["-V"]);
    let gs = format!(
        "probe begin {{ printf(\"armed\\n\") }} probe process(\"{}\").function(\"os.Getenv\") {{ printf(\"%s\\n\", $key) }}",
        gocmd.display()
    );
    let bs = format!(
        "BEGIN {{ printf(\"armed\\n\"); }} uprobe:{}:os.Getenv {{ printf(\"%s\\n\", str(reg(\"ax\"), reg(\"bx\"))); }}",
        gocmd.display()
    );
    let run_g = cmdline(&gocmd, &["version"]);
    let mut cases = vec![
        Case::new("gotap -l compile", || {
            rss(Command::new(&env.gotap).args(["-l", &list_g]))
        }),
        Case::new("bpftrace -l compile", || {
            rss(Command::new("bpftrace").args(["-l", &list_b]))
        }),
        Case::new("gotap funccount compile", || {
            rss_watching(
                Command::new(&env.gotap)
                    .arg("funccount")
                    .arg(&env.compile)
                    .arg(pattern),
                "Tracing",
                &run_c,
            )
        }),
        Case::new("gotap script cmd/go", || {
            rss_watching(Command::new(&env.gotap).args(["-e", &gs]), "armed", &run_g)
        }),
        Case::new("bpftrace script cmd/go", || {
            rss_watching(bpftrace_bare().args(["-e", &bs]), "armed", &run_g)
        }),
        Case::new("gotap -L cmd/go main.main", || {
            rss(Command::new(&env.gotap).args([
                "-L",
                &format!("process(\"{}\").function(\"main.main\")", gocmd.display()),
            ]))
        }),
    ];
    let reps = cfg.reps.min(3);
    let r = interleave("6 memory", reps, &mut cases);
    drop(cases);
    let mb = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1048576.0)
            .unwrap_or(0.0)
    };
    let (cm, gm, cm27) = (mb(&compile), mb(&gocmd), mb(&env.compile));
    Ok(vec![
        Row::new(
            g,
            format!("list every function of `compile` ({cm:.0} MB)"),
            "MB",
            r[0].stat("mb"),
            r[1].stat("mb"),
        )
        .goal(Goal::AtMost(cm / 2.0), "#2: half the binary")
        .note("gotap lists `*.*` (see 4.)"),
        Row::new(
            g,
            format!("`funccount` on `compile` ({cm27:.0} MB), `{pattern}`"),
            "MB",
            r[2].stat("mb"),
            Cell::None,
        )
        .goal(Goal::AtMost(cm27 / 2.0), "#2: half the binary"),
        Row::new(
            g,
            format!("script printing a parameter on `cmd/go` ({gm:.0} MB, DWARF)"),
            "MB",
            r[3].stat("mb"),
            r[4].stat("mb"),
        )
        .goal(Goal::AtMost(gm / 2.0), "#2: half the binary"),
        Row::new(
            g,
            format!("`-L` on one function of `cmd/go` ({gm:.0} MB, DWARF)"),
            "MB",
            r[5].stat("mb"),
            Cell::None,
        )
        .goal(Goal::AtMost(gm / 2.0), "#2: half the binary"),
    ])
}
