//! Probe sites, returns and instruction boundaries of real Go functions, checked
//! against Go's own disassembler (`go tool objdump` of the newest toolchain, which
//! decodes independently of iced-x86) for every function of the test programs built
//! by every toolchain.

mod common;

use common::{Listing, objdump};
use gobin::x86::{self, ProbeSite};
use gobin::{GoBinary, VirtAddr};
use testprogs::{Toolchain, Variant};

/// Where the probe goes according to objdump's text: after the `JBE` that follows
/// the stack-guard compare (`CMPQ reg, 0x10(reg)`) in the first instructions, when
/// only bound computations precede that compare; else the entry.
fn expected_site(l: &Listing) -> (u64, bool) {
    let entry = l.insns[0].0;
    for (i, (_, asm)) in l.insns.iter().enumerate().take(6) {
        // Go 1.19's objdump prints the operands the other way round.
        let is_cmp = asm.starts_with("CMPQ ")
            && (asm.contains(", 0x10(") || asm.starts_with("CMPQ 0x10("))
            && !asm.contains('*');
        if is_cmp {
            return match (l.insns.get(i + 1), l.insns.get(i + 2)) {
                (Some((_, j)), Some((next, _))) if j.starts_with("JBE ") => (*next, true),
                _ => (entry, false),
            };
        }
        let op = asm.split_whitespace().next().unwrap_or("");
        if !matches!(op, "MOVQ" | "LEAQ" | "SUBQ" | "JB") {
            return (entry, false);
        }
    }
    (entry, false)
}

fn check_against_objdump(tc: &Toolchain, variant: Variant, prog: &str) {
    let exe = testprogs::build(prog, tc, variant);
    let data = std::fs::read(&exe).expect("read program");
    let bin = GoBinary::parse(&data).expect("parse");
    // The newest disassembler: Go 1.19's decodes even `vpxor` (in memclr) as
    // garbage.
    let listings = objdump(&testprogs::newest(), &exe);
    let ctx = format!("go{} {prog} {variant}", tc.minor);
    let mut checked = 0;
    for f in bin.functions() {
        let Some((name, l)) = listings.get(&f.entry.0) else {
            continue;
        };
        // The same function (names differ in `.abi0` and the spelling of type
        // arguments, see tests/pclntab.rs).
        let stem = |n: &str| {
            n.trim_end_matches(".abi0")
                .split('[')
                .next()
                .unwrap_or("")
                .replace('·', ".")
        };
        assert_eq!(stem(name), stem(f.name), "{ctx}");
        checked += 1;
        let site = x86::probe_site(&bin, &f).unwrap_or_else(|e| panic!("{ctx} {}: {e}", f.name));
        let (want, after) = expected_site(l);
        assert_eq!(
            (site.addr.0, site.after_prologue),
            (want, after),
            "{ctx} {}",
            f.name
        );
        let asm_at_site = l
            .insns
            .iter()
            .find(|(a, _)| *a == site.addr.0)
            .map(|(_, s)| s.as_str());
        if asm_at_site == Some("PUSHQ BP") {
            assert!(site.emulated, "{ctx} {}: push rbp is emulated", f.name);
        }
        if let Some(asm) = asm_at_site
            && ["CMPQ ", "LEAQ ", "MOVQ ", "SUBQ ", "INCQ "]
                .iter()
                .any(|p| asm.starts_with(p))
        {
            assert!(!site.emulated, "{ctx} {}: {asm} is single-stepped", f.name);
        }
        // `go:textfipsstart` and friends mark section bounds: one int3, no code.
        if l.undecoded || f.name.starts_with("go:") {
            continue;
        }
        // The same returns and the same instruction starts as Go's disassembler.
        let rets = x86::returns(&bin, &f).unwrap_or_else(|e| panic!("{ctx} {}: {e}", f.name));
        let want_rets: Vec<u64> = l
            .insns
            .iter()
            .filter(|(_, s)| s == "RET")
            .map(|(a, _)| *a)
            .collect();
        assert_eq!(
            rets.iter().map(|a| a.0).collect::<Vec<_>>(),
            want_rets,
            "{ctx} {}",
            f.name
        );
        for r in &rets {
            assert_eq!(
                bin.text_bytes(*r, 1),
                Some(&[0xc3][..]),
                "{ctx} {} at {r}",
                f.name
            );
        }
        let insns = x86::instructions(&bin, &f).expect("decode");
        let ours: Vec<u64> = insns.iter().map(|i| i.ip()).collect();
        let theirs: Vec<u64> = l.insns.iter().map(|(a, _)| *a).collect();
        assert_eq!(ours, theirs, "{ctx} {}", f.name);
    }
    assert!(
        checked * 10 > bin.function_count() * 9,
        "{ctx}: objdump listed only {checked}"
    );
}

#[test]
fn probe_sites_and_returns_match_go_objdump() {
    for (tc, variant) in testprogs::matrix() {
        // objdump needs the symbol table; the stripped build is compared with the
        // unstripped one below.
        if variant == Variant::Stripped {
            continue;
        }
        for prog in ["counts", "example"] {
            check_against_objdump(&tc, variant, prog);
        }
    }
}

#[test]
fn stripped_programs_have_the_same_probe_sites() {
    for tc in testprogs::toolchains() {
        let plain_data =
            std::fs::read(testprogs::build("counts", &tc, Variant::Default)).expect("read");
        let stripped_data =
            std::fs::read(testprogs::build("counts", &tc, Variant::Stripped)).expect("read");
        let plain = GoBinary::parse(&plain_data).expect("parse");
        let stripped = GoBinary::parse(&stripped_data).expect("parse");
        assert_eq!(plain.function_count(), stripped.function_count());
        for (a, b) in plain.functions().zip(stripped.functions()) {
            assert_eq!(
                (a.name, a.entry, a.end),
                (b.name, b.entry, b.end),
                "go{}",
                tc.minor
            );
            assert_eq!(
                x86::probe_site(&plain, &a),
                x86::probe_site(&stripped, &b),
                "go{} {}",
                tc.minor,
                a.name
            );
            assert_eq!(
                x86::returns(&plain, &a),
                x86::returns(&stripped, &b),
                "go{} {}",
                tc.minor,
                a.name
            );
        }
    }
}

fn site(bin: &GoBinary<'_>, name: &str) -> (ProbeSite, VirtAddr) {
    let f = bin
        .function_by_name(name)
        .unwrap_or_else(|| panic!("{name}"));
    (x86::probe_site(bin, &f).expect("probe site"), f.entry)
}

#[test]
fn counts_functions_probe_where_expected() {
    for (tc, variant) in testprogs::matrix() {
        let exe = testprogs::build("counts", &tc, variant);
        let data = std::fs::read(&exe).expect("read program");
        let bin = GoBinary::parse(&data).expect("parse");
        let ctx = format!("go{} {variant}", tc.minor);
        let push_rbp_frames = tc.minor_number() >= (1, 21);

        // recurse has a frame and a stack check; since Go 1.21 the frame is made by
        // push rbp, which the kernel emulates; Go 1.19 made it with sub rsp.
        let (s, entry) = site(&bin, "main.recurse");
        assert!(s.after_prologue && s.addr > entry, "{ctx}: {s:?}");
        let first = bin.text_bytes(s.addr, 1).expect("code");
        if push_rbp_frames {
            assert_eq!(first, [0x55], "{ctx}: push rbp");
            assert!(s.emulated, "{ctx}");
        } else {
            assert_eq!(
                bin.text_bytes(s.addr, 4).expect("code")[..3],
                [0x48, 0x83, 0xec],
                "{ctx}: sub rsp, imm8"
            );
            assert!(!s.emulated, "{ctx}");
        }
        assert_eq!(s.sp_delta, 0, "{ctx}: nothing pushed yet");
        if push_rbp_frames {
            // After the push, the pcsp table counts its 8 bytes.
            let f = bin.function_by_name("main.recurse").expect("recurse");
            assert_eq!(bin.sp_delta(&f, s.addr.offset(1)), Some(8), "{ctx}");
        }

        // leaf and Method need no stack check: optimised, they have no frame at all
        // (lea / inc); unoptimised, leaf gets a small frame, still without a check.
        for name in ["main.leaf", "main.(*T).Method"] {
            let (s, entry) = site(&bin, name);
            assert_eq!(
                (s.addr, s.after_prologue, s.sp_delta),
                (entry, false, 0),
                "{ctx} {name}"
            );
        }
        let (leaf, _) = site(&bin, "main.leaf");
        assert_eq!(
            leaf.emulated,
            variant == Variant::NoOpt && push_rbp_frames,
            "{ctx}: leaf {leaf:?}"
        );

        for name in ["main.leaf", "main.recurse", "main.(*T).Method", "main.main"] {
            let f = bin.function_by_name(name).expect("function");
            let rets = x86::returns(&bin, &f).expect("returns");
            assert!(!rets.is_empty(), "{ctx} {name}");
            for r in rets {
                assert_eq!(bin.text_bytes(r, 1), Some(&[0xc3][..]));
                assert!(
                    x86::is_instruction_boundary(&bin, &f, r),
                    "{ctx} {name} {r}"
                );
                // The byte after the ret starts the next instruction (padding or code)
                // only if it is inside; the middle of a multi-byte instruction is not
                // a boundary.
            }
            let site = x86::probe_site(&bin, &f).expect("site");
            assert!(x86::is_instruction_boundary(&bin, &f, site.addr));
            let insns = x86::instructions(&bin, &f).expect("decode");
            let long = insns
                .iter()
                .find(|i| i.len() > 1)
                .expect("a multi-byte instruction");
            assert!(
                !x86::is_instruction_boundary(&bin, &f, VirtAddr(long.ip() + 1)),
                "{ctx} {name}"
            );
            assert!(
                !x86::is_instruction_boundary(&bin, &f, f.end),
                "{ctx} {name}: end is outside"
            );
        }
    }
}
