//! The seed article's two scripts (examples/newstack.stp, examples/printstackgrow.stp)
//! run as their author wrote them, with only the binary path and the line of
//! runtime/stack.go changed as scripts/seed changes them, on every installed Go
//! toolchain: on the article's example.go, and on tests/testprogs/ret_growth.go,
//! whose goroutines know their own ids and how much stack they used. The sizes the
//! scripts print must be the ones the runtime had. Needs root.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// The seed's probe point, as written in both scripts.
const SEED_POINT: &str = "/usr/lib/golang/src/runtime/stack.go:936";

/// The first line of `runtime.newstack` with code at or after `gp := thisg.m.curg`
/// in `tc`'s runtime/stack.go, as `gotap -l` lists the lines (scripts/seed's rule).
fn newstack_line(tc: &Toolchain, bin: &Path) -> (String, u32) {
    let stack = tc.goroot().join("src/runtime/stack.go");
    let src = std::fs::read_to_string(&stack).expect("read runtime/stack.go");
    let gp = src
        .lines()
        .position(|l| l.trim() == "gp := thisg.m.curg")
        .expect("`gp := thisg.m.curg` in stack.go") as u32
        + 1;
    let out = run(gotap().arg("-l").arg(format!(
        "process(\"{}\").statement(\"runtime.newstack@runtime/stack.go:*\")",
        bin.display()
    )));
    assert!(out.status.success(), "gotap -l: {}", text(&out.stderr));
    let mut lines: Vec<u32> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix("\")")?.rsplit(':').next()?.parse().ok())
        .collect();
    lines.sort_unstable();
    let line = lines
        .into_iter()
        .find(|l| *l >= gp)
        .unwrap_or_else(|| panic!("go{}: no line with code after {gp}", tc.minor));
    (stack.display().to_string(), line)
}

/// `examples/NAME` with the seed's binary and probe line replaced, written beside `bin`.
fn seed_script(
    name: &str,
    bin: &Path,
    stack: &str,
    line: u32,
    with_goid: bool,
) -> std::path::PathBuf {
    let src = std::fs::read_to_string(testprogs::repo_root().join("examples").join(name))
        .expect("read the seed script");
    assert!(
        src.contains("process(\"./example\")") && src.contains(SEED_POINT),
        "{name} is not the seed's script"
    );
    let mut s = src
        .replace(
            "process(\"./example\")",
            &format!("process(\"{}\")", bin.display()),
        )
        .replace(SEED_POINT, &format!("{stack}:{line}"));
    if with_goid {
        let print = r#"printf("runtime: newstack: %d -> %d\n", oldSize, newSize)"#;
        assert!(s.contains(print), "{name}: the seed's printf changed");
        // The goroutine, and its stack guard: a preemption request (the guard set to
        // the runtime's stackPreempt) enters newstack too, and the seed's probe
        // point is before newstack tells the two apart.
        s = s.replace(
            print,
            r#"printf("runtime: newstack: %d -> %d goid=%d guard=%d\n", oldSize, newSize, $thisg->m->curg->goid, $thisg->m->curg->stackguard0)"#,
        );
    }
    let path = bin.with_file_name(if with_goid {
        format!("goid-{name}")
    } else {
        name.to_string()
    });
    std::fs::write(&path, s).expect("write script");
    path
}

/// One `runtime: newstack: OLD -> NEW[ goid=ID guard=G]` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Growth {
    old: u64,
    new: u64,
    goid: Option<u64>,
    guard: Option<i64>,
}

impl Growth {
    /// A preemption request rather than a growth: the guard is the runtime's
    /// `stackPreempt` (`uintptrMask & -1314`, runtime/stack.go), printed signed.
    fn is_preemption(&self) -> bool {
        self.guard == Some(-1314)
    }
}

fn growths(stdout: &str) -> Vec<Growth> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("runtime: newstack: ")?;
            let w: Vec<&str> = rest.split_whitespace().collect();
            let (old, new) = (w.first()?.parse().ok()?, w.get(2)?.parse().ok()?);
            let goid = w.get(3).and_then(|g| g.strip_prefix("goid=")?.parse().ok());
            let guard = w
                .get(4)
                .and_then(|g| g.strip_prefix("guard=")?.parse().ok());
            Some(Growth {
                old,
                new,
                goid,
                guard,
            })
        })
        .collect()
}

/// What a goroutine of ret_growth.go says of itself: `g GOID depth D use BYTES`.
#[derive(Debug)]
struct Goroutine {
    goid: u64,
    depth: u64,
    used: u64,
}

fn goroutines(stdout: &str) -> Vec<Goroutine> {
    stdout
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["g", id, "depth", d, "use", u] => Some(Goroutine {
                goid: id.parse().ok()?,
                depth: d.parse().ok()?,
                used: u.parse().ok()?,
            }),
            _ => None,
        })
        .collect()
}

/// Go code on one thread at a time. gotap sends a probe's printf and its backtrace
/// as two records, and records from two CPUs can come between them (stap keeps one
/// probe hit's output together; gotap does not yet), so with newstack running on two
/// threads at once a backtrace can print under another growth's line.
const ONE_THREAD: (&str, &str) = ("GOMAXPROCS", "1");

/// The runtime's starting goroutine stack on linux/amd64 (`fixedStack`, 2 KiB) on
/// every supported release; adaptive starting sizes (Go 1.19+) only change it after
/// a GC, which the runs here switch off.
const START: u64 = 2048;

/// How much further than a goroutine's measured use the runtime may look before it
/// grows: the stack guard (928 bytes), the frame that is being entered (about 1 KiB
/// in main.deep), and the frames above the goroutine's first local.
const SLACK: u64 = 3072;

/// Each printed size is a power of two, at least the starting size, and the new size
/// the script computes is twice it.
fn check_sizes(what: &str, g: &[Growth]) {
    for x in g {
        assert!(
            x.old >= START && x.old.is_power_of_two() && x.new == 2 * x.old,
            "{what}: {x:?}"
        );
    }
}

/// Runs `gotap SCRIPT -o FILE -c "PROG ARGS"` with `env`, and returns the program's
/// output and the script's, apart (in one pipe, the two would interleave mid-line).
fn traced(
    what: &str,
    script: &Path,
    prog: &Path,
    args: &str,
    env: &[(&str, &str)],
) -> (String, String) {
    let out_file = script.with_extension("out");
    let mut cmd = gotap();
    cmd.arg(script)
        .arg("-o")
        .arg(&out_file)
        .arg("-c")
        .arg(format!("{} {args}", prog.display()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{what}: {stderr}");
    assert!(!stderr.contains("WARNING"), "{what}: {stderr}");
    let printed = std::fs::read_to_string(&out_file).expect("read gotap -o output");
    (text(&out.stdout), printed)
}

#[test]
fn the_seed_scripts_print_the_runtime_sizes_on_example_go() {
    for tc in testprogs::toolchains() {
        let what = format!("go{} example.go", tc.minor);
        let prog = Private::copy(
            &testprogs::build("example", &tc, Variant::Default),
            &format!("seed-example-{}", tc.minor),
        );
        let (stack, line) = newstack_line(&tc, &prog.path);
        let script = seed_script("newstack.stp", &prog.path, &stack, line, false);
        let (program, printed) = traced(&what, &script, &prog.path, "", &[]);
        // main returns after its fifth "hello"; the other goroutine may be behind (by
        // more than one on a loaded machine, traced or not), never ahead.
        let said = |w: &str| program.lines().filter(|l| *l == w).count();
        assert!(
            said("hello") == 5
                && said("world") <= 5
                && program.lines().count() == said("hello") + said("world"),
            "{what}: the program's output\n{program}"
        );
        let g = growths(&printed);
        assert!(!g.is_empty(), "{what}: no growth printed\n{printed}");
        check_sizes(&what, &g);
        // Each growth comes with the backtrace of the code that needed it (which code
        // that is depends on the toolchain: runtime initialisation, or fmt.Println
        // in main.say as in the article).
        assert_backtraces(&what, &printed);

        // printstackgrow.stp prints the first growth of every thousand; example.go
        // grows far fewer times, so it prints exactly one.
        let script = seed_script("printstackgrow.stp", &prog.path, &stack, line, false);
        let (_, printed) = traced(&what, &script, &prog.path, "", &[]);
        let p = growths(&printed);
        assert_eq!(p.len(), 1, "{what}: printstackgrow\n{printed}");
        check_sizes(&what, &p);
        assert_backtraces(&what, &printed);
    }
}

#[test]
fn the_seed_scripts_print_the_runtime_sizes_of_each_goroutine() {
    for tc in testprogs::toolchains() {
        let what = format!("go{} ret_growth", tc.minor);
        let prog = Private::copy(
            &testprogs::build("ret_growth", &tc, Variant::Default),
            &format!("seed-growth-{}", tc.minor),
        );
        let (stack, line) = newstack_line(&tc, &prog.path);
        for args in ["8 20", "300 8"] {
            check_one_run(&format!("{what} {args}"), &prog.path, &stack, line, args);
        }
    }
}

/// One run of ret_growth ARGS traced by three gotaps at once: the seed's two
/// scripts as written, and newstack.stp with the goroutine and its stack guard
/// added to its printf. The variant's growths are checked against what each
/// goroutine says of itself; the scripts as written must print exactly the same
/// sizes (they see the same calls of newstack).
fn check_one_run(what: &str, prog: &Path, stack: &str, line: u32, args: &str) {
    let as_written = seed_script("newstack.stp", prog, stack, line, false);
    let every_1000th = seed_script("printstackgrow.stp", prog, stack, line, false);
    let variant = seed_script("newstack.stp", prog, stack, line, true);
    // The scripts as written trace every process of the binary until SIGINT.
    let start = |script: &Path| {
        let child = gotap()
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start gotap");
        wait_attached(&child);
        child
    };
    let written_tracer = start(&as_written);
    let sampled_tracer = start(&every_1000th);
    // The GC is off, so its stack scans do not add preemption requests; the
    // scheduler's (a goroutine that ran 10 ms) the guard tells apart.
    let (program, printed) = traced(what, &variant, prog, args, &[ONE_THREAD, ("GOGC", "off")]);
    let stop = |child: std::process::Child| {
        let status = std::process::Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let (out, killed) = wait_output(child, std::time::Duration::from_secs(30));
        assert!(
            !killed && out.status.success(),
            "{what}: {}",
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).contains("WARNING"),
            "{what}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let written_out = stop(written_tracer);
    let sampled_out = stop(sampled_tracer);

    let gs = goroutines(&program);
    let n: usize = args
        .split(' ')
        .next()
        .and_then(|g| g.parse().ok())
        .expect("G");
    assert_eq!(gs.len(), n, "{what}: the program's report\n{program}");
    let all = growths(&printed);
    check_sizes(what, &all);
    assert_backtraces(what, &printed);
    assert!(
        all.iter().all(|x| x.goid.is_some() && x.guard.is_some()),
        "{what}: {printed}"
    );

    // Each goroutine's sizes double from the starting size, one growth at a time,
    // up to the first size that holds the deepest stack the goroutine measured, and
    // no further. A preemption request shows the size the stack had then.
    let mut per_goid: BTreeMap<u64, Vec<Growth>> = BTreeMap::new();
    for x in &all {
        per_goid.entry(x.goid.unwrap_or(0)).or_default().push(*x);
    }
    let mut grown = 0;
    for g in &gs {
        // Each frame of main.deep holds a 960-byte array.
        assert!(
            g.used >= g.depth * 960,
            "{what}: goroutine {g:?} measured less than its frames"
        );
        let lines = per_goid.get(&g.goid).cloned().unwrap_or_default();
        let mut size = START;
        let mut sizes = Vec::new();
        for (i, x) in lines.iter().enumerate() {
            assert_eq!(x.old, size, "{what}: goroutine {g:?}: {lines:?}");
            // A call of newstack that did not grow the stack is followed by one at
            // the same size. The guard says so too, unless the request came after
            // the probe read it (a thread descheduled for 10 ms on a busy machine
            // is what makes the scheduler ask), so the next line decides.
            let grew = match lines.get(i + 1) {
                Some(next) => next.old != x.old,
                None => !x.is_preemption(),
            };
            if grew {
                sizes.push(x.old);
                size *= 2;
            }
        }
        grown += sizes.len();
        let doublings: Vec<u64> = (0..sizes.len() as u32).map(|k| START << k).collect();
        assert_eq!(sizes, doublings, "{what}: goroutine {g:?}");
        let last = *sizes
            .last()
            .unwrap_or_else(|| panic!("{what}: goroutine {g:?} never grew"));
        assert!(
            2 * last >= g.used,
            "{what}: goroutine {g:?} ended with {} bytes",
            2 * last
        );
        assert!(
            last < g.used + SLACK,
            "{what}: goroutine {g:?} grew past {last} bytes, which held it"
        );
    }

    // The scripts as written printed the same calls of newstack.
    let key = |g: &[Growth]| {
        let mut v: Vec<(u64, u64)> = g.iter().map(|x| (x.old, x.new)).collect();
        v.sort_unstable();
        v
    };
    let written = growths(&written_out);
    assert_backtraces(what, &written_out);
    assert_eq!(key(&written), key(&all), "{what}: newstack.stp as written");
    // printstackgrow.stp prints the first of every thousand.
    let sampled = growths(&sampled_out);
    assert_backtraces(what, &sampled_out);
    assert_eq!(
        sampled.len(),
        (written.len() - 1) / 1000 + 1,
        "{what}: printstackgrow after {} calls of newstack\n{sampled_out}",
        written.len()
    );
    let seen = key(&written);
    assert!(
        sampled.iter().all(|x| seen.contains(&(x.old, x.new))),
        "{what}: {sampled:?}"
    );
    eprintln!(
        "{what}: {grown} growths of {} goroutines checked; {} calls of newstack in all",
        gs.len(),
        all.len()
    );
}

/// Waits (up to 20 s) until `tracer` holds a BPF link: its probes are attached.
fn wait_attached(tracer: &std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while bpf_ids_of(tracer.id()).1.is_empty() {
        assert!(std::time::Instant::now() < deadline, "gotap did not attach");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every growth line is followed by at least one frame of a backtrace, as stap prints
/// them: ` 0xPC : FUNC+OFF/SIZE at FILE:LINE [BIN]`.
fn assert_backtraces(what: &str, printed: &str) {
    let lines: Vec<&str> = printed.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if !l.starts_with("runtime: newstack: ") {
            continue;
        }
        let frames: Vec<&&str> = lines[i + 1..]
            .iter()
            .take_while(|f| f.starts_with(" 0x"))
            .collect();
        assert!(
            !frames.is_empty(),
            "{what}: no backtrace after line {}\n{printed}",
            i + 1
        );
        for f in frames {
            assert!(
                f.contains(" : ") && f.contains(" at ") && f.ends_with(']'),
                "{what}: frame {f:?}"
            );
        }
    }
}

/// `-v` says how long each pass took, in order, as `stap -v` does.
#[test]
fn verbose_reports_the_time_of_each_pass() {
    let tc = testprogs::newest();
    let prog = Private::copy(
        &testprogs::build("example", &tc, Variant::Default),
        "seed-verbose",
    );
    let (stack, line) = newstack_line(&tc, &prog.path);
    let script = seed_script("newstack.stp", &prog.path, &stack, line, false);
    let out = run(gotap()
        .arg("-v")
        .arg(&script)
        .arg("-o")
        .arg(script.with_extension("out"))
        .arg("-c")
        .arg(&prog.path));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let passes = [
        "parsed the script, resolved its probe points and checked its types",
        "compiled the probes to eBPF",
        "loaded the programs (the kernel's verifier)",
        "1 probes attached through 1 links",
        "detached",
    ];
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("gotap: "))
        .collect();
    assert_eq!(lines.len(), passes.len(), "{stderr}");
    for (l, pass) in lines.iter().zip(passes) {
        let ms = l
            .strip_prefix(&format!("gotap: {pass} in "))
            .and_then(|r| r.strip_suffix(" ms"))
            .and_then(|n| n.parse::<f64>().ok());
        assert!(
            ms.is_some_and(|ms| ms >= 0.0),
            "{l:?} is not {pass:?} in N ms"
        );
    }
}
