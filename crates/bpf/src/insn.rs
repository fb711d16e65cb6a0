//! One eBPF instruction, its 8-byte encoding, and typed constructors for every
//! instruction a tracer emits. The opcode constants follow the kernel's
//! `include/uapi/linux/bpf_common.h` and `bpf.h`; a byte layout is `code`, then
//! `dst` in the low and `src` in the high nibble, a signed 16-bit offset and a signed
//! 32-bit immediate, all little-endian (the only byte order gotap targets).

use std::fmt;

/// Instruction classes (the low three bits of `code`).
pub mod class {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;
}

/// Memory-access modes (the high three bits of `code` for load/store classes).
pub mod mode {
    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;
    /// Sign-extending load (cpu v4, Linux 6.6).
    pub const MEMSX: u8 = 0x80;
    pub const ATOMIC: u8 = 0xc0;
}

/// The operand source bit: immediate (`K`) or register (`X`).
pub const SRC_K: u8 = 0x00;
pub const SRC_X: u8 = 0x08;

/// `src_reg` of an `LD_IMM64` whose immediate is a map file descriptor.
pub const PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` of an `LD_IMM64` whose first immediate is a map fd and second an offset
/// into the map's value (array maps only): the register gets a pointer to that byte.
pub const PSEUDO_MAP_VALUE: u8 = 2;

/// `src_reg` of a `call` whose immediate is the relative offset of a BPF function.
pub const PSEUDO_CALL: u8 = 1;
/// `src_reg` of an `LD_IMM64` whose immediate is the relative offset of a BPF
/// function: the register gets a pointer to it, for the helpers that call back
/// (`bpf_loop`, `bpf_for_each_map_elem`). Linux 5.13.
pub const PSEUDO_FUNC: u8 = 4;

/// Atomic operations' `imm` field.
pub const ATOMIC_FETCH: i32 = 0x01;
/// `imm` of a compare-and-exchange (`BPF_CMPXCHG`, which always fetches). Linux 5.12.
pub const ATOMIC_CMPXCHG: i32 = 0xf0 | ATOMIC_FETCH;

/// A register. R0 holds return values, R1–R5 arguments (clobbered by calls), R6–R9
/// survive calls, R10 is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

impl Reg {
    pub const ALL: [Reg; 11] = [
        Reg::R0,
        Reg::R1,
        Reg::R2,
        Reg::R3,
        Reg::R4,
        Reg::R5,
        Reg::R6,
        Reg::R7,
        Reg::R8,
        Reg::R9,
        Reg::R10,
    ];

    /// The register with this number, if there is one.
    pub fn from_u8(n: u8) -> Option<Reg> {
        Reg::ALL.get(usize::from(n)).copied()
    }

    pub fn num(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.num())
    }
}

/// The second operand of an ALU or jump instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Reg(Reg),
    Imm(i32),
}

impl From<Reg> for Operand {
    fn from(r: Reg) -> Operand {
        Operand::Reg(r)
    }
}

impl From<i32> for Operand {
    fn from(i: i32) -> Operand {
        Operand::Imm(i)
    }
}

/// ALU operations (the high nibble of `code`). `Neg`, `Mov` and `End` have their own
/// constructors since their operands differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AluOp {
    Add = 0x00,
    Sub = 0x10,
    Mul = 0x20,
    /// Unsigned division; division by zero yields 0 in the kernel.
    Div = 0x30,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    /// Logical right shift.
    Rsh = 0x70,
    /// Unsigned modulo; modulo by zero leaves the destination unchanged.
    Mod = 0x90,
    Xor = 0xa0,
    /// Arithmetic (sign-propagating) right shift.
    Arsh = 0xc0,
}

impl AluOp {
    pub const ALL: [AluOp; 11] = [
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::Div,
        AluOp::Or,
        AluOp::And,
        AluOp::Lsh,
        AluOp::Rsh,
        AluOp::Mod,
        AluOp::Xor,
        AluOp::Arsh,
    ];

    fn from_code(op: u8) -> Option<AluOp> {
        AluOp::ALL.iter().copied().find(|a| *a as u8 == op)
    }

    /// The compound-assignment operator the kernel's disassembler prints.
    pub fn symbol(self) -> &'static str {
        match self {
            AluOp::Add => "+=",
            AluOp::Sub => "-=",
            AluOp::Mul => "*=",
            AluOp::Div => "/=",
            AluOp::Or => "|=",
            AluOp::And => "&=",
            AluOp::Lsh => "<<=",
            AluOp::Rsh => ">>=",
            AluOp::Mod => "%=",
            AluOp::Xor => "^=",
            AluOp::Arsh => "s>>=",
        }
    }
}

const OP_NEG: u8 = 0x80;
const OP_MOV: u8 = 0xb0;
const OP_END: u8 = 0xd0;

/// Conditions of conditional jumps (the high nibble of `code` in the JMP classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cond {
    Eq = 0x10,
    /// Unsigned `>`.
    Gt = 0x20,
    Ge = 0x30,
    /// `dst & src != 0`.
    Set = 0x40,
    Ne = 0x50,
    /// Signed `>`.
    Sgt = 0x60,
    Sge = 0x70,
    Lt = 0xa0,
    Le = 0xb0,
    Slt = 0xc0,
    Sle = 0xd0,
}

impl Cond {
    pub const ALL: [Cond; 11] = [
        Cond::Eq,
        Cond::Gt,
        Cond::Ge,
        Cond::Set,
        Cond::Ne,
        Cond::Sgt,
        Cond::Sge,
        Cond::Lt,
        Cond::Le,
        Cond::Slt,
        Cond::Sle,
    ];

    fn from_code(op: u8) -> Option<Cond> {
        Cond::ALL.iter().copied().find(|c| *c as u8 == op)
    }

    /// The comparison operator the kernel's disassembler prints.
    pub fn symbol(self) -> &'static str {
        match self {
            Cond::Eq => "==",
            Cond::Gt => ">",
            Cond::Ge => ">=",
            Cond::Set => "&",
            Cond::Ne => "!=",
            Cond::Sgt => "s>",
            Cond::Sge => "s>=",
            Cond::Lt => "<",
            Cond::Le => "<=",
            Cond::Slt => "s<",
            Cond::Sle => "s<=",
        }
    }

    /// The condition that holds exactly when this one does not.
    pub fn negate(self) -> Option<Cond> {
        Some(match self {
            Cond::Eq => Cond::Ne,
            Cond::Ne => Cond::Eq,
            Cond::Gt => Cond::Le,
            Cond::Le => Cond::Gt,
            Cond::Ge => Cond::Lt,
            Cond::Lt => Cond::Ge,
            Cond::Sgt => Cond::Sle,
            Cond::Sle => Cond::Sgt,
            Cond::Sge => Cond::Slt,
            Cond::Slt => Cond::Sge,
            Cond::Set => return None,
        })
    }
}

const OP_JA: u8 = 0x00;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;
/// `BPF_JCOND`: `may_goto` when `src_reg` is 0 (Linux 6.9).
const OP_JCOND: u8 = 0xe0;

/// Width of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Size {
    W = 0x00,
    H = 0x08,
    B = 0x10,
    DW = 0x18,
}

impl Size {
    pub fn bytes(self) -> usize {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    /// The size for an access of `n` bytes, if there is one.
    pub fn from_bytes(n: usize) -> Option<Size> {
        Some(match n {
            1 => Size::B,
            2 => Size::H,
            4 => Size::W,
            8 => Size::DW,
            _ => return None,
        })
    }

    fn from_code(code: u8) -> Size {
        match code & 0x18 {
            0x00 => Size::W,
            0x08 => Size::H,
            0x10 => Size::B,
            _ => Size::DW,
        }
    }

    /// `u8`, `u16`, `u32`, `u64`, as printed in a memory operand.
    pub fn c_type(self, signed: bool) -> &'static str {
        match (self, signed) {
            (Size::B, false) => "u8",
            (Size::H, false) => "u16",
            (Size::W, false) => "u32",
            (Size::DW, false) => "u64",
            (Size::B, true) => "s8",
            (Size::H, true) => "s16",
            (Size::W, true) => "s32",
            (Size::DW, true) => "s64",
        }
    }
}

/// Byte-order conversions (`BPF_END`): to little- or big-endian, of 16, 32 or 64 bits.
/// On x86-64 `to_le` only truncates, `to_be` swaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    Le,
    Be,
}

/// One 8-byte eBPF instruction. `LD_IMM64` is two of them: the first carries the low
/// and the second (whose code is 0) the high 32 bits of the constant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Insn {
    pub code: u8,
    /// `dst` in bits 0–3, `src` in bits 4–7.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, dst: {}, src: {}, off: {}, imm: {} }}",
            self.code,
            self.dst_num(),
            self.src_num(),
            self.off,
            self.imm
        )
    }
}

impl Insn {
    /// An instruction from raw fields.
    pub const fn raw(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (dst & 0x0f) | (src << 4),
            off,
            imm,
        }
    }

    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn::raw(code, dst.num(), src.num(), off, imm)
    }

    pub fn dst_num(self) -> u8 {
        self.regs & 0x0f
    }

    pub fn src_num(self) -> u8 {
        self.regs >> 4
    }

    pub fn class(self) -> u8 {
        self.code & 0x07
    }

    /// The 8 bytes the kernel reads.
    pub fn to_bytes(self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code, self.regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }

    pub fn from_bytes(b: [u8; 8]) -> Insn {
        Insn {
            code: b[0],
            regs: b[1],
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Decodes a byte string whose length must be a multiple of 8.
    pub fn decode_all(bytes: &[u8]) -> Option<Vec<Insn>> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        Some(
            bytes
                .chunks_exact(8)
                .map(|c| Insn::from_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        )
    }

    /// Encodes instructions into the byte string the kernel reads.
    pub fn encode_all(insns: &[Insn]) -> Vec<u8> {
        insns.iter().flat_map(|i| i.to_bytes()).collect()
    }

    // --- ALU ---

    /// `dst op= src` on 64 bits.
    pub fn alu64(op: AluOp, dst: Reg, src: impl Into<Operand>) -> Insn {
        Insn::alu(class::ALU64, op as u8, dst, src.into())
    }

    /// `dst op= src` on the low 32 bits; the upper half of `dst` is zeroed.
    pub fn alu32(op: AluOp, dst: Reg, src: impl Into<Operand>) -> Insn {
        Insn::alu(class::ALU, op as u8, dst, src.into())
    }

    fn alu(cls: u8, op: u8, dst: Reg, src: Operand) -> Insn {
        match src {
            Operand::Reg(s) => Insn::new(cls | op | SRC_X, dst, s, 0, 0),
            Operand::Imm(i) => Insn::new(cls | op | SRC_K, dst, Reg::R0, 0, i),
        }
    }

    /// `dst = src` on 64 bits; an immediate is sign-extended.
    pub fn mov64(dst: Reg, src: impl Into<Operand>) -> Insn {
        Insn::alu(class::ALU64, OP_MOV, dst, src.into())
    }

    /// `dst = src` on 32 bits, zero-extended.
    pub fn mov32(dst: Reg, src: impl Into<Operand>) -> Insn {
        Insn::alu(class::ALU, OP_MOV, dst, src.into())
    }

    /// `dst = (sN) src`: move with sign extension from 8, 16 or 32 bits (cpu v4,
    /// Linux 6.6). Other widths are refused.
    pub fn movsx64(dst: Reg, src: Reg, from_bits: u8) -> Option<Insn> {
        matches!(from_bits, 8 | 16 | 32).then(|| {
            Insn::new(
                class::ALU64 | OP_MOV | SRC_X,
                dst,
                src,
                i16::from(from_bits),
                0,
            )
        })
    }

    /// `dst = -dst` on 64 bits.
    pub fn neg64(dst: Reg) -> Insn {
        Insn::new(class::ALU64 | OP_NEG, dst, Reg::R0, 0, 0)
    }

    /// `dst = -dst` on 32 bits.
    pub fn neg32(dst: Reg) -> Insn {
        Insn::new(class::ALU | OP_NEG, dst, Reg::R0, 0, 0)
    }

    /// Converts `dst` to the byte order `to`, keeping `bits` (16, 32 or 64) bits.
    pub fn endian(to: Endian, dst: Reg, bits: u8) -> Option<Insn> {
        let src = match to {
            Endian::Le => SRC_K,
            Endian::Be => SRC_X,
        };
        matches!(bits, 16 | 32 | 64)
            .then(|| Insn::new(class::ALU | OP_END | src, dst, Reg::R0, 0, i32::from(bits)))
    }

    // --- jumps ---

    /// `if dst cond src goto +off` comparing 64 bits.
    pub fn jmp(cond: Cond, dst: Reg, src: impl Into<Operand>, off: i16) -> Insn {
        Insn::jump(class::JMP, cond, dst, src.into(), off)
    }

    /// `if wdst cond wsrc goto +off` comparing the low 32 bits.
    pub fn jmp32(cond: Cond, dst: Reg, src: impl Into<Operand>, off: i16) -> Insn {
        Insn::jump(class::JMP32, cond, dst, src.into(), off)
    }

    fn jump(cls: u8, cond: Cond, dst: Reg, src: Operand, off: i16) -> Insn {
        match src {
            Operand::Reg(s) => Insn::new(cls | cond as u8 | SRC_X, dst, s, off, 0),
            Operand::Imm(i) => Insn::new(cls | cond as u8 | SRC_K, dst, Reg::R0, off, i),
        }
    }

    /// `goto +off`.
    pub fn ja(off: i16) -> Insn {
        Insn::new(class::JMP | OP_JA, Reg::R0, Reg::R0, off, 0)
    }

    /// `may_goto +off`: falls through while the kernel's budget for this loop lasts
    /// (millions of iterations), jumps once it is spent. The verifier then needs to
    /// see a loop body once, not once per iteration: it treats the state at a
    /// `may_goto` that lies within an earlier one as already checked. Linux 6.9.
    pub fn may_goto(off: i16) -> Insn {
        Insn::new(class::JMP | OP_JCOND, Reg::R0, Reg::R0, off, 0)
    }

    /// Calls helper number `id`; arguments in R1–R5, result in R0.
    pub fn call(id: i32) -> Insn {
        Insn::new(class::JMP | OP_CALL, Reg::R0, Reg::R0, 0, id)
    }

    /// Calls the BPF function starting `off` instructions after this one
    /// (`BPF_PSEUDO_CALL`): R1–R5 are its arguments, R0 its result, R6–R9 are kept,
    /// and it has its own 512-byte stack. Linux 4.16.
    pub fn call_local(off: i32) -> Insn {
        Insn::raw(class::JMP | OP_CALL, 0, PSEUDO_CALL, 0, off)
    }

    /// Returns R0.
    pub fn exit() -> Insn {
        Insn::new(class::JMP | OP_EXIT, Reg::R0, Reg::R0, 0, 0)
    }

    // --- memory ---

    /// `dst = *(size *)(src + off)`, zero-extended.
    pub fn ldx(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(class::LDX | mode::MEM | size as u8, dst, src, off, 0)
    }

    /// `dst = *(sN *)(src + off)`, sign-extended (cpu v4, Linux 6.6). `DW` is refused:
    /// a 64-bit load has nothing to extend.
    pub fn ldx_sx(size: Size, dst: Reg, src: Reg, off: i16) -> Option<Insn> {
        (size != Size::DW)
            .then(|| Insn::new(class::LDX | mode::MEMSX | size as u8, dst, src, off, 0))
    }

    /// `*(size *)(dst + off) = src`.
    pub fn stx(size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
        Insn::new(class::STX | mode::MEM | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn st(size: Size, dst: Reg, off: i16, imm: i32) -> Insn {
        Insn::new(class::ST | mode::MEM | size as u8, dst, Reg::R0, off, imm)
    }

    /// `lock *(size *)(dst + off) += src`: an atomic add, `W` or `DW` only.
    pub fn atomic_add(size: Size, dst: Reg, off: i16, src: Reg) -> Option<Insn> {
        matches!(size, Size::W | Size::DW).then(|| {
            Insn::new(
                class::STX | mode::ATOMIC | size as u8,
                dst,
                src,
                off,
                AluOp::Add as i32,
            )
        })
    }

    /// `src = atomic_fetch_add((size *)(dst + off), src)`: adds and returns the old value.
    pub fn atomic_fetch_add(size: Size, dst: Reg, off: i16, src: Reg) -> Option<Insn> {
        matches!(size, Size::W | Size::DW).then(|| {
            Insn::new(
                class::STX | mode::ATOMIC | size as u8,
                dst,
                src,
                off,
                AluOp::Add as i32 | ATOMIC_FETCH,
            )
        })
    }

    /// `r0 = cmpxchg((u64 *)(dst + off), r0, src)`: stores `src` where the word
    /// holds R0, and leaves in R0 what it held.
    pub fn atomic_cmpxchg64(dst: Reg, off: i16, src: Reg) -> Insn {
        Insn::new(
            class::STX | mode::ATOMIC | Size::DW as u8,
            dst,
            src,
            off,
            ATOMIC_CMPXCHG,
        )
    }

    /// `dst = imm` for a full 64-bit constant: two slots.
    pub fn ld_imm64(dst: Reg, imm: u64) -> [Insn; 2] {
        Insn::ld_dw(dst, 0, imm as u32 as i32, (imm >> 32) as u32 as i32)
    }

    /// `dst = &function` for the function `off` instructions after this one's first
    /// slot (`BPF_PSEUDO_FUNC`).
    pub fn ld_func(dst: Reg, off: i32) -> [Insn; 2] {
        Insn::ld_dw(dst, PSEUDO_FUNC, off, 0)
    }

    /// `dst = map` where `fd` is the map's file descriptor (`BPF_PSEUDO_MAP_FD`).
    pub fn ld_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
        Insn::ld_dw(dst, PSEUDO_MAP_FD, fd, 0)
    }

    /// `dst = &map.value[off]` for an array map with one entry (`BPF_PSEUDO_MAP_VALUE`).
    pub fn ld_map_value(dst: Reg, fd: i32, off: u32) -> [Insn; 2] {
        Insn::ld_dw(dst, PSEUDO_MAP_VALUE, fd, off as i32)
    }

    fn ld_dw(dst: Reg, src: u8, lo: i32, hi: i32) -> [Insn; 2] {
        [
            Insn::raw(
                class::LD | mode::IMM | Size::DW as u8,
                dst.num(),
                src,
                0,
                lo,
            ),
            Insn::raw(0, 0, 0, 0, hi),
        ]
    }

    /// Whether this is the first slot of an `LD_IMM64`.
    pub fn is_ld_imm64(self) -> bool {
        self.code == class::LD | mode::IMM | Size::DW as u8
    }

    /// The jump's target relative to the next instruction, for jumps that have one
    /// (not calls or exits).
    pub fn jump_offset(self) -> Option<i16> {
        let cls = self.class();
        if cls != class::JMP && cls != class::JMP32 {
            return None;
        }
        let op = self.code & 0xf0;
        if op == OP_CALL || op == OP_EXIT {
            return None;
        }
        if cls == class::JMP32 && op == OP_JA {
            // `gotol` (JMP32|JA) keeps its offset in imm; we never emit it.
            return None;
        }
        Some(self.off)
    }

    /// Decodes the instruction into its meaning, for the disassembler and for checks.
    pub fn decode(self) -> Decoded {
        let cls = self.class();
        let dst = Reg::from_u8(self.dst_num());
        let src = Reg::from_u8(self.src_num());
        let (Some(dst), Some(src)) = (dst, src) else {
            return Decoded::Unknown;
        };
        let operand = || {
            if self.code & SRC_X != 0 {
                Operand::Reg(src)
            } else {
                Operand::Imm(self.imm)
            }
        };
        match cls {
            class::ALU | class::ALU64 => {
                let wide = cls == class::ALU64;
                let op = self.code & 0xf0;
                match op {
                    OP_NEG => Decoded::Neg { wide, dst },
                    OP_MOV if wide && self.code & SRC_X != 0 && self.off != 0 => match self.off {
                        8 | 16 | 32 => Decoded::MovSx {
                            dst,
                            src,
                            bits: self.off as u8,
                        },
                        _ => Decoded::Unknown,
                    },
                    OP_MOV => Decoded::Mov {
                        wide,
                        dst,
                        src: operand(),
                    },
                    OP_END if !wide => {
                        let to = if self.code & SRC_X != 0 {
                            Endian::Be
                        } else {
                            Endian::Le
                        };
                        match self.imm {
                            16 | 32 | 64 => Decoded::Endian {
                                to,
                                dst,
                                bits: self.imm as u8,
                            },
                            _ => Decoded::Unknown,
                        }
                    }
                    _ => match AluOp::from_code(op) {
                        Some(op) if self.off == 0 => Decoded::Alu {
                            wide,
                            op,
                            dst,
                            src: operand(),
                        },
                        _ => Decoded::Unknown,
                    },
                }
            }
            class::JMP | class::JMP32 => {
                let wide = cls == class::JMP;
                match self.code & 0xf0 {
                    OP_JA if wide => Decoded::Ja { off: self.off },
                    OP_CALL if wide => Decoded::Call {
                        id: self.imm,
                        pseudo: self.src_num(),
                    },
                    OP_EXIT if wide => Decoded::Exit,
                    OP_JCOND if wide && self.src_num() == 0 && self.imm == 0 => {
                        Decoded::MayGoto { off: self.off }
                    }
                    op => match Cond::from_code(op) {
                        Some(cond) => Decoded::Jmp {
                            wide,
                            cond,
                            dst,
                            src: operand(),
                            off: self.off,
                        },
                        None => Decoded::Unknown,
                    },
                }
            }
            class::LDX => {
                let size = Size::from_code(self.code);
                match self.code & 0xe0 {
                    mode::MEM => Decoded::Ldx {
                        size,
                        signed: false,
                        dst,
                        src,
                        off: self.off,
                    },
                    mode::MEMSX if size != Size::DW => Decoded::Ldx {
                        size,
                        signed: true,
                        dst,
                        src,
                        off: self.off,
                    },
                    _ => Decoded::Unknown,
                }
            }
            class::STX => {
                let size = Size::from_code(self.code);
                match self.code & 0xe0 {
                    mode::MEM => Decoded::Stx {
                        size,
                        dst,
                        off: self.off,
                        src,
                    },
                    mode::ATOMIC if self.imm == AluOp::Add as i32 => Decoded::AtomicAdd {
                        size,
                        dst,
                        off: self.off,
                        src,
                        fetch: false,
                    },
                    mode::ATOMIC if self.imm == ATOMIC_CMPXCHG => Decoded::AtomicCmpxchg {
                        size,
                        dst,
                        off: self.off,
                        src,
                    },
                    mode::ATOMIC if self.imm == AluOp::Add as i32 | ATOMIC_FETCH => {
                        Decoded::AtomicAdd {
                            size,
                            dst,
                            off: self.off,
                            src,
                            fetch: true,
                        }
                    }
                    _ => Decoded::Unknown,
                }
            }
            class::ST if self.code & 0xe0 == mode::MEM => Decoded::St {
                size: Size::from_code(self.code),
                dst,
                off: self.off,
                imm: self.imm,
            },
            class::LD if self.is_ld_imm64() => Decoded::LdImm64 {
                dst,
                pseudo: self.src_num(),
            },
            _ => Decoded::Unknown,
        }
    }
}

/// An instruction's meaning. `LdImm64` stands for the first of its two slots; the
/// constant is read from both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    Alu {
        wide: bool,
        op: AluOp,
        dst: Reg,
        src: Operand,
    },
    Mov {
        wide: bool,
        dst: Reg,
        src: Operand,
    },
    MovSx {
        dst: Reg,
        src: Reg,
        bits: u8,
    },
    Neg {
        wide: bool,
        dst: Reg,
    },
    Endian {
        to: Endian,
        dst: Reg,
        bits: u8,
    },
    Jmp {
        wide: bool,
        cond: Cond,
        dst: Reg,
        src: Operand,
        off: i16,
    },
    Ja {
        off: i16,
    },
    MayGoto {
        off: i16,
    },
    /// `pseudo` is 0 for a helper call, 1 for a BPF-to-BPF call.
    Call {
        id: i32,
        pseudo: u8,
    },
    Exit,
    Ldx {
        size: Size,
        signed: bool,
        dst: Reg,
        src: Reg,
        off: i16,
    },
    Stx {
        size: Size,
        dst: Reg,
        off: i16,
        src: Reg,
    },
    St {
        size: Size,
        dst: Reg,
        off: i16,
        imm: i32,
    },
    AtomicAdd {
        size: Size,
        dst: Reg,
        off: i16,
        src: Reg,
        fetch: bool,
    },
    AtomicCmpxchg {
        size: Size,
        dst: Reg,
        off: i16,
        src: Reg,
    },
    LdImm64 {
        dst: Reg,
        pseudo: u8,
    },
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_fields_in_kernel_order() {
        // r1 = *(u64 *)(r10 -8): code 0x79 (LDX|MEM|DW), dst 1, src 10, off -8.
        let i = Insn::ldx(Size::DW, Reg::R1, Reg::R10, -8);
        assert_eq!(i.to_bytes(), [0x79, 0xa1, 0xf8, 0xff, 0, 0, 0, 0]);
        // r0 = 0x12345678: code 0xb7 (ALU64|MOV|K).
        assert_eq!(
            Insn::mov64(Reg::R0, 0x1234_5678).to_bytes(),
            [0xb7, 0x00, 0, 0, 0x78, 0x56, 0x34, 0x12]
        );
        // exit: 0x95. call 112: 0x85 with imm 112.
        assert_eq!(Insn::exit().to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Insn::call(112).to_bytes(), [0x85, 0, 0, 0, 112, 0, 0, 0]);
        // if r1 > r2 goto +3: JMP|JGT|X = 0x2d.
        assert_eq!(
            Insn::jmp(Cond::Gt, Reg::R1, Reg::R2, 3).to_bytes(),
            [0x2d, 0x21, 3, 0, 0, 0, 0, 0]
        );
        // lock *(u64 *)(r1 +0) += r2: STX|ATOMIC|DW = 0xdb.
        let a = Insn::atomic_add(Size::DW, Reg::R1, 0, Reg::R2).unwrap();
        assert_eq!(a.to_bytes(), [0xdb, 0x21, 0, 0, 0, 0, 0, 0]);
        // r0 = cmpxchg_64(r3 + 8, r0, r4): imm BPF_CMPXCHG = 0xf1.
        let c = Insn::atomic_cmpxchg64(Reg::R3, 8, Reg::R4);
        assert_eq!(c.to_bytes(), [0xdb, 0x43, 8, 0, 0xf1, 0, 0, 0]);
    }

    #[test]
    fn ld_imm64_splits_the_constant_over_two_slots() {
        let [lo, hi] = Insn::ld_imm64(Reg::R3, 0x1122_3344_5566_7788);
        assert_eq!(lo.to_bytes(), [0x18, 0x03, 0, 0, 0x88, 0x77, 0x66, 0x55]);
        assert_eq!(hi.to_bytes(), [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
        let [m, _] = Insn::ld_map_fd(Reg::R1, 7);
        assert_eq!((m.src_num(), m.imm), (PSEUDO_MAP_FD, 7));
    }

    #[test]
    fn every_constructor_round_trips_through_bytes_and_decodes_to_itself() {
        let mut all = Vec::new();
        for op in AluOp::ALL {
            all.push(Insn::alu64(op, Reg::R1, Reg::R9));
            all.push(Insn::alu64(op, Reg::R2, -7));
            all.push(Insn::alu32(op, Reg::R3, Reg::R4));
            all.push(Insn::alu32(op, Reg::R5, 0x7fff_ffff));
        }
        for c in Cond::ALL {
            all.push(Insn::jmp(c, Reg::R1, Reg::R2, -4));
            all.push(Insn::jmp32(c, Reg::R6, 99, 12));
        }
        for s in [Size::B, Size::H, Size::W, Size::DW] {
            all.push(Insn::ldx(s, Reg::R0, Reg::R10, -16));
            all.push(Insn::stx(s, Reg::R10, -16, Reg::R7));
            all.push(Insn::st(s, Reg::R10, -24, -1));
        }
        all.extend([
            Insn::neg64(Reg::R4),
            Insn::neg32(Reg::R4),
            Insn::ja(-1),
            Insn::exit(),
            Insn::call(5),
        ]);
        all.push(Insn::endian(Endian::Be, Reg::R1, 32).unwrap());
        all.push(Insn::movsx64(Reg::R1, Reg::R2, 8).unwrap());
        all.push(Insn::ldx_sx(Size::H, Reg::R1, Reg::R2, 4).unwrap());
        all.push(Insn::atomic_cmpxchg64(Reg::R1, 4, Reg::R2));
        for i in all {
            assert_eq!(Insn::from_bytes(i.to_bytes()), i);
            assert_ne!(i.decode(), Decoded::Unknown, "{i:?}");
        }
        let bytes = Insn::encode_all(&[Insn::exit(), Insn::ja(2)]);
        assert_eq!(
            Insn::decode_all(&bytes).unwrap(),
            vec![Insn::exit(), Insn::ja(2)]
        );
        assert!(Insn::decode_all(&bytes[..9]).is_none());
    }

    #[test]
    fn refuses_widths_the_isa_lacks() {
        assert!(Insn::endian(Endian::Le, Reg::R1, 8).is_none());
        assert!(Insn::movsx64(Reg::R1, Reg::R2, 64).is_none());
        assert!(Insn::atomic_add(Size::B, Reg::R1, 0, Reg::R2).is_none());
        assert!(Insn::ldx_sx(Size::DW, Reg::R1, Reg::R2, 0).is_none());
        assert_eq!(Insn::raw(0xff, 0, 0, 0, 0).decode(), Decoded::Unknown);
        assert_eq!(Insn::raw(0x07, 11, 0, 0, 0).decode(), Decoded::Unknown);
    }
}
