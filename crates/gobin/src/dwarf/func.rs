//! Functions (DWARF subprograms) and their variables: parameters, results and locals,
//! the lexical blocks that scope them, and where each lives at a given pc.
//!
//! Go marks results as `DW_TAG_formal_parameter` with `DW_AT_variable_parameter`
//! set, names unnamed ones `~r0`, `~r1`…, and gives them an empty location until they
//! are assigned. Locals declared in a block sit under a `DW_TAG_lexical_block` whose
//! ranges are the pcs where they are in scope. A function that was also inlined
//! somewhere has a concrete DIE whose children point at an abstract copy
//! (`DW_AT_abstract_origin`) for their names and types. Variables of inlined callees
//! (under `DW_TAG_inlined_subroutine`) are not reported: they belong to the callee.

use std::ops::Range;

use gimli::{AttributeValue, Reader as _};

use super::location::{self, Expr, Location, LocationEntry};
use super::types::TypeRef;
use super::{Context, Dwarf, Error, Result, Unit};
use crate::VirtAddr;

/// A function with DWARF, and every variable it declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Go's full name: `main.f`, `main.(*T).M`.
    pub name: String,
    /// The address of its first instruction (`DW_AT_low_pc`).
    pub entry: VirtAddr,
    /// The pcs of its code (Go emits one contiguous range).
    pub ranges: Vec<Range<VirtAddr>>,
    /// Parameters first, then results, then locals, each in declaration order.
    pub variables: Vec<FunctionVariable>,
}

/// A variable of a function, over the function's whole body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionVariable {
    pub name: String,
    /// A parameter or a result.
    pub is_param: bool,
    /// A result (`DW_AT_variable_parameter`).
    pub is_return: bool,
    pub type_id: TypeRef,
    pub decl_line: Option<u64>,
    /// Where the variable is in scope: the function's body or a lexical block's pcs.
    pub scope: Scope,
    pub location: Location,
}

/// Where a variable may be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole function.
    Function,
    /// The pc ranges of the innermost lexical block declaring it.
    Block(Vec<Range<VirtAddr>>),
}

impl Scope {
    pub fn contains(&self, pc: VirtAddr) -> bool {
        match self {
            Scope::Function => true,
            Scope::Block(ranges) => ranges.iter().any(|r| r.start <= pc && pc < r.end),
        }
    }
}

/// A variable as seen from one pc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub is_param: bool,
    pub is_return: bool,
    pub type_id: TypeRef,
    pub decl_line: Option<u64>,
    /// Where its value is at this pc; `None` when the compiler kept no byte of it here.
    pub location: Option<Expr>,
}

impl Function {
    pub fn contains(&self, pc: VirtAddr) -> bool {
        self.ranges.iter().any(|r| r.start <= pc && pc < r.end)
    }

    fn size(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| r.end.0.saturating_sub(r.start.0))
            .sum()
    }

    /// The variables in scope at `pc` with their location there.
    pub fn variables_at(&self, pc: VirtAddr) -> Vec<Variable> {
        self.variables
            .iter()
            .filter(|v| v.scope.contains(pc))
            .map(|v| Variable {
                name: v.name.clone(),
                is_param: v.is_param,
                is_return: v.is_return,
                type_id: v.type_id,
                decl_line: v.decl_line,
                location: v.location.at(pc).filter(|e| !e.is_optimized_out()).cloned(),
            })
            .collect()
    }
}

impl<'data> Dwarf<'data> {
    /// The function `name` with all its variables. When the linker made a wrapper of
    /// the same name (an ABI wrapper), the larger function, the real one, is returned.
    pub fn function(&self, name: &str) -> Result<Function> {
        self.blamed(self.largest_function(name))
    }

    fn largest_function(&self, name: &str) -> Result<Function> {
        let mut best: Option<Function> = None;
        for (unit, offset) in self.find_function(name)? {
            let f = self.read_function(unit, offset, name)?;
            if best.as_ref().is_none_or(|b| f.size() > b.size()) {
                best = Some(f);
            }
        }
        best.ok_or_else(|| Error::NoFunction(name.to_string()))
    }

    /// The function `name` whose code holds `pc`.
    pub fn function_at(&self, name: &str, pc: VirtAddr) -> Result<Function> {
        self.blamed(self.function_holding(name, pc))
    }

    fn function_holding(&self, name: &str, pc: VirtAddr) -> Result<Function> {
        for (unit, offset) in self.find_function(name)? {
            let f = self.read_function(unit, offset, name)?;
            if f.contains(pc) {
                return Ok(f);
            }
        }
        Err(Error::Corrupt(format!("{pc} is not in the code of {name}")))
    }

    /// The variables of `func` in scope at `pc`, with their locations at `pc`.
    pub fn variables_at(&self, func: &str, pc: VirtAddr) -> Result<Vec<Variable>> {
        Ok(self.function_at(func, pc)?.variables_at(pc))
    }

    pub(crate) fn read_function(
        &self,
        index: usize,
        offset: gimli::UnitOffset,
        name: &str,
    ) -> Result<Function> {
        let unit = self.unit(index)?;
        let mut tree = unit
            .entries_tree(Some(offset))
            .ctx("reading a function's DIEs")?;
        let root = tree.root().ctx("reading a function's DIE")?;
        let entry = root.entry();
        // An inlined call has no frame base of its own: its variables live in the
        // frame of the function it was inlined into, whose base Go makes the CFA.
        let frame_base_is_cfa = match entry
            .attr_value(gimli::DW_AT_frame_base)
            .ctx("reading the frame base")?
        {
            Some(AttributeValue::Exprloc(e)) => e.0.to_slice().ok().as_deref() == Some(&[0x9c][..]),
            _ => entry.tag() == gimli::DW_TAG_inlined_subroutine,
        };
        let mut ranges = Vec::new();
        let mut iter = self
            .gimli
            .die_ranges(unit, entry)
            .ctx("reading a function's ranges")?;
        while let Some(r) = iter.next().ctx("reading a function's ranges")? {
            ranges.push(VirtAddr(r.begin)..VirtAddr(r.end));
        }
        let entry_pc = match entry
            .attr_value(gimli::DW_AT_entry_pc)
            .ctx("reading entry_pc")?
            .or(entry
                .attr_value(gimli::DW_AT_low_pc)
                .ctx("reading low_pc")?)
        {
            Some(v) => self
                .gimli
                .attr_address(unit, v)
                .ctx("reading low_pc")?
                .map(VirtAddr),
            None => None,
        }
        .or_else(|| ranges.iter().map(|r| r.start).min())
        .ok_or_else(|| Error::Corrupt(format!("function {name} has no address")))?;
        let mut f = Function {
            name: name.to_string(),
            entry: entry_pc,
            ranges,
            variables: Vec::new(),
        };
        let walker = Walker {
            dwarf: self,
            unit,
            name,
            frame_base_is_cfa,
        };
        walker.children(root, &Scope::Function, &mut f.variables, 0)?;
        // Parameters, then results, then locals; the sort is stable, so each group
        // keeps its declaration order.
        f.variables
            .sort_by_key(|v| match (v.is_param, v.is_return) {
                (true, false) => 0,
                (true, true) => 1,
                _ => 2,
            });
        Ok(f)
    }
}

const MAX_BLOCK_DEPTH: u32 = 256;

struct Walker<'a, 'd> {
    dwarf: &'a Dwarf<'d>,
    unit: &'a Unit<'d>,
    name: &'a str,
    frame_base_is_cfa: bool,
}

impl<'d> Walker<'_, 'd> {
    fn children(
        &self,
        node: gimli::EntriesTreeNode<super::R<'d>>,
        scope: &Scope,
        out: &mut Vec<FunctionVariable>,
        depth: u32,
    ) -> Result<()> {
        // Go nests blocks a few levels deep; corrupt DWARF must not exhaust the stack.
        if depth > MAX_BLOCK_DEPTH {
            return Err(Error::Corrupt(format!(
                "lexical blocks of {} nest too deep",
                self.name
            )));
        }
        let mut children = node.children();
        while let Some(child) = children.next().ctx("reading a function's DIEs")? {
            let entry = child.entry();
            match entry.tag() {
                gimli::DW_TAG_formal_parameter | gimli::DW_TAG_variable => {
                    let v = self.variable(entry, scope)?;
                    out.push(v);
                }
                gimli::DW_TAG_lexical_block => {
                    let mut ranges = Vec::new();
                    let mut iter = self
                        .dwarf
                        .gimli
                        .die_ranges(self.unit, entry)
                        .ctx("reading a block's ranges")?;
                    while let Some(r) = iter.next().ctx("reading a block's ranges")? {
                        ranges.push(VirtAddr(r.begin)..VirtAddr(r.end));
                    }
                    // A block without ranges holds variables the compiler dropped;
                    // they are in scope nowhere.
                    self.children(child, &Scope::Block(ranges), out, depth + 1)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn variable(
        &self,
        entry: &gimli::DebuggingInformationEntry<super::R<'d>>,
        scope: &Scope,
    ) -> Result<FunctionVariable> {
        let is_param = entry.tag() == gimli::DW_TAG_formal_parameter;
        // Name, type, line and result flag come from the abstract origin when the
        // DIE is a concrete copy of an inlined function's variable.
        let origin = match entry
            .attr_value(gimli::DW_AT_abstract_origin)
            .ctx("reading an origin")?
        {
            Some(v) => self.dwarf.global_ref(self.unit, v),
            None => None,
        };
        let origin_info = match origin {
            Some(o) => Some(self.origin_attrs(o)?),
            None => None,
        };
        let own = OwnAttrs::read(self.dwarf, self.unit, entry)?;
        let attrs = match origin_info {
            Some(o) => OwnAttrs {
                name: own.name.or(o.name),
                type_id: own.type_id.or(o.type_id),
                decl_line: own.decl_line.or(o.decl_line),
                is_return: own.is_return || o.is_return,
            },
            None => own,
        };
        let name = attrs.name.unwrap_or_default();
        let type_id = attrs.type_id.ok_or_else(|| {
            Error::Corrupt(format!("variable {name:?} of {} has no type", self.name))
        })?;
        let location = self.location(entry, &name)?;
        Ok(FunctionVariable {
            name,
            is_param,
            is_return: is_param && attrs.is_return,
            type_id,
            decl_line: attrs.decl_line,
            scope: scope.clone(),
            location,
        })
    }

    fn origin_attrs(&self, offset: gimli::DebugInfoOffset) -> Result<OwnAttrs> {
        let (index, local) = self.dwarf.unit_of(offset)?;
        let unit = self.dwarf.unit(index)?;
        let entry = unit.entry(local).ctx("reading an abstract origin")?;
        OwnAttrs::read(self.dwarf, unit, &entry)
    }

    fn location(
        &self,
        entry: &gimli::DebuggingInformationEntry<super::R<'d>>,
        var: &str,
    ) -> Result<Location> {
        let encoding = self.unit.encoding();
        let wrap = |source| Error::Expr {
            func: self.name.to_string(),
            var: var.to_string(),
            source,
        };
        let Some(value) = entry
            .attr_value(gimli::DW_AT_location)
            .ctx("reading a location")?
        else {
            return Ok(Location::default());
        };
        if let AttributeValue::Exprloc(e) = value {
            let expr = location::decode(e, encoding, self.frame_base_is_cfa).map_err(wrap)?;
            return Ok(Location {
                entries: vec![LocationEntry { range: None, expr }],
            });
        }
        let mut entries = Vec::new();
        if let Some(mut iter) = self
            .dwarf
            .gimli
            .attr_locations(self.unit, value)
            .ctx("reading a location list")?
        {
            while let Some(e) = iter.next().ctx("reading a location list")? {
                let expr =
                    location::decode(e.data, encoding, self.frame_base_is_cfa).map_err(wrap)?;
                entries.push(LocationEntry {
                    range: Some(VirtAddr(e.range.begin)..VirtAddr(e.range.end)),
                    expr,
                });
            }
        }
        Ok(Location { entries })
    }
}

struct OwnAttrs {
    name: Option<String>,
    type_id: Option<TypeRef>,
    decl_line: Option<u64>,
    is_return: bool,
}

impl OwnAttrs {
    fn read<'data>(
        dwarf: &Dwarf<'data>,
        unit: &Unit<'data>,
        entry: &gimli::DebuggingInformationEntry<super::R<'data>>,
    ) -> Result<OwnAttrs> {
        let name = dwarf.name_of(unit, entry)?;
        let type_id = match entry
            .attr_value(gimli::DW_AT_type)
            .ctx("reading a type reference")?
        {
            Some(v) => dwarf.global_ref(unit, v).map(|o| TypeRef(o.0 as u64)),
            None => None,
        };
        let decl_line = entry
            .attr_value(gimli::DW_AT_decl_line)
            .ctx("reading decl_line")?
            .and_then(|v| v.udata_value());
        let is_return = matches!(
            entry
                .attr_value(gimli::DW_AT_variable_parameter)
                .ctx("reading variable_parameter")?,
            Some(AttributeValue::Flag(true))
        ) || entry
            .attr_value(gimli::DW_AT_variable_parameter)
            .ok()
            .flatten()
            .and_then(|v| v.udata_value())
            .is_some_and(|v| v != 0);
        Ok(OwnAttrs {
            name,
            type_id,
            decl_line,
            is_return,
        })
    }
}
