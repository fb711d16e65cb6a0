//! `gotap stackgrow`: the seed article's investigation as one command. Every growth of
//! a goroutine stack (the tapset's `go.stack.grow`, one emulated probe at
//! `runtime.copystack`) is counted with its sizes and the function whose frame did not
//! fit; every Nth one is printed live with the goroutine's backtrace, as the seed's
//! script did, and its call path counted. The copies are timed through
//! `go.stack.copy` (the return of `copystack`) unless `--no-time`. At the end: growths
//! per function and per call path, the size transitions and a histogram of the time
//! spent copying.

use anyhow::{Context, Result, bail};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::{Consumer, Symbols, ToolArgs, histogram, json_str, num};

pub fn run(a: &ToolArgs) -> Result<i32> {
    let script = script(a.every, !a.no_time);
    let mut s = StackGrow {
        every: a.every,
        top: a.top,
        quiet: a.json,
        ..StackGrow::default()
    };
    let code = super::trace(a, "stackgrow", &script, &mut s)?;
    let mut out = Vec::new();
    if let Some(p) = &a.folded {
        std::fs::write(p, s.folded()).with_context(|| format!("--folded {}", p.display()))?;
    }
    if let Some(p) = &a.svg {
        write_svg(p, &s.folded())?;
    }
    if a.json {
        out.extend_from_slice(s.json(a.top).as_bytes());
    }
    use std::io::Write;
    std::io::stdout().write_all(&out)?;
    Ok(code)
}

/// The tool's script: the tapset's probes, one line per event.
pub fn script(every: u64, timed: bool) -> String {
    let mut s = format!(
        "global __sg_n\n\
         probe go.stack.grow {{\n\
         \x20   __sg_n++\n\
         \x20   bt = __sg_n % {every} == 0\n\
         \x20   printf(\"grow %d %d %d %d %d %d\\n\", old_size, new_size, goid, func_pc, caller_pc, bt)\n\
         \x20   if (bt)\n\
         \x20       print_ubacktrace_fileline(caller_pc, caller_sp, 0)\n\
         }}\n"
    );
    if timed {
        s.push_str("probe go.stack.copy {\n    if (new_size > old_size)\n        printf(\"copy %d %d\\n\", goid, duration_ns)\n}\n");
    }
    s
}

#[derive(Default)]
struct StackGrow {
    every: u64,
    top: usize,
    quiet: bool,
    growths: u64,
    goroutines: HashSet<i64>,
    by_func: HashMap<String, u64>,
    /// Call paths, outermost function first, counted `every` per sampled growth.
    by_path: HashMap<Vec<String>, u64>,
    sizes: HashMap<(i64, i64), u64>,
    copy_ns: Vec<i64>,
    /// Sampled growths waiting for their backtrace: (caller pc, func pc, text).
    pending: Vec<(u64, u64, String)>,
}

impl Consumer for StackGrow {
    fn line(&mut self, f: &[&str], sym: &mut Symbols, _out: &mut Vec<u8>) {
        match f.first() {
            Some(&"grow") => {
                let (old, new, goid) = (num(f, 1), num(f, 2), num(f, 3));
                let (func_pc, caller_pc) = (num(f, 4) as u64, num(f, 5) as u64);
                self.growths += 1;
                self.goroutines.insert(goid);
                *self
                    .by_func
                    .entry(sym.function(func_pc, false))
                    .or_default() += 1;
                *self.sizes.entry((old, new)).or_default() += 1;
                if num(f, 6) != 0 {
                    self.pending.push((
                        caller_pc,
                        func_pc,
                        format!("runtime: newstack: {old} -> {new} goid={goid}\n"),
                    ));
                    if self.pending.len() > 1024 {
                        self.pending.remove(0);
                    }
                }
            }
            Some(&"copy") => self.copy_ns.push(num(f, 2)),
            _ => {}
        }
    }

    fn backtrace(&mut self, frames: &[u64], sym: &mut Symbols, out: &mut Vec<u8>) {
        // Records of two CPUs may interleave: the backtrace's first frame is the
        // caller pc its growth's line carried.
        let first = frames.first().copied().unwrap_or(0);
        let Some(i) = self.pending.iter().position(|p| p.0 == first) else {
            return;
        };
        let (_, func_pc, text) = self.pending.remove(i);
        if !self.quiet {
            out.extend_from_slice(text.as_bytes());
            sym.write(out, func_pc, false);
            for pc in frames {
                sym.write(out, *pc, false);
            }
        }
        let mut path: Vec<String> = Vec::with_capacity(frames.len() + 1);
        for pc in std::iter::once(&func_pc).chain(frames) {
            path.extend(sym.functions(*pc, false));
        }
        path.reverse();
        *self.by_path.entry(path).or_default() += self.every;
    }

    fn finish(&mut self, _sym: &mut Symbols, out: &mut Vec<u8>) -> Result<()> {
        if self.quiet {
            return Ok(());
        }
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{} stack growths in {} goroutines",
            self.growths,
            self.goroutines.len()
        );
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
            for (path, n) in top(&self.by_path, self.top) {
                let inner: Vec<&str> = path
                    .iter()
                    .rev()
                    .map(String::as_str)
                    .filter(|f| *f != "runtime.goexit")
                    .collect();
                let _ = writeln!(s, "{n:>10}  {}", inner.join(" <- "));
            }
        }
        let _ = writeln!(s, "\n{:>10}  SIZE TRANSITION (bytes)", "GROWTHS");
        let mut sizes: Vec<_> = self.sizes.iter().collect();
        sizes.sort();
        for ((old, new), n) in sizes {
            let _ = writeln!(s, "{n:>10}  {old} -> {new}");
        }
        out.extend_from_slice(s.as_bytes());
        if !self.copy_ns.is_empty() {
            out.extend_from_slice(b"\ntime spent copying a growing stack (ns):\n");
            histogram(&self.copy_ns, out);
        }
        Ok(())
    }
}

impl StackGrow {
    /// The call paths as folded stacks (`outer;…;inner count`), for flame graphs.
    fn folded(&self) -> String {
        let mut rows: Vec<(String, u64)> = self
            .by_path
            .iter()
            .map(|(p, n)| (p.join(";"), *n))
            .collect();
        rows.sort();
        rows.iter().map(|(p, n)| format!("{p} {n}\n")).collect()
    }

    fn json(&self, k: usize) -> String {
        let funcs: Vec<String> = top(&self.by_func, k)
            .iter()
            .map(|(f, n)| format!("{{\"function\":{},\"growths\":{n}}}", json_str(f)))
            .collect();
        let paths: Vec<String> = top(&self.by_path, k)
            .iter()
            .map(|(p, n)| {
                let fs: Vec<String> = p.iter().map(|f| json_str(f)).collect();
                format!("{{\"path\":[{}],\"growths\":{n}}}", fs.join(","))
            })
            .collect();
        let mut sizes: Vec<_> = self.sizes.iter().collect();
        sizes.sort();
        let sizes: Vec<String> = sizes
            .iter()
            .map(|((o, n), c)| format!("{{\"old\":{o},\"new\":{n},\"growths\":{c}}}"))
            .collect();
        let total: i64 = self.copy_ns.iter().sum();
        format!(
            "{{\"growths\":{},\"goroutines\":{},\"functions\":[{}],\"paths\":[{}],\"sizes\":[{}],\"copies_timed\":{},\"copy_ns_total\":{total}}}\n",
            self.growths,
            self.goroutines.len(),
            funcs.join(","),
            paths.join(","),
            sizes.join(","),
            self.copy_ns.len()
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

fn write_svg(path: &std::path::Path, _folded: &str) -> Result<()> {
    bail!(
        "--svg {}: flame graphs are not built in yet; use --folded and a flame graph tool",
        path.display()
    )
}
