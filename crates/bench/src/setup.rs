//! Everything the comparisons run on, made ready once: gotap built in release mode,
//! bpftrace present, the workload programs built with the newest Go toolchain, the
//! Go distribution's `compile` tool, a DWARF-rich build of `cmd/go`, copies of
//! workloads with a symbol moved onto the address gotap probes (see `elf`), and the
//! seed script pointed at this toolchain's `runtime/stack.go`.

use crate::elf;
use crate::error::{Error, Result};
use crate::exec;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testprogs::{Toolchain, Variant};

pub struct Env {
    pub repo: PathBuf,
    pub work: PathBuf,
    pub gotap: PathBuf,
    pub tc: Toolchain,
    /// Go's own `compile` tool of the newest toolchain, and of Go 1.25 (the issue's
    /// 21 MB binary) when it is installed.
    pub compile: PathBuf,
    pub compile_125: Option<PathBuf>,
    /// `go tool nm`, run directly (not through the `go` command's dispatch).
    pub nm: PathBuf,
    /// Set when gotap could not be built from the working tree and an earlier build
    /// is measured instead: says which, for the report's header.
    pub stale_gotap: Option<String>,
    /// The 1-minute load average when the run began.
    pub load_at_start: String,
}

impl Env {
    pub fn new() -> Result<Env> {
        let repo = testprogs::repo_root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target"));
        let work = target.join("bench");
        std::fs::create_dir_all(&work).map_err(|source| Error::File {
            path: work.clone(),
            source,
        })?;
        let status = Command::new("cargo")
            .args(["build", "--release", "-q", "-p", "gotap"])
            .current_dir(&repo)
            .status()
            .map_err(|source| Error::Spawn {
                command: "cargo build -p gotap".into(),
                source,
            })?;
        let gotap = target.join("release/gotap");
        // Other work in the tree may not build at this moment; an earlier build of
        // gotap is still worth measuring, and the report says so.
        let stale_gotap = if status.success() {
            None
        } else if gotap.exists() {
            let when = std::fs::metadata(&gotap).and_then(|m| m.modified()).ok();
            let age = when
                .and_then(|t| t.elapsed().ok())
                .map(|d| d.as_secs() / 60)
                .unwrap_or(0);
            eprintln!(
                "bench: cargo build -p gotap failed; measuring the existing {} ({age} min old)",
                gotap.display()
            );
            Some(format!(
                "the working tree did not build, so this is the gotap built {age} min before the run"
            ))
        } else {
            return Err(Error::Setup("cargo build --release -p gotap failed".into()));
        };
        if Command::new("bpftrace").arg("--version").output().is_err() {
            return Err(Error::Setup(
                "bpftrace is not installed: run scripts/bench (it installs it)".into(),
            ));
        }
        let tcs = toolchains()?;
        let tc = tcs
            .last()
            .cloned()
            .ok_or_else(|| Error::Setup("no Go toolchain".into()))?;
        let compile = go_tool_path(&tc, "compile")?;
        let compile_125 = tcs
            .iter()
            .find(|t| t.minor == "1.25")
            .and_then(|t| go_tool_path(t, "compile").ok());
        let nm = go_tool_path(&tc, "nm")?;
        Ok(Env {
            repo,
            work,
            gotap,
            tc,
            compile,
            compile_125,
            nm,
            stale_gotap,
            load_at_start: load_average(),
        })
    }

    /// `tests/testprogs/NAME.go` built with the newest toolchain (default variant).
    pub fn program(&self, name: &str) -> Result<PathBuf> {
        let tc = self.tc.clone();
        let name = name.to_string();
        // testprogs::build panics on a failed build (it is made for tests); keep the
        // failure a message here.
        std::panic::catch_unwind(move || testprogs::build(&name, &tc, Variant::Default))
            .map_err(|_| Error::Setup("building a workload failed (see the message above)".into()))
    }

    /// A copy of `exe` whose symbol `func` starts at the function's first `push rbp`
    /// (Go's frame set-up after the stack check), and the offset of that instruction.
    pub fn pushrbp_copy(&self, exe: &Path, func: &str) -> Result<(PathBuf, u64)> {
        self.copy_at(exe, func, "pushrbp", |_, text| text.starts_with("PUSHQ BP"))
    }

    /// A copy of `exe` whose symbol `func` starts at the first instruction of `line`
    /// (in the function's file), and that offset.
    pub fn statement_copy(&self, exe: &Path, func: &str, line: u32) -> Result<(PathBuf, u64)> {
        self.copy_at(exe, func, &format!("line{line}"), |l, _| l == line)
    }

    /// A copy of `exe` whose symbol `func` starts at the function's first `RET`, and
    /// that offset.
    pub fn ret_copy(&self, exe: &Path, func: &str) -> Result<(PathBuf, u64)> {
        self.copy_at(exe, func, "ret", |_, text| text.starts_with("RET"))
    }

    /// A copy of `exe` whose symbol `func` starts at its first instruction for which
    /// `at(line, text)` holds (as `go tool objdump` prints it), and that offset: how
    /// bpftrace, which takes no offsets, is put on the instruction gotap probes.
    fn copy_at(
        &self,
        exe: &Path,
        func: &str,
        what: &str,
        at: impl Fn(u32, &str) -> bool,
    ) -> Result<(PathBuf, u64)> {
        let lines = self.objdump(exe, func)?;
        let entry = lines
            .first()
            .map(|(a, _, _)| *a)
            .ok_or_else(|| Error::Setup(format!("{func}: no code")))?;
        let addr = lines
            .iter()
            .find(|(a, l, text)| *a >= entry && at(*l, text))
            .map(|(a, _, _)| *a)
            .ok_or_else(|| Error::Setup(format!("{func}: no instruction for {what}")))?;
        let out = self.copy_path(exe, what);
        elf::moved_symbol_copy(exe, &out, func, addr - entry)?;
        Ok((out, addr - entry))
    }

    /// A copy of `exe` in which each `(symbol, func, instruction)` makes `symbol`
    /// start at the first instruction of `func` whose text starts with `instruction`
    /// (`PUSHQ BP`, `RET`), and those offsets into each `func`, in order. A `func`
    /// with more than one such `RET` is refused: bpftrace would miss the others.
    pub fn aimed_copy(
        &self,
        exe: &Path,
        what: &str,
        aims: &[(&str, &str, &str)],
    ) -> Result<(PathBuf, Vec<u64>)> {
        let mut offsets = Vec::new();
        for (_, func, insn) in aims {
            let lines = self.objdump(exe, func)?;
            let entry = lines
                .first()
                .map(|(a, _, _)| *a)
                .ok_or_else(|| Error::Setup(format!("{func}: no code")))?;
            let at: Vec<u64> = lines
                .iter()
                .filter(|(_, _, text)| text.starts_with(insn))
                .map(|(a, _, _)| *a - entry)
                .collect();
            match (at.first(), at.len()) {
                (None, _) => return Err(Error::Setup(format!("{func}: no {insn}"))),
                (Some(_), n) if n > 1 && *insn == "RET" => {
                    return Err(Error::Setup(format!("{func}: {n} RETs, one wanted")));
                }
                (Some(off), _) => offsets.push(*off),
            }
        }
        let edits: Vec<(&str, &str, u64)> = aims
            .iter()
            .zip(&offsets)
            .map(|((symbol, func, _), off)| (*symbol, *func, *off))
            .collect();
        let out = self.copy_path(exe, what);
        elf::aimed_copy(exe, &out, &edits)?;
        Ok((out, offsets))
    }

    fn copy_path(&self, exe: &Path, what: &str) -> PathBuf {
        let name = exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = exe
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.work.join(format!("{parent}-{name}-{what}"))
    }

    /// `go tool objdump -s '^FUNC$'`: (address, line, instruction text) per instruction.
    fn objdump(&self, exe: &Path, func: &str) -> Result<Vec<(u64, u32, String)>> {
        let re = format!(
            "^{}$",
            func.replace('.', "\\.")
                .replace('(', "\\(")
                .replace(')', "\\)")
                .replace('*', "\\*")
        );
        let mut cmd = self.tc.go_command();
        cmd.args(["tool", "objdump", "-s", &re]).arg(exe);
        let f = exec::run(&mut cmd, Duration::from_secs(120))?;
        let mut out = Vec::new();
        for (_, l) in &f.lines {
            let cols: Vec<&str> = l
                .split('\t')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            let (Some(fl), Some(addr), Some(text)) = (cols.first(), cols.get(1), cols.get(3))
            else {
                continue;
            };
            let Some(line) = fl.rsplit(':').next().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr.trim_start_matches("0x"), 16) else {
                continue;
            };
            out.push((addr, line, text.to_string()));
        }
        Ok(out)
    }

    /// The seed's probe line: the first line of `runtime.newstack` that has code, at
    /// or after `gp := thisg.m.curg` (as scripts/seed chooses it), from `gotap -l`.
    pub fn seed_line(&self, exe: &Path) -> Result<u32> {
        let stack = self.tc.goroot().join("src/runtime/stack.go");
        let text = std::fs::read_to_string(&stack).map_err(|source| Error::File {
            path: stack.clone(),
            source,
        })?;
        let gp = text
            .lines()
            .position(|l| l.contains("gp := thisg.m.curg"))
            .ok_or_else(|| Error::Setup(format!("{}: no `gp := thisg.m.curg`", stack.display())))?
            as u32
            + 1;
        let probe = format!(
            "process(\"{}\").statement(\"runtime.newstack@runtime/stack.go:*\")",
            exe.display()
        );
        let f = exec::run(
            Command::new(&self.gotap).args(["-l", &probe]),
            Duration::from_secs(60),
        )?;
        let mut lines: Vec<u32> = f
            .lines
            .iter()
            .filter_map(|(_, l)| {
                l.trim_end_matches("\")")
                    .rsplit(':')
                    .next()
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        lines.sort_unstable();
        lines
            .into_iter()
            .find(|l| *l >= gp)
            .ok_or_else(|| Error::Setup(format!("no statement line at or after {gp}")))
    }

    /// `cmd/go` built with the newest toolchain, with DWARF, cached under target/bench.
    pub fn gocmd(&self) -> Result<PathBuf> {
        let out = self.work.join(format!("gocmd-{}", self.tc.version));
        if out.exists() {
            return Ok(out);
        }
        let mut cmd = self.tc.go_command();
        cmd.args(["build", "-o"]).arg(&out).arg("cmd/go");
        exec::run(&mut cmd, Duration::from_secs(1200))?;
        Ok(out)
    }
}

fn toolchains() -> Result<Vec<Toolchain>> {
    std::panic::catch_unwind(testprogs::toolchains)
        .map_err(|_| Error::Setup("no Go toolchain: run scripts/install-toolchains".into()))
}

fn go_tool_path(tc: &Toolchain, tool: &str) -> Result<PathBuf> {
    let mut cmd = tc.go_command();
    cmd.args(["tool", "-n", tool]);
    let f = exec::run(&mut cmd, Duration::from_secs(60))?;
    let p = f
        .lines
        .first()
        .map(|(_, l)| PathBuf::from(l.trim()))
        .filter(|p| p.exists());
    p.ok_or_else(|| Error::Setup(format!("go{} tool -n {tool}: no such tool", tc.minor)))
}

/// What the machine is: for the report's header.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb = meminfo
        .lines()
        .find_map(|l| exec::number_after(l, "MemTotal:"))
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB memory, Linux {}",
        mem_kb / 1024.0 / 1024.0,
        kernel.trim()
    )
}

/// Today's date and time (UTC), from `date`, for the report's header.
pub fn now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The version line of a tool (`bpftrace --version`, `go version`).
pub fn version_of(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The 1-minute load average, from /proc/loadavg.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}
