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
//!
//! [[select]]                         # what a select runs: funccount (the default),
//! exe = "/srv/*"                     # a tool, or a script (a file, relative to this
//! tool = "stackgrow"                 # file's directory, or its text)
//!
//! [[select]]                         # funclatency with its patterns (as funccount's:
//! exe = "/srv/api"                   # main.* if none); tool = "funclatency" may be
//! funclatency = ["main.(*Server).*"] # said too
//!
//! [[select]]
//! module = "example.com/*"
//! script_text = """
//! global calls
//! probe process.function("main.*") { calls[probefunc()]++ }
//! """
//! ```
//!
//! The tools and what the agent exports of them (the names are `export::names`'s,
//! as the one-shot `--prometheus` exports them):
//!
//! - `funccount`: `go_function_calls_total{function}`, per process;
//! - `funclatency`: `go_function_latency_seconds{function}` (a histogram) and
//!   `go_function_untimed_calls_total{function,cause}`, the sums over the binary's
//!   processes;
//! - `stackgrow`: `go_stack_growths_total{function}`, the binary's;
//! - `gcstat`: `go_gc_cycles_total`, `go_gc_pause_seconds`, the binary's;
//! - `goroutines`: `go_goroutines`, per process (`runtime.NumGoroutine()`'s count);
//! - `offcpu`: `go_offcpu_seconds_total{reason}`, `go_offcpu_waits_total{reason}`,
//!   per process.
//!
//! `profile` is not run by the agent ([`NOT_IN_AGENT`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::procfs::ProcessInfo;
use crate::work::Work;

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
    /// Function patterns timed on the selected processes (funclatency).
    pub funclatency: Option<Vec<String>>,
    /// The tool run on the selected processes ([`TOOLS`]; `funccount` by default).
    pub tool: Option<Spanned<String>>,
    /// A script file run on the selected processes.
    pub script: Option<Spanned<String>>,
    /// A script's text run on the selected processes.
    pub script_text: Option<Spanned<String>>,
    /// What the select runs besides funccount, once [`Config::resolve_work`] has read
    /// its script and checked its tool.
    #[serde(skip)]
    pub work: Option<Work>,
}

/// The tools a select may name: `funccount` counts in the agent's own per-process
/// program, `funclatency` is its own pair of programs ([`Work::FuncLatency`]),
/// `goroutines` reads each process's memory, and the others are scripts run once per
/// binary ([`Work::Tool`]).
pub const TOOLS: [&str; 6] = [
    "funccount",
    "funclatency",
    "stackgrow",
    "gcstat",
    "goroutines",
    "offcpu",
];

/// The tools that take function patterns, each under the key of its own name.
pub const PATTERN_TOOLS: [&str; 2] = ["funccount", "funclatency"];

/// The tools of the one-shot CLI the agent does not run, with why.
pub const NOT_IN_AGENT: [(&str, &str); 1] = [(
    "profile",
    "it samples each CPU at a rate for the processes it was started on, a perf \
     event per CPU rather than probes on a binary shared by its processes: a \
     different shape of job",
)];

/// The patterns of a pattern tool given none.
pub const DEFAULT_FUNCCOUNT: &str = "main.*";

impl Select {
    /// What the select runs besides funccount (`None`: funccount), its script read
    /// and parsed; an error names the key's place and the script's.
    fn work_of(
        &self,
        dir: &Path,
        place: &dyn Fn(&str, std::ops::Range<usize>) -> String,
    ) -> Result<Option<Work>, String> {
        let at = |key: &str, v: &Spanned<String>| place(key, v.span());
        let given: Vec<(&str, &Spanned<String>)> = [
            ("tool", &self.tool),
            ("script", &self.script),
            ("script_text", &self.script_text),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_ref()?)))
        .collect();
        if let [(k1, _), (k2, v2), ..] = given[..] {
            return Err(format!(
                "{}: {k2} with {k1}: a select runs one tool or one script",
                at(k2, v2)
            ));
        }
        // The tool whose patterns are given (`check` made sure there is one at most).
        let patterns_of = self.patterns_key();
        let Some((key, v)) = given.first().copied() else {
            // Patterns alone name their tool.
            return Ok(Self::tool_work(patterns_of.unwrap_or("funccount"), self));
        };
        if let Some(tool) = patterns_of
            && !(key == "tool" && v.get_ref() == tool)
        {
            return Err(format!(
                "{}: {tool} patterns with {key} {:?}: patterns are for tool = \"{tool}\"",
                at(key, v),
                v.get_ref()
            ));
        }
        match key {
            "tool" => {
                let name = v.get_ref().as_str();
                if TOOLS.contains(&name) {
                    Ok(Self::tool_work(name, self))
                } else if let Some((_, why)) = NOT_IN_AGENT.iter().find(|(t, _)| *t == name) {
                    Err(format!(
                        "{}: tool {name:?} is not run by the agent: {why} (it runs: {})",
                        at(key, v),
                        TOOLS.join(", ")
                    ))
                } else {
                    Err(format!(
                        "{}: unknown tool {name:?} (expected one of: {})",
                        at(key, v),
                        TOOLS.join(", ")
                    ))
                }
            }
            "script" => {
                let path = dir.join(v.get_ref());
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: script {}: {e}", at(key, v), path.display()))?;
                let name = path.display().to_string();
                crate::work::parse_error(&name, &text).map_or(Ok(()), |e| {
                    Err(format!("{}: script has errors:\n{e}", at(key, v)))
                })?;
                Ok(Some(Work::Script { name, text }))
            }
            _ => {
                let text = v.get_ref().clone();
                let name = format!("{}: script_text", at(key, v));
                crate::work::parse_error(&name, &text).map_or(Ok(()), |e| {
                    Err(format!("{}: script_text has errors:\n{e}", at(key, v)))
                })?;
                Ok(Some(Work::Script { name, text }))
            }
        }
    }

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

    /// The function patterns of the select's tool (funccount's or funclatency's,
    /// whichever key gives them), or the default, [`DEFAULT_FUNCCOUNT`].
    pub fn patterns(&self) -> Vec<String> {
        self.funccount
            .clone()
            .or_else(|| self.funclatency.clone())
            .unwrap_or_else(|| vec![DEFAULT_FUNCCOUNT.to_string()])
    }

    /// The pattern tool whose key gives patterns, if one does.
    fn patterns_key(&self) -> Option<&'static str> {
        let given = [self.funccount.is_some(), self.funclatency.is_some()];
        PATTERN_TOOLS
            .into_iter()
            .zip(given)
            .find_map(|(t, g)| g.then_some(t))
    }

    /// What tool `name` (one of [`TOOLS`]) runs besides funccount, with the
    /// select's patterns.
    fn tool_work(name: &str, s: &Select) -> Option<Work> {
        match name {
            "funccount" => None,
            "funclatency" => {
                let mut p = s.patterns();
                p.sort();
                p.dedup();
                Some(Work::FuncLatency(p))
            }
            _ => Some(Work::Tool(name.to_string())),
        }
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
        let mut c = Config::parse(&text).map_err(|e| e.at(path))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        c.resolve_work(dir, &Config::file_place(path, &text))?;
        Ok(c)
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

    /// Reads each select's script (a relative path from `dir`), checks its syntax and
    /// its tool, and keeps what it runs in [`Select::work`]. `place` names where a key
    /// was given: `FILE:LINE:COL` of its value in a file, or the flag.
    pub fn resolve_work(
        &mut self,
        dir: &Path,
        place: &dyn Fn(&str, std::ops::Range<usize>) -> String,
    ) -> Result<(), ConfigError> {
        for s in &mut self.select {
            if s.work.is_some() {
                continue;
            }
            s.work = s.work_of(dir, place).map_err(ConfigError::Placed)?;
        }
        Ok(())
    }

    /// Places in `text` (the file at `path`), for [`Config::resolve_work`].
    pub fn file_place(path: &Path, text: &str) -> impl Fn(&str, std::ops::Range<usize>) -> String {
        let path = path.display().to_string();
        let text = text.to_string();
        move |_key: &str, at: std::ops::Range<usize>| {
            let (line, col) = line_col(&text, at.start);
            format!("{path}:{line}:{col}")
        }
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
            if s.funccount.is_some() && s.funclatency.is_some() {
                return Err(ConfigError::Value(format!(
                    "select {}: funccount with funclatency: a select runs one tool",
                    i + 1
                )));
            }
            for (tool, list) in PATTERN_TOOLS
                .into_iter()
                .zip([&s.funccount, &s.funclatency])
            {
                if list
                    .as_ref()
                    .is_some_and(|f| f.iter().any(String::is_empty))
                {
                    return Err(ConfigError::Value(format!(
                        "select {}: an empty {tool} pattern",
                        i + 1
                    )));
                }
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
    /// A message that already names its place.
    #[error("{0}")]
    Placed(String),
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
        assert_eq!(c.select.len(), 4);
        assert_eq!(c.select[0].patterns(), ["main.*"]);
        assert_eq!(
            c.select[1].tool.as_ref().map(|t| t.get_ref().as_str()),
            Some("stackgrow")
        );
        let mut c = c;
        c.resolve_work(Path::new("."), &|k, _| k.to_string())
            .unwrap();
        assert_eq!(c.select[0].work, None);
        assert_eq!(c.select[1].work, Some(Work::Tool("stackgrow".into())));
        assert_eq!(
            c.select[2].work,
            Some(Work::FuncLatency(vec!["main.(*Server).*".into()]))
        );
        assert!(
            matches!(&c.select[3].work, Some(Work::Script { text, .. }) if text.contains("calls[probefunc()]++"))
        );
    }

    #[test]
    fn the_readme_example_resolves() {
        let readme = include_str!("../../../README.md");
        let at = readme.find("### The agent's configuration").unwrap();
        let block = &readme[at..];
        let start = block.find("```toml\n").unwrap() + 8;
        let text = &block[start..start + block[start..].find("```").unwrap()];
        let dir = std::env::temp_dir().join(format!("gotap-agent-readme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("counts.stp"),
            "global n\nprobe process.function(\"main.x\") { n++ }\n",
        )
        .unwrap();
        let path = dir.join("agent.toml");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let works: Vec<Option<&Work>> = c.select.iter().map(|s| s.work.as_ref()).collect();
        assert!(
            matches!(
                works[..],
                [Some(Work::Tool(_)), Some(Work::Script { .. }), None]
            ),
            "{works:?}"
        );
        assert_eq!(c.select[2].patterns(), ["main.*", "net/http.(*conn).serve"]);
    }

    #[test]
    fn a_select_runs_one_thing_and_patterns_only_with_funccount() {
        let bad = [
            "[[select]]\ntool = \"stackgrow\"\nscript_text = \"x\"\n",
            "[[select]]\ntool = \"stackgrow\"\nfunccount = [\"main.*\"]\n",
        ];
        for text in bad {
            let mut c = Config::parse(text).unwrap();
            let e = c
                .resolve_work(
                    Path::new("."),
                    &Config::file_place(Path::new("a.toml"), text),
                )
                .unwrap_err();
            assert!(e.to_string().starts_with("a.toml:"), "{e}");
        }
    }

    #[test]
    fn funclatency_takes_its_patterns_as_funccount_does_and_profile_is_refused_with_why() {
        let work = |text: &str| {
            let mut c = Config::parse(text)?;
            c.resolve_work(Path::new("."), &|k, _| k.to_string())?;
            Ok::<_, ConfigError>(c.select[0].work.clone())
        };
        let timed = |p: &[&str]| Some(Work::FuncLatency(p.iter().map(|s| s.to_string()).collect()));
        assert_eq!(
            work("[[select]]\nfunclatency = [\"main.b\", \"main.a\", \"main.b\"]\n").unwrap(),
            timed(&["main.a", "main.b"])
        );
        assert_eq!(
            work("[[select]]\ntool = \"funclatency\"\n").unwrap(),
            timed(&[DEFAULT_FUNCCOUNT])
        );
        assert_eq!(
            work("[[select]]\ntool = \"goroutines\"\n").unwrap(),
            Some(Work::Tool("goroutines".into()))
        );
        for bad in [
            "[[select]]\ntool = \"funclatency\"\nfunccount = [\"main.*\"]\n",
            "[[select]]\nfunccount = [\"main.*\"]\nfunclatency = [\"main.*\"]\n",
            "[[select]]\nfunclatency = [\"\"]\n",
        ] {
            assert!(work(bad).is_err(), "{bad}");
        }
        let e = work("[[select]]\ntool = \"profile\"\n").unwrap_err();
        assert!(
            e.to_string().contains("not run by the agent: it samples"),
            "{e}"
        );
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
