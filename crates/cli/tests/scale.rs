//! Many probe statements on one binary: one multi-uprobe link, whatever the script
//! looks like, so that attaching and detaching do not grow with the number of
//! statements (each link costs an RCU grace period to release: 1,000 statements used
//! to take 46 s to end, unkillable). Counts are checked against the program's own
//! (`tests/testprogs/calls.go`). Real gotap, real kernel. Needs root.

mod common;
mod live;

use common::*;
use live::*;
use std::path::Path;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

fn calls(tag: &str) -> Private {
    let built = testprogs::build("calls", &testprogs::newest(), Variant::Default);
    Private::copy(&built, tag)
}

/// What a `-v` run said about its probes: (probes, links).
fn attached(line: &str) -> (usize, usize) {
    // "gotap: N probes attached through L links in T ms"
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = |w: &str| {
        words
            .iter()
            .position(|x| *x == w)
            .and_then(|i| words.get(i.checked_sub(1)?))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count before {w:?} in {line:?}"))
    };
    (at("probes"), at("links"))
}

struct Traced {
    probes: usize,
    links: usize,
    /// From SIGINT to gotap's end.
    to_exit: Duration,
    /// From gotap's start to its end.
    total: Duration,
    stdout: Vec<String>,
}

/// Runs `script` (written beside `bin`) on `-c 'BIN 10'`, has the program call
/// `main.deep` 10 times, then ends gotap with SIGINT.
fn trace(script: &str, bin: &Path) -> Traced {
    let file = bin.with_file_name("script.stp");
    std::fs::write(&file, script).expect("write the script");
    let started = Instant::now();
    let mut g = Live::start(
        gotap()
            .arg("-v")
            .arg(&file)
            .arg("-c")
            .arg(format!("{} 10", bin.display())),
    );
    let (probes, links) = attached(&g.wait_stderr("probes attached", LONG));
    g.send("go");
    g.wait_stdout("calls 10", LONG);
    let (to_exit, status) = g.time_to_exit("INT", LONG);
    let total = started.elapsed();
    let t = g.transcript();
    assert_eq!(status.code(), Some(0), "{t}");
    Traced {
        probes,
        links,
        to_exit,
        total,
        stdout: g.stdout.clone(),
    }
}

fn copies(bin: &Path, n: usize, body: &str) -> String {
    let mut s = String::from("global c\n");
    for _ in 0..n {
        s.push_str(&format!(
            "probe process(\"{}\").function(\"main.deep\") {{ {body} }}\n",
            bin.display()
        ));
    }
    s.push_str("probe end { printf(\"c=%d\\n\", c) }\n");
    s
}

#[test]
fn one_thousand_and_ten_thousand_statements_on_one_function_use_one_link_and_end_within_1s_of_sigint()
 {
    let bin = calls("ten-thousand");
    let mut seen = Vec::new();
    for n in [1, 1000, 10_000] {
        let r = trace(&copies(&bin.path, n, "c++"), &bin.path);
        let want = format!("c={}", 10 * n);
        assert!(r.stdout.contains(&want), "{n}: {:?}", r.stdout);
        assert_eq!((r.probes, r.links), (n, 1), "{n} statements");
        assert!(
            r.to_exit < Duration::from_secs(1),
            "{n} statements: {:?} from SIGINT to the end",
            r.to_exit
        );
        // The whole run (parse, check, compile, load, attach, trace, detach) in under
        // 2 s; in a debug build the front end alone takes about that long.
        if !cfg!(debug_assertions) {
            assert!(r.total < Duration::from_secs(2), "{n}: {:?}", r.total);
        }
        seen.push((n, r.to_exit, r.total));
    }
    eprintln!("(statements, SIGINT to end, total): {seen:?}");
}

#[test]
fn different_bodies_share_one_link_through_the_dispatcher_and_each_counts_its_own() {
    let bin = calls("dispatch");
    // 300 different programs (each its own key), and sites that need their own
    // program (`pp()` reads the probe point), on one binary.
    let mut s = String::from("global a, p\n");
    for i in 0..300 {
        s.push_str(&format!(
            "probe process(\"{}\").function(\"main.deep\") {{ a[{i}] += {i} + 1 }}\n",
            bin.path.display()
        ));
    }
    s.push_str(&format!(
        "probe process(\"{}\").function(\"main.deep\") {{ p[pp()]++ }}\n",
        bin.path.display()
    ));
    s.push_str("probe end { foreach (k in a) printf(\"a %d %d\\n\", k, a[k]); foreach (q in p) printf(\"p %s %d\\n\", q, p[q]) }\n");
    let r = trace(&s, &bin.path);
    assert_eq!((r.probes, r.links), (301, 1));
    for i in 0..300 {
        let want = format!("a {i} {}", 10 * (i + 1));
        assert!(r.stdout.contains(&want), "{want}: {:?}", r.stdout);
    }
    assert!(
        r.stdout
            .iter()
            .any(|l| l.starts_with("p process(") && l.contains("main.deep") && l.ends_with(" 10")),
        "{:?}",
        r.stdout
    );
}

#[test]
fn identical_programs_are_loaded_once() {
    let bin = calls("once");
    let file = bin.path.with_file_name("script.stp");
    std::fs::write(&file, copies(&bin.path, 2000, "c++")).expect("write the script");
    let mut g = Live::start(
        gotap()
            .arg(&file)
            .arg("-c")
            .arg(format!("{} 10", bin.path.display())),
    );
    g.wait_stdout("pid ", LONG);
    // Attached: the program runs; what gotap holds now is what it loaded.
    let (progs, links) = bpf_ids_of(g.pid());
    g.signal("INT");
    g.wait_exit(LONG);
    assert_eq!((progs.len(), links.len()), (1, 1), "{}", g.transcript());
}
