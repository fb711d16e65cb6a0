//! `gotap agent`: its flags, and the hand-over to the `agent` crate, which runs until
//! SIGTERM. `--check-config` resolves the configuration (file, flags, `OTEL_*`
//! variables), prints it and exits: what deployment files are tested with.

use anyhow::{Context, Result};
use lexopt::prelude::*;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: gotap agent [--config FILE] [--prometheus ADDR] [--otlp URL]
                   [--exe GLOB] [--module GLOB] [--cgroup GLOB] [--container GLOB]
                   [--funccount PATTERN]... [--max-series N] [--collect-ms N]
                   [--rescan-ms N] [--exit-linger-ms N] [--check-config] [-v]

Traces every Go process on the host (or those the selects pick) and exports
metrics: Prometheus scrapes /metrics on --prometheus, OTLP/HTTP is pushed to
--otlp (or OTEL_EXPORTER_OTLP_ENDPOINT). --exe/--module/--cgroup/--container add
one select (all given must match); --funccount counts calls of matching functions
in the kernel (default main.*). SIGHUP reloads --config, SIGTERM flushes and exits.";

#[derive(Debug, Default)]
pub struct AgentArgs {
    pub options: agent::Options,
    pub check: bool,
    pub help: bool,
}

pub fn parse(p: &mut lexopt::Parser, verbose: u8) -> Result<AgentArgs> {
    let mut a = AgentArgs {
        options: agent::Options {
            verbose: verbose > 0,
            ..agent::Options::default()
        },
        check: false,
        help: false,
    };
    let mut select = agent::Select::default();
    let f = &mut a.options.flags;
    while let Some(arg) = p.next()? {
        match arg {
            Long("config") => a.options.config_file = Some(PathBuf::from(p.value()?)),
            Long("prometheus") => f.prometheus = Some(p.value()?.string()?),
            Long("otlp") => f.otlp = Some(p.value()?.string()?),
            Long("exe") => select.exe = Some(p.value()?.string()?),
            Long("module") => select.module = Some(p.value()?.string()?),
            Long("cgroup") => select.cgroup = Some(p.value()?.string()?),
            Long("container") => select.container = Some(p.value()?.string()?),
            Long("funccount") => select
                .funccount
                .get_or_insert_with(Vec::new)
                .push(p.value()?.string()?),
            Long("max-series") => f.max_series = Some(number(p, "--max-series")? as usize),
            Long("collect-ms") => f.collect_ms = Some(number(p, "--collect-ms")?),
            Long("rescan-ms") => f.rescan_ms = Some(number(p, "--rescan-ms")?),
            Long("exit-linger-ms") => f.exit_linger_ms = Some(number(p, "--exit-linger-ms")?),
            Long("check-config") => a.check = true,
            Short('v') => a.options.verbose = true,
            Short('h') | Long("help") => a.help = true,
            _ => return Err(arg.unexpected().into()),
        }
    }
    if select != agent::Select::default() {
        f.select.push(select);
    }
    Ok(a)
}

fn number(p: &mut lexopt::Parser, flag: &str) -> Result<u64> {
    let v = p.value()?.string()?;
    v.parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("{flag} takes a positive whole number, not {v:?}"))
}

pub fn run(a: &AgentArgs) -> Result<i32> {
    if a.help {
        println!("{USAGE}");
        return Ok(0);
    }
    if a.check {
        let c = agent::resolve(&a.options)?;
        println!("{c:#?}");
        return Ok(0);
    }
    // Before any thread starts, so that every thread blocks the signals. A service's
    // signals, not the one-shot commands' (see sys::service).
    let signals = sys::ServiceSignals::new()?;
    agent::run(&a.options, &signals)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<AgentArgs> {
        let mut p = lexopt::Parser::from_args(args.iter().copied());
        parse(&mut p, 0)
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
