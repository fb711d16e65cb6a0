//! `GoTarget` answering the checker's questions about real executables, on every
//! installed toolchain: where probes go, what the errors offer the user, and the
//! runtime types a stripped executable still has.

use gobin::{GoBinary, VirtAddr, x86};
use lang::{GoKind, Lines, ProcessProbe, Site, Target, TargetError};
use testprogs::Variant;

fn function(pattern: &str, ret: bool) -> ProcessProbe {
    ProcessProbe {
        path: None,
        site: Site::Function {
            pattern: pattern.into(),
            ret,
            instances: lang::probe::Instances::All,
        },
    }
}

fn statement(f: &str, file: &str, lines: Lines) -> ProcessProbe {
    ProcessProbe {
        path: None,
        site: Site::Statement {
            function: f.into(),
            file: Some(file.into()),
            lines,
        },
    }
}

#[test]
fn probes_go_after_the_stack_check_and_at_every_ret() {
    for tc in testprogs::toolchains() {
        let bin = testprogs::build("counts", &tc, Variant::Default);
        let data = std::fs::read(&bin).unwrap();
        let gb = GoBinary::parse(&data).unwrap();
        let t = codegen::GoTarget::new(GoBinary::parse(&data).unwrap(), bin.to_string_lossy());
        let f = gb.function_by_name("main.recurse").unwrap();
        let locs = t
            .resolve_probe_point(&function("main.recurse", false))
            .unwrap();
        assert_eq!(locs.len(), 1);
        // recurse has a frame, so a stack check: the probe is past it, not at the entry
        // that morestack restarts.
        assert!(locs[0].address > f.entry.0, "{}", tc.version);
        assert_eq!(locs[0].function, "main.recurse");
        let rets = t
            .resolve_probe_point(&function("main.recurse", true))
            .unwrap();
        let expect = x86::returns(&gb, &f).unwrap();
        assert!(!expect.is_empty());
        assert_eq!(
            rets.iter().map(|l| VirtAddr(l.address)).collect::<Vec<_>>(),
            expect
        );
        for l in locs.iter().chain(&rets) {
            assert!(x86::is_instruction_boundary(&gb, &f, VirtAddr(l.address)));
        }
    }
}

#[test]
fn errors_offer_what_the_user_needs() {
    let bin = testprogs::build("counts", &testprogs::newest(), Variant::Default);
    let data = std::fs::read(&bin).unwrap();
    let t = codegen::GoTarget::new(GoBinary::parse(&data).unwrap(), bin.to_string_lossy());
    match t.resolve_probe_point(&function("main.lef", false)) {
        Err(TargetError::NoSuchFunction { nearest, .. }) => {
            assert!(nearest.contains(&"main.leaf".to_string()), "{nearest:?}")
        }
        other => panic!("{other:?}"),
    }
    // leaf is a one-line function: its line is the only one with code.
    let src = std::fs::read_to_string(testprogs::source("counts")).unwrap();
    let leaf_line = src
        .lines()
        .position(|l| l.starts_with("func leaf"))
        .unwrap() as u32
        + 1;
    match t.resolve_probe_point(&statement(
        "main.leaf",
        "counts.go",
        Lines::One(leaf_line + 5),
    )) {
        Err(TargetError::NoSuchLine { valid, .. }) => {
            assert_eq!(valid, vec![leaf_line.to_string()])
        }
        other => panic!("{other:?}"),
    }
    let ok = t
        .resolve_probe_point(&statement("main.leaf", "counts.go", Lines::Any))
        .unwrap();
    assert!(ok.iter().all(|l| l.line == Some(leaf_line)));
    let g = t.cast_type("runtime.g", None).unwrap();
    match t.member(&g, "stak") {
        Err(TargetError::NoSuchField { fields, .. }) => {
            assert!(fields.contains(&"stack".to_string()))
        }
        other => panic!("{other:?}"),
    }
    match t.cast_type("runtime.gg", None) {
        Err(TargetError::NoSuchType { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn stripped_binaries_keep_the_runtime_types() {
    for tc in testprogs::toolchains() {
        let bin = testprogs::build("counts", &tc, Variant::Stripped);
        let data = std::fs::read(&bin).unwrap();
        let t = codegen::GoTarget::new(GoBinary::parse(&data).unwrap(), bin.to_string_lossy());
        assert!(t.dwarf().is_none());
        let g = t.cast_type("runtime.g", None).unwrap();
        let m = t.member(&g, "m").unwrap();
        assert_eq!(m.kind, GoKind::Pointer);
        let curg = t.member(&m, "curg").unwrap();
        let stack = t.member(&curg, "stack").unwrap();
        let hi = t.member(&stack, "hi").unwrap();
        assert_eq!(hi.kind, GoKind::Uintptr);
        // The offsets are gobin's tables for this release, which its own tests
        // check against DWARF.
        let (major, minor) = tc.minor_number();
        let layout = gobin::layout::RuntimeLayout::builtin(major, minor).unwrap();
        let acc = t.member_access(&curg, "stack").unwrap();
        assert_eq!((acc.deref, acc.offset), (true, layout.g_stack_lo));
        let acc = t.member_access(&stack, "hi").unwrap();
        assert_eq!(acc.offset, layout.g_stack_hi - layout.g_stack_lo);
        // Without DWARF there are no variables, and the error says why.
        let loc = t
            .resolve_probe_point(&function("main.leaf", false))
            .unwrap();
        assert!(matches!(
            t.context_var(&loc[0], "i"),
            Err(TargetError::Other { .. })
        ));
    }
}

/// `.function` of an inlined function finds its inlined calls without reading
/// DWARF (`.gopclntab`'s inline trees have them); a variable read at one of them
/// walks the units of the function holding the call, not every unit.
#[test]
fn inlined_calls_read_dwarf_only_for_their_variables() {
    for tc in testprogs::toolchains() {
        let what = format!("go{}", tc.minor);
        let bin = testprogs::build("inlined", &tc, Variant::Default);
        let data = std::fs::read(&bin).unwrap();
        let gb = GoBinary::parse(&data).unwrap();
        let t = codegen::GoTarget::new(GoBinary::parse(&data).unwrap(), bin.to_string_lossy());
        // The calls inlined into one function of main, of each pattern.
        let inlined_into = |pattern: &str, holder: &str| -> Vec<u64> {
            let f = gb.function_by_name(holder).unwrap();
            t.resolve_probe_point(&function(pattern, false))
                .unwrap()
                .iter()
                .map(|l| l.address)
                .filter(|a| f.contains(VirtAddr(*a)) && t.inlined_at(*a).is_some())
                .collect()
        };
        let lock = inlined_into("sync.(*Mutex).Lock", "main.(*Store).Get");
        assert_eq!(lock.len(), 1, "{what}: Lock inlined into Store.Get");
        let value = inlined_into("main.(*counter).Value", "main.loop");
        assert_eq!(value.len(), 1, "{what}: Value inlined into loop");
        assert!(
            t.opened_dwarf().is_none(),
            "{what}: resolving the probe points opened DWARF"
        );
        // The inlined call's receiver, from the call's own DIE: reading it indexes the
        // functions of main's unit to find loop, whose DIEs hold the call.
        let c = t.variable(value[0], "c").unwrap();
        assert!(c.is_param, "{what}: {c:?}");
        let d = t.opened_dwarf().unwrap();
        let (walked, units) = (d.units_walked(), d.unit_count().unwrap());
        assert!(
            walked <= 2 && units > 10,
            "{what}: walked {walked} of {units} units"
        );
    }
}
