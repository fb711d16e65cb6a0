//! Go executables, read through `/proc/PID/exe` (so a process in another mount
//! namespace is read from its own root): whether it is Go at all (its build info), the
//! facts its resource needs (main module, Go version), its key (device, inode and Go
//! build id: one probe set per key), and where the probes of a function pattern go.

use std::path::Path;

use thiserror::Error;

use crate::procfs::FileId;

/// One distinct executable: the file, and its Go build id so that a file replaced in
/// place (a new inode would already differ; a reused inode would not) is a new one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BinaryKey {
    pub file: FileId,
    pub build_id: String,
}

/// What the agent keeps of a Go executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoFacts {
    pub key: BinaryKey,
    /// The main module's path (`github.com/x/y`), or the main package's.
    pub main_module: Option<String>,
    /// `go1.25.5`.
    pub go_version: String,
}

/// A probe site: a function and the file offset of its probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub function: String,
    pub offset: u64,
}

#[derive(Debug, Error)]
pub enum BinaryError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sys::Error,
    },
    #[error("{path}: {source}")]
    Go {
        path: String,
        #[source]
        source: gobin::Error,
    },
}

/// Reads `path` (a `/proc/PID/exe`); `Ok(None)` when it is not a Go executable.
pub fn inspect(path: &Path, file: FileId) -> Result<Option<GoFacts>, BinaryError> {
    let map = sys::map_file(path).map_err(|source| BinaryError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let Ok(elf) = gobin::elf::Elf::parse(&map) else {
        return Ok(None);
    };
    let Ok(info) = gobin::buildinfo::read(&elf) else {
        return Ok(None);
    };
    let facts = GoFacts {
        key: BinaryKey {
            file,
            build_id: go_build_id(&elf).unwrap_or_default(),
        },
        main_module: info.main_module.or(info.path).map(str::to_string),
        go_version: info.go_version_string.to_string(),
    };
    // Only the headers were read; give the pages back.
    sys::release_pages(&map, &map);
    Ok(Some(facts))
}

/// The Go build id from the `.note.go.buildid` note: namesz, descsz, type, the
/// name `Go\0\0`, then the id.
fn go_build_id(elf: &gobin::elf::Elf<'_>) -> Option<String> {
    let note = elf.section_raw(".note.go.buildid")?;
    let word =
        |at: usize| Some(u32::from_le_bytes(note.get(at..at + 4)?.try_into().ok()?) as usize);
    let (namesz, descsz) = (word(0)?, word(4)?);
    let desc_at = 12 + namesz.div_ceil(4) * 4;
    let desc = note.get(desc_at..desc_at + descsz)?;
    Some(String::from_utf8_lossy(desc).into_owned())
}

/// Every function of `path` that matches one of `patterns`, once, with its probe
/// site after the stack-check prologue (as `gotap funccount` places them); functions
/// without a safe site are skipped.
pub fn sites(path: &Path, patterns: &[String]) -> Result<Vec<Site>, BinaryError> {
    let err = |source| BinaryError::Go {
        path: path.display().to_string(),
        source,
    };
    let map = sys::map_file(path).map_err(|source| BinaryError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let go = gobin::GoBinary::parse(&map).map_err(err)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for pat in patterns {
        for f in go.functions_matching(pat) {
            if !seen.insert(f.entry) {
                continue;
            }
            let Ok(site) = gobin::x86::probe_site(&go, &f) else {
                continue;
            };
            // A site the kernel refuses (`int 3` in runtime.abort) would fail the
            // whole link of a running process (error 524).
            if site.refusal.is_some() {
                continue;
            }
            if let Some(off) = go.file_offset(site.addr) {
                out.push(Site {
                    function: f.name.to_string(),
                    offset: off.0,
                });
            }
        }
    }
    sys::release_pages(&map, &map);
    Ok(out)
}
