//! Inlined call sites are probe points: on tests/testprogs/inlined.go, which counts
//! its own calls of an inlined getter and of `sync.(*Mutex).Lock` (inlined into a
//! method, and called out of line through an interface), `funccount` and
//! `.function` count exactly the calls the program counts, `.call` only the
//! out-of-line ones, `.inline` only the inlined ones, with DWARF and stripped, on
//! every toolchain.

mod common;

use common::*;

/// The program's own counts: (total, out of line) for `value` and `lock`.
fn own_counts(stdout: &str, what: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{what} total ")))
        .unwrap_or_else(|| panic!("no {what} line in:\n{stdout}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

/// A funccount row with its INLINED column: (count, inlined).
fn row(stdout: &str, func: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(func))
        .unwrap_or_else(|| panic!("no row for {func} in:\n{stdout}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

/// Runs `gotap ARGS -c 'PROG ROUNDS' MORE` and returns its stdout and stderr.
fn traced(args: &[&str], prog: &std::path::Path, rounds: u32, more: &[&str]) -> (String, String) {
    let out = run(gotap()
        .args(args)
        .arg("-c")
        .arg(format!("{} {rounds}", prog.display()))
        .args(more));
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "gotap {args:?}:\n{o}\n{e}");
    (o, e)
}

const VALUE: &str = "main.(*counter).Value";
const LOCK: &str = "sync.(*Mutex).Lock";

#[test]
fn funccount_counts_inlined_calls_and_says_how_many() {
    for tc in testprogs::toolchains() {
        for variant in [Variant::Default, Variant::Stripped] {
            let what = format!("go{} {variant}", tc.minor);
            let prog = Private::copy(&testprogs::build("inlined", &tc, variant), "fc-inl");
            let runs: Vec<(String, String)> = [2, 5]
                .iter()
                .map(|r| traced(&["funccount"], &prog.path, *r, &[VALUE, LOCK]))
                .collect();
            for (out, err) in &runs {
                assert!(err.contains("inlined call sites"), "{what}: {err}");
                // The getter is the program's alone: its counts are exact.
                let (total, outofline) = own_counts(out, "value");
                assert_eq!(
                    row(out, VALUE),
                    (total, total - outofline),
                    "{what}:\n{out}"
                );
                // Lock is the standard library's too (a godebug update may lock once
                // at start-up): none of the program's calls is missed.
                let (total, outofline) = own_counts(out, "lock");
                let (count, inlined) = row(out, LOCK);
                assert!(
                    count >= total && inlined >= total - outofline,
                    "{what}:\n{out}"
                );
            }
            // The start-up's locks are the same in both runs: what more rounds
            // added is exactly what the program counted.
            let (a, b) = (&runs[0].0, &runs[1].0);
            let (own_a, own_b) = (own_counts(a, "lock"), own_counts(b, "lock"));
            let (got_a, got_b) = (row(a, LOCK), row(b, LOCK));
            assert_eq!(got_b.0 - got_a.0, own_b.0 - own_a.0, "{what}: Lock calls");
            assert_eq!(
                got_b.1 - got_a.1,
                (own_b.0 - own_b.1) - (own_a.0 - own_a.1),
                "{what}: inlined Lock calls"
            );
        }
    }
}

#[test]
fn function_call_and_inline_probes_count_their_instances() {
    for tc in testprogs::toolchains() {
        for variant in [Variant::Default, Variant::Stripped] {
            let what = format!("go{} {variant}", tc.minor);
            let prog = Private::copy(&testprogs::build("inlined", &tc, variant), "pp-inl");
            for suffix in ["", ".call", ".inline"] {
                let script = format!(
                    "global n; probe process.function(\"{VALUE}\"){suffix} {{ n++ }} \
                     probe end {{ printf(\"probed %d\\n\", n) }}"
                );
                let (out, err) = traced(&["-e", &script], &prog.path, 3, &[]);
                let (total, outofline) = own_counts(&out, "value");
                let probed: u64 = out
                    .lines()
                    .find_map(|l| l.strip_prefix("probed ")?.parse().ok())
                    .unwrap_or_else(|| panic!("{what} {suffix}: no count:\n{out}\n{err}"));
                let expected = match suffix {
                    "" => total,
                    ".call" => outofline,
                    _ => total - outofline,
                };
                assert_eq!(probed, expected, "{what} .function{suffix}:\n{out}\n{err}");
                // `.call` leaves the three inlined calls out, and says so.
                assert_eq!(
                    err.contains("3 inlined calls of 'main.(*counter).Value' are not probed"),
                    suffix == ".call",
                    "{what} {suffix}: {err}"
                );
            }
        }
    }
}

#[test]
fn an_inlined_calls_arguments_are_read_through_its_location_lists() {
    for tc in testprogs::toolchains() {
        let what = format!("go{}", tc.minor);
        let prog = Private::copy(
            &testprogs::build("inlined", &tc, Variant::Default),
            "args-inl",
        );
        // Every inlined call's receiver points at a counter whose n is 3.
        let script = format!(
            "global n, sum; probe process.function(\"{VALUE}\").inline {{ n++; sum += $c->n }} \
             probe end {{ printf(\"calls %d sum %d\\n\", n, sum) }}"
        );
        let (out, err) = traced(&["-e", &script], &prog.path, 2, &[]);
        let (total, outofline) = own_counts(&out, "value");
        let n = total - outofline;
        assert!(
            out.contains(&format!("calls {n} sum {}", 3 * n)),
            "{what}:\n{out}\n{err}"
        );
        // Without DWARF, the checker says why there is no $c.
        let stripped = Private::copy(
            &testprogs::build("inlined", &tc, Variant::Stripped),
            "args-inl-s",
        );
        let out = run(gotap().arg("-e").arg(&script).arg("-c").arg(&stripped.path));
        assert_eq!(out.status.code(), Some(1), "{what} stripped");
        assert!(
            text(&out.stderr).contains("no DWARF"),
            "{what} stripped: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn listings_mark_inlined_calls() {
    let tc = testprogs::newest();
    let exe = testprogs::build("inlined", &tc, Variant::Default);
    let point = format!("process(\"{}\").function(\"{VALUE}\")", exe.display());
    // -L lists the out-of-line body and each inlined call, marked, with its variables.
    let out = run(gotap().args(["-L", &point]));
    let listed = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inline: Vec<&str> = listed.lines().filter(|l| l.contains(").inline")).collect();
    assert_eq!(inline.len(), 3, "{listed}");
    assert!(
        inline
            .iter()
            .all(|l| l.contains("inlined.go:") && l.contains("$c:*main.counter"))
    );
    assert_eq!(listed.lines().count(), 4, "{listed}");
    // -l of `.inline` lists the inlined calls alone, at their call sites.
    let out = run(gotap().args(["-l", &format!("{point}.inline")]));
    let listed = text(&out.stdout);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    for line in [45, 51, 99] {
        assert!(
            listed.contains(&format!("inlined.go:{line}\").inline")),
            "{listed}"
        );
    }
}
