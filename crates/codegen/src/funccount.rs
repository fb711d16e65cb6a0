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
