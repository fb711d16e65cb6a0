//! User backtraces in kernel probes: a bounded frame-pointer walk that knows about
//! goroutines, and the built-ins made of it (`print_ubacktrace*()`, `ubacktrace()`,
//! `sprint_ubacktrace()`, `print_usyms()`).
//!
//! The walk fills a stack buffer in scratch: a count word (frames in the low 8 bits,
//! `FIRST_IS_RETURN`, and the load bias of the binary: see `bpf::script`) then up
//! to `MAX_FRAMES` addresses, innermost first.
//!
//! - The first frame is the probe's pc. Its caller comes from the pclntab SP delta
//!   at the probe address (known per site at compile time): the return address is
//!   at `[rsp + delta]`. When RBP already points at this frame's saved BP
//!   (`rbp == rsp + delta - 8`) the walk goes on from `[rbp]`, else RBP is still the
//!   caller's (a function's entry, a `RET`, a frameless or assembly function) and
//!   the walk goes on from RBP itself, so no caller is skipped or seen twice.
//! - Then the RBP chain: `[bp]` is the caller's BP, `[bp + 8]` a return address,
//!   until BP is 0, a read faults, BP stops growing, or the buffer is full.
//! - On the system stack (`g == g.m.g0`, where g is R14 in Go's register ABI, as in
//!   `runtime.newstack`, `systemstack` callees, `mcall` callees) the chain is only
//!   followed within g0's stack bounds; the walk then goes on with the user
//!   goroutine `m.curg` from where it was switched out, as the Go runtime's own
//!   traceback does: `curg.sched.pc`, then `[curg.sched.sp]`, then the chain from
//!   `curg.sched.bp`. `[sched.sp]` is the return address of a function stopped at
//!   its entry (`morestack` is called before the frame is built, `systemstack`
//!   is frameless), but not after `mcall`, whose caller has a frame: the frame is
//!   sent marked `TENTATIVE` and user space keeps it only when the pclntab says
//!   the SP delta at `sched.pc` is 0. Only functions of `runtime.*` and
//!   `internal/*` run on g0, so only probes in them carry this check.
//! - Deeper frames follow the frame-pointer chain, which is right for Go code
//!   (frames are built before any call) except for a function stopped at its
//!   prologue's call of `morestack`: a probe in `runtime.morestack` itself misses
//!   that function's caller (probe `runtime.newstack` instead, which is walked
//!   from `g.sched`).
//! - A sample (`timer.profile`, `gotap profile`) has no site whose SP delta is
//!   known when the program is compiled: [`sample_walk`] sends the words at RSP
//!   and RSP + 8 that may be the return address of a function sampled before its
//!   frame was built, marked `TENTATIVE`, and user space keeps the one the pclntab's
//!   SP delta at the sampled pc names.
//! - In ABI0 assembly R14 need not hold g. The runtime keeps g in a TLS slot
//!   (`-8(FS)` on linux/amd64 with internal linking, `runtime.tlsg`), but reading
//!   it needs the task's `thread.fsbase`, which needs BTF offsets of `task_struct`:
//!   not done, so a probe in such code whose R14 is not g gets the plain walk.
//!
//! `ubacktrace()` is an id, not the addresses: the walk is hashed (64-bit FNV-1a
//! over the count word and frames, its top bit cleared) and stored in the script's
//! stack map under that id, and the value is the id itself, a `stack`
//! (`bpf::script::STACK_ID_MASK`): 8 bytes in keys, values and records, like a long.
//! Only user space turns it into text, from the stack map: the addresses in hex as
//! stap prints `ubacktrace()`, or the symbolised frames for a value with
//! `STACK_SYMS` set (`sprint_ubacktrace()`, and what `print_usyms()` sends).

use bpf::script::{
    AT_SP_8, EVENT_HEADER, EventSpec, FIRST_IS_RETURN, Field, FieldKind, MAX_FRAMES, STACK_SYMS,
    TENTATIVE,
};
use bpf::{AluOp, Cond, Helper, Insn, Reg, Size, X86Reg};
use lang::ast::Expr;

use gobin::layout::RuntimeLayout;

use crate::emit::{Emitter, SCRATCH, add_event};
use crate::lower::Lower;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Bytes of a stack buffer: the count word and the frames.
pub const STACK_BYTES: u32 = 8 + 8 * MAX_FRAMES;

/// `print_ubacktrace()`, `print_ubacktrace_fileline()` and
/// `print_ubacktrace_fileline(pc, sp, lr)`: a record of the walk, as long as its
/// frames.
pub fn print(l: &mut Lower<'_, '_>, args: &[Expr], fileline: bool) {
    let id = add_event(
        l.events,
        l.events_from,
        EventSpec::Backtrace {
            count: 0,
            frames: 8,
            max: MAX_FRAMES,
            fileline,
        },
    );
    let rec = l.em.alloc(EVENT_HEADER + STACK_BYTES);
    walk(l, args, rec + EVENT_HEADER);
    let em = &mut l.em;
    em.header(rec, id);
    // As `Emitter::output`, but as long as the frames: wake user space only past
    // the watermark of unread data.
    let wake = em.alloc(8);
    em.a.ld_map(Reg::R1, em.storage.ringbuf);
    em.e(Insn::mov64(Reg::R2, 0)); // BPF_RB_AVAIL_DATA
    em.a.call(Helper::RingbufQuery);
    em.store_imm(wake, Size::DW, bpf::helper::RB_NO_WAKEUP);
    let quiet = em.a.label();
    em.a.jmp(
        Cond::Lt,
        Reg::R0,
        crate::emit::WAKEUP_WATERMARK as i32,
        quiet,
    );
    em.store_imm(wake, Size::DW, bpf::helper::RB_FORCE_WAKEUP);
    em.a.bind(quiet);
    // R3 = header + count word + 8 * frames, which the verifier sees bounded.
    em.load(Reg::R3, rec + EVENT_HEADER);
    em.e(Insn::alu64(AluOp::And, Reg::R3, 0xff));
    let small = em.a.label();
    em.a.jmp(Cond::Le, Reg::R3, MAX_FRAMES as i32, small);
    em.e(Insn::mov64(Reg::R3, MAX_FRAMES as i32));
    em.a.bind(small);
    em.e(Insn::alu64(AluOp::Lsh, Reg::R3, 3));
    em.e(Insn::alu64(AluOp::Add, Reg::R3, (EVENT_HEADER + 8) as i32));
    em.a.ld_map(Reg::R1, em.storage.ringbuf);
    em.addr(Reg::R2, rec);
    em.load(Reg::R4, wake);
    em.a.call(Helper::RingbufOutput);
    let ok = em.a.label();
    em.a.jmp(Cond::Eq, Reg::R0, 0, ok);
    em.count(bpf::script::counter::LOST_EVENTS);
    em.a.bind(ok);
    em.release(rec);
}

/// `ubacktrace()` (`syms` false) or `sprint_ubacktrace()`: the walk, stored in the
/// stack map under its id; the stack value in R0.
pub fn stack_value(l: &mut Lower<'_, '_>, e: &Expr, syms: bool) {
    let Some(stacks) = l.stacks else {
        l.em.error(e.span, "internal error: no stack map for ubacktrace()");
        l.em.e(Insn::mov64(Reg::R0, 0));
        return;
    };
    let buf = l.em.alloc(STACK_BYTES);
    walk(l, &[], buf);
    let em = &mut l.em;
    // R7 = FNV-1a of the count word and the frames.
    let key = em.alloc(8);
    em.imm(Reg::R7, FNV_OFFSET as i64);
    em.imm(Reg::R5, FNV_PRIME as i64);
    em.load(Reg::R0, buf);
    em.e(Insn::alu64(AluOp::Xor, Reg::R7, Reg::R0));
    em.e(Insn::alu64(AluOp::Mul, Reg::R7, Reg::R5));
    // The index starts as a value read back from scratch, which the verifier sees
    // as any number: with `may_goto` it checks the body for a range of indexes once,
    // not once for each of 0, 1, 2 … (see `chain`).
    em.store_imm(key, Size::DW, 0);
    em.load(Reg::R8, key);
    let top = em.a.label();
    let done = em.a.label();
    em.a.bind(top);
    em.a.may_goto(done);
    em.a.jmp(Cond::Ge, Reg::R8, MAX_FRAMES as i32, done);
    em.load(Reg::R0, buf);
    em.e(Insn::alu64(AluOp::And, Reg::R0, 0xff));
    em.a.jmp(Cond::Ge, Reg::R8, Reg::R0, done);
    em.e(Insn::mov64(Reg::R1, Reg::R8));
    em.e(Insn::alu64(AluOp::Lsh, Reg::R1, 3));
    em.e(Insn::alu64(AluOp::Add, Reg::R1, SCRATCH));
    let fo = em.off(buf + 8);
    em.e(Insn::ldx(Size::DW, Reg::R0, Reg::R1, fo));
    em.e(Insn::alu64(AluOp::Xor, Reg::R7, Reg::R0));
    em.e(Insn::alu64(AluOp::Mul, Reg::R7, Reg::R5));
    em.e(Insn::alu64(AluOp::Add, Reg::R8, 1));
    em.a.ja(top);
    em.a.bind(done);
    // The id leaves the top bit to STACK_SYMS.
    em.e(Insn::alu64(AluOp::Lsh, Reg::R7, 1));
    em.e(Insn::alu64(AluOp::Rsh, Reg::R7, 1));
    em.store(key, Reg::R7);
    // The stack under its id; one already there is the same stack.
    em.map_key_args(stacks, key);
    em.addr(Reg::R3, buf);
    em.e(Insn::mov64(Reg::R4, 1)); // BPF_NOEXIST
    em.a.call(Helper::MapUpdateElem);
    em.load(Reg::R0, key);
    if syms {
        em.a.ld_imm64(Reg::R1, STACK_SYMS);
        em.e(Insn::alu64(AluOp::Or, Reg::R0, Reg::R1));
    }
    em.release(buf);
}

/// `print_usyms(s)`: a record of the stack value `s` with [`STACK_SYMS`] set, which
/// user space prints as the stack's symbolised frames.
pub fn print_usyms(l: &mut Lower<'_, '_>, arg: &Expr) {
    let id = add_event(
        l.events,
        l.events_from,
        EventSpec::Printf {
            format: b"%s".to_vec(),
            args: vec![Field {
                offset: 0,
                kind: FieldKind::Stack,
            }],
        },
    );
    let rec = l.em.alloc(EVENT_HEADER + 8);
    l.long(arg);
    let em = &mut l.em;
    em.a.ld_imm64(Reg::R1, STACK_SYMS);
    em.e(Insn::alu64(AluOp::Or, Reg::R0, Reg::R1));
    em.store(rec + EVENT_HEADER, Reg::R0);
    em.header(rec, id);
    em.output(rec, EVENT_HEADER + 8);
    em.release(rec);
}

/// Fills the stack buffer at `scratch[buf]` (count word, then frames). With
/// `(pc, sp, lr)` (the seed's `m.morebuf`) the first frame is `pc`; the frame
/// pointer belonging to it is the one `runtime.morestack` saved in `curg.sched.bp`
/// when `sp` is `curg.sched.sp + 8` (the caller's SP, as `morestack` records it);
/// otherwise the walk continues from the probe's RBP.
fn walk(l: &mut Lower<'_, '_>, args: &[Expr], buf: u32) {
    let frames = buf + 8;
    let bp_slot = l.em.alloc(8);
    // The bounds of the stack the first chain may follow: g0's on the system stack.
    let bounds = l.em.alloc(16);
    // The user goroutine to go on with after the first chain, or 0.
    let curg = l.em.alloc(8);
    l.em.store_imm(bounds, Size::DW, 0);
    l.em.imm(Reg::R0, -1);
    l.em.store(bounds + 8, Reg::R0);
    l.em.store_imm(curg, Size::DW, 0);
    let mut flags = 0u64;
    if args.is_empty() && l.site.sample {
        let layout = l.env.target.layout().copied();
        let text_len = l.env.target.binary().text_len();
        l.em.release(bp_slot);
        sample_walk(&mut l.em, layout, text_len, buf);
        return;
    }
    if let [pc, sp, _lr] = args {
        flags = FIRST_IS_RETURN;
        l.long(pc);
        l.em.store(frames, Reg::R0);
        l.long(sp);
        let sp_slot = l.em.alloc(8);
        l.em.store(sp_slot, Reg::R0);
        l.em.ctx_reg(Reg::R0, X86Reg::Rbp);
        l.em.store(bp_slot, Reg::R0);
        if let Some(layout) = l.env.target.layout().copied()
            && crate::builtins::user_g(l)
        {
            let keep = l.em.a.label();
            l.em.a.jmp(Cond::Eq, Reg::R7, 0, keep);
            let sched = layout.g_sched as i64;
            l.em.read_user_u64(Reg::R8, Reg::R7, sched + layout.gobuf_sp as i64);
            l.em.e(Insn::alu64(AluOp::Add, Reg::R8, 8));
            l.em.load(Reg::R0, sp_slot);
            l.em.a.jmp(Cond::Ne, Reg::R0, Reg::R8, keep);
            l.em.read_user_u64(Reg::R0, Reg::R7, sched + layout.gobuf_bp as i64);
            l.em.store(bp_slot, Reg::R0);
            l.em.a.bind(keep);
        }
        l.em.store_imm(buf, Size::DW, 1);
    } else {
        // Only the runtime runs on the system stack: elsewhere the check (two reads
        // of target memory a hit) is left out.
        let f = l.site.function.as_str();
        if f.starts_with("runtime.") || f.starts_with("internal/") || f.is_empty() {
            let layout = l.env.target.layout().copied();
            system_stack(&mut l.em, layout, bounds, curg);
        }
        let em = &mut l.em;
        em.ctx_reg(Reg::R0, X86Reg::Rip);
        em.store(frames, Reg::R0);
        em.ctx_reg(Reg::R0, X86Reg::Rbp);
        em.store(bp_slot, Reg::R0);
        em.store_imm(buf, Size::DW, 1);
        let delta = l.site.addr.and_then(|a| l.env.target.sp_delta(a));
        if let Some(d) = delta.and_then(|d| i32::try_from(d).ok()) {
            // R7 = where the return address is; R8 = the probe's RBP.
            em.ctx_reg(Reg::R7, X86Reg::Rsp);
            em.e(Insn::alu64(AluOp::Add, Reg::R7, d));
            em.ctx_reg(Reg::R8, X86Reg::Rbp);
            em.read_user_u64(Reg::R0, Reg::R7, 0);
            em.store(frames + 8, Reg::R0);
            let n2 = em.a.label();
            em.a.jmp(Cond::Eq, Reg::R0, 0, n2);
            em.store_imm(buf, Size::DW, 2);
            em.a.bind(n2);
            // The frame is built when RBP points just below the return address.
            em.e(Insn::alu64(AluOp::Sub, Reg::R7, 8));
            let not_built = em.a.label();
            em.a.jmp(Cond::Ne, Reg::R8, Reg::R7, not_built);
            em.read_user_u64(Reg::R0, Reg::R8, 0);
            em.store(bp_slot, Reg::R0);
            em.a.bind(not_built);
        }
    }
    chain(&mut l.em, buf, bp_slot, bounds);
    let layout = l.env.target.layout().copied();
    on_curg(&mut l.em, layout, buf, bp_slot, bounds, curg);
    let em = &mut l.em;
    em.load(Reg::R0, buf);
    if flags != 0 {
        em.imm(Reg::R1, flags as i64);
        em.e(Insn::alu64(AluOp::Or, Reg::R0, Reg::R1));
    }
    if let Some(addr) = l.site.addr {
        // The load bias: the pc now minus the probe's address as linked.
        em.ctx_reg(Reg::R1, X86Reg::Rip);
        em.imm(Reg::R2, addr as i64);
        em.e(Insn::alu64(AluOp::Sub, Reg::R1, Reg::R2));
        em.e(Insn::alu64(AluOp::And, Reg::R1, -4096));
        em.e(Insn::alu64(AluOp::Or, Reg::R0, Reg::R1));
    }
    em.store(buf, Reg::R0);
    l.em.release(bp_slot);
}

/// After the first chain, on g0 (`scratch[curg]` not 0): the user goroutine from
/// where it was switched out, then its chain.
fn on_curg(
    em: &mut Emitter<'_>,
    layout: Option<RuntimeLayout>,
    buf: u32,
    bp_slot: u32,
    bounds: u32,
    curg: u32,
) {
    let Some(layout) = layout else {
        return;
    };
    let frames = buf + 8;
    // On g0: the user goroutine from where it was switched out.
    let done = em.a.label();
    em.load(Reg::R7, curg);
    em.a.jmp(Cond::Eq, Reg::R7, 0, done);
    em.load(Reg::R8, buf);
    em.e(Insn::alu64(AluOp::And, Reg::R8, 0xff));
    em.a.jmp(Cond::Ge, Reg::R8, (MAX_FRAMES - 2) as i32, done);
    let sched = layout.g_sched as i64;
    em.read_user_u64(Reg::R0, Reg::R7, sched + layout.gobuf_pc as i64);
    em.a.jmp(Cond::Eq, Reg::R0, 0, done);
    put_frame(em, frames, Reg::R8, Reg::R0);
    em.e(Insn::alu64(AluOp::Add, Reg::R8, 1));
    em.read_user_u64(Reg::R1, Reg::R7, sched + layout.gobuf_sp as i64);
    em.read_user_u64(Reg::R0, Reg::R1, 0);
    let none = em.a.label();
    em.a.jmp(Cond::Eq, Reg::R0, 0, none);
    em.a.ld_imm64(Reg::R1, TENTATIVE);
    em.e(Insn::alu64(AluOp::Or, Reg::R0, Reg::R1));
    put_frame(em, frames, Reg::R8, Reg::R0);
    em.e(Insn::alu64(AluOp::Add, Reg::R8, 1));
    em.a.bind(none);
    em.store(buf, Reg::R8);
    em.read_user_u64(Reg::R0, Reg::R7, sched + layout.gobuf_bp as i64);
    em.store(bp_slot, Reg::R0);
    em.store_imm(bounds, Size::DW, 0);
    em.imm(Reg::R0, -1);
    em.store(bounds + 8, Reg::R0);
    chain(em, buf, bp_slot, bounds);
    em.a.bind(done);
}

/// The walk of a sample (a perf event's program, no probe site; `gotap profile`'s
/// and a script's `ubacktrace()` in `timer.profile`): fills the stack buffer at
/// `scratch[buf]` from the interrupted registers as [`walk`] does for a probe in the
/// runtime: the pc, the words that may be its caller ([`unbuilt_callers`]), the RBP
/// chain, and from g0 on into `m.curg`. The count word carries no load bias (no site
/// to measure it from). `text_len` is the span of the binary's functions.
pub fn sample_walk(em: &mut Emitter<'_>, layout: Option<RuntimeLayout>, text_len: u64, buf: u32) {
    let frames = buf + 8;
    let bp_slot = em.alloc(8);
    let bounds = em.alloc(16);
    let curg = em.alloc(8);
    em.store_imm(bounds, Size::DW, 0);
    em.imm(Reg::R0, -1);
    em.store(bounds + 8, Reg::R0);
    em.store_imm(curg, Size::DW, 0);
    system_stack(em, layout, bounds, curg);
    em.ctx_reg(Reg::R0, X86Reg::Rip);
    em.store(frames, Reg::R0);
    em.ctx_reg(Reg::R0, X86Reg::Rbp);
    em.store(bp_slot, Reg::R0);
    em.store_imm(buf, Size::DW, 1);
    unbuilt_callers(em, text_len, buf);
    chain(em, buf, bp_slot, bounds);
    on_curg(em, layout, buf, bp_slot, bounds, curg);
    em.release(bp_slot);
}

/// After the sampled pc (the buffer holds one frame): the words that are its
/// function's return address if it was sampled before its frame was built, which
/// the RBP chain misses (RBP is still the caller's, so the chain starts at the
/// caller's caller): a frameless leaf, a prologue, an epilogue after `pop rbp`. The
/// word at RSP is it when the SP delta at the pc is 0, the word at RSP + 8 when it
/// is 8 (after `push rbp`); only the pclntab says which, so both are sent
/// [`TENTATIVE`] (the second with [`AT_SP_8`]) and user space keeps the one the SP
/// delta names, if any (`runtime::symbolize::Symbolizer::logical`). A word is sent
/// only when RBP does not point just below it (that frame is built, and the chain
/// has its caller), when it is within `text_len` of the pc and follows a call
/// instruction (a return address into the binary), and the one at RSP + 8 only when the word at RSP is RBP (as `push
/// rbp` left it): other words, a function's locals or stale return addresses below
/// its frame, would only make stacks that print alike differ (`ubacktrace()` is a
/// hash of the words sent).
fn unbuilt_callers(em: &mut Emitter<'_>, text_len: u64, buf: u32) {
    let frames = buf + 8;
    let span = text_len.min(i32::MAX as u64 / 2) as i32;
    let pair = em.alloc(16);
    let done = em.a.label();
    em.ctx_reg(Reg::R3, X86Reg::Rsp);
    em.addr(Reg::R1, pair);
    em.e(Insn::mov64(Reg::R2, 16));
    em.a.call(Helper::ProbeReadUser);
    em.a.jmp(Cond::Ne, Reg::R0, 0, done);
    for (k, flags) in [(0u32, TENTATIVE), (1, TENTATIVE | AT_SP_8)] {
        let skip = em.a.label();
        // Built: RBP == RSP + 8k - 8.
        em.ctx_reg(Reg::R1, X86Reg::Rsp);
        em.e(Insn::alu64(AluOp::Add, Reg::R1, 8 * k as i32 - 8));
        em.ctx_reg(Reg::R2, X86Reg::Rbp);
        em.a.jmp(Cond::Eq, Reg::R1, Reg::R2, skip);
        if k == 1 {
            // Between `push rbp` and `mov rbp, rsp` the word at RSP is RBP itself.
            em.load(Reg::R1, pair);
            em.a.jmp(Cond::Ne, Reg::R1, Reg::R2, skip);
        }
        // |word - pc| < span, as (word - pc + span) < 2 span unsigned.
        em.load(Reg::R0, pair + 8 * k);
        em.a.jmp(Cond::Eq, Reg::R0, 0, skip);
        em.ctx_reg(Reg::R1, X86Reg::Rip);
        em.e(Insn::mov64(Reg::R2, Reg::R0));
        em.e(Insn::alu64(AluOp::Sub, Reg::R2, Reg::R1));
        em.e(Insn::alu64(AluOp::Add, Reg::R2, span));
        em.a.jmp(Cond::Ge, Reg::R2, 2 * span, skip);
        follows_call(em, pair + 8 * k, skip);
        em.load(Reg::R0, pair + 8 * k);
        em.a.ld_imm64(Reg::R1, flags);
        em.e(Insn::alu64(AluOp::Or, Reg::R0, Reg::R1));
        em.load(Reg::R8, buf);
        em.e(Insn::alu64(AluOp::And, Reg::R8, 0xff));
        em.a.jmp(Cond::Ge, Reg::R8, MAX_FRAMES as i32, skip);
        put_frame(em, frames, Reg::R8, Reg::R0);
        em.e(Insn::alu64(AluOp::Add, Reg::R8, 1));
        em.store(buf, Reg::R8);
        em.a.bind(skip);
    }
    em.a.bind(done);
    em.release(pair);
}

/// Jumps to `not` unless the address at `scratch[at]` follows a call instruction as
/// Go emits them: `CALL rel32` (`e8` five bytes before), `CALL reg` or `CALL
/// (reg)` (`ff` two bytes before, after a REX prefix or not), `CALL disp8(reg)`
/// (`ff` three bytes before). Another word that passes is only sent for nothing.
fn follows_call(em: &mut Emitter<'_>, at: u32, not: bpf::Label) {
    let code = em.alloc(8);
    let yes = em.a.label();
    em.load(Reg::R3, at);
    em.e(Insn::alu64(AluOp::Sub, Reg::R3, 8));
    em.addr(Reg::R1, code);
    em.e(Insn::mov64(Reg::R2, 8));
    em.a.call(Helper::ProbeReadUser);
    em.a.jmp(Cond::Ne, Reg::R0, 0, not);
    // The 8 bytes before the address, little-endian: the byte `n` before it is
    // bits 64 - 8n to 71 - 8n.
    for (before, byte) in [(5, 0xe8), (2, 0xff), (3, 0xff)] {
        em.load(Reg::R1, code);
        em.e(Insn::alu64(AluOp::Rsh, Reg::R1, 64 - 8 * before));
        em.e(Insn::alu64(AluOp::And, Reg::R1, 0xff));
        em.a.jmp(Cond::Eq, Reg::R1, byte, yes);
    }
    em.a.ja(not);
    em.a.bind(yes);
    em.release(code);
}

/// `frames[R_idx] = R_val` (`idx` below `MAX_FRAMES`, checked by the caller).
fn put_frame(em: &mut Emitter<'_>, frames: u32, idx: Reg, val: Reg) {
    em.e(Insn::mov64(Reg::R1, idx));
    em.e(Insn::alu64(AluOp::Lsh, Reg::R1, 3));
    em.e(Insn::alu64(AluOp::Add, Reg::R1, SCRATCH));
    let fo = em.off(frames);
    em.e(Insn::stx(Size::DW, Reg::R1, fo, val));
}

/// On the system stack (g is `m.g0`): its bounds at `scratch[bounds]` and the user
/// goroutine at `scratch[curg]`; both left alone otherwise. (On the signal stack,
/// `m.gsignal`, the goroutine's place is in the signal's context, not in
/// `curg.sched`, which is older: the walk stays on the signal stack.)
fn system_stack(em: &mut Emitter<'_>, layout: Option<RuntimeLayout>, bounds: u32, curg: u32) {
    let Some(layout) = layout else {
        return;
    };
    let done = em.a.label();
    let t = em.alloc(8);
    em.ctx_reg(Reg::R7, X86Reg::R14);
    em.a.jmp(Cond::Eq, Reg::R7, 0, done);
    // R14 may not be g (assembly, other threads): these reads may fail quietly.
    read_quiet(em, t, Reg::R7, layout.g_m, done);
    em.load(Reg::R8, t);
    em.a.jmp(Cond::Eq, Reg::R8, 0, done);
    read_quiet(em, t, Reg::R8, layout.m_g0, done);
    em.load(Reg::R0, t);
    em.a.jmp(Cond::Ne, Reg::R0, Reg::R7, done);
    read_quiet(em, t, Reg::R8, layout.m_curg, done);
    em.load(Reg::R0, t);
    em.a.jmp(Cond::Eq, Reg::R0, 0, done);
    em.a.jmp(Cond::Eq, Reg::R0, Reg::R7, done);
    em.store(curg, Reg::R0);
    read_quiet(em, t, Reg::R7, layout.g_stack_lo, done);
    em.load(Reg::R0, t);
    em.store(bounds, Reg::R0);
    read_quiet(em, t, Reg::R7, layout.g_stack_hi, done);
    em.load(Reg::R0, t);
    em.store(bounds + 8, Reg::R0);
    em.a.bind(done);
    em.release(t);
}

/// `scratch[dst] = *(u64 *)(addr + off)`, or a jump to `fail` (not counted).
fn read_quiet(em: &mut Emitter<'_>, dst: u32, addr: Reg, off: u64, fail: bpf::Label) {
    em.e(Insn::mov64(Reg::R3, addr));
    em.imm(Reg::R4, off as i64);
    em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R4));
    em.addr(Reg::R1, dst);
    em.e(Insn::mov64(Reg::R2, 8));
    em.a.call(Helper::ProbeReadUser);
    em.a.jmp(Cond::Ne, Reg::R0, 0, fail);
}

/// Follows the RBP chain from `scratch[bp_slot]`, appending return addresses to the
/// buffer while BP stays within `scratch[bounds]` and grows.
fn chain(em: &mut Emitter<'_>, buf: u32, bp_slot: u32, bounds: u32) {
    let frames = buf + 8;
    let top = em.a.label();
    let done = em.a.label();
    let pair = em.alloc(16);
    em.load(Reg::R8, buf);
    em.e(Insn::alu64(AluOp::And, Reg::R8, 0xff));
    em.load(Reg::R7, bp_slot);
    em.a.bind(top);
    // The frame count bounds the walk; `may_goto` lets the verifier check the body
    // once instead of once per frame (the count is a range at the loop's head), which
    // took it 15 ms for a program with two walks.
    em.a.may_goto(done);
    em.a.jmp(Cond::Ge, Reg::R8, MAX_FRAMES as i32, done);
    em.a.jmp(Cond::Eq, Reg::R7, 0, done);
    em.load(Reg::R0, bounds);
    em.a.jmp(Cond::Lt, Reg::R7, Reg::R0, done);
    em.load(Reg::R0, bounds + 8);
    em.a.jmp(Cond::Ge, Reg::R7, Reg::R0, done);
    em.e(Insn::mov64(Reg::R3, Reg::R7));
    em.addr(Reg::R1, pair);
    em.e(Insn::mov64(Reg::R2, 16));
    em.a.call(Helper::ProbeReadUser);
    em.a.jmp(Cond::Ne, Reg::R0, 0, done);
    em.load(Reg::R0, pair + 8);
    em.a.jmp(Cond::Eq, Reg::R0, 0, done);
    put_frame(em, frames, Reg::R8, Reg::R0);
    em.e(Insn::alu64(AluOp::Add, Reg::R8, 1));
    // Callers' frames are above: a BP that does not grow ends the walk.
    em.load(Reg::R0, pair);
    em.a.jmp(Cond::Le, Reg::R0, Reg::R7, done);
    em.e(Insn::mov64(Reg::R7, Reg::R0));
    em.a.ja(top);
    em.a.bind(done);
    em.store(buf, Reg::R8);
    em.release(pair);
}

/// Stacks the map holds; past this, new stacks are not stored (their names still
/// are, and print as unknown stacks).
const MAX_STACKS: u32 = 16 * 1024;

/// Adds the stack map to `maps` (numbered from `first_map`) when the script calls a
/// built-in that needs it (`ubacktrace()`, `sprint_ubacktrace()`).
pub fn stack_map(
    script: &lang::ast::Script,
    info: &lang::TypeInfo,
    first_map: usize,
    maps: &mut Vec<bpf::MapSpec>,
) -> Option<bpf::MapId> {
    let mut used = false;
    let mut visit = |e: &Expr| {
        if let Some(lang::Callee::Builtin(id)) = info.callee(e) {
            used |= id.row().needs.has(lang::builtins::Needs::STACK_MAP);
        }
    };
    for item in &script.items {
        let body = match item {
            lang::ast::Item::Probe(p) => &p.body,
            lang::ast::Item::Alias(a) => &a.body,
            lang::ast::Item::Function(f) => &f.body,
            _ => continue,
        };
        for s in &body.stmts {
            lang::ast::walk_stmt(s, &mut visit);
        }
    }
    if !used {
        return None;
    }
    let id = bpf::MapId((first_map + maps.len()) as u32);
    maps.push(bpf::MapSpec {
        name: "gotap_stacks".into(),
        kind: bpf::MapKind::Hash,
        key_size: 8,
        value_size: STACK_BYTES,
        max_entries: MAX_STACKS,
        flags: 0,
    });
    Some(id)
}
