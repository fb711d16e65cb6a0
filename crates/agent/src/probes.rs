//! One probe set per distinct binary, shared by every process that runs it: the
//! per-process funccount program of [`codegen::funccount::by_process`] on one
//! multi-uprobe link over every selected function of the binary (attached through
//! `/proc/PID/exe`, so the file is found in whatever mount namespace it lives), and
//! its map of counts keyed by (process, function). Extending the set (a new pattern
//! after SIGHUP, or a process selected with more) appends functions, so their
//! cookies and the counts already in the map stay; narrowing it (SIGHUP with fewer
//! patterns) links only the functions left, keeping the table. Each new link is made
//! before the old one is closed, so no hit falls between them.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use codegen::funccount::ProcessKey;
use thiserror::Error;

use crate::binary::{self, BinaryError, BinaryKey};

/// (process, function) pairs a binary's map holds at most; its memory is allocated
/// as pairs appear.
pub const MAX_KEYS: u32 = 65_536;

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(transparent)]
    Binary(#[from] BinaryError),
    #[error("{path}: {source}")]
    Sys {
        path: String,
        #[source]
        source: sys::Error,
    },
    #[error("funccount program: {0}")]
    Asm(#[from] bpf::AsmError),
}

/// A binary's probes and counts.
#[derive(Debug)]
pub struct ProbeSet {
    pub key: BinaryKey,
    object: sys::LoadedObject,
    counts: usize,
    lost: usize,
    link: Option<sys::UprobeMulti>,
    functions: Vec<String>,
    offsets: Vec<u64>,
    patterns: BTreeSet<String>,
}

impl ProbeSet {
    /// Loads the program and places probes on the functions of `path` (a
    /// `/proc/PID/exe`) that match `patterns`.
    pub fn arm(key: BinaryKey, path: &Path, patterns: &[String]) -> Result<ProbeSet, ProbeError> {
        let prog = codegen::funccount::by_process(MAX_KEYS)?;
        let sys_err = |source| ProbeError::Sys {
            path: path.display().to_string(),
            source,
        };
        let object = sys::LoadedObject::load(
            &prog.object,
            sys::LoadOptions {
                attach: sys::AttachKind::UprobeMulti,
                verbose_log: false,
            },
        )
        .map_err(sys_err)?;
        let mut set = ProbeSet {
            key,
            object,
            counts: prog.counts.0 as usize,
            lost: prog.lost.0 as usize,
            link: None,
            functions: Vec::new(),
            offsets: Vec::new(),
            patterns: BTreeSet::new(),
        };
        set.extend(path, patterns)?;
        Ok(set)
    }

    /// Adds the functions of the patterns not yet placed; true if the probes changed.
    pub fn extend(&mut self, path: &Path, patterns: &[String]) -> Result<bool, ProbeError> {
        let new: Vec<String> = patterns
            .iter()
            .filter(|p| !self.patterns.contains(*p))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(false);
        }
        let known: std::collections::HashSet<u64> = self.offsets.iter().copied().collect();
        for site in binary::sites(path, &new)? {
            if !known.contains(&site.offset) {
                self.functions.push(site.function);
                self.offsets.push(site.offset);
            }
        }
        self.patterns.extend(new);
        self.relink(path)
    }

    /// Keeps only the functions of `patterns` probed (SIGHUP took the others away);
    /// true if the probes changed. The functions stay in the table, so their
    /// cookies, and the counts in the map, are the same if a pattern comes back.
    pub fn narrow(&mut self, path: &Path, patterns: &BTreeSet<String>) -> Result<bool, ProbeError> {
        if self.patterns.is_subset(patterns) {
            return Ok(false);
        }
        self.patterns.retain(|p| patterns.contains(p));
        self.relink(path)
    }

    /// Places one link on the functions of the patterns (each with its index in the
    /// table as its cookie) in place of the old one: the new link first, then the
    /// old one goes, so no hit falls between them. True if the probes changed.
    fn relink(&mut self, path: &Path) -> Result<bool, ProbeError> {
        let (offsets, cookies): (Vec<u64>, Vec<u64>) = self
            .functions
            .iter()
            .zip(&self.offsets)
            .enumerate()
            .filter(|(_, (f, _))| self.patterns.iter().any(|p| gobin::glob_match(p, f)))
            .map(|(i, (_, o))| (*o, i as u64))
            .unzip();
        if offsets.len() == self.probes() {
            return Ok(false);
        }
        if offsets.is_empty() {
            self.link = None;
            return Ok(true);
        }
        let link = sys::UprobeMulti::attach(
            &self.object.programs[0],
            path,
            &offsets,
            &cookies,
            sys::Scope::All,
        )
        .map_err(|source| ProbeError::Sys {
            path: path.display().to_string(),
            source,
        })?;
        self.link = Some(link);
        Ok(true)
    }

    /// Probes in place.
    pub fn probes(&self) -> usize {
        self.link.as_ref().map_or(0, sys::UprobeMulti::len)
    }

    pub fn patterns(&self) -> &BTreeSet<String> {
        &self.patterns
    }

    /// The name of function `i` (the cookie of its probe).
    pub fn function(&self, i: u32) -> Option<&str> {
        self.functions.get(i as usize).map(String::as_str)
    }

    /// Every count in the map, summed over CPUs, by process.
    pub fn read(&self) -> Result<HashMap<u32, Vec<(u32, u64)>>, sys::Error> {
        let map = &self.object.maps[self.counts];
        let mut out: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
        for key in map.keys()? {
            let Some(k) = ProcessKey::from_bytes(&key) else {
                continue;
            };
            let n = sum(&map.get_per_cpu(&key)?.unwrap_or_default());
            out.entry(k.tgid).or_default().push((k.function, n));
        }
        Ok(out)
    }

    /// Deletes the counts of process `tgid` (it exited and its last values were read).
    pub fn forget(&self, tgid: u32) -> Result<(), sys::Error> {
        let map = &self.object.maps[self.counts];
        for key in map.keys()? {
            if ProcessKey::from_bytes(&key).is_some_and(|k| k.tgid == tgid) {
                map.delete(&key)?;
            }
        }
        Ok(())
    }

    /// Hits not counted because the map was full.
    pub fn lost(&self) -> u64 {
        self.object.maps[self.lost]
            .get_per_cpu(&0u32.to_le_bytes())
            .ok()
            .flatten()
            .map_or(0, |v| sum(&v))
    }
}

fn sum(per_cpu: &[Vec<u8>]) -> u64 {
    per_cpu
        .iter()
        .filter_map(|v| Some(u64::from_le_bytes(v.get(..8)?.try_into().ok()?)))
        .sum()
}
