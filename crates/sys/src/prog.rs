//! Loading programs: map references are relocated to the maps' descriptors, the
//! program is loaded as `BPF_PROG_TYPE_KPROBE` (what uprobes run) or
//! `BPF_PROG_TYPE_PERF_EVENT` (what sampling events run), and a refusal comes back with the verifier's log. The first attempt asks for no log, which is
//! fastest; a failure is retried with log level 1 to explain it, and `-d verifier`
//! asks for level 2 from the start. A log buffer that is too small (`ENOSPC`) is
//! grown to the size the kernel says it needed (Linux 6.4 reports it) or doubled.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use bpf::{Insn, MapId, ObjectSpec, ProgramSpec};

use crate::attr::{
    ATTACH_TRACE_UPROBE_MULTI, BpfAttr, BtfLoad, PROG_TYPE_KPROBE, PROG_TYPE_PERF_EVENT, ProgLoad,
    cmd,
};
use crate::error::{Error, Result, VerifierError};
use crate::map::{Map, object_name};
use crate::syscall::{Call, owned_fd, syscall};

/// How the program will be attached; the kernel checks this at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttachKind {
    /// Through a perf-event uprobe ([`crate::Uprobe`]).
    #[default]
    PerfEvent,
    /// Through a multi-uprobe link ([`crate::UprobeMulti`]); Linux 6.6.
    UprobeMulti,
    /// Run by a sampling perf event ([`crate::CpuClock`]): a
    /// `BPF_PROG_TYPE_PERF_EVENT` program.
    PerfSample,
}

/// Options of [`LoadedProgram::load`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    pub attach: AttachKind,
    /// Keep the verifier's full log (level 2) even when the load succeeds, for
    /// `-d verifier`.
    pub verbose_log: bool,
}

/// The first log buffer; grown on `ENOSPC`.
const LOG_START: usize = 64 * 1024;
/// The largest log buffer gotap allocates. The kernel accepts up to 1 GiB, but a
/// longer log is not read by anyone; the kernel keeps its tail, where the error is.
const LOG_MAX: usize = 64 * 1024 * 1024;

/// A program in the kernel; dropping it closes it (links hold their own reference).
#[derive(Debug)]
pub struct LoadedProgram {
    fd: OwnedFd,
    name: String,
    attach: AttachKind,
    log: Option<String>,
}

impl LoadedProgram {
    /// Loads `spec`, its map references resolved to `maps[id]`.
    pub fn load(spec: &ProgramSpec, maps: &[Map], opts: LoadOptions) -> Result<LoadedProgram> {
        let insns =
            spec.relocated(|id: MapId| maps.get(id.0 as usize).map(|m| m.as_fd().as_raw_fd()))?;
        load_insns(&spec.name, &spec.license, &insns, &spec.functions, opts)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn attach_kind(&self) -> AttachKind {
        self.attach
    }

    /// The verifier's log when [`LoadOptions::verbose_log`] was asked for.
    pub fn verifier_log(&self) -> Option<&str> {
        self.log.as_deref()
    }
}

impl AsFd for LoadedProgram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A compiled script in the kernel: its maps (indexed by [`MapId`]) and programs.
#[derive(Debug)]
pub struct LoadedObject {
    pub maps: Vec<Map>,
    pub programs: Vec<LoadedProgram>,
}

impl LoadedObject {
    /// Creates every map, then loads every program.
    pub fn load(obj: &ObjectSpec, opts: LoadOptions) -> Result<LoadedObject> {
        let maps = obj
            .maps
            .iter()
            .map(Map::create)
            .collect::<Result<Vec<_>>>()?;
        let programs = obj
            .programs
            .iter()
            .map(|p| LoadedProgram::load(p, &maps, opts))
            .collect::<Result<_>>()?;
        Ok(LoadedObject { maps, programs })
    }

    pub fn map(&self, id: MapId) -> Option<&Map> {
        self.maps.get(id.0 as usize)
    }
}

/// Loads instructions whose map references are already descriptors.
pub(crate) fn load_insns(
    name: &str,
    license: &str,
    insns: &[Insn],
    functions: &[usize],
    opts: LoadOptions,
) -> Result<LoadedProgram> {
    let license = CString::new(license)
        .map_err(|_| Error::Invalid(format!("license {license:?} has a NUL")))?;
    // A program with BPF functions describes them in BTF (see `bpf::btf`).
    let (btf, func_info) = if functions.is_empty() {
        (None, Vec::new())
    } else {
        let names: Vec<String> = std::iter::once("gotap_main".to_string())
            .chain((1..=functions.len()).map(|i| format!("gotap_fn{i}")))
            .collect();
        let b = bpf::btf::functions(&names);
        let fd = load_btf(&b.blob)?;
        (Some(fd), bpf::btf::func_info(functions, &b.func_types))
    };
    let func_info_cnt = (func_info.len() / 8) as u32;
    let bytes = Insn::encode_all(insns);
    let insn_cnt = u32::try_from(insns.len())
        .map_err(|_| Error::Invalid(format!("program {name} has {} instructions", insns.len())))?;
    let attempt = |log: Option<&mut Vec<u8>>, level: u32| -> (io::Result<i64>, u32) {
        let (log_buf, log_size) = match log {
            Some(buf) => (buf.as_mut_ptr() as u64, buf.len() as u32),
            None => (0, 0),
        };
        let mut attr = BpfAttr::prog_load(ProgLoad {
            prog_type: match opts.attach {
                AttachKind::PerfSample => PROG_TYPE_PERF_EVENT,
                _ => PROG_TYPE_KPROBE,
            },
            insn_cnt,
            insns: bytes.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: if log_size == 0 { 0 } else { level },
            log_size,
            log_buf,
            prog_name: object_name(name),
            expected_attach_type: match opts.attach {
                AttachKind::PerfEvent | AttachKind::PerfSample => 0,
                AttachKind::UprobeMulti => ATTACH_TRACE_UPROBE_MULTI,
            },
            prog_btf_fd: btf.as_ref().map_or(0, |f| f.as_raw_fd() as u32),
            func_info_rec_size: if func_info_cnt > 0 { 8 } else { 0 },
            func_info: if func_info_cnt > 0 {
                func_info.as_ptr() as u64
            } else {
                0
            },
            func_info_cnt,
            ..ProgLoad::default()
        });
        let r = syscall(Call::Bpf {
            cmd: cmd::PROG_LOAD,
            attr: &mut attr,
        });
        (r, attr.as_prog_load().log_true_size)
    };
    let done = |ret: i64, log: Option<String>| -> Result<LoadedProgram> {
        let fd = owned_fd(ret).map_err(|e| Error::syscall("bpf(BPF_PROG_LOAD)", e))?;
        Ok(LoadedProgram {
            fd,
            name: name.to_string(),
            attach: opts.attach,
            log,
        })
    };

    if !opts.verbose_log {
        match attempt(None, 0).0 {
            Ok(ret) => return done(ret, None),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(Error::syscall("bpf(BPF_PROG_LOAD)", e));
            }
            Err(_) => {}
        }
    }
    // With a log: level 2 on request, else level 1 to explain the failure.
    let level = if opts.verbose_log { 2 } else { 1 };
    let mut buf = vec![0u8; LOG_START];
    loop {
        let (r, true_size) = attempt(Some(&mut buf), level);
        let text = log_text(&buf);
        match r {
            Ok(ret) => return done(ret, opts.verbose_log.then_some(text)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && buf.len() < LOG_MAX => {
                let want = (true_size as usize).max(buf.len() * 2).min(LOG_MAX);
                buf = vec![0u8; want];
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && opts.verbose_log => {
                // The program may well be fine: load it without the log and keep
                // the tail the kernel left.
                return match attempt(None, 0).0 {
                    Ok(ret) => done(ret, Some(text)),
                    Err(e) => Err(verifier_error(name, e, text)),
                };
            }
            Err(e) => return Err(verifier_error(name, e, text)),
        }
    }
}

/// Loads a BTF blob; the descriptor may be closed once a program using it is loaded.
fn load_btf(blob: &[u8]) -> Result<OwnedFd> {
    let mut attr = BpfAttr::btf_load(BtfLoad {
        btf: blob.as_ptr() as u64,
        btf_size: u32::try_from(blob.len())
            .map_err(|_| Error::Invalid("BTF larger than 4 GiB".into()))?,
        ..BtfLoad::default()
    });
    let ret = syscall(Call::Bpf {
        cmd: cmd::BTF_LOAD,
        attr: &mut attr,
    });
    ret.and_then(owned_fd)
        .map_err(|e| Error::syscall("bpf(BPF_BTF_LOAD)", e))
}

fn verifier_error(name: &str, e: io::Error, log: String) -> Error {
    if e.raw_os_error() == Some(libc::EPERM) {
        return Error::syscall("bpf(BPF_PROG_LOAD)", e);
    }
    if log.trim().is_empty() {
        return Error::syscall("bpf(BPF_PROG_LOAD)", e);
    }
    Error::Verifier(VerifierError {
        name: name.to_string(),
        source: e,
        log,
    })
}

/// The log up to its NUL.
fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake;
    use bpf::{Asm, Reg};

    fn spec() -> ProgramSpec {
        let mut a = Asm::new();
        a.emit(Insn::mov64(Reg::R0, 0)).exit();
        ProgramSpec::new("probe_main.leaf", a.finish().unwrap())
    }

    #[test]
    fn a_failed_load_is_retried_with_a_log_that_grows_on_enospc() {
        let mut calls = Vec::new();
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let s = seen.clone();
        let _g = fake::install(move |call| {
            let Call::Bpf {
                cmd: cmd::PROG_LOAD,
                attr,
            } = call
            else {
                panic!("unexpected {}", call.name())
            };
            let mut a = attr.as_prog_load();
            s.borrow_mut().push((
                a.log_level,
                a.log_size,
                a.expected_attach_type,
                a.insn_cnt,
                a.prog_name,
            ));
            if a.log_size == 0 {
                return fake::errno(libc::EACCES);
            }
            if a.log_size < 200_000 {
                // As Linux 6.4+: say how much was needed.
                a.log_true_size = 200_000;
                **attr = BpfAttr::prog_load(a);
                return fake::errno(libc::ENOSPC);
            }
            let msg = b"R0 !read_ok\nprocessed 1 insns\0";
            // SAFETY (test): the buffer is log_size bytes long.
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), a.log_buf as *mut u8, msg.len()) };
            fake::errno(libc::EACCES)
        });
        let e = LoadedProgram::load(&spec(), &[], LoadOptions::default()).unwrap_err();
        let Error::Verifier(v) = e else {
            panic!("{e:?}")
        };
        assert_eq!(v.log, "R0 !read_ok\nprocessed 1 insns");
        assert_eq!(v.name, "probe_main.leaf");
        calls.extend(seen.borrow().iter().map(|c| (c.0, c.1, c.2, c.3)));
        assert_eq!(
            calls,
            vec![(0, 0, 0, 2), (1, 65536, 0, 2), (1, 200_000, 0, 2)]
        );
        assert_eq!(&seen.borrow()[0].4[..15], b"probe_main.leaf");
    }

    #[test]
    fn multi_uprobe_programs_say_so_at_load_time() {
        let _g = fake::install(|call| {
            let Call::Bpf {
                cmd: cmd::PROG_LOAD,
                attr,
            } = call
            else {
                panic!("unexpected {}", call.name())
            };
            assert_eq!(attr.as_prog_load().expected_attach_type, 48);
            assert_eq!(attr.as_prog_load().prog_type, 2);
            Ok(fake::dev_null())
        });
        let p = LoadedProgram::load(
            &spec(),
            &[],
            LoadOptions {
                attach: AttachKind::UprobeMulti,
                verbose_log: false,
            },
        )
        .unwrap();
        assert_eq!(p.verifier_log(), None);
    }
}
