//! The command line, in SystemTap's words where it has them (`-e`, `-c`, `-x`, `-o`,
//! `-v`, `-l`, `-L`), plus the ready tools as subcommands (`gotap funccount …`).

use anyhow::{Context, Result, bail};
use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: gotap [OPTIONS] SCRIPT.stp [ARGS...]
       gotap [OPTIONS] -e 'SCRIPT' [ARGS...]
       gotap -l|-L 'process(\"BIN\").function(\"PATTERN\")'
       gotap funccount [-x PID | -c CMD | BIN] [-i SECS] PATTERN...
       gotap stackgrow [-x PID | -c CMD | BIN] [--every N] [--top K] [--folded F] [--svg F] [--json] [--time]
       gotap gcstat [-x PID | -c CMD | BIN] [--json]
       gotap goroutines [-x PID | -c CMD | BIN] [-i SECS] [--top K] [--json]
       gotap agent [--config FILE] [--prometheus ADDR] [--otlp URL] [SELECTS] [--check-config]
       gotap --tapset

options:
  -e SCRIPT    run SCRIPT given on the command line
  -c CMD       start CMD, trace it, and exit when it exits (sets target())
  -x PID       trace process PID only (sets target())
  -o FILE      write the output to FILE
  --folded FILE  at the end, write the stacks counted by ubacktrace() keys as
               collapsed stacks (root;...;leaf count)
  --svg FILE   at the end, write them as a flame graph
  -v           say more about what is done
  -d STAGE     print a stage of the compilation: ast, types, ir, bpf, verifier
  -D NAME=N    set a limit: MAXSTRINGLEN (bytes of a string, 128), MAXPRINTFLEN
               (bytes one printf prints, 8192)
  -l PROBE     list the probe points that match PROBE
  -L PROBE     list them with the variables in scope and their Go types
  -h, --help   this text

tools:
  funccount    count calls of Go functions, in the kernel
  stackgrow    goroutine stack growths: sizes, who grows, time spent (the go.stack.grow probe)
  gcstat       each GC cycle with its duration and pauses, and a summary
  goroutines   live goroutines over time, and where the live ones were created
  agent        trace every Go process on the host and export metrics (gotap agent -h)
  --tapset     print the Go runtime tapset (go.stack.grow, go.gc.*, go.goroutine.*, …)";

/// Where the events come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// Every process that runs the binaries the probes name.
    #[default]
    Any,
    /// `-x PID`: one process.
    Pid(u32),
    /// `-c CMD`: a command started, held, then released once the probes are armed.
    Command(String),
}

#[derive(Debug, Default)]
pub struct ScriptArgs {
    pub source: Option<ScriptSource>,
    pub args: Vec<String>,
    pub target: Target,
    pub output: Option<PathBuf>,
    pub verbose: u8,
    pub dump: Vec<String>,
    /// `-D NAME=VALUE`: a limit, as stap's (`MAXSTRINGLEN`, `MAXPRINTFLEN`).
    pub defines: Vec<String>,
    /// `--folded FILE`: collapsed stacks of `ubacktrace()`-keyed globals at the end.
    pub folded: Option<PathBuf>,
    /// `--svg FILE`: the same as a flame graph.
    pub svg: Option<PathBuf>,
}

#[derive(Debug)]
pub enum ScriptSource {
    File(PathBuf),
    Inline(String),
}

#[derive(Debug)]
pub struct FunccountArgs {
    pub target: Target,
    pub binary: Option<PathBuf>,
    pub interval: Option<u64>,
    pub patterns: Vec<String>,
    pub verbose: u8,
}

#[derive(Debug)]
pub enum Command {
    Help,
    List { probe: String, verbose: bool },
    Script(ScriptArgs),
    Funccount(FunccountArgs),
    Tapset,
    Tool(crate::tools::ToolArgs),
    Agent(crate::agent::AgentArgs),
}

pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Command> {
    let mut p = lexopt::Parser::from_args(argv);
    let mut s = ScriptArgs::default();
    loop {
        let Some(arg) = p.next()? else { break };
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("tapset") => return Ok(Command::Tapset),
            Short('l') => {
                return Ok(Command::List {
                    probe: p.value()?.string()?,
                    verbose: false,
                });
            }
            Short('L') => {
                return Ok(Command::List {
                    probe: p.value()?.string()?,
                    verbose: true,
                });
            }
            Short('e') => s.source = Some(ScriptSource::Inline(p.value()?.string()?)),
            Short('c') => set_target(&mut s.target, Target::Command(p.value()?.string()?))?,
            Short('x') => set_target(&mut s.target, Target::Pid(parse_pid(p.value()?)?))?,
            Short('o') => s.output = Some(p.value()?.into()),
            Long("folded") => s.folded = Some(p.value()?.into()),
            Long("svg") => s.svg = Some(p.value()?.into()),
            Short('v') => s.verbose += 1,
            Short('d') => s.dump.push(p.value()?.string()?),
            Short('D') => s.defines.push(p.value()?.string()?),
            Value(v) => {
                let v = v.string()?;
                if s.source.is_none() && s.args.is_empty() && v == "agent" {
                    return Ok(Command::Agent(crate::agent::parse(&mut p, s.verbose)?));
                }
                if s.source.is_none() && s.args.is_empty() && v == "funccount" {
                    return parse_funccount(&mut p, s.verbose);
                }
                if s.source.is_none()
                    && s.args.is_empty()
                    && crate::tools::NAMES.contains(&v.as_str())
                {
                    return Ok(Command::Tool(crate::tools::parse(&v, &mut p, s.verbose)?));
                }
                if s.source.is_none() {
                    s.source = Some(ScriptSource::File(v.into()));
                } else {
                    s.args.push(v);
                }
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if s.source.is_none() {
        bail!("no script given\n\n{USAGE}");
    }
    Ok(Command::Script(s))
}

fn parse_funccount(p: &mut lexopt::Parser, verbose: u8) -> Result<Command> {
    let mut a = FunccountArgs {
        target: Target::Any,
        binary: None,
        interval: None,
        patterns: Vec::new(),
        verbose,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Short('x') => set_target(&mut a.target, Target::Pid(parse_pid(p.value()?)?))?,
            Short('c') => set_target(&mut a.target, Target::Command(p.value()?.string()?))?,
            Short('i') => {
                let v = p.value()?.string()?;
                let secs: u64 =
                    v.parse().ok().filter(|s| *s > 0).with_context(|| {
                        format!("-i takes a whole number of seconds, not {v:?}")
                    })?;
                a.interval = Some(secs);
            }
            Short('v') => a.verbose += 1,
            Short('h') | Long("help") => return Ok(Command::Help),
            Value(v) => {
                let v = v.string()?;
                if a.target == Target::Any && a.binary.is_none() {
                    a.binary = Some(v.into());
                } else {
                    a.patterns.push(v);
                }
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if a.patterns.is_empty() {
        bail!(
            "funccount: no function pattern given\nusage: gotap funccount [-x PID | -c CMD | BIN] [-i SECS] PATTERN..."
        );
    }
    Ok(Command::Funccount(a))
}

fn set_target(slot: &mut Target, t: Target) -> Result<()> {
    if *slot != Target::Any {
        bail!("-c and -x name the target once, and not both");
    }
    *slot = t;
    Ok(())
}

fn parse_pid(v: OsString) -> Result<u32> {
    let s = v.string()?;
    s.parse()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("-x takes a process id, not {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &[&str]) -> Result<Command> {
        parse(s.iter().map(OsString::from))
    }

    #[test]
    fn script_file_keeps_its_own_arguments() {
        // As with stap (GNU getopt), options may follow the script; `--` ends them.
        let Command::Script(s) =
            parse_str(&["-v", "newstack.stp", "-c", "./example", "1000", "--", "-x"]).unwrap()
        else {
            panic!("not a script")
        };
        assert!(
            matches!(s.source, Some(ScriptSource::File(ref p)) if p.as_os_str() == "newstack.stp")
        );
        assert_eq!(s.args, ["1000", "-x"]);
        assert_eq!(s.target, Target::Command("./example".into()));
        assert_eq!(s.verbose, 1);
    }

    #[test]
    fn funccount_takes_a_binary_then_patterns() {
        let Command::Funccount(f) = parse_str(&[
            "funccount",
            "-i",
            "2",
            "./counts",
            "main.*",
            "runtime.mallocgc",
        ])
        .unwrap() else {
            panic!("not funccount")
        };
        assert_eq!(f.binary.as_deref(), Some(std::path::Path::new("./counts")));
        assert_eq!(f.patterns, ["main.*", "runtime.mallocgc"]);
        assert_eq!(f.interval, Some(2));
    }

    #[test]
    fn funccount_with_pid_has_no_binary() {
        let Command::Funccount(f) = parse_str(&["funccount", "-x", "42", "main.*"]).unwrap() else {
            panic!()
        };
        assert_eq!(f.target, Target::Pid(42));
        assert_eq!(f.binary, None);
        assert_eq!(f.patterns, ["main.*"]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(parse_str(&["-x", "abc", "-e", "probe begin {}"]).is_err());
        assert!(parse_str(&["-c", "a", "-x", "1", "s.stp"]).is_err());
        assert!(parse_str(&["funccount", "./bin"]).is_err());
        assert!(parse_str(&["funccount", "-i", "0", "./bin", "main.*"]).is_err());
        assert!(parse_str(&[]).is_err());
    }
}
