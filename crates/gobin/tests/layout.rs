//! The Go runtime layouts: read from DWARF, and the built-in per-release tables that
//! stripped executables rely on, checked against the DWARF of every installed toolchain.

use std::path::Path;

use gobin::dwarf::Dwarf;
use gobin::layout::RuntimeLayout;
use object::{Object, ObjectSection};
use testprogs::Variant;

fn layout_of(exe: &Path) -> RuntimeLayout {
    let bytes = std::fs::read(exe).expect("read test program");
    let file = object::File::parse(&*bytes).expect("parse ELF");
    let d =
        Dwarf::load(|name| file.section_by_name(name)?.uncompressed_data().ok()).expect("DWARF");
    RuntimeLayout::from_dwarf(&d).expect("runtime layout from DWARF")
}

#[test]
fn builtin_tables_match_dwarf_of_every_toolchain() {
    for tc in testprogs::toolchains() {
        let exe = testprogs::build("vars", &tc, Variant::Default);
        let from_dwarf = layout_of(&exe);
        let (major, minor) = tc.minor_number();
        let builtin = RuntimeLayout::builtin(major, minor)
            .unwrap_or_else(|| panic!("no table for go{}", tc.minor));
        assert_eq!(
            builtin, from_dwarf,
            "go{}: the built-in table differs from DWARF",
            tc.minor
        );
    }
}

#[test]
fn layouts_are_plausible() {
    let tc = testprogs::newest();
    let l = layout_of(&testprogs::build("vars", &tc, Variant::Default));
    // g starts with its stack bounds; gobuf starts with sp then pc.
    assert_eq!((l.g_stack_lo, l.g_stack_hi, l.g_stackguard0), (0, 8, 16));
    assert_eq!((l.gobuf_sp, l.gobuf_pc, l.gobuf_g), (0, 8, 16));
    // Fields sit in declaration order: sched (a gobuf) before goid, morebuf before curg.
    assert!(l.g_sched + l.gobuf_ctxt < l.g_goid && l.m_morebuf < l.m_curg);
    assert_eq!(RuntimeLayout::builtin(1, 18), None);
    assert_eq!(RuntimeLayout::builtin(2, 0), None);
}

/// Prints the layout of the executable in `$GOTAP_LAYOUT_OF`, as read from DWARF, and
/// compares it with the table of Go 1.`$GOTAP_LAYOUT_MINOR` when that is set: how the
/// built-in tables were made and checked for toolchains not installed under tools/go
/// (`cargo test -p gobin --test layout -- --ignored --nocapture`).
#[test]
#[ignore]
fn print_table() {
    let Some(path) = std::env::var_os("GOTAP_LAYOUT_OF") else {
        return;
    };
    let layout = layout_of(Path::new(&path));
    println!("{layout:?}");
    if let Some(minor) = std::env::var("GOTAP_LAYOUT_MINOR")
        .ok()
        .and_then(|m| m.parse().ok())
    {
        assert_eq!(RuntimeLayout::builtin(1, minor), Some(layout));
    }
}
