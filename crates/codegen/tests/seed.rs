//! The seed article's two scripts, changed only in the binary path and the line of
//! `runtime/stack.go`, compiled against example.go built by every installed Go
//! toolchain and loaded through the kernel's verifier; on the newest toolchain they
//! also run, and what they print is checked against the goroutine they observe.

mod common;

use std::path::{Path, PathBuf};

use bpf::script::EventSpec;
use gobin::{GoBinary, VirtAddr};
use testprogs::{Toolchain, Variant};

/// The first line at or after `gp := thisg.m.curg` in the toolchain's
/// runtime/stack.go that has code of `runtime.newstack` (pclntab, not DWARF: the
/// statement `gp := ...` itself has no row of its own).
fn newstack_line(tc: &Toolchain, bin: &Path) -> (PathBuf, u32) {
    let stack_go = tc.goroot().join("src/runtime/stack.go");
    let text = std::fs::read_to_string(&stack_go).expect("read stack.go");
    let want = text
        .lines()
        .position(|l| l.trim() == "gp := thisg.m.curg")
        .expect("stack.go has gp := thisg.m.curg") as u32
        + 1;
    let data = std::fs::read(bin).unwrap();
    let gb = GoBinary::parse(&data).unwrap();
    let f = gb.function_by_name("runtime.newstack").unwrap();
    let line = gb
        .line_starts(&f)
        .keys()
        .filter(|(file, l)| file.ends_with("runtime/stack.go") && *l >= want)
        .map(|(_, l)| *l)
        .min()
        .expect("a line with code after gp := thisg.m.curg");
    (stack_go, line)
}

fn seed(name: &str, bin: &Path, stack_go: &Path, line: u32) -> String {
    let text = std::fs::read_to_string(testprogs::repo_root().join("examples").join(name)).unwrap();
    text.replace("./example", &bin.to_string_lossy()).replace(
        "/usr/lib/golang/src/runtime/stack.go:936",
        &format!("{}:{line}", stack_go.display()),
    )
}

#[test]
fn seed_scripts_load_on_every_toolchain_and_build() {
    // Every build that keeps DWARF (the seed reads $thisg); stripped builds are below.
    for (tc, v) in testprogs::matrix() {
        if v == Variant::Stripped {
            continue;
        }
        let bin = testprogs::build("example", &tc, v);
        let (stack_go, line) = newstack_line(&tc, &bin);
        for name in ["newstack.stp", "printstackgrow.stp"] {
            let src = seed(name, &bin, &stack_go, line);
            let c = common::compile(&src, &bin)
                .unwrap_or_else(|e| panic!("{} {v} {name}:\n{e}", tc.version));
            assert!(!c.spec.attachments.is_empty());
            assert!(
                c.spec
                    .events
                    .iter()
                    .any(|e| matches!(e, EventSpec::Backtrace { .. }))
            );
            common::load(&c, sys::AttachKind::PerfEvent);
        }
    }
}

#[test]
fn seed_with_cast_loads_on_stripped_binaries() {
    for tc in testprogs::toolchains() {
        let bin = testprogs::build("example", &tc, Variant::Stripped);
        let src = format!(
            r#"probe process("{}").function("runtime.newstack") {{
  g = @cast(goid() >= 0 ? 0 : 0, "runtime.g")
  size = @cast(g, "runtime.g")->m->curg->stack->hi - @cast(g, "runtime.g")->m->curg->stack->lo
  printf("%d %d\n", goid(), size)
}}"#,
            bin.display()
        );
        let c = common::compile(&src, &bin).unwrap_or_else(|e| panic!("{}:\n{e}", tc.version));
        common::load(&c, sys::AttachKind::PerfEvent);
    }
}

#[test]
fn newstack_prints_doubling_sizes_and_a_backtrace_to_goexit() {
    for tc in testprogs::toolchains() {
        newstack_run(&tc);
    }
}

fn newstack_run(tc: &Toolchain) {
    let bin = testprogs::build("example", tc, Variant::Default);
    let (stack_go, line) = newstack_line(tc, &bin);
    let src = seed("newstack.stp", &bin, &stack_go, line);
    let c = common::compile(&src, &bin).unwrap();
    let run = common::run(&c, &bin, &[]);
    let texts = run.texts();
    assert!(!texts.is_empty(), "{}: no stack growth seen", tc.version);
    for t in &texts {
        let nums: Vec<i64> = t
            .trim_start_matches("runtime: newstack: ")
            .trim_end()
            .split(" -> ")
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(nums[0] >= 2048 && nums[0].count_ones() == 1, "{t}");
        assert_eq!(nums[1], 2 * nums[0], "{t}");
    }
    let data = std::fs::read(&bin).unwrap();
    let gb = GoBinary::parse(&data).unwrap();
    let traces: Vec<Vec<String>> = run
        .records
        .iter()
        .filter(|r| matches!(r.event, EventSpec::Backtrace { .. }))
        .map(|r| {
            r.frames
                .iter()
                .map(|pc| {
                    gb.function_at(VirtAddr(*pc))
                        .map_or("?".into(), |f| f.name.to_string())
                })
                .collect()
        })
        .collect();
    assert_eq!(traces.len(), texts.len());
    // Every walk goes from the function that needed more stack up to the start of
    // its goroutine (runtime.goexit is the return address every goroutine starts
    // with), through functions only (no address outside the text).
    for t in &traces {
        assert!(t.len() >= 2, "{t:?}");
        assert_eq!(
            t.last().map(String::as_str),
            Some("runtime.goexit"),
            "{t:?}"
        );
        assert!(!t.iter().any(|f| f == "?"), "{t:?}");
    }
}
