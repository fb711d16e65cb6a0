//! An assembler: instructions are appended, jumps name [`Label`]s that may be bound
//! before or after them, and map references name a [`MapId`]. `finish` resolves every
//! jump into a 16-bit offset and lists the map references for relocation at load time,
//! so codegen never counts instructions by hand.

use crate::helper::Helper;
use crate::insn::{Cond, Insn, Operand, Reg};
use crate::spec::{MapId, MapRefKind, MapReloc};

/// A jump target; create with [`Asm::label`], place with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Label(usize);

/// Why assembly failed; each is a bug in the code generator, reported with where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("jump at instruction {insn} targets label {label}, which was never bound")]
    UnboundLabel { insn: usize, label: usize },
    #[error("label {label} bound twice (at instructions {first} and {second})")]
    BoundTwice {
        label: usize,
        first: usize,
        second: usize,
    },
    #[error(
        "jump at instruction {insn} to {target} is {distance} instructions away, beyond a 16-bit offset"
    )]
    OutOfRange {
        insn: usize,
        target: usize,
        distance: i64,
    },
    #[error("the program is empty")]
    Empty,
}

/// The assembled program: instructions with jumps resolved and the map references
/// still symbolic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub insns: Vec<Insn>,
    pub relocs: Vec<MapReloc>,
    /// Where each BPF function other than the main one starts (targets of
    /// [`Asm::call_fn`] and [`Asm::ld_fn`]), in order.
    pub functions: Vec<usize>,
}

/// The assembler.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// Where each label is bound.
    labels: Vec<Option<usize>>,
    /// Jumps and calls waiting for their label: (instruction index, label).
    fixups: Vec<(usize, Label)>,
    relocs: Vec<MapReloc>,
    /// The first label bound twice, reported by `finish`.
    twice: Option<AsmError>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// The index the next instruction will have.
    pub fn pos(&self) -> usize {
        self.insns.len()
    }

    /// The instructions emitted so far.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// Whether the next instruction can be reached: the last one falls through (it is
    /// not a `goto` or an `exit`), or a jump targets a label bound here.
    pub fn falls_through(&self) -> bool {
        let here = self.pos();
        let last_ends = matches!(
            self.insns.last().map(|i| i.decode()),
            Some(crate::insn::Decoded::Ja { .. } | crate::insn::Decoded::Exit)
        );
        !last_ends
            || self
                .fixups
                .iter()
                .any(|(_, l)| self.labels.get(l.0).copied().flatten() == Some(here))
    }

    pub fn emit(&mut self, insn: Insn) -> &mut Asm {
        self.insns.push(insn);
        self
    }

    pub fn emit_all(&mut self, insns: &[Insn]) -> &mut Asm {
        self.insns.extend_from_slice(insns);
        self
    }

    /// A new, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction.
    pub fn bind(&mut self, label: Label) -> &mut Asm {
        let here = self.pos();
        match self.labels.get_mut(label.0) {
            Some(slot @ None) => *slot = Some(here),
            Some(Some(first)) if self.twice.is_none() => {
                self.twice = Some(AsmError::BoundTwice {
                    label: label.0,
                    first: *first,
                    second: here,
                });
            }
            // Only the first label bound twice is reported; a label from another
            // assembler is reported by `finish` as unbound at the jumps to it.
            _ => {}
        }
        self
    }

    /// `if dst cond src goto label`, comparing 64 bits.
    pub fn jmp(&mut self, cond: Cond, dst: Reg, src: impl Into<Operand>, label: Label) -> &mut Asm {
        self.fixups.push((self.pos(), label));
        self.emit(Insn::jmp(cond, dst, src, 0))
    }

    /// `if wdst cond wsrc goto label`, comparing 32 bits.
    pub fn jmp32(
        &mut self,
        cond: Cond,
        dst: Reg,
        src: impl Into<Operand>,
        label: Label,
    ) -> &mut Asm {
        self.fixups.push((self.pos(), label));
        self.emit(Insn::jmp32(cond, dst, src, 0))
    }

    /// `goto label`.
    pub fn ja(&mut self, label: Label) -> &mut Asm {
        self.fixups.push((self.pos(), label));
        self.emit(Insn::ja(0))
    }

    pub fn call(&mut self, helper: Helper) -> &mut Asm {
        self.emit(Insn::call(helper.id()))
    }

    /// `dst = &function at label`, for a helper that calls it back: see
    /// [`Insn::ld_func`]. The function goes after the main program's last `exit`.
    pub fn ld_fn(&mut self, dst: Reg, label: Label) -> &mut Asm {
        self.fixups.push((self.pos(), label));
        self.emit_all(&Insn::ld_func(dst, 0))
    }

    /// `may_goto label`: see [`Insn::may_goto`].
    pub fn may_goto(&mut self, label: Label) -> &mut Asm {
        self.fixups.push((self.pos(), label));
        self.emit(Insn::may_goto(0))
    }

    /// Calls the BPF function (subprogram) that starts at `label`: a BPF-to-BPF call.
    /// Subprograms go after the main program's last `exit`.
    pub fn call_fn(&mut self, label: Label) -> &mut Asm {
        self.fixups.push((self.pos(), label));
        self.emit(Insn::call_local(0))
    }

    pub fn exit(&mut self) -> &mut Asm {
        self.emit(Insn::exit())
    }

    /// `dst = imm` for a full 64-bit constant (two slots).
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) -> &mut Asm {
        self.emit_all(&Insn::ld_imm64(dst, imm))
    }

    /// `dst = map`, relocated at load time.
    pub fn ld_map(&mut self, dst: Reg, map: MapId) -> &mut Asm {
        self.relocs.push(MapReloc {
            insn: self.pos(),
            map,
            kind: MapRefKind::Fd,
        });
        self.emit_all(&Insn::ld_map_fd(dst, 0))
    }

    /// `dst = &map.value[offset]` for a one-entry array map, relocated at load time.
    pub fn ld_map_value(&mut self, dst: Reg, map: MapId, offset: u32) -> &mut Asm {
        self.relocs.push(MapReloc {
            insn: self.pos(),
            map,
            kind: MapRefKind::Value { offset },
        });
        self.emit_all(&Insn::ld_map_value(dst, 0, offset))
    }

    /// True if a jump or call already emitted goes to `label`.
    pub fn is_referenced(&self, label: Label) -> bool {
        self.fixups.iter().any(|(_, l)| *l == label)
    }

    /// Appends the code of `other` (a BPF function assembled on its own, its labels
    /// its own) and returns the index of its first instruction.
    pub fn append(&mut self, other: Asm) -> usize {
        let base = self.insns.len();
        let lbase = self.labels.len();
        self.insns.extend(other.insns);
        self.labels
            .extend(other.labels.into_iter().map(|l| l.map(|p| p + base)));
        self.fixups.extend(
            other
                .fixups
                .into_iter()
                .map(|(at, l)| (at + base, Label(l.0 + lbase))),
        );
        self.relocs
            .extend(other.relocs.into_iter().map(|r| MapReloc {
                insn: r.insn + base,
                ..r
            }));
        if self.twice.is_none() {
            self.twice = other.twice;
        }
        base
    }

    /// Resolves the jumps.
    pub fn finish(self) -> Result<Program, AsmError> {
        if let Some(e) = self.twice {
            return Err(e);
        }
        if self.insns.is_empty() {
            return Err(AsmError::Empty);
        }
        let mut insns = self.insns;
        let mut functions = Vec::new();
        for (at, label) in self.fixups {
            let target =
                self.labels
                    .get(label.0)
                    .copied()
                    .flatten()
                    .ok_or(AsmError::UnboundLabel {
                        insn: at,
                        label: label.0,
                    })?;
            // Offsets count from the instruction after the jump.
            let distance = target as i64 - at as i64 - 1;
            let out_of_range = AsmError::OutOfRange {
                insn: at,
                target,
                distance,
            };
            let call = crate::insn::Decoded::Call {
                id: 0,
                pseudo: crate::insn::PSEUDO_CALL,
            };
            let decoded = insns[at].decode();
            let func_ref = matches!(
                decoded,
                crate::insn::Decoded::LdImm64 {
                    pseudo: crate::insn::PSEUDO_FUNC,
                    ..
                }
            );
            if decoded == call || func_ref {
                // A BPF function's offset goes in the immediate.
                insns[at].imm = i32::try_from(distance).map_err(|_| out_of_range)?;
                functions.push(target);
            } else {
                insns[at].off = i16::try_from(distance).map_err(|_| out_of_range)?;
            }
        }
        functions.sort_unstable();
        functions.dedup();
        Ok(Program {
            insns,
            relocs: self.relocs,
            functions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_forward_and_backward_jumps() {
        let mut a = Asm::new();
        let top = a.label();
        let out = a.label();
        a.bind(top); // 0
        a.jmp(Cond::Eq, Reg::R1, 0, out); // 0 -> 3: off 2
        a.emit(Insn::alu64(crate::insn::AluOp::Sub, Reg::R1, 1)); // 1
        a.ja(top); // 2 -> 0: off -3
        a.bind(out);
        a.exit(); // 3
        let p = a.finish().unwrap();
        assert_eq!(p.insns[0].off, 2);
        assert_eq!(p.insns[2].off, -3);
    }

    #[test]
    fn reports_unbound_twice_bound_and_far_labels() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        assert_eq!(
            a.finish(),
            Err(AsmError::UnboundLabel { insn: 0, label: 0 })
        );

        let mut a = Asm::new();
        let l = a.label();
        a.bind(l).exit().bind(l);
        assert_eq!(
            a.finish(),
            Err(AsmError::BoundTwice {
                label: 0,
                first: 0,
                second: 1
            })
        );

        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        for _ in 0..40_000 {
            a.emit(Insn::mov64(Reg::R0, 0));
        }
        a.bind(l).exit();
        assert_eq!(
            a.finish(),
            Err(AsmError::OutOfRange {
                insn: 0,
                target: 40_001,
                distance: 40_000
            })
        );

        // A label 32767 instructions on is the farthest that fits.
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        for _ in 0..i16::MAX {
            a.emit(Insn::mov64(Reg::R0, 0));
        }
        a.bind(l).exit();
        assert_eq!(a.finish().unwrap().insns[0].off, i16::MAX);

        assert_eq!(Asm::new().finish(), Err(AsmError::Empty));
    }

    #[test]
    fn calls_to_functions_keep_their_offset_in_the_immediate() {
        let mut a = Asm::new();
        let f = a.label();
        a.call_fn(f).exit(); // 0, 1
        a.bind(f).emit(Insn::mov64(Reg::R0, 1)).exit(); // 2, 3
        let p = a.finish().unwrap();
        assert_eq!(
            (p.insns[0].imm, p.insns[0].off, p.insns[0].src_num()),
            (1, 0, 1)
        );
        assert_eq!(crate::insn_text(&p.insns, 0), "call pc+1");
    }

    #[test]
    fn records_map_references_at_their_ld_imm64() {
        let mut a = Asm::new();
        a.emit(Insn::mov64(Reg::R0, 0));
        a.ld_map(Reg::R1, MapId(4));
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(
            p.relocs,
            vec![MapReloc {
                insn: 1,
                map: MapId(4),
                kind: MapRefKind::Fd
            }]
        );
        assert!(p.insns[1].is_ld_imm64());
    }
}
