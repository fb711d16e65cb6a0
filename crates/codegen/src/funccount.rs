//! The program behind `gotap funccount`: one eBPF program on every probed function, a
//! per-CPU array of counters indexed by the probe's attach cookie (the function's index
//! in the tool's list). A hit costs one cookie read, one map lookup and one add on the
//! CPU's own slot: no atomics, no events to user space.

use bpf::{
    AluOp, Asm, AsmError, Cond, Helper, Insn, MapKind, MapSpec, ObjectSpec, ProgramSpec, Reg, Size,
};

/// A compiled funccount: the object to load and where its counters are.
#[derive(Debug)]
pub struct Funccount {
    pub object: ObjectSpec,
    /// The per-CPU array of `u64` counters, one per function.
    pub counts: bpf::MapId,
}

/// Compiles the counting program for `functions` functions. With `tgid`, hits from
/// other processes are not counted (the check is in the kernel).
pub fn funccount(functions: u32, tgid: Option<u32>) -> Result<Funccount, AsmError> {
    let mut object = ObjectSpec::default();
    let counts = object.add_map(MapSpec {
        name: "funccount".into(),
        kind: MapKind::PerCpuArray,
        key_size: 4,
        value_size: 8,
        max_entries: functions.max(1),
        flags: 0,
    });
    let mut a = Asm::new();
    let out = a.label();
    a.emit(Insn::mov64(Reg::R6, Reg::R1));
    if let Some(tgid) = tgid {
        a.call(Helper::GetCurrentPidTgid);
        a.emit(Insn::alu64(AluOp::Rsh, Reg::R0, 32));
        // Process ids fit in 22 bits, so the signed immediate holds any of them.
        a.jmp(Cond::Ne, Reg::R0, tgid as i32, out);
    }
    a.emit(Insn::mov64(Reg::R1, Reg::R6));
    a.call(Helper::GetAttachCookie);
    a.emit(Insn::stx(Size::W, Reg::R10, -4, Reg::R0));
    a.ld_map(Reg::R1, counts);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, -4));
    a.call(Helper::MapLookupElem);
    a.jmp(Cond::Eq, Reg::R0, 0, out);
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
    a.emit(Insn::alu64(AluOp::Add, Reg::R1, 1));
    a.emit(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
    a.bind(out);
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    object
        .programs
        .push(ProgramSpec::new("gotap_fcount", a.finish()?));
    Ok(Funccount { object, counts })
}

/// A compiled per-process funccount: what the agent puts on each distinct binary,
/// shared by every process that runs it (one multi-uprobe link per binary), so the
/// process is part of the key instead of a filter.
#[derive(Debug)]
pub struct ByProcess {
    pub object: ObjectSpec,
    /// A per-CPU hash from [`ProcessKey`] to a `u64` count, allocated as keys appear.
    pub counts: bpf::MapId,
    /// A per-CPU array of one `u64`: hits not counted because `counts` was full.
    pub lost: bpf::MapId,
}

/// The key of [`ByProcess::counts`]: the process id (tgid) and the function's index
/// (the probe's attach cookie), both `u32`, little-endian, in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessKey {
    pub tgid: u32,
    pub function: u32,
}

impl ProcessKey {
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.tgid.to_le_bytes());
        b[4..].copy_from_slice(&self.function.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<ProcessKey> {
        let word = |r: std::ops::Range<usize>| Some(u32::from_le_bytes(b.get(r)?.try_into().ok()?));
        Some(ProcessKey {
            tgid: word(0..4)?,
            function: word(4..8)?,
        })
    }
}

/// Compiles the per-process counting program, for at most `max_keys` (process,
/// function) pairs. A hit costs the pid read, the cookie read, one lookup and one add
/// on the CPU's own slot; the first hit of a pair on a CPU inserts it (`BPF_ANY`
/// writes only this CPU's slot, so a pair another CPU inserted meanwhile keeps its
/// count); a full map counts the hit in `lost` instead.
pub fn by_process(max_keys: u32) -> Result<ByProcess, AsmError> {
    let mut object = ObjectSpec::default();
    let counts = object.add_map(MapSpec {
        name: "fcount_pid".into(),
        kind: MapKind::PerCpuHash,
        key_size: 8,
        value_size: 8,
        max_entries: max_keys.max(1),
        flags: bpf::spec::MAP_F_NO_PREALLOC,
    });
    let lost = object.add_map(MapSpec {
        name: "fcount_lost".into(),
        kind: MapKind::PerCpuArray,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        flags: 0,
    });
    let mut a = Asm::new();
    let (insert, out) = (a.label(), a.label());
    a.emit(Insn::mov64(Reg::R6, Reg::R1));
    a.call(Helper::GetCurrentPidTgid);
    a.emit(Insn::alu64(AluOp::Rsh, Reg::R0, 32));
    a.emit(Insn::stx(Size::W, Reg::R10, -8, Reg::R0));
    a.emit(Insn::mov64(Reg::R1, Reg::R6));
    a.call(Helper::GetAttachCookie);
    a.emit(Insn::stx(Size::W, Reg::R10, -4, Reg::R0));
    a.ld_map(Reg::R1, counts);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, -8));
    a.call(Helper::MapLookupElem);
    a.jmp(Cond::Eq, Reg::R0, 0, insert);
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
    a.emit(Insn::alu64(AluOp::Add, Reg::R1, 1));
    a.emit(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
    a.ja(out);
    a.bind(insert);
    a.emit(Insn::st(Size::DW, Reg::R10, -16, 1));
    a.ld_map(Reg::R1, counts);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, -8));
    a.emit(Insn::mov64(Reg::R3, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R3, -16));
    a.emit(Insn::mov64(Reg::R4, 0));
    a.call(Helper::MapUpdateElem);
    a.jmp(Cond::Eq, Reg::R0, 0, out);
    a.emit(Insn::st(Size::W, Reg::R10, -20, 0));
    a.ld_map(Reg::R1, lost);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, -20));
    a.call(Helper::MapLookupElem);
    a.jmp(Cond::Eq, Reg::R0, 0, out);
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
    a.emit(Insn::alu64(AluOp::Add, Reg::R1, 1));
    a.emit(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
    a.bind(out);
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    object
        .programs
        .push(ProgramSpec::new("gotap_fcount_pid", a.finish()?));
    Ok(ByProcess {
        object,
        counts,
        lost,
    })
}
