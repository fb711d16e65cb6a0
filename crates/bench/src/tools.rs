//! The two tracers as commands: gotap running a script or `funccount` on a command it
//! starts (`-c`), and bpftrace doing the same. Both start the command held and let it
//! run once their probes are armed, so the command's own output tells when that was.

use crate::setup::Env;
use std::path::Path;
use std::process::Command;

/// `gotap [-o OUT] -e SCRIPT -c CMD`.
pub fn gotap_script(env: &Env, script: &str, cmd: &str, out: Option<&Path>) -> Command {
    let mut c = Command::new(&env.gotap);
    if let Some(o) = out {
        c.arg("-o").arg(o);
    }
    c.args(["-e", script, "-c", cmd]);
    c
}

/// `gotap funccount -v -c CMD PATTERN`.
pub fn gotap_funccount(env: &Env, pattern: &str, cmd: &str) -> Command {
    let mut c = Command::new(&env.gotap);
    c.args(["funccount", "-v", "-c", cmd, pattern]);
    c
}

/// `bpftrace [-o OUT] -e SCRIPT -c CMD`.
pub fn bpftrace(script: &str, cmd: &str, out: Option<&Path>) -> Command {
    let mut c = bpftrace_bare();
    if let Some(o) = out {
        c.arg("-o").arg(o);
    }
    c.args(["-e", script, "-c", cmd]);
    c
}

/// A command line for `-c`: the program and its arguments.
pub fn cmdline(exe: &Path, args: &[&str]) -> String {
    let mut s = exe.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// `bpftrace`, allowed as many probes and programs as a wildcard finds (its default
/// limits are 512 of each).
pub fn bpftrace_bare() -> Command {
    let mut c = Command::new("bpftrace");
    c.env("BPFTRACE_MAX_PROBES", "100000")
        .env("BPFTRACE_MAX_BPF_PROGS", "100000");
    c
}
