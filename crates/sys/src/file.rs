//! Read-only maps of executables, so the pure crates parse a Go binary's bytes in
//! place instead of reading hundreds of megabytes into memory.

use std::fs::File;
use std::path::Path;

pub use memmap2::Mmap;

use crate::error::{Error, Result};

/// Maps `path` read-only (shared, so its pages are the page cache's). The caller must not expect the bytes to
/// stay the same if another process rewrites the file meanwhile (a rebuild replaces
/// the file by rename, which leaves this mapping intact).
pub fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|source| Error::File {
        path: path.into(),
        source,
    })?;
    map_open(&file, path)
}

/// Maps an opened `file` as [`map_file`] does; `path` names it in errors. For a file
/// reached through a link that may not be a path any more (`/proc/PID/exe` of a
/// deleted executable).
pub fn map_open(file: &File, path: &Path) -> Result<Mmap> {
    // SAFETY: the mapping is read-only; memmap2 keeps it valid for the
    // life of the Mmap. A concurrent in-place truncation could fault, which is why
    // toolchains replace binaries by rename.
    unsafe { memmap2::MmapOptions::new().map(file) }.map_err(|source| Error::File {
        path: path.into(),
        source,
    })
}

/// Lets the kernel take the pages under `part`, a piece of `map`, out of this
/// process's memory (`madvise(MADV_DONTNEED)`): they stay in the page cache, and a
/// later read faults them back in from the file. Worth it after one pass over a large
/// piece that is rarely read again, such as a compressed DWARF section, since every
/// page a mapping has touched counts in the process's resident size. A `part` outside
/// `map` is ignored.
pub fn release_pages(map: &Mmap, part: &[u8]) {
    let base = map.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    if part.is_empty() || at < base || at + part.len() > base + map.len() {
        return;
    }
    // The mapping starts on a page, so page-aligned offsets in it are page-aligned
    // addresses; the range grows to whole pages (those of neighbours come back on
    // their next read).
    let page = crate::cpu::page_size();
    let start = (at - base) & !(page - 1);
    let len = at - base + part.len() - start;
    // SAFETY: the mapping is read-only, so it holds no changes of ours that dropping
    // its pages could lose: every byte reads the same afterwards, from the file.
    // Slices borrowed from the map stay valid (the range stays mapped).
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_bytes_of_a_file() {
        let exe = std::env::current_exe().unwrap();
        let m = map_file(&exe).unwrap();
        assert_eq!(&m[..4], b"\x7fELF");
        assert_eq!(m.len() as u64, std::fs::metadata(&exe).unwrap().len());
        let e = map_file(Path::new("/nonexistent/gotap")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/gotap: "), "{e}");
    }

    fn resident_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn released_pages_leave_memory_and_read_the_same() {
        let exe = std::env::current_exe().unwrap();
        let m = map_file(&exe).unwrap();
        let sum = |b: &[u8]| b.iter().map(|&x| u64::from(x)).sum::<u64>();
        let before = resident_kb();
        let expect = sum(&m);
        let touched = resident_kb();
        release_pages(&m, &m[..]);
        let after = resident_kb();
        assert!(
            touched - after > (m.len() as u64 / 1024) / 2,
            "{before} kB, {touched} kB touched, {after} kB released ({} kB mapped)",
            m.len() / 1024
        );
        assert_eq!(sum(&m), expect);
        // Outside the map, nothing happens.
        release_pages(&m, &[1, 2, 3]);
    }
}
