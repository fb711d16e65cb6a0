//! What a compiled script is, before the kernel sees it: the maps it needs and its
//! programs, whose `LD_IMM64` instructions name maps by [`MapId`] until `sys` creates
//! the maps and [`ProgramSpec::relocated`] writes their file descriptors in.

use crate::insn::{Insn, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE};

/// The kind of a map (`enum bpf_map_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// Linux 3.19.
    Hash,
    /// Linux 3.19.
    Array,
    /// One value per possible CPU. Linux 4.6.
    PerCpuHash,
    /// Linux 4.6.
    PerCpuArray,
    /// Programs a `tail_call` jumps to: `u32` keys, program file descriptors as
    /// `u32` values written from user space. Linux 4.2.
    ProgArray,
    /// Linux 4.4.
    PerfEventArray,
    /// Linux 4.6.
    StackTrace,
    /// Linux 4.10.
    LruHash,
    /// Linux 5.8. `max_entries` is the size in bytes: a power of two, a multiple of
    /// the page size; key and value sizes are 0.
    RingBuf,
}

impl MapKind {
    /// The kernel's number for the kind.
    pub fn type_id(self) -> u32 {
        match self {
            MapKind::Hash => 1,
            MapKind::Array => 2,
            MapKind::ProgArray => 3,
            MapKind::PerfEventArray => 4,
            MapKind::PerCpuHash => 5,
            MapKind::PerCpuArray => 6,
            MapKind::StackTrace => 7,
            MapKind::LruHash => 9,
            MapKind::RingBuf => 27,
        }
    }

    /// Whether a lookup returns one value per possible CPU.
    pub fn is_per_cpu(self) -> bool {
        matches!(self, MapKind::PerCpuHash | MapKind::PerCpuArray)
    }
}

/// `map_flags` of a map: no preallocation for hash maps (entries are allocated on
/// update; lookups from the program are unaffected).
pub const MAP_F_NO_PREALLOC: u32 = 1 << 0;

/// `map_flags` of an array map that user space maps into its memory
/// (`BPF_F_MMAPABLE`, Linux 5.5): it reads and writes the values without a system
/// call, as the program does.
pub const MAP_F_MMAPABLE: u32 = 1 << 10;

/// A map the program needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Shown by `bpftool map`; the kernel keeps 15 bytes of `[A-Za-z0-9_.]`.
    pub name: String,
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

/// A map as the program refers to it: an index into the script's map list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapId(pub u32);

/// How an `LD_IMM64` refers to a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapRefKind {
    /// The register gets the map (for helpers that take a map).
    Fd,
    /// The register gets a pointer to byte `offset` of the value of an array map's
    /// only entry (globals without a lookup).
    Value { offset: u32 },
}

/// Instruction `insn` (the first slot of an `LD_IMM64`) refers to `map`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapReloc {
    pub insn: usize,
    pub map: MapId,
    pub kind: MapRefKind,
}

/// A program ready to be loaded once its maps exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    /// Shown by `bpftool prog`; the kernel keeps 15 bytes of `[A-Za-z0-9_.]`.
    pub name: String,
    pub insns: Vec<Insn>,
    pub relocs: Vec<MapReloc>,
    /// `GPL`: the helpers a tracer calls are GPL-only.
    pub license: String,
    /// Where each BPF function other than the main one starts; the loader describes
    /// them to the kernel (`func_info`), which a function passed to a helper needs.
    pub functions: Vec<usize>,
}

/// Why relocation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelocError {
    #[error("relocation at instruction {insn} does not point at an LD_IMM64")]
    NotLdImm64 { insn: usize },
    #[error("instruction {insn} refers to map {map:?}, which was not created")]
    UnknownMap { insn: usize, map: MapId },
}

impl ProgramSpec {
    /// A program named `name` with the GPL license.
    pub fn new(name: impl Into<String>, program: crate::asm::Program) -> ProgramSpec {
        ProgramSpec {
            name: name.into(),
            insns: program.insns,
            relocs: program.relocs,
            license: "GPL".into(),
            functions: program.functions,
        }
    }

    /// The program as text for `-d bpf`, map references by name.
    pub fn disassemble(&self, maps: &[MapSpec]) -> String {
        crate::disasm::disassemble_with(&self.insns, &self.relocs, |id| {
            maps.get(id.0 as usize).map(|m| m.name.clone())
        })
    }

    /// The instructions with each map reference replaced by the map's file
    /// descriptor, which `fd_of` gives.
    pub fn relocated(&self, fd_of: impl Fn(MapId) -> Option<i32>) -> Result<Vec<Insn>, RelocError> {
        let mut insns = self.insns.clone();
        for r in &self.relocs {
            let fd = fd_of(r.map).ok_or(RelocError::UnknownMap {
                insn: r.insn,
                map: r.map,
            })?;
            let ok = insns.get(r.insn).is_some_and(|i| i.is_ld_imm64()) && r.insn + 1 < insns.len();
            if !ok {
                return Err(RelocError::NotLdImm64 { insn: r.insn });
            }
            let (pseudo, hi) = match r.kind {
                MapRefKind::Fd => (PSEUDO_MAP_FD, 0),
                MapRefKind::Value { offset } => (PSEUDO_MAP_VALUE, offset as i32),
            };
            let first = &mut insns[r.insn];
            first.regs = (first.regs & 0x0f) | (pseudo << 4);
            first.imm = fd;
            insns[r.insn + 1].imm = hi;
        }
        Ok(insns)
    }
}

/// A compiled script: its maps (indexed by [`MapId`]) and programs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectSpec {
    pub maps: Vec<MapSpec>,
    pub programs: Vec<ProgramSpec>,
}

impl ObjectSpec {
    /// Adds a map and returns the id programs use for it.
    pub fn add_map(&mut self, spec: MapSpec) -> MapId {
        self.maps.push(spec);
        MapId(self.maps.len() as u32 - 1)
    }

    pub fn map(&self, id: MapId) -> Option<&MapSpec> {
        self.maps.get(id.0 as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::Asm;
    use crate::insn::Reg;

    #[test]
    fn relocation_writes_fds_and_offsets_into_ld_imm64() {
        let mut a = Asm::new();
        a.ld_map(Reg::R1, MapId(0));
        a.ld_map_value(Reg::R2, MapId(1), 16);
        a.emit(crate::insn::Insn::exit());
        let spec = ProgramSpec::new("p", a.finish().unwrap());
        let insns = spec.relocated(|m| Some(100 + m.0 as i32)).unwrap();
        assert_eq!(
            (insns[0].src_num(), insns[0].imm, insns[1].imm),
            (PSEUDO_MAP_FD, 100, 0)
        );
        assert_eq!(
            (insns[2].src_num(), insns[2].imm, insns[3].imm),
            (PSEUDO_MAP_VALUE, 101, 16)
        );
        assert_eq!(
            spec.relocated(|_| None),
            Err(RelocError::UnknownMap {
                insn: 0,
                map: MapId(0)
            })
        );
    }

    #[test]
    fn relocation_refuses_a_reference_to_another_instruction() {
        let spec = ProgramSpec {
            name: "p".into(),
            insns: vec![crate::insn::Insn::exit()],
            relocs: vec![MapReloc {
                insn: 0,
                map: MapId(0),
                kind: MapRefKind::Fd,
            }],
            license: "GPL".into(),
            functions: Vec::new(),
        };
        assert_eq!(
            spec.relocated(|_| Some(3)),
            Err(RelocError::NotLdImm64 { insn: 0 })
        );
    }
}
