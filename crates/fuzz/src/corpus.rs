//! The committed corpus: `corpus/<folder>/` holds a target's seed files (`.z` files
//! are an 8-byte little-endian length and a zlib stream, inflated by gobin's own
//! inflater; other files are read as they are), and `corpus/<folder>/crashes/` the
//! inputs that once broke a target, as edits of a seed (`<target>-*.edits`), each
//! replayed by every run of the tests.

use std::path::{Path, PathBuf};

use crate::mutate::Seed;
use crate::targets::Target;

/// The corpus folder of this crate.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// The seeds of `target`: each file of its folder, made into seeds by the target,
/// with the spots it aims at. Files are taken in name order, so seed numbers are the
/// same on every machine.
pub fn seeds(target: &Target) -> Vec<Seed> {
    let dir = root().join(target.corpus);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.extension().is_some_and(|x| x == "go" || x == "md"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = read(&path);
        for (i, bytes) in (target.seeds)(&bytes).into_iter().enumerate() {
            let spots = (target.spots)(&bytes);
            out.push(Seed {
                name: format!("{name}#{i}"),
                bytes,
                spots,
            });
        }
    }
    assert!(
        !out.is_empty(),
        "target {} has no seeds in {}",
        target.name,
        dir.display()
    );
    out
}

/// The saved findings of `target`: (path, text of the edits).
pub fn crashes(target: &Target) -> Vec<(PathBuf, String)> {
    let dir = root().join(target.corpus).join("crashes");
    let prefix = format!("{}-", target.name);
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "edits")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect();
    out.sort();
    out
}

/// A corpus file's bytes, inflated if it is a `.z` file.
pub fn read(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_none_or(|x| x != "z") {
        return raw;
    }
    let size = raw
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or_else(|| panic!("{}: no length", path.display()));
    gobin::dwarf::inflate::whole(&raw[8..], size as usize)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
