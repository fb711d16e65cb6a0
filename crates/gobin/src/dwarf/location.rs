//! Where a Go variable lives: DWARF location expressions decoded into the handful of
//! shapes the Go compiler emits, owned and free of gimli types, so that code generation
//! can lower them into eBPF that reads registers and memory. Nothing here reads a
//! register or memory itself: a [`Place`] says what the caller must fetch.
//!
//! Go emits, per variable, either one expression valid over the variable's whole scope
//! or a location list (DWARF 4 `.debug_loc`, DWARF 5 `.debug_loclists` from Go 1.25 on)
//! whose entries each cover a pc range. Values split across registers (strings, slices,
//! interfaces under the register ABI) are composites of `DW_OP_piece`s; a piece with no
//! location before it is a part the compiler did not keep.

use std::fmt;
use std::ops::Range;

use crate::VirtAddr;

/// A DWARF register number. On x86-64: 0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi, 5 rdi,
/// 6 rbp, 7 rsp, 8..=15 r8..r15, 16 the return address, 17..=32 xmm0..xmm15.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DwarfReg(pub u16);

impl DwarfReg {
    /// The x86-64 name of the register, as in the System V psABI's DWARF mapping.
    pub fn x86_64_name(self) -> Option<&'static str> {
        const GPR: [&str; 17] = [
            "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15", "rip",
        ];
        const XMM: [&str; 16] = [
            "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
            "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
        ];
        let n = usize::from(self.0);
        GPR.get(n)
            .or_else(|| n.checked_sub(17).and_then(|i| XMM.get(i)))
            .copied()
    }
}

impl fmt::Display for DwarfReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.x86_64_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "reg{}", self.0),
        }
    }
}

/// An address the caller computes before reading memory at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address {
    /// The canonical frame address plus an offset. Go's frame base is always the CFA
    /// (`DW_AT_frame_base` is `DW_OP_call_frame_cfa`), so `DW_OP_fbreg` lands here too;
    /// on x86-64 the CFA at a function's entry is `rsp + 8`.
    Cfa(i64),
    /// A register's value plus an offset (`DW_OP_breg*`).
    Register { reg: DwarfReg, offset: i64 },
    /// A fixed address (`DW_OP_addr`): a package-level variable.
    Absolute(VirtAddr),
}

/// Where one piece of a value (or the whole value) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The value is in this register.
    Register(DwarfReg),
    /// The value is in memory at this address.
    Memory(Address),
    /// The value is this computed number (`DW_OP_stack_value`): a constant, or an
    /// address computed from a register or the CFA.
    Value(Value),
    /// The compiler did not keep this piece.
    OptimizedOut,
}

/// A value computed by the expression itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    Const(i64),
    /// The address, itself, is the value.
    Address(Address),
}

/// One part of a composite value: `size` bytes found at `place`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Bytes in this piece; `None` when the expression is not a composite and the
    /// piece is the whole value (its size is the type's).
    pub size: Option<u64>,
    pub place: Place,
}

/// A decoded location expression: the pieces of the value in order. An empty list
/// means the value is not available (an empty `DW_AT_location` block, as Go emits for
/// results before they are assigned).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expr {
    pub pieces: Vec<Piece>,
}

impl Expr {
    /// True when no byte of the value is available.
    pub fn is_optimized_out(&self) -> bool {
        self.pieces.iter().all(|p| p.place == Place::OptimizedOut)
    }
}

/// A variable's location over its scope: either one expression valid wherever the
/// variable is in scope (`range: None`) or one entry per pc range of a location list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub entries: Vec<LocationEntry>,
}

/// One expression and the pcs it is valid for (`None`: the whole scope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocationEntry {
    pub range: Option<Range<VirtAddr>>,
    pub expr: Expr,
}

impl Location {
    /// The expression valid at `pc`, if any. A location list entry covers the pcs
    /// `start <= pc < end`.
    pub fn at(&self, pc: VirtAddr) -> Option<&Expr> {
        self.entries
            .iter()
            .find(|e| e.range.as_ref().is_none_or(|r| r.start <= pc && pc < r.end))
            .map(|e| &e.expr)
    }
}

/// Why an expression could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("truncated or malformed DWARF expression: {0}")]
    Malformed(String),
    #[error("DWARF expression uses {0}, which gotap does not handle (Go does not emit it)")]
    Unsupported(String),
    #[error("DWARF expression piece of {0} bits is not a whole number of bytes")]
    BitPiece(u64),
}

/// Decodes one expression of the ops Go emits. `encoding` is the unit's, for operand
/// sizes. `frame_base_is_cfa` says whether `DW_OP_fbreg` is relative to the CFA.
pub(crate) fn decode<R: gimli::Reader>(
    expr: gimli::Expression<R>,
    encoding: gimli::Encoding,
    frame_base_is_cfa: bool,
) -> Result<Expr, ExprError> {
    use gimli::Operation as Op;
    let mut ops = expr.operations(encoding);
    let mut pieces = Vec::new();
    // The location being built before a DW_OP_piece or the end closes it.
    let mut current: Option<Place> = None;
    loop {
        let op = match ops.next() {
            Ok(Some(op)) => op,
            Ok(None) => break,
            Err(e) => return Err(ExprError::Malformed(e.to_string())),
        };
        current = Some(match op {
            Op::Register { register } => Place::Register(DwarfReg(register.0)),
            Op::RegisterOffset {
                register,
                offset,
                base_type,
            } if gimli::ReaderOffset::into_u64(base_type.0) == 0 => {
                Place::Memory(Address::Register {
                    reg: DwarfReg(register.0),
                    offset,
                })
            }
            Op::FrameOffset { offset } if frame_base_is_cfa => Place::Memory(Address::Cfa(offset)),
            Op::FrameOffset { .. } => {
                return Err(ExprError::Unsupported(
                    "DW_OP_fbreg with a frame base other than the CFA".into(),
                ));
            }
            Op::CallFrameCFA => Place::Memory(Address::Cfa(0)),
            Op::Address { address } => Place::Memory(Address::Absolute(VirtAddr(address))),
            Op::UnsignedConstant { value } => Place::Value(Value::Const(value as i64)),
            Op::SignedConstant { value } => Place::Value(Value::Const(value)),
            Op::PlusConstant { value } => match current {
                Some(Place::Memory(a)) => Place::Memory(add(a, value as i64)),
                Some(Place::Value(Value::Const(c))) => {
                    Place::Value(Value::Const(c.wrapping_add(value as i64)))
                }
                _ => {
                    return Err(ExprError::Unsupported(
                        "DW_OP_plus_uconst on a non-address".into(),
                    ));
                }
            },
            Op::StackValue => match current {
                Some(Place::Memory(a)) => Place::Value(Value::Address(a)),
                Some(v @ Place::Value(_)) => v,
                _ => {
                    return Err(ExprError::Malformed(
                        "DW_OP_stack_value with an empty stack".into(),
                    ));
                }
            },
            Op::Nop => continue,
            Op::Piece {
                size_in_bits,
                bit_offset: None,
            } => {
                if size_in_bits % 8 != 0 {
                    return Err(ExprError::BitPiece(size_in_bits));
                }
                pieces.push(Piece {
                    size: Some(size_in_bits / 8),
                    place: current.take().unwrap_or(Place::OptimizedOut),
                });
                continue;
            }
            other => return Err(ExprError::Unsupported(format!("{other:?}"))),
        });
    }
    if let Some(place) = current {
        if pieces.is_empty() {
            pieces.push(Piece { size: None, place });
        } else {
            return Err(ExprError::Malformed(
                "operations after the last DW_OP_piece".into(),
            ));
        }
    }
    Ok(Expr { pieces })
}

fn add(a: Address, by: i64) -> Address {
    match a {
        Address::Cfa(o) => Address::Cfa(o.wrapping_add(by)),
        Address::Register { reg, offset } => Address::Register {
            reg,
            offset: offset.wrapping_add(by),
        },
        Address::Absolute(v) => Address::Absolute(v.offset(by as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gimli::{EndianSlice, Expression, LittleEndian};

    fn enc() -> gimli::Encoding {
        gimli::Encoding {
            format: gimli::Format::Dwarf32,
            version: 4,
            address_size: 8,
        }
    }

    fn run(bytes: &[u8]) -> Result<Expr, ExprError> {
        decode(
            Expression(EndianSlice::new(bytes, LittleEndian)),
            enc(),
            true,
        )
    }

    #[test]
    fn string_in_two_registers() {
        // DW_OP_reg0 (rax); DW_OP_piece 8; DW_OP_reg3 (rbx); DW_OP_piece 8
        let e = run(&[0x50, 0x93, 8, 0x53, 0x93, 8]).unwrap();
        assert_eq!(
            e.pieces,
            vec![
                Piece {
                    size: Some(8),
                    place: Place::Register(DwarfReg(0))
                },
                Piece {
                    size: Some(8),
                    place: Place::Register(DwarfReg(3))
                },
            ]
        );
        assert_eq!(DwarfReg(3).to_string(), "rbx");
    }

    #[test]
    fn missing_piece_is_optimized_out() {
        // DW_OP_piece 8; DW_OP_reg3; DW_OP_piece 8: the pointer half was dropped.
        let e = run(&[0x93, 8, 0x53, 0x93, 8]).unwrap();
        assert_eq!(e.pieces[0].place, Place::OptimizedOut);
        assert!(!e.is_optimized_out());
    }

    #[test]
    fn fbreg_and_cfa() {
        // DW_OP_fbreg -24 (sleb128 0x68)
        assert_eq!(
            run(&[0x91, 0x68]).unwrap().pieces[0].place,
            Place::Memory(Address::Cfa(-24))
        );
        // DW_OP_call_frame_cfa
        assert_eq!(
            run(&[0x9c]).unwrap().pieces[0].place,
            Place::Memory(Address::Cfa(0))
        );
        // DW_OP_addr 0x401000
        assert_eq!(
            run(&[0x03, 0x00, 0x10, 0x40, 0, 0, 0, 0, 0])
                .unwrap()
                .pieces[0]
                .place,
            Place::Memory(Address::Absolute(VirtAddr(0x401000)))
        );
        // DW_OP_lit5; DW_OP_stack_value
        assert_eq!(
            run(&[0x35, 0x9f]).unwrap().pieces[0].place,
            Place::Value(Value::Const(5))
        );
        // An empty block: nothing available.
        assert!(run(&[]).unwrap().is_optimized_out());
    }

    #[test]
    fn corrupt_and_unsupported_are_errors() {
        // DW_OP_addr cut short.
        assert!(matches!(run(&[0x03, 0x00]), Err(ExprError::Malformed(_))));
        // DW_OP_deref is not something Go emits.
        assert!(matches!(run(&[0x50, 0x06]), Err(ExprError::Unsupported(_))));
    }
}
