//! Signals for a long-running service (`gotap agent`): `SIGINT`, `SIGTERM` and
//! `SIGHUP` blocked in every thread and read from a `signalfd` by the main loop,
//! every one of them, none fatal. The one-shot commands use [`crate::Signals`]
//! instead, whose watcher thread ends gotap at once outside a trace and on a second
//! signal; a service must instead reload on every SIGHUP and flush on SIGTERM
//! whatever came before, so it owns the descriptor itself. A process uses one or the
//! other, never both: two readers of the same signals would take them from each
//! other.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};

/// The service's signals.
#[derive(Debug)]
pub struct ServiceSignals {
    fd: OwnedFd,
}

/// A signal the service acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceSignal {
    /// `SIGHUP`: read the configuration again.
    Reload,
    /// `SIGTERM` or `SIGINT`: flush and exit.
    Stop,
}

impl ServiceSignals {
    /// Blocks the signals in this thread, and so in every thread started after: call
    /// it before any other thread starts.
    pub fn new() -> Result<ServiceSignals> {
        // SAFETY: the set is initialised by sigemptyset before use; the calls only
        // read the set and write the old mask to null; signalfd returns a new
        // descriptor that nothing else owns.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, s);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(Error::syscall(
                    "pthread_sigmask",
                    io::Error::last_os_error(),
                ));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(Error::syscall("signalfd", io::Error::last_os_error()));
            }
            Ok(ServiceSignals {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    /// The next waiting signal, without waiting.
    pub fn pending(&self) -> Option<ServiceSignal> {
        // SAFETY: signalfd_siginfo is plain data; read writes at most its size.
        let signo = unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let n = libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            );
            if n as usize != std::mem::size_of::<libc::signalfd_siginfo>() {
                return None;
            }
            info.ssi_signo as i32
        };
        Some(if signo == libc::SIGHUP {
            ServiceSignal::Reload
        } else {
            ServiceSignal::Stop
        })
    }
}

impl AsFd for ServiceSignals {
    /// Readable when a signal waits.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every signal reaches the loop, in any number and order; none ends the process.
    /// In a child process of its own, since the mask and the signals are process-wide.
    #[test]
    fn every_signal_is_handed_over_and_none_is_fatal() {
        if std::env::var_os("GOTAP_SERVICE_SIGNALS_CHILD").is_some() {
            let s = ServiceSignals::new().expect("signals");
            let me = std::process::id() as libc::c_long;
            let mut got = Vec::new();
            for sig in [libc::SIGHUP, libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
                // To this thread, which blocks it (the test harness's other threads
                // do not, and a process-wide signal could go to one of them).
                // SAFETY: gettid and tgkill take plain integers.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid);
                    libc::syscall(libc::SYS_tgkill, me, tid, sig as libc::c_long);
                }
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                loop {
                    if let Some(x) = s.pending() {
                        got.push(x);
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "signal {sig} not read"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            use ServiceSignal::*;
            assert_eq!(got, [Reload, Reload, Stop, Stop]);
            return;
        }
        let exe = std::env::current_exe().expect("test executable");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "service::tests::every_signal_is_handed_over_and_none_is_fatal",
            ])
            .env("GOTAP_SERVICE_SIGNALS_CHILD", "1")
            .output()
            .expect("run the child");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
