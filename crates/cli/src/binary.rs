//! Opening the executable a trace is about: mapped read-only, parsed lazily, and every
//! error said with the path. The map and the parsed view live together, so callers hold
//! one value.
//!
//! A running process's executable is opened through `/proc/PID/exe`, never through the
//! path it was started from: after a redeploy that path holds another build (or
//! nothing, and `/proc/PID/exe` reads `… (deleted)`), and in a container it is only
//! valid under `/proc/PID/root`. The magic link reaches the file the process runs in
//! every case, and the probes are attached through it too (the kernel follows it to
//! the inode, where uprobes live). What is known about the file is keyed by its
//! device and inode, never by its path: the mapping in `/proc/PID/maps` that bias
//! learning reads is found by inode.

use anyhow::{Context, Result, bail};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A mapped Go executable. `go()` borrows the map, so it is rebuilt on demand (parsing
/// reads only headers) rather than stored beside it.
pub struct Binary {
    /// The path as messages and `pp()` show it: the canonical path, or for a process's
    /// executable the path it was started from (without ` (deleted)`).
    pub path: PathBuf,
    /// The path the file was opened through, and that probes are attached through.
    open: PathBuf,
    /// The file's device and inode.
    pub id: (u64, u64),
    map: sys::Mmap,
}

impl Binary {
    /// Opens the executable at `path`; a `/proc/PID/exe` link is opened as the
    /// process's executable ([`Binary::of_process`]).
    pub fn open(path: &Path) -> Result<Binary> {
        if let Some(pid) = proc_exe_pid(path) {
            return Binary::of_process(pid);
        }
        let abs = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
        Binary::map(abs.clone(), abs)
    }

    /// Opens the executable process `pid` runs, whatever became of its path.
    pub fn of_process(pid: u32) -> Result<Binary> {
        let link = PathBuf::from(format!("/proc/{pid}/exe"));
        let shown = pid_path(pid)?;
        Binary::map(shown, link)
    }

    fn map(shown: PathBuf, open: PathBuf) -> Result<Binary> {
        // The kind is checked before opening: opening a named pipe would wait for a
        // writer, and mapping a directory fails with a misleading ENODEV.
        let kind = std::fs::metadata(&open).with_context(|| format!("{}", shown.display()))?;
        if !kind.is_file() {
            bail!(
                "{} is {}, not a Go executable",
                shown.display(),
                file_kind(&kind.file_type())
            );
        }
        let file = std::fs::File::open(&open).with_context(|| format!("{}", shown.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("{}", shown.display()))?;
        let map = sys::map_open(&file, &shown)?;
        let bin = Binary {
            path: shown,
            open,
            id: (meta.dev(), meta.ino()),
            map,
        };
        bin.go()?;
        Ok(bin)
    }

    /// The path probes are attached through: the canonical path, or `/proc/PID/exe`.
    pub fn attach_path(&self) -> &Path {
        &self.open
    }

    /// Whether the file at the path the process was started from is not the one it
    /// runs (a redeploy replaced or removed it, or the process sees another mount
    /// namespace).
    pub fn is_replaced(&self) -> bool {
        self.open != self.path
            && std::fs::metadata(&self.path).map_or(true, |m| (m.dev(), m.ino()) != self.id)
    }

    /// The name a process's `/proc/PID/maps` text gives this executable (the path as
    /// that process sees it, for one in another mount namespace), found by device
    /// and inode; the path gotap shows if no mapping matches.
    pub fn maps_name(&self, maps: &str) -> String {
        maps_name_of(maps, self.id).unwrap_or_else(|| self.path.display().to_string())
    }

    /// Drops the pages of a piece of the executable from memory ([`sys::release_pages`]):
    /// for DWARF, which hands over each compressed section after a pass over it.
    pub fn releaser(&self) -> gobin::dwarf::Release<'_> {
        let map = &self.map;
        std::sync::Arc::new(move |part: &[u8]| sys::release_pages(map, part))
    }

    /// Drops every page of the executable read so far from memory
    /// ([`sys::release_pages`]): for a pass that reads much of it once, such as
    /// finding the probe site of thousands of functions.
    pub fn release_all(&self) {
        sys::release_pages(&self.map, &self.map);
    }

    /// The parsed view of the executable.
    pub fn go(&self) -> Result<gobin::GoBinary<'_>> {
        gobin::GoBinary::parse(&self.map).with_context(|| format!("{}", self.path.display()))
    }
}

/// Whether `named` (a path in a script) names the executable at `target` (a path from
/// [`crate::session::target_binary`]): the same file, or, when `target` is a process's
/// `/proc/PID/exe`, the path that process was started from, replaced or deleted since.
pub fn names(named: &Path, target: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    if id(named).is_some_and(|n| Some(n) == id(target)) {
        return true;
    }
    proc_exe_pid(target)
        .and_then(|pid| pid_path(pid).ok())
        .is_some_and(|started| std::path::absolute(named).is_ok_and(|n| n == started))
}

/// What a path that is not a regular file is, for messages.
pub fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// The pid of a `/proc/PID/exe` path.
fn proc_exe_pid(path: &Path) -> Option<u32> {
    let rest = path.to_str()?.strip_prefix("/proc/")?;
    let pid = rest.strip_suffix("/exe")?;
    pid.parse().ok()
}

/// The path of the first mapping of file `id` (device, inode) in a maps file: the
/// sixth field, before the ` (deleted)` the kernel may append.
fn maps_name_of(maps: &str, id: (u64, u64)) -> Option<String> {
    // The device as maps shows it, `major:minor` in hex (Linux's `dev_t` encoding).
    let (dev, ino) = id;
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let want = format!("{major:02x}:{minor:02x}");
    maps.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let device = parts.nth(3)?;
        let inode: u64 = parts.next()?.parse().ok()?;
        let name = parts.next()?;
        (inode == ino && device == want && name.starts_with('/')).then(|| name.to_string())
    })
}

/// Splits a `-c` command line into words as a shell would for simple commands:
/// whitespace separates, single quotes keep everything, double quotes keep all but
/// `\"` and `\\`, a backslash outside quotes escapes the next character.
pub fn split_command(cmd: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => anyhow::bail!("-c {cmd:?}: unterminated single quote"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => anyhow::bail!("-c {cmd:?}: unterminated double quote"),
                        },
                        Some(c) => cur.push(c),
                        None => anyhow::bail!("-c {cmd:?}: unterminated double quote"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => anyhow::bail!("-c {cmd:?}: a backslash ends the command"),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    anyhow::ensure!(!words.is_empty(), "-c names no command");
    Ok(words)
}

/// The executable a command word runs: itself if it has a slash, else from `PATH`.
pub fn command_path(word: &str) -> Result<PathBuf> {
    if word.contains('/') {
        return Ok(PathBuf::from(word));
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|d| d.join(word))
        .find(|p| p.is_file())
        .with_context(|| format!("-c: {word} not found in PATH"))
}

/// The path a running process was started from, as `/proc/PID/exe` reads it, without
/// the ` (deleted)` the kernel adds once that path is gone or replaced.
pub fn pid_path(pid: u32) -> Result<PathBuf> {
    let link = format!("/proc/{pid}/exe");
    let target = std::fs::read_link(&link)
        .with_context(|| format!("-x {pid}: no such process (or not readable: {link})"))?;
    let text = target.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(t) => PathBuf::from(t),
        None => target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            split_command("./counts 3  20").unwrap(),
            ["./counts", "3", "20"]
        );
        assert_eq!(
            split_command(r#"prog 'a b' "c \"d\"" e\ f"#).unwrap(),
            ["prog", "a b", "c \"d\"", "e f"]
        );
        assert_eq!(split_command("prog ''").unwrap(), ["prog", ""]);
        assert!(split_command("prog 'open").is_err());
        assert!(split_command("   ").is_err());
    }

    #[test]
    fn a_mapping_is_found_by_device_and_inode_not_by_path() {
        let maps = "\
00400000-0049a000 r-xp 00000000 08:01 7 /usr/bin/other
00400000-0049a000 r-xp 00000000 00:28 7 /app/server (deleted)
0049a000-00567000 r--p 0009a000 00:28 7 /app/server (deleted)
";
        // makedev(0, 0x28)
        assert_eq!(
            maps_name_of(maps, (0x28, 7)).as_deref(),
            Some("/app/server")
        );
        // makedev(8, 1)
        assert_eq!(
            maps_name_of(maps, (0x801, 7)).as_deref(),
            Some("/usr/bin/other")
        );
        assert_eq!(maps_name_of(maps, (0x28, 8)), None);
    }

    #[test]
    fn a_directory_says_it_is_one() {
        let e = Binary::open(&std::env::temp_dir()).err().expect("an error");
        assert!(format!("{e:#}").contains("is a directory"), "{e:#}");
    }

    #[test]
    fn a_missing_binary_names_its_path() {
        let e = Binary::open(Path::new("/nonexistent/gotap-bin"))
            .err()
            .expect("an error");
        assert!(format!("{e:#}").contains("/nonexistent/gotap-bin"), "{e:#}");
    }

    #[test]
    fn a_file_that_is_not_elf_names_its_path() {
        let p = std::env::temp_dir().join(format!("gotap-notelf-{}", std::process::id()));
        std::fs::write(&p, b"#!/bin/sh\necho hi\n").unwrap();
        let e = Binary::open(&p).err().expect("an error");
        let _ = std::fs::remove_file(&p);
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("not an ELF"),
            "{msg}"
        );
    }
}
