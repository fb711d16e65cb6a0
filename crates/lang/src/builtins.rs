//! The built-in functions, one row each of [`BUILTINS`]: the [`BuiltinId`] both back
//! ends match on, the name, the accepted signatures and result, where it runs (in a
//! kernel probe, in user space, or both: see [`crate::backend`]) and what the lowering
//! needs besides its arguments. The checker types calls from this table, refuses a
//! call in a probe whose back end the row does not list, and records the id it
//! resolved to ([`crate::TypeInfo::callee`]); `codegen` and `runtime::interp` each
//! lower a call with one exhaustive `match` on the id, so a built-in added here does
//! not compile until both back ends say what they do with it (habit 7: built-ins are
//! table entries, as in ply's `struct func`).

use crate::backend::Runs;
use crate::check::Type;

/// Which built-in a call names. The order is the table's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BuiltinId {
    Pid,
    Tid,
    Execname,
    Cpu,
    GettimeofdayNs,
    GettimeofdayUs,
    GettimeofdayMs,
    GettimeofdayS,
    Pp,
    Probefunc,
    Ppfunc,
    Target,
    UserString,
    UserStringN,
    UserLong,
    UserInt,
    UserShort,
    UserChar,
    Printf,
    Sprintf,
    Print,
    Println,
    Sprint,
    Exit,
    PrintUbacktrace,
    PrintUbacktraceFileline,
    Ubacktrace,
    SprintUbacktrace,
    PrintUsyms,
    Usymname,
    Goid,
    GoWaitReason,
    Register,
    UserMode,
    Strlen,
    Substr,
    Isinstr,
    Len,
    Cap,
}

/// What a built-in accepts.
#[derive(Clone, Copy, Debug)]
pub enum Params {
    /// One of these exact argument lists (`print_ubacktrace_fileline()` or with 3 longs).
    Fixed(&'static [&'static [Type]]),
    /// A literal format string, then arguments typed by its `%` directives.
    Format,
    /// Any number (at least `min`) of printable values, including histograms.
    Printable { min: usize, max: Option<usize> },
    /// One Go value that has a length (a context expression of a slice, array or
    /// channel, and with `strings` of a string or map, or a script string).
    Length { strings: bool },
}

/// What a built-in returns; `None` means it is a statement-like call with no value.
pub type Ret = Option<Type>;

/// What lowering a built-in needs besides its arguments, as a set of flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs(pub u8);

impl Needs {
    pub const NOTHING: Needs = Needs(0);
    /// The one address its program runs at: a body that calls it gets a program per
    /// site (a backtrace starts from the probed instruction's frame).
    pub const SITE: Needs = Needs(1);
    /// The stack map the probes store stacks in (`ubacktrace()` is an id into it).
    pub const STACK_MAP: Needs = Needs(2);
    /// The Go runtime's struct layouts of the traced binary (`g`, `m`, stack bounds).
    pub const GO_RUNTIME: Needs = Needs(4);
    /// The binary's function table, read in user space to name addresses.
    pub const SYMBOLS: Needs = Needs(8);
    /// The traced process's memory.
    pub const TARGET_MEMORY: Needs = Needs(16);
    /// A probed function (`probefunc()`): a sample (`timer.profile`) has none.
    pub const PROBED_FUNCTION: Needs = Needs(32);

    pub const fn and(self, other: Needs) -> Needs {
        Needs(self.0 | other.0)
    }

    pub fn has(self, other: Needs) -> bool {
        self.0 & other.0 == other.0
    }
}

#[derive(Debug)]
pub struct Builtin {
    pub id: BuiltinId,
    pub name: &'static str,
    pub params: Params,
    pub ret: Ret,
    /// The back ends that implement it.
    pub runs: Runs,
    pub needs: Needs,
    pub doc: &'static str,
}

use BuiltinId as B;
use Type::{Long as L, Stack as K, String as S};

const NONE: Params = Params::Fixed(&[&[]]);
const ONE_LONG: Params = Params::Fixed(&[&[L]]);
const N: Needs = Needs::NOTHING;
const BACKTRACE: Needs = Needs::SITE.and(Needs::GO_RUNTIME).and(Needs::SYMBOLS);

pub const BUILTINS: &[Builtin] = &[
    b(
        B::Pid,
        "pid",
        NONE,
        Some(L),
        Runs::BOTH,
        N,
        "process id of the current task",
    ),
    b(
        B::Tid,
        "tid",
        NONE,
        Some(L),
        Runs::BOTH,
        N,
        "thread id of the current task",
    ),
    b(
        B::Execname,
        "execname",
        NONE,
        Some(S),
        Runs::BOTH,
        N,
        "name of the current executable",
    ),
    b(
        B::Cpu,
        "cpu",
        NONE,
        Some(L),
        Runs::BOTH,
        N,
        "current CPU number",
    ),
    b(
        B::GettimeofdayNs,
        "gettimeofday_ns",
        NONE,
        Some(L),
        Runs::BOTH,
        N,
        "wall-clock time in ns",
    ),
    b(
        B::GettimeofdayUs,
        "gettimeofday_us",
        NONE,
        Some(L),
        Runs::BOTH,
        N,
        "wall-clock time in us",
    ),
    b(
        B::GettimeofdayMs,
        "gettimeofday_ms",
        NONE,
        Some(L),
        Runs::BOTH,
        N,
        "wall-clock time in ms",
    ),
    b(
        B::GettimeofdayS,
        "gettimeofday_s",
        NONE,
        Some(L),
        Runs::BOTH,
        N,
        "wall-clock time in s",
    ),
    b(
        B::Pp,
        "pp",
        NONE,
        Some(S),
        Runs::BOTH,
        N,
        "the probe point being run",
    ),
    b(
        B::Probefunc,
        "probefunc",
        NONE,
        Some(S),
        Runs::KERNEL,
        Needs::PROBED_FUNCTION,
        "the probed function's name",
    ),
    b(
        B::Ppfunc,
        "ppfunc",
        NONE,
        Some(S),
        Runs::KERNEL,
        Needs::PROBED_FUNCTION,
        "the probed function's name",
    ),
    b(
        B::Target,
        "target",
        NONE,
        Some(L),
        Runs::BOTH,
        N,
        "pid of the -c/-x target process",
    ),
    b(
        B::UserString,
        "user_string",
        Params::Fixed(&[&[L], &[L, S]]),
        Some(S),
        Runs::KERNEL,
        Needs::TARGET_MEMORY,
        "NUL-terminated string at a user address",
    ),
    b(
        B::UserStringN,
        "user_string_n",
        Params::Fixed(&[&[L, L], &[L, L, S]]),
        Some(S),
        Runs::KERNEL,
        Needs::TARGET_MEMORY,
        "at most N bytes at a user address",
    ),
    b(
        B::UserLong,
        "user_long",
        ONE_LONG,
        Some(L),
        Runs::KERNEL,
        Needs::TARGET_MEMORY,
        "8-byte integer at a user address",
    ),
    b(
        B::UserInt,
        "user_int",
        ONE_LONG,
        Some(L),
        Runs::KERNEL,
        Needs::TARGET_MEMORY,
        "4-byte integer at a user address",
    ),
    b(
        B::UserShort,
        "user_short",
        ONE_LONG,
        Some(L),
        Runs::KERNEL,
        Needs::TARGET_MEMORY,
        "2-byte integer at a user address",
    ),
    b(
        B::UserChar,
        "user_char",
        ONE_LONG,
        Some(L),
        Runs::KERNEL,
        Needs::TARGET_MEMORY,
        "byte at a user address",
    ),
    b(
        B::Printf,
        "printf",
        Params::Format,
        None,
        Runs::BOTH,
        N,
        "formatted output",
    ),
    b(
        B::Sprintf,
        "sprintf",
        Params::Format,
        Some(S),
        Runs::BOTH,
        N,
        "formatted string",
    ),
    b(
        B::Print,
        "print",
        Params::Printable { min: 1, max: None },
        None,
        Runs::BOTH,
        N,
        "prints values",
    ),
    b(
        B::Println,
        "println",
        Params::Printable { min: 0, max: None },
        None,
        Runs::BOTH,
        N,
        "prints values and a newline",
    ),
    b(
        B::Sprint,
        "sprint",
        Params::Printable {
            min: 1,
            max: Some(1),
        },
        Some(S),
        Runs::BOTH,
        N,
        "a value as a string",
    ),
    b(
        B::Exit,
        "exit",
        NONE,
        None,
        Runs::BOTH,
        N,
        "ends the session after this probe",
    ),
    b(
        B::PrintUbacktrace,
        "print_ubacktrace",
        NONE,
        None,
        Runs::KERNEL,
        BACKTRACE,
        "prints the user stack",
    ),
    b(
        B::PrintUbacktraceFileline,
        "print_ubacktrace_fileline",
        Params::Fixed(&[&[], &[L, L, L]]),
        None,
        Runs::KERNEL,
        BACKTRACE,
        "prints the user stack with file:line, optionally from (pc, sp, lr)",
    ),
    b(
        B::Ubacktrace,
        "ubacktrace",
        NONE,
        Some(K),
        Runs::KERNEL,
        BACKTRACE.and(Needs::STACK_MAP),
        "the user stack (printed as its addresses in hex)",
    ),
    b(
        B::SprintUbacktrace,
        "sprint_ubacktrace",
        NONE,
        Some(K),
        Runs::KERNEL,
        BACKTRACE.and(Needs::STACK_MAP),
        "the user stack (printed as its symbolised frames)",
    ),
    b(
        B::PrintUsyms,
        "print_usyms",
        Params::Fixed(&[&[K]]),
        None,
        Runs::BOTH,
        Needs::SYMBOLS,
        "prints the symbolised frames of a ubacktrace() stack",
    ),
    b(
        B::Usymname,
        "usymname",
        ONE_LONG,
        Some(S),
        Runs::USER,
        Needs::SYMBOLS,
        "the function containing a user address",
    ),
    b(
        B::Goid,
        "goid",
        NONE,
        Some(L),
        Runs::KERNEL,
        Needs::GO_RUNTIME,
        "id of the current goroutine",
    ),
    b(
        B::GoWaitReason,
        "go_wait_reason",
        ONE_LONG,
        Some(S),
        Runs::KERNEL,
        Needs::GO_RUNTIME,
        "the runtime's name of a waitReason number (gopark's reason), from the binary's own table",
    ),
    b(
        B::Register,
        "register",
        Params::Fixed(&[&[S]]),
        Some(L),
        Runs::KERNEL,
        N,
        "a register at the probe (\"rax\", \"rbx\", …, \"r15\", \"rsp\", \"rip\"): Go's register ABI passes arguments in rax, rbx, rcx, rdi, rsi, r8-r11",
    ),
    b(
        B::UserMode,
        "user_mode",
        NONE,
        Some(L),
        Runs::KERNEL,
        N,
        "1 if the probe point occurred in user mode; 0 for a sample that found the process in the kernel (a system call, a fault), whose registers and stack are then those of the user code that entered it",
    ),
    b(
        B::Strlen,
        "strlen",
        Params::Fixed(&[&[S]]),
        Some(L),
        Runs::BOTH,
        N,
        "length of a string",
    ),
    b(
        B::Substr,
        "substr",
        Params::Fixed(&[&[S, L, L]]),
        Some(S),
        Runs::BOTH,
        N,
        "substring (str, start, length)",
    ),
    b(
        B::Isinstr,
        "isinstr",
        Params::Fixed(&[&[S, S]]),
        Some(L),
        Runs::USER,
        N,
        "1 if the second string occurs in the first",
    ),
    b(
        B::Len,
        "len",
        Params::Length { strings: true },
        Some(L),
        Runs::BOTH,
        N,
        "the length of a string, or of a Go string, slice, array, map or channel (its number of elements, entries or queued values), as Go's len",
    ),
    b(
        B::Cap,
        "cap",
        Params::Length { strings: false },
        Some(L),
        Runs::KERNEL,
        Needs::TARGET_MEMORY,
        "the capacity of a Go slice, array or channel, as Go's cap",
    ),
];

const fn b(
    id: BuiltinId,
    name: &'static str,
    params: Params,
    ret: Ret,
    runs: Runs,
    needs: Needs,
    doc: &'static str,
) -> Builtin {
    Builtin {
        id,
        name,
        params,
        ret,
        runs,
        needs,
        doc,
    }
}

/// The row of a built-in, by the name a script calls it with.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

impl BuiltinId {
    /// Its row of [`BUILTINS`].
    pub fn row(self) -> &'static Builtin {
        &BUILTINS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.row().name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_in_id_order_with_unique_names() {
        for (i, b) in BUILTINS.iter().enumerate() {
            assert_eq!(b.id as usize, i, "{} is out of order", b.name);
            assert!(BUILTINS[..i].iter().all(|o| o.name != b.name), "{}", b.name);
            assert_eq!(b.id.row().name, b.name);
        }
    }

    #[test]
    fn every_builtin_runs_somewhere() {
        for b in BUILTINS {
            assert!(b.runs != Runs::NOWHERE, "{} runs nowhere", b.name);
        }
    }
}
