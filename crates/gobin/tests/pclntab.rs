//! `.gopclntab` reading checked against the Go toolchain's own tools on real programs
//! built with every installed toolchain in every variant: `go tool nm` for the
//! function list, `go tool addr2line` for pc → function and file:line, the runtime's
//! `runtime.CallersFrames` for inlined frames, and the runtime's source for statement
//! lines.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use gobin::{GoBinary, VirtAddr};
use testprogs::{Toolchain, Variant};

const PROGRAMS: [&str; 3] = ["counts", "example", "inline"];

fn run(mut cmd: Command, stdin: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || input.write_all(text.as_bytes()));
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer thread").expect("write stdin");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The names of the text symbols (`T`/`t`) that `go tool nm` lists, sorted, with
/// repeats.
fn nm_text_symbols(tc: &Toolchain, exe: &Path) -> Vec<String> {
    let mut cmd = tc.go_command();
    cmd.args(["tool", "nm"]).arg(exe);
    run(cmd, "")
        .lines()
        .filter_map(|l| {
            let mut it = l.trim_start().splitn(3, ' ');
            let (_addr, kind, name) = (it.next()?, it.next()?, it.next()?);
            matches!(kind, "T" | "t").then(|| name.to_string())
        })
        .collect::<Vec<_>>()
        .tap_sort()
}

trait TapSort {
    fn tap_sort(self) -> Self;
}

impl TapSort for Vec<String> {
    fn tap_sort(mut self) -> Self {
        self.sort();
        self
    }
}

/// The function names in the pclntab made comparable, sorted, with repeats.
fn names(bin: &GoBinary<'_>) -> Vec<String> {
    bin.functions()
        .map(|f| comparable_name(f.name))
        .collect::<Vec<_>>()
        .tap_sort()
}

/// A name as both tables can agree on it. The symbol table gives an assembly (ABI0)
/// function that also has a Go (ABIInternal) body the suffix `.abi0`; the pclntab
/// names both alike. And which of the two spells type arguments in full and which
/// shortens them to `[...]` (generic instantiations, `type:.eq` of arrays) changed
/// between releases (Go 1.19's pclntab shortens `type..eq.[2]T`, Go 1.21's does not),
/// so every outermost bracket group compares as `[...]`. The symbol table also writes
/// the middle dot of compiler-made names (`type:.eq.runtime.untracedG·6`) as `.`.
fn comparable_name(symbol: &str) -> String {
    let name = symbol.strip_suffix(".abi0").unwrap_or(symbol);
    let mut out = String::new();
    let mut depth = 0;
    for c in name.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    out.push_str("[...]");
                }
                depth += 1;
            }
            ']' if depth > 0 => depth -= 1,
            '·' if depth == 0 => out.push('.'),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The linker's text symbols that are not functions and so have no pclntab entry:
/// the markers of the text section's bounds.
fn is_text_marker(name: &str) -> bool {
    matches!(
        name,
        "runtime.text" | "runtime.etext" | "go:buildid" | "go.buildid"
    )
}

#[test]
fn functions_are_the_text_symbols_of_go_tool_nm() {
    for (tc, variant) in testprogs::matrix() {
        for prog in PROGRAMS {
            let exe = testprogs::build(prog, &tc, variant);
            let data = std::fs::read(&exe).expect("read program");
            let bin = GoBinary::parse(&data).expect("parse");
            let ours = names(&bin);
            let ours_set: BTreeSet<&String> = ours.iter().collect();
            // A stripped program has no symbols for nm: compare with the same program
            // built unstripped, whose code the linker lays out alike.
            let reference = if variant == Variant::Stripped {
                testprogs::build(prog, &tc, Variant::Default)
            } else {
                exe.clone()
            };
            let nm: Vec<String> = nm_text_symbols(&tc, &reference)
                .iter()
                .filter(|n| !is_text_marker(n))
                .map(|n| comparable_name(n))
                .collect::<Vec<_>>()
                .tap_sort();
            let nm_set: BTreeSet<&String> = nm.iter().collect();
            let only_nm: Vec<_> = nm_set.difference(&ours_set).collect();
            let only_ours: Vec<_> = ours_set.difference(&nm_set).collect();
            assert!(
                only_nm.is_empty() && only_ours.is_empty(),
                "go{} {prog} {variant}: only in nm {only_nm:?}; only in pclntab {only_ours:?}",
                tc.minor
            );
            // Same names the same number of times (an ABI0 function and its ABIInternal
            // wrapper share a name), and every table entry decoded.
            assert_eq!(nm, ours, "go{} {prog} {variant}: repeats differ", tc.minor);
            assert_eq!(
                bin.function_count(),
                ours.len(),
                "go{} {prog} {variant}",
                tc.minor
            );
        }
    }
}

/// The toolchain whose `addr2line` and `objdump` read a program built by `tc`. Go
/// 1.19's read a PIE's text start from the pclntab header, which holds zero until the
/// dynamic loader relocates it, and so know no pc; later releases fixed that.
fn tool_for<'a>(tc: &'a Toolchain, variant: Variant, newest: &'a Toolchain) -> &'a Toolchain {
    if variant == Variant::Pie && tc.minor_number() < (1, 21) {
        newest
    } else {
        tc
    }
}

/// Every 97th byte address inside a function (`go tool addr2line` takes any pc).
fn sample_pcs(bin: &GoBinary<'_>) -> Vec<VirtAddr> {
    let first = bin.functions().next().expect("a function").entry;
    let last = bin.functions().last().expect("a function").end;
    (first.0..last.0)
        .step_by(97)
        .map(VirtAddr)
        .filter(|&pc| bin.function_at(pc).is_some())
        .collect()
}

#[test]
fn pcs_resolve_as_go_tool_addr2line_does() {
    let newest = testprogs::newest();
    for (tc, variant) in testprogs::matrix() {
        for prog in PROGRAMS {
            let exe = testprogs::build(prog, &tc, variant);
            let data = std::fs::read(&exe).expect("read program");
            let bin = GoBinary::parse(&data).expect("parse");
            let pcs = sample_pcs(&bin);
            assert!(
                pcs.len() > 1000,
                "go{} {prog} {variant}: only {} pcs",
                tc.minor,
                pcs.len()
            );
            let input: String = pcs.iter().map(|pc| format!("{:#x}\n", pc.0)).collect();
            let mut cmd = tool_for(&tc, variant, &newest).go_command();
            cmd.args(["tool", "addr2line"]).arg(&exe);
            let out = run(cmd, &input);
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(
                lines.len(),
                2 * pcs.len(),
                "go{} {prog} {variant}: addr2line output",
                tc.minor
            );
            let mut inlined = 0;
            for (pc, pair) in pcs.iter().zip(lines.chunks(2)) {
                let frames = bin.frames_at(*pc);
                let (inner, outer) = (
                    frames.first().expect("a frame"),
                    frames.last().expect("a frame"),
                );
                inlined += usize::from(frames.len() > 1);
                // addr2line names the function that holds the pc and the innermost
                // source position. Where the tables end before the pc (padding) it
                // prints `:-1`, and for the linker's marker functions such as
                // `go:textfipsstart`, which have no tables, other negative lines; we say `?:0`.
                let theirs = match pair[1].strip_prefix(":-") {
                    Some(n) if n.parse::<u32>().is_ok() => "?:0".to_string(),
                    _ => pair[1].to_string(),
                };
                let ours = (
                    outer.function.to_string(),
                    format!("{}:{}", inner.file, inner.line),
                );
                assert_eq!(
                    (pair[0].to_string(), theirs),
                    ours,
                    "go{} {prog} {variant} at {pc}",
                    tc.minor
                );
                assert_eq!(bin.function_at(*pc).map(|f| f.name), Some(outer.function));
            }
            if variant != Variant::NoOpt {
                assert!(
                    inlined > 10,
                    "go{} {prog} {variant}: only {inlined} sampled pcs are inlined",
                    tc.minor
                );
            } else {
                // `-l` stops inlining in the program and the standard library alike.
                assert_eq!(inlined, 0, "go{} {prog} {variant}", tc.minor);
            }
        }
    }
}

/// One line of the inline program's output: a pc and the frame the runtime gave it.
#[derive(Debug)]
struct Captured {
    pc: u64,
    function: String,
    file: String,
    line: u32,
}

#[test]
fn inlined_frames_match_runtime_callers_frames() {
    for (tc, variant) in testprogs::matrix() {
        let exe = testprogs::build("inline", &tc, variant);
        let data = std::fs::read(&exe).expect("read program");
        let bin = GoBinary::parse(&data).expect("parse");
        let out = Command::new(&exe).output().expect("run inline");
        assert!(
            out.status.success(),
            "inline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let base = text
            .lines()
            .find_map(|l| l.strip_prefix("base "))
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .expect("base line");
        let main = bin.function_by_name("main.main").expect("main.main");
        // Zero for a fixed-address executable; the load base for a PIE.
        let bias = base.wrapping_sub(main.entry.0);
        if !bin.is_pie() {
            assert_eq!(bias, 0, "go{} {variant}", tc.minor);
        }
        let mut captures: Vec<(String, Vec<Captured>)> = Vec::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("capture ") {
                captures.push((name.to_string(), Vec::new()));
            } else if let Some(rest) = line.strip_prefix("pc ") {
                let (pc, frame) = rest.split_once(' ').expect("pc line");
                let mut f = frame.split('\t');
                let c = Captured {
                    pc: u64::from_str_radix(pc, 16)
                        .expect("hex pc")
                        .wrapping_sub(bias),
                    function: f.next().expect("function").to_string(),
                    file: f.next().expect("file").to_string(),
                    line: f.next().and_then(|l| l.parse().ok()).expect("line"),
                };
                captures.last_mut().expect("capture line first").1.push(c);
            }
        }
        let names: Vec<&str> = captures.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["inner", "method", "main"],
            "go{} {variant}",
            tc.minor
        );
        for (name, pcs) in &captures {
            let ctx = format!("go{} {variant} capture {name}", tc.minor);
            let printed: Vec<(&str, &str, u32)> = pcs
                .iter()
                .map(|c| (c.function.as_str(), c.file.as_str(), c.line))
                .collect();
            // Each pc alone: the runtime's frame is our innermost frame at pc-1.
            for c in pcs {
                let frames = bin.frames_at(VirtAddr(c.pc - 1));
                let f = frames
                    .first()
                    .unwrap_or_else(|| panic!("{ctx}: no frame at {:#x}", c.pc));
                assert_eq!(
                    (f.function, f.file, f.line),
                    (c.function.as_str(), c.file.as_str(), c.line),
                    "{ctx}"
                );
            }
            // The whole stack: runtime.Callers lists one pc per frame, inlined ones
            // included, so our expansion of one physical frame's return address must
            // be the runtime's next frames, in order.
            let mut i = 0;
            while i < pcs.len() {
                let frames = bin.frames_at(VirtAddr(pcs[i].pc - 1));
                let ours: Vec<(&str, &str, u32)> = frames
                    .iter()
                    .map(|f| (f.function, f.file, f.line))
                    .collect();
                assert_eq!(
                    printed.get(i..i + ours.len()),
                    Some(&ours[..]),
                    "{ctx}: frames at pc #{i}"
                );
                assert!(
                    frames[..frames.len() - 1].iter().all(|f| f.inlined)
                        && !frames[frames.len() - 1].inlined
                );
                i += ours.len();
            }
            let inner_frames: Vec<&str> = printed.iter().map(|p| p.0).collect();
            if variant != Variant::NoOpt && *name == "inner" {
                let at = bin.frames_at(VirtAddr(pcs[2].pc - 1));
                let got: Vec<(&str, bool)> = at.iter().map(|f| (f.function, f.inlined)).collect();
                assert_eq!(
                    got,
                    [
                        ("main.inner", true),
                        ("main.middle", true),
                        ("main.outer", false)
                    ],
                    "{ctx}: {inner_frames:?}"
                );
            }
        }
    }
}

/// The line of `needle` in a toolchain's runtime source, found by reading it.
fn runtime_source_line(tc: &Toolchain, file: &str, needle: &str) -> u32 {
    let path = tc.goroot().join("src/runtime").join(file);
    let text = std::fs::read_to_string(&path).expect("read runtime source");
    let at = text
        .lines()
        .position(|l| l.trim() == needle)
        .unwrap_or_else(|| panic!("{needle} in {}", path.display()));
    at as u32 + 1
}

/// The `stack.go` lines that `go tool objdump` shows for the code of
/// `runtime.newstack`.
fn objdump_stack_go_lines(tc: &Toolchain, exe: &Path) -> BTreeSet<u32> {
    let mut cmd = tc.go_command();
    cmd.args(["tool", "objdump", "-s", "^runtime.newstack$"])
        .arg(exe);
    run(cmd, "")
        .lines()
        .filter_map(|l| {
            l.trim_start()
                .strip_prefix("stack.go:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn newstack_statement_lines_include_its_curg_load() {
    let newest = testprogs::newest();
    for (tc, variant) in testprogs::matrix() {
        let exe = testprogs::build("counts", &tc, variant);
        let data = std::fs::read(&exe).expect("read program");
        let bin = GoBinary::parse(&data).expect("parse");
        let line = runtime_source_line(&tc, "stack.go", "gp := thisg.m.curg");
        let f = bin
            .function_by_name("runtime.newstack")
            .expect("runtime.newstack");
        let lines = bin.statement_lines(&f);
        let file = lines
            .iter()
            .map(|(file, _)| *file)
            .find(|file| file.ends_with("/src/runtime/stack.go"))
            .expect("runtime/stack.go among newstack's lines");
        // Our lines are those of newstack's own body, a subset of what objdump shows
        // (which includes bodies inlined from stack.go); and the `curg` load has a
        // line of its own exactly when objdump shows one. (Go 1.19's compiler folds
        // it into the next statement.)
        // A stripped program has no symbols for objdump: ask about the same program
        // built unstripped, whose code is the same.
        let reference = if variant == Variant::Stripped {
            testprogs::build("counts", &tc, Variant::Default)
        } else {
            exe.clone()
        };
        let objdump = objdump_stack_go_lines(tool_for(&tc, variant, &newest), &reference);
        let ours: BTreeSet<u32> = lines
            .iter()
            .filter(|(f, _)| *f == file)
            .map(|(_, l)| *l)
            .collect();
        assert!(
            ours.is_subset(&objdump),
            "go{} {variant}: {:?}",
            tc.minor,
            ours.difference(&objdump)
        );
        assert!(ours.len() > 40, "go{} {variant}: {ours:?}", tc.minor);
        assert_eq!(
            ours.contains(&line),
            objdump.contains(&line),
            "go{} {variant}: line {line}",
            tc.minor
        );
        // On every toolchain here the load has no code of its own (the compiler
        // attributes it to a later statement), so a probe on that line goes to the
        // nearest following line that has code, which objdump must agree on.
        let next = *objdump
            .range(line..)
            .next()
            .expect("a stack.go line after curg's");
        let (at_line, pc) = bin
            .nearest_line_start(&f, file, line)
            .expect("a line at or after curg's");
        assert_eq!(at_line, next, "go{} {variant}", tc.minor);
        let line = at_line;
        // Where that line starts, the pclntab says that line, outside inlined code.
        let starts = bin.line_starts(&f);
        assert_eq!(starts[&(file, line)], pc);
        assert_eq!(
            bin.frames_at(pc),
            [gobin::Frame {
                function: f.name,
                file,
                line,
                inlined: false
            }]
        );
        assert_eq!(
            bin.addresses_for_line(&f, "runtime/stack.go", line).first(),
            Some(&pc)
        );
        assert_eq!(
            bin.addresses_for_line(&f, "st*.go", line).first(),
            Some(&pc)
        );
        assert!(
            bin.addresses_for_line(&f, "tack.go", line).is_empty(),
            "a suffix must start at a /"
        );
        // Every statement line starts at a pc that maps back to it.
        for ((file, line), pc) in &starts {
            let frames = bin.frames_at(*pc);
            assert_eq!(
                (frames[0].file, frames[0].line, frames.len()),
                (*file, *line, 1),
                "go{} {variant}",
                tc.minor
            );
        }
    }
}

#[test]
fn functions_are_found_by_name_glob_and_address() {
    let tc = testprogs::newest();
    for variant in Variant::ALL {
        let exe = testprogs::build("counts", &tc, variant);
        let data = std::fs::read(&exe).expect("read program");
        let bin = GoBinary::parse(&data).expect("parse");
        let main: BTreeSet<&str> = bin
            .functions_matching("main.*")
            .iter()
            .map(|f| f.name)
            .collect();
        for want in [
            "main.main",
            "main.leaf",
            "main.recurse",
            "main.(*T).Method",
            "main.once",
        ] {
            assert!(main.contains(want), "{variant}: {want} not in {main:?}");
        }
        assert!(main.iter().all(|n| n.starts_with("main.")));
        let method = bin.functions_matching("main.(*T).Method");
        assert_eq!(method.len(), 1);
        assert_eq!(bin.functions_matching("main.(*T).*"), method);
        let news = bin.functions_matching("runtime.new*");
        assert!(
            news.iter().any(|f| f.name == "runtime.newstack")
                && news.iter().all(|f| f.name.starts_with("runtime.new"))
        );
        for f in bin.functions().step_by(7) {
            assert_eq!(bin.function_at(f.entry).map(|g| g.index), Some(f.index));
            assert_eq!(
                bin.function_at(VirtAddr(f.end.0 - 1)).map(|g| g.index),
                Some(f.index)
            );
            assert!(
                bin.function_by_name(f.name)
                    .is_some_and(|g| g.name == f.name)
            );
        }
        let first = bin.functions().next().expect("a function");
        assert_eq!(bin.function_at(VirtAddr(first.entry.0 - 1)), None);
        // The first lookups by name scan the table, later ones use a sorted index:
        // both find the same functions (ABI wrappers share names), and no more.
        let fresh = GoBinary::parse(&data).expect("parse");
        for f in bin.functions().step_by(3) {
            let scanned = fresh.functions_named(f.name);
            let indexed = bin.functions_named(f.name);
            assert_eq!(scanned, indexed, "{variant}: {}", f.name);
            assert!(indexed.iter().any(|g| g.index == f.index));
        }
        assert!(bin.functions_named("main.no_such_function").is_empty());
        // Build info, as `go version` and the build flags say.
        let info = bin.build_info();
        assert_eq!(info.go_version_string, tc.version);
        assert_eq!(
            bin.go_version().to_string(),
            tc.version.trim_end_matches(|c: char| !c.is_ascii_digit())
        );
        assert_eq!(
            (bin.go_version().major, bin.go_version().minor),
            tc.minor_number()
        );
        assert_eq!(info.path, Some("command-line-arguments"));
        assert_eq!(info.setting("GOARCH"), Some("amd64"));
        assert_eq!(
            info.setting("-ldflags"),
            (variant == Variant::Stripped).then_some("\"-s -w\"")
        );
        assert_eq!(
            info.setting("-buildmode") == Some("pie"),
            variant == Variant::Pie
        );
        assert_eq!(bin.is_pie(), variant == Variant::Pie);
    }
}

#[test]
fn dwarf_sections_come_back_decompressed() {
    for (tc, variant) in testprogs::matrix() {
        let exe = testprogs::build("counts", &tc, variant);
        let data = std::fs::read(&exe).expect("read program");
        let bin = GoBinary::parse(&data).expect("parse");
        let info = bin.section_data(".debug_info");
        if variant == Variant::Stripped {
            assert!(info.is_none(), "go{} {variant}: -w drops DWARF", tc.minor);
            continue;
        }
        let info = info.unwrap_or_else(|| panic!("go{} {variant}: .debug_info", tc.minor));
        // The first compilation unit's header: 32-bit length, then version 4 or 5.
        let len = u32::from_le_bytes(info[..4].try_into().expect("4 bytes")) as usize;
        let version = u16::from_le_bytes(info[4..6].try_into().expect("2 bytes"));
        assert!(
            matches!(version, 4 | 5),
            "go{} {variant}: DWARF version {version}",
            tc.minor
        );
        assert!(len + 4 <= info.len(), "go{} {variant}", tc.minor);
        let line = bin.section_data(".debug_line").expect(".debug_line");
        assert!(line.len() > 1000);
    }
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Asks everything of a binary, with bounded work; only panics matter.
fn exercise(bin: &GoBinary<'_>) {
    let _ = (
        bin.go_version(),
        bin.build_info().setting("GOARCH"),
        bin.is_pie(),
        bin.text_start(),
    );
    let n = bin.functions().take(5000).count();
    let _ = bin.functions_matching("main.*");
    let _ = bin.function_by_name("runtime.newstack");
    let _ = bin.section_data(".debug_line").map(|d| d.len());
    for f in bin.functions().step_by((n / 40).max(1)).take(50) {
        let _ = bin.function_at(f.entry);
        let _ = bin.function_by_name(f.name);
        let _ = bin.frames_at(f.entry.offset(3));
        let _ = bin.statement_lines(&f);
        let _ = bin.addresses_for_line(&f, "*.go", 10);
        let _ = bin.file_offset(f.entry);
        let _ = bin.text_bytes(f.entry, 16);
        let _ = gobin::x86::probe_site(bin, &f);
        let _ = gobin::x86::returns(bin, &f);
        let _ = gobin::x86::is_instruction_boundary(bin, &f, f.entry.offset(1));
    }
}

#[test]
fn damaged_binaries_give_errors_not_panics() {
    let newest = testprogs::newest();
    let oldest = testprogs::toolchains().remove(0);
    let cases = [
        (&oldest, Variant::Default),
        (&newest, Variant::Stripped),
        (&newest, Variant::Pie),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut parsed, mut refused) = (0, 0);
    for (tc, variant) in cases {
        let original =
            std::fs::read(testprogs::build("inline", tc, variant)).expect("read program");
        let bin = GoBinary::parse(&original).expect("parse");
        // Where damage hurts most: the ELF and program headers, the section headers at
        // the end, the pclntab header, function table and records, the build info.
        let off = |addr: VirtAddr| bin.file_offset(addr).map(|o| o.0 as usize).expect("mapped");
        let pcln = off(VirtAddr(bin.pclntab().addr));
        let buildinfo = bin
            .elf()
            .section(".go.buildinfo")
            .map(|s| off(VirtAddr(s.addr)))
            .expect("buildinfo");
        let regions = [
            (0, 0x1000),
            (original.len().saturating_sub(0x1000), original.len()),
            (pcln, pcln + 0x60),
            (pcln, pcln + 0x40000),
            (buildinfo, buildinfo + 0x100),
            (0, original.len()),
        ];
        drop(bin);
        for round in 0..300 {
            let mut data = original.clone();
            if round % 10 == 9 {
                data.truncate(rng.below(original.len()));
            } else {
                for _ in 0..1 + rng.below(8) {
                    let (lo, hi) = regions[rng.below(regions.len())];
                    let at = lo + rng.below(hi.min(data.len()) - lo);
                    data[at] = if rng.next() & 1 == 0 {
                        rng.next() as u8
                    } else {
                        data[at] ^ (1 << rng.below(8))
                    };
                }
            }
            match GoBinary::parse(&data) {
                Ok(bin) => {
                    parsed += 1;
                    exercise(&bin);
                }
                Err(_) => refused += 1,
            }
        }
    }
    // Both paths ran: most damage leaves a readable file to query, some is refused.
    assert!(
        parsed > 300 && refused > 100,
        "parsed {parsed}, refused {refused}"
    );
    // And data that is not a Go ELF at all.
    assert_eq!(GoBinary::parse(b"").err(), Some(gobin::Error::NotElf));
    assert_eq!(
        GoBinary::parse(b"#!/bin/sh\n").err(),
        Some(gobin::Error::NotElf)
    );
    assert!(matches!(
        GoBinary::parse(b"\x7fELF\x02").err(),
        Some(gobin::Error::Elf(_))
    ));
}

#[test]
fn non_go_elf_is_reported_as_such() {
    // The Rust test executable itself is an ELF without Go's tables.
    let me = std::env::current_exe().expect("test executable");
    let data = std::fs::read(me).expect("read");
    match GoBinary::parse(&data) {
        Err(gobin::Error::NotGo { .. }) => {}
        other => panic!("expected NotGo, got {:?}", other.map(|b| b.go_version())),
    }
}

#[test]
fn the_compile_tool_lists_its_functions() {
    let tc = testprogs::newest();
    let out = tc
        .go_command()
        .args(["tool", "-n", "compile"])
        .output()
        .expect("go tool -n compile");
    let path = String::from_utf8(out.stdout).expect("utf-8");
    let data = std::fs::read(path.trim()).expect("read compile");
    let started = std::time::Instant::now();
    let bin = GoBinary::parse(&data).expect("parse compile");
    let count = bin
        .functions()
        .map(|f| f.name.len())
        .filter(|&n| n > 0)
        .count();
    eprintln!(
        "compile: {count} functions listed in {:?} (unoptimised build)",
        started.elapsed()
    );
    assert_eq!(count, bin.function_count());
    assert!(count > 10_000, "{count}");
    assert!(
        bin.function_by_name("cmd/compile/internal/gc.Main")
            .is_some()
    );
    assert_eq!(
        (bin.go_version().major, bin.go_version().minor),
        tc.minor_number()
    );
}

/// Builds `inline` as a stripped PIE, a variant the shared matrix lacks: no symbols to
/// find the text start or `go:func.*` by, and (before Go 1.27) a text start of zero
/// in the pclntab header until the loader relocates it.
fn build_stripped_pie(tc: &Toolchain) -> std::path::PathBuf {
    let dir = testprogs::repo_root()
        .join("target/gobin-tests")
        .join(format!("inline-{}-stripped-pie", tc.version));
    let exe = dir.join("inline");
    std::fs::create_dir_all(&dir).expect("create folder");
    let src = testprogs::source("inline");
    let tmp = dir.join(format!(".inline.{}", std::process::id()));
    let out = tc
        .go_command()
        .args(["build", "-buildmode=pie", "-ldflags=-s -w", "-o"])
        .arg(&tmp)
        .arg(&src)
        .current_dir(src.parent().expect("folder"))
        .output()
        .expect("go build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &exe).expect("move into place");
    exe
}

#[test]
fn stripped_pie_reads_like_pie() {
    for tc in testprogs::toolchains() {
        let stripped = std::fs::read(build_stripped_pie(&tc)).expect("read");
        let pie = std::fs::read(testprogs::build("inline", &tc, Variant::Pie)).expect("read");
        let (s, p) = (
            GoBinary::parse(&stripped).expect("parse"),
            GoBinary::parse(&pie).expect("parse"),
        );
        assert!(!s.elf().has_symbols() && s.is_pie());
        assert_eq!(s.text_start(), p.text_start(), "go{}", tc.minor);
        assert_eq!(s.function_count(), p.function_count(), "go{}", tc.minor);
        let mut inlined = 0;
        for (a, b) in s.functions().zip(p.functions()) {
            assert_eq!(
                (a.name, a.entry, a.end),
                (b.name, b.entry, b.end),
                "go{}",
                tc.minor
            );
            if !a.name.starts_with("main.") {
                continue;
            }
            for (pc, ..) in p.positions(&b) {
                let frames = s.frames_at(pc);
                inlined += usize::from(frames.len() > 1);
                assert_eq!(frames, p.frames_at(pc), "go{} {} at {pc}", tc.minor, a.name);
            }
        }
        assert!(
            inlined > 5,
            "go{}: inline trees found without symbols",
            tc.minor
        );
    }
}
