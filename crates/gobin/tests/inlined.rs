//! Inlined calls as `.gopclntab`'s inline trees give them and as DWARF's inlined
//! subroutines give them, on tests/testprogs/inlined.go built by every toolchain:
//! the same calls at the same first pcs, each one an instruction a uprobe may take,
//! and a stripped build has the same ones.

use std::collections::BTreeSet;

use gobin::dwarf::Dwarf;
use gobin::{GoBinary, x86};
use testprogs::Variant;

/// (callee, first pc) of every inlined call of the functions the program counts.
fn from_pclntab(bin: &GoBinary<'_>) -> BTreeSet<(String, u64)> {
    ["main.(*counter).Value", "sync.(*Mutex).Lock"]
        .iter()
        .flat_map(|p| bin.inlined_calls_matching(p))
        .map(|c| (c.callee.to_string(), c.addr.0))
        .collect()
}

#[test]
fn inline_trees_and_dwarf_agree_on_every_toolchain() {
    for tc in testprogs::toolchains() {
        let exe = testprogs::build("inlined", &tc, Variant::Default);
        let data = std::fs::read(&exe).unwrap();
        let bin = GoBinary::parse(&data).unwrap();
        let ours = from_pclntab(&bin);
        let d = Dwarf::load_sections(|n| bin.dwarf_section(n)).unwrap();
        let wanted = |n: &str| n == "main.(*counter).Value" || n == "sync.(*Mutex).Lock";
        let theirs: BTreeSet<(String, u64)> = d
            .inlined_instances(&wanted)
            .unwrap()
            .into_iter()
            .map(|i| (i.name, i.entry.0))
            .collect();
        assert_eq!(ours, theirs, "go{}", tc.minor);
        // The program calls Value from three call sites, all inlined into main.
        let values: Vec<_> = bin
            .inlined_calls_matching("main.(*counter).Value")
            .into_iter()
            .filter(|c| c.holder.name.starts_with("main."))
            .collect();
        assert_eq!(values.len(), 3, "go{}: {values:?}", tc.minor);
        let in_get = bin
            .inlined_calls_matching("sync.(*Mutex).Lock")
            .into_iter()
            .filter(|c| c.holder.name == "main.(*Store).Get")
            .count();
        assert_eq!(in_get, 1, "go{}: Lock inlined into Store.Get", tc.minor);
        // Each first pc starts an instruction of the function that holds it, and
        // the frames there name the inlined function under its caller.
        for c in bin.inlined_calls_matching("main.(*counter).Value") {
            assert_eq!(
                x86::check(&bin, &c.holder, c.addr),
                Ok(()),
                "go{} {c:?}",
                tc.minor
            );
            let frames = bin.frames_at(c.addr);
            assert!(
                frames
                    .iter()
                    .any(|f| f.inlined && f.function == "main.(*counter).Value"),
                "go{}: {frames:?}",
                tc.minor
            );
        }
        // The inlined call's own receiver has a location at its first pc.
        for i in d
            .inlined_instances(&|n| n == "main.(*counter).Value")
            .unwrap()
        {
            let f = d.inlined_function(i.die, &i.name).unwrap();
            let vars = f.variables_at(i.entry);
            assert!(
                vars.iter().any(|v| v.name == "c"),
                "go{}: the inlined call at {} has {vars:?}",
                tc.minor,
                i.entry
            );
        }
        // Each call of the inline trees finds its DWARF instance from its holder
        // alone: the same DIE the scan of every unit finds.
        let instances = d.inlined_instances(&wanted).unwrap();
        for p in ["main.(*counter).Value", "sync.(*Mutex).Lock"] {
            for c in bin.inlined_calls_matching(p) {
                let found = d.inlined_call(c.holder.name, c.callee, c.addr).unwrap();
                let expect = instances
                    .iter()
                    .find(|i| i.entry == c.addr && i.name == c.callee);
                assert_eq!(found.as_ref(), expect, "go{} {c:?}", tc.minor);
                // A holder DWARF names otherwise (a generic instantiation): the
                // call is found in the units whose address ranges hold it.
                let by_address = d.inlined_call("no.such.holder", c.callee, c.addr).unwrap();
                assert_eq!(by_address.as_ref(), expect, "go{} {c:?}", tc.minor);
            }
        }
        // The search by name passes over trees that name no match without building
        // their calls: it finds every call that building every tree finds. Shown for
        // the callees of calls that others were inlined into (a search that missed
        // an outer call, one whose code is all inner calls, would miss those) and the
        // program's own. (A name with type arguments in brackets reads as a glob.)
        let mut every: Vec<_> = bin
            .functions()
            .flat_map(|f| bin.inlined_calls(&f))
            .collect();
        every.sort_by_key(|c| (c.addr, c.holder.entry, c.index));
        assert!(every.len() > 100, "go{}: {} calls", tc.minor, every.len());
        let outer = |c: &&gobin::InlinedCall| {
            every
                .iter()
                .any(|d| d.holder.entry == c.holder.entry && d.parent == Some(c.index))
        };
        let callees: BTreeSet<&str> = every
            .iter()
            .filter(outer)
            .map(|c| c.callee)
            .chain(["main.(*counter).Value", "sync.(*Mutex).Lock"])
            .filter(|c| !gobin::funcs::is_glob(c))
            .collect();
        assert!(callees.len() > 5, "go{}: {callees:?}", tc.minor);
        for callee in callees {
            let mut found = bin.inlined_calls_matching(callee);
            found.sort_by_key(|c| (c.addr, c.holder.entry, c.index));
            let expect: Vec<_> = every.iter().filter(|c| c.callee == callee).collect();
            assert!(
                found.iter().eq(expect.iter().copied()),
                "go{}: the search for {callee} found {} of {} calls",
                tc.minor,
                found.len(),
                expect.len()
            );
        }
        // Stripping keeps the inline trees: the same calls.
        let stripped = std::fs::read(testprogs::build("inlined", &tc, Variant::Stripped)).unwrap();
        let sbin = GoBinary::parse(&stripped).unwrap();
        assert_eq!(from_pclntab(&sbin), ours, "go{} stripped", tc.minor);
    }
}
