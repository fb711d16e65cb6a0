//! An array map mapped into our memory (`BPF_F_MMAPABLE`): its values are read and
//! written in place, as the programs that share it do, with no system call per
//! element. For tables the program updates with atomic instructions (a slot claimed
//! by compare-and-exchange), user space takes part in the same protocol through
//! [`Shared::compare_exchange`].

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use bpf::MapKind;

use crate::cpu::page_size;
use crate::error::{Error, Result};
use crate::map::Map;
use crate::syscall::{Call, syscall};

/// The values of an array map, as `u64` words: value `i`'s word `w` is word
/// `i * words_per_value + w`.
#[derive(Debug)]
pub struct Shared {
    addr: usize,
    len: usize,
    words: usize,
    per_value: usize,
}

// SAFETY: the mapping is plain shared memory that lives as long as `Shared`; every
// access goes through `AtomicU64`, so threads may share it.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// Maps `map`, an array map created with [`bpf::MAP_F_MMAPABLE`] whose value
    /// size is a multiple of 8.
    pub fn of(map: &Map) -> Result<Shared> {
        let spec = map.spec();
        if spec.kind != MapKind::Array
            || spec.flags & bpf::MAP_F_MMAPABLE == 0
            || !spec.value_size.is_multiple_of(8)
        {
            return Err(Error::Invalid(format!(
                "map {} is not a mappable array of 8-byte words",
                spec.name
            )));
        }
        let per_value = spec.value_size as usize / 8;
        let words = per_value * spec.max_entries as usize;
        let page = page_size();
        let len = (words * 8).div_ceil(page).max(1) * page;
        let addr = syscall(Call::Mmap {
            fd: map.as_fd(),
            len,
            prot: libc::PROT_READ | libc::PROT_WRITE,
            offset: 0,
        })
        .map_err(|e| Error::syscall("mmap(array)", e))? as usize;
        Ok(Shared {
            addr,
            len,
            words,
            per_value,
        })
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.words / self.per_value.max(1)
    }

    /// Whether the map has no values.
    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    fn word(&self, value: usize, w: usize) -> Option<&AtomicU64> {
        let i = value.checked_mul(self.per_value)?.checked_add(w)?;
        if w >= self.per_value || i >= self.words {
            return None;
        }
        // SAFETY: `i` is within the mapping (checked above), which is page-aligned
        // and so 8-byte aligned at every word, and lives as long as `self`; the
        // kernel's programs write it concurrently, so it is only touched atomically.
        Some(unsafe { &*((self.addr + i * 8) as *const AtomicU64) })
    }

    /// Word `w` of value `value` (0 past the end).
    pub fn load(&self, value: usize, w: usize) -> u64 {
        self.word(value, w).map_or(0, |a| a.load(Ordering::Acquire))
    }

    /// Stores `new` in word `w` of value `value` if it holds `current`; whether it
    /// did.
    pub fn compare_exchange(&self, value: usize, w: usize, current: u64, new: u64) -> bool {
        self.word(value, w).is_some_and(|a| {
            a.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = syscall(Call::Munmap {
            addr: self.addr,
            len: self.len,
        });
    }
}
