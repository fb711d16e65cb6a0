//! `gotap stackgrow`: the seed article's investigation as one command. Every growth of
//! a goroutine stack (the tapset's `go.stack.grow`, one emulated probe at
//! `runtime.copystack`) is counted with its sizes and the function whose frame did not
//! fit; every Nth one is printed live with the goroutine's backtrace, as the seed's
//! script did, and its call path counted. With `--time` the copies are timed through
//! `go.stack.copy` (the return of `copystack`, a `RET` the kernel single-steps, which
//! costs several times the growth probe). At the end: growths per function and per
//! call path, the size transitions and (`--time`) a histogram of the time spent
//! copying.

use anyhow::Result;
use std::collections::HashMap;
use std::fmt::Write as _;

use runtime::events::{Printf, Record};
use runtime::globals::Globals;
use runtime::json::quoted;
use runtime::stats::Hist;

use super::{ToolArgs, global};
use crate::metrics::ToolExport;
use crate::pipeline::{Consumer, Cx, Ending, Reading};
use crate::symbols::Symbols;
use export::names;

pub fn run(a: &ToolArgs) -> Result<i32> {
    let script = script(a.every, a.time);
    let mut s = StackGrow {
        every: a.every,
        top: a.top,
        json: a.json,
        ..StackGrow::default()
    };
    let code = super::trace(a, "stackgrow", &script, &mut s)?;
    crate::session::write_flame_graph(
        &s.flame(),
        a.folded.as_deref(),
        a.svg.as_deref(),
        ("goroutine stack growths", "growths"),
    )?;
    Ok(code)
}

/// The tool's script: growths are counted in the kernel per (function, old size, new
/// size) and the copies' times go to a kernel histogram, so a growth costs one probe
/// and no record; only every `every`th growth sends a record and its backtrace. The
/// counts are a statistic (`<<<`), kept per CPU: two CPUs growing stacks in the same
/// function do not fight over one counter's cache line, as `++` on a shared element
/// would. With `every` 1 there is nothing to count between samples. The consumer
/// reads the statistics at the end. The function `__sg_copies` is never called: it
/// says that the copies are read as a log histogram, so the kernel keeps its buckets
/// (a statistic keeps the histogram it is read with).
pub fn script(every: u64, timed: bool) -> String {
    let mut s = String::from("global __sg_by[16384]");
    if every > 1 {
        s.push_str(", __sg_n");
    }
    if timed {
        s.push_str(", __sg_copy");
    }
    s.push_str("\nprobe go.stack.grow {\n    __sg_by[func_pc, old_size, new_size] <<< 1\n");
    let sample = "printf(\"grow %d %d %d %d\\n\", old_size, new_size, goid(), func_pc)\n";
    if every > 1 {
        s.push_str(&format!(
            "    if (__sg_n++ % {every} == {last}) {{\n        {sample}        print_ubacktrace()\n    }}\n",
            last = every - 1
        ));
    } else {
        s.push_str(&format!("    {sample}    print_ubacktrace()\n"));
    }
    s.push_str("}\n");
    if timed {
        s.push_str("probe go.stack.copy {\n    if (new_size > old_size)\n        __sg_copy <<< duration_ns\n}\n");
        s.push_str("function __sg_copies() { print(@hist_log(__sg_copy)) }\n");
    }
    s
}

/// The agent's script: the growths counted in the kernel and nothing sent, its
/// counts read by [`growths_by_function`]. Its map holds 4,096 (function, sizes)
/// triples, not the one-shot tool's 16,384: reading a hash map walks all its buckets,
/// full or not, and the agent reads every binary's at each collection (an idle
/// agent with 20 binaries spent half its time there).
pub const AGENT_SCRIPT: &str = "global __sg_by[4096]\nprobe go.stack.grow {\n    __sg_by[func_pc, old_size, new_size] <<< 1\n}\n";

/// The kernel's growths per function (one entry per (function, sizes): the caller
/// sums them), from the script's `__sg_by`; none if it cannot be read.
pub fn growths_by_function(
    specs: &[bpf::script::GlobalSpec],
    maps: &[sys::Map],
    symbols: &mut Symbols<'_, '_>,
) -> Vec<(String, u64)> {
    let Ok(by) = global(specs, "__sg_by") else {
        return Vec::new();
    };
    let counts = crate::maps::KernelGlobals {
        maps,
        stacks: &mut *symbols,
    }
    .stat_entries(by)
    .unwrap_or_default();
    counts
        .iter()
        .map(|(keys, stat)| {
            let pc = keys.first().map_or(0, |k| k.as_long()) as u64;
            (
                symbols.function(pc, false),
                u64::try_from(stat.count).unwrap_or(0),
            )
        })
        .collect()
}

#[derive(Default)]
struct StackGrow {
    every: u64,
    top: usize,
    /// `--json`: no live lines and tables, one JSON object at the end.
    json: bool,
    growths: u64,
    by_func: HashMap<String, u64>,
    /// Call paths, outermost function first, counted `every` per sampled growth.
    by_path: HashMap<Vec<String>, u64>,
    sizes: HashMap<(i64, i64), u64>,
    /// Copies timed: count, average and longest (ns), and the histogram's text.
    copies: Option<(i64, i64, i64)>,
    hist: Vec<u8>,
    /// Sampled growths waiting for their backtrace: (func pc, text).
    pending: Vec<(u64, String)>,
}

impl StackGrow {
    /// A sampled growth: `grow old new goid func_pc`, its backtrace to come.
    fn grow(&mut self, p: &Printf<'_>) {
        let (old, new, goid, func_pc) = (p.long(0), p.long(1), p.long(2), p.long(3) as u64);
        self.pending.push((
            func_pc,
            format!("runtime: newstack: {old} -> {new} goid={goid}\n"),
        ));
        if self.pending.len() > 1024 {
            self.pending.remove(0);
        }
    }

    /// The backtrace of a sampled growth. The walk starts on the system stack
    /// (copystack, newstack, morestack) and goes on in the goroutine from where it
    /// stopped, its growth's `func_pc`; records of two CPUs may interleave: that pc
    /// also pairs the two.
    fn backtrace(&mut self, frames: &[u64], sym: &mut Symbols, out: &mut Vec<u8>) {
        let Some((i, at)) = self
            .pending
            .iter()
            .enumerate()
            .find_map(|(i, p)| frames.iter().position(|f| *f == p.0).map(|at| (i, at)))
        else {
            return;
        };
        let (_, text) = self.pending.remove(i);
        let user = &frames[at..];
        if !self.json {
            out.extend_from_slice(text.as_bytes());
            for pc in user {
                sym.write(out, *pc, false);
            }
        }
        let mut path: Vec<String> = Vec::with_capacity(user.len());
        for pc in user {
            path.extend(sym.functions(*pc, false));
        }
        path.reverse();
        *self.by_path.entry(path).or_default() += self.every;
    }

    /// The kernel's counts: growths per (function, old size, new size), and the
    /// copies' times.
    fn read_counts(&mut self, end: &mut Ending<'_, '_, '_>) -> Result<()> {
        let specs = &end.spec.globals;
        let by = global(specs, "__sg_by")?;
        let counts = end.storage().stat_entries(by)?;
        for (keys, stat) in counts {
            let [pc, old, new] = [0, 1, 2].map(|i| keys.get(i).map_or(0, |k| k.as_long()));
            let n = u64::try_from(stat.count).unwrap_or(0);
            self.growths += n;
            let f = end.symbols.function(pc as u64, false);
            *self.by_func.entry(f).or_default() += n;
            *self.sizes.entry((old, new)).or_default() += n;
        }
        if let Ok(copy) = global(specs, "__sg_copy") {
            let stat = end.storage().stat(copy, &[])?;
            if stat.count > 0 {
                self.copies = Some((stat.count, stat.avg()?, stat.max()?));
                runtime::stats::write_histogram(&mut self.hist, &Hist::Log, &stat)?;
            }
        }
        Ok(())
    }
}

impl Consumer for StackGrow {
    fn record(&mut self, rec: &Record<'_>, cx: &mut Cx<'_, '_, '_>) -> Result<bool> {
        match rec {
            Record::Printf(p) if p.tag() == b"grow" => self.grow(p),
            Record::Backtrace(b) => {
                let frames = cx.symbols.logical(b);
                self.backtrace(&frames, cx.symbols, cx.out);
            }
            _ => {}
        }
        Ok(false)
    }

    /// `go.stack.growths{function}` from the kernel's counts, read while the trace
    /// runs (the table reads them only at the end), and with `--time`
    /// `go.stack.copy.duration` from the kernel's histogram of the copies.
    fn export(&mut self, to: &ToolExport, from: &mut Reading<'_, '_, '_>) {
        let specs = &from.spec.globals;
        let named = growths_by_function(specs, from.maps, from.symbols);
        to.by_function(
            &names::STACK_GROWTHS,
            named.iter().map(|(f, n)| (f.as_str(), *n)),
        );
        if let Ok(copy) = global(specs, "__sg_copy")
            && let Ok(stat) = from.storage().stat(copy, &[])
        {
            let h = export::stats::histogram(&stat, &Hist::Log, 1e-9);
            to.set(
                &names::STACK_COPY,
                [(Vec::new(), export::Value::Histogram(h))],
            );
        }
    }

    fn finish(&mut self, end: &mut Ending<'_, '_, '_>) -> Result<()> {
        self.read_counts(end)?;
        let out = &mut *end.out;
        if self.json {
            out.extend_from_slice(self.to_json(self.top).as_bytes());
            return Ok(());
        }
        let mut s = String::new();
        let _ = writeln!(s, "\n{} stack growths", self.growths);
        let _ = writeln!(s, "\n{:>10}  FUNCTION (whose frame did not fit)", "GROWTHS");
        for (name, n) in top(&self.by_func, self.top) {
            let _ = writeln!(s, "{n:>10}  {name}");
        }
        if !self.by_path.is_empty() {
            let sampled = if self.every > 1 {
                format!(", sampled every {}", self.every)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "\n{:>10}  CALL PATH (innermost first{sampled})",
                "GROWTHS"
            );
            let mut collapsed: HashMap<String, u64> = HashMap::new();
            for (path, n) in &self.by_path {
                *collapsed.entry(collapse(path)).or_default() += n;
            }
            for (path, n) in top(&collapsed, self.top) {
                let _ = writeln!(s, "{n:>10}  {path}");
            }
        }
        let _ = writeln!(s, "\n{:>10}  SIZE TRANSITION (bytes)", "GROWTHS");
        let mut sizes: Vec<_> = self.sizes.iter().collect();
        sizes.sort();
        for ((old, new), n) in sizes {
            let _ = writeln!(s, "{n:>10}  {old} -> {new}");
        }
        if let Some((count, avg, max)) = self.copies {
            let _ = writeln!(
                s,
                "\ntime spent copying a growing stack (ns): {count} copies, avg {avg}, max {max}"
            );
        }
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(&self.hist);
        Ok(())
    }
}

/// A call path innermost first, a recursion's repeated frames shown once with their
/// count: `main.deep (x33) <- main.main.func1`.
fn collapse(path: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut inner = path
        .iter()
        .rev()
        .filter(|f| *f != "runtime.goexit")
        .peekable();
    while let Some(f) = inner.next() {
        let mut n = 1;
        while inner.peek() == Some(&f) {
            inner.next();
            n += 1;
        }
        parts.push(if n > 1 {
            format!("{f} (x{n})")
        } else {
            f.clone()
        });
    }
    parts.join(" <- ")
}

impl StackGrow {
    /// The call paths as folded stacks (`outer;…;inner count`), for flame graphs.
    fn flame(&self) -> runtime::flame::Folded {
        let mut f = runtime::flame::Folded::default();
        for (p, n) in &self.by_path {
            f.add(p.join(";"), *n);
        }
        f
    }

    fn to_json(&self, k: usize) -> String {
        let funcs: Vec<String> = top(&self.by_func, k)
            .iter()
            .map(|(f, n)| format!("{{\"function\":{},\"growths\":{n}}}", quoted(f)))
            .collect();
        let paths: Vec<String> = top(&self.by_path, k)
            .iter()
            .map(|(p, n)| {
                let fs: Vec<String> = p.iter().map(|f| quoted(f)).collect();
                format!("{{\"path\":[{}],\"growths\":{n}}}", fs.join(","))
            })
            .collect();
        let mut sizes: Vec<_> = self.sizes.iter().collect();
        sizes.sort();
        let sizes: Vec<String> = sizes
            .iter()
            .map(|((o, n), c)| format!("{{\"old\":{o},\"new\":{n},\"growths\":{c}}}"))
            .collect();
        let (count, avg, max) = self.copies.unwrap_or((0, 0, 0));
        format!(
            "{{\"growths\":{},\"functions\":[{}],\"paths\":[{}],\"sizes\":[{}],\"copies_timed\":{count},\"copy_ns_avg\":{avg},\"copy_ns_max\":{max}}}\n",
            self.growths,
            funcs.join(","),
            paths.join(","),
            sizes.join(","),
        )
    }
}

/// The `k` largest counts, largest first, ties by key.
fn top<K: Ord + Clone>(m: &HashMap<K, u64>, k: usize) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = m.iter().map(|(a, b)| (a.clone(), *b)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(k);
    v
}
