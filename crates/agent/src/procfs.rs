//! What `/proc` says about a process: its executable (the path as the process sees
//! it, and the file's device and inode through `/proc/PID/exe`, which reaches into
//! other mount namespaces), its cgroup and the container it names, its mount and pid
//! namespaces, and its start time (so that a reused pid is a new process).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::cgroup;

/// A file, by device and inode (the same across mount namespaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// One process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// `/proc/PID/exe` read as a link: the path inside the process's own root.
    pub exe: String,
    pub file: FileId,
    pub cgroup: String,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub mnt_ns: u64,
    pub pid_ns: u64,
    /// Clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

/// Every process id in `/proc` now.
pub fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The path of `pid`'s executable through procfs: what the kernel, gobin and the
/// uprobe link open, whatever mount namespace the process is in.
pub fn exe_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/exe"))
}

/// Reads `pid`; `None` when it is gone, a kernel thread (no executable), or
/// unreadable.
pub fn read(pid: u32) -> Option<ProcessInfo> {
    let base = format!("/proc/{pid}");
    let exe = inside_root(
        &std::fs::read_link(format!("{base}/exe")).ok()?,
        std::fs::read_link(format!("{base}/root")).ok().as_deref(),
    );
    let meta = std::fs::metadata(format!("{base}/exe")).ok()?;
    let cg_text = std::fs::read_to_string(format!("{base}/cgroup")).unwrap_or_default();
    let cgroup = cgroup::path_of(&cg_text);
    let ids = cgroup::ids(&cgroup);
    let ns = |n: &str| std::fs::metadata(format!("{base}/ns/{n}")).map_or(0, |m| m.ino());
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    Some(ProcessInfo {
        pid,
        exe,
        file: FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        },
        cgroup,
        container_id: ids.container_id,
        pod_uid: ids.pod_uid,
        mnt_ns: ns("mnt"),
        pid_ns: ns("pid"),
        start_time: start_time(&stat)?,
    })
}

/// The executable's path as the process sees it. The kernel writes `/proc/PID/exe`
/// relative to the *reader's* root, so a process chrooted (or pivoted) into a
/// directory the agent can see shows that directory in front: take it off.
pub fn inside_root(exe: &std::path::Path, root: Option<&std::path::Path>) -> String {
    let rel = root
        .filter(|r| *r != std::path::Path::new("/"))
        .and_then(|r| exe.strip_prefix(r).ok());
    match rel {
        Some(rel) => format!("/{}", rel.display()),
        None => exe.display().to_string(),
    }
}

/// Field 22 of `/proc/PID/stat`, counted after the command name's closing
/// parenthesis (the name may hold spaces and parentheses).
pub fn start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// `pid`'s start time alone, cheaper than [`read`]: to tell whether it still runs.
pub fn current_start_time(pid: u32) -> Option<u64> {
    start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_a_command_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_time(stat), Some(987654));
    }

    #[test]
    fn a_chrooted_executable_is_named_as_it_sees_itself() {
        let p = |s: &str| std::path::PathBuf::from(s);
        assert_eq!(
            inside_root(&p("/srv/c1/bin/app"), Some(&p("/srv/c1"))),
            "/bin/app"
        );
        assert_eq!(
            inside_root(&p("/usr/bin/app"), Some(&p("/"))),
            "/usr/bin/app"
        );
        assert_eq!(inside_root(&p("/usr/bin/app"), None), "/usr/bin/app");
        assert_eq!(
            inside_root(&p("/usr/bin/app"), Some(&p("/srv/c1"))),
            "/usr/bin/app"
        );
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = read(std::process::id()).expect("read self");
        assert!(
            me.exe.ends_with(
                &*std::env::current_exe()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
            )
        );
        assert!(me.mnt_ns != 0 && me.pid_ns != 0);
        assert_eq!(current_start_time(me.pid), Some(me.start_time));
        assert!(pids().contains(&me.pid));
        assert!(read(u32::MAX).is_none());
    }
}
