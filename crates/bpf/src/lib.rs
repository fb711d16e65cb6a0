//! eBPF as data: instructions as typed constructors, an assembler with labels and
//! forward jumps, a disassembler, helper ids, and the spec of a compiled program (its
//! maps and the layouts of the events it sends).
#![forbid(unsafe_code)]
