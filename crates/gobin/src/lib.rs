//! Reads Go executables without running them: the ELF container, the build info that
//! names the Go version, `.gopclntab` (functions, pc → file:line, SP deltas, inlined
//! frames; it survives stripping), DWARF when present (types, variables, locations,
//! line tables), the Go runtime's struct layouts, and the x86-64 machine code that
//! decides where a probe may sit.
//!
//! Everything borrows the bytes of the executable, which the caller maps; nothing here
//! does I/O beyond what the caller hands in. One [`GoBinary`] is built per executable
//! and its indexes are built lazily, on the first query that needs them.
//!
//! ```no_run
//! # fn main() -> Result<(), gobin::Error> {
//! # let bytes: Vec<u8> = Vec::new();
//! let bin = gobin::GoBinary::parse(&bytes)?;
//! let f = bin.function_by_name("main.(*T).Method").ok_or(gobin::Error::NotGo { reason: "no such function" })?;
//! let site = gobin::x86::probe_site(&bin, &f)?; // after the stack check
//! let offset = bin.file_offset(site.addr); // where the uprobe goes
//! let frames = bin.frames_at(site.addr); // innermost first, inlined frames included
//! # let _ = (offset, frames);
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`elf`] (sections, symbols, segments), [`buildinfo`] (Go version and
//! build settings), [`pclntab`] (the runtime's function and pc-value tables),
//! [`funcs`] (what queries return, and globs), [`x86`] (probe sites, returns),
//! [`dwarf`], [`layout`] and [`rtype`] (the runtime's own type records).
#![forbid(unsafe_code)]

pub mod addr;
pub mod buildinfo;
pub mod dwarf;
pub mod elf;
pub mod error;
pub mod funcs;
pub mod layout;
pub mod pclntab;
pub mod rtype;
pub mod vars;
pub mod x86;

pub use addr::{FileOffset, VirtAddr};
pub use buildinfo::{BuildInfo, GoVersion};
pub use error::{Error, Result};
pub use funcs::{Frame, Func, FuncFlags, InlinedCall, glob_match};

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use elf::Elf;

/// Lookups of a function by name that scan the table before it is indexed by name.
const SCANS_BEFORE_INDEX: u32 = 8;

/// How many functions' tables a pass over all of them reads between two calls of
/// its caller's page release ([`GoBinary::inlined_calls_matching_paged`]), as
/// `funccount` and `-l` let pages go every 1,024 functions.
pub const PAGED_FUNCTIONS: usize = 1024;
use pclntab::{PcRange, Table};

/// Everything known about one Go executable. Built once by [`GoBinary::parse`] (which
/// reads only headers), queried many times; the name index and the module data are
/// found on first use.
pub struct GoBinary<'data> {
    elf: Elf<'data>,
    build: BuildInfo<'data>,
    pcln: Table<'data>,
    text_start: u64,
    moduledata: OnceLock<Option<u64>>,
    gofunc: OnceLock<Option<u64>>,
    by_name: OnceLock<Vec<u32>>,
    /// Name lookups answered by a scan so far (see [`GoBinary::functions_named`]).
    scans: std::sync::atomic::AtomicU32,
}

/// Where the fields this crate needs sit in `runtime.moduledata`: after the pcHeader
/// pointer and six slices come `findfunctab`, `minpc`, `maxpc`, then `text`.
const MODULEDATA_TEXT: usize = 176;

impl<'data> GoBinary<'data> {
    /// Reads the ELF headers, the build info and the `.gopclntab` header of `data`.
    pub fn parse(data: &'data [u8]) -> Result<GoBinary<'data>> {
        let elf = Elf::parse(data)?;
        let pcln = find_pclntab(&elf)?;
        let build = buildinfo::read(&elf)?;
        let mut bin = GoBinary {
            elf,
            build,
            pcln,
            text_start: 0,
            moduledata: OnceLock::new(),
            gofunc: OnceLock::new(),
            by_name: OnceLock::new(),
            scans: std::sync::atomic::AtomicU32::new(0),
        };
        bin.text_start = bin.find_text_start().ok_or(Error::Corrupt {
            what: "no text start for pclntab",
        })?;
        Ok(bin)
    }

    /// The ELF view of the file.
    pub fn elf(&self) -> &Elf<'data> {
        &self.elf
    }

    /// The decoded `.gopclntab` header and tables.
    pub fn pclntab(&self) -> &Table<'data> {
        &self.pcln
    }

    /// The build info (`go version -m`).
    pub fn build_info(&self) -> &BuildInfo<'data> {
        &self.build
    }

    /// The Go release that built the executable.
    pub fn go_version(&self) -> GoVersion {
        self.build.go_version
    }

    /// True for position-independent executables.
    pub fn is_pie(&self) -> bool {
        self.elf.is_pie()
    }

    /// The file offset of a virtual address, through the PT_LOAD segments: what a
    /// uprobe is attached at.
    pub fn file_offset(&self, addr: VirtAddr) -> Option<FileOffset> {
        self.elf.file_offset(addr)
    }

    /// A section's contents, decompressed if needed (DWARF).
    pub fn section_data(&self, name: &str) -> Option<Cow<'data, [u8]>> {
        self.elf.section_data(name)
    }

    /// The runtime's names of the reasons a goroutine waits (`"chan receive"`,
    /// `"sleep"`, …), indexed by the `waitReason` number `gopark` takes, as this
    /// binary's release numbers them: read from the runtime's own table
    /// (`runtime.waitReasonStrings`, an array of Go strings in the data the linker
    /// initialised), so no release's list is written here. A stripped binary
    /// (`-ldflags=-s`) has no symbol table: the table is then found from the code of
    /// `runtime.waitReason.String` ([`GoBinary::wait_reasons_from_code`]). `None` when
    /// neither finds it or the table does not read as strings.
    pub fn wait_reasons(&self) -> Option<Vec<&'data str>> {
        let (addr, size) = match self.elf.symbol("runtime.waitReasonStrings") {
            Some(s) => s,
            None => self.wait_reasons_from_code()?,
        };
        let n = size / 16;
        if n == 0 || n > 1024 {
            return None;
        }
        let table = self.elf.loaded_bytes(VirtAddr(addr), n * 16)?;
        table
            .chunks_exact(16)
            .map(|e| {
                let word = |b: &[u8]| b.try_into().ok().map(u64::from_le_bytes);
                let (ptr, len) = (word(&e[..8])?, word(&e[8..])?);
                if len == 0 {
                    return Some("");
                }
                let bytes = self.elf.loaded_bytes(VirtAddr(ptr), len.min(256))?;
                std::str::from_utf8(bytes).ok()
            })
            .collect()
    }

    /// A DWARF section as stored, for [`dwarf::Dwarf::load_sections`]: compressed
    /// sections are inflated when first read, not here.
    pub fn dwarf_section(&self, name: &str) -> Option<dwarf::Section<'data>> {
        self.elf.dwarf_section(name)
    }

    /// `len` bytes of machine code at `addr`.
    pub fn text_bytes(&self, addr: VirtAddr, len: u64) -> Option<&'data [u8]> {
        self.elf.text_bytes(addr, len)
    }

    /// The address function entry offsets are relative to (`runtime.text`).
    pub fn text_start(&self) -> VirtAddr {
        VirtAddr(self.text_start)
    }

    /// Bytes from [`GoBinary::text_start`] to the end of the last function: the
    /// span of every function's code.
    pub fn text_len(&self) -> u64 {
        self.function_count()
            .checked_sub(1)
            .and_then(|i| self.func(i))
            .map_or(0, |f| f.end.0.saturating_sub(self.text_start))
    }

    fn find_text_start(&self) -> Option<u64> {
        if self.pcln.header_text_start != 0 {
            return Some(self.pcln.header_text_start);
        }
        if let Some(a) = self.elf.symbol_address("runtime.text") {
            return Some(a);
        }
        if let Some(md) = self.moduledata() {
            return self
                .read_u64(md.wrapping_add(MODULEDATA_TEXT as u64))
                .filter(|&t| t != 0);
        }
        self.elf.section(".text").map(|s| s.addr)
    }

    fn read_u64(&self, addr: u64) -> Option<u64> {
        pclntab::read_u64(self.elf.bytes_at(VirtAddr(addr), 8)?, 0)
    }

    /// The address of `runtime.firstmoduledata`: from the symbol table, the Go 1.27
    /// `.go.module` section, or else the word in a writable segment that points at the
    /// pclntab header and is followed by the function-name slice that lies inside it.
    fn moduledata(&self) -> Option<u64> {
        *self.moduledata.get_or_init(|| {
            if let Some(a) = self.elf.symbol_address("runtime.firstmoduledata") {
                return Some(a);
            }
            if let Some(s) = self.elf.section(".go.module") {
                return Some(s.addr);
            }
            let want = self.pcln.addr;
            let data = self.elf.data();
            self.elf
                .segments()
                .iter()
                .filter(|s| s.writable)
                .find_map(|s| {
                    let start = usize::try_from(s.offset).ok()?;
                    let seg =
                        data.get(start..start.checked_add(usize::try_from(s.filesz).ok()?)?)?;
                    (0..seg.len().saturating_sub(16)).step_by(8).find_map(|i| {
                        let p = pclntab::read_u64(seg, i)?;
                        let names = pclntab::read_u64(seg, i + 8)?;
                        (p == want && names > want && names - want < 1 << 32)
                            .then(|| s.vaddr.wrapping_add(i as u64))
                    })
                })
        })
    }

    /// The address of `go:func.*`, which funcdata offsets are relative to.
    fn gofunc(&self) -> Option<u64> {
        *self.gofunc.get_or_init(|| {
            for sym in ["go:func.*", "go.func.*"] {
                if let Some(a) = self.elf.symbol_address(sym) {
                    return Some(a);
                }
            }
            let md = self.moduledata()?;
            // The field's place moved as fields were added before it: covctrs in 1.20,
            // typedesclen, itaboffset and itabsize in 1.27.
            let v = self.go_version();
            let off = if v.at_least(1, 27) {
                344
            } else if v.at_least(1, 20) {
                320
            } else {
                304
            };
            self.read_u64(md.wrapping_add(off)).filter(|&a| a != 0)
        })
    }

    /// Every function in address order. Records that do not decode are skipped.
    pub fn functions(&self) -> impl Iterator<Item = Func<'data>> + '_ {
        (0..self.pcln.nfunc).filter_map(move |i| self.func(i))
    }

    /// The number of entries in the function table.
    pub fn function_count(&self) -> usize {
        self.pcln.nfunc
    }

    /// Function number `i` of the table.
    pub fn func(&self, i: usize) -> Option<Func<'data>> {
        let raw = self.pcln.raw_func(i).ok()?;
        let entry = self
            .text_start
            .checked_add(u64::from(self.pcln.entry_off(i)?))?;
        let end = self
            .text_start
            .checked_add(u64::from(self.pcln.entry_off(i + 1)?))?;
        Some(Func {
            entry: VirtAddr(entry),
            end: VirtAddr(end),
            name: self.pcln.name(raw.name_off)?,
            flags: FuncFlags(raw.flag),
            func_id: raw.func_id,
            args: raw.args,
            start_line: raw.start_line.and_then(|l| u32::try_from(l).ok()),
            index: i,
        })
    }

    /// The function called exactly `name`. Where an assembly (ABI0) function and the
    /// linker's ABI wrapper for it share a name, the one whose code is not
    /// `<autogenerated>` is returned.
    pub fn function_by_name(&self, name: &str) -> Option<Func<'data>> {
        let all = self.functions_named(name);
        let real = all.iter().find(|f| {
            self.line_at(f, f.entry)
                .is_none_or(|(file, _)| file != "<autogenerated>")
        });
        real.or(all.first()).copied()
    }

    /// Every function called exactly `name`, in address order.
    pub fn functions_named(&self, name: &str) -> Vec<Func<'data>> {
        // A few lookups scan the table (a millisecond on a large binary); more build
        // the sorted index once (several, for the tens of thousands of names).
        if self.by_name.get().is_none()
            && self
                .scans
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                < SCANS_BEFORE_INDEX
        {
            return (0..self.pcln.nfunc)
                .filter(|&i| self.pcln.func_name_is(i, name))
                .filter_map(|i| self.func(i))
                .collect();
        }
        let index = self.by_name.get_or_init(|| {
            let mut idx: Vec<u32> = (0..self.pcln.nfunc as u32).collect();
            idx.sort_by_cached_key(|&i| (self.func_name(i as usize), i));
            idx
        });
        let at = index.partition_point(|&i| self.func_name(i as usize) < Some(name));
        index[at..]
            .iter()
            .take_while(|&&i| self.func_name(i as usize) == Some(name))
            .filter_map(|&i| self.func(i as usize))
            .collect()
    }

    fn func_name(&self, i: usize) -> Option<&'data str> {
        self.pcln.name(self.pcln.raw_func(i).ok()?.name_off)
    }

    /// The functions whose names match `pattern` (see [`glob_match`] for the syntax),
    /// in address order. A pattern without glob characters is an exact name.
    pub fn functions_matching(&self, pattern: &str) -> Vec<Func<'data>> {
        if !funcs::is_glob(pattern) {
            return self.function_by_name(pattern).into_iter().collect();
        }
        self.functions()
            .filter(|f| glob_match(pattern, f.name))
            .collect()
    }

    /// The function holding `pc`.
    pub fn function_at(&self, pc: VirtAddr) -> Option<Func<'data>> {
        let off = u32::try_from(pc.0.checked_sub(self.text_start)?).ok()?;
        self.func(self.pcln.find(off)?)
    }

    /// The source position of `pc` in `f` itself (for an inlined body, the position
    /// inside the inlined function).
    pub fn line_at(&self, f: &Func<'data>, pc: VirtAddr) -> Option<(&'data str, u32)> {
        let raw = self.pcln.raw_func(f.index).ok()?;
        let fileno = self.pcln.pcvalue(raw.pcfile, f.entry.0, pc.0)?;
        let line = self.pcln.pcvalue(raw.pcln, f.entry.0, pc.0)?;
        Some((
            self.pcln.file(raw.cu_offset, fileno)?,
            u32::try_from(line).ok()?,
        ))
    }

    /// The SP delta at `pc`: how many bytes the function has pushed or subtracted from
    /// SP since its entry, before the instruction at `pc` runs (0 at the entry, the
    /// return address not counted).
    pub fn sp_delta(&self, f: &Func<'data>, pc: VirtAddr) -> Option<i32> {
        let raw = self.pcln.raw_func(f.index).ok()?;
        self.pcln.pcvalue(raw.pcsp, f.entry.0, pc.0)
    }

    /// The frames at `pc`, innermost first: the inlined functions whose code `pc` is in,
    /// each with its position, then the function that holds `pc` in the text, with
    /// the position of the outermost inlined call. Empty if no function holds `pc`.
    pub fn frames_at(&self, pc: VirtAddr) -> Vec<Frame<'data>> {
        let mut frames = Vec::new();
        let Some(f) = self.function_at(pc) else {
            return frames;
        };
        let Ok(raw) = self.pcln.raw_func(f.index) else {
            return frames;
        };
        let tree = raw
            .funcdata(pclntab::FUNCDATA_INL_TREE)
            .and_then(|off| self.gofunc()?.checked_add(u64::from(off)));
        let inl_table = raw.pcdata(pclntab::PCDATA_INL_TREE_INDEX);
        let mut at = pc;
        // Each step moves to the call site in the caller; the tree is finite, but a
        // corrupt one could loop, so bound the walk.
        for _ in 0..1024 {
            let (file, line) = self.line_at(&f, at).unwrap_or(("?", 0));
            let ix = match (tree, inl_table) {
                (Some(_), Some(t)) => self.pcln.pcvalue(t, f.entry.0, at.0).unwrap_or(-1),
                _ => -1,
            };
            let call = match (tree, u64::try_from(ix)) {
                (Some(tree), Ok(ix)) => self.inlined_call(tree, ix),
                _ => None,
            };
            let Some((name, parent_pc)) = call else {
                frames.push(Frame {
                    function: f.name,
                    file,
                    line,
                    inlined: false,
                });
                return frames;
            };
            frames.push(Frame {
                function: name,
                file,
                line,
                inlined: true,
            });
            at = f.entry.offset(u64::from(parent_pc));
        }
        frames
    }

    /// Entry `ix` of the inline tree at `tree`: the inlined function's name and the pc
    /// offset (from the outer function's entry) of an instruction at its call site.
    fn inlined_call(&self, tree: u64, ix: u64) -> Option<(&'data str, u32)> {
        let (name_off, parent_pc) = self.inlined_call_raw(tree, ix)?;
        Some((self.pcln.name(name_off)?, parent_pc))
    }

    /// Entry `ix` of the inline tree at `tree` as stored: the offset of the inlined
    /// function's name in the name table, and the pc offset of its call site.
    fn inlined_call_raw(&self, tree: u64, ix: u64) -> Option<(u32, u32)> {
        let size = self.pcln.layout.inlined_call_len();
        let addr = tree.checked_add(ix.checked_mul(size)?)?;
        let b = self.elf.bytes_at(VirtAddr(addr), size)?;
        match self.pcln.layout {
            // parent int16, funcID u8, pad, file int32, line int32, func_ int32, parentPc int32
            pclntab::Layout::Go118 => Some((pclntab::read_u32(b, 12)?, pclntab::read_u32(b, 16)?)),
            // funcID u8, pad [3], nameOff int32, parentPc int32, startLine int32
            pclntab::Layout::Go120 => Some((pclntab::read_u32(b, 4)?, pclntab::read_u32(b, 8)?)),
        }
    }

    /// The inline tree of function number `i` and the pcdata table of its entries,
    /// if it has both.
    fn inline_tree(&self, i: usize) -> Option<(u64, u32)> {
        let raw = self.pcln.raw_func(i).ok()?;
        let tree = raw
            .funcdata(pclntab::FUNCDATA_INL_TREE)
            .and_then(|off| self.gofunc()?.checked_add(u64::from(off)))?;
        Some((tree, raw.pcdata(pclntab::PCDATA_INL_TREE_INDEX)?))
    }

    /// True if an entry of the inline tree of function number `i` has a name
    /// offset `wanted` accepts: a quick test before [`GoBinary::inlined_calls`]
    /// builds the calls, which reads no name of its own. Every call that function
    /// finds is an entry no later than the largest index the function's table
    /// holds, since the compiler appends a call's entry after its parent's.
    fn inlines_any(&self, i: usize, wanted: &mut impl FnMut(u32) -> bool) -> bool {
        let Some((tree, table)) = self.inline_tree(i) else {
            return false;
        };
        let (Some(entry), Some(end)) = (self.pcln.entry_off(i), self.pcln.entry_off(i + 1)) else {
            return false;
        };
        let (Some(entry), Some(end)) = (
            self.text_start.checked_add(u64::from(entry)),
            self.text_start.checked_add(u64::from(end)),
        ) else {
            return false;
        };
        let last = self
            .pcln
            .pcvalues(table, entry)
            .take_while(|r| r.start < end)
            .take(1 << 16)
            .map(|r| r.value)
            .max();
        let Some(last) = last.and_then(|l| u64::try_from(l).ok()) else {
            return false;
        };
        (0..=last.min(1 << 16)).any(|ix| {
            self.inlined_call_raw(tree, ix)
                .is_some_and(|(name_off, _)| wanted(name_off))
        })
    }

    /// Every call inlined into `f` (at any depth), in the order of its inline tree.
    /// Empty for a function without an inline tree or with one that does not read.
    pub fn inlined_calls(&self, f: &Func<'data>) -> Vec<InlinedCall<'data>> {
        let Some((tree, table)) = self.inline_tree(f.index) else {
            return Vec::new();
        };
        let runs: Vec<PcRange> = self
            .pcln
            .pcvalues(table, f.entry.0)
            .take_while(|r| r.start < f.end.0)
            .take(1 << 16)
            .collect();
        let index_at = |pc: u64| {
            let i = runs.partition_point(|r| r.end <= pc);
            runs.get(i)
                .filter(|r| r.start <= pc)
                .map_or(-1, |r| r.value)
        };
        // Entry → (name, call pc, parent, first pc). A run belongs to its own call
        // and to every call that call was inlined into: parents are found as the
        // runtime finds them, by the index at the call's own call site.
        let mut calls: BTreeMap<u32, (&'data str, VirtAddr, Option<u32>, u64)> = BTreeMap::new();
        for r in runs.iter().filter(|r| r.value >= 0) {
            let mut ix = r.value;
            // The tree is finite, but a corrupt one could loop.
            for _ in 0..64 {
                let Ok(at) = u32::try_from(ix) else { break };
                if let Some(c) = calls.get_mut(&at) {
                    c.3 = c.3.min(r.start);
                    ix = c.2.map_or(-1, |p| p as i32);
                    continue;
                }
                let Some((name, parent_pc)) = self.inlined_call(tree, u64::from(at)) else {
                    break;
                };
                let call_pc = f.entry.offset(u64::from(parent_pc));
                let parent = u32::try_from(index_at(call_pc.0)).ok().filter(|&p| p != at);
                calls.insert(at, (name, call_pc, parent, r.start));
                ix = parent.map_or(-1, |p| p as i32);
            }
        }
        calls
            .into_iter()
            .map(|(index, (callee, call_pc, parent, first))| InlinedCall {
                callee,
                holder: *f,
                index,
                addr: VirtAddr(first),
                call_pc,
                parent,
            })
            .collect()
    }

    /// Every inlined call, in any function, of a function whose name matches
    /// `pattern` (see [`glob_match`]; without glob characters, the exact name), in
    /// address order.
    pub fn inlined_calls_matching(&self, pattern: &str) -> Vec<InlinedCall<'data>> {
        self.inlined_calls_matching_paged(pattern, || {})
    }

    /// As [`GoBinary::inlined_calls_matching`], calling `between` after every
    /// [`PAGED_FUNCTIONS`] functions: finding the calls reads every function's
    /// inline tree and index table, much of `.gopclntab`, once, and the caller may
    /// let those pages go as it goes (the calls found borrow only names).
    pub fn inlined_calls_matching_paged(
        &self,
        pattern: &str,
        mut between: impl FnMut(),
    ) -> Vec<InlinedCall<'data>> {
        let globbed = funcs::is_glob(pattern);
        let matches = |name: &str| {
            if globbed {
                glob_match(pattern, name)
            } else {
                name == pattern
            }
        };
        // Whether each name offset names a matching function: the same few
        // thousand callees recur in every function's tree.
        let mut named: HashMap<u32, bool, std::hash::BuildHasherDefault<OffsetHasher>> =
            HashMap::default();
        let mut wanted = |off: u32| {
            *named
                .entry(off)
                .or_insert_with(|| self.pcln.name(off).is_some_and(matches))
        };
        let mut out: Vec<InlinedCall<'data>> = Vec::new();
        for i in 0..self.function_count() {
            if i > 0 && i % PAGED_FUNCTIONS == 0 {
                between();
            }
            if !self.inlines_any(i, &mut wanted) {
                continue;
            }
            let Some(f) = self.func(i) else { continue };
            out.extend(
                self.inlined_calls(&f)
                    .into_iter()
                    .filter(|c| matches(c.callee)),
            );
        }
        between();
        out.sort_by_key(|c| c.addr);
        out
    }

    /// The runs of `f`'s code with one source position each: (first pc, file, line,
    /// inlined), where `inlined` says the run is the body of an inlined call.
    pub fn positions(&self, f: &Func<'data>) -> Vec<(VirtAddr, &'data str, u32, bool)> {
        let Ok(raw) = self.pcln.raw_func(f.index) else {
            return Vec::new();
        };
        let files: Vec<PcRange> = self
            .pcln
            .pcvalues(raw.pcfile, f.entry.0)
            .take_while(|r| r.start < f.end.0)
            .collect();
        let lines: Vec<PcRange> = self
            .pcln
            .pcvalues(raw.pcln, f.entry.0)
            .take_while(|r| r.start < f.end.0)
            .collect();
        let inl: Vec<PcRange> = match raw.pcdata(pclntab::PCDATA_INL_TREE_INDEX) {
            Some(t) => self
                .pcln
                .pcvalues(t, f.entry.0)
                .take_while(|r| r.start < f.end.0)
                .collect(),
            None => Vec::new(),
        };
        let mut starts: Vec<u64> = files
            .iter()
            .chain(&lines)
            .chain(&inl)
            .map(|r| r.start)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let value_at = |v: &[PcRange], pc: u64| {
            let i = v.partition_point(|r| r.end <= pc);
            v.get(i).filter(|r| r.start <= pc).map(|r| r.value)
        };
        let mut out: Vec<(VirtAddr, &'data str, u32, bool)> = Vec::new();
        for pc in starts {
            let (Some(fileno), Some(line)) = (value_at(&files, pc), value_at(&lines, pc)) else {
                continue;
            };
            let (Some(file), Ok(line)) =
                (self.pcln.file(raw.cu_offset, fileno), u32::try_from(line))
            else {
                continue;
            };
            let inlined = value_at(&inl, pc).is_some_and(|ix| ix >= 0);
            if out
                .last()
                .is_some_and(|l| l.1 == file && l.2 == line && l.3 == inlined)
            {
                continue;
            }
            out.push((VirtAddr(pc), file, line, inlined));
        }
        out
    }

    /// For each source line of `f`'s own body (inlined bodies excluded; the inline
    /// mark at a call site carries the call's line), the lowest pc where a run of code
    /// for that line starts: where a uprobe for "this line" goes.
    pub fn line_starts(&self, f: &Func<'data>) -> BTreeMap<(&'data str, u32), VirtAddr> {
        let mut out = BTreeMap::new();
        for (pc, file, line, inlined) in self.positions(f) {
            if !inlined {
                out.entry((file, line)).or_insert(pc);
            }
        }
        out
    }

    /// The (file, line) pairs of [`GoBinary::line_starts`].
    pub fn statement_lines(&self, f: &Func<'data>) -> BTreeSet<(&'data str, u32)> {
        self.line_starts(f).into_keys().collect()
    }

    /// The first statement line of `f` in `file` (exact name) at or after `line`, and
    /// where it starts: where a probe on a line that has no code of its own (the
    /// compiler gave its instructions to a later statement) goes.
    pub fn nearest_line_start(
        &self,
        f: &Func<'data>,
        file: &str,
        line: u32,
    ) -> Option<(u32, VirtAddr)> {
        self.line_starts(f)
            .into_iter()
            .filter(|((name, l), _)| *name == file && *l >= line)
            .map(|((_, l), pc)| (l, pc))
            .min()
    }

    /// Every pc of `f`'s own body where a run of code for `line` of a matching file
    /// starts, lowest first; a statement the compiler split over several blocks (a
    /// `for` clause) gives several. `file` matches a file name that equals it, ends in
    /// `/file`, or, if it has glob characters, matches it as a glob whole or after a
    /// `/`.
    pub fn addresses_for_line(&self, f: &Func<'data>, file: &str, line: u32) -> Vec<VirtAddr> {
        let globbed = funcs::is_glob(file);
        let file_matches = |name: &str| {
            name == file
                || name.strip_suffix(file).is_some_and(|p| p.ends_with('/'))
                || (globbed
                    && (glob_match(file, name)
                        || name.rsplit('/').next().is_some_and(|b| glob_match(file, b))))
        };
        self.positions(f)
            .into_iter()
            .filter(|&(_, name, l, inlined)| !inlined && l == line && file_matches(name))
            .map(|(pc, ..)| pc)
            .collect()
    }
}

/// Finds `.gopclntab`: by section name (`.data.rel.ro.gopclntab` in older PIEs), by
/// the linker's symbol, or by scanning read-only segments for a valid header.
fn find_pclntab<'data>(elf: &Elf<'data>) -> Result<Table<'data>> {
    let mut first_err = None;
    let named = [".gopclntab", ".data.rel.ro.gopclntab"]
        .iter()
        .filter_map(|n| elf.section(n).map(|s| s.addr))
        .chain(
            ["runtime.pcheader", "runtime.pclntab"]
                .iter()
                .filter_map(|s| elf.symbol_address(s)),
        );
    for addr in named {
        if let Some(bytes) = elf.bytes_from(VirtAddr(addr)) {
            match Table::parse(bytes, addr) {
                Ok(t) => return Ok(t),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let data = elf.data();
    for s in elf.segments().iter().filter(|s| !s.executable) {
        let Some(seg) = usize::try_from(s.offset)
            .ok()
            .and_then(|o| data.get(o..o.checked_add(usize::try_from(s.filesz).ok()?)?))
        else {
            continue;
        };
        for i in (0..seg.len()).step_by(8) {
            if pclntab::looks_like_header(&seg[i..])
                && let Ok(t) = Table::parse(&seg[i..], s.vaddr.wrapping_add(i as u64))
                && t.nfunc > 0
            {
                return Ok(t);
            }
        }
    }
    Err(Error::NotGo {
        reason: "no .gopclntab",
    })
}

/// Hashes a name offset by one multiplication: a pass over every inline tree looks
/// up hundreds of thousands of them, and SipHash's resistance to chosen keys buys
/// nothing for offsets read from the executable.
#[derive(Default)]
struct OffsetHasher(u64);

impl std::hash::Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_can_be_shared_between_threads() {
        // The runtime symbolises events from several threads against one GoBinary.
        fn shareable<T: Send + Sync>() {}
        shareable::<GoBinary<'static>>();
        shareable::<Func<'static>>();
    }
}
