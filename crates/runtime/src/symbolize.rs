//! Return addresses to names, as SystemTap prints them:
//! ` 0x40d748 : runtime.mallocgc+0x548/0x9d0 at /usr/lib/golang/src/runtime/malloc.go:740 [/home/juddin/example]`.
//! Names come from `.gopclntab`, so stripped binaries symbolise too; a call inlined at
//! the address prints first, as its own line marked `(inlined)`, followed by the
//! function it was inlined into. Lookups are cached per address: a stack trace repeats
//! its frames from one event to the next.

use std::collections::HashMap;
use std::io::Write;

use gobin::{GoBinary, VirtAddr};

/// One symbolised frame: an inlined call or the physical function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameText {
    pub function: String,
    pub file: String,
    pub line: u32,
    pub inlined: bool,
    /// `+off/size`, for the physical frame.
    pub offset: u64,
    pub size: u64,
}

pub struct Symbolizer<'a, 'data> {
    bin: &'a GoBinary<'data>,
    path: String,
    /// Subtracted from a runtime address to get the address as linked (PIE).
    bias: u64,
    cache: HashMap<u64, Vec<FrameText>>,
}

impl<'a, 'data> Symbolizer<'a, 'data> {
    pub fn new(bin: &'a GoBinary<'data>, path: impl Into<String>, bias: u64) -> Symbolizer<'a, 'data> {
        Symbolizer { bin, path: path.into(), bias, cache: HashMap::new() }
    }

    /// Sets the load bias (learnt once the process has mapped the binary).
    pub fn set_bias(&mut self, bias: u64) {
        if bias != self.bias {
            self.bias = bias;
            self.cache.clear();
        }
    }

    /// The frames at return address `pc` (as seen at run time), innermost first. `exact`
    /// is for a pc that is not a return address (the probe's own), whose line is the
    /// line of `pc` itself rather than of the call before it.
    pub fn frames(&mut self, pc: u64, exact: bool) -> &[FrameText] {
        let key = pc ^ u64::from(exact) << 63;
        let (bin, bias) = (self.bin, self.bias);
        self.cache.entry(key).or_insert_with(|| {
            let linked = pc.wrapping_sub(bias);
            let at = if exact { linked } else { linked.saturating_sub(1) };
            let Some(f) = bin.function_at(VirtAddr(at)) else { return Vec::new() };
            let frames = bin.frames_at(VirtAddr(at));
            let size = f.end.0 - f.entry.0;
            frames
                .iter()
                .map(|fr| FrameText {
                    function: fr.function.to_string(),
                    file: fr.file.to_string(),
                    line: fr.line,
                    inlined: fr.inlined,
                    offset: linked - f.entry.0,
                    size,
                })
                .collect()
        })
    }

    /// Writes one frame line per function at `pc` in SystemTap's form.
    pub fn write(&mut self, out: &mut Vec<u8>, pc: u64, exact: bool, fileline: bool) {
        let path = self.path.clone();
        let frames = self.frames(pc, exact);
        if frames.is_empty() {
            let _ = writeln!(out, " 0x{pc:x} : 0x{pc:x} [{path}]");
            return;
        }
        for fr in frames {
            let _ = write!(out, " 0x{pc:x} : ");
            if fr.inlined {
                let _ = write!(out, "{} (inlined)", fr.function);
            } else {
                let _ = write!(out, "{}+0x{:x}/0x{:x}", fr.function, fr.offset, fr.size);
            }
            if fileline {
                let _ = write!(out, " at {}:{}", fr.file, fr.line);
            }
            let _ = writeln!(out, " [{path}]");
        }
    }
}

/// The load bias of `path` in process `pid`: where its first mapping starts, minus the
/// address that mapping has in the file's program headers (zero for a fixed-address
/// executable). Read from `/proc/PID/maps` text, which the caller supplies.
pub fn bias_from_maps(maps: &str, path: &str, first_vaddr: u64) -> Option<u64> {
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let range = parts.next()?;
        let _perms = parts.next();
        let offset = parts.next().and_then(|o| u64::from_str_radix(o, 16).ok());
        let name = parts.nth(2);
        if name == Some(path) && offset == Some(0) {
            let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
            return Some(start.wrapping_sub(first_vaddr & !0xfff));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_is_the_start_of_the_offset_zero_mapping() {
        let maps = "\
555555554000-555555556000 r--p 00000000 08:01 42 /usr/bin/prog
555555556000-555555560000 r-xp 00002000 08:01 42 /usr/bin/prog
7ffff7dd3000-7ffff7dfc000 r-xp 00000000 08:01 7 /lib/ld.so
";
        assert_eq!(bias_from_maps(maps, "/usr/bin/prog", 0), Some(0x5555_5555_4000));
        assert_eq!(bias_from_maps(maps, "/usr/bin/other", 0), None);
        // A fixed-address executable mapped where it was linked has no bias.
        let fixed = "00400000-00401000 r--p 00000000 08:01 42 /usr/bin/prog\n";
        assert_eq!(bias_from_maps(fixed, "/usr/bin/prog", 0x400000), Some(0));
    }
}
