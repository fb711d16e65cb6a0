//! The program behind `gotap profile`: run by a perf `cpu-clock` event on every CPU
//! (see `sys::CpuClock`), it takes a sample of the traced process when the event
//! interrupted one of its threads in user mode: the goroutine's id and the stack,
//! unwound by frame pointers in the kernel and continued from the system stack into
//! the goroutine (`backtrace::sample_walk`), counted per (goroutine, stack) in a
//! per-CPU hash map that user space reads at the end. Nothing crosses to user space
//! per sample.
//!
//! A map key holds at most 512 bytes (the kernel's limit, a BPF stack), so a stack
//! is kept to its innermost [`KEY_FRAMES`] frames; samples that interrupted the
//! process in the kernel (a system call, a page fault) are counted, not unwound (the
//! user registers are not in the event's context); samples the full map had no room
//! for are counted.

use bpf::{
    AluOp, Cond, Helper, Insn, MapId, MapKind, MapSpec, ObjectSpec, ProgramSpec, Reg, Size, X86Reg,
};
use gobin::layout::RuntimeLayout;

use crate::emit::{CTX, Emitter, SCRATCH};

/// Frames a sample's key keeps, innermost first.
pub const KEY_FRAMES: u32 = 58;
/// Words of a key before the walk: the goroutine id, then the interrupted RSP and
/// RBP and the two words at RSP (see [`profile`]).
pub const KEY_HEAD: u32 = 5;
/// Bytes of a key: the head, the walk's count word, the frames.
pub const KEY_BYTES: u32 = 8 * KEY_HEAD + 8 + 8 * KEY_FRAMES;
/// Distinct (goroutine, stack) pairs kept.
pub const MAX_SAMPLES: u32 = 16384;

/// Counters, at their index of [`Profile::counts`] (per CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Samples of the process unwound and counted.
    User = 0,
    /// Samples that found the process in the kernel.
    Kernel = 1,
    /// Samples the full map had no room for.
    Dropped = 2,
}

/// A compiled profiler.
#[derive(Debug)]
pub struct Profile {
    pub object: ObjectSpec,
    /// Per-CPU hash: key ([`KEY_BYTES`]) → samples.
    pub samples: MapId,
    /// Per-CPU array of `u64` counters ([`Counter`]).
    pub counts: MapId,
}

/// Compiles the program for process `tgid`.
///
/// The walk cannot know where a function stopped before its frame was built (a
/// frameless leaf, a prologue) keeps its return address: RBP is still its caller's,
/// so the chain starts at the caller's caller. The key carries RSP, RBP and the two
/// words at RSP, from which user space, which knows the SP delta at the sampled pc
/// from the pclntab, takes the missing caller.
pub fn profile(tgid: u32, layout: Option<&RuntimeLayout>) -> Result<Profile, bpf::AsmError> {
    let mut diags = Vec::new();
    let storage = crate::storage::layout(
        &lang::ast::Script::default(),
        &lang::TypeInfo::default(),
        &mut diags,
    );
    let mut object = storage.object.clone();
    let samples = object.add_map(MapSpec {
        name: "prof_samples".into(),
        kind: MapKind::PerCpuHash,
        key_size: KEY_BYTES,
        value_size: 8,
        max_entries: MAX_SAMPLES,
        flags: 0,
    });
    let counts = object.add_map(MapSpec {
        name: "prof_counts".into(),
        kind: MapKind::PerCpuArray,
        key_size: 4,
        value_size: 8,
        max_entries: 4,
        flags: 0,
    });
    let mut em = Emitter::new(&storage);
    let out = em.end;
    em.e(Insn::mov64(CTX, Reg::R1));
    // Another process, or the idle task: nothing, before any map is touched.
    em.a.call(Helper::GetCurrentPidTgid);
    em.e(Insn::alu64(AluOp::Rsh, Reg::R0, 32));
    em.a.jmp(Cond::Ne, Reg::R0, tgid as i32, out);
    // The scratch area (the key is larger than the BPF stack).
    em.e(Insn::st(Size::W, Reg::R10, -8, 0));
    em.a.ld_map(Reg::R1, storage.scratch);
    em.e(Insn::mov64(Reg::R2, Reg::R10));
    em.e(Insn::alu64(AluOp::Add, Reg::R2, -8));
    em.a.call(Helper::MapLookupElem);
    em.a.jmp(Cond::Eq, Reg::R0, 0, out);
    em.e(Insn::mov64(SCRATCH, Reg::R0));
    // In the kernel (the interrupted CS has privilege level 0): counted only.
    let user = em.a.label();
    em.ctx_reg(Reg::R0, X86Reg::Cs);
    em.e(Insn::alu64(AluOp::And, Reg::R0, 3));
    em.a.jmp(Cond::Eq, Reg::R0, 3, user);
    bump(&mut em, counts, Counter::Kernel);
    em.a.ja(out);
    em.a.bind(user);
    // The key, zeroed (the frames past the walk's are part of it), then filled.
    let key = em.alloc(8 * KEY_HEAD + 8 + 8 * bpf::script::MAX_FRAMES);
    for w in 0..KEY_BYTES / 8 {
        em.store_imm(key + 8 * w, Size::DW, 0);
    }
    goid(&mut em, layout, key);
    em.ctx_reg(Reg::R3, X86Reg::Rsp);
    em.store(key + 8, Reg::R3);
    em.ctx_reg(Reg::R0, X86Reg::Rbp);
    em.store(key + 16, Reg::R0);
    em.addr(Reg::R1, key + 24);
    em.e(Insn::mov64(Reg::R2, 16));
    em.a.call(Helper::ProbeReadUser);
    crate::backtrace::sample_walk(&mut em, layout.copied(), key + 8 * KEY_HEAD);
    // samples[key] += 1 on this CPU, or = 1.
    let (found, done) = (em.a.label(), em.a.label());
    em.a.ld_map(Reg::R1, samples);
    em.addr(Reg::R2, key);
    em.a.call(Helper::MapLookupElem);
    em.a.jmp(Cond::Ne, Reg::R0, 0, found);
    let one = em.alloc(8);
    em.store_imm(one, Size::DW, 1);
    em.a.ld_map(Reg::R1, samples);
    em.addr(Reg::R2, key);
    em.addr(Reg::R3, one);
    em.e(Insn::mov64(Reg::R4, 0));
    em.a.call(Helper::MapUpdateElem);
    em.a.jmp(Cond::Eq, Reg::R0, 0, done);
    bump(&mut em, counts, Counter::Dropped);
    em.a.ja(out);
    em.a.bind(found);
    em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
    em.e(Insn::alu64(AluOp::Add, Reg::R1, 1));
    em.e(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
    em.a.bind(done);
    bump(&mut em, counts, Counter::User);
    em.a.bind(out);
    let abort = em.abort;
    em.a.bind(abort);
    em.e(Insn::mov64(Reg::R0, 0));
    em.a.exit();
    let high = em.high;
    let insns = em.a.finish()?;
    if let Some(m) = object.maps.get_mut(storage.scratch.0 as usize) {
        m.value_size = (high + storage.max_string).div_ceil(8) * 8;
    }
    object
        .programs
        .push(ProgramSpec::new("gotap_profile", insns));
    Ok(Profile {
        object,
        samples,
        counts,
    })
}

/// `scratch[at]` = the id of the goroutine the thread runs (`g.m.curg.goid`, so
/// that a sample on the system stack is its goroutine's), or 0 where R14 is not a
/// `g` (assembly, a thread Go did not make).
fn goid(em: &mut Emitter<'_>, layout: Option<&RuntimeLayout>, at: u32) {
    let Some(l) = layout else {
        return;
    };
    let done = em.a.label();
    let t = em.alloc(8);
    em.ctx_reg(Reg::R7, X86Reg::R14);
    em.a.jmp(Cond::Eq, Reg::R7, 0, done);
    for (off, last) in [(l.g_m, false), (l.m_curg, false), (l.g_goid, true)] {
        em.e(Insn::mov64(Reg::R3, Reg::R7));
        em.imm(Reg::R4, off as i64);
        em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R4));
        em.addr(Reg::R1, t);
        em.e(Insn::mov64(Reg::R2, 8));
        em.a.call(Helper::ProbeReadUser);
        em.a.jmp(Cond::Ne, Reg::R0, 0, done);
        em.load(Reg::R7, t);
        if !last {
            em.a.jmp(Cond::Eq, Reg::R7, 0, done);
        }
    }
    em.store(at, Reg::R7);
    em.a.bind(done);
    em.release(t);
}

/// Adds one to counter `which` of this CPU. Clobbers R0–R3.
fn bump(em: &mut Emitter<'_>, counts: MapId, which: Counter) {
    let skip = em.a.label();
    let k = em.alloc(8);
    em.store_imm(k, Size::W, which as i32);
    em.a.ld_map(Reg::R1, counts);
    em.addr(Reg::R2, k);
    em.a.call(Helper::MapLookupElem);
    em.a.jmp(Cond::Eq, Reg::R0, 0, skip);
    em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
    em.e(Insn::alu64(AluOp::Add, Reg::R1, 1));
    em.e(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
    em.a.bind(skip);
    em.release(k);
}
