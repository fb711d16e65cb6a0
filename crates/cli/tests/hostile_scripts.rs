//! Scripts that try to make gotap abort (issue 12): 100,000-term chains of operators,
//! 100,000-deep nesting of every kind, long chains of calls, an empty script, a NUL
//! byte. Each gets a clean error with its place and a non-zero exit (never a signal),
//! or runs; the tallest expression allowed runs in both back ends. Needs root for the
//! runs that load probes.

mod common;

use common::*;

fn write(name: &str, src: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gotap-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, src).expect("write the script");
    path
}

/// Runs gotap on `src` (with the script test program when `program`) and returns its
/// exit code and stderr; a death by signal fails the test.
fn gotap_on(name: &str, src: &str, program: bool) -> (i32, String, String) {
    let path = write(name, src);
    let mut cmd = gotap();
    cmd.arg(&path);
    if program {
        let bin = testprogs::build("script", &testprogs::newest(), Variant::Default);
        cmd.arg("-c").arg(format!("{} 1", bin.display()));
    }
    let out = run(&mut cmd);
    let stderr = text(&out.stderr);
    let code = out.status.code().unwrap_or_else(|| {
        panic!(
            "{name}: gotap died by a signal ({:?}):\n{stderr}",
            out.status
        )
    });
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    (code, text(&out.stdout), stderr)
}

fn refused(name: &str, src: &str, program: bool, message: &str) {
    let (code, _, stderr) = gotap_on(name, src, program);
    assert_eq!(code, 1, "{name}: {stderr}");
    assert!(
        stderr.contains(&format!("{name}:1:")) && stderr.contains(message),
        "{name}: no {message:?} with a place in:\n{}",
        &stderr[..stderr.len().min(2000)]
    );
}

const N: usize = 100_000;

#[test]
fn hundred_thousand_term_chains_are_refused_at_their_place() {
    for (name, op, probe) in [
        ("sum_end.stp", "+", "end"),
        ("sum_kernel.stp", "+", "process.function(\"main.add\")"),
        ("and_end.stp", "&&", "end"),
        ("or_end.stp", "||", "end"),
        ("shift_end.stp", "<<", "end"),
    ] {
        let chain = vec!["1"; N].join(op);
        let src = format!("probe {probe} {{ printf(\"%d\\n\", {chain}) }}\n");
        refused(name, &src, probe != "end", "operators deep");
    }
    let concat = vec!["\"a\""; N].join(" . ");
    refused(
        "concat_end.stp",
        &format!("probe end {{ println({concat}) }}\n"),
        false,
        "operators deep",
    );
}

#[test]
fn hundred_thousand_deep_nesting_is_refused_at_its_place() {
    let nest = |open: &str, inner: &str, close: &str| {
        format!("{}{inner}{}", open.repeat(N), close.repeat(N))
    };
    let cases = [
        (
            "parens.stp",
            format!("probe end {{ println({}) }}", nest("(", "1", ")")),
        ),
        (
            "minus.stp",
            format!("probe end {{ println({}1) }}", "-".repeat(N)),
        ),
        (
            "not.stp",
            format!("probe end {{ println({}1) }}", "!".repeat(N)),
        ),
        (
            "ternary.stp",
            format!(
                "probe end {{ println({}1{}) }}",
                "1 ? ".repeat(N),
                " : 0".repeat(N)
            ),
        ),
        (
            "ifs.stp",
            format!("probe end {{ {}println(1) }}", "if (1) ".repeat(N)),
        ),
        (
            "blocks.stp",
            format!("probe end {}", nest("{ ", "println(1)", " }")),
        ),
        (
            "assigns.stp",
            format!("probe end {{ {}1; println(x) }}", "x = ".repeat(N)),
        ),
        (
            "calls.stp",
            format!(
                "probe end {{ println({}) }}",
                nest("strlen(sprint(", "1", "))")
            ),
        ),
        (
            "index.stp",
            format!(
                "probe end {{ println({}) }}\nglobal a\n",
                nest("a[", "1", "]")
            ),
        ),
    ];
    for (name, src) in cases {
        refused(name, &src, false, "nesting deeper than");
    }
}

#[test]
fn the_tallest_expression_allowed_runs_in_both_back_ends() {
    let chain = vec!["1"; lang::parser::MAX_EXPR_HEIGHT as usize].join("+");
    let src = format!(
        "probe process.function(\"main.add\") {{ printf(\"k %d\\n\", {chain}) }}\nprobe end {{ printf(\"u %d\\n\", {chain}) }}\n"
    );
    let (code, stdout, stderr) = gotap_on("tallest.stp", &src, true);
    assert_eq!(code, 0, "{stderr}");
    let n = lang::parser::MAX_EXPR_HEIGHT;
    assert!(stdout.contains(&format!("k {n}\n")), "{stdout}");
    assert!(stdout.contains(&format!("u {n}\n")), "{stdout}");
}

/// 2,000 functions, each calling the next: user space nests at most
/// `runtime::interp::MAX_NESTING` calls deep and stops with stap's MAXNESTING; the
/// checker refuses the chain in a kernel probe, which inlines calls 16 deep.
#[test]
fn two_thousand_nested_calls_stop_cleanly() {
    let mut fns = String::new();
    for i in 0..2_000 {
        fns.push_str(&format!("function f{i}() {{ return f{}() + 1 }}\n", i + 1));
    }
    fns.push_str("function f2000() { return 0 }\n");
    let (code, _, stderr) = gotap_on(
        "chain_end.stp",
        &format!("{fns}probe end {{ println(f0()) }}\n"),
        true,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("ERROR: MAXNESTING exceeded near identifier"),
        "{stderr}"
    );
    let (code, _, stderr) = gotap_on(
        "chain_kernel.stp",
        &format!("{fns}probe process.function(\"main.add\") {{ println(f0()) }}\n"),
        true,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("a chain of more than 16 nested calls cannot be used in a process probe"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
}

#[test]
fn an_empty_script_and_a_nul_byte_are_errors_with_their_place() {
    for (name, src) in [("empty.stp", ""), ("blank.stp", "\n  \n# only a comment\n")] {
        let (code, _, stderr) = gotap_on(name, src, false);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}:")) && stderr.contains("no probes"),
            "{name}: {stderr}"
        );
    }
    let (code, _, stderr) = gotap_on(
        "nul.stp",
        "probe end { println(1) }\n\0probe begin {}\n",
        false,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("nul.stp:2:1: error: the script has a NUL byte here"),
        "{stderr}"
    );
}
