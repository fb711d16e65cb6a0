//! x86-64 machine code of Go functions, decoded with iced-x86: where a uprobe for a
//! function should sit, where it returns, and whether an address starts an
//! instruction.
//!
//! Go's amd64 functions with a frame open with a stack-bound check: `cmp rsp,
//! [r14+0x10]` (the goroutine's stackguard0, r14 holding g under the register ABI;
//! for larger frames `lea r12, [rsp-N]` first, for huge ones `mov r12, rsp; sub r12,
//! N; jb`; ABI0 assembly loads g from `fs:[-8]` into a register) followed by `jbe` to
//! a call of `runtime.morestack`, which grows the stack and restarts the function at
//! its entry. A probe at the entry would therefore fire twice for one call whenever
//! the stack grows; the first instruction after the `jbe` runs once per call. It is
//! also usually `push rbp`, which the kernel's uprobe code emulates (about 0.7 µs)
//! instead of single-stepping out of line (about 10 µs) as it must for `cmp`, `lea`
//! and `mov`.

use iced_x86::{
    Code, ConditionCode, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register,
};

use crate::error::{Error, Result};
use crate::{Func, GoBinary, VirtAddr};

/// Where to attach a uprobe for a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSite {
    pub addr: VirtAddr,
    /// True if `addr` is past the stack check (so it runs once per call).
    pub after_prologue: bool,
    /// The pcsp value at `addr`: bytes below the SP the function was entered with
    /// (return address not counted), 0 if the table has none.
    pub sp_delta: i64,
    /// True if Linux's x86 uprobe code emulates the instruction at `addr` rather than
    /// single-stepping it: `push r64` (0x50+r, with REX.B 0x41), `call rel32`, `jmp`
    /// rel8/rel32, `jcc` rel8/rel32 and `nop` 0x90 with any prefixes. Multi-byte `0f
    /// 1f` nops are counted as stepped: only recent kernels emulate them.
    pub emulated: bool,
}

/// How many instructions from the entry may precede the stack check's `cmp`.
const MAX_PROLOGUE: usize = 6;

fn code_of<'data>(bin: &GoBinary<'data>, f: &Func<'data>) -> Result<&'data [u8]> {
    let len = f.end.0.checked_sub(f.entry.0).ok_or(Error::Corrupt {
        what: "function ends before it starts",
    })?;
    bin.text_bytes(f.entry, len).ok_or(Error::Truncated {
        what: "function code",
    })
}

/// Decodes `f` from its entry to its end, leaving out the `int3` bytes that pad it to
/// the next function's alignment. Go puts no data in amd64 text, so a linear sweep is
/// exact.
pub fn instructions(bin: &GoBinary<'_>, f: &Func<'_>) -> Result<Vec<Instruction>> {
    let code = code_of(bin, f)?;
    let mut decoder = Decoder::with_ip(64, code, f.entry.0, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            return Err(Error::BadInstruction(VirtAddr(insn.ip())));
        }
        out.push(insn);
    }
    while out.last().is_some_and(|i| i.code() == Code::Int3) {
        out.pop();
    }
    Ok(out)
}

/// Where a uprobe for `f` goes: the instruction after the stack check's `jbe`, or the
/// entry for functions without a check (NOSPLIT functions, frameless leaves).
pub fn probe_site(bin: &GoBinary<'_>, f: &Func<'_>) -> Result<ProbeSite> {
    let code = code_of(bin, f)?;
    let mut decoder = Decoder::with_ip(64, code, f.entry.0, DecoderOptions::NONE);
    let mut prologue = Vec::new();
    while decoder.can_decode() && prologue.len() < MAX_PROLOGUE + 2 {
        let insn = decoder.decode();
        if insn.is_invalid() {
            return Err(Error::BadInstruction(VirtAddr(insn.ip())));
        }
        prologue.push(insn);
    }
    let after = stack_check_end(&prologue);
    let addr = match after {
        Some(i) => prologue.get(i).map(|n| VirtAddr(n.ip())).unwrap_or(f.end),
        None => f.entry,
    };
    let first = match after {
        Some(i) => prologue.get(i).copied(),
        None => prologue.first().copied(),
    };
    let sp_delta = bin.sp_delta(f, addr).map(i64::from).unwrap_or(0);
    Ok(ProbeSite {
        addr,
        after_prologue: after.is_some(),
        sp_delta,
        emulated: first.is_some_and(|i| emulated(&i)),
    })
}

/// The index of the instruction after the stack check's `jbe`, if the function opens
/// with one.
fn stack_check_end(insns: &[Instruction]) -> Option<usize> {
    for (i, insn) in insns.iter().enumerate().take(MAX_PROLOGUE) {
        if is_stackguard_cmp(insn) {
            let jbe = insns.get(i + 1)?;
            return (jbe.is_jcc_short_or_near() && jbe.condition_code() == ConditionCode::be)
                .then_some(i + 2);
        }
        // Only what computes the bound may come before the compare.
        let allowed = matches!(
            insn.mnemonic(),
            Mnemonic::Mov | Mnemonic::Lea | Mnemonic::Sub
        ) || (insn.is_jcc_short_or_near()
            && insn.condition_code() == ConditionCode::b);
        if !allowed {
            return None;
        }
    }
    None
}

/// `cmp reg64, [reg64+0x10]`: SP (or SP minus the frame size) against g.stackguard0.
fn is_stackguard_cmp(insn: &Instruction) -> bool {
    insn.mnemonic() == Mnemonic::Cmp
        && insn.op_count() == 2
        && insn.op0_kind() == OpKind::Register
        && insn.op0_register().is_gpr64()
        && insn.op1_kind() == OpKind::Memory
        && insn.memory_base().is_gpr64()
        && insn.memory_index() == Register::None
        && insn.memory_displacement64() == 0x10
        && insn.segment_prefix() == Register::None
}

/// True if Linux emulates the instruction when a uprobe hits it (see [`ProbeSite`]).
fn emulated(insn: &Instruction) -> bool {
    match insn.code() {
        Code::Push_r64 => insn.len() == 1 || (insn.len() == 2 && insn.op0_register().number() >= 8),
        Code::Call_rel32_64 | Code::Jmp_rel8_64 | Code::Jmp_rel32_64 => true,
        Code::Nopd | Code::Nopq | Code::Nopw | Code::Nop_rm16 | Code::Nop_rm32 | Code::Nop_rm64 => {
            true
        }
        _ => insn.is_jcc_short_or_near(),
    }
}

/// The address of every `ret` in `f`.
pub fn returns(bin: &GoBinary<'_>, f: &Func<'_>) -> Result<Vec<VirtAddr>> {
    Ok(instructions(bin, f)?
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Ret)
        .map(|i| VirtAddr(i.ip()))
        .collect())
}

/// True if an instruction of `f` starts at `addr`.
pub fn is_instruction_boundary(bin: &GoBinary<'_>, f: &Func<'_>, addr: VirtAddr) -> bool {
    if !f.contains(addr) {
        return false;
    }
    match instructions(bin, f) {
        Ok(insns) => insns.binary_search_by_key(&addr.0, |i| i.ip()).is_ok(),
        Err(_) => false,
    }
}
