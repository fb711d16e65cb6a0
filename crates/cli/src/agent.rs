//! `gotap agent`: its flags, and the hand-over to the `agent` crate, which runs until
//! SIGTERM. `--check-config` resolves the configuration (file, flags, `OTEL_*`
//! variables), prints it and exits: what deployment files are tested with.

use anyhow::Result;
use clap::{ArgAction, ValueHint};
use std::path::PathBuf;

/// `gotap agent`'s flags, as `clap` reads them: `args::Cli` hosts them as a
/// subcommand, so `gotap agent --help`, the completions and `gotap man agent` come
/// from here.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Prometheus scrapes /metrics on --prometheus; OTLP/HTTP is pushed to --otlp (or \
OTEL_EXPORTER_OTLP_ENDPOINT). --exe, --module, --cgroup and --container make one \
select (all given must match). SIGHUP reloads --config, SIGTERM flushes and exits.")]
pub struct AgentFlags {
    /// Settings from a TOML file (flags win over it); SIGHUP reloads it
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    config: Option<PathBuf>,
    /// Serve Prometheus's /metrics on ADDR (host:port, or :port)
    #[arg(long, value_name = "ADDR")]
    prometheus: Option<String>,
    /// Push metrics by OTLP/HTTP to URL
    #[arg(long, value_name = "URL")]
    otlp: Option<String>,
    /// Select processes whose executable (as they see it) matches GLOB
    #[arg(long, value_name = "GLOB")]
    exe: Option<String>,
    /// Select processes whose Go main module matches GLOB
    #[arg(long, value_name = "GLOB")]
    module: Option<String>,
    /// Select processes whose cgroup path matches GLOB
    #[arg(long, value_name = "GLOB")]
    cgroup: Option<String>,
    /// Select processes whose container id matches GLOB
    #[arg(long, value_name = "GLOB")]
    container: Option<String>,
    /// Count calls of the functions that match PATTERN, in the kernel (repeatable;
    /// main.* if none)
    #[arg(long, value_name = "PATTERN")]
    funccount: Vec<String>,
    /// Time the calls of the functions that match PATTERN (funclatency; repeatable;
    /// main.* with --tool funclatency and none)
    #[arg(long, value_name = "PATTERN")]
    funclatency: Vec<String>,
    /// Run TOOL on the selected processes (funccount, funclatency, stackgrow, gcstat,
    /// goroutines, offcpu)
    #[arg(long, value_name = "TOOL")]
    tool: Option<String>,
    /// Run the script in FILE on the selected processes (its globals exported)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    script: Option<String>,
    /// Run the script TEXT on the selected processes (its globals exported)
    #[arg(long, value_name = "TEXT")]
    script_text: Option<String>,
    /// Series per metric, past which series are folded
    #[arg(long, value_name = "N", value_parser = crate::args::positive)]
    max_series: Option<u64>,
    /// How often the kernel's counts are read
    #[arg(long, value_name = "N", value_parser = crate::args::positive)]
    collect_ms: Option<u64>,
    /// How often /proc is scanned again (besides exec events)
    #[arg(long, value_name = "N", value_parser = crate::args::positive)]
    rescan_ms: Option<u64>,
    /// How long an exited process's last values stay
    #[arg(long, value_name = "N", value_parser = crate::args::positive)]
    exit_linger_ms: Option<u64>,
    /// Resolve the configuration (file, flags, OTEL_* variables), print it and exit
    #[arg(long)]
    check_config: bool,
    /// Say more about what is done
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Default)]
pub struct AgentArgs {
    pub options: agent::Options,
    pub check: bool,
}

impl From<AgentFlags> for AgentArgs {
    fn from(a: AgentFlags) -> AgentArgs {
        let select = agent::Select {
            exe: a.exe,
            module: a.module,
            cgroup: a.cgroup,
            container: a.container,
            funccount: (!a.funccount.is_empty()).then_some(a.funccount),
            funclatency: (!a.funclatency.is_empty()).then_some(a.funclatency),
            tool: a.tool.map(|t| toml::Spanned::new(0..0, t)),
            script: a.script.map(|t| toml::Spanned::new(0..0, t)),
            script_text: a.script_text.map(|t| toml::Spanned::new(0..0, t)),
            work: None,
        };
        let mut flags = agent::Config {
            prometheus: a.prometheus,
            otlp: a.otlp,
            max_series: a
                .max_series
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            collect_ms: a.collect_ms,
            rescan_ms: a.rescan_ms,
            exit_linger_ms: a.exit_linger_ms,
            ..agent::Config::default()
        };
        if select != agent::Select::default() {
            flags.select.push(select);
        }
        AgentArgs {
            options: agent::Options {
                config_file: a.config,
                flags,
                verbose: a.verbose > 0,
            },
            check: a.check_config,
        }
    }
}

pub fn run(a: &AgentArgs) -> Result<i32> {
    if a.check {
        let c = agent::resolve(&a.options)?;
        println!("{c:#?}");
        return Ok(0);
    }
    // Before any thread starts, so that every thread blocks the signals. A service's
    // signals, not the one-shot commands' (see sys::service).
    let signals = sys::ServiceSignals::new()?;
    agent::run(&a.options, &signals, Box::new(crate::jobs::Runner))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<AgentArgs, clap::Error> {
        let argv = ["agent"].iter().chain(args).map(std::ffi::OsString::from);
        match crate::args::parse(argv)? {
            crate::args::Command::Agent(a) => Ok(a),
            other => panic!("not the agent: {other:?}"),
        }
    }

    #[test]
    fn flags_make_one_select_and_settings() {
        let a = parse_str(&[
            "--prometheus",
            ":9464",
            "--module",
            "example.com/*",
            "--funccount",
            "main.*",
            "--funccount",
            "net/http.*",
            "--collect-ms",
            "200",
        ])
        .unwrap();
        let f = &a.options.flags;
        assert_eq!(f.prometheus.as_deref(), Some(":9464"));
        assert_eq!(f.select.len(), 1);
        assert_eq!(f.select[0].module.as_deref(), Some("example.com/*"));
        assert_eq!(f.select[0].patterns(), ["main.*", "net/http.*"]);
        assert_eq!(f.collect_ms, Some(200));
        assert!(parse_str(&[]).unwrap().options.flags.select.is_empty());
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse_str(&["--collect-ms", "0"]).is_err());
        assert!(parse_str(&["--max-series", "x"]).is_err());
        assert!(parse_str(&["--bogus"]).is_err());
    }
}
