//! Go values printed as Go's `fmt` prints them with `%+v`, from the bytes a probe
//! copied ([`bpf::govalue`]): the probe only copies what the plan says, so every rule
//! of `fmt` lives here, in user space. The rules followed, from `fmt/print.go`'s
//! `printValue` and the methods it calls:
//!
//! - structs print as `{Name:value Name:value}`, slices and arrays as `[a b c]`, maps
//!   as `map[k:v k:v]` with their keys sorted (`internal/fmtsort`: numbers and strings
//!   by value, `false` before `true`), a nil pointer, interface, channel or func as
//!   `<nil>`, a nil map as `map[]` and a nil slice as `[]`;
//! - a pointer to a struct, array, slice or map prints as `&` and its value at the top
//!   level only, an address (`0xc000012345`) below it (the plan decides which; `$x$$`
//!   follows pointers further down);
//! - floats print as `strconv.FormatFloat(f, 'g', -1, size)` does, with Go's exponent
//!   form (`1e+06`, `1.5e-07`), complex numbers as `(1+2i)`;
//! - an error prints its message where `fmt` would call `Error()`, for the error types
//!   whose message is a field (`*errors.errorString`, `*fmt.wrapError`); a
//!   `time.Duration` and a `time.Time` print as their `String()` methods do.
//!
//! What a limit left out prints as `…` and is counted; what could not be read (a
//! faulting read) prints as `?`. Nothing here allocates per value but the scratch of
//! sorting a map's entries.

use bpf::govalue::{
    IfaceNode, KeyOrder, MapLayout, MapNode, NodeKind, STATUS_READ, Shape, TimeNode,
};
use lang::limits::CUT_MARK;

/// Writes the value of `shape` held in `field` (a record's bytes for it) to `out`;
/// returns how many cuts it printed.
pub fn write(shape: &Shape, field: &[u8], out: &mut Vec<u8>) -> u64 {
    let mut p = Printer {
        shape,
        field,
        cuts: 0,
    };
    p.node(shape.root, out);
    p.cuts
}

struct Printer<'a> {
    shape: &'a Shape,
    field: &'a [u8],
    cuts: u64,
}

impl Printer<'_> {
    fn bytes(&self, at: u32, n: usize) -> &[u8] {
        let at = at as usize;
        self.field.get(at..at + n).unwrap_or(&[])
    }

    fn word(&self, at: u32) -> u64 {
        let b = self.bytes(at, 8);
        b.try_into().map(u64::from_le_bytes).unwrap_or(0)
    }

    fn uint(&self, at: u32, size: u8) -> u64 {
        let b = self.bytes(at, size as usize);
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    }

    fn int(&self, at: u32, size: u8) -> i64 {
        let v = self.uint(at, size);
        let shift = 64 - 8 * u32::from(size.clamp(1, 8));
        ((v << shift) as i64) >> shift
    }

    fn status(&self, slot: u32) -> u8 {
        self.field
            .get((self.shape.status_at + slot) as usize)
            .copied()
            .unwrap_or(0)
    }

    fn read(&self, slot: u32) -> bool {
        self.status(slot) == STATUS_READ
    }

    /// The bytes a region read, at most `n`: in place, or in the heap.
    fn region(&self, r: u32, n: usize) -> Option<&[u8]> {
        let reg = self.shape.regions.get(r as usize)?;
        if !self.read(reg.status) {
            return None;
        }
        if reg.heap {
            let off = self.word(reg.at).min(u64::from(self.shape.heap)) as u32;
            let count = reg.count_at.map_or(0, |c| self.word(c)) as usize;
            return Some(self.bytes(self.shape.heap_at + off, n.min(count)));
        }
        Some(self.bytes(reg.at, n.min(reg.max as usize)))
    }

    /// Whether region `r` was left out by the heap's limit.
    fn region_cut(&self, r: u32) -> bool {
        self.shape
            .regions
            .get(r as usize)
            .is_some_and(|reg| self.status(reg.status) == bpf::govalue::STATUS_CUT)
    }

    fn cut(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(CUT_MARK.as_bytes());
        self.cuts += 1;
    }

    /// A variable of `$$vars`: numbers and pointers in hex as stap prints them,
    /// strings quoted, the rest as `%+v` would.
    fn stap_var(&mut self, n: u32, out: &mut Vec<u8>) {
        let Some(node) = self.shape.nodes.get(n as usize) else {
            return;
        };
        if !self.read(node.status) {
            out.push(b'?');
            return;
        }
        match node.kind {
            NodeKind::Int { size, .. } => {
                out.extend_from_slice(format!("{:#x}", self.int(node.at, size)).as_bytes());
            }
            NodeKind::Pointer { target: None, .. } | NodeKind::Address => {
                out.extend_from_slice(format!("{:#x}", self.word(node.at)).as_bytes());
            }
            NodeKind::String { .. } => {
                out.push(b'"');
                self.node(n, out);
                out.push(b'"');
            }
            _ => self.node(n, out),
        }
    }

    fn node(&mut self, n: u32, out: &mut Vec<u8>) {
        let Some(node) = self.shape.nodes.get(n as usize) else {
            out.push(b'?');
            return;
        };
        if !self.read(node.status) {
            match node.kind {
                NodeKind::Cut => self.cut(out),
                _ => out.push(b'?'),
            }
            return;
        }
        let at = node.at;
        match &node.kind {
            NodeKind::Bool => out.extend_from_slice(if self.uint(at, 1) != 0 {
                b"true"
            } else {
                b"false"
            }),
            &NodeKind::Int { size, signed } => {
                let s = if signed {
                    self.int(at, size).to_string()
                } else {
                    self.uint(at, size).to_string()
                };
                out.extend_from_slice(s.as_bytes());
            }
            &NodeKind::Float { size } => {
                if size == 4 {
                    go_float(out, f64::from(f32::from_bits(self.uint(at, 4) as u32)), 32);
                } else {
                    go_float(out, f64::from_bits(self.uint(at, 8)), 64);
                }
            }
            &NodeKind::Complex { size } => {
                let half = size / 2;
                let (re, im) = if half == 4 {
                    (
                        f64::from(f32::from_bits(self.uint(at, 4) as u32)),
                        f64::from(f32::from_bits(self.uint(at + 4, 4) as u32)),
                    )
                } else {
                    (
                        f64::from_bits(self.uint(at, 8)),
                        f64::from_bits(self.uint(at + 8, 8)),
                    )
                };
                let bits = u32::from(half) * 8;
                out.push(b'(');
                go_float(out, re, bits);
                if !(im.is_sign_negative() || im.is_nan() || im.is_infinite()) {
                    out.push(b'+');
                }
                go_float(out, im, bits);
                out.extend_from_slice(b"i)");
            }
            &NodeKind::String { data } => self.string(at, data, out),
            NodeKind::Struct { fields, more } => {
                out.push(b'{');
                for (i, (name, f)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(name.as_bytes());
                    out.push(b':');
                    self.node(*f, out);
                }
                if *more {
                    if !fields.is_empty() {
                        out.push(b' ');
                    }
                    self.cut(out);
                }
                out.push(b'}');
            }
            NodeKind::Array { len, elems } => {
                out.push(b'[');
                self.elems(elems, elems.len(), *len > elems.len() as u64, out);
                out.push(b']');
            }
            NodeKind::Slice { data, elems } => {
                let len = self.word(at + 8);
                out.push(b'[');
                let shown = (len as usize).min(elems.len());
                match data {
                    _ if len == 0 => {}
                    Some(r) if self.region(*r, 0).is_some() => {
                        self.elems(elems, shown, len as usize > shown, out);
                    }
                    Some(_) => out.push(b'?'),
                    None => self.cut(out),
                }
                out.push(b']');
            }
            &NodeKind::Pointer { target, cut } => {
                let p = self.word(at);
                match target {
                    _ if p == 0 => out.extend_from_slice(b"<nil>"),
                    Some(t) => {
                        out.push(b'&');
                        self.node(t, out);
                    }
                    None if cut => {
                        out.push(b'&');
                        self.cut(out);
                    }
                    None => address(out, p),
                }
            }
            NodeKind::Address => {
                let p = self.word(at);
                if p == 0 {
                    out.extend_from_slice(b"<nil>");
                } else {
                    address(out, p);
                }
            }
            &NodeKind::Func { code } => {
                let p = self.word(at);
                let entry = code
                    .and_then(|r| self.region(r, 8))
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes);
                match entry {
                    _ if p == 0 => out.extend_from_slice(b"<nil>"),
                    Some(pc) => address(out, pc),
                    None => address(out, p),
                }
            }
            NodeKind::Map(m) => self.map(at, m, out),
            NodeKind::Interface(i) => self.iface(at, i, out),
            NodeKind::Duration => duration(out, self.int(at, 8)),
            NodeKind::Time(t) => self.time(at, t, out),
            NodeKind::Vars(vars) => {
                for (i, (name, v)) in vars.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'=');
                    self.stap_var(*v, out);
                }
            }
            NodeKind::Cut => self.cut(out),
            NodeKind::Unknown => out.push(b'?'),
        }
    }

    fn elems(&mut self, elems: &[u32], shown: usize, more: bool, out: &mut Vec<u8>) {
        for (i, e) in elems.iter().take(shown).enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            self.node(*e, out);
        }
        if more {
            if shown > 0 {
                out.push(b' ');
            }
            self.cut(out);
        }
    }

    /// A Go string whose header is at `at` and bytes in region `data`.
    fn string(&mut self, at: u32, data: Option<u32>, out: &mut Vec<u8>) {
        let len = self.word(at + 8) as usize;
        if len == 0 {
            return;
        }
        let Some(r) = data else {
            self.cut(out);
            return;
        };
        match self.region(r, len) {
            Some(b) => {
                let shown = b.len();
                out.extend_from_slice(b);
                if len > shown {
                    self.cut(out);
                }
            }
            None if self.region_cut(r) => self.cut(out),
            None => out.push(b'?'),
        }
    }

    fn map(&mut self, at: u32, m: &MapNode, out: &mut Vec<u8>) {
        if self.word(at) == 0 {
            out.extend_from_slice(b"map[]");
            return;
        }
        out.extend_from_slice(b"map[");
        let Some(h) = m.header else {
            self.cut(out);
            out.push(b']');
            return;
        };
        let Some(header) = self.region(h, 48).map(|b| b.to_vec()) else {
            out.extend_from_slice(b"?]");
            return;
        };
        let word = |o: usize| {
            header
                .get(o..o + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let count = word(0);
        // How many buckets or groups the probe read: the count it wrote.
        let region = match m.layout {
            MapLayout::Classic { buckets } => buckets,
            MapLayout::Swiss { groups, .. } => groups,
        };
        let groups = match self.shape.regions.get(region as usize) {
            Some(r) if self.read(r.status) => r.count_at.map_or(0, |c| self.word(c)) as u32,
            _ => 0,
        };
        let classic = matches!(m.layout, MapLayout::Classic { .. });
        let mut entries: Vec<(u32, u32)> = m
            .slots
            .iter()
            .filter(|s| s.group < groups)
            .filter(|s| {
                let c = self.field.get(s.ctrl as usize).copied().unwrap_or(0);
                if classic { c >= 5 } else { c & 0x80 == 0 }
            })
            .map(|s| (s.key, s.value))
            .collect();
        self.sort_keys(m.key_order, &mut entries);
        let shown = entries.len().min(count as usize);
        for (i, (k, v)) in entries.iter().take(shown).enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            self.node(*k, out);
            out.push(b':');
            self.node(*v, out);
        }
        if (shown as u64) < count {
            if shown > 0 {
                out.push(b' ');
            }
            self.cut(out);
        }
        out.push(b']');
    }

    /// Sorts map entries as `internal/fmtsort` does for keys of these kinds.
    fn sort_keys(&self, order: KeyOrder, entries: &mut [(u32, u32)]) {
        let at = |k: u32| self.shape.nodes.get(k as usize).map_or(0, |n| n.at);
        let size = |k: u32| match self.shape.nodes.get(k as usize).map(|n| &n.kind) {
            Some(NodeKind::Int { size, .. } | NodeKind::Float { size }) => *size,
            _ => 8,
        };
        match order {
            KeyOrder::Signed => entries.sort_by_key(|(k, _)| self.int(at(*k), size(*k))),
            KeyOrder::Unsigned => entries.sort_by_key(|(k, _)| self.uint(at(*k), size(*k))),
            KeyOrder::Bool => entries.sort_by_key(|(k, _)| self.uint(at(*k), 1) != 0),
            KeyOrder::Float => entries.sort_by(|(a, _), (b, _)| {
                let f = |k: u32| {
                    if size(k) == 4 {
                        f64::from(f32::from_bits(self.uint(at(k), 4) as u32))
                    } else {
                        f64::from_bits(self.uint(at(k), 8))
                    }
                };
                // NaN first, as fmtsort orders it.
                let (x, y) = (f(*a), f(*b));
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Less,
                    (false, true) => std::cmp::Ordering::Greater,
                    _ => x.total_cmp(&y),
                }
            }),
            KeyOrder::String => {
                entries.sort_by(|(a, _), (b, _)| self.string_bytes(*a).cmp(self.string_bytes(*b)))
            }
            KeyOrder::AsRead => {}
        }
    }

    /// The bytes of the string node `n` (empty when unread).
    fn string_bytes(&self, n: u32) -> &[u8] {
        let Some(node) = self.shape.nodes.get(n as usize) else {
            return &[];
        };
        let NodeKind::String { data: Some(r) } = node.kind else {
            return &[];
        };
        let len = self.word(node.at + 8) as usize;
        self.region(r, len).unwrap_or(&[])
    }

    fn iface(&mut self, at: u32, i: &IfaceNode, out: &mut Vec<u8>) {
        let first = self.word(at);
        let data = self.word(at + 8);
        if first == 0 {
            out.extend_from_slice(b"<nil>");
            return;
        }
        let rtype = i.rtype.and_then(|r| self.region(r, 48).map(|b| b.to_vec()));
        let name = i
            .name
            .and_then(|r| self.region(r, usize::MAX))
            .map(|b| type_name(b, rtype.as_deref()));
        // The type word's linked address: the type word less the load bias.
        let linked = self.word(i.type_at).wrapping_sub(self.word(0));
        let typed = i.itab.is_none() || i.itab.is_some_and(|r| self.region(r, 16).is_some());
        if typed && let Some((_, node)) = i.candidates.iter().find(|(a, _)| *a == linked) {
            self.node(*node, out);
            return;
        }
        let Some(rtype) = rtype else {
            out.push(b'?');
            return;
        };
        // An error whose message is not a field: `fmt` would call its `Error()`,
        // which a tracer cannot; its type and data word say what it is.
        if i.error && i.methods {
            out.push(b'(');
            out.extend_from_slice(name.as_deref().unwrap_or("?").as_bytes());
            out.extend_from_slice(b")(");
            address(out, data);
            out.push(b')');
            return;
        }
        let size = u64::from_le_bytes(rtype[0..8].try_into().unwrap_or_default());
        let ptrdata = u64::from_le_bytes(rtype[8..16].try_into().unwrap_or_default());
        let kind = rtype[23] & 0x1f;
        let direct = size == 8 && ptrdata == 8;
        // The value's bytes: the data word itself, or the window read at it.
        let value: Vec<u8> = if direct {
            data.to_le_bytes().to_vec()
        } else {
            match i.window.and_then(|w| self.region(w, size as usize)) {
                Some(b) => b.to_vec(),
                None => {
                    out.push(b'?');
                    return;
                }
            }
        };
        let int = |n: usize| {
            let mut w = [0u8; 8];
            let n = n.min(value.len()).min(8);
            w[..n].copy_from_slice(&value[..n]);
            u64::from_le_bytes(w)
        };
        let sized = |v: u64| {
            let bits = (size.clamp(1, 8) * 8) as u32;
            ((v << (64 - bits)) as i64) >> (64 - bits)
        };
        match kind {
            1 => out.extend_from_slice(if int(1) != 0 { b"true" } else { b"false" }),
            2..=6 => out.extend_from_slice(sized(int(size as usize)).to_string().as_bytes()),
            7..=12 => out.extend_from_slice(int(size as usize).to_string().as_bytes()),
            13 => go_float(out, f64::from(f32::from_bits(int(4) as u32)), 32),
            14 => go_float(out, f64::from_bits(int(8)), 64),
            24 => {
                let len = u64::from_le_bytes(
                    value
                        .get(8..16)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or_default(),
                ) as usize;
                if len > 0 {
                    // The string's header is the window's first 16 bytes.
                    let at = i
                        .window
                        .and_then(|w| self.shape.regions.get(w as usize))
                        .map(|w| w.at);
                    match at {
                        Some(at) => self.string(at, i.string, out),
                        None => out.push(b'?'),
                    }
                }
            }
            // Pointers, channels, maps, funcs below the top print as addresses.
            18 | 19 | 21 | 22 | 26 if direct => address(out, data),
            // A struct of no fields (`struct{}`, `http.noBody`).
            25 if size == 0 => out.extend_from_slice(b"{}"),
            _ => {
                out.extend_from_slice(name.as_deref().unwrap_or("?").as_bytes());
                out.push(b'(');
                self.cut(out);
                out.push(b')');
            }
        }
    }

    fn time(&mut self, at: u32, t: &TimeNode, out: &mut Vec<u8>) {
        let wall = self.word(at);
        let ext = self.word(at + 8) as i64;
        let loc = self.word(at + 16);
        let (sec, nsec, mono) = time_parts(wall, ext);
        let zone = if loc == 0 {
            Some((b"UTC".to_vec(), 0))
        } else {
            self.zone(t, sec)
        };
        let Some((name, offset)) = zone else {
            civil(out, sec, nsec, 0, b"UTC");
            out.push(b' ');
            self.cut(out);
            return;
        };
        civil(out, sec, nsec, offset, &name);
        if let Some(m) = mono {
            monotonic(out, m);
        }
    }

    /// The zone name and offset of the location at `sec` (Unix seconds), when the
    /// probe read its cached zone and `sec` is in the cached range.
    fn zone(&self, t: &TimeNode, sec: i64) -> Option<(Vec<u8>, i64)> {
        let loc = self.region(t.loc?, 104)?;
        let word = |o: usize| {
            loc.get(o..o + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        if word(24) == 0 {
            return Some((b"UTC".to_vec(), 0));
        }
        let (start, end) = (word(80) as i64, word(88) as i64);
        if word(96) == 0 || sec < start || sec >= end {
            return None;
        }
        let zone = self.region(t.zone?, 32)?;
        let zword = |o: usize| {
            zone.get(o..o + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let offset = zword(16) as i64;
        let len = zword(8) as usize;
        let name = match t.zone_name {
            Some(r) if len > 0 => self.region(r, len)?.to_vec(),
            _ => Vec::new(),
        };
        Some((name, offset))
    }
}

/// `0xc000012345`, as `fmt` prints a pointer.
fn address(out: &mut Vec<u8>, p: u64) {
    out.extend_from_slice(format!("{p:#x}").as_bytes());
}

/// A runtime type's name from its name bytes (a flags byte, a varint length, the
/// text), without the `*` the linker shares with the pointer type's name when the
/// type's `tflag` says `TFlagExtraStar`.
pub fn type_name(b: &[u8], rtype: Option<&[u8]>) -> String {
    let mut len = 0usize;
    let mut i = 1;
    let mut shift = 0;
    while let Some(&c) = b.get(i) {
        len |= usize::from(c & 0x7f) << shift;
        i += 1;
        shift += 7;
        if c & 0x80 == 0 || shift > 28 {
            break;
        }
    }
    let text = b.get(i..(i + len).min(b.len())).unwrap_or(&[]);
    let mut s = String::from_utf8_lossy(text).into_owned();
    let extra_star = rtype.and_then(|r| r.get(20)).is_some_and(|t| t & 2 != 0);
    if extra_star && s.starts_with('*') {
        s.remove(0);
    }
    s
}

/// A float as Go's `%v` prints it: `strconv.FormatFloat(v, 'g', -1, bits)`, the
/// shortest digits that read back as the same value, in `%e` form when the decimal
/// exponent is below -4 or at least 6 (the shortest form's `eprec`), with at least
/// two exponent digits; `+Inf`, `-Inf`, `NaN`.
pub fn go_float(out: &mut Vec<u8>, v: f64, bits: u32) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `1.2345e-5`, `0e0`.
    let text = if bits == 32 {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
    let (mant, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let neg = mant.starts_with('-');
    let digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    if neg {
        out.push(b'-');
    }
    if digits.iter().all(|&d| d == b'0') {
        out.push(b'0');
        return;
    }
    let nd = digits.len() as i32;
    let dp = exp + 1;
    if !(-4..6).contains(&exp) {
        out.push(digits[0]);
        if nd > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(e.to_string().as_bytes());
        return;
    }
    if dp <= 0 {
        out.push(b'0');
    } else {
        for i in 0..dp {
            out.push(*digits.get(i as usize).unwrap_or(&b'0'));
        }
    }
    let frac = (nd - dp).max(0);
    if frac > 0 {
        out.push(b'.');
        for i in 0..frac {
            let j = dp + i;
            out.push(if j < 0 { b'0' } else { digits[j as usize] });
        }
    }
}

/// A `time.Duration` as `Duration.String()` writes it: `1h2m3.5s`, `1.5ms`, `0s`.
pub fn duration(out: &mut Vec<u8>, d: i64) {
    let mut buf = [0u8; 32];
    let mut w = buf.len();
    let neg = d < 0;
    let mut u = d.unsigned_abs();
    let mut put = |w: &mut usize, b: u8| {
        *w -= 1;
        buf[*w] = b;
    };
    fn frac(put: &mut impl FnMut(&mut usize, u8), w: &mut usize, mut v: u64, prec: u32) -> u64 {
        let mut print = false;
        for _ in 0..prec {
            let digit = v % 10;
            print = print || digit != 0;
            if print {
                put(w, digit as u8 + b'0');
            }
            v /= 10;
        }
        if print {
            put(w, b'.');
        }
        v
    }
    fn int(put: &mut impl FnMut(&mut usize, u8), w: &mut usize, mut v: u64) {
        if v == 0 {
            put(w, b'0');
        }
        while v > 0 {
            put(w, (v % 10) as u8 + b'0');
            v /= 10;
        }
    }
    if u < 1_000_000_000 {
        put(&mut w, b's');
        let prec = match u {
            0 => {
                put(&mut w, b'0');
                out.extend_from_slice(b"0s");
                return;
            }
            1..=999 => {
                put(&mut w, b'n');
                0
            }
            1_000..=999_999 => {
                // U+00B5, the micro sign, as two bytes.
                put(&mut w, 0xb5);
                put(&mut w, 0xc2);
                3
            }
            _ => {
                put(&mut w, b'm');
                6
            }
        };
        u = frac(&mut put, &mut w, u, prec);
        int(&mut put, &mut w, u);
    } else {
        put(&mut w, b's');
        u = frac(&mut put, &mut w, u, 9);
        int(&mut put, &mut w, u % 60);
        u /= 60;
        if u > 0 {
            put(&mut w, b'm');
            int(&mut put, &mut w, u % 60);
            u /= 60;
            if u > 0 {
                put(&mut w, b'h');
                int(&mut put, &mut w, u);
            }
        }
    }
    if neg {
        put(&mut w, b'-');
    }
    out.extend_from_slice(&buf[w..]);
}

/// Seconds from 0001-01-01 to 1970-01-01, Go's `unixToInternal`.
const UNIX_TO_INTERNAL: i64 = (1969 * 365 + 1969 / 4 - 1969 / 100 + 1969 / 400) * 86400;
/// Seconds from 0001-01-01 to 1885-01-01, Go's `wallToInternal`.
const WALL_TO_INTERNAL: i64 = (1884 * 365 + 1884 / 4 - 1884 / 100 + 1884 / 400) * 86400;

/// Unix seconds, nanoseconds and the monotonic reading of a `time.Time`'s `wall`
/// and `ext` words.
fn time_parts(wall: u64, ext: i64) -> (i64, i64, Option<i64>) {
    let nsec = (wall & ((1 << 30) - 1)) as i64;
    if wall & (1 << 63) != 0 {
        let sec = WALL_TO_INTERNAL + ((wall << 1) >> 31) as i64;
        (sec - UNIX_TO_INTERNAL, nsec, Some(ext))
    } else {
        (ext - UNIX_TO_INTERNAL, nsec, None)
    }
}

/// `2006-01-02 15:04:05.999999999 -0700 MST` for Unix time `sec` in a zone.
fn civil(out: &mut Vec<u8>, sec: i64, nsec: i64, offset: i64, zone: &[u8]) {
    let local = sec + offset;
    let days = local.div_euclid(86400);
    let secs = local.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    out.extend_from_slice(
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
        .as_bytes(),
    );
    if nsec != 0 {
        let f = format!("{nsec:09}");
        out.push(b'.');
        out.extend_from_slice(f.trim_end_matches('0').as_bytes());
    }
    let minutes = offset / 60;
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.abs();
    out.extend_from_slice(format!(" {sign}{:02}{:02} ", m / 60, m % 60).as_bytes());
    if zone.is_empty() {
        out.extend_from_slice(format!("{sign}{:02}{:02}", m / 60, m % 60).as_bytes());
    } else {
        out.extend_from_slice(zone);
    }
}

/// ` m=+0.001234567`: a monotonic clock reading as `Time.String` appends it.
fn monotonic(out: &mut Vec<u8>, ext: i64) {
    let sign = if ext < 0 { '-' } else { '+' };
    let m2 = ext.unsigned_abs();
    let (m1, m2) = (m2 / 1_000_000_000, m2 % 1_000_000_000);
    let (m0, m1) = (m1 / 1_000_000_000, m1 % 1_000_000_000);
    let head = if m0 != 0 {
        format!("{m0}{m1:09}")
    } else {
        m1.to_string()
    };
    out.extend_from_slice(format!(" m={sign}{head}.{m2:09}").as_bytes());
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut out = Vec::new();
        go_float(&mut out, v, 64);
        String::from_utf8(out).unwrap()
    }

    fn f32s(v: f32) -> String {
        let mut out = Vec::new();
        go_float(&mut out, f64::from(v), 32);
        String::from_utf8(out).unwrap()
    }

    /// What Go 1.25's `fmt.Sprintf("%v", x)` prints for these.
    #[test]
    fn floats_print_as_go_prints_them() {
        assert_eq!(f(0.0), "0");
        assert_eq!(f(-0.0), "-0");
        assert_eq!(f(1.0), "1");
        assert_eq!(f(2.75), "2.75");
        assert_eq!(f(100000.0), "100000");
        assert_eq!(f(1e6), "1e+06");
        assert_eq!(f(1234567.0), "1.234567e+06");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(0.00001), "1e-05");
        assert_eq!(f(1.5e-7), "1.5e-07");
        assert_eq!(f(-2.5e100), "-2.5e+100");
        assert_eq!(f(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(f(5e-324), "5e-324");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f32s(0.1), "0.1");
        assert_eq!(f32s(16777216.0), "1.6777216e+07");
        assert_eq!(f32s(3.4028235e38), "3.4028235e+38");
    }

    fn d(v: i64) -> String {
        let mut out = Vec::new();
        duration(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(d(0), "0s");
        assert_eq!(d(1), "1ns");
        assert_eq!(d(1_500), "1.5µs");
        assert_eq!(d(1_500_000), "1.5ms");
        assert_eq!(d(1_500_000_000), "1.5s");
        assert_eq!(d(-90 * 1_000_000_000), "-1m30s");
        assert_eq!(d(3_723_000_000_000), "1h2m3s");
        assert_eq!(d(i64::MIN), "-2562047h47m16.854775808s");
    }

    #[test]
    fn times_print_as_go_prints_them() {
        // time.Date(2009, 11, 10, 23, 0, 0, 5, time.UTC), no monotonic reading.
        let ext = 1_257_894_000 + UNIX_TO_INTERNAL;
        let (sec, nsec, mono) = time_parts(5, ext);
        assert_eq!(mono, None);
        let mut out = Vec::new();
        civil(&mut out, sec, nsec, 0, b"UTC");
        assert_eq!(out, b"2009-11-10 23:00:00.000000005 +0000 UTC");
        let mut out = Vec::new();
        civil(&mut out, 0, 0, -5 * 3600 - 1800, b"");
        assert_eq!(out, b"1969-12-31 18:30:00 -0530 -0530");
        let mut out = Vec::new();
        monotonic(&mut out, 1_234_567);
        monotonic(&mut out, -3_000_000_001_000_000_000);
        assert_eq!(out, b" m=+0.001234567 m=-3000000001.000000000");
    }

    #[test]
    fn type_names_drop_the_shared_star() {
        let name = [0u8, 6, b'*', b'm', b'a', b'i', b'n', b'.'];
        assert_eq!(type_name(&name, None), "*main.");
        let mut rtype = [0u8; 48];
        rtype[20] = 2;
        assert_eq!(type_name(&name, Some(&rtype)), "main.");
    }
}
