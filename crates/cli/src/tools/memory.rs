//! The traced process's memory, read through `/proc/PID/mem` (read only, never
//! written): the runtime's variables at attach (`runtime.allgs`,
//! `runtime.runtimeInitTime`), the goroutines they point at, and the pprof label sets
//! a profile's samples name. A read is one `pread` of the file; what fails to read
//! (the process gone, an address not mapped) is `None`.

use std::os::unix::fs::FileExt;

/// One process's memory, and the load bias of the traced binary in it.
pub struct Memory {
    file: std::fs::File,
    /// Added to an address as linked to get the address in the process (PIE).
    bias: u64,
}

impl Memory {
    /// Opens process `pid`'s memory; `bias` is the binary's load bias there.
    pub fn open(pid: u32, bias: u64) -> std::io::Result<Memory> {
        let file = std::fs::File::open(format!("/proc/{pid}/mem"))?;
        Ok(Memory { file, bias })
    }

    /// `buf.len()` bytes at run-time address `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Option<()> {
        self.file.read_exact_at(buf, addr).ok()
    }

    /// The little-endian word at run-time address `addr`.
    pub fn u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Some(u64::from_le_bytes(b))
    }

    /// The word at the address `linked` has in the binary (a global variable).
    pub fn global_u64(&self, linked: u64) -> Option<u64> {
        self.u64(linked.wrapping_add(self.bias))
    }
}

/// The runtime's struct layouts in `bin`: from its DWARF, else gotap's table of its
/// Go release (as probes read them).
pub fn runtime_layout(bin: &crate::binary::Binary) -> Option<gobin::layout::RuntimeLayout> {
    let go = bin.go().ok()?;
    let target = codegen::GoTarget::new(go, bin.path.display().to_string());
    target.layout().copied()
}

/// A goroutine as `runtime.allgs` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Goroutine {
    pub goid: i64,
    pub status: u32,
    /// Where it was created (`go` statement) and the function it runs (run-time pcs).
    pub gopc: u64,
    pub startpc: u64,
}

/// `_Gdead`: a `g` kept for reuse, not a goroutine.
const G_DEAD: u32 = 6;

/// Every goroutine in `runtime.allgs` that is not dead (the status with its
/// `_Gscan` bit cleared). `allgs` is read without the runtime's lock: a goroutine
/// made or ended during the read may be missed or seen, which the tools' probes,
/// attached before, account for.
pub fn goroutines(
    mem: &Memory,
    allgs: u64,
    layout: &gobin::layout::RuntimeLayout,
) -> Option<Vec<Goroutine>> {
    let ptr = mem.global_u64(allgs)?;
    let len = mem.global_u64(allgs + 8)?;
    // A million goroutines is far more than any program keeps; more is a bad read.
    if len > 1 << 20 {
        return None;
    }
    let mut table = vec![0u8; 8 * len as usize];
    mem.read(ptr, &mut table)?;
    let span = layout.g_startpc.max(layout.g_gopc).max(layout.g_goid) + 8;
    let mut g = vec![0u8; span as usize];
    let word = |b: &[u8], at: u64| {
        let at = at as usize;
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
    };
    let mut out = Vec::new();
    for entry in table.chunks_exact(8) {
        let gp = u64::from_le_bytes(entry.try_into().unwrap_or([0; 8]));
        if gp == 0 || mem.read(gp, &mut g).is_none() {
            continue;
        }
        let status = (word(&g, layout.g_atomicstatus) as u32) & !0x1000;
        if status == G_DEAD {
            continue;
        }
        out.push(Goroutine {
            goid: word(&g, layout.g_goid) as i64,
            status,
            gopc: word(&g, layout.g_gopc),
            startpc: word(&g, layout.g_startpc),
        });
    }
    Some(out)
}

/// Whether a goroutine that runs `function` is one of the runtime's own (its
/// background workers, the finalizer goroutine), which `runtime.NumGoroutine` leaves
/// out: the Go runtime's `isSystemGoroutine` says so of functions of package
/// `runtime` but `runtime.main`.
pub fn is_system_goroutine(function: &str) -> bool {
    function.starts_with("runtime.") && function != "runtime.main"
}
