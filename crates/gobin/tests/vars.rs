//! The runtime variables a tracer reads from a live process, found in a stripped
//! binary from the code that uses them: the same addresses as the symbol table of the
//! program's symbol table says, read from the code of the build that keeps one.

mod common;

use testprogs::{Toolchain, Variant};

fn parse(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).expect("read test program")
}

#[test]
fn allgs_and_runtime_init_time_are_found_without_symbols_on_every_toolchain() {
    for tc in testprogs::toolchains() {
        let with = parse(&testprogs::build("rt_gc", &tc, Variant::Default));
        let without = parse(&testprogs::build("rt_gc", &tc, Variant::Stripped));
        let with = gobin::GoBinary::parse(&with).expect("a Go binary");
        let without = gobin::GoBinary::parse(&without).expect("a Go binary");
        assert!(!without.elf().has_symbols(), "go{}: stripped", tc.minor);
        for (name, a, b) in [
            (
                "runtime.allgs",
                with.elf().symbol_address("runtime.allgs"),
                with.allgs_from_code(),
            ),
            (
                "runtime.runtimeInitTime",
                with.elf().symbol_address("runtime.runtimeInitTime"),
                with.runtime_init_time_from_code(),
            ),
        ] {
            assert!(a.is_some(), "go{}: {name} in the symbol table", tc.minor);
            assert_eq!(a, b, "go{}: {name}", tc.minor);
        }
        for (name, found) in [
            ("runtime.allgs", without.allgs_address()),
            (
                "runtime.runtimeInitTime",
                without.runtime_init_time_address(),
            ),
        ] {
            assert!(found.is_some(), "go{} stripped: {name}", tc.minor);
        }
    }
}

#[test]
fn the_wait_reason_names_are_found_without_symbols_on_every_toolchain() {
    for tc in testprogs::toolchains() {
        let with = parse(&testprogs::build("rt_gc", &tc, Variant::Default));
        let without = parse(&testprogs::build("rt_gc", &tc, Variant::Stripped));
        let with = gobin::GoBinary::parse(&with).expect("a Go binary");
        let without = gobin::GoBinary::parse(&without).expect("a Go binary");
        let symbol = with.elf().symbol("runtime.waitReasonStrings");
        assert!(
            symbol.is_some(),
            "go{}: the table in the symbol table",
            tc.minor
        );
        assert_eq!(with.wait_reasons_from_code(), symbol, "go{}", tc.minor);
        let names = without.wait_reasons().expect("the names, stripped");
        assert_eq!(Some(&names), with.wait_reasons().as_ref(), "go{}", tc.minor);
        for n in ["chan receive", "sleep", "select", "semacquire"] {
            assert!(names.contains(&n), "go{}: {n:?} in {names:?}", tc.minor);
        }
    }
}

/// The calls of `runtime.nanotime1` in the runtime's functions `names`, as `go tool
/// objdump` of `tc` lists them: (function, address), in address order within each.
fn nanotime_calls_by_objdump(
    tc: &Toolchain,
    exe: &std::path::Path,
    names: &[&str],
) -> Vec<(String, u64)> {
    common::objdump(tc, exe)
        .into_values()
        .filter(|(name, _)| names.contains(&name.as_str()))
        .flat_map(|(name, l)| {
            l.insns
                .into_iter()
                .filter(|(_, asm)| asm.starts_with("CALL runtime.nanotime1"))
                .map(move |(addr, _)| (name.clone(), addr))
        })
        .collect()
}

#[test]
fn the_clocks_that_time_gc_pauses_are_the_runtimes_nanotime_calls_on_every_toolchain() {
    for tc in testprogs::toolchains() {
        for v in [Variant::Default, Variant::Stripped] {
            let exe = testprogs::build("rt_gc", &tc, v);
            let data = parse(&exe);
            let bin = gobin::GoBinary::parse(&data).expect("a Go binary");
            let what = format!("go{} {v}", tc.minor);
            let names = [
                "runtime.gcStart",
                "runtime.gcMarkDone",
                "runtime.stopTheWorldWithSema",
                "runtime.startTheWorldWithSema",
                "runtime.gcMarkTermination",
            ];
            // objdump needs the symbol table: the stripped build's code is laid out
            // as the other's.
            let listed = testprogs::build("rt_gc", &tc, Variant::Default);
            let calls = nanotime_calls_by_objdump(&tc, &listed, &names);
            let nth = |f: &str, n: usize| {
                calls
                    .iter()
                    .filter(|(g, _)| g == f)
                    .nth(n)
                    .map(|(_, a)| *a)
                    .unwrap_or_else(|| panic!("{what}: call {n} of nanotime1 in {f}: {calls:x?}"))
            };
            let starts = if tc.minor_number() >= (1, 22) {
                vec![nth("runtime.stopTheWorldWithSema", 0)]
            } else {
                vec![nth("runtime.gcStart", 0), nth("runtime.gcMarkDone", 0)]
            };
            assert_eq!(bin.pause_start_clocks(), starts, "{what}: starts");
            assert_eq!(
                bin.pause_end_clocks(),
                vec![
                    nth("runtime.startTheWorldWithSema", 0),
                    nth("runtime.gcMarkTermination", 1)
                ],
                "{what}: ends"
            );
        }
    }
}
