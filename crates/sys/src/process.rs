//! Processes gotap traces: a command started held (`-c`), so that its probes are armed
//! before its first instruction, and the signals that end a trace (`SIGINT`, `SIGTERM`),
//! read from a `signalfd` so the main loop can wait on them beside the ring buffer.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use crate::error::{Error, Result};

/// A child process stopped before `exec`, waiting for [`HeldChild::release`].
#[derive(Debug)]
pub struct HeldChild {
    child: Child,
    gate: Option<OwnedFd>,
}

/// Starts `cmd` held: the child is forked and waits, before it executes the program, for
/// gotap to write one byte into a pipe. Its process id is known at once (it keeps it
/// through `exec`), so probes can be scoped to it. If gotap dies before releasing it,
/// the pipe closes and the child exits with status 127 without running the program.
/// Signals blocked in gotap (see [`Signals`]) are unblocked in the child.
pub fn spawn_held(cmd: &mut Command) -> Result<HeldChild> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::syscall("pipe2", io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let (read_raw, write_raw) = (read.as_raw_fd(), write.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (close, read, sigprocmask, _exit) on its own copies
    // of the descriptors; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            libc::close(write_raw);
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            let mut b = 0u8;
            loop {
                let n = libc::read(read_raw, (&mut b as *mut u8).cast(), 1);
                if n == 1 {
                    break;
                }
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                libc::_exit(127);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| Error::Spawn {
        program: format!("{:?}", cmd.get_program()),
        source: e,
    })?;
    drop(read);
    Ok(HeldChild { child, gate: Some(write) })
}

impl HeldChild {
    /// The child's process id (and its thread-group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the child execute its program.
    pub fn release(&mut self) -> Result<()> {
        if let Some(gate) = self.gate.take() {
            // SAFETY: writes one byte from a live local to a descriptor we own.
            let n = unsafe { libc::write(gate.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
            if n != 1 {
                return Err(Error::syscall("write(release pipe)", io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// The exit status, if the child has ended (reaped); `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child.try_wait().map_err(|e| Error::syscall("waitpid", e))
    }

    /// Waits for the child to end.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.gate = None;
        self.child.wait().map_err(|e| Error::syscall("waitpid", e))
    }

    /// Ends the child (SIGKILL) and reaps it; for errors before it was released.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The exit code a shell would report for `status`: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `SIGINT`, `SIGTERM` and `SIGHUP`, blocked for the whole process and read from a
/// `signalfd` instead of interrupting it. Create it before any other thread starts so
/// that every thread inherits the mask.
#[derive(Debug)]
pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    pub fn new() -> Result<Signals> {
        // SAFETY: the set is initialised by sigemptyset before use; the calls only
        // read the set and write the old mask to null.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, s);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(Error::syscall("pthread_sigmask", io::Error::last_os_error()));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(Error::syscall("signalfd", io::Error::last_os_error()));
            }
            Ok(Signals { fd: OwnedFd::from_raw_fd(fd) })
        }
    }

    /// The signal that arrived, if any, without waiting.
    pub fn pending(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data; read writes at most its size.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let n = libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            );
            (n as usize == std::mem::size_of::<libc::signalfd_siginfo>()).then_some(info.ssi_signo as i32)
        }
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout` passes; returns which are.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration, ready: &mut [bool]) -> Result<()> {
    let mut polls = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 8];
    let n = fds.len().min(polls.len());
    for (p, fd) in polls.iter_mut().zip(fds) {
        *p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    }
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `polls[..n]` is a live array of initialised pollfd structs.
    let r = unsafe { libc::poll(polls.as_mut_ptr(), n as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::syscall("poll", e));
        }
    }
    for (r, p) in ready.iter_mut().zip(&polls[..n]) {
        *r = p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    }
    Ok(())
}
