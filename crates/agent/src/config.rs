//! The agent's configuration: a TOML file and flags (flags win), and the selectors
//! that say which Go processes to trace and what to run on them.
//!
//! ```toml
//! prometheus = "127.0.0.1:9464"      # serve /metrics here
//! otlp = "http://127.0.0.1:4318"     # push OTLP/HTTP here (OTEL_* variables also work)
//! max_series = 2000                  # per metric, past which series are folded
//! collect_ms = 1000                  # how often kernel counts are read
//! rescan_ms = 30000                  # how often /proc is rescanned (besides exec events)
//! exit_linger_ms = 30000             # how long an exited process's last values stay
//!
//! [[select]]                         # a process is traced if any select matches;
//! exe = "/usr/local/bin/*"           # every field given must match (globs);
//! module = "example.com/shop/*"      # no [[select]] at all means every Go process
//! cgroup = "/kubepods*"
//! container = "3f1c*"
//! funccount = ["main.*"]             # default: main.*
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::procfs::ProcessInfo;

/// One selector. Every field that is given must match; globs are gotap's function
/// globs (`*`, `?`, `[a-z]`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// The executable's path as the process sees it.
    pub exe: Option<String>,
    /// The Go main module's path from the build info.
    pub module: Option<String>,
    /// The cgroup path (`/proc/PID/cgroup`).
    pub cgroup: Option<String>,
    /// The container id found in the cgroup path.
    pub container: Option<String>,
    /// Function patterns counted in the kernel on the selected processes.
    pub funccount: Option<Vec<String>>,
}

/// The default of [`Select::funccount`].
pub const DEFAULT_FUNCCOUNT: &str = "main.*";

impl Select {
    /// Whether the process (with its Go main module) matches every given field.
    pub fn matches(&self, p: &ProcessInfo, module: Option<&str>) -> bool {
        let glob = |pat: &Option<String>, value: Option<&str>| match pat {
            None => true,
            Some(pat) => value.is_some_and(|v| gobin::glob_match(pat, v)),
        };
        glob(&self.exe, Some(&p.exe))
            && glob(&self.module, module)
            && glob(&self.cgroup, Some(&p.cgroup))
            && glob(&self.container, p.container_id.as_deref())
    }

    pub fn patterns(&self) -> Vec<String> {
        self.funccount
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_FUNCCOUNT.to_string()])
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub prometheus: Option<String>,
    pub otlp: Option<String>,
    pub max_series: Option<usize>,
    pub collect_ms: Option<u64>,
    pub rescan_ms: Option<u64>,
    pub exit_linger_ms: Option<u64>,
    #[serde(default)]
    pub select: Vec<Select>,
}

pub const DEFAULT_MAX_SERIES: usize = 2000;

impl Config {
    /// Reads `path`; errors carry the path and, for bad TOML, the line and column.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| e.at(path))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Toml {
                path: PathBuf::new(),
                line,
                col,
                message: e.message().to_string(),
            }
        })?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (what, v) in [
            ("collect_ms", self.collect_ms),
            ("rescan_ms", self.rescan_ms),
        ] {
            if v == Some(0) {
                return Err(ConfigError::Value(format!("{what} must be above 0")));
            }
        }
        if self.max_series == Some(0) {
            return Err(ConfigError::Value("max_series must be above 0".into()));
        }
        for (i, s) in self.select.iter().enumerate() {
            if s.funccount
                .as_ref()
                .is_some_and(|f| f.iter().any(String::is_empty))
            {
                return Err(ConfigError::Value(format!(
                    "select {}: an empty funccount pattern",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// `self` with every setting `flags` gives replaced, and its selects added.
    pub fn overridden_by(mut self, flags: &Config) -> Config {
        macro_rules! take {
            ($($f:ident),*) => {$( if flags.$f.is_some() { self.$f = flags.$f.clone(); } )*};
        }
        take!(
            prometheus,
            otlp,
            max_series,
            collect_ms,
            rescan_ms,
            exit_linger_ms
        );
        self.select.extend(flags.select.iter().cloned());
        self
    }

    /// The selects in force: every Go process when none is given.
    pub fn selects(&self) -> Vec<Select> {
        if self.select.is_empty() {
            vec![Select::default()]
        } else {
            self.select.clone()
        }
    }

    pub fn max_series(&self) -> usize {
        self.max_series.unwrap_or(DEFAULT_MAX_SERIES)
    }

    pub fn collect_every(&self) -> Duration {
        Duration::from_millis(self.collect_ms.unwrap_or(1000))
    }

    pub fn rescan_every(&self) -> Duration {
        Duration::from_millis(self.rescan_ms.unwrap_or(30_000))
    }

    pub fn exit_linger(&self) -> Duration {
        Duration::from_millis(self.exit_linger_ms.unwrap_or(30_000))
    }
}

fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{col}: {message}", path.display())]
    Toml {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{0}")]
    Value(String),
    #[error("{}: {message}", path.display())]
    InFile { path: PathBuf, message: String },
}

impl ConfigError {
    fn at(self, path: &Path) -> ConfigError {
        match self {
            ConfigError::Toml {
                line, col, message, ..
            } => ConfigError::Toml {
                path: path.to_path_buf(),
                line,
                col,
                message,
            },
            ConfigError::Value(message) => ConfigError::InFile {
                path: path.to_path_buf(),
                message,
            },
            e => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::FileId;

    fn process(exe: &str, cgroup: &str, container: Option<&str>) -> ProcessInfo {
        ProcessInfo {
            pid: 1,
            exe: exe.into(),
            file: FileId { dev: 1, ino: 2 },
            cgroup: cgroup.into(),
            container_id: container.map(Into::into),
            pod_uid: None,
            mnt_ns: 0,
            pid_ns: 0,
            start_time: 0,
        }
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start().to_string() + "\n")
            .collect();
        let c = Config::parse(&example).unwrap();
        assert_eq!(c.prometheus.as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(c.select.len(), 1);
        assert_eq!(c.select[0].patterns(), ["main.*"]);
    }

    #[test]
    fn errors_say_where() {
        let e = Config::parse("prometheus = 1\n").unwrap_err();
        assert!(e.to_string().starts_with(":1:14:"), "{e}");
        let e = Config::parse("[[select]]\nexe = \"a\"\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().starts_with(":3:1:"), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Config::parse("collect_ms = 0").unwrap_err();
        assert!(e.to_string().contains("collect_ms"), "{e}");
    }

    #[test]
    fn selects_match_every_given_field() {
        let p = process("/srv/api", "/kubepods/pod1/abc", Some("abc"));
        let all = Select::default();
        assert!(all.matches(&p, None));
        let s = Select {
            exe: Some("/srv/*".into()),
            module: Some("example.com/*".into()),
            ..Select::default()
        };
        assert!(s.matches(&p, Some("example.com/shop")));
        assert!(!s.matches(&p, Some("other.org/x")));
        assert!(!s.matches(&p, None));
        let c = Select {
            container: Some("ab*".into()),
            cgroup: Some("/kubepods/*".into()),
            ..Select::default()
        };
        assert!(c.matches(&p, None));
        assert!(!c.matches(&process("/srv/api", "/", None), None));
    }

    #[test]
    fn flags_override_and_add_selects() {
        let file =
            Config::parse("prometheus = \":1\"\notlp = \"http://a\"\n[[select]]\nexe = \"x\"")
                .unwrap();
        let flags = Config {
            prometheus: Some(":2".into()),
            select: vec![Select {
                module: Some("m".into()),
                ..Select::default()
            }],
            ..Config::default()
        };
        let c = file.overridden_by(&flags);
        assert_eq!(c.prometheus.as_deref(), Some(":2"));
        assert_eq!(c.otlp.as_deref(), Some("http://a"));
        assert_eq!(c.select.len(), 2);
        assert_eq!(Config::default().selects(), vec![Select::default()]);
    }
}
