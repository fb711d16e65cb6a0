//! The runtime's own type data (`gobin::rtype`): the per-release offsets of
//! `moduledata`'s fields checked against the DWARF of every installed toolchain, and
//! the type data, interface tables and type names found in a stripped executable
//! the same as in one with symbols.

use gobin::GoBinary;
use gobin::dwarf::Dwarf;
use gobin::rtype::ModuleLayout;
use object::{Object, ObjectSection};
use testprogs::Variant;

/// Offsets of `runtime.moduledata`'s fields in the DWARF of `exe`.
fn moduledata_fields(exe: &std::path::Path) -> Vec<(String, u64)> {
    let bytes = std::fs::read(exe).expect("read test program");
    let file = object::File::parse(&*bytes).expect("parse ELF");
    let d =
        Dwarf::load(|name| file.section_by_name(name)?.uncompressed_data().ok()).expect("DWARF");
    let t = d
        .resolve_typedefs(d.type_named("runtime.moduledata").expect("moduledata"))
        .expect("typedefs");
    d.members(t)
        .expect("members")
        .into_iter()
        .map(|m| (m.name, m.offset))
        .collect()
}

#[test]
fn module_layouts_match_dwarf_of_every_toolchain() {
    for tc in testprogs::toolchains() {
        let exe = testprogs::build("values", &tc, Variant::Default);
        let fields = moduledata_fields(&exe);
        let at = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, o)| *o);
        let (_, minor) = tc.minor_number();
        let l = ModuleLayout::of(minor).unwrap_or_else(|| panic!("no layout for go{}", tc.minor));
        assert_eq!(Some(l.types), at("types"), "go{}: types", tc.minor);
        assert_eq!(Some(l.etypes), at("etypes"), "go{}: etypes", tc.minor);
        assert_eq!(l.itablinks, at("itablinks"), "go{}: itablinks", tc.minor);
        assert_eq!(
            l.itab_offset,
            at("itaboffset"),
            "go{}: itaboffset",
            tc.minor
        );
    }
}

#[test]
fn stripped_binaries_name_their_types_and_interface_tables() {
    for tc in testprogs::toolchains() {
        let with = std::fs::read(testprogs::build("values", &tc, Variant::Default)).unwrap();
        let without = std::fs::read(testprogs::build("values", &tc, Variant::Stripped)).unwrap();
        let (a, b) = (
            GoBinary::parse(&with).unwrap(),
            GoBinary::parse(&without).unwrap(),
        );
        let (ta, tb) = (
            a.type_data().expect("type data"),
            b.type_data().expect("stripped"),
        );
        // Stripping moves (and pads) sections: the type data is found, not at the
        // same place; what it holds is compared below.
        assert!(
            ta.etypes > ta.types && tb.etypes > tb.types,
            "go{}",
            tc.minor
        );
        let (ia, ib) = (a.itabs(&ta), b.itabs(&tb));
        let errors: Vec<&str> = ib
            .iter()
            .filter(|i| i.interface == "error")
            .map(|i| i.name.as_str())
            .collect();
        // values.go makes both with errors.New and fmt.Errorf("%w").
        for want in ["*errors.errorString", "*fmt.wrapError"] {
            assert!(errors.contains(&want), "go{}: {errors:?}", tc.minor);
        }
        let names = |v: &[gobin::rtype::Itab]| -> Vec<(String, String)> {
            v.iter()
                .map(|i| (i.interface.clone(), i.name.clone()))
                .collect()
        };
        assert_eq!(
            names(&ia),
            names(&ib),
            "go{}: the same itabs either way",
            tc.minor
        );
        let e = ib.iter().find(|i| i.name == "*errors.errorString").unwrap();
        assert_eq!(
            b.runtime_type_name(&tb, e.ty).as_deref(),
            Some("*errors.errorString")
        );
    }
}
