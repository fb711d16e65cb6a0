//! Return addresses to names, as SystemTap prints them:
//! ` 0x40d748 : runtime.mallocgc+0x548/0x9d0 at /usr/lib/golang/src/runtime/malloc.go:740 [/home/juddin/example]`.
//! Names come from `.gopclntab`, so stripped binaries symbolise too; a call inlined at
//! the address prints first, as its own line marked `(inlined)`, followed by the
//! function it was inlined into. Lookups are cached per address: a stack trace repeats
//! its frames from one event to the next.
//!
//! Stacks arrive raw from the kernel walk (see codegen's `backtrace` module): the
//! first frame is the probe's own pc, and a word that is a return address only if a
//! function had not built its frame (read at a goroutine's saved SP after a switch
//! from the system stack, or at a sample's SP) is marked `TENTATIVE`, kept only when
//! the pclntab says it is one. `ubacktrace()` values name stored stacks;
//! `crate::stacks` prints them with this.

use std::collections::HashMap;
use std::io::Write;

use bpf::script::{AT_SP_8, FRAME_FLAGS, TENTATIVE};
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
    /// The frames of the stack being printed, reused.
    logical: Vec<(u64, bool)>,
}

impl<'a, 'data> Symbolizer<'a, 'data> {
    pub fn new(
        bin: &'a GoBinary<'data>,
        path: impl Into<String>,
        bias: u64,
    ) -> Symbolizer<'a, 'data> {
        Symbolizer {
            bin,
            path: path.into(),
            bias,
            cache: HashMap::new(),
            logical: Vec::new(),
        }
    }

    /// The load bias: what is subtracted from a runtime address.
    pub fn bias(&self) -> u64 {
        self.bias
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
        lookup(&mut self.cache, self.bin, self.bias, pc, exact)
    }

    /// The frames of a stack the probes sent (`frames[0]` the probe's pc unless
    /// `first_is_return`), as (pc, exact) pairs: a frame marked [`TENTATIVE`] is kept,
    /// unmarked, only when the function of its anchor (the last frame before it that
    /// is not tentative) has the SP delta the frame was read at (0, or 8 with
    /// [`AT_SP_8`]) at the anchor's pc: it was stopped before building its frame, so
    /// the word at that distance from its SP is its return address.
    pub fn logical(&mut self, frames: &[u64], first_is_return: bool) -> &[(u64, bool)] {
        self.logical.clear();
        let mut anchor = None;
        for (i, &raw) in frames.iter().enumerate() {
            let exact = i == 0 && !first_is_return;
            if raw & TENTATIVE == 0 {
                self.logical.push((raw, exact));
                anchor = Some((raw, exact));
                continue;
            }
            let want = if raw & AT_SP_8 != 0 { 8 } else { 0 };
            let keep = anchor.is_some_and(|(pc, pc_exact)| {
                let linked = pc.wrapping_sub(self.bias);
                let at = if pc_exact {
                    linked
                } else {
                    linked.saturating_sub(1)
                };
                self.bin
                    .function_at(VirtAddr(at))
                    .and_then(|f| self.bin.sp_delta(&f, VirtAddr(at)))
                    == Some(want)
            });
            if keep {
                self.logical.push((raw & !FRAME_FLAGS, false));
            }
        }
        &self.logical
    }

    /// Writes one frame line per function at `pc` in SystemTap's form.
    pub fn write(&mut self, out: &mut Vec<u8>, pc: u64, exact: bool, fileline: bool) {
        let frames = lookup(&mut self.cache, self.bin, self.bias, pc, exact);
        write_frames(out, &self.path, pc, frames, fileline);
    }

    /// Writes a whole stack the probes sent, a line per frame (inlined calls too).
    pub fn write_stack(
        &mut self,
        out: &mut Vec<u8>,
        frames: &[u64],
        first_is_return: bool,
        fileline: bool,
    ) {
        self.logical(frames, first_is_return);
        for &(pc, exact) in &self.logical {
            let texts = lookup(&mut self.cache, self.bin, self.bias, pc, exact);
            write_frames(out, &self.path, pc, texts, fileline);
        }
    }

    /// A stack as stap prints `ubacktrace()`: the addresses in hex, space separated.
    pub fn write_hex(&mut self, out: &mut Vec<u8>, frames: &[u64], first_is_return: bool) {
        self.logical(frames, first_is_return);
        for (i, (pc, _)) in self.logical.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let _ = write!(out, "{sep}0x{pc:x}");
        }
    }

    /// A stack as one collapsed-stack line: function names root first, `;` between,
    /// inlined calls as their own frames (an address with no function as its hex).
    pub fn folded(&mut self, out: &mut String, frames: &[u64], first_is_return: bool) {
        use std::fmt::Write as _;
        self.logical(frames, first_is_return);
        let start = out.len();
        for &(pc, exact) in self.logical.iter().rev() {
            let texts = lookup(&mut self.cache, self.bin, self.bias, pc, exact);
            if texts.is_empty() {
                let _ = write!(out, "0x{pc:x};");
            }
            for fr in texts.iter().rev() {
                out.push_str(&fr.function);
                out.push(';');
            }
        }
        if out.len() > start {
            out.pop();
        }
    }
}

/// The cached frames at `pc`.
fn lookup<'c>(
    cache: &'c mut HashMap<u64, Vec<FrameText>>,
    bin: &GoBinary<'_>,
    bias: u64,
    pc: u64,
    exact: bool,
) -> &'c [FrameText] {
    let key = pc ^ (u64::from(exact) << 63);
    cache.entry(key).or_insert_with(|| {
        let linked = pc.wrapping_sub(bias);
        let at = if exact {
            linked
        } else {
            linked.saturating_sub(1)
        };
        let Some(f) = bin.function_at(VirtAddr(at)) else {
            return Vec::new();
        };
        let size = f.end.0 - f.entry.0;
        bin.frames_at(VirtAddr(at))
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

fn write_frames(out: &mut Vec<u8>, path: &str, pc: u64, frames: &[FrameText], fileline: bool) {
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

/// The load bias of `path` in process `pid`: where its first mapping starts, minus the
/// address that mapping has in the file's program headers (zero for a fixed-address
/// executable). Read from `/proc/PID/maps` text, which the caller supplies. Only
/// private mappings count: the program is loaded in those, while a shared one may be
/// another's (a `-c` command held before its exec shares gotap's own read-only map of
/// the binary).
pub fn bias_from_maps(maps: &str, path: &str, first_vaddr: u64) -> Option<u64> {
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let range = parts.next()?;
        let private = parts.next().is_some_and(|p| p.ends_with('p'));
        let offset = parts.next().and_then(|o| u64::from_str_radix(o, 16).ok());
        let name = parts.nth(2);
        if private && name == Some(path) && offset == Some(0) {
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
7f0000000000-7f0000100000 r--s 00000000 08:01 42 /usr/bin/prog
555555554000-555555556000 r--p 00000000 08:01 42 /usr/bin/prog
555555556000-555555560000 r-xp 00002000 08:01 42 /usr/bin/prog
7ffff7dd3000-7ffff7dfc000 r-xp 00000000 08:01 7 /lib/ld.so
";
        assert_eq!(
            bias_from_maps(maps, "/usr/bin/prog", 0),
            Some(0x5555_5555_4000)
        );
        assert_eq!(bias_from_maps(maps, "/usr/bin/other", 0), None);
        // A shared mapping of the file is not where the program is loaded.
        let shared = "7f0000000000-7f0000100000 r--s 00000000 08:01 42 /usr/bin/prog\n";
        assert_eq!(bias_from_maps(shared, "/usr/bin/prog", 0), None);
        // A fixed-address executable mapped where it was linked has no bias.
        let fixed = "00400000-00401000 r--p 00000000 08:01 42 /usr/bin/prog\n";
        assert_eq!(bias_from_maps(fixed, "/usr/bin/prog", 0x400000), Some(0));
    }
}
