//! What a sampling program (run by a perf `cpu-clock` event) knows of the thread it
//! interrupted, written once for `gotap profile` (`profile.rs`) and a script's
//! `timer.profile`/`timer.hz(N)` probes (`lib.rs`), so that a sample means the same
//! to both: the user registers, and whether the sample found the process in user
//! mode.
//!
//! A sample that interrupted the process in the kernel (a system call, a page
//! fault) is the user code's that entered the kernel, as Go's own SIGPROF profile
//! counts it (a thread's system time is charged to where it made the call): its
//! registers are the ones the kernel saved at its entry (`task_pt_regs` of
//! `get_current_task_btf`). Either way they are copied to scratch and the context
//! register points at the copy, so every reader of a register or of the stack
//! (`ubacktrace()`, `goid()`, `register()`, the walk of `gotap profile`) reads the
//! user ones without knowing where they came from.

use bpf::{AluOp, Cond, Helper, Insn, Label, Reg, X86Reg};

use crate::emit::{CTX, Emitter};

/// Bytes of x86-64's `struct pt_regs` (21 registers).
const PT_REGS_BYTES: u32 = 21 * 8;
/// The offset, from the copy's start, of the word that is 1 when the sample found
/// the process in user mode and 0 when in the kernel (stap's `user_mode()`).
const USER_MODE: i16 = PT_REGS_BYTES as i16;
/// Bytes of the copy: the registers, then the user-mode word.
pub const REGS_BYTES: u32 = PT_REGS_BYTES + 8;

/// Copies the interrupted thread's user registers to a new scratch area of
/// [`REGS_BYTES`] and points [`CTX`] at it, or jumps to `unread` if the kernel's
/// saved copy could not be read. Clobbers R0–R5. The area stays allocated: the
/// context is read from it to the program's end.
pub fn user_registers(em: &mut Emitter<'_>, unread: Label) {
    let (user, copied) = (em.a.label(), em.a.label());
    let regs = em.alloc(REGS_BYTES);
    // The interrupted CS at privilege level 3 is user mode. (One instruction may not
    // read both the context and a map value, hence the copy word by word.)
    em.ctx_reg(Reg::R0, X86Reg::Cs);
    em.e(Insn::alu64(AluOp::And, Reg::R0, 3));
    em.a.jmp(Cond::Eq, Reg::R0, 3, user);
    em.a.call(Helper::GetCurrentTaskBtf);
    em.e(Insn::mov64(Reg::R1, Reg::R0));
    em.a.call(Helper::TaskPtRegs);
    em.e(Insn::mov64(Reg::R3, Reg::R0));
    em.addr(Reg::R1, regs);
    em.e(Insn::mov64(Reg::R2, PT_REGS_BYTES as i32));
    em.a.call(Helper::ProbeReadKernel);
    em.a.jmp(Cond::Ne, Reg::R0, 0, unread);
    em.store_imm(regs + PT_REGS_BYTES, bpf::Size::DW, 0);
    em.a.ja(copied);
    em.a.bind(user);
    for w in 0..PT_REGS_BYTES / 8 {
        em.e(Insn::ldx(bpf::Size::DW, Reg::R0, CTX, (8 * w) as i16));
        em.store(regs + 8 * w, Reg::R0);
    }
    em.store_imm(regs + PT_REGS_BYTES, bpf::Size::DW, 1);
    em.a.bind(copied);
    em.addr(CTX, regs);
}

/// `dst` = 1 if the sample found the process in user mode, 0 in the kernel; only
/// after [`user_registers`].
pub fn user_mode(em: &mut Emitter<'_>, dst: Reg) {
    em.e(Insn::ldx(bpf::Size::DW, dst, CTX, USER_MODE));
}
