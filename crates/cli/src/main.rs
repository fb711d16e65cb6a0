//! `gotap`: parses the command line and joins the crates together. The only crate that
//! uses `anyhow`: every error that reaches the user is one line of text and exit code 1.
#![forbid(unsafe_code)]

mod agent;
mod args;
mod binary;
mod funccount;
mod list;
mod maps;
mod nobinary;
mod script;
mod session;
mod stacks;
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
    let command = args::parse(std::env::args_os().skip(1))?;
    // The agent is a service: it takes every signal in its own loop (sys::service).
    if let args::Command::Agent(a) = &command {
        return Ok(exit(agent::run(a)?));
    }
    // First, before any thread starts: from here on SIGINT, SIGTERM and SIGHUP end
    // gotap within milliseconds, whatever the main thread is doing.
    sys::Signals::new()?;
    match command {
        args::Command::Help => {
            println!("{}", args::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        args::Command::List { probe, verbose } => Ok(exit(list::run(&probe, verbose)?)),
        args::Command::Funccount(a) => Ok(exit(funccount::run(&a)?)),
        args::Command::Script(a) => Ok(exit(script::run(&a)?)),
        args::Command::Tapset => {
            print!("{}", tapset::GO);
            Ok(ExitCode::SUCCESS)
        }
        args::Command::Tool(t) => Ok(exit(tools::run(&t)?)),
        args::Command::Agent(_) => unreachable!("the agent ran above"),
    }
}

/// The exit code gotap passes on (a `-c` command's), clamped to what a process can
/// return.
fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
