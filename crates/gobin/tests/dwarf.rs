//! The DWARF reader against real Go executables: tests/testprogs/vars.go built with
//! every installed toolchain, optimised and not, and the toolchain's own runtime.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use gobin::VirtAddr;
use gobin::dwarf::{BaseEncoding, Dwarf, Error, TypeKind};
use object::{Object, ObjectSection};
use testprogs::{Toolchain, Variant};

/// A loader over the executable's sections, as the tracer reads them: Go's DWARF
/// sections are zlib-compressed (`SHF_COMPRESSED`) and are inflated when first read.
fn load<'a>(bytes: &'a [u8]) -> Result<Dwarf<'a>, Error> {
    let file = object::File::parse(bytes).expect("parse ELF");
    let bin = gobin::GoBinary::parse(bytes).expect("a Go executable");
    let dwarf = Dwarf::load_sections(|name| bin.dwarf_section(name));
    // The same queries through sections inflated up front give the same answers.
    let eager = Dwarf::load(|name| file.section_by_name(name)?.uncompressed_data().ok());
    if let (Ok(lazy), Ok(eager)) = (&dwarf, &eager) {
        assert_eq!(lazy.unit_count().ok(), eager.unit_count().ok());
    }
    dwarf
}

fn with_dwarf<T>(path: &Path, f: impl FnOnce(&Dwarf<'_>) -> T) -> T {
    let bytes = std::fs::read(path).expect("read test program");
    let dwarf = load(&bytes).expect("load DWARF");
    f(&dwarf)
}

/// What the program prints about its own layouts (`Outer.Name 8`…), so that DWARF is
/// compared against the compiler's `unsafe.Offsetof`, not against numbers written here.
fn printed_layout(exe: &Path) -> HashMap<String, u64> {
    let out = std::process::Command::new(exe)
        .arg("layout")
        .output()
        .expect("run vars");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// (name, type name, is_param, is_return) of every variable of `func`.
fn vars_of(d: &Dwarf<'_>, func: &str) -> Vec<(String, String, bool, bool)> {
    let f = d.function(func).unwrap_or_else(|e| panic!("{func}: {e}"));
    f.variables
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                d.type_name(v.type_id).unwrap(),
                v.is_param,
                v.is_return,
            )
        })
        .collect()
}

/// The `is_stmt` rows of `file` at addresses `keep` accepts, as
/// `objdump --dwarf=decodedline` lists them: an independent reading of the line table.
fn objdump_statements(
    exe: &Path,
    file: &str,
    keep: impl Fn(VirtAddr) -> bool,
) -> BTreeMap<u64, Vec<VirtAddr>> {
    objdump_all_statements(exe, |f, a| f == file && keep(a))
        .into_iter()
        .map(|((_, line), addrs)| (line, addrs))
        .collect()
}

/// The `is_stmt` rows of every file at addresses `keep` accepts, by (file, line).
fn objdump_all_statements(
    exe: &Path,
    keep: impl Fn(&str, VirtAddr) -> bool,
) -> BTreeMap<(String, u64), Vec<VirtAddr>> {
    let out = std::process::Command::new("objdump")
        .arg("--dwarf=decodedline")
        .arg(exe)
        .output()
        .expect("run objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut current = String::new();
    let mut rows: BTreeMap<(String, u64), Vec<VirtAddr>> = BTreeMap::new();
    for l in text.lines() {
        if let Some(header) = l.strip_suffix(':').or_else(|| l.strip_suffix(":[++]")) {
            if header.starts_with('/') {
                current = header.to_string();
            }
            continue;
        }
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() < 4 || cols.last() != Some(&"x") {
            continue;
        }
        let (Ok(line), Some(Ok(addr))) = (
            cols[1].parse::<u64>(),
            cols[2]
                .strip_prefix("0x")
                .map(|h| u64::from_str_radix(h, 16)),
        ) else {
            continue;
        };
        if keep(&current, VirtAddr(addr)) {
            let v = rows.entry((current.clone(), line)).or_default();
            if !v.contains(&VirtAddr(addr)) {
                v.push(VirtAddr(addr));
            }
        }
    }
    for v in rows.values_mut() {
        v.sort();
    }
    rows
}

fn has(
    vars: &[(String, String, bool, bool)],
    name: &str,
    ty: &str,
    param: bool,
    ret: bool,
) -> bool {
    vars.iter()
        .any(|(n, t, p, r)| n == name && t == ty && *p == param && *r == ret)
}

fn dwarf_variants() -> Vec<(Toolchain, Variant)> {
    testprogs::matrix()
        .into_iter()
        .filter(|(_, v)| matches!(v, Variant::Default | Variant::NoOpt))
        .collect()
}

#[test]
fn parameters_results_and_their_types() {
    for (tc, variant) in dwarf_variants() {
        let exe = testprogs::build("vars", &tc, variant);
        with_dwarf(&exe, |d| {
            let ctx = format!("go{} {variant}", tc.minor);
            let s = vars_of(d, "main.scalars");
            for (name, ty) in [
                ("s", "string"),
                ("n", "int"),
                ("b", "bool"),
                ("i8", "int8"),
                ("u16", "uint16"),
            ] {
                assert!(
                    has(&s, name, ty, true, false),
                    "{ctx}: scalars lacks {name} {ty}: {s:?}"
                );
            }
            assert!(
                s.iter().any(|(_, t, _, r)| *r && t == "int"),
                "{ctx}: scalars result: {s:?}"
            );
            let c = vars_of(d, "main.composite");
            for (name, ty) in [
                ("items", "[]int"),
                ("p", "main.Point"),
                ("o", "*main.Outer"),
                ("m", "map[string]int"),
                ("v", "interface {}"),
                ("e", "error"),
            ] {
                assert!(
                    has(&c, name, ty, true, false),
                    "{ctx}: composite lacks {name} {ty}: {c:?}"
                );
            }
            assert!(has(&c, "sum", "int", true, true), "{ctx}: {c:?}");
            assert!(has(&c, "label", "string", true, true), "{ctx}: {c:?}");
            let m = vars_of(d, "main.multi");
            let results: Vec<_> = m.iter().filter(|v| v.3).map(|v| v.0.as_str()).collect();
            assert_eq!(results, ["q", "r", "err"], "{ctx}");
            let scale = vars_of(d, "main.(*Point).Scale");
            assert!(
                has(&scale, "p", "*main.Point", true, false),
                "{ctx}: {scale:?}"
            );
            assert!(
                scale.iter().any(|v| v.3 && v.1 == "main.Named"),
                "{ctx}: {scale:?}"
            );
            // Out of line and inlined too: names come through DW_AT_abstract_origin.
            let add = vars_of(d, "main.add");
            assert!(
                has(&add, "a", "int", true, false) && has(&add, "b", "int", true, false),
                "{ctx}: {add:?}"
            );
            let describe = vars_of(d, "main.Outer.Describe");
            assert!(
                has(&describe, "o", "main.Outer", true, false),
                "{ctx}: {describe:?}"
            );
            if variant == Variant::NoOpt {
                // Unoptimised code keeps every local.
                assert!(
                    c.iter().any(|v| v.0 == "it" && v.1 == "int" && !v.2),
                    "{ctx}: {c:?}"
                );
                assert!(s.iter().any(|v| v.0 == "total" && !v.2), "{ctx}: {s:?}");
            }
        });
    }
}

#[test]
fn locations_at_entry_are_the_abi_registers() {
    for (tc, variant) in dwarf_variants() {
        let exe = testprogs::build("vars", &tc, variant);
        with_dwarf(&exe, |d| {
            let ctx = format!("go{} {variant}", tc.minor);
            let f = d.function("main.scalars").unwrap();
            let at = d.variables_at("main.scalars", f.entry).unwrap();
            let s = at.iter().find(|v| v.name == "s").unwrap();
            // Under the register ABI a string arrives in two registers: pointer in
            // rax, length in rbx (Go's ABIInternal on amd64).
            let loc = s
                .location
                .as_ref()
                .unwrap_or_else(|| panic!("{ctx}: s has no location at entry"));
            assert_eq!(loc.pieces.len(), 2, "{ctx}: {loc:?}");
            assert_eq!(loc.pieces[0].size, Some(8));
            assert_eq!(
                loc.pieces[0].place,
                gobin::dwarf::Place::Register(gobin::dwarf::DwarfReg(0)),
                "{ctx}"
            );
            assert_eq!(
                loc.pieces[1].place,
                gobin::dwarf::Place::Register(gobin::dwarf::DwarfReg(3)),
                "{ctx}"
            );
            let n = at.iter().find(|v| v.name == "n").unwrap();
            let n = n.location.as_ref().unwrap();
            assert_eq!(
                n.pieces[0].place,
                gobin::dwarf::Place::Register(gobin::dwarf::DwarfReg(2)),
                "{ctx}: n in rcx"
            );
            // A pc outside the function is an error, not an empty answer.
            assert!(
                d.variables_at("main.scalars", VirtAddr(f.ranges[0].end.0 + 0x100000))
                    .is_err(),
                "{ctx}"
            );
        });
    }
}

#[test]
fn struct_members_match_unsafe_offsetof() {
    for (tc, variant) in dwarf_variants() {
        let exe = testprogs::build("vars", &tc, variant);
        let printed = printed_layout(&exe);
        with_dwarf(&exe, |d| {
            let ctx = format!("go{} {variant}", tc.minor);
            let outer = d.type_named("main.Outer").unwrap();
            for m in [
                "Inner", "Small", "Name", "Count", "Items", "Next", "Attrs", "Any", "Err", "Grid",
                "Ch", "Fn", "Weight",
            ] {
                let (off, _) = d
                    .member(outer, m)
                    .unwrap()
                    .unwrap_or_else(|| panic!("{ctx}: no Outer.{m}"));
                assert_eq!(
                    Some(&off),
                    printed.get(&format!("Outer.{m}")),
                    "{ctx}: Outer.{m}"
                );
            }
            let resolved = d.type_info(d.resolve_typedefs(outer).unwrap()).unwrap();
            assert_eq!(resolved.size, printed.get("sizeof Outer").copied(), "{ctx}");
            assert!(
                resolved
                    .members
                    .iter()
                    .any(|m| m.name == "Inner" && m.embedded),
                "{ctx}"
            );
            assert!(
                resolved
                    .members
                    .iter()
                    .any(|m| m.name == "Name" && !m.embedded),
                "{ctx}"
            );
            let (_, inner) = d.member(outer, "Inner").unwrap().unwrap();
            assert_eq!(
                d.member(inner, "Flag").unwrap().map(|m| m.0),
                printed.get("Inner.Flag").copied()
            );
            assert_eq!(d.member(outer, "Nope").unwrap(), None);
            let names: Vec<String> = d
                .members(outer)
                .unwrap()
                .into_iter()
                .map(|m| m.name)
                .collect();
            assert_eq!(names.len(), 13, "{ctx}: {names:?}");

            let kind = |m: &str| {
                let (_, t) = d.member(outer, m).unwrap().unwrap();
                (d.type_name(t).unwrap(), d.type_info(t).unwrap().kind)
            };
            assert!(
                matches!(kind("Name"), (n, TypeKind::String) if n == "string"),
                "{ctx}"
            );
            assert!(
                matches!(kind("Small"), (n, TypeKind::Base(BaseEncoding::Signed)) if n == "int8")
            );
            assert!(
                matches!(kind("Items"), (n, TypeKind::Slice { elem: Some(_) }) if n == "[]int"),
                "{ctx}"
            );
            assert!(
                matches!(kind("Next"), (n, TypeKind::Pointer { target: Some(_) }) if n == "*main.Outer")
            );
            assert!(
                matches!(kind("Attrs"), (n, TypeKind::Map { key: Some(_), value: Some(_), .. }) if n == "map[string]int"),
                "{ctx}: {:?}",
                kind("Attrs")
            );
            assert!(
                matches!(kind("Grid"), (n, TypeKind::Array { count: Some(3), .. }) if n == "[3]main.Point")
            );
            assert!(
                matches!(kind("Ch"), (n, TypeKind::Chan { elem: Some(_), .. }) if n == "chan int"),
                "{ctx}"
            );
            assert!(
                matches!(kind("Fn"), (n, TypeKind::Func) if n == "func(int) string"),
                "{ctx}"
            );
            assert!(
                matches!(kind("Weight"), (n, TypeKind::Base(BaseEncoding::Float)) if n == "float64")
            );
            let any = d.member(outer, "Any").unwrap().unwrap().1;
            assert_eq!(d.type_name(any).unwrap(), "interface {}");
            let any = d.resolve_typedefs(any).unwrap();
            assert_eq!(
                d.type_info(any).unwrap().kind,
                TypeKind::Interface { empty: true },
                "{ctx}"
            );
            let err = d
                .resolve_typedefs(d.member(outer, "Err").unwrap().unwrap().1)
                .unwrap();
            assert_eq!(
                d.type_info(err).unwrap().kind,
                TypeKind::Interface { empty: false },
                "{ctx}"
            );
            // The map's key and value are types in their own right.
            let (_, attrs) = kind("Attrs");
            let TypeKind::Map {
                key: Some(k),
                value: Some(v),
                ..
            } = attrs
            else {
                panic!("{ctx}: {attrs:?}")
            };
            assert_eq!(d.type_name(k).unwrap(), "string");
            assert_eq!(d.type_name(v).unwrap(), "int");
        });
    }
}

#[test]
fn runtime_newstack_and_its_lines() {
    for (tc, variant) in dwarf_variants() {
        let exe = testprogs::build("vars", &tc, variant);
        let stack_go = tc.goroot().join("src/runtime/stack.go");
        let source = std::fs::read_to_string(&stack_go).expect("read the toolchain's stack.go");
        // The line of `gp := thisg.m.curg`, found in this toolchain's source.
        let line = source
            .lines()
            .position(|l| l.trim() == "gp := thisg.m.curg")
            .map(|i| i as u64 + 1)
            .expect("stack.go has gp := thisg.m.curg");
        with_dwarf(&exe, |d| {
            let ctx = format!("go{} {variant}", tc.minor);
            let vars = vars_of(d, "runtime.newstack");
            assert!(
                has(&vars, "thisg", "*runtime.g", false, false),
                "{ctx}: {vars:?}"
            );
            // No Go release from 1.19 to 1.27 writes DWARF for newstack's local `gp`
            // (`gp := thisg.m.curg`), optimised or not: `readelf --debug-dump=info`
            // lists thisg, sp, oldsize, newsize, morebuf… but no gp. Should one start
            // to, this says so. The goroutine is still reachable: copystack's `gp`.
            assert!(
                !vars.iter().any(|v| v.0 == "gp"),
                "{ctx}: newstack now has gp: {vars:?}"
            );
            let copystack = vars_of(d, "runtime.copystack");
            assert!(
                has(&copystack, "gp", "*runtime.g", true, false),
                "{ctx}: {copystack:?}"
            );
            let f = d.function("runtime.newstack").unwrap();
            let path = stack_go.to_string_lossy().into_owned();
            let ours: BTreeMap<u64, Vec<VirtAddr>> = d
                .statement_lines("runtime.newstack")
                .unwrap()
                .into_iter()
                .filter(|((file, _), _)| gobin::dwarf::file_matches(&path, file))
                .map(|((_, line), addrs)| (line, addrs))
                .collect();
            // The same, as binutils decodes the line table.
            let theirs = objdump_statements(&exe, &path, |a| f.contains(a));
            assert_eq!(
                ours, theirs,
                "{ctx}: statement lines of newstack in stack.go"
            );
            assert!(ours.len() > 20, "{ctx}: {ours:?}");
            // `gp := thisg.m.curg` has no row of its own in any release (its load is
            // folded into the next statement), so a probe on it needs the next line.
            assert!(
                !ours.contains_key(&line),
                "{ctx}: stack.go:{line} gained a statement"
            );
            let (&next, addrs) = ours
                .range(line..)
                .next()
                .expect("a statement after gp := thisg.m.curg");
            assert!(next - line < 12, "{ctx}: next statement at {next}");
            // The user's spelling of the path, from another installation, finds the
            // same addresses.
            for pattern in [
                "/usr/lib/golang/src/runtime/stack.go",
                "runtime/stack.go",
                "stack.go",
                "runtime/st*.go",
            ] {
                assert_eq!(
                    &d.line_addresses("runtime.newstack", pattern, next).unwrap(),
                    addrs,
                    "{ctx}: {pattern}"
                );
            }
            assert!(
                d.line_addresses("runtime.newstack", "runtime/proc.go", next)
                    .unwrap()
                    .is_empty(),
                "{ctx}"
            );
            // Types by name, as a script names them.
            let g = d.type_named("runtime.g").unwrap();
            assert!(d.member(g, "goid").unwrap().is_some(), "{ctx}");
            assert_eq!(
                d.type_name(d.type_named("*runtime.m").unwrap()).unwrap(),
                "*runtime.m"
            );
        });
    }
}

/// Statement lines of functions with much inlining, in every file they come from,
/// against binutils' decoding of the whole line table.
#[test]
fn statement_lines_of_inlining_functions_match_objdump() {
    for (tc, variant) in dwarf_variants() {
        let exe = testprogs::build("vars", &tc, variant);
        let funcs = [
            "runtime.mallocgc",
            "runtime.newproc1",
            "runtime.schedule",
            "main.main",
            "fmt.Fprintln",
        ];
        let bytes = std::fs::read(&exe).unwrap();
        let d = load(&bytes).unwrap();
        let found: Vec<_> = funcs
            .iter()
            .filter_map(|name| Some((name, d.function(name).ok()?)))
            .collect();
        assert!(found.len() >= 4, "go{} {variant}", tc.minor);
        let all = objdump_all_statements(&exe, |_, a| found.iter().any(|(_, f)| f.contains(a)));
        for (name, f) in &found {
            let ours = d.statement_lines(name).unwrap();
            let theirs: BTreeMap<(String, u64), Vec<VirtAddr>> = all
                .iter()
                .filter_map(|(k, addrs)| {
                    let addrs: Vec<VirtAddr> =
                        addrs.iter().copied().filter(|a| f.contains(*a)).collect();
                    (!addrs.is_empty()).then(|| (k.clone(), addrs))
                })
                .collect();
            assert!(ours.len() > 3, "go{} {variant} {name}: {ours:?}", tc.minor);
            assert_eq!(ours, theirs, "go{} {variant} {name}", tc.minor);
        }
    }
}

#[test]
fn stripped_binaries_say_no_dwarf() {
    for tc in testprogs::toolchains() {
        let exe = testprogs::build("vars", &tc, Variant::Stripped);
        let bytes = std::fs::read(&exe).unwrap();
        let err = load(&bytes).err().expect("a stripped binary has no DWARF");
        assert!(matches!(err, Error::NoDwarf), "go{}: {err}", tc.minor);
        assert!(err.to_string().contains("no DWARF"));
    }
}

#[test]
fn unknown_names_are_errors() {
    let tc = testprogs::newest();
    let exe = testprogs::build("vars", &tc, Variant::Default);
    with_dwarf(&exe, |d| {
        assert!(matches!(
            d.function("main.nosuch"),
            Err(Error::NoFunction(_))
        ));
        assert!(matches!(d.type_named("main.Nosuch"), Err(Error::NoType(_))));
    });
}

/// Damaged DWARF gives errors (or partial answers), never a panic: the sections of a
/// real executable, cut short or with bytes overwritten, asked every kind of question.
#[test]
fn damaged_dwarf_is_an_error_not_a_panic() {
    let tc = testprogs::newest();
    let exe = testprogs::build("vars", &tc, Variant::Default);
    let bytes = std::fs::read(&exe).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let section = |name: &str| {
        file.section_by_name(name)
            .and_then(|s| s.uncompressed_data().ok())
    };
    let intact = load(&bytes).unwrap();
    let main_unit = intact.function("main.scalars").unwrap();
    let mut errors = 0;
    for damage in 0..24u32 {
        let d = Dwarf::load(|name| {
            let mut data = section(name)?.into_owned();
            if name == ".debug_info"
                || name == ".debug_abbrev"
                || name == ".debug_loclists"
                || name == ".debug_line"
            {
                match damage % 3 {
                    0 => data.truncate(data.len() * (damage as usize + 1) / 26),
                    1 => data
                        .iter_mut()
                        .skip(damage as usize * 7)
                        .step_by(97)
                        .for_each(|b| *b = b.wrapping_mul(31) ^ 0x5a),
                    _ => data
                        .iter_mut()
                        .skip(damage as usize * 13)
                        .step_by(4099)
                        .for_each(|b| *b = 0xff),
                }
            }
            Some(data.into())
        });
        let Ok(d) = d else {
            errors += 1;
            continue;
        };
        let answers = [
            d.function("main.scalars").map(|_| ()),
            d.variables_at("main.scalars", main_unit.entry).map(|_| ()),
            d.statement_lines("main.composite").map(|_| ()),
            d.type_named("main.Outer")
                .and_then(|t| d.members(t))
                .map(|_| ()),
            d.type_named("runtime.g")
                .and_then(|t| d.type_name(t))
                .map(|_| ()),
        ];
        errors += answers.iter().filter(|a| a.is_err()).count();
    }
    // The damage is real: many of the questions failed, and said so.
    assert!(errors > 20, "only {errors} errors");

    // The same with the damage in the compressed streams, read a segment at a time.
    let bin = gobin::GoBinary::parse(&bytes).unwrap();
    let mut errors = 0;
    for damage in 0..12usize {
        let mut streams: HashMap<&str, (Vec<u8>, usize)> = HashMap::new();
        for name in [
            ".debug_info",
            ".debug_abbrev",
            ".debug_loclists",
            ".debug_line",
        ] {
            if let Some(gobin::dwarf::Section::Zlib { stream, size }) = bin.dwarf_section(name) {
                let mut z = stream.to_vec();
                match damage % 3 {
                    0 => z.truncate(z.len() * (damage + 1) / 14),
                    1 => z
                        .iter_mut()
                        .skip(damage * 11 + 2)
                        .step_by(1009)
                        .for_each(|b| *b ^= 0x5a),
                    _ => z
                        .iter_mut()
                        .skip(damage * 3 + 40)
                        .take(3)
                        .for_each(|b| *b = 0),
                }
                streams.insert(name, (z, size));
            }
        }
        let d = Dwarf::load_sections(|name| match streams.get(name) {
            Some((z, size)) => Some(gobin::dwarf::Section::Zlib {
                stream: z,
                size: *size,
            }),
            None => bin.dwarf_section(name),
        });
        let Ok(d) = d else {
            errors += 1;
            continue;
        };
        d.inflate(&[".debug_info", ".debug_loclists"]);
        let answers = [
            d.function("main.scalars").map(|_| ()),
            d.variables_at("main.scalars", main_unit.entry).map(|_| ()),
            d.statement_lines("main.composite").map(|_| ()),
            d.type_named("runtime.g")
                .and_then(|t| d.members(t))
                .map(|_| ()),
        ];
        errors += answers.iter().filter(|a| a.is_err()).count();
    }
    assert!(errors > 10, "only {errors} errors from damaged streams");
}

/// Every compressed DWARF section of every toolchain's build inflates to what
/// `object` (through zlib) inflates it to: whole, and segment by segment from the
/// checkpoints of one pass, each segment alone.
#[test]
fn compressed_sections_inflate_whole_and_by_segment() {
    use gobin::dwarf::{Section, inflate};
    for (tc, variant) in dwarf_variants() {
        let exe = testprogs::build("vars", &tc, variant);
        let bytes = std::fs::read(&exe).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        let bin = gobin::GoBinary::parse(&bytes).unwrap();
        let mut segmented = 0;
        for s in file.sections() {
            let name = s.name().unwrap_or_default();
            let Some(Section::Zlib { stream, size }) = bin.dwarf_section(name) else {
                continue;
            };
            let expect = s.uncompressed_data().unwrap();
            let what = format!("{name} of {}", exe.display());
            assert_eq!(inflate::whole(stream, size).unwrap(), &*expect, "{what}");
            let mut seen = Vec::new();
            let index =
                inflate::scan(stream, size, |_, b| seen.extend_from_slice(b), |_| {}).unwrap();
            assert!(seen == *expect, "{what}: the pass's output");
            for i in 0..index.segments() {
                let got = inflate::segment(stream, &index, i).unwrap();
                assert!(got == expect[index.segment_range(i)], "{what}: segment {i}");
            }
            segmented += usize::from(index.segments() > 1);
        }
        assert!(
            segmented > 0,
            "{}: no section of several segments",
            exe.display()
        );
    }
}

/// A query keeps only what it reads: the variables of one function hold well under
/// half of the DWARF sections' inflated size.
#[test]
fn a_query_holds_a_fraction_of_the_sections() {
    let tc = testprogs::newest();
    let exe = testprogs::build("vars", &tc, Variant::Default);
    let bytes = std::fs::read(&exe).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let inflated: u64 = file
        .sections()
        .filter(|s| s.name().is_ok_and(|n| n.starts_with(".debug_")))
        .filter_map(|s| s.uncompressed_data().ok().map(|d| d.len() as u64))
        .sum();
    let d = load(&bytes).unwrap();
    let f = d.function("main.scalars").unwrap();
    assert!(!d.variables_at("main.scalars", f.entry).unwrap().is_empty());
    let held = d.held() as u64;
    assert!(
        held > 0 && held < inflated / 2,
        "{held} of {inflated} bytes held"
    );
}

/// The units of a package said beforehand are kept by the pass over `.debug_info`:
/// finding a function there then inflates no more of it.
#[test]
fn units_of_packages_said_beforehand_are_kept_by_the_pass() {
    let tc = testprogs::newest();
    let exe = testprogs::build("vars", &tc, Variant::Default);
    let bytes = std::fs::read(&exe).unwrap();
    let bin = gobin::GoBinary::parse(&bytes).unwrap();
    let held_after_lookup = |packages: &[&str]| {
        let d = Dwarf::load_sections(|name| bin.dwarf_section(name)).unwrap();
        d.will_read_packages(packages.iter().copied());
        d.inflate(&[".debug_info"]);
        let after_pass = d.held_of(".debug_info");
        d.function("main.scalars").unwrap();
        (after_pass, d.held_of(".debug_info"))
    };
    let (plain_pass, plain_lookup) = held_after_lookup(&[]);
    let (kept_pass, kept_lookup) = held_after_lookup(&["main"]);
    assert!(kept_pass > plain_pass, "{kept_pass} vs {plain_pass}");
    // The lookup reads only `main`'s unit, which was kept.
    assert!(plain_lookup > plain_pass);
    assert_eq!(kept_lookup, kept_pass);
}

/// What a query costs on a big executable: `$GOTAP_BIG_GO` names one, such as
/// `cmd/go` built with DWARF (`go build -o /tmp/cmdgo cmd/go`). Run with
/// `cargo test --release -p gobin --test dwarf lookup_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn lookup_cost() {
    use std::time::Instant;
    let Some(path) = std::env::var_os("GOTAP_BIG_GO") else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let bin = gobin::GoBinary::parse(&bytes).unwrap();
    let t = Instant::now();
    let d = Dwarf::load_sections(|name| bin.dwarf_section(name)).unwrap();
    println!(
        "load (sections are inflated when first read): {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    println!(
        "{} units, headers read in {:?}",
        d.unit_count().unwrap(),
        t.elapsed()
    );
    let t = Instant::now();
    let newstack = d.function("runtime.newstack").unwrap();
    println!("runtime.newstack found in {:?}", t.elapsed());
    let t = Instant::now();
    let lines = d.statement_lines("runtime.newstack").unwrap();
    println!(
        "statement lines of runtime.newstack: {} in {:?}",
        lines.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let vars = d.variables_at("runtime.newstack", newstack.entry).unwrap();
    println!(
        "runtime.newstack: {} variables in {:?}",
        vars.len(),
        t.elapsed()
    );
    for func in ["cmd/go/internal/load.PackagesAndErrors", "main.main"] {
        let t = Instant::now();
        let Ok(f) = d.function(func) else {
            println!("{func}: not in this binary");
            continue;
        };
        let vars = d.variables_at(func, f.entry).unwrap();
        println!("{func}: {} variables in {:?}", vars.len(), t.elapsed());
    }
    let t = Instant::now();
    let g = d.type_named("runtime.g").unwrap();
    let members = d.members(g).unwrap();
    println!(
        "runtime.g by name: {} members in {:?}",
        members.len(),
        t.elapsed()
    );
    println!("{} bytes of DWARF held", d.held());
}

/// The file with the compression header of `section` overwritten by `damage`
/// (given the header's bytes: type u32, reserved u32, size u64, alignment u64).
fn with_header_damage(bytes: &[u8], section: &str, damage: impl Fn(&mut [u8])) -> Vec<u8> {
    let file = object::File::parse(bytes).unwrap();
    let (offset, size) = file
        .section_by_name(section)
        .and_then(|s| s.file_range())
        .unwrap_or_else(|| panic!("{section} is stored"));
    assert!(size >= 24, "{section} has a compression header");
    let mut out = bytes.to_vec();
    damage(&mut out[offset as usize..offset as usize + 24]);
    out
}

/// A corrupt compression header is a corrupt section, said with its name: never
/// "no DWARF" (which tells the user to rebuild), never "no function" or an empty
/// list of variables.
#[test]
fn a_damaged_compression_header_names_its_section() {
    let tc = testprogs::newest();
    let exe = testprogs::build("vars", &tc, Variant::Default);
    let bytes = std::fs::read(&exe).unwrap();
    let entry = with_dwarf(&exe, |d| d.function("main.scalars").unwrap().entry);
    let unknown_type = |h: &mut [u8]| h[..4].copy_from_slice(&0x7fu32.to_le_bytes());
    let huge_size = |h: &mut [u8]| h[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    for (how, damage) in [
        (
            "an unknown compression type",
            &unknown_type as &dyn Fn(&mut [u8]),
        ),
        ("a stated size no stream can reach", &huge_size),
    ] {
        // Without the units or their abbreviations, DWARF does not open.
        for section in [".debug_info", ".debug_abbrev"] {
            let bad = with_header_damage(&bytes, section, damage);
            let bin = gobin::GoBinary::parse(&bad).unwrap();
            let err = Dwarf::load_sections(|name| bin.dwarf_section(name))
                .err()
                .unwrap_or_else(|| panic!("{section} with {how} opened"));
            assert!(
                matches!(&err, Error::CorruptSection { section: s, .. } if s == section),
                "{section} with {how}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.contains(section) && !text.contains("no DWARF"),
                "{text}"
            );
        }
        // Without location lists, DWARF opens, and reading a variable names them.
        let bad = with_header_damage(&bytes, ".debug_loclists", damage);
        let bin = gobin::GoBinary::parse(&bad).unwrap();
        let d = Dwarf::load_sections(|name| bin.dwarf_section(name)).unwrap();
        let err = d.variables_at("main.scalars", entry).unwrap_err();
        assert!(
            matches!(&err, Error::CorruptSection { section, .. } if section == ".debug_loclists"),
            ".debug_loclists with {how}: {err}"
        );
        assert_eq!(d.damaged().len(), 1);
        // Without the line table, statement lines name it.
        let bad = with_header_damage(&bytes, ".debug_line", damage);
        let bin = gobin::GoBinary::parse(&bad).unwrap();
        let d = Dwarf::load_sections(|name| bin.dwarf_section(name)).unwrap();
        let err = d.statement_lines("main.composite").unwrap_err();
        assert!(
            matches!(&err, Error::CorruptSection { section, .. } if section == ".debug_line"),
            ".debug_line with {how}: {err}"
        );
    }
}

/// A stream that stops inflating partway is a corrupt section too, named once a read
/// reaches the damage.
#[test]
fn a_damaged_stream_names_its_section() {
    let tc = testprogs::newest();
    let exe = testprogs::build("vars", &tc, Variant::Default);
    let bytes = std::fs::read(&exe).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let (offset, size) = file
        .section_by_name(".debug_info")
        .and_then(|s| s.file_range())
        .unwrap();
    // Everything after the header and the first 64 bytes of stream: zeros, which
    // deflate reads as a stored block whose length check fails.
    let mut bad = bytes.clone();
    bad[offset as usize + 24 + 64..(offset + size) as usize].fill(0);
    let bin = gobin::GoBinary::parse(&bad).unwrap();
    let d = Dwarf::load_sections(|name| bin.dwarf_section(name)).unwrap();
    let err = d.function("main.scalars").unwrap_err();
    assert!(
        matches!(&err, Error::CorruptSection { section, .. } if section == ".debug_info"),
        "{err}"
    );
}

/// `runtime.memstats.numgc`, found from the code of `gcMarkTermination`, is where
/// the symbol table puts `runtime.memstats` plus where DWARF puts the field, in every
/// release; a stripped build finds it the same way.
#[test]
fn the_gc_count_found_in_the_code_is_memstats_numgc() {
    for tc in testprogs::toolchains() {
        let exe = testprogs::build("rt_gc", &tc, testprogs::Variant::Default);
        let bytes = std::fs::read(&exe).expect("read test program");
        let bin = gobin::GoBinary::parse(&bytes).expect("a Go executable");
        let base = bin.elf().symbol_address("runtime.memstats");
        let field = with_dwarf(&exe, |d| {
            let t = d.type_named("runtime.mstats").expect("runtime.mstats");
            d.member(t, "numgc").expect("members").map(|m| m.0)
        });
        let (Some(base), Some(field)) = (base, field) else {
            panic!("go{}: memstats {base:?}, numgc at {field:?}", tc.minor);
        };
        assert_eq!(bin.gc_count_address(), Some(base + field), "go{}", tc.minor);
        let stripped = std::fs::read(testprogs::build("rt_gc", &tc, testprogs::Variant::Stripped))
            .expect("read test program");
        let stripped = gobin::GoBinary::parse(&stripped).expect("a Go executable");
        assert!(
            stripped.gc_count_address().is_some(),
            "go{} stripped",
            tc.minor
        );
    }
}
