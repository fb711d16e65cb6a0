//! `gotap -l` and `gotap -L` as a user runs them: the listed functions are the Go
//! toolchain's own view of the binary (`go tool nm`), statement lines are where code is,
//! and variables come with their Go types, or a clear word when there is no DWARF.

mod common;

use common::*;
use std::collections::BTreeSet;

fn listed(out: &std::process::Output) -> Vec<String> {
    assert!(out.status.success(), "gotap failed: {}", text(&out.stderr));
    text(&out.stdout).lines().map(String::from).collect()
}

/// The `main.` text symbols `go tool nm` lists, with their names as gotap prints them.
fn nm_main_functions(tc: &Toolchain, bin: &std::path::Path) -> BTreeSet<String> {
    let out = tc
        .go_command()
        .args(["tool", "nm"])
        .arg(bin)
        .output()
        .expect("go tool nm");
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().rev();
            let name = f.next()?;
            let kind = f.next()?;
            (matches!(kind, "T" | "t") && name.starts_with("main.")).then(|| name.to_string())
        })
        .collect()
}

#[test]
fn functions_list_as_go_tool_nm_sees_them() {
    for tc in testprogs::toolchains() {
        let bin = testprogs::build("counts", &tc, Variant::Default);
        let out = run(gotap().arg("-l").arg(format!(
            "process(\"{}\").function(\"main.*\")",
            bin.display()
        )));
        let prefix = format!("process(\"{}\").function(\"", bin.display());
        let names: BTreeSet<String> = listed(&out)
            .iter()
            .map(|l| {
                let inner = l
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("not in stap form: {l}"));
                let (name, place) = inner
                    .split_once('@')
                    .unwrap_or_else(|| panic!("no @file:line: {l}"));
                assert!(place.contains("counts.go:"), "go{}: {l}", tc.minor);
                name.to_string()
            })
            .collect();
        assert_eq!(names, nm_main_functions(&tc, &bin), "go{}", tc.minor);
    }
}

#[test]
fn the_stripped_binary_lists_the_same_functions() {
    let tc = testprogs::newest();
    let full = testprogs::build("counts", &tc, Variant::Default);
    let stripped = testprogs::build("counts", &tc, Variant::Stripped);
    let names = |b: &std::path::Path| -> Vec<String> {
        let out = run(gotap()
            .arg("-l")
            .arg(format!("process(\"{}\").function(\"main.*\")", b.display())));
        listed(&out)
            .iter()
            .map(|l| l.split("function(").nth(1).unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(names(&full), names(&stripped));
}

#[test]
fn variables_come_with_go_types_or_a_word_on_dwarf() {
    let tc = testprogs::newest();
    let bin = testprogs::build("example", &tc, Variant::Default);
    let out = run(gotap().arg("-L").arg(format!(
        "process(\"{}\").function(\"main.say\")",
        bin.display()
    )));
    let lines = listed(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].ends_with(" $s:string"), "{}", lines[0]);

    let stripped = testprogs::build("example", &tc, Variant::Stripped);
    let out = run(gotap().arg("-L").arg(format!(
        "process(\"{}\").function(\"main.say\")",
        stripped.display()
    )));
    assert_eq!(listed(&out).len(), 1);
    assert!(
        text(&out.stderr).contains("no DWARF"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn statement_lines_are_where_the_code_is() {
    for tc in testprogs::toolchains() {
        let bin = testprogs::build("example", &tc, Variant::Default);
        let out = run(gotap().arg("-l").arg(format!(
            "process(\"{}\").statement(\"runtime.newstack@runtime/stack.go:*\")",
            bin.display()
        )));
        let lines: Vec<u32> = listed(&out)
            .iter()
            .map(|l| {
                l.trim_end_matches("\")")
                    .rsplit(':')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{l}"))
            })
            .collect();
        // The line of `gp := thisg.m.curg` has no code of its own in any release; a
        // line after it, within the function, does.
        let src =
            std::fs::read_to_string(tc.goroot().join("src/runtime/stack.go")).expect("stack.go");
        let gp = src
            .lines()
            .position(|l| l.contains("gp := thisg.m.curg"))
            .expect("the curg line") as u32
            + 1;
        assert!(
            lines.iter().any(|l| (gp + 1..gp + 15).contains(l)),
            "go{}: no line after {gp} in {lines:?}",
            tc.minor
        );
        assert!(
            lines.iter().all(|l| *l < gp + 400 && *l + 40 > gp),
            "go{}: lines outside newstack: {lines:?}",
            tc.minor
        );
    }
}

#[test]
fn a_wrong_probe_point_says_what_would_be_right() {
    let tc = testprogs::newest();
    let bin = testprogs::build("example", &tc, Variant::Default);
    let out = run(gotap().arg("-l").arg(format!(
        "process(\"{}\").function(\"main.sya\")",
        bin.display()
    )));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("did you mean 'main.say'"),
        "{}",
        text(&out.stderr)
    );
    let out = run(gotap().arg("-l").arg(format!(
        "process(\"{}\").statement(\"main.say@example.go:1\")",
        bin.display()
    )));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("lines with code in 'main.say'"),
        "{}",
        text(&out.stderr)
    );
    let out = run(gotap()
        .arg("-l")
        .arg("process(\"/nonexistent/x\").function(\"main.*\")"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/x"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_wildcard_listing_names_what_the_compiler_would_probe() {
    // `-l` of a wildcard reads .gopclntab alone; `-L` goes through the compiler's
    // resolution. Without their variables, the two list the same lines.
    let tc = testprogs::newest();
    let bin = testprogs::build("counts", &tc, Variant::Stripped);
    let point = format!("process(\"{}\").function(\"*\")", bin.display());
    let fast = listed(&run(gotap().arg("-l").arg(&point)));
    // -L lists each inlined call too, marked `.inline`; -l lists a function once.
    let general: Vec<String> = listed(&run(gotap().arg("-L").arg(&point)))
        .iter()
        .map(|l| l.split(" $").next().unwrap_or_default().to_string())
        .filter(|l| !l.ends_with(".inline"))
        .collect();
    assert!(fast.len() > 1000, "only {} functions", fast.len());
    assert_eq!(fast, general);
}
