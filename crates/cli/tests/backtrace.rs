//! Backtraces against the program's own view of its stack: tests/testprogs/bt_stack.go
//! prints `runtime.Callers` at the points these scripts probe (lines `STACK tag
//! function:line …`), and gotap's frames (function and line, inlined calls
//! included) must be the same, at a function's entry, at a statement, in a return
//! probe, and from `runtime.newstack` on the system stack for a goroutine that
//! grows its stack; then a flame graph of where stacks grow. Every installed Go
//! toolchain, default, stripped and PIE builds. Needs root.

mod common;

use common::*;
use regex::Regex;

/// (function, line) of each frame.
type Frames = Vec<(String, u32)>;

/// The program's stacks: tag → frames, innermost first.
fn program_stacks(stdout: &str) -> Vec<(String, Frames)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("STACK ")?.split_whitespace();
            let tag = w.next()?.to_string();
            let frames = w
                .map(|f| {
                    let (func, line) = f.rsplit_once(':').expect("function:line");
                    (func.to_string(), line.parse().expect("line"))
                })
                .collect();
            Some((tag, frames))
        })
        .collect()
}

/// gotap's backtraces, each after a `BT tag` line: (tag, frames).
fn gotap_stacks(stdout: &str) -> Vec<(String, Frames)> {
    let frame = Regex::new(
        r"^ 0x[0-9a-f]+ : (\S+?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+| \(inlined\)) at (.+):(\d+) \[.+\]$",
    )
    .expect("regex");
    let mut out: Vec<(String, Frames)> = Vec::new();
    for l in stdout.lines() {
        if let Some(tag) = l.strip_prefix("BT ") {
            out.push((tag.to_string(), Vec::new()));
        } else if let Some(c) = frame.captures(l) {
            let last = out
                .last_mut()
                .unwrap_or_else(|| panic!("a frame before any BT line: {l}"));
            last.1.push((c[1].to_string(), c[3].parse().expect("line")));
        }
    }
    out
}

fn show(f: &[(String, u32)]) -> String {
    f.iter()
        .map(|(n, l)| format!("{n}:{l}"))
        .collect::<Vec<_>>()
        .join(" ")
}

const VARIANTS: [Variant; 3] = [Variant::Default, Variant::Stripped, Variant::Pie];

#[test]
fn frames_at_entry_statement_and_return_are_the_programs_own() {
    let src = std::fs::read_to_string(testprogs::source("bt_stack")).expect("read bt_stack.go");
    // The line of `return n + 1` in main.leaf: the statement probe's line.
    let ret_line = src
        .lines()
        .position(|l| l.trim() == "return n + 1")
        .expect("return n + 1") as u32
        + 1;
    for tc in testprogs::toolchains() {
        for v in VARIANTS {
            let bin = Private::copy(
                &testprogs::build("bt_stack", &tc, v),
                &format!("bt-{}-{}", tc.minor, v.name()),
            );
            let script = format!(
                r#"probe process.function("main.leaf") {{ printf("BT entry\n"); print_ubacktrace_fileline() }}
probe process.statement("main.leaf@bt_stack.go:{ret_line}") {{ printf("BT statement\n"); print_ubacktrace_fileline() }}
probe process.function("main.leaf").return {{ printf("BT return\n"); print_ubacktrace_fileline() }}"#
            );
            let out = run(gotap().arg("-e").arg(&script).arg("-c").arg(&bin.path));
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let ctx = format!("go{} {}:\n{stdout}\n{stderr}", tc.minor, v.name());
            assert!(out.status.success(), "{ctx}");
            let own = program_stacks(&stdout);
            let (_, leaf) = own
                .iter()
                .find(|(t, _)| t == "leaf")
                .unwrap_or_else(|| panic!("no STACK leaf line: {ctx}"));
            let stacks = gotap_stacks(&stdout);
            for tag in ["entry", "statement", "return"] {
                let (_, got) = stacks
                    .iter()
                    .find(|(t, _)| t == tag)
                    .unwrap_or_else(|| panic!("no {tag} backtrace: {ctx}"));
                assert_eq!(
                    got.first().map(|f| f.0.as_str()),
                    Some("main.leaf"),
                    "{tag}: {}\n{ctx}",
                    show(got)
                );
                // From the caller down to goexit, the frames are the program's.
                assert_eq!(show(&got[1..]), show(&leaf[1..]), "{tag}\n{ctx}");
                if tag == "statement" {
                    assert_eq!(got[0].1, ret_line, "{ctx}");
                }
            }
        }
    }
}

#[test]
fn from_newstack_the_goroutine_is_walked_to_goexit() {
    for tc in testprogs::toolchains() {
        for v in VARIANTS {
            let bin = Private::copy(
                &testprogs::build("bt_stack", &tc, v),
                &format!("bt-ns-{}-{}", tc.minor, v.name()),
            );
            let script = r#"probe process.function("runtime.newstack") { printf("BT newstack\n"); print_ubacktrace_fileline() }"#;
            let out = run(gotap().arg("-e").arg(script).arg("-c").arg(&bin.path));
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let ctx = format!("go{} {}:\n{stdout}\n{stderr}", tc.minor, v.name());
            assert!(out.status.success(), "{ctx}");
            let own = program_stacks(&stdout);
            let (_, deepest) = own
                .iter()
                .find(|(t, _)| t == "grow")
                .unwrap_or_else(|| panic!("no STACK grow line: {ctx}"));
            let mut seen = 0;
            for (_, got) in gotap_stacks(&stdout) {
                assert_eq!(
                    got.first().map(|f| f.0.as_str()),
                    Some("runtime.newstack"),
                    "{}\n{ctx}",
                    show(&got)
                );
                let Some(m) = got.iter().position(|f| f.0 == "runtime.morestack") else {
                    panic!(
                        "no runtime.morestack on the system stack: {}\n{ctx}",
                        show(&got)
                    )
                };
                let user = &got[m + 1..];
                assert_eq!(
                    user.last().map(|f| f.0.as_str()),
                    Some("runtime.goexit"),
                    "{}\n{ctx}",
                    show(&got)
                );
                if user.first().map(|f| f.0.as_str()) != Some("main.grow") {
                    continue;
                }
                // The function that needed more stack, then its callers: the
                // bottom of what the deepest call of grow printed.
                seen += 1;
                let callers = &user[1..];
                assert!(callers.len() < deepest.len(), "{}\n{ctx}", show(&got));
                assert_eq!(
                    show(callers),
                    show(&deepest[deepest.len() - callers.len()..]),
                    "{ctx}"
                );
            }
            assert!(seen > 0, "no stack growth of main.grow: {ctx}");
        }
    }
}

/// After `mcall` (a goroutine parking on a channel), the goroutine's saved SP does
/// not hold a return address: the walk must go from `gopark` to its caller once.
#[test]
fn after_mcall_the_parked_goroutine_is_walked_without_a_stray_frame() {
    let src = std::fs::read_to_string(testprogs::source("bt_stack")).expect("read bt_stack.go");
    let recv = src
        .lines()
        .position(|l| l.trim() == "fmt.Println(<-done)")
        .expect("fmt.Println(<-done)") as u32
        + 1;
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::Pie] {
            let bin = Private::copy(
                &testprogs::build("bt_stack", &tc, v),
                &format!("bt-park-{}-{}", tc.minor, v.name()),
            );
            let script = r#"probe process.function("runtime.park_m") { if (goid() == 1) { printf("BT park\n"); print_ubacktrace_fileline() } }"#;
            let out = run(gotap().arg("-e").arg(script).arg("-c").arg(&bin.path));
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let ctx = format!("go{} {}:\n{stdout}\n{stderr}", tc.minor, v.name());
            assert!(out.status.success(), "{ctx}");
            let stacks = gotap_stacks(&stdout);
            let main_recv = stacks
                .iter()
                .find(|(_, f)| f.iter().any(|(n, l)| n == "main.main" && *l == recv));
            let (_, got) =
                main_recv.unwrap_or_else(|| panic!("no park of main.main at line {recv}: {ctx}"));
            let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
            let from = names
                .iter()
                .position(|n| *n == "runtime.gopark")
                .unwrap_or_else(|| panic!("no gopark: {}\n{ctx}", show(got)));
            let to = names
                .iter()
                .position(|n| *n == "main.main")
                .expect("main.main");
            assert_eq!(names[0], "runtime.park_m", "{ctx}");
            assert_eq!(
                &names[from..=to],
                [
                    "runtime.gopark",
                    "runtime.chanrecv",
                    "runtime.chanrecv1",
                    "main.main"
                ],
                "{ctx}"
            );
            assert_eq!(names.last(), Some(&"runtime.goexit"), "{ctx}");
        }
    }
}

#[test]
fn flame_graph_of_stack_growth_names_the_growing_functions() {
    let tc = testprogs::newest();
    // Root first, the growth last, a count after a space.
    let line = Regex::new(r"^runtime\.goexit;(.*;)?main\.growing;(main\.grow;)+runtime\.morestack;runtime\.newstack \d+$").expect("regex");
    let title = Regex::new(r"<title>([^<]*?) \(").expect("regex");
    for v in VARIANTS {
        let bin = Private::copy(
            &testprogs::build("bt_stack", &tc, v),
            &format!("bt-fg-{}", v.name()),
        );
        let dir = bin.path.parent().expect("dir").to_path_buf();
        let (folded, svg) = (dir.join("grow.folded"), dir.join("grow.svg"));
        let script = r#"global grows
probe process.function("runtime.newstack") { grows[ubacktrace()] <<< 1 }"#;
        let out = run(gotap()
            .arg("-e")
            .arg(script)
            .arg("-c")
            .arg(&bin.path)
            .arg("--folded")
            .arg(&folded)
            .arg("--svg")
            .arg(&svg));
        let ctx = format!(
            "{}:\n{}\n{}",
            v.name(),
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(out.status.success(), "{ctx}");
        let lines = std::fs::read_to_string(&folded).expect("folded file");
        assert!(lines.lines().any(|l| line.is_match(l)), "{lines}\n{ctx}");
        let svg = std::fs::read_to_string(&svg).expect("svg file");
        assert!(svg.starts_with("<?xml"), "{ctx}");
        let titles: Vec<String> = title
            .captures_iter(&svg)
            .map(|c| c[1].to_string())
            .collect();
        for f in [
            "runtime.newstack",
            "runtime.morestack",
            "main.grow",
            "main.growing",
            "runtime.goexit",
        ] {
            assert!(
                titles.iter().any(|t| t == f),
                "{f} not in the flame graph: {titles:?}"
            );
        }
    }
}

/// Symbolisation speed with a warm cache, for BENCHMARKS.md (no assertion on time):
/// `cargo test --release -p gotap --test backtrace -- --ignored --nocapture symbolisation`.
/// 20-frame stacks of return addresses in every function of a real binary, printed
/// as `print_ubacktrace_fileline()` prints them, and folded for a flame graph.
#[test]
#[ignore]
fn symbolisation_throughput() {
    use std::time::Instant;
    let tc = testprogs::newest();
    let path = testprogs::build("bt_stack", &tc, Variant::Default);
    let data = std::fs::read(&path).expect("read the binary");
    let bin = gobin::GoBinary::parse(&data).expect("a Go binary");
    let pcs: Vec<u64> = bin
        .functions()
        .map(|f| f.entry.0 + (f.end.0 - f.entry.0) / 2 + 1)
        .collect();
    let stacks: Vec<&[u64]> = pcs.chunks_exact(20).collect();
    let mut sym = runtime::symbolize::Symbolizer::new(&bin, path.display().to_string(), 0);
    let mut out = Vec::with_capacity(1 << 20);
    for s in &stacks {
        sym.write_stack(&mut out, s, true, true);
    }
    assert!(
        out.len() > 20 * stacks.len() * 20,
        "every frame printed a line"
    );
    let rounds = 50;
    let t = Instant::now();
    let mut frames = 0usize;
    for _ in 0..rounds {
        for s in &stacks {
            out.clear();
            sym.write_stack(&mut out, s, true, true);
            frames += s.len();
        }
    }
    let lines = t.elapsed();
    let mut folded = String::new();
    let t = Instant::now();
    for _ in 0..rounds {
        for s in &stacks {
            folded.clear();
            sym.folded(&mut folded, s, true);
        }
    }
    let fold = t.elapsed();
    println!(
        "{} functions, {frames} frames: stap lines {:.2} M frames/s, folded {:.2} M frames/s (one core, cached)",
        pcs.len(),
        frames as f64 / lines.as_secs_f64() / 1e6,
        frames as f64 / fold.as_secs_f64() / 1e6
    );
}

/// A sample's walk sends the words at SP and SP + 8 as tentative frames (the second
/// marked `AT_SP_8`); user space keeps the one that is the return address of a
/// function stopped before its frame was built. Held against `go tool objdump`:
/// anywhere in a function with no `PUSHQ BP` (cpuwork's frameless `main.mix`) the
/// word at SP is kept; at the instruction after a `PUSHQ BP` (`main.sieve`, Go 1.21
/// on) the word at SP + 8; in the body of a function whose frame is built, neither.
#[test]
fn a_samples_tentative_callers_are_kept_by_where_the_frame_is_built() {
    use bpf::script::{AT_SP_8, TENTATIVE};
    let tc = testprogs::newest();
    let path = testprogs::build("cpuwork", &tc, Variant::Default);
    let data = std::fs::read(&path).expect("read the binary");
    let bin = gobin::GoBinary::parse(&data).expect("a Go binary");
    let mut sym = runtime::symbolize::Symbolizer::new(&bin, path.display().to_string(), 0);
    let (at_sp, at_sp8, next) = (0x4000_0001u64, 0x4000_0002u64, 0x4000_0003u64);
    let mut kept = |pc: u64| -> Vec<u64> {
        let frames = [pc, at_sp | TENTATIVE, at_sp8 | TENTATIVE | AT_SP_8, next];
        sym.logical(&frames, false).iter().map(|f| f.0).collect()
    };
    let mix = objdump(&tc, &path, "main.mix");
    assert!(mix.len() > 3, "{mix:?}");
    for (pc, insn) in &mix {
        assert!(!insn.starts_with("PUSHQ BP"), "{insn}");
        assert_eq!(kept(*pc), [*pc, at_sp, next], "main.mix at {pc:#x}: {insn}");
    }
    let sieve = objdump(&tc, &path, "main.sieve");
    let push = sieve
        .iter()
        .position(|(_, i)| i.starts_with("PUSHQ BP"))
        .unwrap_or_else(|| panic!("no PUSHQ BP in main.sieve: {sieve:?}"));
    let (after_push, insn) = &sieve[push + 1];
    assert!(insn.starts_with("MOVQ SP, BP"), "{insn}");
    assert_eq!(kept(*after_push), [*after_push, at_sp8, next]);
    // The first instruction past `SUBQ $N, SP` is in the body.
    let body = sieve
        .iter()
        .position(|(_, i)| i.starts_with("SUBQ $") && i.ends_with(", SP"))
        .map(|i| sieve[i + 1].0)
        .unwrap_or_else(|| panic!("no SUBQ in main.sieve: {sieve:?}"));
    assert_eq!(kept(body), [body, next]);
}
