//! Pure arithmetic of compiled probes, run in rbpf (a user-space eBPF interpreter
//! written independently of gotap) and compared with Rust's own `i64` arithmetic,
//! which has the C semantics SystemTap follows (division truncates toward zero, the
//! remainder has the dividend's sign, shifts are arithmetic).
//!
//! The program is the one the kernel would load; its map references get fake
//! descriptors, and the one helper it calls, `map_lookup_elem`, answers with a
//! region of the VM's memory: the scratch area (where locals live) for the scratch
//! map, a dummy word for the counters.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use bpf::Insn;
use testprogs::Variant;

static MEM: AtomicU64 = AtomicU64::new(0);
static SCRATCH_FD: AtomicU64 = AtomicU64::new(0);
static OUTPUTS: AtomicU64 = AtomicU64::new(0);
const FD_BASE: i32 = 1000;
const SCRATCH_AT: u64 = 4096;

fn lookup(map: u64, _key: u64, _: u64, _: u64, _: u64) -> u64 {
    let mem = MEM.load(Ordering::SeqCst);
    if map == SCRATCH_FD.load(Ordering::SeqCst) {
        mem + SCRATCH_AT
    } else {
        mem
    }
}

fn output(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    OUTPUTS.fetch_add(1, Ordering::SeqCst);
    0
}

/// `bpf_ringbuf_query(map, BPF_RB_AVAIL_DATA)`: an empty buffer here.
fn query(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    0
}

/// `bpf_get_smp_processor_id()` and `bpf_ktime_get_ns()`, which tag a probe hit.
fn zero(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    0
}

/// Runs the first program of `src` and returns its locals, in declaration order.
fn locals(src: &str, n: usize) -> Vec<i64> {
    let bin = testprogs::build("script", &testprogs::newest(), Variant::Default);
    let src = src.replace("BIN", &bin.to_string_lossy());
    let c = common::compile(&src, &bin).unwrap();
    let prog = &c.spec.object.programs[0];
    let scratch = c
        .spec
        .object
        .maps
        .iter()
        .position(|m| m.name == "gotap_scratch")
        .unwrap();
    SCRATCH_FD.store((FD_BASE + scratch as i32) as u64, Ordering::SeqCst);
    let insns = prog.relocated(|id| Some(FD_BASE + id.0 as i32)).unwrap();
    let bytes = Insn::encode_all(&insns);
    let mut vm = rbpf::EbpfVmRaw::new(Some(&bytes)).unwrap();
    vm.register_helper(1, lookup).unwrap();
    vm.register_helper(130, output).unwrap();
    vm.register_helper(134, query).unwrap();
    vm.register_helper(8, zero).unwrap();
    vm.register_helper(5, zero).unwrap();
    let mut mem = vec![0u8; 64 * 1024];
    MEM.store(mem.as_ptr() as u64, Ordering::SeqCst);
    vm.execute_program(&mut mem).unwrap();
    (0..n)
        .map(|i| {
            let o = SCRATCH_AT as usize + 8 * i;
            i64::from_le_bytes(mem[o..o + 8].try_into().unwrap())
        })
        .collect()
}

#[test]
fn operators_match_i64_arithmetic() {
    for (a, b) in [
        (7i64, -2i64),
        (-7, 2),
        (i64::MIN + 1, 3),
        (123456789, 1000),
        (0, 5),
    ] {
        let src = format!(
            r#"probe process("BIN").function("main.add") {{
  a = {a}; b = {b}
  q = a / b; r = a % b; m = a * b; s = a << 3; t = a >> 1; u = ~a
  x = a ^ b; o = a | b; n = a & b; d = a - b; p = a + b; ng = -a
  c1 = a < b; c2 = a >= b; c3 = !a; c4 = a && 0; c5 = 0 || b; c6 = a == b; c7 = a != b
  i = a++; j = --b; k = a; l = b
  a += 5; b *= 3; b -= 1; e = a; f = b
}}"#
        );
        let got = locals(&src, 27);
        let (a0, b0) = (a, b);
        let expect = vec![
            a0.wrapping_add(1).wrapping_add(5),
            (b0 - 1) * 3 - 1,
            a0.wrapping_div(b0),
            a0.wrapping_rem(b0),
            a0.wrapping_mul(b0),
            a0 << 3,
            a0 >> 1,
            !a0,
            a0 ^ b0,
            a0 | b0,
            a0 & b0,
            a0.wrapping_sub(b0),
            a0.wrapping_add(b0),
            a0.wrapping_neg(),
            (a0 < b0) as i64,
            (a0 >= b0) as i64,
            (a0 == 0) as i64,
            0,
            (b0 != 0) as i64,
            (a0 == b0) as i64,
            (a0 != b0) as i64,
            a0,
            b0 - 1,
            a0.wrapping_add(1),
            b0 - 1,
            a0.wrapping_add(1).wrapping_add(5),
            (b0 - 1) * 3 - 1,
        ];
        // (rbpf's interpreter panics negating i64::MIN, so that edge is left to the
        // kernel tests.) Locals are laid out in the order the checker met them: a b q r m s t u x o
        // n d p ng c1..c7 i j k l e f.
        assert_eq!(got, expect, "a={a} b={b}");
    }
}

#[test]
fn division_by_zero_sends_an_error_record_and_stops() {
    OUTPUTS.store(0, Ordering::SeqCst);
    let got = locals(
        r#"probe process("BIN").function("main.add") {
  a = 1; z = 0; b = 2
  b = a / z
  a = 99
}"#,
        3,
    );
    assert_eq!(got, vec![1, 0, 2]);
    assert_eq!(OUTPUTS.load(Ordering::SeqCst), 1);
}
