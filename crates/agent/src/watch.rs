//! Processes as they start and end, from the kernel: one small program on the
//! `sched_process_exec` tracepoint and one on `sched_process_exit`, attached as raw
//! tracepoints (no tracefs write, see [`sys::RawTracepoint`]), each writing a 16-byte
//! record to one ring buffer. A record that does not fit is counted in a per-CPU
//! counter, and the agent answers a count that grew with a `/proc` rescan: nothing
//! is missed for long, and nothing silently.
//!
//! Record layout (little-endian): `kind: u32` (1 exec, 2 exit), `tgid: u32`,
//! `ktime_ns: u64` (`bpf_ktime_get_ns`, CLOCK_MONOTONIC). Exits are reported for the
//! thread-group leader only (pid == tgid): the process, not each of its threads.

use std::os::fd::{AsFd, BorrowedFd};

use bpf::{AluOp, Asm, Cond, Helper, Insn, MapKind, MapSpec, ObjectSpec, ProgramSpec, Reg, Size};

/// Ring buffer size: 64 Ki records of 16 bytes (+8 of header) would need more; at
/// 24 bytes a record this holds ~10,000 execs between two reads.
const RING_BYTES: u32 = 256 * 1024;

const KIND_EXEC: u32 = 1;
const KIND_EXIT: u32 = 2;

/// A process event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    Exec { pid: u32, ktime_ns: u64 },
    Exit { pid: u32, ktime_ns: u64 },
}

impl ProcEvent {
    /// Decodes one record; `None` for a record of another size or kind.
    pub fn decode(rec: &[u8]) -> Option<ProcEvent> {
        let kind = u32::from_le_bytes(rec.get(0..4)?.try_into().ok()?);
        let pid = u32::from_le_bytes(rec.get(4..8)?.try_into().ok()?);
        let ktime_ns = u64::from_le_bytes(rec.get(8..16)?.try_into().ok()?);
        match kind {
            KIND_EXEC => Some(ProcEvent::Exec { pid, ktime_ns }),
            KIND_EXIT => Some(ProcEvent::Exit { pid, ktime_ns }),
            _ => None,
        }
    }
}

/// The two programs and their maps, as specs (pure, for the verifier test and
/// [`Watcher::start`]).
pub fn object() -> Result<ObjectSpec, bpf::AsmError> {
    let mut object = ObjectSpec::default();
    let ring = object.add_map(MapSpec {
        name: "gotap_procs".into(),
        kind: MapKind::RingBuf,
        key_size: 0,
        value_size: 0,
        max_entries: RING_BYTES,
        flags: 0,
    });
    let lost = object.add_map(MapSpec {
        name: "gotap_procs_lost".into(),
        kind: MapKind::PerCpuArray,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        flags: 0,
    });
    for (name, kind) in [("gotap_exec", KIND_EXEC), ("gotap_exit", KIND_EXIT)] {
        let mut a = Asm::new();
        let out = a.label();
        a.call(Helper::GetCurrentPidTgid);
        a.emit(Insn::mov64(Reg::R6, Reg::R0));
        a.emit(Insn::alu64(AluOp::Rsh, Reg::R6, 32));
        if kind == KIND_EXIT {
            // A thread's exit is not the process's: only the leader's counts.
            a.emit(Insn::alu64(AluOp::Lsh, Reg::R0, 32));
            a.emit(Insn::alu64(AluOp::Rsh, Reg::R0, 32));
            a.jmp(Cond::Ne, Reg::R0, Reg::R6, out);
        }
        a.emit(Insn::st(Size::W, Reg::R10, -16, kind as i32));
        a.emit(Insn::stx(Size::W, Reg::R10, -12, Reg::R6));
        a.call(Helper::KtimeGetNs);
        a.emit(Insn::stx(Size::DW, Reg::R10, -8, Reg::R0));
        a.ld_map(Reg::R1, ring);
        a.emit(Insn::mov64(Reg::R2, Reg::R10));
        a.emit(Insn::alu64(AluOp::Add, Reg::R2, -16));
        a.emit(Insn::mov64(Reg::R3, 16));
        a.emit(Insn::mov64(Reg::R4, 0));
        a.call(Helper::RingbufOutput);
        a.jmp(Cond::Eq, Reg::R0, 0, out);
        a.emit(Insn::st(Size::W, Reg::R10, -20, 0));
        a.ld_map(Reg::R1, lost);
        a.emit(Insn::mov64(Reg::R2, Reg::R10));
        a.emit(Insn::alu64(AluOp::Add, Reg::R2, -20));
        a.call(Helper::MapLookupElem);
        a.jmp(Cond::Eq, Reg::R0, 0, out);
        a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
        a.emit(Insn::alu64(AluOp::Add, Reg::R1, 1));
        a.emit(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
        a.bind(out);
        a.emit(Insn::mov64(Reg::R0, 0)).exit();
        object.programs.push(ProgramSpec::new(name, a.finish()?));
    }
    Ok(object)
}

/// The attached programs and the consumer of their ring buffer.
#[derive(Debug)]
pub struct Watcher {
    _exec: sys::RawTracepoint,
    _exit: sys::RawTracepoint,
    ring: sys::RingBuf,
    maps: Vec<sys::Map>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("the exec/exit watcher: {0}")]
    Asm(#[from] bpf::AsmError),
    #[error("the exec/exit watcher: {0}")]
    Sys(#[from] sys::Error),
}

impl Watcher {
    /// Loads and attaches both programs.
    pub fn start() -> Result<Watcher, WatchError> {
        let obj = object()?;
        let maps = obj
            .maps
            .iter()
            .map(sys::Map::create)
            .collect::<Result<Vec<_>, _>>()?;
        let exec = sys::RawTracepoint::attach(&obj.programs[0], &maps, "sched_process_exec")?;
        let exit = sys::RawTracepoint::attach(&obj.programs[1], &maps, "sched_process_exit")?;
        let ring = sys::RingBuf::new(&maps[0])?;
        Ok(Watcher {
            _exec: exec,
            _exit: exit,
            ring,
            maps,
        })
    }

    /// Hands every waiting event to `f`; returns how many there were.
    pub fn drain(&mut self, mut f: impl FnMut(ProcEvent)) -> Result<usize, WatchError> {
        Ok(self.ring.drain(|rec| {
            if let Some(e) = ProcEvent::decode(rec) {
                f(e);
            }
        })?)
    }

    /// Events that did not fit in the ring buffer, since the start.
    pub fn lost(&self) -> u64 {
        self.maps[1]
            .get_per_cpu(&0u32.to_le_bytes())
            .ok()
            .flatten()
            .unwrap_or_default()
            .iter()
            .filter_map(|v| Some(u64::from_le_bytes(v.get(..8)?.try_into().ok()?)))
            .sum()
    }
}

impl AsFd for Watcher {
    /// Readable when events wait.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn records_decode_and_others_are_refused() {
        let mut rec = Vec::new();
        rec.extend_from_slice(&2u32.to_le_bytes());
        rec.extend_from_slice(&77u32.to_le_bytes());
        rec.extend_from_slice(&5u64.to_le_bytes());
        assert_eq!(
            ProcEvent::decode(&rec),
            Some(ProcEvent::Exit {
                pid: 77,
                ktime_ns: 5
            })
        );
        rec[0] = 9;
        assert_eq!(ProcEvent::decode(&rec), None);
        assert_eq!(ProcEvent::decode(&rec[..8]), None);
    }

    /// Needs root: a child started and reaped here shows as its exec and its exit.
    #[test]
    fn a_child_is_seen_starting_and_ending() {
        let mut w = Watcher::start().expect("start the watcher");
        let mut child = std::process::Command::new("/bin/true")
            .spawn()
            .expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        let (mut exec, mut exit) = (false, false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(exec && exit) && Instant::now() < deadline {
            w.drain(|e| match e {
                ProcEvent::Exec { pid: p, .. } if p == pid => exec = true,
                ProcEvent::Exit { pid: p, .. } if p == pid => exit = true,
                _ => {}
            })
            .expect("drain");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(exec && exit, "exec seen: {exec}, exit seen: {exit}");
        assert_eq!(w.lost(), 0);
    }
}
