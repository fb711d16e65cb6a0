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
    /// Why no uprobe may go at `addr`, if none may (`int 3` in `runtime.abort`).
    pub refusal: Option<Refusal>,
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
    // The site was reached by decoding from the entry, so it starts an instruction.
    let refusal = match first {
        Some(i) => {
            let at = (i.ip() - f.entry.0) as usize;
            kernel_refusal(&i, code.get(at..at + i.len()).unwrap_or(&[]))
        }
        None => Some(Refusal::NotInstructionStart),
    };
    Ok(ProbeSite {
        addr,
        after_prologue: after.is_some(),
        sp_delta,
        emulated: first.is_some_and(|i| emulated(&i)),
        refusal,
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
    Decoded::of(bin, f).is_ok_and(|c| c.instruction_at(addr).is_some())
}

/// Why no uprobe may go at an address: the kernel would refuse it (and a multi-uprobe
/// link with it would fail whole, error 524), or it would harm the target.
///
/// The kernel's rules are those of Linux's x86 uprobe code (`uprobe_init_insn`,
/// `prepare_uprobe`), checked one by one against Linux 6.18 on real Go code: it
/// refuses `int3`, an instruction with a `lock` or `cs`/`ds`/`es`/`ss` prefix, and
/// an opcode outside its table of instructions it can single-step or emulate, for a
/// VEX- or EVEX-encoded instruction its opcode byte after the prefix (so `vmovdqu`,
/// opcode 0x6f like `outs`, is refused and `vzeroupper` taken). Every two-byte
/// opcode (`0f xx`: `syscall`, `cpuid`, `mfence`, `ud2`) is taken. An address inside
/// an instruction the kernel takes without a word, and the program then runs a
/// corrupted instruction: gotap checks that first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The address is not where one of the function's instructions starts (a line
    /// of assembly after `LOCK`, which the line table puts one byte into the
    /// locked instruction).
    NotInstructionStart,
    /// The function's code does not decode up to the address (data in text, or
    /// assembly the decoder does not know).
    Undecodable,
    /// A trap: `int3` (`runtime.breakpoint`, the padding between functions) or
    /// `int N` (`runtime.abort`).
    Trap,
    /// A prefix the kernel refuses: `lock` (0xf0) or a segment override.
    Prefix(u8),
    /// An opcode the kernel neither emulates nor single-steps.
    Opcode(u8),
    /// A VEX- or EVEX-encoded (AVX) instruction. The kernel takes some of them,
    /// but single-stepping them out of line corrupted the target here (Linux 6.18:
    /// probes on the two `vpcmpeqb ymm` of `indexbytebody` together killed a Go
    /// program with SIGSEGV within a second, every time), so gotap places none.
    Vector,
    /// `syscall`: single-stepped out of line, it returns to the copy in the
    /// kernel's execute-out-of-line page, so the new thread of a `clone` (and the
    /// context `rt_sigreturn` restores) would run from there.
    Syscall,
    /// `pushf`: single-stepped, it pushes the trap flag the kernel set for the
    /// step, and the `popf` that restores it traps (`runtime.asyncPreempt` died of
    /// SIGTRAP).
    PushFlags,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotInstructionStart => f.write_str("not the start of an instruction"),
            Refusal::Undecodable => f.write_str("the code there does not decode"),
            Refusal::Trap => f.write_str("a trap (int3, int N), which the kernel refuses"),
            Refusal::Prefix(0xf0) => {
                f.write_str("a lock-prefixed instruction, which the kernel refuses")
            }
            Refusal::Prefix(p) => write!(
                f,
                "an instruction with segment prefix {p:#04x}, which the kernel refuses"
            ),
            Refusal::Opcode(o) => write!(f, "opcode {o:#04x}, which the kernel cannot single-step"),
            Refusal::Vector => {
                f.write_str("an AVX instruction, which the kernel does not single-step safely")
            }
            Refusal::PushFlags => f.write_str(
                "pushf, which would save the kernel's single-step flag into the program's state",
            ),
            Refusal::Syscall => {
                f.write_str("a syscall instruction, which the kernel does not single-step safely")
            }
        }
    }
}

/// A probe site that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The function whose code holds the site.
    pub function: String,
    /// The function's entry, so that the site reads as `function+offset`.
    pub entry: VirtAddr,
    pub addr: VirtAddr,
    pub why: Refusal,
}

impl Refused {
    /// The refused site at `addr` of `f`.
    pub fn at(f: &Func<'_>, addr: VirtAddr, why: Refusal) -> Refused {
        Refused {
            function: f.name.to_string(),
            entry: f.entry,
            addr,
            why,
        }
    }

    /// Why no probe can go at `f`'s entry site, `Err` of [`probe_site`] included:
    /// code that does not decode is reported as refused, not dropped unsaid.
    pub fn of_entry(f: &Func<'_>, site: &Result<ProbeSite>) -> Option<Refused> {
        match site {
            Ok(s) => s.refusal.map(|why| Refused::at(f, s.addr, why)),
            Err(Error::BadInstruction(at)) => Some(Refused::at(f, *at, Refusal::Undecodable)),
            Err(_) => Some(Refused::at(f, f.entry, Refusal::Undecodable)),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}+{:#x} ({}: {})",
            self.function,
            self.addr.0.wrapping_sub(self.entry.0),
            self.addr,
            self.why
        )
    }
}

/// The sentence that reports skipped sites: how many, and each one, so that a user
/// sees what a pattern's count leaves out. Sites of one function refused for one
/// reason are named together: `cmpbody+0x1d1 +0x1d5 (opcode 0x6f, …)`.
pub fn skipped_sentence(refused: &[Refused]) -> Option<String> {
    if refused.is_empty() {
        return None;
    }
    let mut groups: Vec<(&str, Refusal, Vec<String>)> = Vec::new();
    for r in refused {
        let off = format!("+{:#x}", r.addr.0.wrapping_sub(r.entry.0));
        match groups.last_mut() {
            Some((f, why, offs)) if *f == r.function && *why == r.why => offs.push(off),
            _ => groups.push((&r.function, r.why, vec![off])),
        }
    }
    let list: Vec<String> = groups
        .iter()
        .map(|(f, why, offs)| format!("{f}{} ({why})", offs.join(" ")))
        .collect();
    Some(format!(
        "skipped {} probe site{} the kernel cannot take: {}",
        refused.len(),
        if refused.len() == 1 { "" } else { "s" },
        list.join(", ")
    ))
}

/// A function's machine code, decoded once, for checking many addresses in it.
pub struct Decoded<'data> {
    func: Func<'data>,
    bytes: &'data [u8],
    /// The instructions from the entry up to the first that does not decode or the
    /// function's end, without the `int3` padding at the end.
    insns: Vec<Instruction>,
}

impl<'data> Decoded<'data> {
    /// Decodes `f`. Fails only when its bytes are not in an executable segment.
    pub fn of(bin: &GoBinary<'data>, f: &Func<'data>) -> Result<Decoded<'data>> {
        let bytes = code_of(bin, f)?;
        let mut decoder = Decoder::with_ip(64, bytes, f.entry.0, DecoderOptions::NONE);
        let mut insns = Vec::new();
        while decoder.can_decode() {
            let insn = decoder.decode();
            if insn.is_invalid() {
                break;
            }
            insns.push(insn);
        }
        while insns.last().is_some_and(|i| i.code() == Code::Int3) {
            insns.pop();
        }
        Ok(Decoded {
            func: *f,
            bytes,
            insns,
        })
    }

    /// The function decoded.
    pub fn function(&self) -> &Func<'data> {
        &self.func
    }

    /// The instructions decoded: from the entry up to the first that does not
    /// decode, without the `int3` padding at the end.
    pub fn instructions(&self) -> &[Instruction] {
        &self.insns
    }

    /// The instruction that starts at `addr`, if one does.
    pub fn instruction_at(&self, addr: VirtAddr) -> Option<&Instruction> {
        let i = self.insns.binary_search_by_key(&addr.0, |i| i.ip()).ok()?;
        self.insns.get(i)
    }

    /// Whether a uprobe may go at `addr`; `Err` says why not.
    pub fn check(&self, addr: VirtAddr) -> std::result::Result<(), Refusal> {
        let decoded_to = self.insns.last().map_or(self.func.entry.0, |i| i.next_ip());
        let Some(insn) = self.instruction_at(addr) else {
            let padding = self
                .bytes
                .get((addr.0.wrapping_sub(self.func.entry.0)) as usize)
                == Some(&0xcc);
            return Err(if padding {
                Refusal::Trap
            } else if addr.0 >= decoded_to && self.func.contains(addr) {
                Refusal::Undecodable
            } else {
                Refusal::NotInstructionStart
            });
        };
        let at = (insn.ip() - self.func.entry.0) as usize;
        let raw = self.bytes.get(at..at + insn.len()).unwrap_or(&[]);
        kernel_refusal(insn, raw).map_or(Ok(()), Err)
    }

    /// The refused site at `addr` as a report names it, or `None` if a uprobe may go
    /// there.
    pub fn refused(&self, addr: VirtAddr) -> Option<Refused> {
        self.check(addr).err().map(|why| Refused {
            function: self.func.name.to_string(),
            entry: self.func.entry,
            addr,
            why,
        })
    }
}

/// Whether a uprobe may go at `addr` in `f`; decodes `f` (use [`Decoded`] for many
/// addresses of one function).
pub fn check(bin: &GoBinary<'_>, f: &Func<'_>, addr: VirtAddr) -> std::result::Result<(), Refusal> {
    match Decoded::of(bin, f) {
        Ok(code) => code.check(addr),
        Err(_) => Err(Refusal::Undecodable),
    }
}

/// The legacy prefixes of x86-64.
const PREFIXES: [u8; 11] = [
    0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3,
];

/// One-byte opcodes Linux's uprobes refuse on x86-64 (the zeros of its
/// `good_insns_64`): invalid in long mode, I/O, privileged, traps and far transfers.
const REFUSED_OPCODES: [u8; 32] = [
    0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x62, 0x6c, 0x6d,
    0x6e, 0x6f, 0x82, 0x9a, 0xcc, 0xcd, 0xce, 0xcf, 0xd4, 0xd5, 0xd6, 0xe4, 0xe5, 0xe6, 0xe7, 0xea,
];
const REFUSED_OPCODES_TOO: [u8; 8] = [0xec, 0xed, 0xee, 0xef, 0xf1, 0xf4, 0xfa, 0xfb];

/// Why the kernel would refuse a uprobe on `insn`, whose bytes are `raw`.
fn kernel_refusal(insn: &Instruction, raw: &[u8]) -> Option<Refusal> {
    if matches!(insn.code(), Code::Int3 | Code::Int_imm8 | Code::Int1) {
        return Some(Refusal::Trap);
    }
    match insn.mnemonic() {
        Mnemonic::Syscall | Mnemonic::Sysenter => return Some(Refusal::Syscall),
        Mnemonic::Pushf | Mnemonic::Pushfq | Mnemonic::Pushfd => return Some(Refusal::PushFlags),
        _ => {}
    }
    let mut i = 0;
    while let Some(&p) = raw.get(i).filter(|b| PREFIXES.contains(b)) {
        if matches!(p, 0xf0 | 0x26 | 0x2e | 0x36 | 0x3e) {
            return Some(Refusal::Prefix(p));
        }
        i += 1;
    }
    if raw.get(i).is_some_and(|b| b & 0xf0 == 0x40) {
        i += 1;
    }
    // The kernel judges a VEX or EVEX instruction by its opcode byte after the
    // prefix, but gotap refuses them all (see [`Refusal::Vector`]).
    if insn.encoding() != iced_x86::EncodingKind::Legacy {
        return Some(Refusal::Vector);
    }
    let op = *raw.get(i)?;
    if REFUSED_OPCODES.contains(&op) || REFUSED_OPCODES_TOO.contains(&op) {
        return Some(Refusal::Opcode(op));
    }
    // `mov ss, r/m` masks the exceptions of the next instruction.
    if op == 0x8e && raw.get(i + 1).is_some_and(|m| (m >> 3) & 7 == 2) {
        return Some(Refusal::Opcode(op));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusal for the one instruction `bytes` encode.
    fn refusal(bytes: &[u8]) -> Option<Refusal> {
        let insn = Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE).decode();
        assert_eq!(insn.len(), bytes.len(), "{bytes:02x?} is one instruction");
        kernel_refusal(&insn, bytes)
    }

    #[test]
    fn the_kernels_rules_on_instructions_go_emits() {
        // push rbp, the usual site, and a REX push r12.
        assert_eq!(refusal(&[0x55]), None);
        assert_eq!(refusal(&[0x41, 0x54]), None);
        // mov rax, [rip+8]; cmp rsp, [r14+0x10]; the long nops of alignment.
        assert_eq!(refusal(&[0x48, 0x8b, 0x05, 8, 0, 0, 0]), None);
        assert_eq!(refusal(&[0x49, 0x3b, 0x66, 0x10]), None);
        assert_eq!(refusal(&[0x0f, 0x1f, 0x44, 0, 0]), None);
        // Two-byte opcodes are all taken: cpuid, mfence, ud2, rdtsc.
        assert_eq!(refusal(&[0x0f, 0xa2]), None);
        assert_eq!(refusal(&[0x0f, 0xae, 0xf0]), None);
        assert_eq!(refusal(&[0x0f, 0x0b]), None);
        // int3 (breakpoint) and int 3 (runtime.abort).
        assert_eq!(refusal(&[0xcc]), Some(Refusal::Trap));
        assert_eq!(refusal(&[0xcd, 0x03]), Some(Refusal::Trap));
        // lock cmpxchg [rbx], esi; lock xadd; a cs-prefixed nop.
        assert_eq!(
            refusal(&[0xf0, 0x0f, 0xb1, 0x33]),
            Some(Refusal::Prefix(0xf0))
        );
        assert_eq!(
            refusal(&[0xf0, 0x48, 0x0f, 0xc1, 0x0a]),
            Some(Refusal::Prefix(0xf0))
        );
        assert_eq!(
            refusal(&[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0]),
            Some(Refusal::Prefix(0x2e))
        );
        // rep movsb is taken; insb (opcode 0x6c) is not.
        assert_eq!(refusal(&[0xf3, 0xa4]), None);
        assert_eq!(refusal(&[0x6c]), Some(Refusal::Opcode(0x6c)));
        // vmovdqu ymm2, [rsi] and vzeroupper: AVX, never placed.
        assert_eq!(refusal(&[0xc5, 0xfe, 0x6f, 0x16]), Some(Refusal::Vector));
        assert_eq!(refusal(&[0xc5, 0xf8, 0x77]), Some(Refusal::Vector));
        // syscall and pushfq are taken by the kernel but harm the program.
        assert_eq!(refusal(&[0x0f, 0x05]), Some(Refusal::Syscall));
        assert_eq!(refusal(&[0x9c]), Some(Refusal::PushFlags));
    }

    #[test]
    fn skipped_sites_are_named_by_function_and_offset() {
        let r = |f: &str, off: u64, why| Refused {
            function: f.into(),
            entry: VirtAddr(0x1000),
            addr: VirtAddr(0x1000 + off),
            why,
        };
        let s = skipped_sentence(&[
            r("runtime.abort", 0, Refusal::Trap),
            r("cmpbody", 0x1d1, Refusal::Vector),
            r("cmpbody", 0x1d5, Refusal::Vector),
        ])
        .unwrap();
        assert!(s.starts_with("skipped 3 probe sites"), "{s}");
        assert!(s.contains("runtime.abort+0x0 (a trap"), "{s}");
        assert!(s.contains("cmpbody+0x1d1 +0x1d5 (an AVX"), "{s}");
        assert_eq!(skipped_sentence(&[]), None);
    }
}
