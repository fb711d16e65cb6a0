//! The runtime variables a tracer reads from a live process, found in a stripped
//! binary from the code that uses them: the same addresses as the symbol table of the
//! program's symbol table says, read from the code of the build that keeps one.

use testprogs::Variant;

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
