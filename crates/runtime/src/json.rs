//! The output as newline-delimited JSON (`gotap -f json`), in the shapes of
//! bpftrace's `-f json`: one object a line, each with its `"type"`.
//!
//! - `{"type": "attached_probes", "count": N}` once the probes are placed;
//! - `{"type": "printf", "data": "…"}` for what a probe prints: a `printf` record of
//!   a kernel probe (or a backtrace) is one object, as bpftrace's; what a user-space
//!   probe prints is one object a line;
//! - at the end, every global of the script: `{"type": "map", "data": {"x": 5}}` for
//!   a scalar, `{"type": "map", "data": {"a": {"key": value, …}}}` for an array
//!   (several keys joined with `,`), `{"type": "stats", "data": {"s": {"count": …,
//!   "average": …, "total": …, "min": …, "max": …}}}` for a statistic (keyed ones as
//!   arrays are), and `{"type": "hist", "data": {"s": [{"min": …, "max": …,
//!   "count": …}, …]}}` for one with a histogram: its non-empty buckets, both bounds
//!   included;
//! - `{"type": "lost_events", "count": N}` always, and `{"type": "cut", "data":
//!   {"strings": N, "lines": N, "values": N}}` when printing cut anything (`values`:
//!   parts of pretty-printed Go values).
//!
//! Strings are the bytes as UTF-8 (invalid sequences replaced); a stack is its text;
//! an integer JSON cannot hold exactly (beyond ±2^53) is a string of its digits, as
//! bpftrace writes it.

use bpf::script::{FieldKind, GlobalShape, GlobalSpec, ValueKind};

use crate::format::Cuts;
use crate::globals::{Globals, GlobalsError, Value, hist};
use crate::stats::{Hist, Stat};

/// `{"type": "printf", "data": text}`.
pub fn printf(text: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type": "printf", "data": "#);
    string(text, out);
    out.extend_from_slice(b"}\n");
}

/// `{"type": kind, "count": n}` (`attached_probes`, `lost_events`).
pub fn count(kind: &str, n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{{\"type\": \"{kind}\", \"count\": {n}}}\n").as_bytes());
}

/// `{"type": "cut", …}`, if printing cut anything.
pub fn cuts(c: Cuts, out: &mut Vec<u8>) {
    if c.strings > 0 || c.lines > 0 || c.values > 0 {
        out.extend_from_slice(
            format!(
                "{{\"type\": \"cut\", \"data\": {{\"strings\": {}, \"lines\": {}, \"values\": {}}}}}\n",
                c.strings, c.lines, c.values
            )
            .as_bytes(),
        );
    }
}

/// Every global, an object each (two for a statistic with a histogram: its
/// summary, then its buckets).
pub fn globals(
    specs: &[GlobalSpec],
    globals: &mut dyn Globals,
    out: &mut Vec<u8>,
) -> Result<(), GlobalsError> {
    for g in specs {
        match &g.shape {
            GlobalShape::Scalar { value, .. } => {
                let v = globals.get(g, &[])?;
                named("map", &g.name, out, |out| {
                    element(*value, &v, globals, out);
                });
            }
            GlobalShape::Array { keys, value } => {
                let entries = globals.entries(g)?;
                named("map", &g.name, out, |out| {
                    object(&entries, keys, globals, out, |v, globals, out| {
                        element(*value, v, globals, out)
                    });
                });
            }
            GlobalShape::Stats { keys, hist: h } => {
                let h = hist(h).map_err(|source| GlobalsError::Stats {
                    global: g.name.clone(),
                    source,
                })?;
                let entries = globals.stat_entries(g)?;
                let keyed = !keys.is_empty();
                named("stats", &g.name, out, |out| match keyed {
                    true => object(&entries, keys, globals, out, |s, _, out| summary(s, out)),
                    false => entries.iter().for_each(|(_, s)| summary(s, out)),
                });
                if h == Hist::None {
                    continue;
                }
                named("hist", &g.name, out, |out| match keyed {
                    true => object(&entries, keys, globals, out, |s, _, out| {
                        buckets(&h, s, out)
                    }),
                    false => entries.iter().for_each(|(_, s)| buckets(&h, s, out)),
                });
            }
        }
    }
    Ok(())
}

/// `{"type": kind, "data": {name: …}}`, the value written by `value`.
fn named(kind: &str, name: &str, out: &mut Vec<u8>, value: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(format!("{{\"type\": \"{kind}\", \"data\": {{").as_bytes());
    string(name.as_bytes(), out);
    out.extend_from_slice(b": ");
    value(out);
    out.extend_from_slice(b"}}\n");
}

/// An array's elements as an object: each key tuple as one string.
fn object<T>(
    entries: &[(Vec<Value>, T)],
    kinds: &[FieldKind],
    globals: &mut dyn Globals,
    out: &mut Vec<u8>,
    mut value: impl FnMut(&T, &mut dyn Globals, &mut Vec<u8>),
) {
    out.push(b'{');
    let mut key = Vec::new();
    for (i, (keys, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        key.clear();
        for (j, (k, kind)) in keys.iter().zip(kinds).enumerate() {
            if j > 0 {
                key.push(b',');
            }
            match (kind, k) {
                (FieldKind::Stack, k) => globals.write_stack(k.as_long() as u64, &mut key),
                (_, Value::Long(n)) => key.extend_from_slice(n.to_string().as_bytes()),
                (_, Value::Str(s)) => key.extend_from_slice(s),
            }
        }
        string(&key, out);
        out.extend_from_slice(b": ");
        value(v, globals, out);
    }
    out.push(b'}');
}

/// A stored value: a number, a string, or a stack's text.
fn element(kind: ValueKind, v: &Value, globals: &mut dyn Globals, out: &mut Vec<u8>) {
    match (kind, v) {
        (ValueKind::Stack, v) => {
            let mut text = Vec::new();
            globals.write_stack(v.as_long() as u64, &mut text);
            string(&text, out);
        }
        (_, Value::Long(n)) => number(*n, out),
        (_, Value::Str(s)) => string(s, out),
    }
}

/// `{"count": …, "average": …, "total": …, "min": …, "max": …}` (no `min`/`max`
/// before a first value).
fn summary(s: &Stat, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"count\": ");
    number(s.count, out);
    out.extend_from_slice(b", \"average\": ");
    number(s.avg().unwrap_or(0), out);
    out.extend_from_slice(b", \"total\": ");
    number(s.sum, out);
    if s.count > 0 {
        out.extend_from_slice(b", \"min\": ");
        number(s.min, out);
        out.extend_from_slice(b", \"max\": ");
        number(s.max, out);
    }
    out.push(b'}');
}

/// The non-empty buckets: `[{"min": …, "max": …, "count": …}, …]`.
fn buckets(h: &Hist, s: &Stat, out: &mut Vec<u8>) {
    out.push(b'[');
    let mut first = true;
    for (i, &n) in s.buckets.iter().enumerate().filter(|(_, n)| **n != 0) {
        if !first {
            out.push(b',');
        }
        first = false;
        let (lo, hi) = h.range(i);
        out.extend_from_slice(b"{\"min\": ");
        number(lo, out);
        out.extend_from_slice(b", \"max\": ");
        number(hi, out);
        out.extend_from_slice(b", \"count\": ");
        number(n, out);
        out.push(b'}');
    }
    out.push(b']');
}

/// An integer: a JSON number if a double holds it exactly, else its digits quoted.
pub fn number(v: i64, out: &mut Vec<u8>) {
    let exact = v.unsigned_abs() <= 1 << 53;
    let digits = v.to_string();
    if exact {
        out.extend_from_slice(digits.as_bytes());
    } else {
        out.push(b'"');
        out.extend_from_slice(digits.as_bytes());
        out.push(b'"');
    }
}

/// Bytes as a JSON string: UTF-8 (invalid sequences replaced), with `"`, `\` and
/// control characters escaped.
pub fn string(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// A JSON string literal of `s`, for the tools' own `--json` objects.
pub fn quoted(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    string(s.as_bytes(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::globals::MemGlobals;
    use bpf::MapId;
    use bpf::script::HistSpec;

    fn spec(name: &str, shape: GlobalShape) -> GlobalSpec {
        GlobalSpec {
            name: name.into(),
            map: MapId(0),
            shape,
            read: true,
        }
    }

    #[test]
    fn strings_and_numbers_are_escaped_as_json_needs() {
        let mut out = Vec::new();
        string(b"a\"b\\c\nd\x01\xff", &mut out);
        out.push(b' ');
        number(1 << 53, &mut out);
        out.push(b' ');
        number(-(1 << 60), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001\u{fffd}\" 9007199254740992 \"-1152921504606846976\""
        );
    }

    #[test]
    fn globals_take_bpftraces_shapes() {
        let mut g = MemGlobals::new();
        let scalar = spec(
            "n",
            GlobalShape::Scalar {
                offset: 0,
                value: ValueKind::Long,
            },
        );
        let array = spec(
            "a",
            GlobalShape::Array {
                keys: vec![FieldKind::Str { len: 16 }, FieldKind::Long],
                value: ValueKind::Long,
            },
        );
        let stats = spec(
            "s",
            GlobalShape::Stats {
                keys: Vec::new(),
                hist: HistSpec::Log,
            },
        );
        g.set(&scalar, &[], Value::Long(7)).unwrap();
        g.set(
            &array,
            &[Value::Str(b"x".to_vec()), Value::Long(2)],
            Value::Long(3),
        )
        .unwrap();
        for v in [1, 5, 6] {
            g.record(&stats, &[], v).unwrap();
        }
        let mut out = Vec::new();
        globals(&[scalar, array, stats], &mut g, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type": "map", "data": {"n": 7}}
{"type": "map", "data": {"a": {"x,2": 3}}}
{"type": "stats", "data": {"s": {"count": 3, "average": 4, "total": 12, "min": 1, "max": 6}}}
{"type": "hist", "data": {"s": [{"min": 1, "max": 1, "count": 1},{"min": 4, "max": 7, "count": 2}]}}
"#
        );
    }
}
