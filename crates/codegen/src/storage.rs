//! Pass 1 of the lowering: where every value of a script lives, before any code is
//! emitted. Scalar globals share the one value of an array map (at offsets, strings
//! [`MAX_STRING`] bytes), each array is a hash map keyed by its keys laid end to end,
//! each statistic a per-CPU map whose value is one `bpf::stats` slot. Besides the
//! globals: the ring buffer, the per-CPU counters and the per-CPU scratch area where
//! probe locals, strings and event records are built (the BPF stack has 512 bytes).
//! The layout is the contract of `bpf::script` and is what user space reads.

use std::collections::HashMap;

use bpf::script::{FieldKind, GlobalShape, GlobalSpec, HistSpec, ValueKind, counter};
use bpf::{MapId, MapKind, MapSpec, ObjectSpec};
use lang::ast::{Expr, ExprKind, Item, Literal, Script, StatOp, Stmt, StmtKind, walk_stmt};
use lang::{Diagnostic, Type, TypeInfo};

/// Entries of an array without `global a[N]` (SystemTap's MAXMAPENTRIES).
pub const DEFAULT_ARRAY_SIZE: u32 = 2048;

/// Bytes of the ring buffer (a power of two, a multiple of the page size).
pub const RINGBUF_BYTES: u32 = 1 << 20;

/// Where one global lives, for the code generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Scalar {
        offset: u32,
        ty: Type,
    },
    Array {
        map: MapId,
        keys: Vec<Type>,
        value: Type,
    },
    Stats {
        map: MapId,
        keys: Vec<Type>,
        hist: HistSpec,
    },
}

/// The storage of a whole script.
#[derive(Debug)]
pub struct Storage {
    pub object: ObjectSpec,
    pub globals: Vec<GlobalSpec>,
    pub slots: HashMap<String, Slot>,
    /// The array map holding the scalars (always created: it also holds the clock
    /// offset).
    pub scalars: MapId,
    pub scalars_initial: Vec<u8>,
    /// Offset of the `i64` that user space sets to `CLOCK_REALTIME - CLOCK_MONOTONIC`.
    pub realtime_offset: u32,
    /// Offset of the `i64` that user space sets to the `-c`/`-x` process's pid.
    pub target_offset: u32,
    pub ringbuf: MapId,
    pub counters: MapId,
    pub scratch: MapId,
    /// Bytes at the start of the scratch value that stay zero (statistics slots are
    /// created from them).
    pub zero_bytes: u32,
    /// Bytes of a string slot, its NUL included (`lang::Limits::max_string`).
    pub max_string: u32,
}

impl Storage {
    /// Bytes a value of type `t` takes in a key, a value or a record.
    pub fn width(&self, t: Type) -> u32 {
        width(t, self.max_string)
    }

    pub fn field_kind(&self, t: Type) -> FieldKind {
        field_kind(t, self.max_string)
    }
}

/// Bytes a value of type `t` takes, with strings in slots of `slot` bytes.
fn width(t: Type, slot: u32) -> u32 {
    match t {
        Type::String => slot,
        _ => 8,
    }
}

fn field_kind(t: Type, slot: u32) -> FieldKind {
    match t {
        Type::String => FieldKind::Str { len: slot },
        Type::Stack => FieldKind::Stack,
        _ => FieldKind::Long,
    }
}

fn value_kind(t: Type, slot: u32) -> ValueKind {
    match t {
        Type::String => ValueKind::Str { len: slot },
        Type::Stack => ValueKind::Stack,
        _ => ValueKind::Long,
    }
}

/// Bytes in one CPU's slot of a statistic with this histogram ([`bpf::stats`]).
pub fn stat_slot_bytes(h: HistSpec) -> u32 {
    bpf::stats::slot_bytes(h) as u32
}

pub fn hist_buckets(h: HistSpec) -> u32 {
    bpf::stats::buckets(h) as u32
}

/// Which histogram each statistic is read with: the first `@hist_*` on it wins.
fn histograms(script: &Script, diags: &mut Vec<Diagnostic>) -> HashMap<String, HistSpec> {
    let mut out: HashMap<String, HistSpec> = HashMap::new();
    let mut visit = |e: &Expr| {
        let ExprKind::Stat { op, arg, params } = &e.kind else {
            return;
        };
        let name = match &arg.kind {
            ExprKind::Var(id) => &id.name,
            ExprKind::Index { array, .. } => &array.name,
            _ => return,
        };
        let h = match op {
            StatOp::HistLog => HistSpec::Log,
            StatOp::HistLinear => {
                let nums: Vec<i64> = params.iter().filter_map(number).collect();
                let [start, stop, interval] = nums[..] else {
                    return;
                };
                HistSpec::Linear {
                    start,
                    stop,
                    interval,
                }
            }
            _ => return,
        };
        match out.get(name) {
            Some(old) if *old != h => diags.push(Diagnostic::error(
                e.span,
                format!(
                    "'{name}' is already read with another histogram; gotap keeps one per statistic"
                ),
            )),
            _ => {
                out.insert(name.clone(), h);
            }
        }
    };
    for item in &script.items {
        let body = match item {
            Item::Probe(p) => &p.body,
            Item::Alias(a) => &a.body,
            Item::Function(f) => &f.body,
            Item::Global(_) => continue,
        };
        for s in &body.stmts {
            walk_stmt(s, &mut visit);
        }
    }
    out
}

fn number(e: &Expr) -> Option<i64> {
    match &e.kind {
        ExprKind::Num(n) => Some(*n),
        ExprKind::Unary {
            op: lang::ast::UnOp::Neg,
            expr,
        } => number(expr).map(i64::wrapping_neg),
        _ => None,
    }
}

/// The globals the script reads somewhere: mentioned other than as the target of an
/// assignment, `++`/`--` or `<<<` (stap prints, at exit, the globals only written).
fn reads(script: &Script) -> std::collections::HashSet<String> {
    let mut mentions: HashMap<String, usize> = HashMap::new();
    let mut writes: HashMap<String, usize> = HashMap::new();
    let name_of = |e: &Expr| match &e.kind {
        ExprKind::Var(id) | ExprKind::Index { array: id, .. } => Some(id.name.clone()),
        _ => None,
    };
    let mut visit = |e: &Expr| match &e.kind {
        ExprKind::Var(id) | ExprKind::Index { array: id, .. } | ExprKind::In { array: id, .. } => {
            *mentions.entry(id.name.clone()).or_default() += 1;
        }
        // Updates (`x++`, `x += 1`, `s <<< v`) are not reads: stap prints a global
        // that is only counted this way at the end.
        ExprKind::Assign { lhs, .. }
        | ExprKind::Aggregate { lhs, .. }
        | ExprKind::IncDec { expr: lhs, .. } => {
            if let Some(n) = name_of(lhs) {
                *writes.entry(n).or_default() += 1;
            }
        }
        _ => {}
    };
    // Iterating an array reads it (`foreach` names it by an identifier, not an
    // expression).
    let mut iterated = std::collections::HashSet::new();
    for item in &script.items {
        let body = match item {
            Item::Probe(p) => &p.body,
            Item::Alias(a) => &a.body,
            Item::Function(f) => &f.body,
            Item::Global(_) => continue,
        };
        for s in &body.stmts {
            walk_stmt(s, &mut |e| visit(e));
            foreach_arrays(s, &mut iterated);
        }
    }
    mentions
        .into_iter()
        .filter(|(n, m)| *m > writes.get(n).copied().unwrap_or(0))
        .map(|(n, _)| n)
        .chain(iterated)
        .collect()
}

/// The arrays `foreach` statements in `s` iterate.
fn foreach_arrays(s: &Stmt, out: &mut std::collections::HashSet<String>) {
    match &s.kind {
        StmtKind::Block(b) => b.stmts.iter().for_each(|s| foreach_arrays(s, out)),
        StmtKind::If { then, els, .. } => {
            foreach_arrays(then, out);
            if let Some(e) = els {
                foreach_arrays(e, out);
            }
        }
        StmtKind::While { body, .. } | StmtKind::For { body, .. } => foreach_arrays(body, out),
        StmtKind::Foreach(f) => {
            out.insert(f.array.name.clone());
            foreach_arrays(&f.body, out);
        }
        _ => {}
    }
}

/// Lays out every global and the script's support maps.
pub fn layout(script: &Script, info: &TypeInfo, diags: &mut Vec<Diagnostic>) -> Storage {
    let slot = info.limits.max_string;
    let hists = histograms(script, diags);
    let read = reads(script);
    let mut object = ObjectSpec::default();
    let mut globals = Vec::new();
    let mut slots = HashMap::new();
    let mut offset = 0u32;
    let mut initial = Vec::new();
    let inits: HashMap<&str, &Literal> = script
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Global(g) => g.init.as_ref().map(|l| (g.name.name.as_str(), l)),
            _ => None,
        })
        .collect();
    let scalars = object.add_map(MapSpec {
        name: "gotap_globals".into(),
        kind: MapKind::Array,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        flags: 0,
    });
    for g in &info.globals {
        let ty = g.ty.unwrap_or(Type::Long);
        let map_name = |prefix: &str| {
            let mut n = format!("{prefix}{}", g.name);
            n.retain(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            n.truncate(15);
            n
        };
        let size = g
            .size
            .and_then(|s| u32::try_from(s).ok())
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_ARRAY_SIZE);
        let keys: Option<Vec<Type>> = g
            .keys
            .as_ref()
            .map(|k| k.iter().map(|t| t.unwrap_or(Type::Long)).collect());
        let (slot, shape, map) = match (ty, keys) {
            (Type::Stats, keys) => {
                let keys = keys.unwrap_or_default();
                let hist = hists.get(&g.name).copied().unwrap_or(HistSpec::None);
                let key_size: u32 = keys.iter().map(|t| width(*t, slot)).sum();
                let map = object.add_map(MapSpec {
                    name: map_name("s_"),
                    kind: if keys.is_empty() {
                        MapKind::PerCpuArray
                    } else {
                        MapKind::PerCpuHash
                    },
                    key_size: if keys.is_empty() { 4 } else { key_size },
                    value_size: stat_slot_bytes(hist),
                    max_entries: if keys.is_empty() { 1 } else { size },
                    // A per-CPU hash is not allocated whole at creation: each key's
                    // slots come with its first `<<<`. Preallocating 16,384 keys'
                    // per-CPU slots took the kernel 25-50 ms here, time a trace's
                    // start (and the agent's arming of a new binary) waited for.
                    flags: if keys.is_empty() {
                        0
                    } else {
                        bpf::spec::MAP_F_NO_PREALLOC
                    },
                });
                (
                    Slot::Stats {
                        map,
                        keys: keys.clone(),
                        hist,
                    },
                    GlobalShape::Stats {
                        keys: keys.iter().map(|t| field_kind(*t, slot)).collect(),
                        hist,
                    },
                    map,
                )
            }
            (ty, Some(keys)) => {
                let key_size: u32 = keys.iter().map(|t| width(*t, slot)).sum::<u32>().max(1);
                let map = object.add_map(MapSpec {
                    name: map_name("a_"),
                    kind: MapKind::Hash,
                    key_size,
                    value_size: width(ty, slot),
                    max_entries: size,
                    flags: 0,
                });
                (
                    Slot::Array {
                        map,
                        keys: keys.clone(),
                        value: ty,
                    },
                    GlobalShape::Array {
                        keys: keys.iter().map(|t| field_kind(*t, slot)).collect(),
                        value: value_kind(ty, slot),
                    },
                    map,
                )
            }
            (ty, None) => {
                let at = offset;
                offset += width(ty, slot);
                initial.resize(offset as usize, 0);
                match inits.get(g.name.as_str()) {
                    Some(Literal::Num(n)) => {
                        initial[at as usize..at as usize + 8].copy_from_slice(&n.to_le_bytes())
                    }
                    Some(Literal::Str(s)) => {
                        let b = s.as_bytes();
                        let n = b.len().min(slot as usize - 1);
                        initial[at as usize..at as usize + n].copy_from_slice(&b[..n]);
                    }
                    None => {}
                }
                (
                    Slot::Scalar { offset: at, ty },
                    GlobalShape::Scalar {
                        offset: at,
                        value: value_kind(ty, slot),
                    },
                    scalars,
                )
            }
        };
        slots.insert(g.name.clone(), slot);
        globals.push(GlobalSpec {
            name: g.name.clone(),
            map,
            shape,
            read: read.contains(&g.name),
        });
    }
    let realtime_offset = offset;
    let target_offset = offset + 8;
    offset += 16;
    initial.resize(offset as usize, 0);
    object.maps[scalars.0 as usize].value_size = offset;
    let ringbuf = object.add_map(MapSpec {
        name: "gotap_events".into(),
        kind: MapKind::RingBuf,
        key_size: 0,
        value_size: 0,
        max_entries: RINGBUF_BYTES,
        flags: 0,
    });
    let counters = object.add_map(MapSpec {
        name: "gotap_counters".into(),
        kind: MapKind::PerCpuArray,
        key_size: 4,
        value_size: 8,
        max_entries: counter::COUNT,
        flags: 0,
    });
    let zero_bytes = slots
        .values()
        .filter_map(|s| match s {
            Slot::Stats { hist, .. } => Some(stat_slot_bytes(*hist)),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let scratch = object.add_map(MapSpec {
        name: "gotap_scratch".into(),
        kind: MapKind::PerCpuArray,
        key_size: 4,
        // Set once every program is lowered and the high-water mark is known.
        value_size: 8,
        max_entries: 1,
        flags: 0,
    });
    Storage {
        object,
        globals,
        slots,
        scalars,
        scalars_initial: initial,
        realtime_offset,
        target_offset,
        ringbuf,
        counters,
        scratch,
        zero_bytes,
        max_string: slot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(src: &str) -> Script {
        let (s, d) = lang::parse(lang::FileId(0), src, &lang::ParseOptions::default());
        assert!(d.is_empty(), "{d:?}");
        s
    }

    #[test]
    fn updates_are_not_reads() {
        let s = script(
            "global a, b, c, d, e\nprobe begin { a++; b[1] += 2; c <<< 3; d = 4; e = 5; printf(\"%d\\n\", e + @count(c)) }",
        );
        let mut r: Vec<String> = reads(&s).into_iter().collect();
        r.sort();
        assert_eq!(r, vec!["c", "e"]);
    }
}
