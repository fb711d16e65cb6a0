//! The target a script is first checked against: no Go binary at all. A script whose
//! probes are all `begin`, `end` and `timer.*` needs none (as in stap, it runs with no
//! program to trace), and every error of a script's own (names, types, probe points
//! that do not exist) is found here, before gotap opens or complains about a binary.
//! Whatever needs a binary (a process probe point, a sampling probe, `$var`, `@cast`) gets one error
//! that says so, and the question is remembered: the caller then opens the binary and
//! checks the script again against it (`codegen::GoTarget`).

use std::cell::Cell;

use lang::ast::VarSet;
use lang::{GoType, Location, ProcessProbe, Target, TargetError};

/// What every question about the traced program gets: the caller recognises its
/// diagnostics by it.
pub const NEEDS_A_BINARY: &str = "this needs the Go binary to be read";

/// A [`Target`] with no binary behind it.
#[derive(Default)]
pub struct NoBinary {
    asked: Cell<bool>,
}

impl NoBinary {
    /// True if the script asked anything that only a binary can answer.
    pub fn asked(&self) -> bool {
        self.asked.get()
    }

    fn refuse<T>(&self) -> Result<T, TargetError> {
        self.asked.set(true);
        Err(TargetError::Other {
            message: NEEDS_A_BINARY.to_string(),
            help: None,
        })
    }
}

impl Target for NoBinary {
    fn resolve_probe_point(&self, _: &ProcessProbe) -> Result<Vec<Location>, TargetError> {
        self.refuse()
    }

    fn context_var(&self, _: &Location, _: &str) -> Result<GoType, TargetError> {
        self.refuse()
    }

    fn context_vars(&self, _: &Location, _: VarSet) -> Result<Vec<(String, GoType)>, TargetError> {
        self.refuse()
    }

    fn member(&self, _: &GoType, _: &str) -> Result<GoType, TargetError> {
        self.refuse()
    }

    fn index(&self, _: &GoType) -> Result<GoType, TargetError> {
        self.refuse()
    }

    fn cast_type(&self, _: &str, _: Option<&str>) -> Result<GoType, TargetError> {
        self.refuse()
    }

    fn sampled_binary(&self) -> Result<(), TargetError> {
        self.refuse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str) -> (Vec<String>, bool) {
        let mut sm = lang::SourceMap::new();
        let file = sm.add("<t>", src);
        let (script, diags) = lang::parse(file, src, &lang::ParseOptions::default());
        assert!(!lang::has_errors(&diags), "{}", sm.render_all(&diags));
        let target = NoBinary::default();
        let (_, diags) = lang::check(&script, &target);
        let errors = diags
            .iter()
            .filter(|d| d.severity == lang::Severity::Error)
            .map(|d| d.message.clone())
            .collect();
        (errors, target.asked())
    }

    #[test]
    fn begin_end_and_timers_need_no_binary() {
        let (errors, asked) = check(
            "global n\nprobe begin { n = 1 }\nprobe timer.ms(10) { n++ }\nprobe end { printf(\"%d\\n\", n) }",
        );
        assert_eq!((errors, asked), (vec![], false));
    }

    #[test]
    fn a_process_probe_asks_and_is_told_once() {
        let (errors, asked) =
            check("probe process(\"/bin/x\").function(\"main.f\") { printf(\"%d\\n\", $n) }");
        assert!(asked);
        assert_eq!(errors, [NEEDS_A_BINARY]);
    }
}
