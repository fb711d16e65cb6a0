//! Instructions back to text, in the syntax of the kernel's verifier log and bpftool
//! (`r1 = *(u64 *)(r10 -8)`, `if r1 > 0x5 goto +3`, `call bpf_probe_read_user#112`),
//! for `-d bpf` and for test failure messages. Map references print the map's name
//! when the caller knows it.

use std::fmt::Write;

use crate::helper::Helper;
use crate::insn::{Decoded, Endian, Insn, Operand, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, Reg};
use crate::spec::{MapRefKind, MapReloc};

/// The whole program, one numbered line per instruction (`LD_IMM64` takes two numbers,
/// as in the kernel's log).
pub fn disassemble(insns: &[Insn]) -> String {
    disassemble_with(insns, &[], |_| None)
}

/// As [`disassemble`], printing `map[NAME]` for relocated references; `map_name`
/// gives the name of a map id.
pub fn disassemble_with(
    insns: &[Insn],
    relocs: &[MapReloc],
    map_name: impl Fn(crate::spec::MapId) -> Option<String>,
) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < insns.len() {
        let text = match relocs.iter().find(|r| r.insn == i) {
            Some(r) => {
                let name = map_name(r.map).unwrap_or_else(|| format!("#{}", r.map.0));
                let dst =
                    Reg::from_u8(insns[i].dst_num()).map_or_else(|| "r?".into(), |r| r.to_string());
                match r.kind {
                    MapRefKind::Fd => format!("{dst} = map[{name}]"),
                    MapRefKind::Value { offset } => format!("{dst} = map[{name}]+{offset}"),
                }
            }
            None => insn_text(insns, i),
        };
        let _ = writeln!(out, "{i:4}: {text}");
        i += if insns[i].is_ld_imm64() { 2 } else { 1 };
    }
    out
}

fn reg(wide: bool, r: Reg) -> String {
    format!("{}{}", if wide { 'r' } else { 'w' }, r.num())
}

fn operand(wide: bool, o: Operand) -> String {
    match o {
        Operand::Reg(r) => reg(wide, r),
        Operand::Imm(i) => i.to_string(),
    }
}

fn mem(size: crate::insn::Size, signed: bool, base: Reg, off: i16) -> String {
    format!("*({} *)({base} {off:+})", size.c_type(signed))
}

/// The text of instruction `i`; needs the slice for the second slot of `LD_IMM64`.
pub fn insn_text(insns: &[Insn], i: usize) -> String {
    let Some(insn) = insns.get(i).copied() else {
        return String::from("<out of range>");
    };
    match insn.decode() {
        Decoded::Alu { wide, op, dst, src } => {
            format!("{} {} {}", reg(wide, dst), op.symbol(), operand(wide, src))
        }
        Decoded::Mov { wide, dst, src } => format!("{} = {}", reg(wide, dst), operand(wide, src)),
        Decoded::MovSx { dst, src, bits } => format!("{dst} = (s{bits}){src}"),
        Decoded::Neg { wide, dst } => format!("{} = -{}", reg(wide, dst), reg(wide, dst)),
        Decoded::Endian { to, dst, bits } => {
            let e = match to {
                Endian::Le => "le",
                Endian::Be => "be",
            };
            format!("{dst} = {e}{bits} {dst}")
        }
        Decoded::Jmp {
            wide,
            cond,
            dst,
            src,
            off,
        } => {
            let rhs = match src {
                Operand::Reg(r) => reg(wide, r),
                Operand::Imm(v) => format!("{v:#x}"),
            };
            format!("if {} {} {rhs} goto {off:+}", reg(wide, dst), cond.symbol())
        }
        Decoded::Ja { off } => format!("goto {off:+}"),
        Decoded::MayGoto { off } => format!("may_goto {off:+}"),
        Decoded::Call { id, pseudo: 0 } => match Helper::from_id(id) {
            Some(h) => format!("call {h}#{id}"),
            None => format!("call #{id}"),
        },
        Decoded::Call { id, .. } => format!("call pc{id:+}"),
        Decoded::Exit => "exit".into(),
        Decoded::Ldx {
            size,
            signed,
            dst,
            src,
            off,
        } => format!("{dst} = {}", mem(size, signed, src, off)),
        Decoded::Stx {
            size,
            dst,
            off,
            src,
        } => format!("{} = {src}", mem(size, false, dst, off)),
        Decoded::St {
            size,
            dst,
            off,
            imm,
        } => format!("{} = {imm}", mem(size, false, dst, off)),
        Decoded::AtomicAdd {
            size,
            dst,
            off,
            src,
            fetch: false,
        } => {
            format!(
                "lock {} += {}",
                mem(size, false, dst, off),
                reg(size == crate::insn::Size::DW, src)
            )
        }
        Decoded::AtomicAdd {
            size,
            dst,
            off,
            src,
            fetch: true,
        } => {
            let wide = size == crate::insn::Size::DW;
            let bits = if wide { "64" } else { "" };
            format!(
                "{} = atomic{bits}_fetch_add(({} *)({dst} {off:+}), {})",
                reg(wide, src),
                size.c_type(false),
                reg(wide, src)
            )
        }
        Decoded::AtomicCmpxchg {
            size,
            dst,
            off,
            src,
        } => {
            let wide = size == crate::insn::Size::DW;
            let bits = if wide { "64" } else { "" };
            format!(
                "{} = atomic{bits}_cmpxchg(({} *)({dst} {off:+}), {}, {})",
                reg(wide, Reg::R0),
                size.c_type(false),
                reg(wide, Reg::R0),
                reg(wide, src)
            )
        }
        Decoded::LdImm64 { dst, pseudo } => {
            let Some(hi) = insns.get(i + 1) else {
                return format!("{dst} = <truncated ld_imm64>");
            };
            match pseudo {
                PSEUDO_MAP_FD => format!("{dst} = map[fd:{}]", insn.imm),
                PSEUDO_MAP_VALUE => format!("{dst} = map[fd:{}]+{}", insn.imm, hi.imm as u32),
                crate::insn::PSEUDO_FUNC => format!("{dst} = fn pc{:+}", insn.imm),
                0 => {
                    let v = u64::from(insn.imm as u32) | (u64::from(hi.imm as u32) << 32);
                    format!("{dst} = {v:#x} ll")
                }
                p => format!("{dst} = <ld_imm64 pseudo {p}> {:#x}", insn.imm),
            }
        }
        Decoded::Unknown => format!("<unknown {:#04x}>", insn.code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::Asm;
    use crate::insn::{AluOp, Cond, Size};
    use crate::spec::MapId;

    fn one(i: Insn) -> String {
        insn_text(&[i], 0)
    }

    #[test]
    fn prints_the_kernel_syntax() {
        assert_eq!(
            one(Insn::ldx(Size::DW, Reg::R1, Reg::R10, -8)),
            "r1 = *(u64 *)(r10 -8)"
        );
        assert_eq!(
            one(Insn::stx(Size::W, Reg::R10, -4, Reg::R2)),
            "*(u32 *)(r10 -4) = r2"
        );
        assert_eq!(one(Insn::st(Size::B, Reg::R1, 0, 7)), "*(u8 *)(r1 +0) = 7");
        assert_eq!(
            one(Insn::jmp(Cond::Gt, Reg::R1, 5, 3)),
            "if r1 > 0x5 goto +3"
        );
        assert_eq!(
            one(Insn::jmp32(Cond::Sle, Reg::R2, Reg::R3, -2)),
            "if w2 s<= w3 goto -2"
        );
        assert_eq!(one(Insn::call(112)), "call bpf_probe_read_user#112");
        assert_eq!(one(Insn::call(9999)), "call #9999");
        assert_eq!(one(Insn::alu64(AluOp::Add, Reg::R1, Reg::R2)), "r1 += r2");
        assert_eq!(one(Insn::alu32(AluOp::Arsh, Reg::R1, 3)), "w1 s>>= 3");
        assert_eq!(one(Insn::mov64(Reg::R6, Reg::R1)), "r6 = r1");
        assert_eq!(one(Insn::mov32(Reg::R0, -1)), "w0 = -1");
        assert_eq!(one(Insn::neg64(Reg::R3)), "r3 = -r3");
        assert_eq!(
            one(Insn::endian(Endian::Be, Reg::R3, 16).unwrap()),
            "r3 = be16 r3"
        );
        assert_eq!(
            one(Insn::movsx64(Reg::R1, Reg::R2, 16).unwrap()),
            "r1 = (s16)r2"
        );
        assert_eq!(
            one(Insn::ldx_sx(Size::B, Reg::R1, Reg::R2, 1).unwrap()),
            "r1 = *(s8 *)(r2 +1)"
        );
        assert_eq!(
            one(Insn::atomic_add(Size::DW, Reg::R0, 8, Reg::R1).unwrap()),
            "lock *(u64 *)(r0 +8) += r1"
        );
        assert_eq!(one(Insn::exit()), "exit");
        assert_eq!(one(Insn::ja(-7)), "goto -7");
        // BPF_JMP | BPF_JCOND | BPF_K with src_reg 0, as the kernel defines it.
        assert_eq!(Insn::may_goto(4).code, 0xe5);
        assert_eq!(one(Insn::may_goto(4)), "may_goto +4");
        assert_eq!(
            insn_text(&Insn::ld_imm64(Reg::R2, 0xdead_beef_0000_0001), 0),
            "r2 = 0xdeadbeef00000001 ll"
        );
        assert_eq!(insn_text(&Insn::ld_map_fd(Reg::R1, 5), 0), "r1 = map[fd:5]");
    }

    #[test]
    fn numbers_lines_and_names_maps() {
        let mut a = Asm::new();
        a.ld_map(Reg::R1, MapId(0))
            .emit(Insn::mov64(Reg::R0, 0))
            .exit();
        let p = a.finish().unwrap();
        let text = disassemble_with(&p.insns, &p.relocs, |m| {
            (m.0 == 0).then(|| "counts".to_string())
        });
        assert_eq!(text, "   0: r1 = map[counts]\n   2: r0 = 0\n   3: exit\n");
    }
}
