//! Opening the executable a trace is about: mapped read-only, parsed lazily, and every
//! error said with the path. The map and the parsed view live together, so callers hold
//! one value.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// A mapped Go executable. `go()` borrows the map, so it is rebuilt on demand (parsing
/// reads only headers) rather than stored beside it.
pub struct Binary {
    pub path: PathBuf,
    map: sys::Mmap,
}

impl Binary {
    pub fn open(path: &Path) -> Result<Binary> {
        let abs = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
        let map = sys::map_file(&abs).with_context(|| format!("{}", abs.display()))?;
        let bin = Binary { path: abs, map };
        bin.go()?;
        Ok(bin)
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

/// The executable of a running process.
pub fn pid_path(pid: u32) -> Result<PathBuf> {
    let link = format!("/proc/{pid}/exe");
    std::fs::read_link(&link)
        .with_context(|| format!("-x {pid}: no such process (or not readable: {link})"))
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
