//! Processes gotap traces: a command started held (`-c`), so that its probes are armed
//! before its first instruction, and the signals that end a trace (`SIGINT`, `SIGTERM`),
//! read from a `signalfd` so the main loop can wait on them beside the ring buffer.
//! These are process plumbing, not kernel tracing calls: they use libc directly, outside
//! the fakeable `syscall` door, and are tested by starting real processes.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::error::{Error, Result};

/// A child process stopped before `exec`, waiting for [`HeldChild::release`].
#[derive(Debug)]
pub struct HeldChild {
    pid: libc::pid_t,
    gate: Option<OwnedFd>,
    status: Option<ExitStatus>,
}

/// Starts `program` with `args` held: the child is forked and waits, before it executes
/// the program, for gotap to write one byte into a pipe. Its process id is known at once
/// (it keeps it through `exec`), so probes can be scoped to it. If gotap dies before
/// releasing it, the child is killed (`PR_SET_PDEATHSIG`, cleared again once released,
/// so that a released command outlives gotap); one dropped unreleased is killed and
/// reaped. Signals blocked in gotap (see [`Signals`]) are unblocked in the child.
///
/// `std::process::Command` cannot do this: its `spawn` waits until the child has
/// executed the program, so a child held before `exec` would hold gotap too.
pub fn spawn_held(program: &OsStr, args: &[OsString]) -> Result<HeldChild> {
    let path = find_program(program)?;
    let cstr = |s: &OsStr| {
        CString::new(s.as_bytes()).map_err(|_| Error::Invalid(format!("{s:?} has a NUL byte")))
    };
    let c_path = cstr(path.as_os_str())?;
    let mut c_args = vec![cstr(program)?];
    for a in args {
        c_args.push(cstr(a)?);
    }
    let mut c_env = Vec::new();
    for (k, v) in std::env::vars_os() {
        let mut kv = k.into_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        if let Ok(c) = CString::new(kv) {
            c_env.push(c);
        }
    }
    let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = c_env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());

    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::syscall("pipe2", io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: after fork the child calls only async-signal-safe functions (close, prctl,
    // getppid, sigprocmask, read, execve, _exit) on memory prepared before the fork; it
    // allocates nothing and never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::syscall("fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        unsafe {
            libc::close(write.as_raw_fd());
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != parent {
                libc::_exit(127);
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            let mut b = 0u8;
            loop {
                let n = libc::read(read.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                if n == 1 {
                    break;
                }
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                libc::_exit(127);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, 0 as libc::c_ulong, 0, 0, 0);
            libc::execve(c_path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    drop(read);
    Ok(HeldChild {
        pid,
        gate: Some(write),
        status: None,
    })
}

/// The program's path as `execvp` would find it, checked to be executable, so that a
/// mistyped command is an error here rather than an exit status of 127 later.
fn find_program(program: &OsStr) -> Result<PathBuf> {
    let executable = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            // SAFETY: access reads the NUL-terminated path only.
            .is_ok_and(|c| p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0)
    };
    let not_found = |what: &str| Error::Spawn {
        program: Path::new(program).display().to_string(),
        source: io::Error::new(io::ErrorKind::NotFound, what.to_string()),
    };
    if program.as_bytes().contains(&b'/') {
        let p = PathBuf::from(program);
        return if executable(&p) {
            Ok(p)
        } else {
            Err(not_found("no such executable file"))
        };
    }
    let paths = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| not_found("not found in PATH"))
}

impl HeldChild {
    /// The child's process id (and its thread-group id).
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Lets the child execute its program.
    pub fn release(&mut self) -> Result<()> {
        if let Some(gate) = self.gate.take() {
            // SAFETY: writes one byte from a live local to a descriptor we own.
            let n = unsafe { libc::write(gate.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
            if n != 1 {
                return Err(Error::syscall(
                    "write(release pipe)",
                    io::Error::last_os_error(),
                ));
            }
        }
        Ok(())
    }

    fn reap(&mut self, flags: i32) -> Result<Option<ExitStatus>> {
        if self.status.is_some() {
            return Ok(self.status);
        }
        let mut st = 0;
        loop {
            // SAFETY: waits for our own child, writing its status into a local.
            let r = unsafe { libc::waitpid(self.pid, &mut st, flags) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(Error::syscall("waitpid", e));
            }
            if r == 0 {
                return Ok(None);
            }
            self.status = Some(ExitStatus::from_raw(st));
            return Ok(self.status);
        }
    }

    /// The exit status, if the child has ended (reaped); `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.reap(libc::WNOHANG)
    }

    /// Waits for the child to end; one never released is killed first.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        // Killed before the gate closes: a child that saw the gate close first would
        // exit 127 instead, and the status would depend on which came first.
        if self.gate.is_some() {
            self.signal(libc::SIGKILL);
            self.gate = None;
        }
        self.reap(0)?
            .ok_or_else(|| Error::Invalid("waitpid returned no status".into()))
    }

    /// Sends `sig` to the child, unless it was already reaped.
    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: signals our own, not yet reaped, child.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// Ends the child (SIGKILL) and reaps it; for errors before it was released.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.reap(0);
    }
}

impl Drop for HeldChild {
    fn drop(&mut self) {
        if self.gate.is_some() {
            self.kill();
        }
    }
}

/// The exit code a shell would report for `status`: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
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
                return Err(Error::syscall(
                    "pthread_sigmask",
                    io::Error::last_os_error(),
                ));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(Error::syscall("signalfd", io::Error::last_os_error()));
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
            })
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
            (n as usize == std::mem::size_of::<libc::signalfd_siginfo>())
                .then_some(info.ssi_signo as i32)
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
    let mut polls = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 8];
    let n = fds.len().min(polls.len());
    for (p, fd) in polls.iter_mut().zip(fds) {
        *p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "gotap-held-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ))
    }

    #[test]
    fn a_held_child_runs_only_when_released() {
        let m = marker();
        let _ = std::fs::remove_file(&m);
        let mut child = spawn_held("touch".as_ref(), &[m.clone().into()]).expect("spawn");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!m.exists(), "the child ran before it was released");
        assert!(child.try_wait().expect("try_wait").is_none());
        child.release().expect("release");
        let status = child.wait().expect("wait");
        assert!(status.success());
        assert!(m.exists(), "the released child did not run");
        let _ = std::fs::remove_file(&m);
    }

    #[test]
    fn a_child_never_released_never_runs() {
        let m = marker();
        let _ = std::fs::remove_file(&m);
        let mut child = spawn_held("touch".as_ref(), &[m.clone().into()]).expect("spawn");
        let status = child.wait().expect("wait");
        assert_eq!(exit_code(status), 128 + libc::SIGKILL);
        drop(spawn_held("touch".as_ref(), &[m.clone().into()]).expect("spawn"));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!m.exists());
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let err = spawn_held("/nonexistent/gotap-test".as_ref(), &[]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/gotap-test"), "{err}");
    }
}
