//! The ELF container of a Go executable: its sections (decompressed on request, since
//! the Go linker zlib-compresses DWARF), its symbols when they survived stripping, and
//! its PT_LOAD segments, which say both where bytes of a virtual address sit in the file
//! (what a uprobe is attached at) and which bytes are machine code.

use std::borrow::Cow;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, SectionKind};

use crate::error::{Error, Result};
use crate::{FileOffset, VirtAddr};

/// One PT_LOAD segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub executable: bool,
    pub writable: bool,
}

/// An allocated section: its name, address and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionInfo<'data> {
    pub name: &'data str,
    pub addr: u64,
    pub size: u64,
}

/// A parsed ELF file borrowing the caller's bytes.
pub struct Elf<'data> {
    data: &'data [u8],
    file: ElfFile64<'data, Endianness>,
    segments: Vec<Segment>,
    pie: bool,
}

impl<'data> Elf<'data> {
    /// Parses the ELF header, section headers and program headers.
    pub fn parse(data: &'data [u8]) -> Result<Elf<'data>> {
        if !data.starts_with(b"\x7fELF") {
            return Err(Error::NotElf);
        }
        match data.get(4) {
            Some(&elf::ELFCLASS64) => {}
            Some(_) => return Err(Error::Unsupported { what: "32-bit ELF" }),
            None => {
                return Err(Error::Truncated {
                    what: "ELF identification",
                });
            }
        }
        let file = ElfFile64::<Endianness>::parse(data)?;
        let endian = file.endian();
        let header = file.elf_header();
        let pie = header.e_type(endian) == elf::ET_DYN;
        let mut segments = Vec::new();
        for ph in header.program_headers(endian, data)? {
            if ph.p_type(endian) != elf::PT_LOAD {
                continue;
            }
            let flags = ph.p_flags(endian);
            segments.push(Segment {
                vaddr: ph.p_vaddr(endian),
                memsz: ph.p_memsz(endian),
                offset: ph.p_offset(endian),
                filesz: ph.p_filesz(endian),
                executable: flags & elf::PF_X != 0,
                writable: flags & elf::PF_W != 0,
            });
        }
        Ok(Elf {
            data,
            file,
            segments,
            pie,
        })
    }

    /// The whole file.
    pub fn data(&self) -> &'data [u8] {
        self.data
    }

    /// True for ET_DYN executables (`-buildmode=pie`), whose addresses move by a load
    /// base at run time.
    pub fn is_pie(&self) -> bool {
        self.pie
    }

    /// The ELF machine (`object::elf::EM_X86_64`, ...).
    pub fn machine(&self) -> u16 {
        self.file.elf_header().e_machine(self.file.endian())
    }

    /// True if the file is little-endian.
    pub fn is_little_endian(&self) -> bool {
        self.file.endian() == Endianness::Little
    }

    /// The PT_LOAD segments in file order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The file offset that holds the byte at `addr`, found through the PT_LOAD
    /// segments; `None` for an address no segment maps from the file (such as .bss).
    pub fn file_offset(&self, addr: VirtAddr) -> Option<FileOffset> {
        self.segments.iter().find_map(|s| {
            let rel = addr.0.checked_sub(s.vaddr)?;
            (rel < s.filesz).then(|| FileOffset(s.offset.wrapping_add(rel)))
        })
    }

    /// `len` bytes of the file image at `addr`, if one segment maps all of them from
    /// the file.
    pub fn bytes_at(&self, addr: VirtAddr, len: u64) -> Option<&'data [u8]> {
        self.segment_bytes(addr, len, false)
    }

    /// Like [`Elf::bytes_at`], but only from an executable segment.
    pub fn text_bytes(&self, addr: VirtAddr, len: u64) -> Option<&'data [u8]> {
        self.segment_bytes(addr, len, true)
    }

    /// The bytes from `addr` to the end of the file image of the segment holding it.
    pub fn bytes_from(&self, addr: VirtAddr) -> Option<&'data [u8]> {
        let s = self
            .segments
            .iter()
            .find(|s| addr.0 >= s.vaddr && addr.0 - s.vaddr < s.filesz)?;
        let start = s.offset.checked_add(addr.0 - s.vaddr)?;
        let end = s.offset.checked_add(s.filesz)?;
        self.data
            .get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    fn segment_bytes(&self, addr: VirtAddr, len: u64, exec: bool) -> Option<&'data [u8]> {
        let s = self.segments.iter().find(|s| {
            (!exec || s.executable) && addr.0 >= s.vaddr && addr.0 - s.vaddr < s.filesz
        })?;
        let rel = addr.0 - s.vaddr;
        if rel.checked_add(len)? > s.filesz {
            return None;
        }
        let start = usize::try_from(s.offset.checked_add(rel)?).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }

    /// The allocated section called `name` (address and size).
    pub fn section(&self, name: &str) -> Option<SectionInfo<'data>> {
        let s = self.file.section_by_name(name)?;
        Some(SectionInfo {
            name: s.name().ok()?,
            addr: s.address(),
            size: s.size(),
        })
    }

    /// Every section with an address, in header order.
    pub fn sections(&self) -> Vec<SectionInfo<'data>> {
        self.file
            .sections()
            .filter(|s| s.address() != 0)
            .filter_map(|s| {
                Some(SectionInfo {
                    name: s.name().ok()?,
                    addr: s.address(),
                    size: s.size(),
                })
            })
            .collect()
    }

    /// The raw bytes of a section as stored in the file (`None` for NOBITS).
    pub fn section_raw(&self, name: &str) -> Option<&'data [u8]> {
        let s = self.file.section_by_name(name)?;
        if s.kind() == SectionKind::UninitializedData {
            return None;
        }
        s.data().ok()
    }

    /// The contents of a section, decompressed if it is SHF_COMPRESSED or a `.zdebug_`
    /// section (asking for `.debug_info` finds `.zdebug_info` too). Borrowed when the
    /// section is stored plainly.
    pub fn section_data(&self, name: &str) -> Option<Cow<'data, [u8]>> {
        self.stored_section(name)?.uncompressed_data().ok()
    }

    /// The section `name`, or its `.zdebug_` form, if it has bytes in the file.
    fn stored_section(
        &self,
        name: &str,
    ) -> Option<object::read::elf::ElfSection64<'data, '_, Endianness>> {
        let s = self.file.section_by_name(name).or_else(|| {
            let z = name.strip_prefix(".debug_")?;
            self.file.section_by_name(&format!(".zdebug_{z}"))
        })?;
        (s.kind() != SectionKind::UninitializedData).then_some(s)
    }

    /// A DWARF section as stored: plain bytes, or a zlib stream with its inflated size
    /// (SHF_COMPRESSED or `.zdebug_`), left for the reader to inflate when it is read.
    /// Another compression (zstd) is inflated here, whole.
    pub fn dwarf_section(&self, name: &str) -> Option<crate::dwarf::Section<'data>> {
        use crate::dwarf::Section;
        let s = self.stored_section(name)?;
        let c = match s.compressed_data() {
            Ok(c) => c,
            // A section that is there but whose header does not read is corrupt,
            // not absent.
            Err(e) => {
                return Some(Section::Damaged {
                    reason: format!("has a corrupt compression header ({e})"),
                });
            }
        };
        match c.format {
            object::CompressionFormat::None => Some(Section::Bytes(Cow::Borrowed(c.data))),
            object::CompressionFormat::Zlib => Some(match usize::try_from(c.uncompressed_size) {
                Ok(size) => Section::Zlib {
                    stream: c.data,
                    size,
                },
                Err(_) => Section::Damaged {
                    reason: format!(
                        "has a compression header that states {} bytes",
                        c.uncompressed_size
                    ),
                },
            }),
            _ => Some(match s.uncompressed_data() {
                Ok(b) => Section::Bytes(b),
                Err(e) => Section::Damaged {
                    reason: format!("does not decompress ({e})"),
                },
            }),
        }
    }

    /// The address of the symbol called `name`, if the symbol table has it.
    pub fn symbol_address(&self, name: &str) -> Option<u64> {
        self.symbol(name).map(|(addr, _)| addr)
    }

    /// The address and size of the symbol called `name`, if the symbol table has it.
    pub fn symbol(&self, name: &str) -> Option<(u64, u64)> {
        self.file
            .symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| (s.address(), s.size()))
    }

    /// `len` bytes of the file image of any loaded segment at `addr` (data too).
    pub fn loaded_bytes(&self, addr: VirtAddr, len: u64) -> Option<&'data [u8]> {
        self.segment_bytes(addr, len, false)
    }

    /// True if the file still has a symbol table (it has not been built with `-s`).
    pub fn has_symbols(&self) -> bool {
        self.file.symbols().next().is_some()
    }
}
