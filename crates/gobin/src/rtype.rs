//! The Go runtime's own type data in an executable: the `runtime._type` records
//! (`internal/abi.Type`) that interfaces point to, their names, and the
//! interface tables (`itab`s) the linker laid out. An interface value holds a
//! pointer to its dynamic type's record; the record's name is an offset (`Str`, a
//! `nameOff`) into the module's type data, which starts at `moduledata.types`.
//! None of this needs DWARF or the symbol table, so a tracer can name the dynamic
//! type of an interface in a stripped executable too.
//!
//! The records, as every release from 1.19 to 1.27 lays them out (amd64):
//! `Size_` at 0, `PtrBytes` at 8, `Hash` at 16, `TFlag` at 20, `Kind_` at 23, `Str`
//! (an `i32`) at 40; a name is a flags byte, a varint length and the text; an `itab`
//! is the interface type at 0 and the dynamic type at 8.
//!
//! `moduledata` is found through the symbol `runtime.firstmoduledata`, or, when the
//! symbol table is gone, as the one word of `.go.module` (Go 1.27) or `.noptrdata`
//! that points at the start of `.gopclntab` (its first field is the pclntab header). Its fields move between
//! releases ([`ModuleLayout`]); a position-independent executable holds its
//! pointers as relocations, not in the file, so there only the symbol table finds
//! the type data.

use crate::{GoBinary, VirtAddr};

/// Offsets of `runtime.rtype`'s fields that are read.
pub const RTYPE_SIZE: u64 = 0;
pub const RTYPE_PTRBYTES: u64 = 8;
pub const RTYPE_TFLAG: u64 = 20;
pub const RTYPE_KIND: u64 = 23;
pub const RTYPE_STR: u64 = 40;
/// Bytes of a `runtime._type` record.
pub const RTYPE_LEN: u64 = 48;
/// `reflect.Kind` of a string, in `Kind_ & KIND_MASK`.
pub const KIND_STRING: u8 = 24;
pub const KIND_MASK: u8 = 0x1f;
/// `TFlagExtraStar`: the name has a `*` that belongs to the pointer type.
pub const TFLAG_EXTRA_STAR: u8 = 1 << 1;

/// Where `moduledata` keeps the fields read here, in one release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleLayout {
    pub types: u64,
    pub etypes: u64,
    /// `itablinks` (a slice of `*itab`), up to Go 1.26.
    pub itablinks: Option<u64>,
    /// `itaboffset` and `itabsize`: the itabs laid out in the type data, Go 1.27 on.
    pub itab_offset: Option<u64>,
}

impl ModuleLayout {
    /// The layout of Go `1.minor` (amd64), read from the DWARF of programs built by
    /// 1.19, 1.21, 1.25 and 1.27 (`tests/rtype.rs` checks it); 1.20's fields are
    /// 1.21's (coverage counters came in 1.20), and 1.26 is taken to be 1.25's.
    pub fn of(minor: u32) -> Option<ModuleLayout> {
        Some(match minor {
            19 => ModuleLayout {
                types: 280,
                etypes: 288,
                itablinks: Some(360),
                itab_offset: None,
            },
            20..=26 => ModuleLayout {
                types: 296,
                etypes: 304,
                itablinks: Some(376),
                itab_offset: None,
            },
            27 => ModuleLayout {
                types: 296,
                etypes: 312,
                itablinks: None,
                itab_offset: Some(320),
            },
            _ => return None,
        })
    }
}

/// The module's type data: the linked addresses of its start and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeData {
    pub types: u64,
    pub etypes: u64,
    moduledata: Option<u64>,
    layout: Option<ModuleLayout>,
}

/// One interface table: a concrete type that implements an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Itab {
    /// The interface's name (`error`, `io.Reader`).
    pub interface: String,
    /// The linked address of the dynamic type's record.
    pub ty: u64,
    /// Its name (`*errors.errorString`).
    pub name: String,
}

impl<'data> GoBinary<'data> {
    /// The module's type data, if it can be found (see the module documentation).
    pub fn type_data(&self) -> Option<TypeData> {
        let v = self.go_version();
        let layout = if v.major == 1 {
            ModuleLayout::of(v.minor)
        } else {
            None
        };
        let elf = self.elf();
        let moduledata = elf
            .symbol_address("runtime.firstmoduledata")
            .or_else(|| self.find_moduledata());
        if let (Some(types), Some(etypes)) = (
            elf.symbol_address("runtime.types"),
            elf.symbol_address("runtime.etypes"),
        ) {
            return Some(TypeData {
                types,
                etypes,
                moduledata,
                layout,
            });
        }
        let (md, l) = (moduledata?, layout?);
        let types = self.word(md + l.types)?;
        let etypes = self.word(md + l.etypes)?;
        (types != 0 && etypes > types).then_some(TypeData {
            types,
            etypes,
            moduledata: Some(md),
            layout: Some(l),
        })
    }

    /// The `moduledata` of a binary without symbols: the word that holds the
    /// address of `.gopclntab`, in `.go.module` (Go 1.27 gives it a section) or
    /// `.noptrdata`.
    fn find_moduledata(&self) -> Option<u64> {
        let pcln = self.elf().section(".gopclntab")?.addr;
        let want = pcln.to_le_bytes();
        [".go.module", ".noptrdata"].iter().find_map(|name| {
            let data = self.elf().section(name)?;
            let bytes = self.elf().loaded_bytes(VirtAddr(data.addr), data.size)?;
            (0..bytes.len().saturating_sub(7))
                .step_by(8)
                .find(|&i| bytes[i..i + 8] == want)
                .map(|i| data.addr + i as u64)
        })
    }

    fn word(&self, addr: u64) -> Option<u64> {
        let b = self.elf().loaded_bytes(VirtAddr(addr), 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// The name of the runtime type record at linked address `ty`, as the runtime
    /// prints it (`*main.T`, `map[string]int`).
    pub fn runtime_type_name(&self, td: &TypeData, ty: u64) -> Option<String> {
        let rec = self.elf().loaded_bytes(VirtAddr(ty), RTYPE_LEN)?;
        let off = i32::from_le_bytes(rec[RTYPE_STR as usize..][..4].try_into().ok()?);
        let at = td.types.checked_add_signed(i64::from(off))?;
        let head = self.elf().loaded_bytes(VirtAddr(at), 1)?;
        let _flags = head[0];
        let (len, n) = varint(self.elf().loaded_bytes(VirtAddr(at + 1), 4)?)?;
        let text = self
            .elf()
            .loaded_bytes(VirtAddr(at + 1 + n as u64), len as u64)?;
        let mut name = String::from_utf8_lossy(text).into_owned();
        if rec[RTYPE_TFLAG as usize] & TFLAG_EXTRA_STAR != 0 && name.starts_with('*') {
            name.remove(0);
        }
        Some(name)
    }

    /// The interface tables the linker laid out, with their interfaces' and
    /// dynamic types' names.
    pub fn itabs(&self, td: &TypeData) -> Vec<Itab> {
        let mut out = Vec::new();
        let (Some(md), Some(l)) = (td.moduledata, td.layout) else {
            return out;
        };
        let mut push = |itab: u64| -> Option<u64> {
            let inter = self.word(itab)?;
            let ty = self.word(itab + 8)?;
            let interface = self.runtime_type_name(td, inter)?;
            let name = self.runtime_type_name(td, ty)?;
            // An itab holds one method pointer at least; an interface type's
            // method count is the length of its `Methods` slice (at 64).
            let methods = self.word(inter + 64).unwrap_or(1).clamp(1, 4096);
            out.push(Itab {
                interface,
                ty,
                name,
            });
            Some(24 + 8 * methods)
        };
        if let Some(links) = l.itablinks {
            let (Some(ptr), Some(n)) = (self.word(md + links), self.word(md + links + 8)) else {
                return out;
            };
            for i in 0..n.min(1 << 16) {
                if let Some(itab) = self.word(ptr + 8 * i) {
                    push(itab);
                }
            }
        } else if let Some(o) = l.itab_offset {
            let (Some(off), Some(size)) = (self.word(md + o), self.word(md + o + 8)) else {
                return out;
            };
            let (mut p, end) = (td.types + off, td.types + off + size);
            while p < end {
                match push(p) {
                    Some(n) => p += n,
                    None => break,
                }
            }
        }
        out
    }
}

/// A varint (7 bits a byte, low first) and how many bytes it took.
fn varint(b: &[u8]) -> Option<(u32, usize)> {
    let mut v = 0u32;
    for (i, &c) in b.iter().enumerate().take(4) {
        v |= u32::from(c & 0x7f) << (7 * i);
        if c & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_read_as_names_store_them() {
        assert_eq!(varint(&[5, 0xff]), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x01]), Some((129, 2)));
        assert_eq!(varint(&[0x80, 0x80, 0x80, 0x80]), None);
    }

    #[test]
    fn every_release_from_1_19_to_1_27_has_a_layout() {
        for minor in 19..=27 {
            assert!(ModuleLayout::of(minor).is_some(), "1.{minor}");
        }
        assert!(ModuleLayout::of(18).is_none());
    }
}
