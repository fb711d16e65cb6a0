//! eBPF as data: instructions as typed constructors, an assembler with labels and
//! forward jumps, a disassembler, helper ids, and the spec of a compiled program (its
//! maps and programs). Nothing here talks to the kernel; `sys` loads what this builds.
#![forbid(unsafe_code)]

pub mod asm;
pub mod btf;
pub mod ctx;
pub mod disasm;
pub mod govalue;
pub mod helper;
pub mod insn;
pub mod script;
pub mod spec;
pub mod stats;

pub use asm::{Asm, AsmError, Label, Program};
pub use ctx::X86Reg;
pub use disasm::{disassemble, disassemble_with, insn_text};
pub use helper::Helper;
pub use insn::{AluOp, Cond, Decoded, Endian, Insn, Operand, Reg, Size};
pub use spec::{
    MAP_F_MMAPABLE, MAP_F_NO_PREALLOC, MapId, MapKind, MapRefKind, MapReloc, MapSpec, ObjectSpec,
    ProgramSpec, RelocError,
};
