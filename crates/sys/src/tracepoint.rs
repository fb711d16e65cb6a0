//! Programs on kernel tracepoints, attached without tracefs: the program is loaded as
//! `BPF_PROG_TYPE_RAW_TRACEPOINT` and tied to the tracepoint by name with
//! `BPF_RAW_TRACEPOINT_OPEN` (Linux 4.17), which returns a link descriptor; closing
//! it detaches. Nothing is written under `/sys/kernel/tracing`, so this works where
//! tracefs is not mounted (a container) and leaves nothing behind. The program sees
//! the tracepoint's raw arguments (`ctx->args[i]`), and may call the tracing helpers
//! (`get_current_pid_tgid`, `ktime_get_ns`, `ringbuf_output`, …).
//!
//! The agent's discovery runs one on `sched_process_exec` and one on
//! `sched_process_exit`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use bpf::{MapId, ProgramSpec};

use crate::attr::{BpfAttr, PROG_TYPE_RAW_TRACEPOINT, ProgLoad, RawTracepointOpen, cmd};
use crate::error::{Error, Result, VerifierError};
use crate::map::{Map, object_name};
use crate::syscall::{Call, owned_fd, syscall};

/// The log buffer for a refused program: these programs are short.
const LOG_SIZE: usize = 256 * 1024;

/// A program attached to a tracepoint; dropping it detaches and unloads.
#[derive(Debug)]
pub struct RawTracepoint {
    /// Dropped first: the link holds the program.
    link: OwnedFd,
    prog: OwnedFd,
    name: String,
}

impl RawTracepoint {
    /// Loads `spec` (its map references resolved to `maps[id]`) and attaches it to
    /// the tracepoint `tracepoint` (`sched_process_exec`).
    pub fn attach(spec: &ProgramSpec, maps: &[Map], tracepoint: &str) -> Result<RawTracepoint> {
        let insns =
            spec.relocated(|id: MapId| maps.get(id.0 as usize).map(|m| m.as_fd().as_raw_fd()))?;
        let bytes = bpf::Insn::encode_all(&insns);
        let license = CString::new(spec.license.as_str())
            .map_err(|_| Error::Invalid(format!("license {:?} has a NUL", spec.license)))?;
        let insn_cnt = u32::try_from(insns.len())
            .map_err(|_| Error::Invalid(format!("program {} is too long", spec.name)))?;
        let load = |log: Option<&mut Vec<u8>>| {
            let (log_buf, log_size, log_level) = match log {
                Some(b) => (b.as_mut_ptr() as u64, b.len() as u32, 1),
                None => (0, 0, 0),
            };
            let mut attr = BpfAttr::prog_load(ProgLoad {
                prog_type: PROG_TYPE_RAW_TRACEPOINT,
                insn_cnt,
                insns: bytes.as_ptr() as u64,
                license: license.as_ptr() as u64,
                log_level,
                log_size,
                log_buf,
                prog_name: object_name(&spec.name),
                ..ProgLoad::default()
            });
            syscall(Call::Bpf {
                cmd: cmd::PROG_LOAD,
                attr: &mut attr,
            })
        };
        let prog = match load(None) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(Error::syscall("bpf(BPF_PROG_LOAD)", e));
            }
            Err(_) => {
                // Again with a log, to say why.
                let mut buf = vec![0u8; LOG_SIZE];
                match load(Some(&mut buf)) {
                    Ok(fd) => fd,
                    Err(source) => {
                        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
                        return Err(Error::Verifier(VerifierError {
                            name: spec.name.clone(),
                            source,
                            log: String::from_utf8_lossy(&buf[..end]).into_owned(),
                        }));
                    }
                }
            }
        };
        let prog = owned_fd(prog).map_err(|e| Error::syscall("bpf(BPF_PROG_LOAD)", e))?;
        let name = CString::new(tracepoint)
            .map_err(|_| Error::Invalid(format!("tracepoint {tracepoint:?} has a NUL")))?;
        let mut attr = BpfAttr::raw_tracepoint(RawTracepointOpen {
            name: name.as_ptr() as u64,
            prog_fd: prog.as_raw_fd() as u32,
            ..RawTracepointOpen::default()
        });
        let link = syscall(Call::Bpf {
            cmd: cmd::RAW_TRACEPOINT_OPEN,
            attr: &mut attr,
        })
        .and_then(owned_fd)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => Error::Invalid(format!("no tracepoint named {tracepoint}")),
            _ => Error::syscall("bpf(BPF_RAW_TRACEPOINT_OPEN)", e),
        })?;
        Ok(RawTracepoint {
            link,
            prog,
            name: tracepoint.to_string(),
        })
    }

    /// The tracepoint it is attached to.
    pub fn tracepoint(&self) -> &str {
        &self.name
    }

    /// The program's descriptor (for `bpf(BPF_OBJ_GET_INFO_BY_FD)` and the like).
    pub fn program_fd(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }
}

impl AsFd for RawTracepoint {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.link.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake;
    use bpf::{Asm, Insn, Reg};

    fn spec() -> ProgramSpec {
        let mut a = Asm::new();
        a.emit(Insn::mov64(Reg::R0, 0)).exit();
        ProgramSpec::new("gotap_exec", a.finish().unwrap())
    }

    #[test]
    fn the_program_is_a_raw_tracepoint_opened_by_name() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let s = seen.clone();
        let _g = fake::install(move |call| {
            let Call::Bpf { cmd: c, attr } = call else {
                panic!("unexpected {}", call.name())
            };
            match *c {
                cmd::PROG_LOAD => {
                    s.borrow_mut()
                        .push(format!("load type {}", attr.as_prog_load().prog_type));
                }
                cmd::RAW_TRACEPOINT_OPEN => {
                    // SAFETY (test): the union was built from this variant.
                    let rt = unsafe { attr.raw_tracepoint };
                    // SAFETY (test): `name` points at the caller's live CString.
                    let name = unsafe { std::ffi::CStr::from_ptr(rt.name as *const libc::c_char) };
                    s.borrow_mut()
                        .push(format!("open {}", name.to_str().unwrap()));
                }
                _ => panic!("unexpected {}", call.name()),
            }
            Ok(fake::dev_null())
        });
        let t = RawTracepoint::attach(&spec(), &[], "sched_process_exec").unwrap();
        assert_eq!(t.tracepoint(), "sched_process_exec");
        assert_eq!(*seen.borrow(), ["load type 17", "open sched_process_exec"]);
    }

    /// Needs root: attaches for real to a tracepoint that exists, and refuses one that
    /// does not with its name.
    #[test]
    fn a_real_tracepoint_attaches_and_a_missing_one_is_named() {
        let t = RawTracepoint::attach(&spec(), &[], "sched_process_exit").expect("attach");
        let links = crate::inventory::links().expect("links");
        assert!(!links.is_empty());
        drop(t);
        let e = RawTracepoint::attach(&spec(), &[], "gotap_no_such_tracepoint").unwrap_err();
        assert!(e.to_string().contains("gotap_no_such_tracepoint"), "{e}");
    }
}
