//! Go types as the Go linker writes them into DWARF, read one DIE at a time.
//!
//! Every type DIE is named in Go syntax (`string`, `[]int`, `*main.T`,
//! `map[string]int`), and Go adds its own attributes: `DW_AT_go_kind` (0x2900, the
//! `reflect.Kind`), `DW_AT_go_key` (0x2901) and `DW_AT_go_elem` (0x2902) for maps,
//! channels and slices, `DW_AT_go_embedded_field` (0x2903) on members. Strings,
//! slices and interfaces are structs marked by their kind; maps and channels are
//! typedefs (kinded) of a pointer to the runtime's header struct; a named type
//! `main.T` is a plain typedef of a struct also named `main.T`.

use super::{Context, Dwarf, Error, Result, Unit};
use gimli::AttributeValue;

/// A type: its DIE's offset in `.debug_info`. Cheap to copy; resolve it with
/// [`Dwarf::type_info`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeRef(pub u64);

/// A type's name, size and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    /// The name in Go syntax.
    pub name: String,
    /// Size in bytes, when DWARF gives one (typedefs and pointers do not).
    pub size: Option<u64>,
    pub kind: TypeKind,
    /// The members of a struct-shaped type (also of strings, slices and interfaces,
    /// whose runtime representation is a struct: `str`/`len`, `array`/`len`/`cap`,
    /// `tab`|`_type`/`data`).
    pub members: Vec<Member>,
}

/// What kind of Go type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeKind {
    Base(BaseEncoding),
    /// A pointer; `unsafe.Pointer` has no target.
    Pointer {
        target: Option<TypeRef>,
    },
    Struct,
    String,
    Slice {
        elem: Option<TypeRef>,
    },
    /// `empty` for `interface {}` (an eface: type, data), otherwise an iface (itab, data).
    Interface {
        empty: bool,
    },
    /// The value is a pointer to the runtime's map header, `repr`.
    Map {
        key: Option<TypeRef>,
        value: Option<TypeRef>,
        repr: Option<TypeRef>,
    },
    /// The value is a pointer to the runtime's `hchan`, `repr`.
    Chan {
        elem: Option<TypeRef>,
        repr: Option<TypeRef>,
    },
    Array {
        elem: Option<TypeRef>,
        count: Option<u64>,
    },
    /// A named type (`type T U`): look through it with [`Dwarf::resolve_typedefs`].
    Typedef {
        target: Option<TypeRef>,
    },
    Func,
    /// Anything else (`DW_TAG_unspecified_type`…).
    Other,
}

/// How a base type's bytes are to be read (`DW_AT_encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseEncoding {
    Signed,
    Unsigned,
    Bool,
    Float,
    Complex,
    Other(u8),
}

/// A struct member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Bytes from the start of the struct.
    pub offset: u64,
    pub type_id: TypeRef,
    /// An embedded field (`DW_AT_go_embedded_field`).
    pub embedded: bool,
}

const DW_AT_GO_KIND: gimli::DwAt = gimli::DwAt(0x2900);
const DW_AT_GO_KEY: gimli::DwAt = gimli::DwAt(0x2901);
const DW_AT_GO_ELEM: gimli::DwAt = gimli::DwAt(0x2902);
const DW_AT_GO_EMBEDDED_FIELD: gimli::DwAt = gimli::DwAt(0x2903);
/// The offset of the type's runtime record from the module's type data
/// (`moduledata.types`).
const DW_AT_GO_RUNTIME_TYPE: gimli::DwAt = gimli::DwAt(0x2904);

// reflect.Kind values that decide a shape.
const KIND_CHAN: u64 = 18;
const KIND_FUNC: u64 = 19;
const KIND_INTERFACE: u64 = 20;
const KIND_MAP: u64 = 21;
const KIND_SLICE: u64 = 23;
const KIND_STRING: u64 = 24;

/// The tags of DIEs that are types, for the index by name.
pub(crate) fn is_type_tag(tag: gimli::DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_base_type
            | gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_structure_type
            | gimli::DW_TAG_typedef
            | gimli::DW_TAG_array_type
            | gimli::DW_TAG_subroutine_type
            | gimli::DW_TAG_unspecified_type
    )
}

impl<'data> Dwarf<'data> {
    /// Reads the type `t`. A typedef named like its target (Go writes `main.T` as a
    /// typedef of a struct `main.T`, and some unnamed types as a typedef of the same
    /// name) is read as its target: it names nothing new.
    pub fn type_info(&self, t: TypeRef) -> Result<Type> {
        self.blamed(self.type_info_within(t, 0))
    }

    fn type_info_within(&self, t: TypeRef, depth: u32) -> Result<Type> {
        if depth > 16 {
            return Err(Error::Corrupt(format!(
                "typedef chain from {:#x} does not end",
                t.0
            )));
        }
        let (index, local) = self.unit_of(gimli::DebugInfoOffset(t.0 as usize))?;
        let unit = self.unit(index)?;
        let mut tree = unit.entries_tree(Some(local)).ctx("reading a type DIE")?;
        let root = tree.root().ctx("reading a type DIE")?;
        let entry = root.entry().clone();
        let tag = entry.tag();
        if !is_type_tag(tag) {
            return Err(Error::Corrupt(format!(
                "DIE {:#x} is a {tag}, not a type",
                t.0
            )));
        }
        let name = self.name_of(unit, &entry)?.unwrap_or_default();
        let size = udata(&entry, gimli::DW_AT_byte_size)?;
        let go_kind = udata(&entry, DW_AT_GO_KIND)?;
        let target = self.type_attr(unit, &entry, gimli::DW_AT_type)?;
        let elem = self.type_attr(unit, &entry, DW_AT_GO_ELEM)?;
        let mut members = Vec::new();
        let mut count = None;
        let mut children = root.children();
        while let Some(child) = children.next().ctx("reading a type's members")? {
            let c = child.entry();
            match c.tag() {
                gimli::DW_TAG_member => members.push(self.member_of(unit, c, &name)?),
                gimli::DW_TAG_subrange_type => {
                    count = match udata(c, gimli::DW_AT_count)? {
                        Some(n) => Some(n),
                        None => udata(c, gimli::DW_AT_upper_bound)?.map(|u| u.saturating_add(1)),
                    }
                }
                _ => {}
            }
        }
        let kind = match (tag, go_kind) {
            (gimli::DW_TAG_base_type, _) => {
                let enc = match entry
                    .attr_value(gimli::DW_AT_encoding)
                    .ctx("reading an encoding")?
                {
                    Some(AttributeValue::Encoding(e)) => e,
                    _ => gimli::DwAte(0),
                };
                TypeKind::Base(match enc {
                    gimli::DW_ATE_signed | gimli::DW_ATE_signed_char => BaseEncoding::Signed,
                    gimli::DW_ATE_unsigned | gimli::DW_ATE_unsigned_char => BaseEncoding::Unsigned,
                    gimli::DW_ATE_boolean => BaseEncoding::Bool,
                    gimli::DW_ATE_float => BaseEncoding::Float,
                    gimli::DW_ATE_complex_float => BaseEncoding::Complex,
                    other => BaseEncoding::Other(other.0),
                })
            }
            (gimli::DW_TAG_pointer_type, _) => TypeKind::Pointer { target },
            (gimli::DW_TAG_structure_type, Some(KIND_STRING)) => TypeKind::String,
            (gimli::DW_TAG_structure_type, Some(KIND_SLICE)) => TypeKind::Slice { elem },
            (gimli::DW_TAG_structure_type, Some(KIND_INTERFACE)) => TypeKind::Interface {
                empty: members.first().is_some_and(|m| m.name == "_type"),
            },
            (gimli::DW_TAG_structure_type, _) => TypeKind::Struct,
            (gimli::DW_TAG_typedef, Some(KIND_MAP)) => TypeKind::Map {
                key: self.type_attr(unit, &entry, DW_AT_GO_KEY)?,
                value: elem,
                repr: target,
            },
            (gimli::DW_TAG_typedef, Some(KIND_CHAN)) => TypeKind::Chan { elem, repr: target },
            (gimli::DW_TAG_typedef, Some(KIND_INTERFACE)) => {
                let empty = match target {
                    Some(t) => self
                        .type_info(t)?
                        .members
                        .first()
                        .is_some_and(|m| m.name == "_type"),
                    None => false,
                };
                TypeKind::Interface { empty }
            }
            (gimli::DW_TAG_typedef, Some(KIND_FUNC)) | (gimli::DW_TAG_subroutine_type, _) => {
                TypeKind::Func
            }
            (gimli::DW_TAG_typedef, _) => {
                if let Some(next) = target {
                    let inner = self.type_info_within(next, depth + 1)?;
                    if inner.name == name {
                        return Ok(inner);
                    }
                }
                TypeKind::Typedef { target }
            }
            (gimli::DW_TAG_array_type, _) => TypeKind::Array {
                elem: target,
                count,
            },
            _ => TypeKind::Other,
        };
        Ok(Type {
            name,
            size,
            kind,
            members,
        })
    }

    fn member_of(
        &self,
        unit: &Unit<'data>,
        c: &gimli::DebuggingInformationEntry<super::R<'data>>,
        owner: &str,
    ) -> Result<Member> {
        let name = self.name_of(unit, c)?.unwrap_or_default();
        let offset = udata(c, gimli::DW_AT_data_member_location)?.ok_or_else(|| {
            Error::Corrupt(format!("member {owner}.{name} has no constant offset"))
        })?;
        let type_id = self
            .type_attr(unit, c, gimli::DW_AT_type)?
            .ok_or_else(|| Error::Corrupt(format!("member {owner}.{name} has no type")))?;
        let embedded = match c
            .attr_value(DW_AT_GO_EMBEDDED_FIELD)
            .ctx("reading an embedded flag")?
        {
            Some(AttributeValue::Flag(f)) => f,
            Some(v) => v.udata_value().is_some_and(|v| v != 0),
            None => false,
        };
        Ok(Member {
            name,
            offset,
            type_id,
            embedded,
        })
    }

    fn type_attr(
        &self,
        unit: &Unit<'data>,
        entry: &gimli::DebuggingInformationEntry<super::R<'data>>,
        at: gimli::DwAt,
    ) -> Result<Option<TypeRef>> {
        Ok(
            match entry.attr_value(at).ctx("reading a type reference")? {
                Some(v) => self.global_ref(unit, v).map(|o| TypeRef(o.0 as u64)),
                None => None,
            },
        )
    }

    /// The Go name of `t`: `string`, `int`, `*runtime.g`, `[]uint8`, `map[string]int`.
    pub fn type_name(&self, t: TypeRef) -> Result<String> {
        let info = self.type_info(t)?;
        if !info.name.is_empty() {
            return Ok(info.name);
        }
        // Go names every type; build a name for one that is not, from its shape.
        Ok(match info.kind {
            TypeKind::Pointer { target: Some(t) } => format!("*{}", self.type_name(t)?),
            TypeKind::Pointer { target: None } => "unsafe.Pointer".into(),
            TypeKind::Array {
                elem: Some(e),
                count,
            } => format!("[{}]{}", count.unwrap_or(0), self.type_name(e)?),
            TypeKind::Slice { elem: Some(e) } => format!("[]{}", self.type_name(e)?),
            _ => format!("<type {:#x}>", t.0),
        })
    }

    /// Follows plain typedefs (named types) to the type they name. Kinded typedefs
    /// (maps, channels, interfaces, funcs) are types of their own and are kept.
    pub fn resolve_typedefs(&self, mut t: TypeRef) -> Result<TypeRef> {
        // A cycle in corrupt DWARF must not loop forever.
        for _ in 0..64 {
            match self.type_info(t)?.kind {
                TypeKind::Typedef { target: Some(next) } => t = next,
                _ => return Ok(t),
            }
        }
        Err(Error::Corrupt(format!(
            "typedef chain from {:#x} does not end",
            t.0
        )))
    }

    /// The members of `t`, looking through typedefs; empty for a type without members.
    pub fn members(&self, t: TypeRef) -> Result<Vec<Member>> {
        Ok(self.type_info(self.resolve_typedefs(t)?)?.members)
    }

    /// The offset and type of member `name` of `t` (looking through typedefs). Only
    /// direct members are found; an embedded struct's fields are found through the
    /// embedded member, by name.
    pub fn member(&self, t: TypeRef, name: &str) -> Result<Option<(u64, TypeRef)>> {
        Ok(self
            .members(t)?
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| (m.offset, m.type_id)))
    }

    /// Where the runtime record of `t` is, as an offset from the module's type data
    /// (`DW_AT_go_runtime_type`), for types that have one.
    pub fn runtime_type_offset(&self, t: TypeRef) -> Result<Option<u64>> {
        let (index, local) = self.unit_of(gimli::DebugInfoOffset(t.0 as usize))?;
        let unit = self.unit(index)?;
        let entry = unit.entry(local).ctx("reading a type DIE")?;
        // Written as an address form, but it holds the offset.
        Ok(
            match entry
                .attr_value(DW_AT_GO_RUNTIME_TYPE)
                .ctx("reading a runtime type")?
            {
                Some(AttributeValue::Addr(a)) => Some(a),
                Some(v) => v.udata_value(),
                None => None,
            },
        )
    }

    /// The type `name` (see [`Dwarf::type_by_name`]), or an error naming it.
    pub fn type_named(&self, name: &str) -> Result<TypeRef> {
        self.type_by_name(name)?
            .ok_or_else(|| Error::NoType(name.to_string()))
    }
}

fn udata(
    entry: &gimli::DebuggingInformationEntry<super::R<'_>>,
    at: gimli::DwAt,
) -> Result<Option<u64>> {
    Ok(entry
        .attr_value(at)
        .ctx("reading an attribute")?
        .and_then(|v| v.udata_value()))
}
