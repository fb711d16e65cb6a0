//! Runs assembled programs in rbpf, a user-space eBPF interpreter written
//! independently of this crate, and compares what they compute with the eBPF
//! semantics of the kernel's documentation (`Documentation/bpf/standardization/
//! instruction-set.rst`) written out in Rust. Programs get a memory buffer in R1.

use bpf::{AluOp, Asm, Cond, Endian, Insn, Reg, Size};

fn run(a: Asm, mem: &mut [u8]) -> u64 {
    let prog = a.finish().expect("assemble");
    let bytes = Insn::encode_all(&prog.insns);
    let vm = rbpf::EbpfVmRaw::new(Some(&bytes)).expect("rbpf accepts the program");
    vm.execute_program(mem).expect("program runs")
}

/// The operand pairs every operation is tried with: edges of both widths and signs.
const VALUES: [u64; 9] = [
    0,
    1,
    2,
    7,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    0xffff_ffff_ffff_fffe,
];

fn alu64_reference(op: AluOp, a: u64, b: u64) -> u64 {
    match op {
        AluOp::Add => a.wrapping_add(b),
        AluOp::Sub => a.wrapping_sub(b),
        AluOp::Mul => a.wrapping_mul(b),
        AluOp::Div => a.checked_div(b).unwrap_or(0),
        AluOp::Or => a | b,
        AluOp::And => a & b,
        AluOp::Lsh => a << (b & 63),
        AluOp::Rsh => a >> (b & 63),
        AluOp::Mod => a.checked_rem(b).unwrap_or(a),
        AluOp::Xor => a ^ b,
        AluOp::Arsh => ((a as i64) >> (b & 63)) as u64,
    }
}

fn alu32_reference(op: AluOp, a: u64, b: u64) -> u64 {
    let (a, b) = (a as u32, b as u32);
    u64::from(match op {
        AluOp::Add => a.wrapping_add(b),
        AluOp::Sub => a.wrapping_sub(b),
        AluOp::Mul => a.wrapping_mul(b),
        AluOp::Div => a.checked_div(b).unwrap_or(0),
        AluOp::Or => a | b,
        AluOp::And => a & b,
        AluOp::Lsh => a << (b & 31),
        AluOp::Rsh => a >> (b & 31),
        AluOp::Mod => a.checked_rem(b).unwrap_or(a),
        AluOp::Xor => a ^ b,
        AluOp::Arsh => ((a as i32) >> (b & 31)) as u32,
    })
}

fn is_shift(op: AluOp) -> bool {
    matches!(op, AluOp::Lsh | AluOp::Rsh | AluOp::Arsh)
}

/// Loads `a` and `b` from memory, applies `op` with a register operand, returns it.
fn alu_reg_program(op: AluOp, wide: bool) -> Asm {
    let mut a = Asm::new();
    a.emit(Insn::ldx(Size::DW, Reg::R2, Reg::R1, 0));
    a.emit(Insn::ldx(Size::DW, Reg::R3, Reg::R1, 8));
    a.emit(if wide {
        Insn::alu64(op, Reg::R2, Reg::R3)
    } else {
        Insn::alu32(op, Reg::R2, Reg::R3)
    });
    a.emit(Insn::mov64(Reg::R0, Reg::R2)).exit();
    a
}

fn mem_of(a: u64, b: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&a.to_le_bytes());
    m[8..].copy_from_slice(&b.to_le_bytes());
    m
}

#[test]
fn alu_operations_with_register_operands_compute_what_the_isa_says() {
    for op in AluOp::ALL {
        for wide in [true, false] {
            for x in VALUES {
                for y in VALUES {
                    let y = if is_shift(op) {
                        y % if wide { 64 } else { 32 }
                    } else {
                        y
                    };
                    // rbpf keeps all 64 bits of the destination of a 32-bit modulo by
                    // zero; the kernel zero-extends it (the fix for CVE-2021-3600),
                    // as the reference does. That one case cannot be run here.
                    if !wide && op == AluOp::Mod && y as u32 == 0 && x >> 32 != 0 {
                        continue;
                    }
                    let got = run(alu_reg_program(op, wide), &mut mem_of(x, y));
                    let want = if wide {
                        alu64_reference(op, x, y)
                    } else {
                        alu32_reference(op, x, y)
                    };
                    assert_eq!(got, want, "{op:?} wide={wide} {x:#x} {y:#x}");
                }
            }
        }
    }
}

#[test]
fn alu_operations_with_immediates_sign_extend_them() {
    for op in AluOp::ALL {
        for x in VALUES {
            for imm in [1i32, 3, -1, -8, 0x7fff_ffff, i32::MIN] {
                let imm = if is_shift(op) { imm & 31 } else { imm };
                let mut a = Asm::new();
                a.emit(Insn::ldx(Size::DW, Reg::R0, Reg::R1, 0));
                a.emit(Insn::alu64(op, Reg::R0, imm)).exit();
                let got = run(a, &mut mem_of(x, 0));
                // A 64-bit operation sign-extends its 32-bit immediate.
                assert_eq!(
                    got,
                    alu64_reference(op, x, imm as i64 as u64),
                    "{op:?} {x:#x} {imm}"
                );
            }
        }
    }
}

fn cond_reference(c: Cond, a: u64, b: u64) -> bool {
    match c {
        Cond::Eq => a == b,
        Cond::Ne => a != b,
        Cond::Gt => a > b,
        Cond::Ge => a >= b,
        Cond::Lt => a < b,
        Cond::Le => a <= b,
        Cond::Sgt => (a as i64) > (b as i64),
        Cond::Sge => (a as i64) >= (b as i64),
        Cond::Slt => (a as i64) < (b as i64),
        Cond::Sle => (a as i64) <= (b as i64),
        Cond::Set => a & b != 0,
    }
}

#[test]
fn conditional_jumps_branch_as_the_isa_says_on_64_and_32_bits() {
    for c in Cond::ALL {
        for wide in [true, false] {
            for x in VALUES {
                for y in VALUES {
                    let mut a = Asm::new();
                    let taken = a.label();
                    a.emit(Insn::ldx(Size::DW, Reg::R2, Reg::R1, 0));
                    a.emit(Insn::ldx(Size::DW, Reg::R3, Reg::R1, 8));
                    a.emit(Insn::mov64(Reg::R0, 1));
                    if wide {
                        a.jmp(c, Reg::R2, Reg::R3, taken);
                    } else {
                        a.jmp32(c, Reg::R2, Reg::R3, taken);
                    }
                    a.emit(Insn::mov64(Reg::R0, 0));
                    a.bind(taken).exit();
                    let want = if wide {
                        cond_reference(c, x, y)
                    } else {
                        // 32-bit compares look at the low halves, sign-extended for
                        // the signed conditions.
                        let (x32, y32) = (x as u32, y as u32);
                        match c {
                            Cond::Sgt | Cond::Sge | Cond::Slt | Cond::Sle => cond_reference(
                                c,
                                x32 as i32 as i64 as u64,
                                y32 as i32 as i64 as u64,
                            ),
                            _ => cond_reference(c, u64::from(x32), u64::from(y32)),
                        }
                    };
                    assert_eq!(
                        run(a, &mut mem_of(x, y)) == 1,
                        want,
                        "{c:?} wide={wide} {x:#x} {y:#x}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_loop_with_a_backward_jump_sums_one_to_n() {
    for n in [0u64, 1, 10, 1000] {
        let mut a = Asm::new();
        let top = a.label();
        let done = a.label();
        a.emit(Insn::ldx(Size::DW, Reg::R2, Reg::R1, 0)); // i = n
        a.emit(Insn::mov64(Reg::R0, 0)); // sum = 0
        a.bind(top);
        a.jmp(Cond::Eq, Reg::R2, 0, done);
        a.emit(Insn::alu64(AluOp::Add, Reg::R0, Reg::R2));
        a.emit(Insn::alu64(AluOp::Sub, Reg::R2, 1));
        a.ja(top);
        a.bind(done).exit();
        assert_eq!(run(a, &mut mem_of(n, 0)), n * (n + 1) / 2);
    }
}

#[test]
fn stores_and_loads_of_each_size_keep_exactly_their_bytes() {
    let v = 0x1122_3344_5566_7788u64;
    for size in [Size::B, Size::H, Size::W, Size::DW] {
        // Through the stack: store the register, load it back at the same width.
        let mut a = Asm::new();
        a.ld_imm64(Reg::R2, v);
        a.emit(Insn::st(Size::DW, Reg::R10, -8, 0));
        a.emit(Insn::stx(size, Reg::R10, -8, Reg::R2));
        a.emit(Insn::ldx(Size::DW, Reg::R0, Reg::R10, -8)).exit();
        let mask = if size == Size::DW {
            u64::MAX
        } else {
            (1u64 << (8 * size.bytes())) - 1
        };
        assert_eq!(run(a, &mut [0u8; 8]), v & mask, "{size:?}");

        // Into the buffer, with an immediate store: the immediate is sign-extended
        // to 64 bits and then cut to the store's width.
        let mut mem = [0xaau8; 16];
        let mut a = Asm::new();
        a.emit(Insn::st(size, Reg::R1, 4, -2));
        a.emit(Insn::mov64(Reg::R0, 0)).exit();
        run(a, &mut mem);
        let n = size.bytes();
        assert!(
            mem[4..4 + n]
                .iter()
                .enumerate()
                .all(|(i, b)| *b == if i == 0 { 0xfe } else { 0xff }),
            "{mem:x?}"
        );
        assert!(mem[4 + n..].iter().all(|b| *b == 0xaa) && mem[..4].iter().all(|b| *b == 0xaa));
    }
}

#[test]
fn mov_neg_and_byte_swaps_match_rust() {
    let v = 0x0102_0304_0506_0708u64;
    let cases: Vec<(Insn, u64)> = vec![
        (Insn::neg64(Reg::R0), v.wrapping_neg()),
        (Insn::neg32(Reg::R0), u64::from((v as u32).wrapping_neg())),
        (
            Insn::endian(Endian::Be, Reg::R0, 16).unwrap(),
            u64::from((v as u16).swap_bytes()),
        ),
        (
            Insn::endian(Endian::Be, Reg::R0, 32).unwrap(),
            u64::from((v as u32).swap_bytes()),
        ),
        (
            Insn::endian(Endian::Be, Reg::R0, 64).unwrap(),
            v.swap_bytes(),
        ),
        (
            Insn::endian(Endian::Le, Reg::R0, 16).unwrap(),
            u64::from(v as u16),
        ),
        (Insn::mov32(Reg::R0, Reg::R0), u64::from(v as u32)),
    ];
    for (insn, want) in cases {
        let mut a = Asm::new();
        a.ld_imm64(Reg::R0, v).emit(insn).exit();
        assert_eq!(
            run(a, &mut [0u8; 8]),
            want,
            "{}",
            bpf::insn_text(&[insn], 0)
        );
    }
    let mut a = Asm::new();
    a.emit(Insn::mov64(Reg::R0, -5)).exit();
    assert_eq!(run(a, &mut [0u8; 8]), (-5i64) as u64, "mov64 sign-extends");
    let mut a = Asm::new();
    a.emit(Insn::mov32(Reg::R0, -5)).exit();
    assert_eq!(
        run(a, &mut [0u8; 8]),
        u64::from((-5i32) as u32),
        "mov32 zero-extends"
    );
}

#[test]
fn helper_calls_pass_r1_to_r5_and_return_r0() {
    let prog = {
        let mut a = Asm::new();
        for (r, v) in [
            (Reg::R1, 1),
            (Reg::R2, 2),
            (Reg::R3, 3),
            (Reg::R4, 4),
            (Reg::R5, 5),
        ] {
            a.emit(Insn::mov64(r, v));
        }
        a.call(bpf::Helper::KtimeGetNs).exit();
        a.finish().unwrap()
    };
    fn weigh(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
        a + 10 * b + 100 * c + 1000 * d + 10000 * e
    }
    let bytes = Insn::encode_all(&prog.insns);
    let mut vm = rbpf::EbpfVmRaw::new(Some(&bytes)).unwrap();
    vm.register_helper(bpf::Helper::KtimeGetNs.id() as u32, weigh)
        .unwrap();
    assert_eq!(vm.execute_program(&mut [0u8; 8]).unwrap(), 54321);
}
