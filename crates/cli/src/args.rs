//! The command line, in SystemTap's words where it has them (`-e`, `-c`, `-x`, `-o`,
//! `-v`, `-d`, `-l`, `-L`), plus the ready tools as subcommands (`gotap funccount …`).
//!
//! One set of `clap` definitions ([`Cli`]) is the parser, the `--help` of gotap and of
//! every tool, the shell completions (`gotap completions SHELL`) and the man pages
//! (`gotap man [TOOL]`), so they cannot drift apart.
//!
//! Options may stand anywhere, as GNU getopt (and so stap) allows: before or after the
//! script, a tool's patterns or its binary; `--` ends them. What follows the script
//! file (or everything that is not an option, with `-e`) is the script's own
//! arguments (`$1`, `@1`). A tool is named by the first word that is not an option;
//! options written before its name are read as the tool's. A bad command line is one
//! line that says what is wrong, the usage, and exit status 1 (as stap; clap's own
//! default is 2), see `main.rs`.

use clap::error::ErrorKind;
use clap::{
    ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum, ValueHint,
};
use std::ffi::OsString;
use std::path::PathBuf;

/// `gotap --version`: the version and the commit it was built from (see `build.rs`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("GOTAP_COMMIT"), ")");

const USAGE: &str = "\
gotap [OPTIONS] SCRIPT.stp [ARGS]...
       gotap [OPTIONS] -e 'SCRIPT' [ARGS]...
       gotap -l|-L 'process(\"BIN\").function(\"PATTERN\")'
       gotap <TOOL> [OPTIONS] [-x PID | -c CMD | BIN] ...
       gotap agent [--config FILE] [--prometheus ADDR] [--otlp URL] [SELECTS] [--check-config]
       gotap completions <SHELL> | gotap man [TOOL]";

const ABOUT: &str =
    "A dynamic tracer for Go programs: SystemTap-style scripts compiled to eBPF, and ready tools";

const LONG_ABOUT: &str = "\
A dynamic tracer for Go programs: SystemTap-style scripts compiled to eBPF, and ready tools.

A script names probe points (process(\"BIN\").function(\"main.*\"), .return, .statement, \
the Go runtime's go.* points, begin, end, timer.ms(N)) and what to do there, in \
SystemTap's language. Its process probes become uprobes owned by gotap, gone when gotap \
ends; Go values are read through DWARF or .gopclntab. A script with only begin, end and \
timer probes needs no Go program. Tracing needs root.";

/// `gotap --help` and the man page show these, each with what it does.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "gotap -e 'probe begin { printf(\"hi\\n\"); exit() }'",
        "a script that needs no Go program: prints hi",
    ),
    (
        "gotap -e 'global n; probe process.function(\"main.handle\") { n++ }' -c ./server",
        "starts ./server, counts its calls of main.handle until it exits or Ctrl-C, \
         and prints n",
    ),
    (
        "gotap -L 'process(\"./server\").function(\"main.handle\")'",
        "where a probe can go, with the variables in scope and their Go types",
    ),
    (
        "gotap funccount 'main.*' -x 1234",
        "counts calls of the main package's functions in process 1234",
    ),
    (
        "gotap stackgrow ./server --top 5 --svg growths.svg",
        "goroutine stack growths in every process running ./server, and a flame graph",
    ),
];

const EXIT_STATUS: &str = "\
0 when the trace ends (Ctrl-C, exit(), or the -x process is gone); with -c, the command's own \
exit status; 1 on an error, a bad command line included.";

/// The examples and the exit status, as `--help` prints them after the options.
fn after_long_help() -> String {
    let mut s = String::from("Examples:\n");
    for (cmd, what) in EXAMPLES {
        s.push_str(&format!("  {cmd}\n      {what}\n"));
    }
    s.push_str(&format!("\nExit status:\n  {EXIT_STATUS}\n\n"));
    s.push_str("Run `gotap TOOL --help` for a tool's options, `gotap man` for the manual.");
    s
}

/// The command line as `clap` reads it: a script's options, or a subcommand.
#[derive(Parser, Debug)]
#[command(
    name = "gotap",
    version = VERSION,
    about = ABOUT,
    long_about = LONG_ABOUT,
    override_usage = USAGE,
    after_help = "Run `gotap TOOL --help` for a tool's options, `gotap man` for the manual.",
    after_long_help = after_long_help(),
    subcommand_help_heading = "Tools",
    subcommand_value_name = "TOOL",
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    script: ScriptOpts,
    #[command(subcommand)]
    tool: Option<Sub>,
}

/// Where the events come from, and where the output goes: the options every tool and
/// a script share.
#[derive(Args, Debug, Default)]
struct TargetOpts {
    /// Trace process PID only (sets target())
    #[arg(short = 'x', value_name = "PID", conflicts_with = "cmd",
          value_parser = pid)]
    pid: Option<u32>,
    /// Start CMD (a program and its arguments), trace it, and exit when it exits
    /// (sets target())
    #[arg(short = 'c', value_name = "CMD", value_hint = ValueHint::CommandString)]
    cmd: Option<String>,
    /// Write the output to FILE (checked before anything is attached)
    #[arg(short = 'o', value_name = "FILE", value_hint = ValueHint::FilePath)]
    output: Option<PathBuf>,
    /// Say more about what is done (repeat for more)
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    export: crate::metrics::ExportFlags,
}

#[derive(Args, Debug)]
struct ScriptOpts {
    /// Run SCRIPT given on the command line (then every word that is not an option is
    /// an argument of the script)
    #[arg(short = 'e', value_name = "SCRIPT")]
    inline: Option<String>,
    #[command(flatten)]
    target: TargetOpts,
    /// Print a stage of the compilation and stop after it (repeatable: the run stops
    /// after the last), as stap's -p
    #[arg(short = 'd', value_name = "STAGE")]
    dump: Vec<Stage>,
    /// The output's format: text, or json (one JSON object a line, as bpftrace's -f
    /// json: printed lines, and at the end the globals, histograms and counts)
    #[arg(
        short = 'f',
        long = "format",
        value_name = "FORMAT",
        default_value = "text"
    )]
    format: Format,
    /// Set a limit: MAXSTRINGLEN (bytes of a string, 128), MAXPRINTFLEN (bytes one
    /// printf prints, 8192), and of a pretty-printed Go value MAXPRETTYDEPTH (levels,
    /// 6), MAXPRETTYITEMS (elements, 16), MAXPRETTYBYTES (bytes read, 8192)
    /// (repeatable)
    #[arg(short = 'D', value_name = "NAME=N")]
    defines: Vec<String>,
    /// At the end, write the stacks counted by ubacktrace() keys as collapsed stacks
    /// (root;...;leaf count)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    folded: Option<PathBuf>,
    /// At the end, write them as a flame graph
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    svg: Option<PathBuf>,
    /// List the probe points that match PROBE
    #[arg(short = 'l', value_name = "PROBE", conflicts_with_all = ["list_vars", "inline"])]
    list: Option<String>,
    /// List them with the variables in scope and their Go types
    #[arg(short = 'L', value_name = "PROBE", conflicts_with = "inline")]
    list_vars: Option<String>,
    /// Print the Go runtime tapset (go.stack.grow, go.gc.*, go.goroutine.*, …)
    #[arg(long)]
    tapset: bool,
    /// The script file (unless -e), then the script's own arguments ($1, @1, …)
    #[arg(value_name = "SCRIPT.stp|ARGS", allow_negative_numbers = true,
          value_hint = ValueHint::FilePath)]
    words: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Count calls of Go functions, in the kernel
    #[command(override_usage = "gotap funccount [OPTIONS] [-x PID | -c CMD | BIN] PATTERN...")]
    Funccount(FunccountOpts),
    /// Goroutine stack growths: sizes, who grows, time spent (the go.stack.grow probe)
    #[command(override_usage = "gotap stackgrow [OPTIONS] [-x PID | -c CMD | BIN]")]
    Stackgrow(StackgrowOpts),
    /// Each GC cycle with its duration and pauses, and a summary
    #[command(override_usage = "gotap gcstat [OPTIONS] [-x PID | -c CMD | BIN]")]
    Gcstat(GcstatOpts),
    /// Live goroutines over time, and where the live ones were created
    #[command(override_usage = "gotap goroutines [OPTIONS] [-x PID | -c CMD | BIN]")]
    Goroutines(GoroutinesOpts),
    /// The time each call of Go functions takes, as a histogram per function
    #[command(override_usage = "gotap funclatency [OPTIONS] [-x PID | -c CMD | BIN] PATTERN...")]
    Funclatency(FunclatencyOpts),
    /// Where goroutines wait and for how long, by wait reason and backtrace
    #[command(override_usage = "gotap offcpu [OPTIONS] [-x PID | -c CMD | BIN]")]
    Offcpu(OffcpuOpts),
    /// On-CPU profile: where the CPU goes, sampled by goroutine
    #[command(override_usage = "gotap profile [OPTIONS] (-x PID | -c CMD)")]
    Profile(ProfileOpts),
    /// Trace every Go process on the host (or those selected) and export metrics
    Agent(crate::agent::AgentFlags),
    /// Print the completion script of a shell (see the README for where it goes)
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page of gotap, or of one of its tools, as roff
    Man {
        #[arg(value_name = "TOOL", value_parser = SUBCOMMANDS)]
        tool: Option<String>,
    },
}

/// The subcommands, as they are named: each has a man page, `gotap-NAME(1)`.
const SUBCOMMANDS: [&str; 10] = [
    "funccount",
    "stackgrow",
    "gcstat",
    "goroutines",
    "funclatency",
    "offcpu",
    "profile",
    "agent",
    "completions",
    "man",
];

#[derive(Args, Debug)]
struct FunccountOpts {
    #[command(flatten)]
    target: TargetOpts,
    /// Print the counts every SECS seconds, and start them again from zero
    #[arg(short = 'i', value_name = "SECS", value_parser = positive)]
    interval: Option<u64>,
    /// The binary (unless -x or -c), then the function patterns (globs: 'main.*')
    #[arg(value_name = "BIN|PATTERN", required = true, value_hint = ValueHint::FilePath)]
    words: Vec<String>,
}

#[derive(Args, Debug)]
struct FunclatencyOpts {
    #[command(flatten)]
    target: TargetOpts,
    /// Histograms in microseconds
    #[arg(long = "us", conflicts_with = "ms")]
    us: bool,
    /// Histograms in milliseconds
    #[arg(long = "ms")]
    ms: bool,
    /// Print the histograms every SECS seconds, and start them again from zero
    #[arg(short = 'i', value_name = "SECS", value_parser = positive)]
    interval: Option<u64>,
    /// Print one JSON object per function instead of the histograms
    #[arg(long)]
    json: bool,
    /// The binary (unless -x or -c), then the function patterns (globs: 'main.*')
    #[arg(value_name = "BIN|PATTERN", required = true, value_hint = ValueHint::FilePath)]
    words: Vec<String>,
}

/// The binary a tool traces, when neither `-x` nor `-c` names it.
#[derive(Args, Debug)]
#[group(id = "tool_target", required = true, args = ["cmd", "pid", "binary"])]
struct ToolTarget {
    #[command(flatten)]
    target: TargetOpts,
    /// The Go executable whose every process is traced
    #[arg(value_name = "BIN", conflicts_with_all = ["cmd", "pid"],
          value_hint = ValueHint::ExecutablePath)]
    binary: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct StackgrowOpts {
    #[command(flatten)]
    on: ToolTarget,
    /// Print (and take the backtrace of) every Nth growth
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = positive)]
    every: u64,
    /// Rows of each table at the end
    #[arg(long, value_name = "K", default_value_t = 10,
          value_parser = positive)]
    top: u64,
    /// At the end, write the growths' call paths as collapsed stacks
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    folded: Option<PathBuf>,
    /// At the end, write them as a flame graph
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    svg: Option<PathBuf>,
    /// Print the summary as JSON instead of the live lines and tables
    #[arg(long)]
    json: bool,
    /// Also time the copies of growing stacks (a return probe, which costs more)
    #[arg(long)]
    time: bool,
}

#[derive(Args, Debug)]
struct OffcpuOpts {
    #[command(flatten)]
    on: ToolTarget,
    /// Rows of the backtrace table at the end
    #[arg(long, value_name = "K", default_value_t = 10,
          value_parser = positive)]
    top: u64,
    /// At the end, write the waits' backtraces as collapsed stacks (weight: ns)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    folded: Option<PathBuf>,
    /// At the end, write them as a flame graph
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    svg: Option<PathBuf>,
    /// At the end, write them as a pprof profile (gzipped profile.proto, as a block
    /// profile: `go tool pprof FILE` opens it)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pprof: Option<PathBuf>,
    /// Print the summary as JSON instead of the tables
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ProfileOpts {
    #[command(flatten)]
    on: ToolTarget,
    /// Samples a second on each CPU
    #[arg(short = 'F', value_name = "HZ", default_value_t = 99,
          value_parser = positive)]
    hz: u64,
    /// Rows of the function table at the end
    #[arg(long, value_name = "K", default_value_t = 10,
          value_parser = positive)]
    top: u64,
    /// At the end, write the stacks as collapsed stacks (weight: samples)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    folded: Option<PathBuf>,
    /// At the end, write them as a flame graph
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    svg: Option<PathBuf>,
    /// At the end, write them as a pprof CPU profile (gzipped profile.proto: `go tool
    /// pprof FILE` opens it)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pprof: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct GcstatOpts {
    #[command(flatten)]
    on: ToolTarget,
    /// Print the cycles and the summary as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct GoroutinesOpts {
    #[command(flatten)]
    on: ToolTarget,
    /// Print the count every SECS seconds
    #[arg(short = 'i', value_name = "SECS", default_value_t = 1,
          value_parser = positive)]
    interval: u64,
    /// Rows of the table at the end
    #[arg(long, value_name = "K", default_value_t = 10,
          value_parser = positive)]
    top: u64,
    /// Print the samples and the table as JSON
    #[arg(long)]
    json: bool,
}

/// A count, a number of rows or of seconds: a whole number above 0.
pub(crate) fn positive(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "not a whole number above 0".to_string())
}

/// A process id (a whole number above 0).
fn pid(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "not a process id".to_string())
}

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

impl From<&TargetOpts> for Target {
    fn from(t: &TargetOpts) -> Target {
        match (&t.cmd, t.pid) {
            (Some(c), _) => Target::Command(c.clone()),
            (None, Some(p)) => Target::Pid(p),
            (None, None) => Target::Any,
        }
    }
}

#[derive(Debug, Default)]
pub struct ScriptArgs {
    pub source: Option<ScriptSource>,
    pub args: Vec<String>,
    pub target: Target,
    pub output: Option<PathBuf>,
    pub verbose: u8,
    /// `-d STAGE`: the stages to print; the run stops after the last.
    pub dump: Vec<Stage>,
    /// `-f FORMAT`: what is written to the output.
    pub format: Format,
    /// `-D NAME=VALUE`: a limit, as stap's (`MAXSTRINGLEN`, `MAXPRINTFLEN`, the
    /// `MAXPRETTY…` of pretty-printed values).
    pub defines: Vec<String>,
    /// `--folded FILE`: collapsed stacks of `ubacktrace()`-keyed globals at the end.
    pub folded: Option<PathBuf>,
    /// `--svg FILE`: the same as a flame graph.
    pub svg: Option<PathBuf>,
    /// `--prometheus`, `--otlp`: the globals exported while the script runs.
    pub export: crate::metrics::ExportFlags,
}

/// A stage of the compilation `-d` prints, in the order they come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Stage {
    /// The parsed script
    Ast,
    /// The type of every name and expression
    Types,
    /// The eBPF programs, with the script's lines
    Bpf,
    /// The kernel verifier's log
    Verifier,
}

/// What a script run writes to its output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// As stap prints it
    #[default]
    Text,
    /// Newline-delimited JSON objects, as bpftrace's -f json
    Json,
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
    pub output: Option<PathBuf>,
    pub verbose: u8,
    pub export: crate::metrics::ExportFlags,
}

#[derive(Debug)]
pub enum Command {
    List { probe: String, verbose: bool },
    Script(ScriptArgs),
    Funccount(FunccountArgs),
    Tapset,
    Tool(crate::tools::ToolArgs),
    Agent(crate::agent::AgentArgs),
    Completions(clap_complete::Shell),
    Man(Option<String>),
}

/// Reads the command line (without the program's name). Errors, `--help` and
/// `--version` come back as `clap` errors, which print themselves.
pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Command, clap::Error> {
    let argv: Vec<OsString> = argv.into_iter().collect();
    let (argv, tool) = tool_first(argv);
    let mut cmd = Cli::command();
    if !tool {
        // Past the first word, a tool's name is an argument of the script.
        cmd = cmd.args_conflicts_with_subcommands(true);
    }
    let name = tool.then(|| argv[0].to_string_lossy().into_owned());
    let full = std::iter::once(OsString::from("gotap")).chain(argv);
    let parsed = cmd.clone().try_get_matches_from(full).and_then(|matches| {
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
        match cli.tool {
            Some(sub) => subcommand(sub),
            None => script(cli.script, &mut cmd),
        }
    });
    parsed.map_err(|e| with_usage(e, &mut cmd, name.as_deref()))
}

/// Every error says the usage of the command it is about (clap leaves it out of
/// some, such as a bad value).
fn with_usage(mut e: clap::Error, cmd: &mut clap::Command, tool: Option<&str>) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    if e.use_stderr() && e.get(ContextKind::Usage).is_none() {
        cmd.build();
        let usage = match tool.and_then(|t| cmd.find_subcommand_mut(t)) {
            Some(sub) => sub.render_usage(),
            None => cmd.render_usage(),
        };
        e.insert(ContextKind::Usage, ContextValue::StyledStr(usage));
    }
    e
}

/// The command line with a tool's name moved to the front when the first word that is
/// not an option names one (so that options written before it are the tool's), and
/// whether it does. With `-e` the words are the script's arguments, whatever they are.
fn tool_first(argv: Vec<OsString>) -> (Vec<OsString>, bool) {
    let cmd = Cli::command();
    let takes_value = |a: &clap::Arg| a.get_action().takes_values();
    let long_value: Vec<&str> = cmd
        .get_arguments()
        .filter(|a| takes_value(a))
        .filter_map(|a| a.get_long())
        .collect();
    let short_value: Vec<char> = cmd
        .get_arguments()
        .filter(|a| takes_value(a))
        .filter_map(|a| a.get_short())
        .collect();
    let mut i = 0;
    while i < argv.len() {
        let Some(word) = argv[i].to_str() else {
            return (argv, false);
        };
        if word == "--" {
            return (argv, false);
        } else if let Some(long) = word.strip_prefix("--") {
            if !long.contains('=') && long_value.contains(&long) {
                i += 1;
            }
        } else if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (at, c) in shorts.char_indices() {
                if c == 'e' {
                    return (argv, false);
                }
                if short_value.contains(&c) {
                    // The value is the rest of this word, or the next one.
                    if at + c.len_utf8() == shorts.len() {
                        i += 1;
                    }
                    break;
                }
            }
        } else {
            if !cmd.get_subcommands().any(|s| s.get_name() == word) {
                return (argv, false);
            }
            let mut moved = argv;
            let name = moved.remove(i);
            moved.insert(0, name);
            return (moved, true);
        }
        i += 1;
    }
    (argv, false)
}

fn script(s: ScriptOpts, cmd: &mut clap::Command) -> Result<Command, clap::Error> {
    if let Some(probe) = s.list {
        return Ok(Command::List {
            probe,
            verbose: false,
        });
    }
    if let Some(probe) = s.list_vars {
        return Ok(Command::List {
            probe,
            verbose: true,
        });
    }
    if s.tapset {
        return Ok(Command::Tapset);
    }
    let mut words = s.words.into_iter();
    let source = match s.inline {
        Some(text) => ScriptSource::Inline(text),
        None => match words.next() {
            Some(file) => ScriptSource::File(file.into()),
            None => {
                return Err(cmd.error(
                    ErrorKind::MissingRequiredArgument,
                    "no script given: name a script file, or give one with -e",
                ));
            }
        },
    };
    Ok(Command::Script(ScriptArgs {
        source: Some(source),
        args: words.collect(),
        target: Target::from(&s.target),
        output: s.target.output,
        verbose: s.target.verbose,
        dump: s.dump,
        format: s.format,
        defines: s.defines,
        folded: s.folded,
        svg: s.svg,
        export: s.target.export,
    }))
}

fn subcommand(sub: Sub) -> Result<Command, clap::Error> {
    use crate::tools::{Tool, ToolArgs};
    let tool = |tool: Tool, on: ToolTarget| ToolArgs {
        tool,
        target: Target::from(&on.target),
        binary: on.binary,
        every: 1,
        top: 10,
        folded: None,
        svg: None,
        json: false,
        interval: 1,
        time: false,
        output: on.target.output,
        verbose: on.target.verbose,
        export: on.target.export,
        patterns: Vec::new(),
        unit: crate::tools::Unit::default(),
        pprof: None,
        hz: 99,
    };
    Ok(match sub {
        Sub::Funccount(f) => funccount(f)?,
        Sub::Stackgrow(o) => Command::Tool(ToolArgs {
            every: o.every,
            top: usize::try_from(o.top).unwrap_or(usize::MAX),
            folded: o.folded,
            svg: o.svg,
            json: o.json,
            time: o.time,
            ..tool(Tool::StackGrow, o.on)
        }),
        Sub::Gcstat(o) => Command::Tool(ToolArgs {
            json: o.json,
            ..tool(Tool::GcStat, o.on)
        }),
        Sub::Goroutines(o) => Command::Tool(ToolArgs {
            interval: o.interval,
            top: usize::try_from(o.top).unwrap_or(usize::MAX),
            json: o.json,
            ..tool(Tool::Goroutines, o.on)
        }),
        Sub::Funclatency(f) => funclatency(f)?,
        Sub::Offcpu(o) => Command::Tool(ToolArgs {
            top: usize::try_from(o.top).unwrap_or(usize::MAX),
            folded: o.folded,
            svg: o.svg,
            pprof: o.pprof,
            json: o.json,
            ..tool(Tool::OffCpu, o.on)
        }),
        Sub::Profile(o) => Command::Tool(ToolArgs {
            export: profile_export(&o.on.target.export)?,
            hz: o.hz,
            top: usize::try_from(o.top).unwrap_or(usize::MAX),
            folded: o.folded,
            svg: o.svg,
            pprof: o.pprof,
            ..tool(Tool::Profile, o.on)
        }),
        Sub::Agent(a) => Command::Agent(a.into()),
        Sub::Completions { shell } => Command::Completions(shell),
        Sub::Man { tool } => Command::Man(tool),
    })
}

/// `profile`'s flags: `--otlp` sends the profile (OTLP's profiles signal);
/// `--prometheus` is refused, as there are no metrics to serve.
fn profile_export(
    flags: &crate::metrics::ExportFlags,
) -> Result<crate::metrics::ExportFlags, clap::Error> {
    if flags.prometheus.is_none() {
        return Ok(flags.clone());
    }
    let mut cmd = Cli::command();
    cmd.build();
    let sub = cmd
        .find_subcommand_mut("profile")
        .expect("profile is a subcommand");
    Err(sub.error(
        ErrorKind::ArgumentConflict,
        "profile exports no metrics: --otlp sends its profile, --prometheus has nothing to serve",
    ))
}

/// As `funccount`: without `-x` or `-c`, the first word is the binary.
fn funclatency(f: FunclatencyOpts) -> Result<Command, clap::Error> {
    use crate::tools::{Tool, ToolArgs, Unit};
    let target = Target::from(&f.target);
    let mut words = f.words.into_iter();
    let binary = match target {
        Target::Any => words.next().map(PathBuf::from),
        _ => None,
    };
    let patterns: Vec<String> = words.collect();
    if patterns.is_empty() {
        let mut cmd = Cli::command();
        cmd.build();
        let sub = cmd
            .find_subcommand_mut("funclatency")
            .expect("funclatency is a subcommand");
        return Err(sub.error(
            ErrorKind::MissingRequiredArgument,
            "no function pattern given (after the binary, unless -x or -c names the target)",
        ));
    }
    Ok(Command::Tool(ToolArgs {
        tool: Tool::FuncLatency,
        target,
        binary,
        every: 1,
        top: 10,
        folded: None,
        svg: None,
        json: f.json,
        interval: f.interval.unwrap_or(0),
        time: false,
        output: f.target.output,
        verbose: f.target.verbose,
        export: f.target.export,
        patterns,
        unit: match (f.us, f.ms) {
            (true, _) => Unit::Us,
            (_, true) => Unit::Ms,
            _ => Unit::Ns,
        },
        pprof: None,
        hz: 99,
    }))
}

/// Without `-x` or `-c`, the first word is the binary and the others the patterns.
fn funccount(f: FunccountOpts) -> Result<Command, clap::Error> {
    let target = Target::from(&f.target);
    let mut words = f.words.into_iter();
    let binary = match target {
        Target::Any => words.next().map(PathBuf::from),
        _ => None,
    };
    let patterns: Vec<String> = words.collect();
    if patterns.is_empty() {
        let mut cmd = Cli::command();
        cmd.build();
        let sub = cmd
            .find_subcommand_mut("funccount")
            .expect("funccount is a subcommand");
        return Err(sub.error(
            ErrorKind::MissingRequiredArgument,
            "no function pattern given (after the binary, unless -x or -c names the target)",
        ));
    }
    Ok(Command::Funccount(FunccountArgs {
        target,
        binary,
        interval: f.interval,
        patterns,
        output: f.target.output,
        verbose: f.target.verbose,
        export: f.target.export,
    }))
}

/// `gotap completions SHELL`: the completion script, generated from [`Cli`].
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "gotap", out);
}

/// `gotap man [TOOL]`: the man page of gotap (section 1), or of `gotap-TOOL`.
pub fn write_man(tool: Option<&str>, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    if let Some(sub) = tool.and_then(|t| cmd.find_subcommand(t)) {
        let name = format!("gotap-{}", sub.get_name());
        return clap_mangen::Man::new(sub.clone().name(name.clone()).bin_name(name)).render(out);
    }
    // gotap's own page, with its examples in a section of their own, line by line.
    let man = clap_mangen::Man::new(cmd);
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    let mut roff = roff::Roff::new();
    roff.control("SH", ["EXAMPLES"]);
    for (command, what) in EXAMPLES {
        roff.control("TP", []);
        roff.text([roff::bold(*command)]);
        roff.text([roff::roman(*what)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roff::roman(EXIT_STATUS)]);
    roff.to_writer(out)?;
    man.render_version_section(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &[&str]) -> Result<Command, clap::Error> {
        parse(s.iter().map(OsString::from))
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_a_man_page() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        assert_eq!(names, SUBCOMMANDS);
        for name in SUBCOMMANDS {
            let mut page = Vec::new();
            write_man(Some(name), &mut page).expect("render");
            let page = String::from_utf8(page).expect("utf-8");
            assert!(page.contains(&format!(".TH gotap-{name} 1")), "{page}");
        }
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
    fn a_tools_name_after_the_script_is_an_argument_of_the_script() {
        for argv in [
            &["s.stp", "funccount"][..],
            &["s.stp", "-c", "./p", "funccount"],
            &["-e", "probe begin {}", "funccount"],
            &["-v", "-e", "probe begin {}", "-x", "1", "funccount"],
        ] {
            let Command::Script(s) = parse_str(argv).unwrap() else {
                panic!("{argv:?}: not a script")
            };
            assert_eq!(s.args.last().map(String::as_str), Some("funccount"));
        }
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
    fn tool_options_stand_anywhere() {
        for argv in [
            &["funccount", "-x", "42", "main.*"][..],
            &["funccount", "main.*", "-x", "42"],
            &["-x", "42", "funccount", "main.*"],
            &["-v", "funccount", "main.*", "-x42"],
        ] {
            let Command::Funccount(f) = parse_str(argv).unwrap() else {
                panic!("{argv:?}: not funccount")
            };
            assert_eq!(f.target, Target::Pid(42), "{argv:?}");
            assert_eq!(f.binary, None, "{argv:?}");
            assert_eq!(f.patterns, ["main.*"], "{argv:?}");
        }
        let Command::Tool(t) = parse_str(&["stackgrow", "./bin", "--top", "3", "-o", "f"]).unwrap()
        else {
            panic!("not a tool")
        };
        assert_eq!(t.binary.as_deref(), Some(std::path::Path::new("./bin")));
        assert_eq!((t.top, t.output.as_deref()), (3, Some("f".as_ref())));
    }

    #[test]
    fn scripts_and_every_tool_take_the_export_flags() {
        let flags = |prom: Option<&str>, otlp: Option<&str>| crate::metrics::ExportFlags {
            prometheus: prom.map(str::to_string),
            otlp: otlp.map(str::to_string),
        };
        let Command::Script(s) =
            parse_str(&["s.stp", "--prometheus", ":9464", "--otlp", "http://c:4318"]).unwrap()
        else {
            panic!("not a script")
        };
        assert_eq!(s.export, flags(Some(":9464"), Some("http://c:4318")));
        let Command::Funccount(f) =
            parse_str(&["funccount", "--otlp", "http://c:4318", "./bin", "main.*"]).unwrap()
        else {
            panic!("not funccount")
        };
        assert_eq!(f.export, flags(None, Some("http://c:4318")));
        for tool in ["stackgrow", "gcstat", "goroutines", "offcpu"] {
            let Command::Tool(t) =
                parse_str(&[tool, "./bin", "--prometheus", "127.0.0.1:1"]).unwrap()
            else {
                panic!("{tool}: not a tool")
            };
            assert_eq!(t.export, flags(Some("127.0.0.1:1"), None), "{tool}");
        }
        let Command::Tool(t) =
            parse_str(&["funclatency", "--otlp", "http://c:4318", "./bin", "main.*"]).unwrap()
        else {
            panic!("funclatency: not a tool")
        };
        assert_eq!(t.export, flags(None, Some("http://c:4318")));
        assert_eq!(t.patterns, ["main.*"]);
        let Command::Tool(t) =
            parse_str(&["profile", "-x", "1", "--otlp", "http://c:4318"]).unwrap()
        else {
            panic!("profile: not a tool")
        };
        assert_eq!(t.export, flags(None, Some("http://c:4318")));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for argv in [
            &["-x", "abc", "-e", "probe begin {}"][..],
            &["-c", "a", "-x", "1", "s.stp"],
            &["-x", "1", "-x", "2", "s.stp"],
            &["funccount", "./bin"],
            &["funccount", "-i", "0", "./bin", "main.*"],
            &["stackgrow"],
            &["stackgrow", "-x", "1", "./bin"],
            &["gcstat", "./bin", "--time"],
            &["-d", "nosuch", "s.stp"],
            &["s.stp", "--prometheus"],
            &["profile", "-x", "1", "--prometheus", ":9464"],
            &["--bogus"],
            &[],
        ] {
            let e = parse_str(argv).expect_err(&format!("{argv:?} parsed"));
            assert!(e.use_stderr(), "{argv:?}: {e}");
        }
    }
}
