//! `gotap`: parses the command line and joins the crates together. The only crate that
//! uses `anyhow`: every error that reaches the user is one line of text and exit code 1
//! (a bad command line too: one line, the usage, and 1 as stap gives, not clap's 2).
#![forbid(unsafe_code)]

mod agent;
mod args;
mod binary;
mod funccount;
mod jobs;
mod list;
mod maps;
mod metrics;
mod nobinary;
mod pipeline;
mod script;
mod session;
mod symbols;
mod tapset;
mod tools;

use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gotap: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        // `--help` and `--version` print to stdout and succeed.
        Err(e) if !e.use_stderr() => {
            return match e.print() {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            };
        }
        // An error begins as every other error of gotap's does.
        Err(e) => {
            let text = e.render().to_string();
            eprint!("gotap: {}", text.strip_prefix("error: ").unwrap_or(&text));
            return Ok(ExitCode::from(1));
        }
    };
    // The agent is a service: it takes every signal in its own loop (sys::service).
    if let args::Command::Agent(a) = &command {
        return Ok(exit(agent::run(a)?));
    }
    // First, before any thread starts: from here on SIGINT, SIGTERM and SIGHUP end
    // gotap within milliseconds, whatever the main thread is doing.
    sys::Signals::new()?;
    match command {
        args::Command::List { probe, verbose } => Ok(exit(list::run(&probe, verbose)?)),
        args::Command::Funccount(a) => Ok(exit(funccount::run(&a)?)),
        args::Command::Script(a) => Ok(exit(script::run(&a)?)),
        args::Command::Tapset => {
            print!("{}", tapset::GO);
            Ok(ExitCode::SUCCESS)
        }
        args::Command::Tool(t) => Ok(exit(tools::run(&t)?)),
        args::Command::Completions(shell) => {
            let mut text = Vec::new();
            args::write_completions(shell, &mut text);
            print_text(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        args::Command::Man(tool) => {
            let mut text = Vec::new();
            args::write_man(tool.as_deref(), &mut text)?;
            print_text(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        args::Command::Agent(_) => unreachable!("the agent ran above"),
    }
}

/// Writes help, a man page or a completion script to stdout. A reader that has seen
/// enough (`gotap man | head`) is not an error.
fn print_text(text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// The exit code gotap passes on (a `-c` command's), clamped to what a process can
/// return.
fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
