//! The two back ends a probe body can run in, and what each can do. A process probe
//! and a sampling probe (`timer.profile`, `timer.hz(N)`) run in the kernel (compiled
//! to eBPF by `codegen`); `begin`, `end` and timer probes
//! run in user space (walked by `runtime::interp`), against the same globals. A script
//! function runs in the back ends of every probe that reaches it.
//!
//! Both back ends give the language one meaning; where one of them cannot do
//! something, this module says so and the checker refuses it at its place, before
//! anything is loaded. Built-ins carry their [`Runs`] in their table row
//! ([`crate::builtins::BUILTINS`]); the other constructs whose support differs are the
//! rows of [`CONSTRUCTS`], and the conversions `sprintf` can build in the kernel are
//! said by [`crate::format::Conversion::kernel_sprintf`].

use crate::probe::ProbeKind;

/// Where a probe body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An eBPF program in the traced process's context (process and sampling probes).
    Kernel,
    /// gotap's own interpreter (`begin`, `end`, timer probes).
    User,
}

impl Backend {
    /// The back end that runs a probe point of this kind.
    pub fn of(kind: &ProbeKind) -> Backend {
        match kind {
            ProbeKind::Process(_) | ProbeKind::Sample { .. } => Backend::Kernel,
            ProbeKind::Begin | ProbeKind::End | ProbeKind::Timer { .. } => Backend::User,
        }
    }

    /// The probes that run here, as a user writes them.
    pub fn probes(self) -> &'static str {
        match self {
            Backend::Kernel => "process probes",
            Backend::User => "'begin', 'end' and timer probes",
        }
    }
}

/// The back ends that implement something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runs {
    pub kernel: bool,
    pub user: bool,
}

impl Runs {
    pub const BOTH: Runs = Runs {
        kernel: true,
        user: true,
    };
    pub const KERNEL: Runs = Runs {
        kernel: true,
        user: false,
    };
    pub const USER: Runs = Runs {
        kernel: false,
        user: true,
    };
    pub const NOWHERE: Runs = Runs {
        kernel: false,
        user: false,
    };

    pub fn allows(self, b: Backend) -> bool {
        match b {
            Backend::Kernel => self.kernel,
            Backend::User => self.user,
        }
    }

    /// Where it can be used, for a `help:` line: "process probes".
    pub fn describe(self) -> &'static str {
        match (self.kernel, self.user) {
            (true, true) => "any probe",
            (true, false) => Backend::Kernel.probes(),
            (false, true) => Backend::User.probes(),
            (false, false) => "no probe",
        }
    }
}

/// How deep kernel probes inline calls of script functions.
pub const MAX_INLINED_CALLS: usize = 16;

/// A construct other than a built-in call that one back end cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Construct {
    /// `s =~ "re"`, `s !~ "re"`.
    Regex,
    /// `@variance(s)`.
    Variance,
    /// `print(@hist_log(s))`, `print(@hist_linear(s, …))`: drawn from every CPU's
    /// buckets.
    Histogram,
    /// `foreach (k in a+)`: sorting needs all elements at once.
    SortedForeach,
    /// `foreach` written inside a script function.
    ForeachInFunction,
    /// A script function that calls itself, directly or not.
    Recursion,
    /// A chain of calls deeper than [`MAX_INLINED_CALLS`].
    DeepCalls,
    /// `%m`/`%M` in a format: a dump of the traced program's memory.
    MemoryDump,
    /// A stack made into a string (`sprintf("%s", s)`, `sprint(s)`): its text needs
    /// its frames and the binary's symbols.
    StackText,
}

/// One row of [`CONSTRUCTS`].
#[derive(Debug)]
pub struct ConstructRow {
    pub construct: Construct,
    /// How the error names it: "'=~'".
    pub what: &'static str,
    pub runs: Runs,
    /// Why, or what to do instead, for the `help:` line.
    pub help: &'static str,
}

pub const CONSTRUCTS: &[ConstructRow] = &[
    ConstructRow {
        construct: Construct::Regex,
        what: "a regular expression match",
        runs: Runs::USER,
        help: "the kernel side has no regular expression engine; match in an 'end' or timer probe, or compare with '==' or isinstr() there",
    },
    ConstructRow {
        construct: Construct::Variance,
        what: "'@variance'",
        runs: Runs::NOWHERE,
        help: "gotap's statistics keep count, sum, min, max and histograms, not the running variance",
    },
    ConstructRow {
        construct: Construct::Histogram,
        what: "printing a histogram",
        runs: Runs::USER,
        help: "histograms are drawn in user space: print them in an 'end' or timer probe",
    },
    ConstructRow {
        construct: Construct::SortedForeach,
        what: "a sorted 'foreach'",
        runs: Runs::USER,
        help: "sorting needs user space: drop the '+'/'-' or iterate in an 'end' or timer probe",
    },
    ConstructRow {
        construct: Construct::ForeachInFunction,
        what: "'foreach' in a function",
        runs: Runs::USER,
        help: "kernel probes inline functions and cannot run their 'foreach' yet: write the loop in the probe",
    },
    ConstructRow {
        construct: Construct::Recursion,
        what: "a recursive function call",
        runs: Runs::USER,
        help: "kernel probes inline script functions, so a function cannot call itself there",
    },
    ConstructRow {
        construct: Construct::DeepCalls,
        what: "a chain of more than 16 nested calls",
        runs: Runs::USER,
        help: "kernel probes inline script functions, at most 16 deep",
    },
    ConstructRow {
        construct: Construct::MemoryDump,
        what: "'%m' and '%M'",
        runs: Runs::KERNEL,
        help: "they read the traced program's memory, which only process probes see",
    },
    ConstructRow {
        construct: Construct::StackText,
        what: "a stack made into a string",
        runs: Runs::USER,
        help: "a stack becomes text in user space: printf or print it here (its addresses; print_usyms() for its frames), or store it and sprintf it in an 'end' or timer probe",
    },
];

impl Construct {
    pub fn row(self) -> &'static ConstructRow {
        CONSTRUCTS
            .iter()
            .find(|r| r.construct == self)
            .unwrap_or(&CONSTRUCTS[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_construct_has_one_row() {
        let all = [
            Construct::Regex,
            Construct::Variance,
            Construct::Histogram,
            Construct::SortedForeach,
            Construct::ForeachInFunction,
            Construct::Recursion,
            Construct::DeepCalls,
            Construct::MemoryDump,
            Construct::StackText,
        ];
        for c in all {
            let rows = CONSTRUCTS.iter().filter(|r| r.construct == c).count();
            assert_eq!(rows, 1, "{c:?}");
        }
        assert_eq!(CONSTRUCTS.len(), all.len());
    }
}
