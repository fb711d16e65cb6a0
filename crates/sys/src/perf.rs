//! Sampling on a timer: one perf software `cpu-clock` event per CPU, in frequency
//! mode, running a `BPF_PROG_TYPE_PERF_EVENT` program at each sample. The event counts
//! every task on its CPU (pid -1), so threads a process makes later are sampled as
//! the ones it had; the program chooses the process. The attribute is passed at its
//! full size (136 bytes), the program linked by `BPF_LINK_CREATE` (or, on kernels
//! before 5.15, by `PERF_EVENT_IOC_SET_BPF`). Dropping one closes it, which stops it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::attr::{
    ATTACH_PERF_EVENT, BpfAttr, LinkCreate, PERF_ATTR_SIZE, PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF, PERF_FLAG_FD_CLOEXEC, PerfEventAttr, cmd,
};
use crate::error::{Error, Result};
use crate::prog::{AttachKind, LoadedProgram};
use crate::syscall::{Call, owned_fd, syscall};

/// `PERF_TYPE_SOFTWARE` and `PERF_COUNT_SW_CPU_CLOCK`.
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
/// `perf_event_attr.freq`: `sample_period` is a frequency in Hz.
const ATTR_FREQ: u64 = 1 << 10;

/// The sampling event of one CPU with the program attached.
#[derive(Debug)]
pub struct CpuClock {
    /// Dropped first: the link holds the event.
    _link: Option<OwnedFd>,
    _perf: OwnedFd,
}

impl CpuClock {
    /// Runs `prog` (loaded with [`AttachKind::PerfSample`]) `hz` times a second of
    /// CPU time on `cpu`.
    pub fn attach(prog: &LoadedProgram, cpu: u32, hz: u64) -> Result<CpuClock> {
        if prog.attach_kind() != AttachKind::PerfSample {
            return Err(Error::Invalid(format!(
                "program {} was not loaded for perf-event sampling",
                prog.name()
            )));
        }
        let attr = PerfEventAttr {
            type_: PERF_TYPE_SOFTWARE,
            size: PERF_ATTR_SIZE,
            config: PERF_COUNT_SW_CPU_CLOCK,
            sample_period: hz,
            flags: ATTR_FREQ,
            ..PerfEventAttr::default()
        };
        let cpu_i = i32::try_from(cpu).map_err(|_| Error::Invalid(format!("cpu {cpu}")))?;
        let call = Call::PerfEventOpen {
            attr: &attr,
            pid: -1,
            cpu: cpu_i,
            group_fd: -1,
            flags: PERF_FLAG_FD_CLOEXEC,
        };
        let perf =
            owned_fd(syscall(call).map_err(|e| Error::syscall("perf_event_open(cpu-clock)", e))?)
                .map_err(|e| Error::syscall("perf_event_open(cpu-clock)", e))?;
        crate::handoff::note_placed();
        let mut attr = BpfAttr::link_create(LinkCreate {
            prog_fd: prog.as_fd().as_raw_fd() as u32,
            target_fd: perf.as_raw_fd() as u32,
            attach_type: ATTACH_PERF_EVENT,
            ..LinkCreate::default()
        });
        match syscall(Call::Bpf {
            cmd: cmd::LINK_CREATE,
            attr: &mut attr,
        }) {
            Ok(ret) => {
                let link = owned_fd(ret).map_err(|e| Error::syscall("bpf(BPF_LINK_CREATE)", e))?;
                Ok(CpuClock {
                    _link: Some(link),
                    _perf: perf,
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let fd = perf.as_fd();
                syscall(Call::Ioctl {
                    fd,
                    request: PERF_EVENT_IOC_SET_BPF,
                    arg: prog.as_fd().as_raw_fd() as u64,
                })
                .map_err(|e| Error::syscall("ioctl(PERF_EVENT_IOC_SET_BPF)", e))?;
                syscall(Call::Ioctl {
                    fd,
                    request: PERF_EVENT_IOC_ENABLE,
                    arg: 0,
                })
                .map_err(|e| Error::syscall("ioctl(PERF_EVENT_IOC_ENABLE)", e))?;
                Ok(CpuClock {
                    _link: None,
                    _perf: perf,
                })
            }
            Err(e) => Err(Error::syscall("bpf(BPF_LINK_CREATE)", e)),
        }
    }
}
