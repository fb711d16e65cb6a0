//! Read-only maps of executables, so the pure crates parse a Go binary's bytes in
//! place instead of reading hundreds of megabytes into memory.

use std::fs::File;
use std::path::Path;

pub use memmap2::Mmap;

use crate::error::{Error, Result};

/// Maps `path` read-only and privately. The caller must not expect the bytes to
/// stay the same if another process rewrites the file meanwhile (a rebuild replaces
/// the file by rename, which leaves this mapping intact).
pub fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|source| Error::File {
        path: path.into(),
        source,
    })?;
    // SAFETY: the mapping is read-only and private; memmap2 keeps it valid for the
    // life of the Mmap. A concurrent in-place truncation could fault, which is why
    // toolchains replace binaries by rename.
    unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|source| Error::File {
        path: path.into(),
        source,
    })
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
}
