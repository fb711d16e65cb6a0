//! The DWARF of a Go executable, read lazily: functions and their variables with
//! locations ([`func`]), the calls the compiler inlined and their own variables
//! ([`inlined`]), types ([`types`]), statement lines ([`lines`]).
//!
//! A probe needs one function's compile unit and the handful of types it names, so
//! nothing is parsed up front. Go emits one compile unit per package (plus a few for
//! assembly and linker-made code) and puts every type in one unit named `runtime`
//! that the linker appends. What is built, and when:
//!
//! - on the first query, the list of unit headers with each unit's root DIE (its
//!   package name). In a compressed section they are collected during the one pass
//!   over its stream ([`inflate::Pass`]), which keeps only the units of packages said
//!   beforehand ([`Dwarf::will_read_packages`]);
//! - per unit, when a function is looked up in it, an index of its top-level
//!   subprograms by name: one pass over that unit's DIEs that decodes only the name
//!   and origin attributes and skips the rest. A function name's package prefix picks
//!   the units to index first (`runtime.newstack` → units named `runtime`), so a
//!   query usually indexes one or a few units, not all of them;
//! - per unit, when a type is looked up by name, an index of its top-level type DIEs;
//!   units named `runtime` are indexed first, since that is where the linker puts types.
//!
//! Cost, measured on `cmd/go` built by Go 1.27 (337 units, 5.9 MB of `.debug_info`,
//! 3.4 MB of `.debug_loclists`, 2.8 MB of `.debug_line`; release build;
//! `tests/dwarf.rs::lookup_cost`): the unit headers 25 ms, nearly all of it
//! inflating `.debug_info`; then the variables of
//! `cmd/go/internal/load.PackagesAndErrors` 20 ms (inflating `.debug_loclists`),
//! of `runtime.newstack` 6 ms; `runtime.g` by name 11 ms (indexing the types of the
//! `runtime` units); newstack's statement lines 20 ms (inflating `.debug_line`).
//!
//! Sections come from a loader closure, so this module does not depend on how the
//! executable is read. Go compresses its DWARF sections (`SHF_COMPRESSED`); the
//! loader may hand them over as stored ([`Section::Zlib`]). A zlib stream can only be
//! read from its start, so each section is passed over once, leaving a checkpoint
//! every 256 KiB of output, and a 256 KiB segment is then inflated from its
//! checkpoint when something first reads it (`reader.rs`, [`inflate`]): a script
//! that reads variables never inflates the line table, one that probes functions by
//! name reads no DWARF at all, and `gotap -L` on one function of `cmd/go` holds
//! about 2 MB of its 12 MB of inflated DWARF.

pub mod func;
pub mod inflate;
pub mod inlined;
pub mod lines;
pub mod location;
mod reader;
pub mod types;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use gimli::Reader as _;
use reader::SectionReader;
pub use reader::{Release, Section};

pub use func::{Function, FunctionVariable, Scope, Variable};
pub use inlined::{InlinedInstance, InstanceRef};
pub use lines::file_matches;
pub use location::{
    Address, DwarfReg, Expr, ExprError, Location, LocationEntry, Piece, Place, Value,
};
pub use types::{BaseEncoding, Member, Type, TypeKind, TypeRef};

/// The byte reader every gimli structure here uses: a shared, owned section.
pub(crate) type R<'data> = SectionReader<'data>;
pub(crate) type Unit<'data> = gimli::Unit<R<'data>>;

/// Errors reading DWARF. Corrupt input is reported, never a panic.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no DWARF: the executable has no .debug_info (it was built with -ldflags=-w or stripped)"
    )]
    NoDwarf,
    #[error("corrupt DWARF while {context}: {source}")]
    Gimli {
        context: &'static str,
        #[source]
        source: gimli::Error,
    },
    #[error("corrupt DWARF: {0}")]
    Corrupt(String),
    /// A section that is there but cannot be read: never taken for an absent one.
    #[error("corrupt DWARF: section {section} {reason}")]
    CorruptSection { section: String, reason: String },
    #[error("no function {0:?} in DWARF")]
    NoFunction(String),
    #[error("no type {0:?} in DWARF")]
    NoType(String),
    #[error("location of {var:?} in {func}: {source}")]
    Expr {
        func: String,
        var: String,
        #[source]
        source: ExprError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait Context<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T> Context<T> for gimli::Result<T> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|source| Error::Gimli { context, source })
    }
}

/// One compile unit: its header, read at load, and what is built from it on demand.
pub(crate) struct UnitSlot<'data> {
    header: gimli::UnitHeader<R<'data>>,
    /// Start of the unit in `.debug_info`.
    start: usize,
    /// The package the unit is for (its root DIE's `DW_AT_name`).
    name: String,
    unit: OnceLock<Result<Arc<Unit<'data>>>>,
    funcs: OnceLock<Result<HashMap<String, Vec<gimli::UnitOffset>>>>,
    types: OnceLock<Result<HashMap<String, gimli::UnitOffset>>>,
    /// The unit's statement rows by address, once several functions of the unit
    /// have asked for their lines (`lines.rs`).
    pub(crate) rows: OnceLock<Result<Vec<lines::Row>>>,
    /// How many functions of the unit have asked for their lines.
    pub(crate) line_queries: std::sync::atomic::AtomicU32,
    /// The unit's inlined-call DIEs, once inlined calls are asked for.
    inlined: OnceLock<Result<inlined::UnitInlined>>,
    /// The header of the unit's line program (its file list), read once.
    line_program: OnceLock<Result<Option<gimli::IncompleteLineProgram<R<'data>>>>>,
}

impl<'data> UnitSlot<'data> {
    fn new(header: gimli::UnitHeader<R<'data>>, start: usize, name: String) -> UnitSlot<'data> {
        UnitSlot {
            header,
            start,
            name,
            unit: OnceLock::new(),
            funcs: OnceLock::new(),
            types: OnceLock::new(),
            rows: OnceLock::new(),
            line_queries: std::sync::atomic::AtomicU32::new(0),
            line_program: OnceLock::new(),
            inlined: OnceLock::new(),
        }
    }
}

/// The first bytes of each unit kept from a unit's start: the header and the root
/// DIE, whose name says the package.
const UNIT_PREFIX: usize = 1024;

/// Finds the units of `.debug_info` in its bytes as they stream by, and gives the
/// first [`UNIT_PREFIX`] bytes of each (fewer for a shorter unit) to a callback with
/// the unit's start and length.
#[derive(Default)]
struct UnitStarts {
    /// Where the next unit starts.
    next: usize,
    /// The unit being collected: its start, length once known, and bytes so far.
    current: Option<(usize, Option<usize>, Vec<u8>)>,
}

impl UnitStarts {
    fn feed(&mut self, at: usize, mut bytes: &[u8], found: &mut impl FnMut(usize, usize, &[u8])) {
        let mut pos = at;
        while !bytes.is_empty() {
            let Some((start, total, prefix)) = &mut self.current else {
                if self.next >= pos + bytes.len() || self.next < pos {
                    return;
                }
                bytes = &bytes[self.next - pos..];
                pos = self.next;
                self.current = Some((pos, None, Vec::new()));
                continue;
            };
            // The initial length: 4 bytes, or 0xffffffff and 8 more in 64-bit DWARF.
            let want = match *total {
                Some(t) => t.min(UNIT_PREFIX),
                None if prefix.len() >= 4 && prefix.starts_with(&[0xff; 4]) => 12,
                None => 4,
            };
            let take = want.saturating_sub(prefix.len()).min(bytes.len());
            prefix.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            pos += take;
            if prefix.len() < want {
                continue;
            }
            if total.is_none() {
                let t = match prefix.len() {
                    4 if !prefix.starts_with(&[0xff; 4]) => {
                        4 + u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]])
                            as usize
                    }
                    12 => {
                        let mut l = [0u8; 8];
                        l.copy_from_slice(&prefix[4..12]);
                        12usize.saturating_add(
                            usize::try_from(u64::from_le_bytes(l)).unwrap_or(usize::MAX),
                        )
                    }
                    _ => continue,
                };
                *total = Some(t.max(prefix.len()));
                continue;
            }
            let (start, total) = (*start, total.unwrap_or(0));
            found(start, total, prefix);
            self.next = start.saturating_add(total);
            self.current = None;
        }
    }

    /// Hands over a unit cut short by the section's end (its header reads as corrupt).
    fn finish(&mut self, found: &mut impl FnMut(usize, usize, &[u8])) {
        if let Some((start, total, prefix)) = self.current.take() {
            found(start, total.unwrap_or(usize::MAX), &prefix);
        }
    }
}

/// Lazily indexed DWARF of one executable. Queries take `&self`; indexes are built
/// on first use and kept (the value is `Sync`, so threads may share it).
pub struct Dwarf<'data> {
    pub(crate) gimli: gimli::Dwarf<R<'data>>,
    units: OnceLock<Result<Vec<UnitSlot<'data>>>>,
    /// Every section by its name, for [`Dwarf::inflate`].
    sections: Vec<(&'static str, R<'data>)>,
    /// Packages whose units queries will read ([`Dwarf::will_read_packages`]).
    wanted: std::sync::Mutex<Vec<String>>,
    /// How many times a unit's DIEs were walked whole ([`Dwarf::units_walked`]).
    walked: std::sync::atomic::AtomicUsize,
}

impl<'data> Dwarf<'data> {
    /// Reads DWARF from the sections `load` returns, by ELF section name
    /// (`.debug_info`, `.debug_abbrev`, …; `None` when absent). Fails with
    /// [`Error::NoDwarf`] when there is no `.debug_info`.
    pub fn load(mut load: impl FnMut(&str) -> Option<Cow<'data, [u8]>>) -> Result<Dwarf<'data>> {
        Dwarf::load_sections(|name| load(name).map(Section::Bytes))
    }

    /// Like [`Dwarf::load`], with compressed sections handed over as they are stored:
    /// each is inflated on its first read, so a query pays only for the sections it
    /// reads.
    pub fn load_sections(load: impl FnMut(&str) -> Option<Section<'data>>) -> Result<Dwarf<'data>> {
        Dwarf::load_sections_releasing(load, None)
    }

    /// Like [`Dwarf::load_sections`], calling `release` with the stored bytes of a
    /// compressed section after each pass over them (see [`Release`]).
    pub fn load_sections_releasing(
        mut load: impl FnMut(&str) -> Option<Section<'data>>,
        release: Option<Release<'data>>,
    ) -> Result<Dwarf<'data>> {
        let mut has_info = false;
        let mut readers = Vec::new();
        let sections = gimli::DwarfSections::load(|id: gimli::SectionId| -> Result<R<'data>> {
            let section = load(id.name()).unwrap_or(Section::Bytes(Cow::Borrowed(&[])));
            if id == gimli::SectionId::DebugInfo {
                has_info = match &section {
                    Section::Bytes(b) => !b.is_empty(),
                    Section::Zlib { .. } | Section::Damaged { .. } => true,
                };
            }
            let reader = SectionReader::new(section, release.clone());
            // Nothing is read without the units and their abbreviations.
            if matches!(
                id,
                gimli::SectionId::DebugInfo | gimli::SectionId::DebugAbbrev
            ) && let Some(reason) = reader.damage()
            {
                return Err(Error::CorruptSection {
                    section: id.name().to_string(),
                    reason,
                });
            }
            readers.push((id.name(), reader.clone()));
            Ok(reader)
        })?;
        if !has_info {
            return Err(Error::NoDwarf);
        }
        let gimli = sections.borrow(|s| s.clone());
        Ok(Dwarf {
            gimli,
            units: OnceLock::new(),
            sections: readers,
            wanted: std::sync::Mutex::new(Vec::new()),
            walked: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Says that queries will read the units of these packages (Go import paths, as
    /// [`package_of`] gives them; a probed function's package): the one pass over a
    /// compressed `.debug_info` keeps their bytes as it goes by, instead of inflating
    /// them again when they are read. Only a pass that has not started yet heeds it.
    pub fn will_read_packages<'a>(&self, packages: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut w) = self.wanted.lock() {
            w.extend(packages.into_iter().map(str::to_string));
            w.sort();
            w.dedup();
        }
    }

    /// Makes the named sections ready to read now (`.debug_info`, `.debug_loclists`,
    /// …): the one pass over each compressed stream that every later read needs
    /// (`reader.rs`), in two shares of about equal size on this thread and a second
    /// one, instead of one after the other as queries first read them. The pass over
    /// `.debug_info` also lists its units. Worth it when the caller knows what it will
    /// read: reading a variable needs `.debug_info`, then its location list and its
    /// scope's ranges, and on a large binary each pass takes milliseconds. Sections
    /// stored plainly, absent, or already passed over cost nothing.
    pub fn inflate(&self, names: &[&str]) {
        use gimli::Reader as _;
        let mut wanted: Vec<(&str, &R<'data>)> = self
            .sections
            .iter()
            .filter(|(n, r)| names.contains(n) && !r.is_ready())
            .map(|(n, r)| (*n, r))
            .collect();
        // Two shares of about the same size, the larger sections first: the machine
        // may have two cores, and more threads would only take turns on them.
        wanted.sort_by_key(|(_, r)| std::cmp::Reverse(r.len()));
        let (mut here, mut there) = (Vec::new(), Vec::new());
        let (mut here_len, mut there_len) = (0usize, 0usize);
        for w in wanted {
            if here_len <= there_len {
                here_len += w.1.len();
                here.push(w);
            } else {
                there_len += w.1.len();
                there.push(w);
            }
        }
        let ready = |(name, r): &(&str, &R<'data>)| {
            if *name == ".debug_info" {
                // An error stays in the unit list, for the query that reads it.
                let _ = self.slots();
            } else {
                r.make_ready();
            }
        };
        if there.is_empty() {
            here.iter().for_each(ready);
            return;
        }
        std::thread::scope(|s| {
            s.spawn(|| there.iter().for_each(ready));
            here.iter().for_each(ready);
        });
    }

    fn slots(&self) -> Result<&[UnitSlot<'data>]> {
        self.units
            .get_or_init(|| self.read_units())
            .as_ref()
            .map(Vec::as_slice)
            .map_err(Clone::clone)
    }

    fn read_units(&self) -> Result<Vec<UnitSlot<'data>>> {
        let info = self
            .sections
            .iter()
            .find(|(n, _)| *n == ".debug_info")
            .map(|(_, r)| r.clone())
            .ok_or(Error::NoDwarf)?;
        // A compressed section lists its units as the one pass over it goes by, so
        // that listing them inflates nothing that is kept.
        let mut slots = Vec::new();
        let mut error = None;
        let mut units = UnitStarts::default();
        // The segments of the units of packages queries are known to read are kept
        // as the pass goes by them.
        let wanted = self.wanted.lock().map(|w| w.clone()).unwrap_or_default();
        let keep = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let mut found = |start: usize, total: usize, prefix: &[u8]| {
            if error.is_none() {
                match self.slot_from_prefix(&info, start, total, prefix) {
                    Ok(slot) => {
                        if wanted.contains(&slot.name) && total > 0 {
                            let last = start.saturating_add(total - 1) / inflate::SEGMENT;
                            keep.borrow_mut().extend(start / inflate::SEGMENT..=last);
                        }
                        slots.push(slot)
                    }
                    Err(e) => error = Some(e),
                }
            }
        };
        if info.scan(
            |at, bytes| units.feed(at, bytes, &mut found),
            |i| keep.borrow().contains(&i),
        ) {
            units.finish(&mut found);
            return match error {
                Some(e) => Err(e),
                None => Ok(slots),
            };
        }
        let mut out = Vec::new();
        let mut iter = self.gimli.units();
        while let Some(header) = iter.next().ctx("reading a unit header")? {
            let start = match header.offset() {
                gimli::UnitSectionOffset::DebugInfoOffset(o) => o.0,
                gimli::UnitSectionOffset::DebugTypesOffset(_) => continue,
            };
            let name = self.root_name(&header)?;
            out.push(UnitSlot::new(header, start, name));
        }
        Ok(out)
    }

    /// The slot of the unit at `start` of `info`, `total` bytes long, from its first
    /// bytes `prefix`. gimli reads the header and root DIE from a copy of `prefix`
    /// whose length field is cut to the copy; the slot's header then reads the whole
    /// unit from `info`.
    fn slot_from_prefix(
        &self,
        info: &R<'data>,
        start: usize,
        total: usize,
        prefix: &[u8],
    ) -> Result<UnitSlot<'data>> {
        let corrupt = || Error::Corrupt(format!("unit header at {start:#x} of .debug_info"));
        let mut copy = prefix.to_vec();
        let initial = if copy.starts_with(&[0xff; 4]) { 12 } else { 4 };
        let cut = copy.len().checked_sub(initial).ok_or_else(corrupt)?;
        if initial == 4 {
            copy[..4].copy_from_slice(&(cut as u32).to_le_bytes());
        } else {
            copy[4..12].copy_from_slice(&(cut as u64).to_le_bytes());
        }
        let head = gimli::DebugInfo::new(&copy, gimli::LittleEndian)
            .units()
            .next()
            .ctx("reading a unit header")?
            .ok_or_else(corrupt)?;
        let size = head.header_size();
        let mut entries = info.clone();
        entries
            .skip(start + size)
            .and_then(|()| entries.truncate(total.saturating_sub(size)))
            .ctx("reading a unit header")?;
        let header = gimli::UnitHeader::new(
            head.encoding(),
            total - initial,
            head.type_(),
            head.debug_abbrev_offset(),
            gimli::UnitSectionOffset::DebugInfoOffset(gimli::DebugInfoOffset(start)),
            entries,
        );
        let name = match self.root_name(&head) {
            Ok(name) => name,
            // A root DIE longer than the copy: the unit is found by scanning.
            Err(_) if prefix.len() < total => String::new(),
            Err(e) => return Err(e),
        };
        Ok(UnitSlot::new(header, start, name))
    }

    /// The root DIE's name, read without building the whole unit (which would parse
    /// its line program header too).
    fn root_name<T: gimli::Reader<Offset = usize>>(
        &self,
        header: &gimli::UnitHeader<T>,
    ) -> Result<String> {
        let abbrevs = self
            .gimli
            .debug_abbrev
            .abbreviations(header.debug_abbrev_offset())
            .ctx("reading abbreviations")?;
        let mut entries = header.entries(&abbrevs);
        let Some((_, root)) = entries.next_dfs().ctx("reading a unit's root DIE")? else {
            return Ok(String::new());
        };
        Ok(
            match root
                .attr_value(gimli::DW_AT_name)
                .ctx("reading a unit's name")?
            {
                Some(gimli::AttributeValue::String(s)) => s
                    .to_string_lossy()
                    .map(|c| c.into_owned())
                    .unwrap_or_default(),
                Some(gimli::AttributeValue::DebugStrRef(o)) => self
                    .gimli
                    .debug_str
                    .get_str(o)
                    .map(|s| lossy(&s))
                    .unwrap_or_default(),
                // Forms that need the unit's bases (strx): resolved when the unit is built.
                _ => String::new(),
            },
        )
    }

    /// Bytes of DWARF held in memory: sections inflated (in part or whole) and the
    /// checkpoints of compressed ones. Sections read in place are not counted.
    pub fn held(&self) -> usize {
        self.sections.iter().map(|(_, r)| r.held()).sum()
    }

    /// As [`Dwarf::held`], for the section called `name` alone.
    pub fn held_of(&self, name: &str) -> usize {
        self.sections
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, r)| r.held())
            .sum()
    }

    /// How many times the DIEs of a whole unit have been walked: to index its
    /// functions or types, or to list its inlined calls. Each unit's indexes are
    /// built once, so this counts the units a query had to read through, what its
    /// cost grows with; reading one function's DIEs is not counted.
    pub fn units_walked(&self) -> usize {
        self.walked.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn note_unit_walked(&self) {
        self.walked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The number of compile units.
    pub fn unit_count(&self) -> Result<usize> {
        self.blamed(self.slots().map(<[_]>::len))
    }

    /// The sections that cannot be read, with why: their compression header is
    /// corrupt, or their stream failed to inflate where it was read.
    pub fn damaged(&self) -> Vec<(&'static str, String)> {
        self.sections
            .iter()
            .filter_map(|(n, r)| Some((*n, r.damage()?)))
            .collect()
    }

    /// `r`, with an error that a damaged section explains said as that section's
    /// damage: a read of a damaged section runs out of bytes, which would otherwise
    /// read as a malformed entry, or as no entry at all ("no function").
    pub(crate) fn blamed<T>(&self, r: Result<T>) -> Result<T> {
        let Err(e) = r else { return r };
        let damaged = self.damaged();
        let info_damaged = damaged
            .iter()
            .any(|(n, _)| matches!(*n, ".debug_info" | ".debug_abbrev"));
        let explained = match &e {
            Error::Gimli { .. } | Error::Corrupt(_) | Error::Expr { .. } => !damaged.is_empty(),
            Error::NoFunction(_) | Error::NoType(_) => info_damaged,
            Error::NoDwarf | Error::CorruptSection { .. } => false,
        };
        match damaged.into_iter().next() {
            Some((section, reason)) if explained => Err(Error::CorruptSection {
                section: section.to_string(),
                reason,
            }),
            _ => Err(e),
        }
    }

    pub(crate) fn unit(&self, index: usize) -> Result<&Unit<'data>> {
        let slot = self.slot(index)?;
        slot.unit
            .get_or_init(|| {
                self.read_unit(slot.header.clone())
                    .ctx("reading a compile unit")
                    .map(Arc::new)
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    /// A unit with the bases its root DIE sets, but without its line program:
    /// `gimli::Dwarf::unit` would parse the program's header, and so inflate all of
    /// `.debug_line`, for every unit a query opens, though only statement probes read
    /// lines ([`Dwarf::line_program`]).
    fn read_unit(&self, header: gimli::UnitHeader<R<'data>>) -> gimli::Result<Unit<'data>> {
        let abbreviations = self.gimli.abbreviations(&header)?;
        let encoding = header.encoding();
        let file = self.gimli.file_type;
        let mut unit = gimli::Unit {
            abbreviations,
            name: None,
            comp_dir: None,
            low_pc: 0,
            str_offsets_base: gimli::DebugStrOffsetsBase::default_for_encoding_and_file(
                encoding, file,
            ),
            addr_base: gimli::DebugAddrBase(0),
            loclists_base: gimli::DebugLocListsBase::default_for_encoding_and_file(encoding, file),
            rnglists_base: gimli::DebugRngListsBase::default_for_encoding_and_file(encoding, file),
            line_program: None,
            dwo_id: None,
            header,
        };
        let (mut name, mut comp_dir, mut low_pc) = (None, None, None);
        {
            let mut entries = unit.header.entries(&unit.abbreviations);
            let (_, root) = entries.next_dfs()?.ok_or(gimli::Error::MissingUnitDie)?;
            let mut attrs = root.attrs();
            while let Some(attr) = attrs.next()? {
                use gimli::AttributeValue as V;
                match (attr.name(), attr.value()) {
                    (gimli::DW_AT_name, v) => name = Some(v),
                    (gimli::DW_AT_comp_dir, v) => comp_dir = Some(v),
                    (gimli::DW_AT_low_pc, v) => low_pc = Some(v),
                    (gimli::DW_AT_str_offsets_base, V::DebugStrOffsetsBase(b)) => {
                        unit.str_offsets_base = b
                    }
                    (gimli::DW_AT_addr_base, V::DebugAddrBase(b)) => unit.addr_base = b,
                    (gimli::DW_AT_loclists_base, V::DebugLocListsBase(b)) => unit.loclists_base = b,
                    (gimli::DW_AT_rnglists_base, V::DebugRngListsBase(b)) => unit.rnglists_base = b,
                    _ => {}
                }
            }
        }
        // The string forms need the bases just read.
        unit.name = name.and_then(|v| self.gimli.attr_string(&unit, v).ok());
        unit.comp_dir = comp_dir.and_then(|v| self.gimli.attr_string(&unit, v).ok());
        if let Some(v) = low_pc {
            unit.low_pc = self.gimli.attr_address(&unit, v)?.unwrap_or(0);
        }
        Ok(unit)
    }

    /// The line program of unit `index`, its header read from `.debug_line` on the
    /// first call.
    pub(crate) fn line_program(
        &self,
        index: usize,
    ) -> Result<Option<gimli::IncompleteLineProgram<R<'data>>>> {
        self.slot(index)?
            .line_program
            .get_or_init(|| self.read_line_program(index))
            .clone()
    }

    fn read_line_program(
        &self,
        index: usize,
    ) -> Result<Option<gimli::IncompleteLineProgram<R<'data>>>> {
        let unit = self.unit(index)?;
        let mut entries = unit.entries();
        let (_, root) = entries
            .next_dfs()
            .ctx("reading a unit's root DIE")?
            .ok_or_else(|| Error::Corrupt(format!("compile unit #{index} has no root DIE")))?;
        let Some(gimli::AttributeValue::DebugLineRef(offset)) = root
            .attr_value(gimli::DW_AT_stmt_list)
            .ctx("reading a unit's line table offset")?
        else {
            return Ok(None);
        };
        self.gimli
            .debug_line
            .program(
                offset,
                unit.header.address_size(),
                unit.comp_dir.clone(),
                unit.name.clone(),
            )
            .map(Some)
            .ctx("reading a line table header")
    }

    pub(crate) fn slot(&self, index: usize) -> Result<&UnitSlot<'data>> {
        self.slots()?
            .get(index)
            .ok_or_else(|| Error::Corrupt(format!("no compile unit #{index}")))
    }

    /// The unit that holds `.debug_info` offset `offset`.
    pub(crate) fn unit_of(
        &self,
        offset: gimli::DebugInfoOffset,
    ) -> Result<(usize, gimli::UnitOffset)> {
        let slots = self.slots()?;
        let i = slots.partition_point(|s| s.start <= offset.0);
        let index = i
            .checked_sub(1)
            .ok_or_else(|| Error::Corrupt(format!("DIE offset {:#x} before any unit", offset.0)))?;
        let slot = &slots[index];
        let local = offset.to_unit_offset(&slot.header).ok_or_else(|| {
            Error::Corrupt(format!("DIE offset {:#x} outside every unit", offset.0))
        })?;
        Ok((index, local))
    }

    /// The top-level subprograms of unit `index`, by name. A subprogram that names
    /// its function through `DW_AT_abstract_origin` (a concrete copy of a function
    /// that was also inlined) is indexed under its origin's name. Abstract
    /// (`DW_AT_inline`) entries have no code and are left out.
    pub(crate) fn funcs_of(
        &self,
        index: usize,
    ) -> Result<&HashMap<String, Vec<gimli::UnitOffset>>> {
        let slot = self.slot(index)?;
        slot.funcs
            .get_or_init(|| self.index_funcs(index))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn index_funcs(&self, index: usize) -> Result<HashMap<String, Vec<gimli::UnitOffset>>> {
        let unit = self.unit(index)?;
        let mut out: HashMap<String, Vec<gimli::UnitOffset>> = HashMap::new();
        let mut origins = Vec::new();
        self.scan_top_level(
            unit,
            |tag| tag == gimli::DW_TAG_subprogram,
            |offset, attrs| {
                if attrs.inline {
                    return;
                }
                if let Some(name) = attrs.name {
                    out.entry(name).or_default().push(offset);
                } else if let Some(origin) = attrs.origin {
                    origins.push((offset, origin));
                }
            },
        )?;
        for (offset, origin) in origins {
            let name = self.die_name(origin)?;
            out.entry(name).or_default().push(offset);
        }
        Ok(out)
    }

    /// The top-level type DIEs of unit `index`, by their (Go syntax) name.
    fn types_of(&self, index: usize) -> Result<&HashMap<String, gimli::UnitOffset>> {
        let slot = self.slot(index)?;
        slot.types
            .get_or_init(|| self.index_types(index))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn index_types(&self, index: usize) -> Result<HashMap<String, gimli::UnitOffset>> {
        let unit = self.unit(index)?;
        let mut out = HashMap::new();
        self.scan_top_level(unit, types::is_type_tag, |offset, attrs| {
            if let Some(name) = attrs.name {
                out.entry(name).or_insert(offset);
            }
        })?;
        Ok(out)
    }

    /// Walks every DIE of `unit` with `EntriesRaw`, decoding attributes only of the
    /// top-level DIEs whose tag `want` accepts, and skipping all others unparsed.
    fn scan_top_level(
        &self,
        unit: &Unit<'data>,
        want: impl Fn(gimli::DwTag) -> bool,
        mut found: impl FnMut(gimli::UnitOffset, ScanAttrs),
    ) -> Result<()> {
        self.note_unit_walked();
        let mut entries = unit.entries_raw(None).ctx("reading DIEs")?;
        while !entries.is_empty() {
            let depth = entries.next_depth();
            let offset = entries.next_offset();
            let Some(abbrev) = entries.read_abbreviation().ctx("reading a DIE")? else {
                continue;
            };
            if depth != 1 || !want(abbrev.tag()) {
                entries
                    .skip_attributes(abbrev.attributes())
                    .ctx("skipping a DIE's attributes")?;
                continue;
            }
            let mut attrs = ScanAttrs::default();
            for spec in abbrev.attributes() {
                let attr = entries.read_attribute(*spec).ctx("reading an attribute")?;
                match attr.name() {
                    gimli::DW_AT_name => {
                        let s = self
                            .gimli
                            .attr_string(unit, attr.value())
                            .ctx("reading a name")?;
                        attrs.name = Some(lossy(&s));
                    }
                    gimli::DW_AT_inline => attrs.inline = true,
                    gimli::DW_AT_abstract_origin => {
                        attrs.origin = self.global_ref(unit, attr.value())
                    }
                    _ => {}
                }
            }
            found(offset, attrs);
        }
        Ok(())
    }

    /// A reference attribute as a `.debug_info` offset (Go uses both unit-relative
    /// and section-relative references, and refers across units to types).
    pub(crate) fn global_ref(
        &self,
        unit: &Unit<'data>,
        value: gimli::AttributeValue<R<'data>>,
    ) -> Option<gimli::DebugInfoOffset> {
        match value {
            gimli::AttributeValue::UnitRef(o) => o.to_debug_info_offset(&unit.header),
            gimli::AttributeValue::DebugInfoRef(o) => Some(o),
            _ => None,
        }
    }

    /// The `DW_AT_name` of the DIE at `offset`.
    pub(crate) fn die_name(&self, offset: gimli::DebugInfoOffset) -> Result<String> {
        let (index, local) = self.unit_of(offset)?;
        let unit = self.unit(index)?;
        let entry = unit.entry(local).ctx("reading a DIE")?;
        self.name_of(unit, &entry)?
            .ok_or_else(|| Error::Corrupt(format!("DIE {:#x} has no name", offset.0)))
    }

    pub(crate) fn name_of(
        &self,
        unit: &Unit<'data>,
        entry: &gimli::DebuggingInformationEntry<R<'data>>,
    ) -> Result<Option<String>> {
        match entry.attr_value(gimli::DW_AT_name).ctx("reading a name")? {
            Some(v) => {
                let s = self.gimli.attr_string(unit, v).ctx("reading a name")?;
                Ok(Some(lossy(&s)))
            }
            None => Ok(None),
        }
    }

    /// Units to search for a function, most likely first: the units of the function's
    /// package (by name prefix), then the rest.
    pub(crate) fn units_for_function(&self, name: &str) -> Result<(Vec<usize>, Vec<usize>)> {
        let pkg = package_of(name);
        let (mut first, mut rest) = (Vec::new(), Vec::new());
        for (i, slot) in self.slots()?.iter().enumerate() {
            if slot.name == pkg {
                first.push(i)
            } else {
                rest.push(i)
            }
        }
        Ok((first, rest))
    }

    /// Finds the concrete DIEs of function `name` (Go's full name, `main.f`,
    /// `main.(*T).M`, `runtime.newstack`). More than one is found when the linker
    /// made an ABI wrapper of the same name; all are returned, as `(unit, offset)`.
    pub(crate) fn find_function(&self, name: &str) -> Result<Vec<(usize, gimli::UnitOffset)>> {
        let (first, rest) = self.units_for_function(name)?;
        let mut found = Vec::new();
        for i in first {
            if let Some(offs) = self.funcs_of(i)?.get(name) {
                found.extend(offs.iter().map(|o| (i, *o)));
            }
        }
        if found.is_empty() {
            for i in rest {
                if let Some(offs) = self.funcs_of(i)?.get(name) {
                    found.extend(offs.iter().map(|o| (i, *o)));
                    break;
                }
            }
        }
        if found.is_empty() {
            return Err(Error::NoFunction(name.to_string()));
        }
        Ok(found)
    }

    /// The names of every function with code and DWARF, sorted (for listing probe
    /// points: `gotap -L 'main.*'`). This indexes every unit.
    pub fn function_names(&self) -> Result<Vec<String>> {
        self.blamed(self.all_function_names())
    }

    fn all_function_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for i in 0..self.slots()?.len() {
            names.extend(self.funcs_of(i)?.keys().cloned());
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Finds a type DIE by its Go name (`runtime.g`, `*runtime.m`, `[]uint8`, `string`).
    pub fn type_by_name(&self, name: &str) -> Result<Option<TypeRef>> {
        self.blamed(self.find_type(name))
    }

    fn find_type(&self, name: &str) -> Result<Option<TypeRef>> {
        let slots = self.slots()?;
        let runtime_first = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.name == "runtime")
            .chain(
                slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.name != "runtime"),
            )
            .map(|(i, _)| i);
        for i in runtime_first {
            if let Some(off) = self.types_of(i)?.get(name) {
                let unit = self.unit(i)?;
                if let Some(global) = off.to_debug_info_offset(&unit.header) {
                    return Ok(Some(TypeRef(global.0 as u64)));
                }
            }
        }
        Ok(None)
    }

    /// A type DIE by its Go name, looked for only where Go's linker writes every
    /// type (the `runtime` unit): for speculative lookups, which must not index every
    /// other unit when the name is not there.
    pub fn type_in_types_unit(&self, name: &str) -> Result<Option<TypeRef>> {
        self.types_unit_names(|n, t| (n == name).then_some(t))
            .map(|v| v.into_iter().next())
    }

    /// The types of the `runtime` unit (every type Go writes) whose names start
    /// with `prefix`, sorted by name.
    pub fn types_with_prefix(&self, prefix: &str) -> Result<Vec<(String, TypeRef)>> {
        let mut v =
            self.types_unit_names(|n, t| n.starts_with(prefix).then(|| (n.to_string(), t)))?;
        v.sort();
        Ok(v)
    }

    fn types_unit_names<T>(
        &self,
        mut pick: impl FnMut(&str, TypeRef) -> Option<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for (i, s) in self.slots()?.iter().enumerate() {
            if s.name != "runtime" {
                continue;
            }
            let unit = self.unit(i)?;
            for (name, off) in self.types_of(i)? {
                if let Some(global) = off.to_debug_info_offset(&unit.header)
                    && let Some(t) = pick(name, TypeRef(global.0 as u64))
                {
                    out.push(t);
                }
            }
        }
        Ok(out)
    }

    /// The names of the compile units (Go package paths), in section order.
    pub fn unit_names(&self) -> Result<Vec<String>> {
        self.blamed(
            self.slots()
                .map(|s| s.iter().map(|s| s.name.clone()).collect()),
        )
    }
}

/// A string attribute's bytes as text (Go writes UTF-8; anything else is replaced).
pub(crate) fn lossy(r: &R) -> String {
    r.to_string_lossy()
        .map(|c| c.into_owned())
        .unwrap_or_default()
}

#[derive(Default)]
struct ScanAttrs {
    name: Option<String>,
    inline: bool,
    origin: Option<gimli::DebugInfoOffset>,
}

/// The package path of a Go symbol name: `internal/runtime/maps.(*Map).Get` →
/// `internal/runtime/maps`, `main.f` → `main`. The package ends at the first `.`
/// after the last `/` of the part before any `(` or `[`.
pub fn package_of(symbol: &str) -> &str {
    let head_end = symbol.find(['(', '[']).unwrap_or(symbol.len());
    let head = &symbol[..head_end];
    let slash = head.rfind('/').map_or(0, |i| i + 1);
    match head[slash..].find('.') {
        Some(dot) => &symbol[..slash + dot],
        None => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_of_names() {
        assert_eq!(package_of("main.composite"), "main");
        assert_eq!(package_of("main.(*Point).Scale"), "main");
        assert_eq!(
            package_of("internal/runtime/maps.(*Map).Get"),
            "internal/runtime/maps"
        );
        assert_eq!(package_of("slices.SortFunc[go.shape.[]a/b.c]"), "slices");
        assert_eq!(package_of("runtime.newstack"), "runtime");
    }

    #[test]
    fn empty_sections_say_no_dwarf() {
        assert!(matches!(Dwarf::load(|_| None), Err(Error::NoDwarf)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let junk: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        let d = Dwarf::load(|name| {
            (name == ".debug_info" || name == ".debug_abbrev").then(|| Cow::Owned(junk.clone()))
        })
        .unwrap();
        assert!(d.unit_count().is_err() || d.find_function("main.main").is_err());
        assert!(d.type_by_name("int").is_err() || d.type_by_name("int").unwrap().is_none());
    }
}
