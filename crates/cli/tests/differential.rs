//! The differential suite (issue 11): the language means one thing in both back ends.
//! Generated cases, each a few statements that print, run in a kernel probe (compiled
//! to eBPF, a uprobe on `main.add` of tests/testprogs/script.go, one batch of cases
//! per call) and in `probe end` (gotap's interpreter), and must print the same bytes:
//! integer arithmetic (overflow, shifts, negative division and modulo), comparisons,
//! string built-ins, every format directive × flag × width × value class through
//! `printf` and, where the kernel builds it, `sprintf`, statistics (empty and not),
//! arrays, `foreach` and `delete`. User space and stap's documented semantics are the
//! reference; a divergence is fixed in the back end that is wrong, and a divergence
//! found later becomes a case here.
//!
//! Each case writes `\x1e<id> ` before its output, so the two runs are compared case
//! by case; its globals and locals carry its id and the back end (`k…`/`u…`), so the
//! kernel's run does not change what the end probe sees. Errors that stop a probe
//! (division by zero, an empty aggregate) each get a script of their own, whose two
//! `ERROR:` lines must say the same. Needs root.

mod common;

use common::*;
use std::fmt::Write as _;

/// One case: statements in which `{G}` prefixes the case's globals and `{L}` its
/// locals, and the globals it declares (without the prefix).
struct Case {
    family: &'static str,
    stmts: String,
    globals: Vec<&'static str>,
}

fn case(family: &'static str, stmts: impl Into<String>) -> Case {
    Case {
        family,
        stmts: stmts.into(),
        globals: Vec::new(),
    }
}

fn with_globals(family: &'static str, globals: &[&'static str], stmts: impl Into<String>) -> Case {
    Case {
        family,
        stmts: stmts.into(),
        globals: globals.to_vec(),
    }
}

/// A long as script text: `i64::MIN` has no literal.
fn lit(v: i64) -> String {
    match v {
        i64::MIN => "(-9223372036854775807 - 1)".into(),
        v if v < 0 => format!("({v})"),
        v => v.to_string(),
    }
}

/// A string as a script literal.
fn slit(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => write!(out, "\\x{b:02x}").unwrap(),
        }
    }
    out.push('"');
    out
}

const LONGS: [i64; 8] = [0, 1, -1, 7, -7, 1_000_000_007, i64::MAX, i64::MIN];

fn arithmetic(out: &mut Vec<Case>) {
    for op in ["+", "-", "*", "/", "%", "&", "|", "^"] {
        for a in LONGS {
            for b in LONGS {
                if b == 0 && (op == "/" || op == "%") {
                    continue;
                }
                out.push(case(
                    "arithmetic",
                    format!("printf(\"%d\\n\", {} {op} {})", lit(a), lit(b)),
                ));
            }
        }
    }
    // A divisor the compiler cannot see is not 0.
    for op in ["/", "%", "/=", "%="] {
        for a in [7, -7, i64::MIN, i64::MAX] {
            for b in [1, -1, 3, -3, i64::MIN, i64::MAX] {
                let stmts = if op.ends_with('=') {
                    format!(
                        "{{L}}x = {}; {{L}}x {op} {}; printf(\"%d\\n\", {{L}}x)",
                        lit(a),
                        lit(b)
                    )
                } else {
                    format!(
                        "{{L}}d = {}; printf(\"%d\\n\", {} {op} {{L}}d)",
                        lit(b),
                        lit(a)
                    )
                };
                out.push(case("division", stmts));
            }
        }
    }
    for op in ["<<", ">>"] {
        for a in [1, -1, i64::MIN, 0x1234_5678_9abc, i64::MAX] {
            for n in [0, 1, 31, 62, 63, 64, 65, -1, -64] {
                out.push(case(
                    "shift",
                    format!("printf(\"%d\\n\", {} {op} {})", lit(a), lit(n)),
                ));
            }
        }
    }
    for op in ["-", "~", "!", "+", "- -", "!!"] {
        for a in LONGS {
            out.push(case("unary", format!("printf(\"%d\\n\", {op}{})", lit(a))));
        }
    }
    for (a, b) in [
        (i64::MAX, 1),
        (i64::MIN, -1),
        (i64::MIN, i64::MIN),
        (3, i64::MAX),
    ] {
        out.push(case(
            "overflow",
            format!(
                "{{L}}x = {}; {{L}}x += {}; {{L}}y = {}; {{L}}y *= {}; {{L}}z = {}; {{L}}z++; printf(\"%d %d %d\\n\", {{L}}x, {{L}}y, {{L}}z)",
                lit(a),
                lit(b),
                lit(a),
                lit(b),
                lit(a)
            ),
        ));
    }
}

fn comparisons(out: &mut Vec<Case>) {
    let longs = [0, 1, -1, i64::MAX, i64::MIN];
    let strs = ["", "a", "ab", "b", "a\u{7f}"];
    for op in ["<", "<=", ">", ">=", "==", "!="] {
        for a in longs {
            for b in longs {
                out.push(case(
                    "compare",
                    format!("printf(\"%d\\n\", {} {op} {})", lit(a), lit(b)),
                ));
            }
        }
        for a in strs {
            for b in strs {
                out.push(case(
                    "compare strings",
                    format!("printf(\"%d\\n\", {} {op} {})", slit(a), slit(b)),
                ));
            }
        }
    }
    for op in ["&&", "||"] {
        for a in [0, 1, -5] {
            for b in [0, 1, -5] {
                out.push(case(
                    "logic",
                    format!("printf(\"%d\\n\", {a} {op} {b})", a = lit(a), b = lit(b)),
                ));
            }
        }
    }
    for c in [0, 1, -1] {
        out.push(case(
            "ternary",
            format!(
                "printf(\"%d %s\\n\", {c} ? 10 : 20, {c} ? \"yes\" : \"no\")",
                c = lit(c)
            ),
        ));
    }
    // Short circuits: the right side's increment happens only when it is evaluated.
    out.push(case(
        "logic",
        "{L}n = 0; {L}r = 0 && {L}n++; {L}s = 1 || {L}n++; {L}t = 1 && {L}n++; printf(\"%d %d %d %d\\n\", {L}n, {L}r, {L}s, {L}t)",
    ));
}

fn strings(out: &mut Vec<Case>) {
    let long = "x".repeat(200);
    let strs = ["", "a", "hello, world", long.as_str()];
    for s in strs {
        out.push(case(
            "strlen",
            format!("printf(\"%d\\n\", strlen({}))", slit(s)),
        ));
        out.push(case(
            "sprint",
            format!("printf(\"[%s]\\n\", sprint({}))", slit(s)),
        ));
        out.push(case("len", format!("printf(\"%d\\n\", len({}))", slit(s))));
    }
    for start in [-1, 0, 3, 11, 12, 100] {
        for len in [-1, 0, 1, 5, 100] {
            out.push(case(
                "substr",
                format!(
                    "printf(\"[%s]\\n\", substr(\"hello, world\", {}, {}))",
                    lit(start),
                    lit(len)
                ),
            ));
        }
    }
    for v in LONGS {
        out.push(case(
            "sprint",
            format!("printf(\"[%s]\\n\", sprint({}))", lit(v)),
        ));
    }
    for (a, b) in [
        ("ab", "cd"),
        ("", "x"),
        (long.as_str(), "y"),
        ("q", long.as_str()),
    ] {
        out.push(case(
            "concat",
            format!(
                "{{L}}s = {} . {}; printf(\"%d [%s]\\n\", strlen({{L}}s), {{L}}s)",
                slit(a),
                slit(b)
            ),
        ));
    }
    // Values at the string limit: a NUL from %c, a sprintf that fills the slot, keys
    // and values of arrays cut alike.
    out.push(case(
        "string limits",
        "{L}c = sprintf(\"%c\", 0); {L}d = sprintf(\"a%cb\", 0); printf(\"%d %d [%s] [%s]\\n\", strlen({L}c), strlen({L}d), {L}c, {L}d)",
    ));
    for f in ["[%5c|%d]", "[%-5c|%d]", "[%c%c]", "%1c|%X"] {
        out.push(case(
            "string limits",
            format!(
                "{{L}}n = 0; {{L}}s = sprintf({}, 0, {{L}}n++ + 65); printf(\"%d %d [%s]\\n\", {{L}}n, strlen({{L}}s), {{L}}s)",
                slit(f)
            ),
        ));
    }
    out.push(case(
        "string limits",
        format!(
            "{{L}}s = sprintf(\"%s%s\", {l}, {l}); printf(\"%d %d\\n\", strlen({{L}}s), strlen(substr({{L}}s, 100, 100)))",
            l = slit(&"q".repeat(100))
        ),
    ));
    out.push(with_globals(
        "string limits",
        &["m"],
        format!(
            "{{G}}m[{l} . \"1\"] = {l} . \"2\"; {{G}}m[{l} . \"3\"] = \"x\"; printf(\"%d %s\\n\", strlen({{G}}m[{l}]), {{G}}m[{l} . \"9\"])",
            l = slit(&"k".repeat(130))
        ),
    ));
    out.push(case(
        "concat",
        "{L}s = \"a\"; {L}s .= \"b\"; {L}s .= {L}s; {L}s .= {L}s . {L}s; printf(\"%s %d\\n\", {L}s, strlen({L}s))",
    ));
}

/// `printf` of every conversion with every flag, a few widths and precisions, and
/// values of each class; then the same through `sprintf` where the kernel builds it.
fn formats(out: &mut Vec<Case>) {
    let flags = ["", "-", "+", " ", "#", "0"];
    let widths = ["", "1", "8", "22"];
    let longs = [0, 42, -42, i64::MIN];
    for conv in ["d", "i", "u", "o", "x", "X", "p", "c", "b"] {
        for flag in flags {
            for width in widths {
                let f = format!("%{flag}{width}{conv}");
                let args: Vec<String> = longs.iter().map(|v| lit(*v)).collect();
                out.push(case(
                    "printf",
                    format!("printf(\"[{f}|{f}|{f}|{f}]\\n\", {})", args.join(", ")),
                ));
            }
        }
        for prec in [".0", ".3", "5.2", "-6.4"] {
            let f = format!("%{prec}{conv}");
            out.push(case(
                "printf precision",
                format!("printf(\"[{f}|{f}|{f}]\\n\", 0, 42, -42)"),
            ));
        }
    }
    let long = "y".repeat(150);
    let strs = ["", "abc", long.as_str()];
    for flag in flags {
        for width in ["", "1", "8", "130"] {
            for prec in ["", ".0", ".2", ".200"] {
                let f = format!("%{flag}{width}{prec}s");
                let args: Vec<String> = strs.iter().map(|s| slit(s)).collect();
                out.push(case(
                    "printf %s",
                    format!("printf(\"[{f}|{f}|{f}]\\n\", {})", args.join(", ")),
                ));
            }
        }
    }
    for w in [-5, 0, 5, 300] {
        out.push(case(
            "printf *",
            format!(
                "printf(\"[%*d|%-*s|%.*s]\\n\", {w}, 7, {w}, \"ab\", {w}, \"abcdef\")",
                w = lit(w)
            ),
        ));
    }
    out.push(case(
        "printf literals",
        "printf(\"100%% sure %ld %lx 50%\", -3, 255)",
    ));
    out.push(case(
        "print",
        "print(1, \"a\", -2); println(\"b\", 3); println()",
    ));
    // sprintf: what the kernel builds, printed back through %s.
    for conv in ["d", "i", "u", "o", "x", "X", "p", "c"] {
        for flag in flags {
            for width in ["", "1", "22"] {
                let f = format!("%{flag}{width}{conv}");
                let parsed = lang::format::Format::parse(f.as_bytes()).expect("parses");
                let kernel = parsed.conversions().all(|c| c.kernel_sprintf().is_ok());
                if !kernel {
                    continue;
                }
                let values = if conv == "c" {
                    vec![65, 122]
                } else {
                    vec![0, -42, i64::MIN]
                };
                let args: Vec<String> = values.iter().map(|v| lit(*v)).collect();
                let fs = vec![f.as_str(); values.len()].join("|");
                out.push(case(
                    "sprintf",
                    format!(
                        "{{L}}s = sprintf(\"[{fs}]\", {}); printf(\"%d %s\\n\", strlen({{L}}s), {{L}}s)",
                        args.join(", ")
                    ),
                ));
            }
        }
    }
    for flag in ["", "-"] {
        for width in ["", "1", "8", "22"] {
            let f = format!("%{flag}{width}s");
            out.push(case(
                "sprintf %s",
                format!(
                    "{{L}}s = sprintf(\"[{f}|{f}|{f}]\", \"\", \"abc\", {}); printf(\"%d %s\\n\", strlen({{L}}s), {{L}}s)",
                    slit(&"z".repeat(140))
                ),
            ));
        }
    }
}

fn statistics(out: &mut Vec<Case>) {
    let sets: [&[i64]; 4] = [
        &[5],
        &[1, 2, 3, 4],
        &[-7, 7, 0, -1],
        &[i64::MAX, 1, i64::MIN],
    ];
    for set in sets {
        let adds: Vec<String> = set
            .iter()
            .map(|v| format!("{{G}}s <<< {};", lit(*v)))
            .collect();
        out.push(with_globals(
            "statistics",
            &["s"],
            format!(
                "{} printf(\"%d %d %d %d %d\\n\", @count({{G}}s), @sum({{G}}s), @min({{G}}s), @max({{G}}s), @avg({{G}}s))",
                adds.join(" ")
            ),
        ));
    }
    out.push(with_globals(
        "statistics",
        &["e"],
        "if (0) {G}e <<< 1; printf(\"%d\\n\", @count({G}e))",
    ));
    out.push(with_globals(
        "statistics",
        &["ks", "kt"],
        "{G}ks[1] <<< 5; {G}ks[1] <<< -5; {G}kt[\"x\" . \"\", 2] <<< 1; printf(\"%d %d %d %d %d\\n\", @count({G}ks[1]), @sum({G}ks[1]), @count({G}ks[2]), 2 in {G}ks, @count({G}kt[\"x\", 2]))",
    ));
    out.push(with_globals(
        "statistics",
        &["ds"],
        "{G}ds <<< 3; {G}ds <<< 4; delete {G}ds; printf(\"%d\\n\", @count({G}ds)); {G}ds <<< 9; printf(\"%d %d\\n\", @count({G}ds), @max({G}ds))",
    ));
}

fn arrays(out: &mut Vec<Case>) {
    out.push(with_globals(
        "arrays",
        &["a"],
        "{G}a[1] = 10; {G}a[2] += 5; {G}a[2]++; {G}a[3] = {G}a[1] * 3; printf(\"%d %d %d %d %d %d\\n\", {G}a[1], {G}a[2], {G}a[3], {G}a[4], 3 in {G}a, 4 in {G}a)",
    ));
    out.push(with_globals(
        "arrays",
        &["s"],
        "{G}s[\"k\"] = \"v\"; {G}s[\"k\"] .= \"w\"; printf(\"[%s] [%s] %d\\n\", {G}s[\"k\"], {G}s[\"none\"], \"k\" in {G}s)",
    ));
    out.push(with_globals(
        "arrays",
        &["t"],
        "{G}t[1, \"a\"] = 1; {G}t[1, \"b\"] = 2; {G}t[2, \"a\"] = 3; delete {G}t[1, \"b\"]; printf(\"%d %d %d %d\\n\", {G}t[1, \"a\"], {G}t[1, \"b\"], [1, \"b\"] in {G}t, [2, \"a\"] in {G}t)",
    ));
    out.push(with_globals(
        "delete",
        &["d"],
        "{G}d[1] = 1; {G}d[2] = 2; delete {G}d; printf(\"%d %d\\n\", 1 in {G}d, {G}d[2]); {G}d[3] = 3; printf(\"%d\\n\", {G}d[3])",
    ));
    out.push(with_globals(
        "delete",
        &["x", "y"],
        "{G}x = 5; {G}y = \"s\"; delete {G}x; delete {G}y; printf(\"%d [%s]\\n\", {G}x, {G}y)",
    ));
    // foreach: the order of an unsorted walk is the map's own, so cases print what does
    // not depend on it.
    out.push(with_globals(
        "foreach",
        &["f"],
        "{G}f[1] = 10; {G}f[2] = 20; {G}f[3] = 30; {L}sum = 0; {L}n = 0; foreach (k in {G}f) { {L}sum += k * {G}f[k]; {L}n++ } printf(\"%d %d\\n\", {L}sum, {L}n)",
    ));
    out.push(with_globals(
        "foreach",
        &["g"],
        "{G}g[\"a\", 1] = 2; {G}g[\"b\", 2] = 3; {L}p = 1; foreach ([s, n] in {G}g) {L}p *= n + {G}g[s, n] + strlen(s); printf(\"%d\\n\", {L}p)",
    ));
    out.push(with_globals(
        "foreach",
        &["h"],
        "{G}h[1] = 1; {G}h[2] = 2; {G}h[3] = 3; {G}h[4] = 4; {L}n = 0; foreach (k in {G}h) { {L}n++; if ({L}n == 2) break } {L}m = 0; foreach (k in {G}h limit 3) {L}m++; printf(\"%d %d\\n\", {L}n, {L}m)",
    ));
    out.push(with_globals(
        "foreach",
        &["v"],
        "{G}v[5] = 50; {G}v[6] = 60; {L}t = 0; foreach (x = [k] in {G}v) { if (k == 5) continue; {L}t += x + k } printf(\"%d\\n\", {L}t)",
    ));
    out.push(with_globals(
        "foreach",
        &["w", "key"],
        "{G}w[1] = 5; {G}w[2] = 7; {L}s = 0; foreach ({G}key in {G}w) {L}s += {G}key * {G}w[{G}key]; printf(\"%d %d\\n\", {L}s, {G}key == 1 || {G}key == 2)",
    ));
    out.push(with_globals(
        "foreach",
        &["st"],
        "{G}st[1] <<< 4; {G}st[1] <<< 6; {G}st[2] <<< 1; {L}c = 0; foreach (k in {G}st) {L}c += @count({G}st[k]) * 10 + @sum({G}st[k]); printf(\"%d\\n\", {L}c)",
    ));
    out.push(case(
        "loops",
        "{L}i = 0; {L}t = 0; while ({L}i < 20) { {L}i++; if ({L}i % 3 == 0) continue; if ({L}i > 15) break; {L}t += {L}i } for ({L}j = 0; {L}j < 5; {L}j++) {L}t = {L}t * 2 - {L}j; printf(\"%d %d\\n\", {L}i, {L}t)",
    ));
}

fn all_cases() -> Vec<Case> {
    let mut out = Vec::new();
    arithmetic(&mut out);
    comparisons(&mut out);
    strings(&mut out);
    formats(&mut out);
    statistics(&mut out);
    arrays(&mut out);
    out
}

/// The statements of case `id` for one back end.
fn stmts(c: &Case, id: usize, backend: char) -> String {
    c.stmts
        .replace("{G}", &format!("{backend}{id}_"))
        .replace("{L}", &format!("l{id}_"))
}

/// One script with every case: batch `i` runs in the kernel when `main.add` is called
/// with `a == i`, and in the end probe (one per batch, each with its own statement
/// budget) after a `\x1d`.
fn script(cases: &[Case], batches: usize) -> String {
    let mut s = String::new();
    let mut globals = Vec::new();
    for (id, c) in cases.iter().enumerate() {
        for g in &c.globals {
            globals.push(format!("k{id}_{g}"));
            globals.push(format!("u{id}_{g}"));
        }
    }
    for chunk in globals.chunks(16) {
        writeln!(s, "global {}", chunk.join(", ")).unwrap();
    }
    let per = cases.len().div_ceil(batches);
    let body = |backend: char, from: usize, to: usize| {
        let mut b = String::new();
        for (id, c) in cases.iter().enumerate().take(to).skip(from) {
            writeln!(b, "  printf(\"\\x1e{id} \")").unwrap();
            writeln!(b, "  {}", stmts(c, id, backend)).unwrap();
        }
        b
    };
    for i in 0..batches {
        let (from, to) = (i * per, ((i + 1) * per).min(cases.len()));
        writeln!(
            s,
            "probe process.function(\"main.add\") {{ if ($a == {i}) {{\n{}}} }}",
            body('k', from, to)
        )
        .unwrap();
    }
    writeln!(s, "probe end {{ printf(\"\\x1d\") }}").unwrap();
    for i in 0..batches {
        let (from, to) = (i * per, ((i + 1) * per).min(cases.len()));
        writeln!(s, "probe end {{\n{}}}", body('u', from, to)).unwrap();
    }
    s
}

/// Case id → its output, from one back end's part of stdout.
fn by_case(part: &[u8]) -> std::collections::BTreeMap<usize, Vec<u8>> {
    let mut m = std::collections::BTreeMap::new();
    for chunk in part.split(|&b| b == 0x1e).skip(1) {
        let sp = chunk.iter().position(|&b| b == b' ').unwrap_or(chunk.len());
        let id: usize = std::str::from_utf8(&chunk[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        m.insert(id, chunk[(sp + 1).min(chunk.len())..].to_vec());
    }
    m
}

/// Batches of cases: the program calls `main.add` this many times (its argument), and
/// each call runs one batch in the kernel, a program short enough for 16-bit jumps.
const BATCHES: usize = 40;

#[test]
fn kernel_and_user_space_print_the_same_bytes() {
    let cases = all_cases();
    assert!(cases.len() >= 300, "only {} cases", cases.len());
    let bin = testprogs::build("script", &testprogs::newest(), Variant::Default);
    let private = Private::copy(&bin, "differential");
    let src = script(&cases, BATCHES);
    let path = private.path.with_file_name("differential.stp");
    std::fs::write(&path, &src).expect("write the script");
    let out = run(gotap()
        .arg(&path)
        .arg("-c")
        .arg(format!("{} {BATCHES}", private.path.display())));
    assert_eq!(
        out.status.code(),
        Some(0),
        "gotap failed:\n{}",
        text(&out.stderr)
    );
    let split = out
        .stdout
        .iter()
        .position(|&b| b == 0x1d)
        .expect("the end probes' separator");
    let kernel = by_case(&out.stdout[..split]);
    let user = by_case(&out.stdout[split + 1..]);
    let mut divergences = Vec::new();
    for (id, c) in cases.iter().enumerate() {
        let (k, u) = (kernel.get(&id), user.get(&id));
        if k != u || k.is_none() {
            divergences.push(format!(
                "case {id} ({}): {}\n  kernel: {:?}\n  user:   {:?}",
                c.family,
                stmts(c, id, 'u'),
                k.map(|b| String::from_utf8_lossy(b).into_owned()),
                u.map(|b| String::from_utf8_lossy(b).into_owned()),
            ));
        }
    }
    eprintln!(
        "{} cases, {} divergences; families: {}",
        cases.len(),
        divergences.len(),
        families(&cases)
    );
    assert!(
        divergences.is_empty(),
        "{} of {} cases print differently in the kernel and in user space:\n{}",
        divergences.len(),
        cases.len(),
        divergences.join("\n")
    );
}

fn families(cases: &[Case]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for c in cases {
        match counts.iter_mut().find(|(f, _)| *f == c.family) {
            Some((_, n)) => *n += 1,
            None => counts.push((c.family, 1)),
        }
    }
    counts
        .iter()
        .map(|(f, n)| format!("{f} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Errors that stop a probe: the kernel's `ERROR:` line and the end probe's say the
/// same thing near the same token (only the probe point and the call site differ).
#[test]
fn errors_stop_both_back_ends_with_the_same_words() {
    let bin = testprogs::build("script", &testprogs::newest(), Variant::Default);
    let private = Private::copy(&bin, "differential-errors");
    let cases = [
        ("division by 0", "{L}z = 0; return 10 / {L}z"),
        ("division by 0", "{L}z = 0; return 10 % {L}z"),
        (
            "division by 0",
            "{L}z = 0; {L}x = 5; {L}x /= {L}z; return {L}x",
        ),
        (
            "division by 0",
            "{L}z = 0; {G}a[1] = 4; {G}a[1] %= {L}z; return {G}a[1]",
        ),
        ("empty aggregate", "return @sum({G}s)"),
        ("empty aggregate", "return @min({G}s)"),
        ("empty aggregate", "return @max({G}s)"),
        ("empty aggregate", "return @avg({G}s)"),
        ("empty aggregate", "{G}s[1] <<< 2; return @avg({G}s[2])"),
    ];
    for (what, body) in cases {
        let f = body.replace("{L}", "l_").replace("{G}", "g_");
        let src = format!(
            "global g_a, g_s\nprobe process.function(\"main.add\") {{ if ($a > 100) {{ g_s <<< 1; g_s[1] <<< 1 }} }}\nfunction f() {{ {f} }}\nprobe process.function(\"main.add\") {{ printf(\"%d\\n\", f()) }}\nprobe end {{ printf(\"%d\\n\", f()) }}\n"
        )
        .replace("g_s <<< 1; g_s[1] <<< 1", if body.contains("s[") { "g_s[1] <<< 1" } else { "g_s <<< 1" });
        let path = private.path.with_file_name("error.stp");
        std::fs::write(&path, &src).expect("write the script");
        let out = run(gotap()
            .arg(&path)
            .arg("-c")
            .arg(private.path.display().to_string()));
        let stderr = text(&out.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("ERROR: "))
            .collect();
        assert_eq!(out.status.code(), Some(1), "{body}\n{src}\n{stderr}");
        assert_eq!(errors.len(), 2, "{body}: {stderr}");
        let head = |e: &str| e.split(" (called from").next().unwrap_or(e).to_string();
        assert_eq!(head(errors[0]), head(errors[1]), "{body}");
        assert!(errors[0].starts_with(what), "{body}: {}", errors[0]);
        assert!(
            errors[0].ends_with("in probe process.function(\"main.add\")"),
            "{}",
            errors[0]
        );
        assert!(errors[1].ends_with("in probe end"), "{}", errors[1]);
    }
}

/// Floats (read from a Go program, issue 13) print the same in a kernel probe and in
/// an end probe: every float directive with every flag, width and precision, of a
/// `float64`, a negative one, a huge one, an infinity and a `float32`, kept in
/// globals by the kernel probe and printed by both.
#[test]
fn floats_print_the_same_bytes_in_both_back_ends() {
    let bin = testprogs::build("values", &testprogs::newest(), Variant::Default);
    let private = Private::copy(&bin, "differential-floats");
    let fields = ["F64", "Neg", "Big", "Inf"];
    let mut formats = Vec::new();
    for conv in ["f", "e", "g", "E", "G", "F"] {
        for flag in ["", "-", "+", " ", "0", "#"] {
            for width in ["", "14"] {
                for precision in ["", ".0", ".3"] {
                    formats.push(format!("%{flag}{width}{precision}{conv}"));
                }
            }
        }
    }
    let mut print = String::new();
    for f in fields
        .iter()
        .map(|f| format!("g_{f}"))
        .chain(["g_F32".into()])
    {
        for chunk in formats.chunks(12) {
            let args = vec![f.as_str(); chunk.len()].join(", ");
            writeln!(print, "  printf(\"[{}]\\n\", {args})", chunk.join("|")).unwrap();
        }
    }
    writeln!(print, "  print(g_F64, g_F32)\n  println(\"\")").unwrap();
    let mut set = String::new();
    for f in fields.iter().chain(&["F32"]) {
        writeln!(set, "  g_{f} = $z->Num->{f}").unwrap();
    }
    let globals: Vec<String> = fields
        .iter()
        .chain(&["F32"])
        .map(|f| format!("g_{f}"))
        .collect();
    let src = format!(
        "global {}\nprobe process.function(\"main.showZoo\") {{\n{set}{print}  printf(\"\\x1d\")\n}}\nprobe end {{\n{print}}}\n",
        globals.join(", ")
    );
    let path = private.path.with_file_name("floats.stp");
    std::fs::write(&path, &src).expect("write the script");
    let out = run(gotap()
        .arg(&path)
        .arg("-c")
        .arg(private.path.display().to_string()));
    assert_eq!(out.status.code(), Some(0), "{src}\n{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (kernel, user) = stdout.split_once('\x1d').expect("the separator");
    let pick = |part: &str| -> Vec<String> {
        part.lines()
            .filter(|l| l.starts_with('[') || l.starts_with(|c: char| c.is_ascii_digit()))
            .map(String::from)
            .collect()
    };
    let (k, u) = (pick(kernel), pick(user));
    assert!(k.len() > 50, "{stdout}");
    assert_eq!(k, u, "kernel and user space print floats differently");
    // And as C prints them, for a few: %f %.0f %.3f %14f of 3.14159, and infinity.
    assert!(
        k[0].starts_with("[3.141590|3|3.142|      3.141590|"),
        "{}",
        k[0]
    );
    assert!(stdout.contains("[inf|inf|inf|           inf|"), "{stdout}");
}

/// A call of built-in `b` with arguments of its first signature (or `sig`), as script
/// text. Addresses are the probed thread's stack pointer, readable target memory.
fn call_text(b: &lang::builtins::Builtin, sig: &[lang::Type]) -> String {
    use lang::BuiltinId as B;
    use lang::builtins::Params;
    let args: Vec<String> = match b.params {
        Params::Format => vec!["\"%d\"".into(), "1".into()],
        Params::Printable { .. } => vec!["1".into()],
        // A script string for `len`; a Go slice at the probed thread's stack
        // pointer for `cap`.
        Params::Length { strings: true } => vec!["\"abc\"".into()],
        Params::Length { strings: false } => vec!["@cast(register(\"rsp\"), \"[]int\")".into()],
        Params::Fixed(_) => sig
            .iter()
            .enumerate()
            .map(|(i, t)| match (b.id, i, t) {
                (B::Register, _, _) => "\"rsp\"".into(),
                // A stack the kernel probe stored (see `exercise`).
                (_, _, lang::Type::Stack) => "g_stack".into(),
                (B::UserString | B::UserStringN | B::UserLong | B::UserInt, 0, _)
                | (B::UserShort | B::UserChar, 0, _) => "register(\"rsp\")".into(),
                (_, _, lang::Type::String) => "\"abc\"".into(),
                _ => "2".into(),
            })
            .collect(),
    };
    format!("{}({})", b.name, args.join(", "))
}

/// Statements that call `b` (every signature) and print a line naming it.
fn exercise(b: &lang::builtins::Builtin) -> String {
    use lang::builtins::Params;
    let sigs: Vec<&[lang::Type]> = match b.params {
        Params::Fixed(sigs) => sigs.to_vec(),
        _ => vec![&[]],
    };
    let mut s = String::new();
    for sig in sigs {
        let call = call_text(b, sig);
        match b.ret {
            Some(lang::Type::String) => writeln!(
                s,
                "  printf(\"\\x1e{} %d\\n\", strlen({call}) >= 0)",
                b.name
            )
            .unwrap(),
            // A stack is kept for the calls that take one.
            Some(lang::Type::Stack) => {
                writeln!(s, "  g_stack = {call}; printf(\"\\x1e{} ok\\n\")", b.name).unwrap()
            }
            Some(_) => writeln!(s, "  printf(\"\\x1e{} %d\\n\", ({call}) || 1)", b.name).unwrap(),
            None => writeln!(s, "  {call}; printf(\"\\x1e{} ok\\n\")", b.name).unwrap(),
        }
    }
    s
}

/// Every built-in of lang's table runs in each back end its row lists (a kernel probe
/// on main.add, an end probe), and is refused by the checker, at the call, in each it
/// does not.
#[test]
fn every_builtin_runs_where_its_row_says_and_is_refused_elsewhere() {
    use lang::backend::Backend;
    use lang::builtins::BUILTINS;
    let bin = testprogs::build("script", &testprogs::newest(), Variant::Default);
    let private = Private::copy(&bin, "differential-builtins");
    let target = private.path.display().to_string();
    let allowed = |b: Backend| BUILTINS.iter().filter(move |r| r.runs.allows(b));
    let refused = |b: Backend| BUILTINS.iter().filter(move |r| !r.runs.allows(b));
    // exit() last: it ends the session after its probe.
    let body = |b: Backend| {
        let mut rows: Vec<_> = allowed(b).collect();
        rows.sort_by_key(|r| r.id == lang::BuiltinId::Exit);
        rows.iter().map(|r| exercise(r)).collect::<String>()
    };
    let src = format!(
        "global g_stack\nprobe process.function(\"main.add\") {{ if ($a == 0) {{\n{}}} }}\nprobe end {{ printf(\"\\x1d\") }}\nprobe end {{\n{}}}\n",
        body(Backend::Kernel),
        body(Backend::User)
    );
    let path = private.path.with_file_name("builtins.stp");
    std::fs::write(&path, &src).expect("write the script");
    let out = run(gotap().arg(&path).arg("-c").arg(&target));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{src}\n{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    let split = out
        .stdout
        .iter()
        .position(|&b| b == 0x1d)
        .expect("separator");
    for (backend, part) in [
        (Backend::Kernel, &out.stdout[..split]),
        (Backend::User, &out.stdout[split + 1..]),
    ] {
        let part = String::from_utf8_lossy(part);
        for r in allowed(backend) {
            assert!(
                part.contains(&format!("\x1e{} ", r.name)),
                "{} printed nothing in {backend:?}:\n{part}",
                r.name
            );
        }
    }
    // Refused: one script per back end with every call it does not run, each on its
    // own line; the checker names each at its line and column.
    for (backend, probe) in [
        (Backend::Kernel, "process.function(\"main.add\")"),
        (Backend::User, "end"),
    ] {
        let rows: Vec<_> = refused(backend).collect();
        if rows.is_empty() {
            continue;
        }
        let mut src = format!("probe {probe} {{\n");
        for r in &rows {
            writeln!(src, "  x_{} = {}", r.name, call_text(r, first_sig(r))).unwrap();
        }
        src.push_str("}\n");
        let src = src.replace("  x_exit = exit()", "  exit()");
        let path = private.path.with_file_name("refused.stp");
        std::fs::write(&path, &src).expect("write the script");
        let out = run(gotap().arg(&path).arg("-c").arg(&target));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{src}\n{stderr}");
        let place = if backend == Backend::Kernel {
            "a process probe"
        } else {
            "an 'end' probe"
        };
        for (i, r) in rows.iter().enumerate() {
            let col = format!("  x_{} = ", r.name).len() + 1;
            let want = format!(
                "refused.stp:{}:{col}: error: '{}' cannot be used in {place}",
                i + 2,
                r.name
            );
            assert!(stderr.contains(&want), "no {want:?} in:\n{stderr}");
        }
    }
}

fn first_sig(b: &lang::builtins::Builtin) -> &'static [lang::Type] {
    match b.params {
        lang::builtins::Params::Fixed(sigs) => sigs[0],
        _ => &[],
    }
}
