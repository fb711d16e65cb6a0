//! Processes gotap traces and the signals that end a trace. A command is started held
//! (`-c`), so that its probes are armed before its first instruction, and it never
//! outlives gotap: it is stopped and reaped when gotap ends, and killed by the kernel
//! if gotap is killed. `SIGINT`, `SIGTERM` and `SIGHUP` are read by a thread of their
//! own from a `signalfd`, so that they are answered whatever the main thread is doing
//! (a compile that runs for minutes, a system call that takes long): see [`Signals`].
//! These are process plumbing, not kernel tracing calls: they use libc directly, outside
//! the fakeable `syscall` door, and are tested by starting real processes.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::time::{Duration, Instant};

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
/// (it keeps it through `exec`), so probes can be scoped to it. If gotap dies, even by
/// `SIGKILL`, the kernel kills the child (`PR_SET_PDEATHSIG`, set before `exec` and
/// kept through it, as bpftrace and stap do). That signal comes when the *thread* that
/// forked the child ends, not the process: call this from the main thread, which lives
/// as long as gotap. One dropped unreleased is killed and reaped. Signals blocked in
/// gotap (see [`Signals`]) are unblocked in the child. The child is the one [`Signals`]
/// stops when a signal ends gotap at once.
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

    let (read, write) = pipe(libc::O_CLOEXEC)?;
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
            libc::execve(c_path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    drop(read);
    CHILD.store(pid, Ordering::SeqCst);
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
            let _ = CHILD.compare_exchange(self.pid, 0, Ordering::SeqCst, Ordering::SeqCst);
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

    /// Whether the child has ended and been reaped.
    pub fn reaped(&self) -> bool {
        self.status.is_some()
    }

    /// Whether the child was released to run its program.
    pub fn released(&self) -> bool {
        self.gate.is_none()
    }

    /// Stops the child as bpftrace does when a trace ends before it: `SIGTERM`, then
    /// `SIGKILL` if it still runs after `grace`; reaped either way. One never
    /// released is killed at once. The status is the child's, whether it ended by
    /// itself before or by the signal.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        if self.gate.is_some() {
            return self.wait();
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.signal(libc::SIGKILL);
        self.wait()
    }
}

impl Drop for HeldChild {
    /// A child never released is killed; one released and still running is stopped
    /// ([`HeldChild::stop`]): it never outlives the trace that started it.
    fn drop(&mut self) {
        if self.gate.is_some() {
            self.kill();
        } else if self.status.is_none() {
            let _ = self.stop(Duration::from_millis(500));
        }
    }
}

/// The exit code a shell would report for `status`: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The `-c` child a signal stops when it ends gotap at once (0: none).
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Where a run is, for the signal thread: before the trace, during it, or after it.
static PHASE: AtomicU8 = AtomicU8::new(SETUP);
const SETUP: u8 = 0;
const TRACE: u8 = 1;
const ENDING: u8 = 2;

/// How long a child stopped by a signal that ends gotap at once gets to exit after
/// `SIGTERM` before `SIGKILL`: short, since gotap promises to end within 100 ms.
const AT_ONCE_GRACE: Duration = Duration::from_millis(20);

/// `SIGINT`, `SIGTERM` and `SIGHUP`, as gotap answers them. They are blocked in every
/// thread and read from a `signalfd` by a thread of their own, so a signal is seen
/// whatever the main thread is doing, and nothing there needs to check a flag.
///
/// - Before and after a trace (parse, compile, load, attach; detach, end probes), a
///   signal ends gotap at once: the `-c` child is stopped (`SIGTERM`, then `SIGKILL`
///   20 ms later) and reaped, and gotap exits with 128 + the signal's number. Probes
///   and programs go with the process's file descriptors.
/// - During a trace ([`trace_begins`]), the first signal is handed to the main
///   loop, which sees [`Signals::as_fd`] readable and ends the trace in order (detach,
///   drain, end probes, the summary). Any later signal ends gotap at once, with what
///   it has printed.
///
/// `-x` targets are never signalled. One watcher serves the whole process: every
/// [`Signals::new`] after the first returns a handle to the same one.
#[derive(Debug, Clone, Copy)]
pub struct Signals {
    /// The read end of the pipe the watcher writes a trace's first signal into.
    handed: BorrowedFd<'static>,
}

impl Signals {
    /// Blocks the signals and starts the watcher. Call it before any other thread
    /// starts, so that every thread inherits the mask.
    pub fn new() -> Result<Signals> {
        static HANDED: OnceLock<OwnedFd> = OnceLock::new();
        if let Some(fd) = HANDED.get() {
            return Ok(Signals { handed: fd.as_fd() });
        }
        let signalfd = blocked_signals()?;
        let (read, write) = pipe(libc::O_CLOEXEC | libc::O_NONBLOCK)?;
        std::thread::Builder::new()
            .name("gotap-signals".into())
            .spawn(move || watch(signalfd, write))
            .map_err(|e| Error::syscall("pthread_create", e))?;
        let fd = HANDED.get_or_init(|| read);
        Ok(Signals { handed: fd.as_fd() })
    }

    /// The signal handed to the main loop, if one was, without waiting.
    pub fn pending(&self) -> Option<i32> {
        let mut b = 0u8;
        // SAFETY: reads at most one byte into a live local.
        let n = unsafe { libc::read(self.handed.as_raw_fd(), (&mut b as *mut u8).cast(), 1) };
        (n == 1).then_some(i32::from(b))
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.handed
    }
}

/// The trace begins (its first probes are placed): the next signal is the main
/// loop's, to end the trace in order. See [`Signals`]. Once begun (or over) it is not
/// begun again, so a signal already handed over keeps the next one fatal.
pub fn trace_begins() {
    let _ = PHASE.compare_exchange(SETUP, TRACE, Ordering::SeqCst, Ordering::SeqCst);
}

/// The trace is over, by a signal or not: any signal from now on ends gotap at once.
pub fn trace_ends() {
    PHASE.store(ENDING, Ordering::SeqCst);
}

/// Blocks `SIGINT`, `SIGTERM` and `SIGHUP` in this thread (and so in every thread it
/// starts) and returns a `signalfd` that reads them.
fn blocked_signals() -> Result<OwnedFd> {
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
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(Error::syscall("signalfd", io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// A new pipe with `flags` (`pipe2`): its read end and its write end.
pub(crate) fn pipe(flags: i32) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), flags) } < 0 {
        return Err(Error::syscall("pipe2", io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The signal thread: hands a trace's first signal to the main loop, and ends gotap
/// at once on any other.
fn watch(signalfd: OwnedFd, handed: OwnedFd) {
    loop {
        let sig = read_signal(&signalfd);
        let to_loop = PHASE
            .compare_exchange(TRACE, ENDING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if to_loop {
            let b = u8::try_from(sig).unwrap_or(libc::SIGTERM as u8);
            // SAFETY: writes one byte from a live local to a descriptor we own.
            if unsafe { libc::write(handed.as_raw_fd(), (&b as *const u8).cast(), 1) } == 1 {
                continue;
            }
        }
        stop_child();
        // Probes go with the descriptors: a child of ours closes the last copies once
        // this process is gone, so that its exit does not wait for the kernel.
        if crate::handoff::placed() {
            let _ = crate::handoff::hand_off(crate::handoff::When::Exited);
        }
        std::process::exit(128 + sig);
    }
}

/// The next signal from `signalfd`, waiting for it.
fn read_signal(signalfd: &OwnedFd) -> i32 {
    loop {
        // SAFETY: signalfd_siginfo is plain data; read writes at most its size.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let n = libc::read(
                signalfd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            );
            if n as usize == std::mem::size_of::<libc::signalfd_siginfo>() {
                return info.ssi_signo as i32;
            }
        }
    }
}

/// Stops and reaps the `-c` child, if one runs, from the signal thread: `SIGTERM`, and
/// `SIGKILL` after [`AT_ONCE_GRACE`]. A child the main thread reaps meanwhile is
/// gone either way (`waitpid` then fails with `ECHILD`).
fn stop_child() {
    let pid = CHILD.swap(0, Ordering::SeqCst);
    if pid <= 0 {
        return;
    }
    let reaped = |flags| {
        let mut st = 0;
        // SAFETY: waits for our own child, writing its status into a local.
        let r = unsafe { libc::waitpid(pid, &mut st, flags) };
        r == pid || (r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
    };
    // SAFETY: signals our own child, not yet reaped by this thread.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + AT_ONCE_GRACE;
    while Instant::now() < deadline {
        if reaped(libc::WNOHANG) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    while !reaped(0) {}
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
    fn a_child_is_stopped_with_sigterm_and_one_that_ignores_it_with_sigkill() {
        let mut polite = spawn_held("sleep".as_ref(), &["30".into()]).expect("spawn");
        polite.release().expect("release");
        let status = polite.stop(Duration::from_secs(5)).expect("stop");
        assert_eq!(exit_code(status), 128 + libc::SIGTERM);
        let args: Vec<OsString> = vec!["-c".into(), "trap '' TERM; exec sleep 30".into()];
        let mut stubborn = spawn_held("sh".as_ref(), &args).expect("spawn");
        stubborn.release().expect("release");
        // Give the shell the time to set its trap before it is signalled.
        std::thread::sleep(Duration::from_millis(200));
        let status = stubborn.stop(Duration::from_millis(100)).expect("stop");
        assert_eq!(exit_code(status), 128 + libc::SIGKILL);
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let err = spawn_held("/nonexistent/gotap-test".as_ref(), &[]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/gotap-test"), "{err}");
    }
}
