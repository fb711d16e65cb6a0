//! Calls the compiler inlined, as DWARF records them: a `DW_TAG_inlined_subroutine`
//! DIE inside the function it was inlined into, naming the inlined function through
//! `DW_AT_abstract_origin`, with the pcs of its code (`DW_AT_low_pc`/`high_pc` or
//! `DW_AT_ranges`; `DW_AT_entry_pc` when a compiler says where the call starts), its
//! call site, and its own parameters and locals, each with a location list.
//!
//! Go puts the abstract copy of a function in the unit of its own package, so an
//! inlined call of `sync.(*Mutex).Lock` in `main` names a DIE of unit `sync` (a
//! section-relative reference).
//!
//! Where the calls are is `.gopclntab`'s to say (its inline trees give the same calls
//! at the same pcs, `tests/inlined.rs`, and cost no DWARF), so a probe looks here only
//! for what DWARF alone has, the variables of one call: [`Dwarf::inlined_call`] walks
//! the DIEs of the function holding the call and nothing else. Listing every inlined
//! call ([`Dwarf::inlined_instances`]) scans every unit once, and is kept for checking
//! the two sources against each other.

use std::collections::HashMap;
use std::ops::Range;

use super::func::Function;
use super::{Context, Dwarf, Result, Unit};
use crate::VirtAddr;

/// One inlined call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlinedInstance {
    /// The inlined function's name: `sync.(*Mutex).Lock`.
    pub name: String,
    /// Where the call's code starts: `DW_AT_entry_pc`, else its lowest pc.
    pub entry: VirtAddr,
    pub ranges: Vec<Range<VirtAddr>>,
    /// The line of the call in its caller's source, if recorded.
    pub call_line: Option<u64>,
    /// The DIE, for [`Dwarf::inlined_function`].
    pub die: InstanceRef,
}

/// An inlined call's DIE: its `.debug_info` offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceRef(pub u64);

/// The inlined-call DIEs of one unit: where each is, and the DIE it names.
pub(crate) type UnitInlined = Vec<(gimli::UnitOffset, Option<gimli::DebugInfoOffset>)>;

impl<'data> Dwarf<'data> {
    /// Every inlined call of a function whose name `wanted` accepts, in address
    /// order. Scans every unit's DIEs the first time: a probe asks
    /// [`Dwarf::inlined_call`] for the one call it reads the variables of instead.
    pub fn inlined_instances(&self, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<InlinedInstance>> {
        self.blamed(self.find_inlined(wanted))
    }

    fn find_inlined(&self, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<InlinedInstance>> {
        let mut names: HashMap<gimli::DebugInfoOffset, String> = HashMap::new();
        let mut out = Vec::new();
        for index in 0..self.slots()?.len() {
            let slot = self.slot(index)?;
            let found = slot
                .inlined
                .get_or_init(|| self.inlined_dies(index, None))
                .as_ref()
                .map_err(Clone::clone)?;
            for (offset, origin) in found {
                let Some(origin) = origin else { continue };
                let name = match names.get(origin) {
                    Some(n) => n.clone(),
                    None => {
                        let n = self.die_name(*origin)?;
                        names.insert(*origin, n.clone());
                        n
                    }
                };
                if !wanted(&name) {
                    continue;
                }
                out.push(self.instance(index, *offset, name)?);
            }
        }
        out.sort_by_key(|i| i.entry);
        Ok(out)
    }

    /// The call of `callee` inlined into the function `holder` whose code starts at
    /// `entry` (the call as `.gopclntab`'s inline tree gives it: its first pc), or
    /// `None` when DWARF does not record it. Looked for in the DIEs of `holder` alone,
    /// found through the index of the units of its package, as its own variables
    /// are; when `holder` is not there (a generic instantiation, which DWARF names
    /// with its type arguments), in the units whose address ranges hold `entry`.
    pub fn inlined_call(
        &self,
        holder: &str,
        callee: &str,
        entry: VirtAddr,
    ) -> Result<Option<InlinedInstance>> {
        self.blamed(self.find_inlined_call(holder, callee, entry))
    }

    fn find_inlined_call(
        &self,
        holder: &str,
        callee: &str,
        entry: VirtAddr,
    ) -> Result<Option<InlinedInstance>> {
        let (own, _) = self.units_for_function(holder)?;
        let mut holder_found = false;
        for index in own {
            let Some(offsets) = self.funcs_of(index)?.get(holder).cloned() else {
                continue;
            };
            holder_found = true;
            for offset in offsets {
                let dies = self.inlined_dies(index, Some(offset))?;
                if let Some(found) = self.pick_call(index, &dies, callee, entry)? {
                    return Ok(Some(found));
                }
            }
        }
        // A holder found without the call: DWARF does not record it.
        if holder_found {
            return Ok(None);
        }
        for index in self.units_covering(entry)? {
            let slot = self.slot(index)?;
            let dies = slot
                .inlined
                .get_or_init(|| self.inlined_dies(index, None))
                .as_ref()
                .map_err(Clone::clone)?;
            if let Some(found) = self.pick_call(index, dies, callee, entry)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Of the inlined-call DIEs `dies` of unit `index`, the call of `callee` whose
    /// code starts at `entry`, else the innermost one of `callee` whose code holds
    /// `entry`. Each DIE's pcs are read before the name it refers to, which lives in
    /// another unit.
    fn pick_call(
        &self,
        index: usize,
        dies: &UnitInlined,
        callee: &str,
        entry: VirtAddr,
    ) -> Result<Option<InlinedInstance>> {
        let mut holding = None;
        for (offset, origin) in dies {
            let Some(origin) = origin else { continue };
            let call = self.instance(index, *offset, String::new())?;
            let starts = call.entry == entry;
            if !starts
                && !call
                    .ranges
                    .iter()
                    .any(|r| r.start <= entry && entry < r.end)
            {
                continue;
            }
            if self.die_name(*origin)? != callee {
                continue;
            }
            let call = InlinedInstance {
                name: callee.to_string(),
                ..call
            };
            if starts {
                return Ok(Some(call));
            }
            // DIEs come in depth-first order, so a later one holding `entry` is
            // inside an earlier one.
            holding = Some(call);
        }
        Ok(holding)
    }

    /// The units whose address ranges hold `pc`. Reads the root DIE and the ranges
    /// of every unit, so it is the fallback, not the way in.
    fn units_covering(&self, pc: VirtAddr) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for index in 0..self.slots()?.len() {
            let unit = self.unit(index)?;
            let mut ranges = self
                .gimli
                .unit_ranges(unit)
                .ctx("reading a unit's ranges")?;
            while let Some(r) = ranges.next().ctx("reading a unit's ranges")? {
                if r.begin <= pc.0 && pc.0 < r.end {
                    out.push(index);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The inlined call `die` as a function: its pcs and its own parameters and
    /// locals, each with its location list (`Function::variables_at`).
    pub fn inlined_function(&self, die: InstanceRef, name: &str) -> Result<Function> {
        self.blamed((|| {
            let (index, local) = self.unit_of(gimli::DebugInfoOffset(die.0 as usize))?;
            self.read_function(index, local, name)
        })())
    }

    fn instance(
        &self,
        index: usize,
        offset: gimli::UnitOffset,
        name: String,
    ) -> Result<InlinedInstance> {
        let unit = self.unit(index)?;
        let entry = unit.entry(offset).ctx("reading an inlined call")?;
        let mut ranges = Vec::new();
        let mut iter = self
            .gimli
            .die_ranges(unit, &entry)
            .ctx("reading an inlined call's ranges")?;
        while let Some(r) = iter.next().ctx("reading an inlined call's ranges")? {
            if r.begin < r.end {
                ranges.push(VirtAddr(r.begin)..VirtAddr(r.end));
            }
        }
        let entry_pc = match entry
            .attr_value(gimli::DW_AT_entry_pc)
            .ctx("reading entry_pc")?
        {
            Some(v) => self
                .gimli
                .attr_address(unit, v)
                .ctx("reading entry_pc")?
                .map(VirtAddr),
            None => None,
        };
        let call_line = entry
            .attr_value(gimli::DW_AT_call_line)
            .ctx("reading call_line")?
            .and_then(|v| v.udata_value());
        let global = offset
            .to_debug_info_offset(&unit.header)
            .map_or(0, |o| o.0 as u64);
        Ok(InlinedInstance {
            entry: entry_pc
                .or_else(|| ranges.iter().map(|r| r.start).min())
                .unwrap_or_default(),
            name,
            ranges,
            call_line,
            die: InstanceRef(global),
        })
    }

    /// The inlined-call DIEs, at any depth, with the DIE each names: of the subtree
    /// of the DIE at `under` in unit `index` (a function's), or of the whole unit.
    fn inlined_dies(&self, index: usize, under: Option<gimli::UnitOffset>) -> Result<UnitInlined> {
        let unit: &Unit<'data> = self.unit(index)?;
        let mut entries = unit.entries_raw(under).ctx("reading DIEs")?;
        let mut out = Vec::new();
        if under.is_some() {
            // The function's own DIE, at depth 0; its children follow at depth 1.
            if let Some(abbrev) = entries.read_abbreviation().ctx("reading a DIE")? {
                entries
                    .skip_attributes(abbrev.attributes())
                    .ctx("skipping a DIE's attributes")?;
            }
            if entries.next_depth() <= 0 {
                return Ok(out);
            }
        } else {
            self.note_unit_walked();
        }
        while !entries.is_empty() && (under.is_none() || entries.next_depth() > 0) {
            let offset = entries.next_offset();
            let Some(abbrev) = entries.read_abbreviation().ctx("reading a DIE")? else {
                continue;
            };
            if abbrev.tag() != gimli::DW_TAG_inlined_subroutine {
                entries
                    .skip_attributes(abbrev.attributes())
                    .ctx("skipping a DIE's attributes")?;
                continue;
            }
            let mut origin = None;
            for spec in abbrev.attributes() {
                let attr = entries.read_attribute(*spec).ctx("reading an attribute")?;
                if attr.name() == gimli::DW_AT_abstract_origin {
                    origin = self.global_ref(unit, attr.value());
                }
            }
            out.push((offset, origin));
        }
        Ok(out)
    }
}
