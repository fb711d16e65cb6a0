//! Embeds the commit gotap is built from, for `gotap --version`: `GOTAP_COMMIT` from
//! the environment if set (a packager building from a tarball knows it), else what
//! git says about the source tree, else "commit unknown". A build without git, or
//! outside a repository, still works.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-env-changed=GOTAP_COMMIT");
    let commit = std::env::var("GOTAP_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(from_git)
        .unwrap_or_else(|| "commit unknown".to_string());
    println!("cargo::rustc-env=GOTAP_COMMIT={commit}");
}

/// `commit 0123abcd4567 2026-12-04` for the checked-out commit, and the files whose
/// change means another commit (HEAD, and the ref it names), to be watched.
fn from_git() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status.success().then_some(())?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    let commit = git(&["log", "-1", "--format=%h %cs", "--abbrev=12"])?;
    // A file that does not exist would make cargo run this script at every build.
    let watch = |p: PathBuf| {
        if p.exists() {
            println!("cargo::rerun-if-changed={}", p.display());
        }
    };
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    watch(git_dir.join("HEAD"));
    if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
        let common = PathBuf::from(common);
        watch(common.join("packed-refs"));
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            // A worktree's branch lives in the common directory.
            watch(common.join(head));
        }
    }
    Some(format!("commit {commit}"))
}
