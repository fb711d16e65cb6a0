//! Probe kinds: what a written probe point means. Each supported shape
//! (`begin`, `timer.ms(N)`, `process("P").function("F").return`, …) is an entry of
//! [`PROBE_KINDS`] with the function that reads its arguments, so adding a kind is
//! adding a row. Probe aliases are expanded by the checker before this is consulted.

use crate::ast::{Literal, ProbePoint};
use crate::diag::{Diagnostic, nearest};

/// The meaning of one probe point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Begin,
    End,
    Timer {
        period_ns: u64,
    },
    /// `timer.profile`, `timer.hz(N)`: a sample, `hz` times a second of CPU time on
    /// every CPU, of the traced process's thread it interrupted in user mode (a perf
    /// `cpu-clock` event per CPU runs the body in the kernel).
    Sample {
        hz: u64,
    },
    Process(ProcessProbe),
}

/// The rate of `timer.profile`, samples a second per CPU: SystemTap's is the
/// kernel's tick (`CONFIG_HZ`); gotap's is `gotap profile`'s default, off the
/// round rates of the program's own timers, as perf and bpftrace choose.
pub const PROFILE_HZ: u64 = 99;
/// The fastest `timer.hz(N)`: a sample costs a walk of the stack in the kernel.
pub const MAX_SAMPLE_HZ: u64 = 10_000;

/// A probe in a user process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcessProbe {
    /// `process("PATH")`; `None` for bare `process`, which means the `-c`/`-x` target.
    pub path: Option<String>,
    pub site: Site,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    /// `.function("PATTERN")`, or `.function("PATTERN").return` when `ret`;
    /// `.call` and `.inline` choose among the function's instances.
    Function {
        pattern: String,
        ret: bool,
        instances: Instances,
    },
    /// `.statement("FUNC@FILE:LINES")`.
    Statement {
        function: String,
        file: Option<String>,
        lines: Lines,
    },
    /// `.statement(ADDRESS)`: the instruction at this address of the binary as
    /// linked (stap's numeric form); it must start an instruction.
    Address(u64),
}

/// Which copies of a function a `.function` probe covers, as in SystemTap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Instances {
    /// `.function("F")`: the out-of-line body and every call the compiler inlined.
    #[default]
    All,
    /// `.function("F").call`: the out-of-line body only.
    Call,
    /// `.function("F").inline`: the inlined calls only.
    Inline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lines {
    /// `:*`, every line of the function.
    Any,
    One(u32),
    /// `:N-M`, inclusive.
    Range(u32, u32),
}

impl std::fmt::Display for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lines::Any => write!(f, "*"),
            Lines::One(n) => write!(f, "{n}"),
            Lines::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// Where a probe handler runs; built-ins say in which of these they may be called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx(pub u8);

impl Ctx {
    pub const BEGIN: Ctx = Ctx(1);
    pub const END: Ctx = Ctx(2);
    pub const TIMER: Ctx = Ctx(4);
    /// A user-space probe at function entry or a statement.
    pub const USER: Ctx = Ctx(8);
    /// A user-space probe at function return.
    pub const RETURN: Ctx = Ctx(16);
    /// A sample of the traced process (`timer.profile`, `timer.hz(N)`).
    pub const SAMPLE: Ctx = Ctx(32);
    pub const ANY_USER: Ctx = Ctx(8 | 16);
    pub const ANY: Ctx = Ctx(0xff);

    pub fn allows(self, other: Ctx) -> bool {
        self.0 & other.0 != 0
    }

    pub fn describe(self) -> &'static str {
        match self.0 {
            1 => "a 'begin' probe",
            2 => "an 'end' probe",
            4 => "a timer probe",
            8 => "a process function or statement probe",
            16 => "a '.return' probe",
            24 => "process probes",
            32 => "a sampling probe ('timer.profile', 'timer.hz')",
            _ => "this probe",
        }
    }
}

impl ProbeKind {
    pub fn ctx(&self) -> Ctx {
        match self {
            ProbeKind::Begin => Ctx::BEGIN,
            ProbeKind::End => Ctx::END,
            ProbeKind::Timer { .. } => Ctx::TIMER,
            ProbeKind::Sample { .. } => Ctx::SAMPLE,
            ProbeKind::Process(p) => match p.site {
                Site::Function { ret: true, .. } => Ctx::RETURN,
                _ => Ctx::USER,
            },
        }
    }
}

/// One supported probe-point shape.
pub struct ProbeKindEntry {
    /// Component names joined by dots, as in [`ProbePoint::shape`].
    pub shape: &'static str,
    pub doc: &'static str,
    pub build: fn(&ProbePoint) -> Result<ProbeKind, Diagnostic>,
}

pub const PROBE_KINDS: &[ProbeKindEntry] = &[
    ProbeKindEntry {
        shape: "begin",
        doc: "once, when the session starts",
        build: |p| no_args(p).map(|_| ProbeKind::Begin),
    },
    ProbeKindEntry {
        shape: "end",
        doc: "once, when the session ends",
        build: |p| no_args(p).map(|_| ProbeKind::End),
    },
    ProbeKindEntry {
        shape: "timer.s",
        doc: "every N seconds",
        build: |p| timer(p, 1_000_000_000),
    },
    ProbeKindEntry {
        shape: "timer.sec",
        doc: "every N seconds",
        build: |p| timer(p, 1_000_000_000),
    },
    ProbeKindEntry {
        shape: "timer.ms",
        doc: "every N milliseconds",
        build: |p| timer(p, 1_000_000),
    },
    ProbeKindEntry {
        shape: "timer.msec",
        doc: "every N milliseconds",
        build: |p| timer(p, 1_000_000),
    },
    ProbeKindEntry {
        shape: "timer.us",
        doc: "every N microseconds",
        build: |p| timer(p, 1_000),
    },
    ProbeKindEntry {
        shape: "timer.usec",
        doc: "every N microseconds",
        build: |p| timer(p, 1_000),
    },
    ProbeKindEntry {
        shape: "timer.ns",
        doc: "every N nanoseconds",
        build: |p| timer(p, 1),
    },
    ProbeKindEntry {
        shape: "timer.nsec",
        doc: "every N nanoseconds",
        build: |p| timer(p, 1),
    },
    ProbeKindEntry {
        shape: "timer.profile",
        doc: "a sample of the traced process, 99 times a second of CPU time on every CPU, where it runs in user mode",
        build: |p| no_args(p).map(|_| ProbeKind::Sample { hz: PROFILE_HZ }),
    },
    ProbeKindEntry {
        shape: "timer.hz",
        doc: "a sample of the traced process, N times a second of CPU time on every CPU, where it runs in user mode",
        build: sample_hz,
    },
    ProbeKindEntry {
        shape: "process.function",
        doc: "entry of the functions matching a pattern",
        build: |p| process(p, false),
    },
    ProbeKindEntry {
        shape: "process.function.call",
        doc: "entry of the out-of-line bodies of the functions matching a pattern, not their inlined calls",
        build: |p| process(p, false),
    },
    ProbeKindEntry {
        shape: "process.function.inline",
        doc: "the calls the compiler inlined of the functions matching a pattern",
        build: |p| process(p, false),
    },
    ProbeKindEntry {
        shape: "process.function.return",
        doc: "return from the functions matching a pattern",
        build: |p| process(p, true),
    },
    ProbeKindEntry {
        shape: "process.statement",
        doc: "a source line: \"FUNC@FILE:LINE\", LINE may be '*' or 'N-M'; or an address as linked: statement(0x4a1b2c)",
        build: |p| process(p, false),
    },
];

/// Interprets a written probe point (already alias-expanded).
pub fn probe_kind(p: &ProbePoint) -> Result<ProbeKind, Diagnostic> {
    let shape = p.shape();
    match PROBE_KINDS.iter().find(|k| k.shape == shape) {
        Some(k) => (k.build)(p),
        None => {
            let mut d = Diagnostic::error(p.span, format!("unknown probe point '{shape}'"));
            if let Some(n) = nearest(&shape, PROBE_KINDS.iter().map(|k| k.shape)).first() {
                d = d.with_help(format!("did you mean '{n}'?"));
            }
            Err(d)
        }
    }
}

fn no_args(p: &ProbePoint) -> Result<(), Diagnostic> {
    match p.components.iter().find(|c| c.arg.is_some()) {
        Some(c) => Err(Diagnostic::error(
            c.span,
            format!("'{}' takes no argument", c.name),
        )),
        None => Ok(()),
    }
}

fn timer(p: &ProbePoint, unit_ns: u64) -> Result<ProbeKind, Diagnostic> {
    let c = &p.components[1];
    match c.arg {
        Some(Literal::Num(n)) if n > 0 => (n as u64)
            .checked_mul(unit_ns)
            .map(|period_ns| ProbeKind::Timer { period_ns })
            .ok_or_else(|| Diagnostic::error(c.span, "timer period is too large")),
        _ => Err(Diagnostic::error(
            c.span,
            format!(
                "'timer.{}' needs a positive number, as in 'timer.{}(100)'",
                c.name, c.name
            ),
        )),
    }
}

fn sample_hz(p: &ProbePoint) -> Result<ProbeKind, Diagnostic> {
    let c = &p.components[1];
    match c.arg {
        Some(Literal::Num(n)) if n > 0 && n as u64 <= MAX_SAMPLE_HZ => {
            Ok(ProbeKind::Sample { hz: n as u64 })
        }
        _ => Err(Diagnostic::error(
            c.span,
            format!(
                "'timer.hz' needs a rate from 1 to {MAX_SAMPLE_HZ} samples a second, as in 'timer.hz(99)'"
            ),
        )),
    }
}

fn string_arg(c: &crate::ast::Component) -> Result<String, Diagnostic> {
    match &c.arg {
        Some(Literal::Str(s)) => Ok(s.clone()),
        _ => Err(Diagnostic::error(
            c.span,
            format!("'{}' needs a string argument", c.name),
        )),
    }
}

fn process(p: &ProbePoint, ret: bool) -> Result<ProbeKind, Diagnostic> {
    let proc_c = &p.components[0];
    let path = match &proc_c.arg {
        None => None,
        Some(Literal::Str(s)) => Some(s.clone()),
        Some(Literal::Num(_)) => {
            return Err(Diagnostic::error(
                proc_c.span,
                "process probes by PID are not supported; use process(\"PATH\") or -x PID",
            ));
        }
    };
    let c = &p.components[1];
    if c.name == "statement"
        && let Some(Literal::Num(a)) = c.arg
    {
        return Ok(ProbeKind::Process(ProcessProbe {
            path,
            site: Site::Address(a as u64),
        }));
    }
    let arg = string_arg(c)?;
    if let Some(last) = p.components.get(2)
        && last.arg.is_some()
    {
        return Err(Diagnostic::error(
            last.span,
            format!("'{}' takes no argument", last.name),
        ));
    }
    let instances = match p.components.get(2).map(|c| c.name.as_str()) {
        Some("call") => Instances::Call,
        Some("inline") => Instances::Inline,
        _ => Instances::All,
    };
    let site = if c.name == "function" {
        Site::Function {
            pattern: arg,
            ret,
            instances,
        }
    } else {
        statement(&arg).map_err(|m| {
            Diagnostic::error(c.span, m).with_help("write it as \"FUNCTION@FILE:LINE\"")
        })?
    };
    Ok(ProbeKind::Process(ProcessProbe { path, site }))
}

/// Parses `FUNC@FILE:LINES` (the file part is optional: `FUNC:LINES`).
fn statement(spec: &str) -> Result<Site, String> {
    let bad = || format!("invalid statement '{spec}'");
    let (head, lines) = spec.rsplit_once(':').ok_or_else(bad)?;
    let (function, file) = match head.split_once('@') {
        Some((f, file)) => (f, Some(file.to_string())),
        None => (head, None),
    };
    if function.is_empty() || file.as_deref() == Some("") {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<u32>().ok().filter(|&n| n > 0);
    let lines = if lines == "*" {
        Lines::Any
    } else if let Some((a, b)) = lines.split_once('-') {
        match (num(a), num(b)) {
            (Some(a), Some(b)) if a <= b => Lines::Range(a, b),
            _ => {
                return Err(format!(
                    "invalid line range '{lines}' in statement '{spec}'"
                ));
            }
        }
    } else {
        Lines::One(
            num(lines).ok_or_else(|| format!("invalid line '{lines}' in statement '{spec}'"))?,
        )
    };
    Ok(Site::Statement {
        function: function.to_string(),
        file,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe kind of `point`, parsed as the command line's `-l` parses it.
    fn kind_of(point: &str) -> Result<ProbeKind, Diagnostic> {
        let mut sm = crate::SourceMap::new();
        let src = format!("probe {point} {{}}");
        let file = sm.add("<test>", &src);
        let (script, diags) = crate::parse(file, &src, &crate::ParseOptions::default());
        assert!(!crate::has_errors(&diags), "{point}: {diags:?}");
        let p = script
            .items
            .iter()
            .find_map(|i| match i {
                crate::ast::Item::Probe(p) => p.points.first().cloned(),
                _ => None,
            })
            .expect("a probe point");
        probe_kind(&p)
    }

    #[test]
    fn call_and_inline_choose_a_functions_instances() {
        let site = |point: &str| match kind_of(point) {
            Ok(ProbeKind::Process(p)) => p.site,
            other => panic!("{point}: {other:?}"),
        };
        let function = |instances, ret| Site::Function {
            pattern: "F".into(),
            ret,
            instances,
        };
        assert_eq!(
            site("process.function(\"F\")"),
            function(Instances::All, false)
        );
        assert_eq!(
            site("process.function(\"F\").call"),
            function(Instances::Call, false)
        );
        assert_eq!(
            site("process.function(\"F\").inline"),
            function(Instances::Inline, false)
        );
        assert_eq!(
            site("process.function(\"F\").return"),
            function(Instances::All, true)
        );
        let err = kind_of("process.function(\"F\").inline(3)").unwrap_err();
        assert!(
            err.message.contains("'inline' takes no argument"),
            "{}",
            err.message
        );
        assert!(kind_of("process.function(\"F\").inlined").is_err());
    }

    #[test]
    fn statement_specs() {
        assert_eq!(
            statement("runtime.newstack@/usr/lib/golang/src/runtime/stack.go:936"),
            Ok(Site::Statement {
                function: "runtime.newstack".into(),
                file: Some("/usr/lib/golang/src/runtime/stack.go".into()),
                lines: Lines::One(936)
            })
        );
        assert!(matches!(
            statement("main.f@x.go:3-9"),
            Ok(Site::Statement {
                lines: Lines::Range(3, 9),
                ..
            })
        ));
        assert!(matches!(
            statement("main.f@x.go:*"),
            Ok(Site::Statement {
                lines: Lines::Any,
                ..
            })
        ));
        assert!(statement("main.f@x.go:9-3").is_err());
        assert!(matches!(
            kind_of("process.statement(0x4a1b2c)"),
            Ok(ProbeKind::Process(ProcessProbe {
                site: Site::Address(0x4a1b2c),
                ..
            }))
        ));
        assert!(statement("main.f").is_err());
    }

    #[test]
    fn profile_and_hz_are_samples_at_their_rate() {
        assert_eq!(
            kind_of("timer.profile"),
            Ok(ProbeKind::Sample { hz: PROFILE_HZ })
        );
        assert_eq!(kind_of("timer.hz(997)"), Ok(ProbeKind::Sample { hz: 997 }));
        assert_eq!(kind_of("timer.hz(997)").unwrap().ctx(), Ctx::SAMPLE);
        for bad in ["timer.hz(0)", "timer.hz(100000)", "timer.hz"] {
            let err = kind_of(bad).unwrap_err();
            assert!(
                err.message.contains("'timer.hz' needs a rate"),
                "{bad}: {}",
                err.message
            );
        }
        assert!(kind_of("timer.profile(3)").is_err());
    }
}
