//! The Go build info that the linker writes into `.go.buildinfo`: the toolchain
//! version (which decides every runtime layout we read), the main package and module,
//! and the build settings. Two encodings exist: since Go 1.18 both strings follow the
//! 32-byte header inline, each prefixed by its uvarint length; before that the header
//! holds two pointers to Go string headers elsewhere in the image.

use std::fmt;

use crate::VirtAddr;
use crate::elf::Elf;
use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\xff Go buildinf:";
const FLAG_BIG_ENDIAN: u8 = 1;
const FLAG_INLINE_STRINGS: u8 = 2;

/// A Go release, `go1.25.5` as `(1, 25, 5)`. Release candidates and betas count as
/// patch 0 of their release.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl GoVersion {
    /// Reads `go1.25.5`, `go1.21rc2`, `devel go1.27-abcdef ...` and the like: the first
    /// `go` followed by `major.minor[.patch]`.
    pub fn parse(s: &str) -> Option<GoVersion> {
        let at = s.find("go1.").or_else(|| s.find("go2."))?;
        let mut nums = [0u32; 3];
        let mut rest = &s[at + 2..];
        for (i, n) in nums.iter_mut().enumerate() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                if i < 2 {
                    return None;
                }
                break;
            }
            *n = rest[..digits].parse().ok()?;
            rest = &rest[digits..];
            match rest.strip_prefix('.') {
                Some(r) => rest = r,
                None => break,
            }
        }
        Some(GoVersion {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
        })
    }

    /// True if this version is `major.minor` or newer.
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What `go version -m` shows for an executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo<'data> {
    /// The version string exactly as recorded, such as `go1.25.5`.
    pub go_version_string: &'data str,
    /// The same, parsed.
    pub go_version: GoVersion,
    /// The main package's import path (`command-line-arguments` for `go build x.go`).
    pub path: Option<&'data str>,
    /// The main module's path, if built in module mode.
    pub main_module: Option<&'data str>,
    /// `build` lines: `-ldflags`, `GOARCH`, `CGO_ENABLED`, `vcs.revision`, ...
    pub settings: Vec<(&'data str, &'data str)>,
}

impl<'data> BuildInfo<'data> {
    /// The value of one build setting.
    pub fn setting(&self, key: &str) -> Option<&'data str> {
        self.settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

/// Finds and decodes the build info: the `.go.buildinfo` section, or for files whose
/// section headers were removed, the magic at a 16-byte boundary of a writable segment.
pub fn read<'data>(elf: &Elf<'data>) -> Result<BuildInfo<'data>> {
    let blob = match elf.section_raw(".go.buildinfo") {
        Some(b) => b,
        None => find_in_segments(elf).ok_or(Error::NotGo {
            reason: "no Go build info (.go.buildinfo)",
        })?,
    };
    decode(elf, blob)
}

fn find_in_segments<'data>(elf: &Elf<'data>) -> Option<&'data [u8]> {
    let data = elf.data();
    elf.segments().iter().filter(|s| s.writable).find_map(|s| {
        let start = usize::try_from(s.offset).ok()?;
        let end = start.checked_add(usize::try_from(s.filesz).ok()?)?;
        let seg = data.get(start..end)?;
        (0..seg.len())
            .step_by(16)
            .find(|&i| seg[i..].starts_with(MAGIC))
            .map(|i| &seg[i..])
    })
}

fn decode<'data>(elf: &Elf<'data>, blob: &'data [u8]) -> Result<BuildInfo<'data>> {
    if !blob.starts_with(MAGIC) {
        return Err(Error::NotGo {
            reason: ".go.buildinfo lacks its magic",
        });
    }
    let header = blob.get(..32).ok_or(Error::Truncated {
        what: "build info header",
    })?;
    let ptr_size = usize::from(header[14]);
    let flags = header[15];
    let (version, modinfo) = if flags & FLAG_INLINE_STRINGS != 0 {
        let mut rest = &blob[32..];
        let v = varint_string(&mut rest)?;
        let m = varint_string(&mut rest)?;
        (v, m)
    } else {
        if ptr_size != 8 && ptr_size != 4 {
            return Err(Error::Corrupt {
                what: "build info pointer size",
            });
        }
        let big = flags & FLAG_BIG_ENDIAN != 0;
        let v = pointed_string(elf, read_uint(&header[16..], ptr_size, big), ptr_size, big)?;
        let m = pointed_string(
            elf,
            read_uint(&header[16 + ptr_size..], ptr_size, big),
            ptr_size,
            big,
        )?;
        (v, m)
    };
    let go_version_string = std::str::from_utf8(version).map_err(|_| Error::Corrupt {
        what: "Go version string",
    })?;
    let go_version = GoVersion::parse(go_version_string).ok_or(Error::Corrupt {
        what: "Go version string",
    })?;
    let mut info = BuildInfo {
        go_version_string,
        go_version,
        path: None,
        main_module: None,
        settings: Vec::new(),
    };
    // The module info is framed by 16 bytes of sentinel on each side.
    let mut modinfo = modinfo;
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        modinfo = &modinfo[16..modinfo.len() - 16];
    }
    let text = std::str::from_utf8(modinfo).map_err(|_| Error::Corrupt {
        what: "module info",
    })?;
    for line in text.lines() {
        let mut fields = line.splitn(2, '\t');
        let (Some(kind), Some(rest)) = (fields.next(), fields.next()) else {
            continue;
        };
        match kind {
            "path" => info.path = Some(rest),
            "mod" => info.main_module = rest.split('\t').next(),
            "build" => {
                if let Some((k, v)) = rest.split_once('=') {
                    info.settings.push((k, v));
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

fn varint_string<'data>(rest: &mut &'data [u8]) -> Result<&'data [u8]> {
    let (len, n) = crate::pclntab::uvarint(rest).ok_or(Error::Truncated {
        what: "build info string length",
    })?;
    let len = usize::try_from(len).map_err(|_| Error::Corrupt {
        what: "build info string length",
    })?;
    let s = rest
        .get(n..)
        .and_then(|r| r.get(..len))
        .ok_or(Error::Truncated {
            what: "build info string",
        })?;
    *rest = &rest[n + len..];
    Ok(s)
}

fn read_uint(b: &[u8], size: usize, big: bool) -> u64 {
    let Some(b) = b.get(..size) else { return 0 };
    let mut v = 0u64;
    for i in 0..size {
        let byte = if big { b[i] } else { b[size - 1 - i] };
        v = (v << 8) | u64::from(byte);
    }
    v
}

/// Follows a pointer to a Go string header (data pointer, length) and returns the bytes.
fn pointed_string<'data>(
    elf: &Elf<'data>,
    addr: u64,
    ptr_size: usize,
    big: bool,
) -> Result<&'data [u8]> {
    let trunc = Error::Truncated {
        what: "build info string header",
    };
    let hdr = elf
        .bytes_at(VirtAddr(addr), 2 * ptr_size as u64)
        .ok_or(trunc)?;
    let data = read_uint(hdr, ptr_size, big);
    let len = read_uint(&hdr[ptr_size..], ptr_size, big);
    if len == 0 {
        return Ok(&[]);
    }
    elf.bytes_at(VirtAddr(data), len).ok_or(Error::Truncated {
        what: "build info string",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            GoVersion::parse("go1.25.5"),
            Some(GoVersion {
                major: 1,
                minor: 25,
                patch: 5
            })
        );
        assert_eq!(
            GoVersion::parse("go1.21rc2"),
            Some(GoVersion {
                major: 1,
                minor: 21,
                patch: 0
            })
        );
        assert_eq!(
            GoVersion::parse("go1.22"),
            Some(GoVersion {
                major: 1,
                minor: 22,
                patch: 0
            })
        );
        assert_eq!(
            GoVersion::parse("devel go1.27-0a1b2c3 Tue Jan 1"),
            Some(GoVersion {
                major: 1,
                minor: 27,
                patch: 0
            })
        );
        assert_eq!(GoVersion::parse("go"), None);
        assert_eq!(GoVersion::parse("go1."), None);
    }

    #[test]
    fn inline_strings_decode() {
        // Header: magic (14), pointer size 8, flags 2 (inline strings), 16 bytes pad,
        // then "go1.20.1" and the module info, each after its uvarint length.
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&[8, FLAG_INLINE_STRINGS]);
        blob.extend_from_slice(&[0; 16]);
        blob.push(8);
        blob.extend_from_slice(b"go1.20.1");
        let sentinel = [0x30u8; 16];
        let mut m = sentinel.to_vec();
        m.extend_from_slice(b"path\tcmd/x\nmod\texample.com/x\t(devel)\t\nbuild\tGOARCH=amd64\n");
        m.extend_from_slice(&sentinel);
        blob.push(m.len() as u8);
        blob.extend_from_slice(&m);
        // An ELF is only needed for the pointer format; decode the inline one directly.
        let mut rest = &blob[32..];
        assert_eq!(varint_string(&mut rest).ok(), Some(&b"go1.20.1"[..]));
        assert_eq!(
            varint_string(&mut rest).map(|s| s.len()).ok(),
            Some(m.len())
        );
    }
}
