//! The one door to the kernel: every system call gotap makes is a [`Call`] passed to
//! [`syscall`]. Unit tests install a fake in its place (per thread, see [`fake`]) and
//! check what would have been sent, so argument marshalling is tested without root.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::attr::{BpfAttr, PerfEventAttr};

/// One system call and its arguments.
pub(crate) enum Call<'a> {
    /// `bpf(cmd, attr, sizeof attr)`.
    Bpf { cmd: u32, attr: &'a mut BpfAttr },
    /// `perf_event_open(attr, pid, cpu, group_fd, flags)`.
    PerfEventOpen {
        attr: &'a PerfEventAttr,
        pid: i32,
        cpu: i32,
        group_fd: i32,
        flags: u64,
    },
    /// `ioctl(fd, request, arg)`.
    Ioctl {
        fd: BorrowedFd<'a>,
        request: u64,
        arg: u64,
    },
    /// `poll` on one descriptor for readability.
    Poll { fd: BorrowedFd<'a>, timeout_ms: i32 },
    /// `mmap(NULL, len, prot, MAP_SHARED, fd, offset)`; returns the address.
    Mmap {
        fd: BorrowedFd<'a>,
        len: usize,
        prot: i32,
        offset: i64,
    },
    /// `munmap(addr, len)`.
    Munmap { addr: usize, len: usize },
    /// `fcntl(fd, F_DUPFD_CLOEXEC, 0)`.
    Dup { fd: BorrowedFd<'a> },
}

#[cfg(test)]
impl Call<'_> {
    /// The call's name, for test failure messages.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Bpf { cmd, .. } => crate::attr::cmd::name(*cmd),
            Call::PerfEventOpen { .. } => "perf_event_open",
            Call::Ioctl { .. } => "ioctl",
            Call::Poll { .. } => "poll",
            Call::Mmap { .. } => "mmap",
            Call::Munmap { .. } => "munmap",
            Call::Dup { .. } => "fcntl(F_DUPFD_CLOEXEC)",
        }
    }
}

/// Makes the call; a negative result becomes the `errno` error.
pub(crate) fn syscall(mut call: Call<'_>) -> io::Result<i64> {
    #[cfg(test)]
    if let Some(result) = fake::intercept(&mut call) {
        return result;
    }
    real(&mut call)
}

fn real(call: &mut Call<'_>) -> io::Result<i64> {
    // SAFETY: each arm passes pointers to live, initialised memory of the size the
    // kernel reads (`BpfAttr` and `PerfEventAttr` are `repr(C)` and zero-filled past
    // the fields set); the pointers inside them were set by the callers from buffers
    // that outlive this call. `mmap` and `munmap` are given lengths from the caller,
    // which owns the mapping (see `ringbuf.rs`).
    let ret: i64 = unsafe {
        match call {
            Call::Bpf { cmd, attr } => libc::syscall(
                libc::SYS_bpf,
                *cmd as libc::c_long,
                std::ptr::from_mut::<BpfAttr>(attr),
                std::mem::size_of::<BpfAttr>(),
            ),
            Call::PerfEventOpen {
                attr,
                pid,
                cpu,
                group_fd,
                flags,
            } => libc::syscall(
                libc::SYS_perf_event_open,
                std::ptr::from_ref::<PerfEventAttr>(attr),
                *pid as libc::c_long,
                *cpu as libc::c_long,
                *group_fd as libc::c_long,
                *flags as libc::c_ulong,
            ),
            Call::Ioctl { fd, request, arg } => i64::from(libc::ioctl(
                fd.as_raw_fd(),
                *request as libc::Ioctl,
                *arg as libc::c_ulong,
            )),
            Call::Poll { fd, timeout_ms } => {
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                i64::from(libc::poll(&mut p, 1, *timeout_ms))
            }
            Call::Mmap {
                fd,
                len,
                prot,
                offset,
            } => {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    *len,
                    *prot,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    *offset,
                );
                if p == libc::MAP_FAILED {
                    -1
                } else {
                    p as usize as i64
                }
            }
            Call::Munmap { addr, len } => i64::from(libc::munmap(*addr as *mut libc::c_void, *len)),
            Call::Dup { fd } => i64::from(libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0)),
        }
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor the kernel just returned.
pub(crate) fn owned_fd(ret: i64) -> io::Result<OwnedFd> {
    let raw = i32::try_from(ret)
        .map_err(|_| io::Error::other(format!("descriptor {ret} out of range")))?;
    if raw < 0 {
        return Err(io::Error::other(format!("negative descriptor {raw}")));
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns (in unit
    // tests the fake returns one it opened and gave up).
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

#[cfg(test)]
pub(crate) mod fake {
    //! A per-thread stand-in for the kernel. A test installs a closure that sees each
    //! call (and may write into its attribute block, as the kernel would) and returns
    //! its result; descriptors it returns must be real ones it owns, such as
    //! [`dev_null`], since the code under test will close them.
    use super::*;
    use std::cell::RefCell;

    type Handler = Box<dyn FnMut(&mut Call<'_>) -> io::Result<i64>>;

    thread_local! {
        static FAKE: RefCell<Option<Handler>> = const { RefCell::new(None) };
    }

    pub(crate) fn intercept(call: &mut Call<'_>) -> Option<io::Result<i64>> {
        FAKE.with(|f| f.borrow_mut().as_mut().map(|h| h(call)))
    }

    /// Installs `h` on this thread until the guard drops.
    pub(crate) fn install(h: impl FnMut(&mut Call<'_>) -> io::Result<i64> + 'static) -> Guard {
        FAKE.with(|f| *f.borrow_mut() = Some(Box::new(h)));
        Guard
    }

    pub(crate) struct Guard;

    impl Drop for Guard {
        fn drop(&mut self) {
            FAKE.with(|f| *f.borrow_mut() = None);
        }
    }

    /// A real descriptor to hand back as if the kernel had made it.
    pub(crate) fn dev_null() -> i64 {
        use std::os::fd::IntoRawFd;
        i64::from(
            std::fs::File::open("/dev/null")
                .expect("open /dev/null")
                .into_raw_fd(),
        )
    }

    pub(crate) fn errno(e: i32) -> io::Result<i64> {
        Err(io::Error::from_raw_os_error(e))
    }
}
