//! Script globals as user space sees them. Everything that reads or writes a global
//! from user space (the interpreter of `begin`/`end`/timer bodies, the end-of-run
//! display) goes through the [`Globals`] trait: the CLI implements it over the kernel's
//! maps, the tests over [`MemGlobals`], an in-memory fake.
//!
//! The byte layout of keys and values in those maps is decided by
//! [`bpf::script`] and coded here once ([`encode_key`], [`decode_key`],
//! [`encode_value`], [`decode_value`]), so the kernel-map implementation only moves
//! bytes: a long is 8 bytes little endian, a string a fixed slot of `len` bytes
//! (array keys and string values: the script's string slot) holding at most `len - 1` bytes and
//! NUL-padded. Reading a missing element gives 0 or `""`, as in stap. A stack
//! (`FieldKind::Stack`, `ValueKind::Stack`) is its 8-byte value, read as a long: the
//! layout says it is a stack, and its text is asked of [`StackText`], which every
//! [`Globals`] also is (the stacks live beside the globals, in the script's stack map).

use bpf::script::{FieldKind, GlobalShape, GlobalSpec, HistSpec, ValueKind};
use thiserror::Error;

use crate::stacks::StackText;
use crate::stats::{Hist, Linear, Stat, StatsError};

/// A script value: every value a script handles is a long or a string (bytes, not
/// necessarily UTF-8, since they may come from the traced program); a stack is a long
/// whose type (`lang::Type::Stack`, `FieldKind::Stack`) says what it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Long(i64),
    Str(Vec<u8>),
}

impl Value {
    /// The zero value of a kind: what a missing element or fresh variable holds.
    pub fn zero(kind: ValueKind) -> Value {
        match kind {
            ValueKind::Long | ValueKind::Stack => Value::Long(0),
            ValueKind::Str { .. } => Value::Str(Vec::new()),
        }
    }

    /// The long, or 0 for a string (the checker keeps the kinds apart).
    pub fn as_long(&self) -> i64 {
        match self {
            Value::Long(v) => *v,
            Value::Str(_) => 0,
        }
    }

    /// The string bytes, or nothing for a long.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Long(_) => &[],
            Value::Str(s) => s,
        }
    }

    /// The value as `runtime::table` prints and sorts it.
    pub fn to_key(&self) -> crate::table::Key {
        match self {
            Value::Long(v) => crate::table::Key::Long(*v),
            Value::Str(s) => crate::table::Key::Str(s.clone()),
        }
    }
}

/// Why a global could not be read or written.
#[derive(Debug, Error)]
pub enum GlobalsError {
    #[error("global '{global}' is not {expected}")]
    Shape {
        global: String,
        expected: &'static str,
    },
    #[error("global '{global}' takes {expected} keys, {got} given")]
    KeyCount {
        global: String,
        expected: usize,
        got: usize,
    },
    #[error("{what} is {got} bytes, the layout needs {expected}")]
    Size {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("a {got} where the layout has a {expected}")]
    Kind {
        expected: &'static str,
        got: &'static str,
    },
    /// An array is full; stap's wording (`global a[100]` gives a size limit,
    /// otherwise the limit is stap's `MAXMAPENTRIES`).
    #[error("Array overflow, check {}", match max {
        Some(n) => format!("size limit ({n})"),
        None => "MAXMAPENTRIES".to_string(),
    })]
    Full { global: String, max: Option<u64> },
    #[error("global '{global}': {source}")]
    Stats { global: String, source: StatsError },
    /// A failure of the storage behind the trait (the kernel's map, for the CLI).
    #[error("global '{global}': {source}")]
    Storage {
        global: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Reads and writes script globals, wherever they live, and names the stacks their
/// values refer to ([`StackText`]). `keys` is empty for scalars and has one value per
/// key for array elements; implementations check them against the global's
/// [`GlobalShape`].
pub trait Globals: StackText {
    /// The value of a scalar or array element; 0 or `""` if the element is missing.
    fn get(&mut self, g: &GlobalSpec, keys: &[Value]) -> Result<Value, GlobalsError>;

    /// Stores a scalar or an array element (strings cut to their slot less its NUL).
    fn set(&mut self, g: &GlobalSpec, keys: &[Value], value: Value) -> Result<(), GlobalsError>;

    /// `g[keys] += delta` on a long; returns the new value. The default reads and
    /// writes; a kernel-map implementation may do it in one update.
    fn add(&mut self, g: &GlobalSpec, keys: &[Value], delta: i64) -> Result<i64, GlobalsError> {
        let v = self.get(g, keys)?.as_long().wrapping_add(delta);
        self.set(g, keys, Value::Long(v))?;
        Ok(v)
    }

    /// `delete g[keys]` (`Some`), or `delete g` (`None`): empties an array or a
    /// statistic, resets a scalar to 0 or `""`.
    fn delete(&mut self, g: &GlobalSpec, keys: Option<&[Value]>) -> Result<(), GlobalsError>;

    /// `[keys] in g`, for arrays and arrays of statistics.
    fn contains(&mut self, g: &GlobalSpec, keys: &[Value]) -> Result<bool, GlobalsError>;

    /// Every element of an array, in the storage's order.
    fn entries(&mut self, g: &GlobalSpec) -> Result<Vec<(Vec<Value>, Value)>, GlobalsError>;

    /// A statistic (all CPUs merged); empty if never fed.
    fn stat(&mut self, g: &GlobalSpec, keys: &[Value]) -> Result<Stat, GlobalsError>;

    /// Every element of an array of statistics, in the storage's order.
    fn stat_entries(&mut self, g: &GlobalSpec) -> Result<Vec<(Vec<Value>, Stat)>, GlobalsError>;

    /// `g[keys] <<< v` from user space. A per-CPU map implementation adds to one
    /// CPU's slot (see `Stat::add`); reading merges the CPUs anyway.
    fn record(&mut self, g: &GlobalSpec, keys: &[Value], v: i64) -> Result<(), GlobalsError>;
}

/// The histogram a statistic keeps, validated.
pub fn hist(spec: &HistSpec) -> Result<Hist, StatsError> {
    Ok(match *spec {
        HistSpec::None => Hist::None,
        HistSpec::Log => Hist::Log,
        HistSpec::Linear {
            start,
            stop,
            interval,
        } => Hist::Linear(Linear::new(start, stop, interval)?),
    })
}

/// Bytes one key field takes.
pub fn field_size(kind: FieldKind) -> usize {
    match kind {
        FieldKind::Long | FieldKind::Stack => 8,
        FieldKind::Str { len } | FieldKind::Value { len, .. } => len as usize,
    }
}

/// Bytes a whole key takes: its fields end to end.
pub fn key_size(kinds: &[FieldKind]) -> usize {
    kinds.iter().map(|k| field_size(*k)).sum()
}

/// Bytes a stored value takes.
pub fn value_size(kind: ValueKind) -> usize {
    match kind {
        ValueKind::Long | ValueKind::Stack => 8,
        ValueKind::Str { len } => len as usize,
    }
}

/// Appends `keys` in the layout of `kinds` (a hash map key).
pub fn encode_key(
    kinds: &[FieldKind],
    keys: &[Value],
    out: &mut Vec<u8>,
) -> Result<(), GlobalsError> {
    if kinds.len() != keys.len() {
        return Err(GlobalsError::Size {
            what: "key tuple",
            expected: kinds.len(),
            got: keys.len(),
        });
    }
    for (kind, key) in kinds.iter().zip(keys) {
        match (kind, key) {
            (FieldKind::Long | FieldKind::Stack, Value::Long(v)) => {
                out.extend_from_slice(&v.to_le_bytes())
            }
            (FieldKind::Str { len }, Value::Str(s)) => put_str(out, s, *len as usize),
            (FieldKind::Long | FieldKind::Stack, Value::Str(_)) => {
                return Err(kind_error("long", "string"));
            }
            (FieldKind::Str { .. }, Value::Long(_)) => return Err(kind_error("string", "long")),
            // Go values travel in records only, never in keys.
            (FieldKind::Value { .. }, _) => return Err(kind_error("key", "Go value")),
        }
    }
    Ok(())
}

/// Reads a key in the layout of `kinds`; `bytes` must be exactly the key.
pub fn decode_key(kinds: &[FieldKind], bytes: &[u8]) -> Result<Vec<Value>, GlobalsError> {
    let expected = key_size(kinds);
    if bytes.len() != expected {
        return Err(GlobalsError::Size {
            what: "key",
            expected,
            got: bytes.len(),
        });
    }
    let mut at = 0;
    let mut out = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let n = field_size(*kind);
        let field = &bytes[at..at + n];
        out.push(match kind {
            FieldKind::Long | FieldKind::Stack => Value::Long(long_at(field)),
            FieldKind::Str { .. } => Value::Str(cstr(field).to_vec()),
            FieldKind::Value { .. } => return Err(kind_error("key", "Go value")),
        });
        at += n;
    }
    Ok(out)
}

/// Appends a value in its stored layout (8 bytes, or a string slot).
pub fn encode_value(kind: ValueKind, value: &Value, out: &mut Vec<u8>) -> Result<(), GlobalsError> {
    match (kind, value) {
        (ValueKind::Long | ValueKind::Stack, Value::Long(v)) => {
            out.extend_from_slice(&v.to_le_bytes())
        }
        (ValueKind::Str { len }, Value::Str(s)) => put_str(out, s, len as usize),
        (ValueKind::Long | ValueKind::Stack, Value::Str(_)) => {
            return Err(kind_error("long", "string"));
        }
        (ValueKind::Str { .. }, Value::Long(_)) => return Err(kind_error("string", "long")),
    }
    Ok(())
}

/// Reads a value from the start of `bytes` (which may be longer: a scalar is read at
/// its offset in the shared value of the scalars' array map).
pub fn decode_value(kind: ValueKind, bytes: &[u8]) -> Result<Value, GlobalsError> {
    let n = value_size(kind);
    let Some(field) = bytes.get(..n) else {
        return Err(GlobalsError::Size {
            what: "value",
            expected: n,
            got: bytes.len(),
        });
    };
    Ok(match kind {
        ValueKind::Long | ValueKind::Stack => Value::Long(long_at(field)),
        ValueKind::Str { .. } => Value::Str(cstr(field).to_vec()),
    })
}

/// Writes a scalar at `offset` of the scalars' map value.
pub fn encode_scalar(
    offset: u32,
    kind: ValueKind,
    value: &Value,
    map_value: &mut [u8],
) -> Result<(), GlobalsError> {
    let mut bytes = Vec::with_capacity(value_size(kind));
    encode_value(kind, value, &mut bytes)?;
    let at = offset as usize;
    let got = map_value.len();
    let Some(slot) = map_value.get_mut(at..at + bytes.len()) else {
        return Err(GlobalsError::Size {
            what: "scalars' map value",
            expected: at + bytes.len(),
            got,
        });
    };
    slot.copy_from_slice(&bytes);
    Ok(())
}

/// Reads a scalar at `offset` of the scalars' map value.
pub fn decode_scalar(
    offset: u32,
    kind: ValueKind,
    map_value: &[u8],
) -> Result<Value, GlobalsError> {
    let rest = map_value.get(offset as usize..).unwrap_or(&[]);
    decode_value(kind, rest).map_err(|_| GlobalsError::Size {
        what: "scalars' map value",
        expected: offset as usize + value_size(kind),
        got: map_value.len(),
    })
}

/// The bytes of a NUL-terminated string in a fixed slot (all of it if no NUL).
pub fn cstr(field: &[u8]) -> &[u8] {
    field
        .iter()
        .position(|&b| b == 0)
        .map_or(field, |n| &field[..n])
}

/// A string cut the way the kernel side cuts it: at most `max_bytes` (the string
/// limit, `lang::Limits::string_bytes`), and at the first NUL.
pub fn cut_string(s: &mut Vec<u8>, max_bytes: usize) {
    let n = cstr(s).len().min(max_bytes);
    s.truncate(n);
}

fn put_str(out: &mut Vec<u8>, s: &[u8], len: usize) {
    let s = cstr(s);
    let n = s.len().min(len.saturating_sub(1));
    out.extend_from_slice(&s[..n]);
    out.resize(out.len() + (len - n), 0);
}

fn long_at(b: &[u8]) -> i64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    i64::from_le_bytes(w)
}

fn kind_error(expected: &'static str, got: &'static str) -> GlobalsError {
    GlobalsError::Kind { expected, got }
}

/// An in-memory FAKE of the kernel's maps, for tests (here and in the CLI): it keeps
/// keys in their encoded layout (so strings are cut as the kernel cuts them) and
/// iterates elements in insertion order, as stap's maps do.
#[derive(Debug, Default)]
pub struct MemGlobals {
    /// Elements each array or array of statistics may hold, like a map's
    /// `max_entries`; unlimited if `None`.
    max_entries: Option<usize>,
    scalars: std::collections::HashMap<String, Value>,
    arrays: std::collections::HashMap<String, Vec<(Vec<u8>, Value)>>,
    stats: std::collections::HashMap<String, Vec<(Vec<u8>, Stat)>>,
    /// The frames of the stacks values may name, by id.
    pub stacks: std::collections::HashMap<u64, Vec<u64>>,
}

impl MemGlobals {
    pub fn new() -> MemGlobals {
        MemGlobals::default()
    }

    /// A fake whose arrays refuse new elements past `n`, as a full hash map does.
    pub fn with_max_entries(n: usize) -> MemGlobals {
        MemGlobals {
            max_entries: Some(n),
            ..MemGlobals::default()
        }
    }

    fn room(&self, g: &GlobalSpec, len: usize) -> Result<(), GlobalsError> {
        match self.max_entries {
            Some(max) if len >= max => Err(GlobalsError::Full {
                global: g.name.clone(),
                max: None,
            }),
            _ => Ok(()),
        }
    }
}

/// The fake's stacks print their frames in hex (symbolised ones a line each), with
/// no binary to name them.
impl StackText for MemGlobals {
    fn write_stack(&mut self, stack: u64, out: &mut Vec<u8>) {
        let id = stack & bpf::script::STACK_ID_MASK;
        match self.stacks.get(&id) {
            Some(frames) if stack & bpf::script::STACK_SYMS != 0 => {
                for pc in frames {
                    out.extend_from_slice(format!(" 0x{pc:x}\n").as_bytes());
                }
            }
            Some(frames) => crate::stacks::write_hex(frames, out),
            None => crate::stacks::write_unknown(stack, out),
        }
    }
}

fn array_shape<'a>(
    g: &'a GlobalSpec,
    keys: &[Value],
) -> Result<(&'a [FieldKind], ValueKind), GlobalsError> {
    match &g.shape {
        GlobalShape::Array { keys: kinds, value } => {
            check_keys(g, kinds, keys)?;
            Ok((kinds, *value))
        }
        _ => Err(GlobalsError::Shape {
            global: g.name.clone(),
            expected: "an array",
        }),
    }
}

fn stats_shape<'a>(
    g: &'a GlobalSpec,
    keys: &[Value],
) -> Result<(&'a [FieldKind], Hist), GlobalsError> {
    let (kinds, h) = stats_layout(g)?;
    check_keys(g, kinds, keys)?;
    Ok((kinds, h))
}

fn stats_layout(g: &GlobalSpec) -> Result<(&[FieldKind], Hist), GlobalsError> {
    match &g.shape {
        GlobalShape::Stats {
            keys: kinds,
            hist: h,
        } => {
            let h = hist(h).map_err(|source| GlobalsError::Stats {
                global: g.name.clone(),
                source,
            })?;
            Ok((kinds, h))
        }
        _ => Err(GlobalsError::Shape {
            global: g.name.clone(),
            expected: "a statistic",
        }),
    }
}

fn check_keys(g: &GlobalSpec, kinds: &[FieldKind], keys: &[Value]) -> Result<(), GlobalsError> {
    if kinds.len() != keys.len() {
        return Err(GlobalsError::KeyCount {
            global: g.name.clone(),
            expected: kinds.len(),
            got: keys.len(),
        });
    }
    Ok(())
}

fn stored(kind: ValueKind, value: Value) -> Result<Value, GlobalsError> {
    let mut bytes = Vec::new();
    encode_value(kind, &value, &mut bytes)?;
    decode_value(kind, &bytes)
}

impl Globals for MemGlobals {
    fn get(&mut self, g: &GlobalSpec, keys: &[Value]) -> Result<Value, GlobalsError> {
        if let GlobalShape::Scalar { value, .. } = g.shape {
            return Ok(self
                .scalars
                .get(&g.name)
                .cloned()
                .unwrap_or(Value::zero(value)));
        }
        let (kinds, vk) = array_shape(g, keys)?;
        let mut k = Vec::new();
        encode_key(kinds, keys, &mut k)?;
        let found = self
            .arrays
            .get(&g.name)
            .and_then(|a| a.iter().find(|(key, _)| *key == k));
        Ok(found.map_or(Value::zero(vk), |(_, v)| v.clone()))
    }

    fn set(&mut self, g: &GlobalSpec, keys: &[Value], value: Value) -> Result<(), GlobalsError> {
        if let GlobalShape::Scalar { value: vk, .. } = g.shape {
            self.scalars.insert(g.name.clone(), stored(vk, value)?);
            return Ok(());
        }
        let (kinds, vk) = array_shape(g, keys)?;
        let mut k = Vec::new();
        encode_key(kinds, keys, &mut k)?;
        let value = stored(vk, value)?;
        let len = self.arrays.get(&g.name).map_or(0, Vec::len);
        let a = self.arrays.entry(g.name.clone()).or_default();
        match a.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = value,
            None => {
                self.room(g, len)?;
                if let Some(a) = self.arrays.get_mut(&g.name) {
                    a.push((k, value));
                }
            }
        }
        Ok(())
    }

    fn delete(&mut self, g: &GlobalSpec, keys: Option<&[Value]>) -> Result<(), GlobalsError> {
        let Some(keys) = keys else {
            self.scalars.remove(&g.name);
            self.arrays.remove(&g.name);
            self.stats.remove(&g.name);
            return Ok(());
        };
        let kinds = match &g.shape {
            GlobalShape::Stats { .. } => stats_shape(g, keys)?.0,
            _ => array_shape(g, keys)?.0,
        };
        let mut k = Vec::new();
        encode_key(kinds, keys, &mut k)?;
        if let Some(a) = self.arrays.get_mut(&g.name) {
            a.retain(|(key, _)| *key != k);
        }
        if let Some(a) = self.stats.get_mut(&g.name) {
            a.retain(|(key, _)| *key != k);
        }
        Ok(())
    }

    fn contains(&mut self, g: &GlobalSpec, keys: &[Value]) -> Result<bool, GlobalsError> {
        let mut k = Vec::new();
        if let GlobalShape::Stats { .. } = g.shape {
            encode_key(stats_shape(g, keys)?.0, keys, &mut k)?;
            let a = self.stats.get(&g.name);
            return Ok(a.is_some_and(|a| a.iter().any(|(key, _)| *key == k)));
        }
        encode_key(array_shape(g, keys)?.0, keys, &mut k)?;
        let a = self.arrays.get(&g.name);
        Ok(a.is_some_and(|a| a.iter().any(|(key, _)| *key == k)))
    }

    fn entries(&mut self, g: &GlobalSpec) -> Result<Vec<(Vec<Value>, Value)>, GlobalsError> {
        let GlobalShape::Array { keys: kinds, .. } = &g.shape else {
            return Err(GlobalsError::Shape {
                global: g.name.clone(),
                expected: "an array",
            });
        };
        let a = self.arrays.get(&g.name).map_or(&[][..], |a| a);
        a.iter()
            .map(|(k, v)| Ok((decode_key(kinds, k)?, v.clone())))
            .collect()
    }

    fn stat(&mut self, g: &GlobalSpec, keys: &[Value]) -> Result<Stat, GlobalsError> {
        let (kinds, h) = stats_shape(g, keys)?;
        let mut k = Vec::new();
        encode_key(kinds, keys, &mut k)?;
        let found = self
            .stats
            .get(&g.name)
            .and_then(|a| a.iter().find(|(key, _)| *key == k));
        Ok(found.map_or_else(|| Stat::new(&h), |(_, s)| s.clone()))
    }

    fn stat_entries(&mut self, g: &GlobalSpec) -> Result<Vec<(Vec<Value>, Stat)>, GlobalsError> {
        let (kinds, _) = stats_layout(g)?;
        let a = self.stats.get(&g.name).map_or(&[][..], |a| a);
        a.iter()
            .map(|(k, s)| Ok((decode_key(kinds, k)?, s.clone())))
            .collect()
    }

    fn record(&mut self, g: &GlobalSpec, keys: &[Value], v: i64) -> Result<(), GlobalsError> {
        let (kinds, h) = stats_shape(g, keys)?;
        let mut k = Vec::new();
        encode_key(kinds, keys, &mut k)?;
        let a = self.stats.entry(g.name.clone()).or_default();
        if let Some(i) = a.iter().position(|(key, _)| *key == k) {
            a[i].1.add(&h, v);
            return Ok(());
        }
        let len = a.len();
        self.room(g, len)?;
        let mut s = Stat::new(&h);
        s.add(&h, v);
        self.stats.entry(g.name.clone()).or_default().push((k, s));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf::spec::MapId;

    #[test]
    fn keys_are_laid_end_to_end() {
        let kinds = [FieldKind::Str { len: 8 }, FieldKind::Long];
        let mut b = Vec::new();
        encode_key(
            &kinds,
            &[Value::Str(b"main".to_vec()), Value::Long(-2)],
            &mut b,
        )
        .unwrap();
        // "main" NUL-padded to 8 bytes, then -2 as 8 bytes little endian.
        assert_eq!(
            b,
            [
                b'm', b'a', b'i', b'n', 0, 0, 0, 0, //
                0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ]
        );
        assert_eq!(
            decode_key(&kinds, &b).unwrap(),
            [Value::Str(b"main".to_vec()), Value::Long(-2)]
        );
        assert!(decode_key(&kinds, &b[1..]).is_err());
    }

    #[test]
    fn strings_keep_room_for_their_nul() {
        // An 8-byte slot holds 7 bytes and the NUL.
        let mut b = Vec::new();
        encode_key(
            &[FieldKind::Str { len: 8 }],
            &[Value::Str(b"abcdefghij".to_vec())],
            &mut b,
        )
        .unwrap();
        assert_eq!(b, b"abcdefg\0");
        let long = Value::Str(vec![b'x'; 200]);
        let mut v = Vec::new();
        encode_value(ValueKind::Str { len: 128 }, &long, &mut v).unwrap();
        assert_eq!(v.len(), 128);
        assert_eq!(
            decode_value(ValueKind::Str { len: 128 }, &v)
                .unwrap()
                .as_bytes()
                .len(),
            127
        );
    }

    #[test]
    fn kinds_must_match_the_layout() {
        let mut b = Vec::new();
        assert!(encode_key(&[FieldKind::Long], &[Value::Str(vec![])], &mut b).is_err());
        assert!(encode_key(&[FieldKind::Long], &[], &mut b).is_err());
        assert!(decode_value(ValueKind::Long, &[1, 2, 3]).is_err());
    }

    #[test]
    fn scalars_sit_at_their_offset() {
        let mut v = vec![0u8; 16 + 128];
        encode_scalar(8, ValueKind::Long, &Value::Long(7), &mut v).unwrap();
        encode_scalar(
            16,
            ValueKind::Str { len: 128 },
            &Value::Str(b"hi".to_vec()),
            &mut v,
        )
        .unwrap();
        assert_eq!(v[8], 7);
        assert_eq!(
            decode_scalar(8, ValueKind::Long, &v).unwrap(),
            Value::Long(7)
        );
        assert_eq!(
            decode_scalar(16, ValueKind::Str { len: 128 }, &v).unwrap(),
            Value::Str(b"hi".to_vec())
        );
        assert!(decode_scalar(17, ValueKind::Str { len: 128 }, &v).is_err());
        assert!(
            encode_scalar(17, ValueKind::Str { len: 128 }, &Value::Str(vec![]), &mut v).is_err()
        );
    }

    #[test]
    fn fake_reads_missing_elements_as_zero_and_keeps_insertion_order() {
        let g = GlobalSpec {
            name: "a".into(),
            map: MapId(0),
            shape: GlobalShape::Array {
                keys: vec![FieldKind::Long],
                value: ValueKind::Long,
            },
            read: true,
        };
        let mut m = MemGlobals::new();
        assert_eq!(m.get(&g, &[Value::Long(5)]).unwrap(), Value::Long(0));
        m.set(&g, &[Value::Long(5)], Value::Long(1)).unwrap();
        m.set(&g, &[Value::Long(2)], Value::Long(3)).unwrap();
        assert_eq!(m.add(&g, &[Value::Long(5)], 10).unwrap(), 11);
        let keys: Vec<_> = m.entries(&g).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(keys, [[Value::Long(5)], [Value::Long(2)]]);
        m.delete(&g, Some(&[Value::Long(5)])).unwrap();
        assert!(!m.contains(&g, &[Value::Long(5)]).unwrap());
        assert!(m.get(&g, &[]).is_err());
    }
}
