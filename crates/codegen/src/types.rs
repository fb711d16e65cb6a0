//! Go types as the pretty-printer plans them ([`Desc`]): kind, size, alignment,
//! fields and element types, read from DWARF when the executable has some, or built
//! from a type's name for the standard types whose layout Go fixes — `string`,
//! slices, arrays, pointers, maps, `error`, `any`, `time.Duration`, `time.Time`,
//! `errors.errorString`, `fmt.wrapError` — so `@cast(p, "map[string]int")$` prints
//! in a stripped executable too. Also the runtime's own type data of the executable
//! (`gobin::rtype`): where a type's runtime record is, which the probe compares an
//! interface's dynamic type with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use gobin::dwarf::{BaseEncoding, TypeKind, TypeRef};
use gobin::rtype::{Itab, TypeData};
use lang::{GoKind, GoType, TargetError};

use crate::target::GoTarget;

/// Handles of types built from their names: [`SYNTH_MODEL`] and an index.
const SYNTH_MODEL: u64 = (1 << 63) | (1 << 62);

/// A Go type, as much of it as printing needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desc {
    pub name: String,
    pub size: u64,
    pub align: u64,
    pub kind: DKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DKind {
    Bool,
    Int {
        signed: bool,
    },
    Float,
    Complex,
    String,
    /// `None`: `unsafe.Pointer`.
    Pointer(Option<u64>),
    Slice(u64),
    Array {
        elem: u64,
        len: u64,
    },
    Struct(Vec<DField>),
    Interface {
        empty: bool,
    },
    Map {
        key: u64,
        value: u64,
    },
    Chan,
    Func,
    /// A type this module cannot lay out.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DField {
    pub name: String,
    pub offset: u64,
    pub ty: u64,
}

impl DField {
    /// Whether `fmt` may call the field's methods: an exported field (Go's
    /// `CanInterface`); an embedded field is named by its type.
    pub fn exported(&self) -> bool {
        let base = self.name.rsplit('.').next().unwrap_or(&self.name);
        base.chars().next().is_some_and(char::is_uppercase)
    }
}

/// What the target keeps about types between questions.
#[derive(Default)]
pub struct TypeCache {
    descs: Mutex<HashMap<u64, Arc<Desc>>>,
    models: Mutex<Vec<Desc>>,
    type_data: OnceLock<Option<TypeData>>,
    itabs: OnceLock<Vec<Itab>>,
}

impl GoTarget<'_> {
    /// The type with handle `h` (a DWARF offset, or a type built from its name).
    pub fn type_desc(&self, h: u64) -> Result<Arc<Desc>, TargetError> {
        if let Some(d) = self
            .type_cache()
            .descs
            .lock()
            .ok()
            .and_then(|m| m.get(&h).cloned())
        {
            return Ok(d);
        }
        let d = Arc::new(if h & SYNTH_MODEL == SYNTH_MODEL {
            let i = (h & !SYNTH_MODEL) as usize;
            self.type_cache()
                .models
                .lock()
                .ok()
                .and_then(|m| m.get(i).cloned())
                .ok_or_else(|| other(format!("no type #{i}")))?
        } else if h & (1 << 63) != 0 {
            // The runtime structs of a stripped binary (`runtime.g`): fields only
            // through `->`.
            Desc {
                name: "?".into(),
                size: 0,
                align: 8,
                kind: DKind::Unknown,
            }
        } else {
            self.dwarf_desc(TypeRef(h))?
        });
        if let Ok(mut m) = self.type_cache().descs.lock() {
            m.insert(h, d.clone());
        }
        Ok(d)
    }

    fn dwarf_desc(&self, t: TypeRef) -> Result<Desc, TargetError> {
        let d = self
            .dwarf()
            .ok_or_else(|| other("the executable has no DWARF".into()))?;
        let dw = |e: gobin::dwarf::Error| other(format!("reading DWARF: {e}"));
        let name = d.type_name(t).map_err(dw)?;
        let r = d.resolve_typedefs(t).map_err(dw)?;
        let info = d.type_info(r).map_err(dw)?;
        let size = info.size.unwrap_or(8);
        let kind = match &info.kind {
            TypeKind::Base(enc) => match enc {
                BaseEncoding::Signed => DKind::Int { signed: true },
                BaseEncoding::Unsigned | BaseEncoding::Other(_) => DKind::Int { signed: false },
                BaseEncoding::Bool => DKind::Bool,
                BaseEncoding::Float => DKind::Float,
                BaseEncoding::Complex => DKind::Complex,
            },
            TypeKind::Pointer { target } => DKind::Pointer(target.map(|t| t.0)),
            TypeKind::String => DKind::String,
            TypeKind::Slice { elem } => {
                let elem =
                    match elem {
                        Some(e) => Some(*e),
                        // Older DWARF: the element type is the pointee of `array`.
                        None => info.members.first().and_then(|m| {
                            match d.type_info(m.type_id).ok()?.kind {
                                TypeKind::Pointer { target } => target,
                                _ => None,
                            }
                        }),
                    };
                match elem {
                    Some(e) => DKind::Slice(e.0),
                    None => DKind::Unknown,
                }
            }
            TypeKind::Array {
                elem: Some(e),
                count,
            } => DKind::Array {
                elem: e.0,
                len: count.unwrap_or(0),
            },
            TypeKind::Struct => DKind::Struct(
                info.members
                    .iter()
                    .map(|m| DField {
                        name: m.name.clone(),
                        offset: m.offset,
                        ty: m.type_id.0,
                    })
                    .collect(),
            ),
            TypeKind::Interface { empty } => DKind::Interface { empty: *empty },
            TypeKind::Map {
                key: Some(k),
                value: Some(v),
                ..
            } => DKind::Map {
                key: k.0,
                value: v.0,
            },
            TypeKind::Chan { .. } => DKind::Chan,
            TypeKind::Func => DKind::Func,
            _ => DKind::Unknown,
        };
        let size = match kind {
            DKind::String | DKind::Interface { .. } => 16,
            DKind::Slice(_) => 24,
            DKind::Pointer(_) | DKind::Map { .. } | DKind::Chan | DKind::Func => 8,
            _ => size,
        };
        let align = self.align_of(&kind, size);
        Ok(Desc {
            name,
            size,
            align,
            kind,
        })
    }

    /// Go's alignment of a type of this kind and size.
    fn align_of(&self, kind: &DKind, size: u64) -> u64 {
        match kind {
            DKind::Bool | DKind::Int { .. } | DKind::Float => size.clamp(1, 8),
            DKind::Complex => (size / 2).clamp(1, 8),
            DKind::Array { elem, .. } => self.type_desc(*elem).map_or(8, |d| d.align),
            DKind::Struct(fields) => fields
                .iter()
                .map(|f| self.type_desc(f.ty).map_or(8, |d| d.align))
                .max()
                .unwrap_or(1),
            _ => 8,
        }
    }

    /// The type `name` built from its name, for an executable without DWARF; `None`
    /// for a name this module cannot lay out.
    pub fn model_type(&self, name: &str) -> Option<GoType> {
        let h = self.model(name.trim())?;
        let d = self.type_desc(h).ok()?;
        Some(GoType {
            name: d.name.clone(),
            kind: go_kind(&d),
            size: d.size,
            handle: h,
        })
    }

    fn type_cache(&self) -> &TypeCache {
        self.types_cache()
    }

    /// Registers a model type and returns its handle.
    fn add_model(&self, d: Desc) -> u64 {
        let Ok(mut m) = self.type_cache().models.lock() else {
            return SYNTH_MODEL;
        };
        if let Some(i) = m.iter().position(|x| *x == d) {
            return SYNTH_MODEL | i as u64;
        }
        m.push(d);
        SYNTH_MODEL | (m.len() - 1) as u64
    }

    fn model(&self, name: &str) -> Option<u64> {
        let basic = |kind: DKind, size: u64| Desc {
            name: name.to_string(),
            size,
            align: match kind {
                DKind::Complex => size / 2,
                _ => size.clamp(1, 8),
            },
            kind,
        };
        let d = match name {
            "bool" => basic(DKind::Bool, 1),
            "int" | "int64" | "time.Duration" => basic(DKind::Int { signed: true }, 8),
            "int8" => basic(DKind::Int { signed: true }, 1),
            "int16" => basic(DKind::Int { signed: true }, 2),
            "int32" | "rune" => basic(DKind::Int { signed: true }, 4),
            "uint" | "uint64" | "uintptr" => basic(DKind::Int { signed: false }, 8),
            "uint8" | "byte" => basic(DKind::Int { signed: false }, 1),
            "uint16" => basic(DKind::Int { signed: false }, 2),
            "uint32" => basic(DKind::Int { signed: false }, 4),
            "float32" => basic(DKind::Float, 4),
            "float64" => basic(DKind::Float, 8),
            "complex64" => basic(DKind::Complex, 8),
            "complex128" => basic(DKind::Complex, 16),
            "string" => basic(DKind::String, 16),
            "unsafe.Pointer" => basic(DKind::Pointer(None), 8),
            "error" => basic(DKind::Interface { empty: false }, 16),
            "any" | "interface {}" | "interface{}" => basic(DKind::Interface { empty: true }, 16),
            "time.Time" => self.model_struct(
                name,
                &[
                    ("wall", "uint64"),
                    ("ext", "int64"),
                    ("loc", "*time.Location"),
                ],
            )?,
            "time.Location" => self.model_struct(
                name,
                &[
                    ("name", "string"),
                    ("zone", "[]time.zone"),
                    ("tx", "[]time.zoneTrans"),
                    ("extend", "string"),
                    ("cacheStart", "int64"),
                    ("cacheEnd", "int64"),
                    ("cacheZone", "*time.zone"),
                ],
            )?,
            "time.zone" => self.model_struct(
                name,
                &[("name", "string"), ("offset", "int"), ("isDST", "bool")],
            )?,
            "time.zoneTrans" => self.model_struct(
                name,
                &[
                    ("when", "int64"),
                    ("index", "uint8"),
                    ("isstd", "bool"),
                    ("isutc", "bool"),
                ],
            )?,
            "errors.errorString" => self.model_struct(name, &[("s", "string")])?,
            "fmt.wrapError" => self.model_struct(name, &[("msg", "string"), ("err", "error")])?,
            _ => return self.model_composite(name),
        };
        Some(self.add_model(d))
    }

    /// `*T`, `[]T`, `[N]T`, `map[K]V`, `chan T` of types [`GoTarget::model`] knows.
    fn model_composite(&self, name: &str) -> Option<u64> {
        let d = if let Some(t) = name.strip_prefix('*') {
            // A pointer to a type named here refers to it without laying it out
            // (`*time.Location` inside `time.Location`'s own fields).
            let target = self.model(t)?;
            Desc {
                name: name.into(),
                size: 8,
                align: 8,
                kind: DKind::Pointer(Some(target)),
            }
        } else if let Some(t) = name.strip_prefix("[]") {
            Desc {
                name: name.into(),
                size: 24,
                align: 8,
                kind: DKind::Slice(self.model(t)?),
            }
        } else if let Some(t) = name.strip_prefix("chan ") {
            self.model(t)?;
            Desc {
                name: name.into(),
                size: 8,
                align: 8,
                kind: DKind::Chan,
            }
        } else if let Some(rest) = name.strip_prefix("map[") {
            let close = matching_bracket(rest)?;
            let key = self.model(&rest[..close])?;
            let value = self.model(&rest[close + 1..])?;
            Desc {
                name: name.into(),
                size: 8,
                align: 8,
                kind: DKind::Map { key, value },
            }
        } else if let Some(rest) = name.strip_prefix('[') {
            let (n, elem) = rest.split_once(']')?;
            let len: u64 = n.parse().ok()?;
            let e = self.model(elem)?;
            let ed = self.type_desc(e).ok()?;
            Desc {
                name: name.into(),
                size: ed.size.checked_mul(len)?,
                align: ed.align,
                kind: DKind::Array { elem: e, len },
            }
        } else {
            return None;
        };
        Some(self.add_model(d))
    }

    /// A struct of fields laid out as the Go compiler lays them out.
    fn model_struct(&self, name: &str, fields: &[(&str, &str)]) -> Option<Desc> {
        // The struct is registered before its fields, so a field may point to it.
        let mut out = Vec::new();
        let (mut off, mut align) = (0u64, 1u64);
        for (f, t) in fields {
            let h = if t.starts_with('*') {
                // Break cycles: the pointee is laid out when asked for.
                self.lazy_pointer(t)?
            } else {
                self.model(t)?
            };
            let d = self.type_desc(h).ok()?;
            off = off.div_ceil(d.align.max(1)) * d.align.max(1);
            out.push(DField {
                name: (*f).to_string(),
                offset: off,
                ty: h,
            });
            off += d.size;
            align = align.max(d.align);
        }
        Some(Desc {
            name: name.into(),
            size: off.div_ceil(align) * align,
            align,
            kind: DKind::Struct(out),
        })
    }

    /// A pointer type whose pointee is built now unless it is being built.
    fn lazy_pointer(&self, name: &str) -> Option<u64> {
        thread_local! {
            static BUILDING: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let target = &name[1..];
        let busy = BUILDING.with(|b| b.borrow().iter().any(|n| n == target));
        if busy {
            return Some(self.add_model(Desc {
                name: name.into(),
                size: 8,
                align: 8,
                kind: DKind::Pointer(None),
            }));
        }
        BUILDING.with(|b| b.borrow_mut().push(target.to_string()));
        let h = self.model(name);
        BUILDING.with(|b| b.borrow_mut().pop());
        h
    }

    /// The module's type data (see `gobin::rtype`).
    pub fn type_data(&self) -> Option<TypeData> {
        *self
            .type_cache()
            .type_data
            .get_or_init(|| self.binary().type_data())
    }

    /// The linked address of the runtime record of the type `name`: from the
    /// interface tables, else from DWARF's `DW_AT_go_runtime_type`.
    pub fn runtime_type_addr(&self, name: &str) -> Option<u64> {
        let td = self.type_data()?;
        let itabs = self
            .type_cache()
            .itabs
            .get_or_init(|| self.binary().itabs(&td));
        if let Some(i) = itabs.iter().find(|i| i.name == name) {
            return Some(i.ty);
        }
        let d = self.dwarf()?;
        let t = d.type_in_types_unit(name).ok()??;
        let off = d.runtime_type_offset(t).ok()??;
        Some(td.types + off)
    }

    /// A DWARF type by name, looked for where Go writes types; `None` without DWARF.
    pub fn dwarf_type_named(&self, name: &str) -> Option<u64> {
        let d = self.dwarf()?;
        d.type_in_types_unit(name).ok().flatten().map(|t| t.0)
    }

    /// The named struct and array types of package `pkg` (`main.`), with DWARF.
    pub fn package_types(&self, pkg: &str) -> Vec<(String, u64)> {
        let Some(d) = self.dwarf() else {
            return Vec::new();
        };
        d.types_with_prefix(pkg)
            .unwrap_or_default()
            .into_iter()
            .filter(|(n, _)| !n[pkg.len()..].contains(['.', '[', '*', ' ']))
            .map(|(n, t)| (n, t.0))
            .collect()
    }
}

/// The `GoKind` the checker sees for a type.
pub fn go_kind(d: &Desc) -> GoKind {
    match &d.kind {
        DKind::Bool => GoKind::Bool,
        DKind::Int { .. } if d.name == "uintptr" => GoKind::Uintptr,
        DKind::Int { signed } => GoKind::Int { signed: *signed },
        DKind::Float => GoKind::Float,
        DKind::Complex => GoKind::Complex,
        DKind::String => GoKind::String,
        DKind::Pointer(None) => GoKind::UnsafePointer,
        DKind::Pointer(Some(_)) => GoKind::Pointer,
        DKind::Slice(_) => GoKind::Slice,
        DKind::Array { len, .. } => GoKind::Array { len: *len },
        DKind::Struct(_) | DKind::Unknown => GoKind::Struct,
        DKind::Interface { .. } => GoKind::Interface,
        DKind::Map { .. } => GoKind::Map,
        DKind::Chan => GoKind::Chan,
        DKind::Func => GoKind::Func,
    }
}

/// The index of the `]` that closes a `map[` key.
fn matching_bracket(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' if depth == 0 => return Some(i),
            ']' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn other(message: String) -> TargetError {
    TargetError::Other {
        message,
        help: None,
    }
}
