//! Kinds of offsets and addresses, each its own type so that they cannot be mixed: a
//! virtual address in the executable's own address space (what pclntab, DWARF and
//! symbols speak), and an offset in the file (what a uprobe is attached at).

use std::fmt;

/// A virtual address as linked into the executable (for PIE, relative to a load base
/// of zero). A program counter is one of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtAddr(pub u64);

/// An offset from the start of the executable file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileOffset(pub u64);

impl VirtAddr {
    pub fn offset(self, by: u64) -> VirtAddr {
        VirtAddr(self.0.wrapping_add(by))
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for FileOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
