//! Releasing probes without waiting for the kernel.
//!
//! Closing the last descriptor of a uprobe link (or a perf event with a program)
//! waits for an RCU grace period, 25–100 ms here, in uninterruptible sleep; at a
//! process's exit the same wait happens in the exit path, so whoever waits for the
//! process (a shell, a test) waits too. gotap promises to end within 100 ms of a
//! signal, so when it ends by one it hands its descriptors to a child of its own:
//! the child holds a copy of every descriptor, the parent closes its copies (cheap:
//! they are not the last), and the child closes the last ones when told, paying the
//! grace period where nobody waits for it. The child closes its standard streams at
//! once (a reader of gotap's output sees the end when gotap ends), keeps every
//! signal blocked as the forking thread had them, and calls nothing but
//! async-signal-safe functions.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::error::{Error, Result};

/// Whether this process has placed a probe (a uprobe or a sampling event with a
/// program): only then is there a grace period to hand off at exit.
static PLACED: AtomicBool = AtomicBool::new(false);

/// Notes that a probe was placed ([`placed`]).
pub(crate) fn note_placed() {
    PLACED.store(true, Ordering::Relaxed);
}

/// Whether a probe was placed by this process (it may have been released since).
pub fn placed() -> bool {
    PLACED.load(Ordering::Relaxed)
}

/// A child holding a copy of every descriptor of this process, to close the last
/// ones when told ([`HandOff::go`]) or when this process is gone.
#[derive(Debug)]
pub struct HandOff {
    pid: libc::pid_t,
    /// Readable once the child has exited.
    pidfd: OwnedFd,
    /// Closing it tells the child to go.
    gate: Option<OwnedFd>,
    reaped: bool,
}

/// When the child lets its copies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// When [`HandOff::go`] is called (or the handle is dropped, or this process
    /// ends): the caller closes its own copies first.
    Told,
    /// When this process has ended entirely (its descriptors closed by the kernel):
    /// for a process about to exit.
    Exited,
}

/// Starts the child (see the module's documentation).
pub fn hand_off(when: When) -> Result<HandOff> {
    let (read, write) = crate::process::pipe(libc::O_CLOEXEC)?;
    // The fd the child waits on: the gate's read end, or this process's pidfd, which
    // becomes readable only once the whole process has exited.
    let own = if when == When::Exited {
        Some(pidfd_open(std::process::id() as libc::pid_t)?)
    } else {
        None
    };
    let wait_on = own.as_ref().unwrap_or(&read).as_raw_fd();
    let gate = write.as_raw_fd();
    // SAFETY: after fork the child calls only async-signal-safe functions (close,
    // poll, _exit) on values prepared before the fork; it allocates nothing and
    // never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::syscall("fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        unsafe {
            for fd in [0, 1, 2, gate] {
                libc::close(fd);
            }
            let mut p = libc::pollfd {
                fd: wait_on,
                events: libc::POLLIN,
                revents: 0,
            };
            while libc::poll(&mut p, 1, -1) < 0 {}
            libc::_exit(0);
        }
    }
    drop(read);
    drop(own);
    Ok(HandOff {
        pid,
        pidfd: pidfd_open(pid)?,
        gate: Some(write),
        reaped: false,
    })
}

impl HandOff {
    /// Tells the child to close its copies (call it once this process's own are
    /// closed) and exit.
    pub fn go(&mut self) {
        self.gate = None;
    }

    /// Waits for the child to have closed everything and exited, until `deadline`;
    /// whether it did (it is reaped then).
    pub fn wait_until(&mut self, deadline: Instant) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut p = libc::pollfd {
                fd: self.pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX);
            // SAFETY: polls one live descriptor through a local pollfd.
            let n = unsafe { libc::poll(&mut p, 1, ms) };
            if n > 0 {
                let mut st = 0;
                // SAFETY: reaps our own child into a local.
                self.reaped =
                    unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG) } == self.pid;
                return true;
            }
            if n == 0 && Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }
}

fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::syscall("pidfd_open", io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_child_waits_until_told_and_then_exits() {
        let mut h = hand_off(When::Told).expect("fork");
        assert!(!h.wait_until(Instant::now() + Duration::from_millis(50)));
        h.go();
        assert!(h.wait_until(Instant::now() + Duration::from_secs(5)));
        assert!(h.reaped);
    }
}
