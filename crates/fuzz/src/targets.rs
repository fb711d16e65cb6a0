//! The fuzz targets: one row of [`TARGETS`] each. The targets over Go executables
//! all run an input through [`trace`], the path a user's run takes through gobin
//! (open, functions, lines, inline trees, probe sites, DWARF variables and types);
//! they differ in where their edits aim: the ELF headers, `.gopclntab`, the build
//! info, DWARF (stored plainly in one seed, so that edits hit its structures and not
//! only its compression), and the deflate streams of compressed DWARF sections.

use gobin::dwarf::{Dwarf, Section, inflate};
use gobin::{GoBinary, VirtAddr, x86};

use crate::mutate::Spot;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// The folder of `corpus/` its seeds come from.
    pub corpus: &'static str,
    /// Makes a corpus file into this target's seeds.
    pub seeds: fn(&[u8]) -> Vec<Vec<u8>>,
    /// Where in a seed edits do the most good.
    pub spots: fn(&[u8]) -> Vec<Spot>,
    /// Runs one input. Whatever it returns, the driver looks only for a panic, an
    /// abort, a hang or a runaway allocation.
    pub run: fn(&[u8]),
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "elf",
        corpus: "go",
        seeds: whole_file,
        spots: elf_spots,
        run: trace,
    },
    Target {
        name: "pclntab",
        corpus: "go",
        seeds: whole_file,
        spots: pclntab_spots,
        run: trace,
    },
    Target {
        name: "buildinfo",
        corpus: "go",
        seeds: whole_file,
        spots: buildinfo_spots,
        run: trace,
    },
    Target {
        name: "dwarf",
        corpus: "go",
        seeds: plain_dwarf,
        spots: dwarf_spots,
        run: trace,
    },
    Target {
        name: "inflate",
        corpus: "go",
        seeds: zlib_streams,
        spots: stream_spots,
        run: inflate_stream,
    },
    Target {
        name: "script",
        corpus: "stp",
        seeds: crate::script::seeds,
        spots: crate::script::spots,
        run: crate::script::run,
    },
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

fn whole_file(b: &[u8]) -> Vec<Vec<u8>> {
    vec![b.to_vec()]
}

/// Executables whose DWARF is stored plainly (`-ldflags=-compressdwarf=false`).
fn plain_dwarf(b: &[u8]) -> Vec<Vec<u8>> {
    let plain = sections(b)
        .iter()
        .any(|s| s.name == ".debug_info" && b.get(s.offset..s.offset + 4) != Some(&[1, 0, 0, 0]));
    if plain { vec![b.to_vec()] } else { Vec::new() }
}

/// The compressed DWARF sections of an executable, each as an input of
/// [`inflate_stream`]: the stated size (8 bytes, little-endian), then the stream.
fn zlib_streams(b: &[u8]) -> Vec<Vec<u8>> {
    let Ok(bin) = GoBinary::parse(b) else {
        return Vec::new();
    };
    [
        ".debug_info",
        ".debug_line",
        ".debug_loclists",
        ".debug_abbrev",
        ".debug_frame",
    ]
    .iter()
    .filter_map(|name| match bin.dwarf_section(name)? {
        Section::Zlib { stream, size } => {
            let mut v = (size as u64).to_le_bytes().to_vec();
            v.extend_from_slice(stream);
            Some(v)
        }
        _ => None,
    })
    .collect()
}

/// The path of a user's trace through gobin, on whatever the input is: open the
/// executable, list and find functions, read their positions, inline trees, SP
/// deltas and probe sites, then DWARF: units, a function's variables and lines,
/// types, the runtime's layout. Work is bounded by the input: a sample of functions,
/// not all of them.
pub fn trace(b: &[u8]) {
    let Ok(bin) = GoBinary::parse(b) else {
        return;
    };
    let _ = (
        bin.build_info().setting("GOARCH"),
        bin.go_version(),
        bin.is_pie(),
    );
    let _ = bin.wait_reasons();
    let _ = bin.function_by_name("main.main");
    let _ = bin.functions_matching("main.*");
    let _ = bin.functions_named("runtime.gopark");
    let n = bin.function_count();
    let step = (n / 24).max(1);
    let mains = bin
        .functions_matching("main.*")
        .into_iter()
        .map(|f| f.index);
    for i in (0..n).step_by(step).chain(mains).take(48) {
        let Some(f) = bin.func(i) else { continue };
        let _ = bin.line_at(&f, f.entry);
        let _ = bin.positions(&f);
        let _ = bin.line_starts(&f);
        let _ = bin.sp_delta(&f, f.entry.offset(1));
        for pc in [f.entry, f.entry.offset(5), f.end.offset(u64::MAX)] {
            let _ = bin.frames_at(pc);
            let _ = bin.function_at(pc);
            let _ = bin.file_offset(pc);
        }
        let site = x86::probe_site(&bin, &f);
        let _ = x86::Refused::of_entry(&f, &site);
        let _ = x86::returns(&bin, &f);
        if let Ok(code) = x86::Decoded::of(&bin, &f) {
            for insn in code.instructions().iter().take(64) {
                let _ = code.check(VirtAddr(insn.ip()));
            }
        }
    }
    let Ok(d) = Dwarf::load_sections(|name| bin.dwarf_section(name)) else {
        return;
    };
    let _ = d.unit_names();
    for name in ["main.use", "main.main", "runtime.newstack"] {
        if let Ok(f) = d.function(name) {
            let _ = d.variables_at(name, f.entry);
            for v in &f.variables {
                let _ = d.type_name(v.type_id);
            }
        }
        let _ = d.statement_lines(name);
    }
    for ty in ["main.box", "runtime.g", "*runtime.m", "string", "[]uint8"] {
        if let Ok(Some(t)) = d.type_by_name(ty) {
            let _ = d.members(t);
            let _ = d.resolve_typedefs(t);
        }
    }
    let _ = gobin::layout::RuntimeLayout::from_dwarf(&d);
    let _ = d.damaged();
}

/// A deflate stream through the inflater every way gotap reads one: whole, in one
/// pass with checkpoints and each segment again from its checkpoint, and through
/// DWARF as a compressed `.debug_info`.
pub fn inflate_stream(b: &[u8]) {
    let Some(size) = b
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
    else {
        return;
    };
    let (stream, size) = (&b[8..], usize::try_from(size).unwrap_or(usize::MAX));
    // The reader refuses a size no stream of this length can reach, as gotap does
    // (`SectionReader`): the inflater is given what it would be given.
    if size / 1032 > stream.len() {
        return;
    }
    let _ = inflate::whole(stream, size);
    if let Ok(mut pass) = inflate::Pass::new(stream, size) {
        let _ = pass.advance(usize::MAX, |_, _| {}, &|_| {});
        let index = pass.index();
        for i in 0..index.segments().min(8) {
            let _ = inflate::segment(stream, index, i);
        }
    }
    let d = Dwarf::load_sections(|name| {
        (name == ".debug_info").then_some(Section::Zlib { stream, size })
    });
    if let Ok(d) = d {
        d.inflate(&[".debug_info"]);
        let _ = d.unit_names();
        let _ = d.function("main.main");
    }
}

/// A section of an ELF file, from its header.
struct Shdr {
    name: String,
    /// Where the section header itself is.
    header: usize,
    offset: usize,
    size: usize,
}

fn le(b: &[u8], at: usize, n: usize) -> usize {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + n) {
        w[..n].copy_from_slice(s);
    }
    u64::from_le_bytes(w) as usize
}

/// The sections of a 64-bit little-endian ELF file (a valid seed).
fn sections(b: &[u8]) -> Vec<Shdr> {
    let (shoff, shentsize, shnum, shstrndx) = (
        le(b, 0x28, 8),
        le(b, 0x3a, 2),
        le(b, 0x3c, 2),
        le(b, 0x3e, 2),
    );
    let header = |i: usize| shoff + i * shentsize;
    let strtab = le(b, header(shstrndx) + 0x18, 8);
    (0..shnum.min(256))
        .map(|i| {
            let at = strtab + le(b, header(i), 4);
            let name = b
                .get(at..)
                .and_then(|s| s.split(|c| *c == 0).next())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default();
            Shdr {
                name,
                header: header(i),
                offset: le(b, header(i) + 0x18, 8),
                size: le(b, header(i) + 0x20, 8),
            }
        })
        .collect()
}

/// The ELF header, every section and program header, and the symbol table's
/// entries for the runtime's anchors.
fn elf_spots(b: &[u8]) -> Vec<Spot> {
    let mut out = vec![Spot::bytes(0, 16)];
    // e_type, e_machine, e_entry, e_phoff, e_shoff, e_phentsize, e_phnum,
    // e_shentsize, e_shnum, e_shstrndx.
    for (at, len) in [
        (0x10, 2),
        (0x12, 2),
        (0x18, 8),
        (0x20, 8),
        (0x28, 8),
        (0x36, 2),
        (0x38, 2),
        (0x3a, 2),
        (0x3c, 2),
        (0x3e, 2),
    ] {
        out.push(Spot::number(at, len));
    }
    for s in sections(b) {
        // sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_entsize.
        for (at, len) in [
            (0, 4),
            (4, 4),
            (8, 8),
            (0x10, 8),
            (0x18, 8),
            (0x20, 8),
            (0x28, 4),
            (0x38, 8),
        ] {
            out.push(Spot::number(s.header + at, len));
        }
        // A compressed section's header: type, size.
        if s.name.starts_with(".debug_") && le(b, s.offset, 4) == 1 {
            out.push(Spot::number(s.offset, 4));
            out.push(Spot::number(s.offset + 8, 8));
        }
    }
    let (phoff, phentsize, phnum) = (le(b, 0x20, 8), le(b, 0x36, 2), le(b, 0x38, 2));
    for i in 0..phnum.min(64) {
        // p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz.
        for (at, len) in [(0, 4), (4, 4), (8, 8), (0x10, 8), (0x20, 8), (0x28, 8)] {
            out.push(Spot::number(phoff + i * phentsize + at, len));
        }
    }
    out
}

/// The `.gopclntab` header, the function table, and a sample of function records
/// with their pc-data and func-data offsets.
fn pclntab_spots(b: &[u8]) -> Vec<Spot> {
    let Ok(bin) = GoBinary::parse(b) else {
        return Vec::new();
    };
    let t = bin.pclntab();
    let Some(start) = bin.file_offset(VirtAddr(t.addr)).map(|o| o.0 as usize) else {
        return Vec::new();
    };
    let mut out = vec![Spot::number(start, 4), Spot::bytes(start + 4, 4)];
    // nfunc, nfiles, textStart, and the five table offsets.
    for i in 0..8 {
        out.push(Spot::number(start + 8 + 8 * i, 8));
    }
    let base = b.as_ptr() as usize;
    let step = (t.nfunc / 64).max(1);
    for i in (0..t.nfunc).step_by(step) {
        let Ok(raw) = t.raw_func(i) else { continue };
        let at = (raw.bytes.as_ptr() as usize).wrapping_sub(base);
        if at >= b.len() {
            continue;
        }
        // entryOff, nameOff, args, deferreturn, pcsp, pcfile, pcln, npcdata,
        // cuOffset, startLine; then funcID, flag, nfuncdata and the tables.
        for f in 0..10 {
            out.push(Spot::number(at + 4 * f, 4));
        }
        out.push(Spot::bytes(at + 40, 4));
        let extra = 4 * (raw.npcdata as usize + raw.nfuncdata as usize);
        for k in (0..extra.min(64)).step_by(4) {
            out.push(Spot::number(at + 44 + k, 4));
        }
    }
    out
}

/// The build info's header and its two length-prefixed strings.
fn buildinfo_spots(b: &[u8]) -> Vec<Spot> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    let Some(at) = b.windows(MAGIC.len()).position(|w| w == MAGIC) else {
        return Vec::new();
    };
    let mut out = vec![
        Spot::bytes(at, 14),
        Spot::number(at + 14, 1),
        Spot::number(at + 15, 1),
    ];
    // The varint length of the version string, and bytes after it.
    out.push(Spot::number(at + 32, 1));
    out.push(Spot::bytes(at + 32, 64));
    let version_len = le(b, at + 32, 1);
    out.push(Spot::number(at + 33 + version_len, 2));
    out.push(Spot::bytes(at + 33 + version_len, 256));
    out
}

/// In plainly stored DWARF: each unit's header and first DIEs, the abbreviations,
/// the line program and location list headers.
fn dwarf_spots(b: &[u8]) -> Vec<Spot> {
    let mut out = Vec::new();
    for s in sections(b) {
        match s.name.as_str() {
            ".debug_info" => {
                let mut at = s.offset;
                while at + 12 < s.offset + s.size && out.len() < 4000 {
                    // unit_length, version, unit_type/abbrev offset, address size.
                    out.push(Spot::number(at, 4));
                    out.push(Spot::number(at + 4, 2));
                    out.push(Spot::number(at + 6, 4));
                    out.push(Spot::number(at + 10, 1));
                    out.push(Spot::bytes(at + 11, 96));
                    let len = le(b, at, 4);
                    if len == 0 || len >= 0xffff_fff0 {
                        break;
                    }
                    at += 4 + len;
                }
            }
            ".debug_abbrev" | ".debug_frame" => out.push(Spot::bytes(s.offset, s.size.min(4096))),
            ".debug_line" | ".debug_loclists" | ".debug_rnglists" | ".debug_loc"
            | ".debug_ranges" => {
                out.push(Spot::number(s.offset, 4));
                out.push(Spot::number(s.offset + 4, 2));
                out.push(Spot::bytes(s.offset, 64));
                out.push(Spot::bytes(s.offset, s.size));
            }
            _ => {}
        }
    }
    out
}

/// A stream's stated size, its zlib header, its first block's header, and bytes
/// spread over it.
fn stream_spots(b: &[u8]) -> Vec<Spot> {
    let mut out = vec![
        Spot::number(0, 8),
        Spot::number(8, 1),
        Spot::number(9, 1),
        Spot::bytes(10, 32),
    ];
    for at in (8..b.len()).step_by(4096) {
        out.push(Spot::bytes(at, 16));
    }
    out.push(Spot::bytes(b.len().saturating_sub(8), 8));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_seeds_and_spots_in_its_corpus() {
        for t in TARGETS {
            let seeds = crate::corpus::seeds(t);
            assert!(!seeds.is_empty(), "{}", t.name);
            assert!(
                seeds.iter().all(|s| !s.spots.is_empty()),
                "{}: a seed without spots",
                t.name
            );
            // The seeds themselves run cleanly.
            for s in &seeds {
                (t.run)(&s.bytes);
            }
        }
    }
}
