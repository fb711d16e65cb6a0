//! Runs the script tests of `tests/scripts/*.stp` (see its README): each script is run
//! by the real `gotap` against a real Go program through the real kernel, and its
//! output is checked against the file's directives. Needs root.

mod common;

use common::*;
use regex::Regex;
use std::path::{Path, PathBuf};

#[derive(Default, Debug)]
struct Directives {
    prog: Option<String>,
    args: Vec<String>,
    all_go: bool,
    variants: Vec<Variant>,
    gotap: Vec<String>,
    /// Regexes that lines of stdout must match, in order.
    stdout: Vec<String>,
    not: Vec<String>,
    stderr: Vec<String>,
    exit: i32,
}

fn directives(path: &Path) -> Directives {
    let text = std::fs::read_to_string(path).expect("read script test");
    let mut d = Directives {
        prog: Some("counts".into()),
        variants: vec![Variant::Default],
        ..Directives::default()
    };
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let Some((key, value)) = rest.split_once(':') else {
            continue;
        };
        let value = value.strip_prefix(' ').unwrap_or(value);
        match key {
            "prog" => d.prog = (value != "none").then(|| value.to_string()),
            "args" => d.args = value.split_whitespace().map(String::from).collect(),
            "go" => d.all_go = value.trim() == "all",
            "variants" => {
                d.variants = value
                    .split_whitespace()
                    .map(|v| match v {
                        "default" => Variant::Default,
                        "stripped" => Variant::Stripped,
                        "pie" => Variant::Pie,
                        "noopt" => Variant::NoOpt,
                        other => panic!("{}: unknown variant {other}", path.display()),
                    })
                    .collect()
            }
            "gotap" => d.gotap = value.split_whitespace().map(String::from).collect(),
            "expect" | "match" => d.stdout.push(value.to_string()),
            "not" => d.not.push(value.to_string()),
            "stderr" => d.stderr.push(value.to_string()),
            "exit" => d.exit = value.trim().parse().expect("exit status"),
            _ => {}
        }
    }
    d
}

fn whole(re: &str) -> Regex {
    let re = re.strip_prefix('^').unwrap_or(re);
    let re = re.strip_suffix('$').unwrap_or(re);
    Regex::new(&format!("^(?:{re})$")).unwrap_or_else(|e| panic!("bad regex {re:?}: {e}"))
}

/// Checks one run; returns what went wrong, if anything.
fn check(d: &Directives, bin: Option<&Path>, out: &std::process::Output) -> Result<(), String> {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    let bin_text = bin.map(|b| b.display().to_string()).unwrap_or_default();
    if out.status.code() != Some(d.exit) {
        return Err(format!(
            "exit status {:?}, expected {}",
            out.status.code(),
            d.exit
        ));
    }
    let mut at = 0;
    for want in &d.stdout {
        let re = whole(&want.replace("@BIN", &regex::escape(&bin_text)));
        match lines[at..].iter().position(|l| re.is_match(l)) {
            Some(i) => at += i + 1,
            None => return Err(format!("no line matching {want:?} after line {at}")),
        }
    }
    for n in &d.not {
        let re = whole(n);
        if let Some(l) = lines.iter().find(|l| re.is_match(l)) {
            return Err(format!("line {l:?} matches the forbidden {n:?}"));
        }
    }
    for s in &d.stderr {
        let re = whole(s);
        if !stderr.lines().any(|l| re.is_match(l)) {
            return Err(format!("no stderr line matching {s:?}"));
        }
    }
    Ok(())
}

#[test]
fn script_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/scripts")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "stp"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no script tests in {}", dir.display());
    let filter = std::env::var("GOTAP_SCRIPT_TEST").ok();
    let mut failures = Vec::new();
    let mut runs = 0;
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if filter.as_deref().is_some_and(|p| !name.contains(p)) {
            continue;
        }
        let d = directives(f);
        let toolchains = if d.all_go {
            testprogs::toolchains()
        } else {
            vec![testprogs::newest()]
        };
        for tc in &toolchains {
            for v in &d.variants {
                let bin = d.prog.as_ref().map(|p| testprogs::build(p, tc, *v));
                let mut cmd = gotap();
                cmd.args(&d.gotap).arg(f);
                if let Some(b) = &bin {
                    let mut c = b.display().to_string();
                    for a in &d.args {
                        c.push(' ');
                        c.push_str(a);
                    }
                    cmd.arg("-c").arg(c);
                }
                let out = run(&mut cmd);
                runs += 1;
                if let Err(why) = check(&d, bin.as_deref(), &out) {
                    failures.push(format!(
                        "{name} (go{} {v}): {why}\n--- stdout\n{}--- stderr\n{}",
                        tc.minor,
                        text(&out.stdout),
                        text(&out.stderr)
                    ));
                }
            }
        }
    }
    eprintln!("{runs} script runs, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {runs} script runs failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
