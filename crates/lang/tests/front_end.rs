//! Runs the front end over the directive files: every `tests/good/*.stp` must parse and
//! type-check against the mock target without errors and pretty-print to text that
//! parses back to the same tree; every `tests/bad/*.stp` must produce exactly the
//! diagnostics listed in its header (`# error: LINE:COL: message`).

mod common;

use std::path::{Path, PathBuf};

use lang::{Severity, print_script};

fn scripts(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "stp"))
        .collect();
    v.sort();
    v
}

/// Header directives: `# args: a b`, `# error: L:C: msg`, `# warning: L:C: msg`, and
/// after a diagnostic its `# help: text` if it has one.
struct Directives {
    args: Option<Vec<String>>,
    expected: Vec<String>,
}

fn directives(src: &str) -> Directives {
    let mut d = Directives {
        args: None,
        expected: Vec::new(),
    };
    for line in src.lines().take_while(|l| l.starts_with('#')) {
        let line = line.trim_start_matches('#').trim();
        if let Some(a) = line.strip_prefix("args:") {
            d.args = Some(a.split_whitespace().map(String::from).collect());
        } else if ["error:", "warning:", "help:"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            d.expected.push(line.to_string());
        }
    }
    d
}

/// Debug form of a script with spans blanked, for comparing trees across re-parses.
fn shape(s: &lang::ast::Script) -> String {
    let dbg = format!("{s:?}");
    let mut out = String::new();
    let mut rest = dbg.as_str();
    while let Some(i) = rest.find("Span(") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find(')').map_or(tail.len(), |e| e + 1);
        out.push_str("Span");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Each diagnostic as `error: L:C: message`, followed by `help: text` if it has help.
fn summary(sm: &lang::SourceMap, diags: &[lang::Diagnostic]) -> Vec<String> {
    let mut out = Vec::new();
    for d in diags {
        let (l, c) = sm.line_col(d.span);
        let sev = if d.severity == Severity::Error {
            "error"
        } else {
            "warning"
        };
        out.push(format!("{sev}: {l}:{c}: {}", d.message));
        if let Some(h) = &d.help {
            out.push(format!("help: {h}"));
        }
    }
    out
}

#[test]
fn good_scripts_check_and_round_trip() {
    let files = scripts("good");
    assert!(files.len() >= 10, "too few good scripts: {}", files.len());
    for path in files {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(&path).unwrap();
        let dir = directives(&src);
        let (sm, script, info, diags) = common::front_end(&name, &src, dir.args.clone());
        let got = summary(&sm, &diags);
        assert_eq!(got, dir.expected, "{name}:\n{}", sm.render_all(&diags));
        assert!(info.is_some(), "{name}: not checked");

        let printed = print_script(&script);
        let (again, d2) = lang::parse(lang::FileId(0), &printed, &lang::ParseOptions::default());
        assert!(
            d2.is_empty(),
            "{name}: printed form does not parse: {d2:?}\n{printed}"
        );
        assert_eq!(
            shape(&script),
            shape(&again),
            "{name}: round trip changed the tree\n{printed}"
        );
        assert_eq!(
            print_script(&again),
            printed,
            "{name}: printing is not stable"
        );
    }
}

#[test]
fn bad_scripts_report_exactly_their_diagnostics() {
    let files = scripts("bad");
    assert!(files.len() >= 30, "too few bad scripts: {}", files.len());
    let mut failures = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(&path).unwrap();
        let dir = directives(&src);
        assert!(
            !dir.expected.is_empty(),
            "{name}: no expected diagnostic in header"
        );
        let (sm, _, _, diags) = common::front_end(&name, &src, dir.args.clone());
        let got = summary(&sm, &diags);
        if got != dir.expected {
            failures.push(format!(
                "{name}\n  expected: {:#?}\n  got: {:#?}\n{}",
                dir.expected,
                got,
                sm.render_all(&diags)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tricky_expressions_round_trip() {
    let cases = [
        "x = c ? a : b = 1",
        "(c ? a : b) + 1",
        "x = - -y + - --y - ~!z",
        "x = -(0x8000000000000000)",
        "x = a - (b - c) - d",
        "x = (a = b) + 1",
        "x = \"a\" . (1 + 2) . \"\\001\\n\\\"\"",
        "x = [a, b] in arr && (k in arr2) == 0",
        "x = a < b == (c < d)",
        "s <<< (x = 1)",
        "x = &$p->f[1]->g + @cast(p, \"T\", \"m\")->a$",
        "x = $x$$ . $$parms$ . $$vars",
        "x = @hist_linear(s, -10, 10, 2) ? 1 : 2",
        "if (a) if (b) x = 1; else x = 2",
    ];
    for c in cases {
        let src = format!("probe begin {{ {c} }}");
        let (script, d) = lang::parse(lang::FileId(0), &src, &lang::ParseOptions::default());
        assert!(d.is_empty(), "{c}: {d:?}");
        let printed = print_script(&script);
        let (again, d2) = lang::parse(lang::FileId(0), &printed, &lang::ParseOptions::default());
        assert!(d2.is_empty(), "{c}: {d2:?}\n{printed}");
        assert_eq!(shape(&script), shape(&again), "{c}:\n{printed}");
    }
}

/// Hostile input must produce diagnostics, never a panic or a stack overflow: every
/// prefix of every script, and very deep nesting.
#[test]
fn truncated_and_deeply_nested_input_does_not_panic() {
    for dir in ["good", "bad"] {
        for path in scripts(dir) {
            let src = std::fs::read_to_string(&path).unwrap();
            for (i, _) in src.char_indices() {
                let _ = common::front_end("t.stp", &src[..i], None);
            }
        }
    }
    let deep = format!(
        "probe begin {{ x = {}1{} }}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let (_, _, _, d) = common::front_end("deep.stp", &deep, None);
    assert_eq!(d[0].message, "nesting deeper than 100 levels");
    let deep = format!("probe begin {{ {} }}", "{".repeat(5000));
    let (_, _, _, d) = common::front_end("deep.stp", &deep, None);
    assert_eq!(d[0].message, "nesting deeper than 100 levels");
    // Just under the limit: the checker and printer recurse as deep as the parser did.
    let ok = format!("probe begin {{ x = {}1 }}", "- ".repeat(95));
    let (_, _, info, d) = common::front_end("ok.stp", &ok, None);
    assert!(d.is_empty() && info.is_some(), "{d:?}");
    let (script, _) = lang::parse(lang::FileId(0), &ok, &lang::ParseOptions::default());
    assert!(print_script(&script).contains("- - -1"));
}
