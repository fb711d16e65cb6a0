//! The built-in functions, one table row each: name, accepted signatures, result, and
//! the probe contexts that may call it. The checker types calls from this table and
//! codegen looks up the same rows to lower them (habit 7: built-ins are table entries).
//! `printf`-style format strings are checked here too, since their argument types come
//! from the format.

use crate::check::Type;
use crate::probe::Ctx;

/// What a built-in accepts.
#[derive(Clone, Copy, Debug)]
pub enum Params {
    /// One of these exact argument lists (`print_ubacktrace_fileline()` or with 3 longs).
    Fixed(&'static [&'static [Type]]),
    /// A literal format string, then arguments typed by its `%` directives.
    Format,
    /// Any number (at least `min`) of printable values, including histograms.
    Printable { min: usize, max: Option<usize> },
}

/// What a built-in returns; `None` means it is a statement-like call with no value.
pub type Ret = Option<Type>;

#[derive(Debug)]
pub struct Builtin {
    pub name: &'static str,
    pub params: Params,
    pub ret: Ret,
    /// The probe contexts in which it may be called.
    pub contexts: Ctx,
    pub doc: &'static str,
}

use Type::{Long as L, String as S};

const NONE: Params = Params::Fixed(&[&[]]);
const ONE_LONG: Params = Params::Fixed(&[&[L]]);

pub const BUILTINS: &[Builtin] = &[
    b(
        "pid",
        NONE,
        Some(L),
        Ctx::ANY,
        "process id of the current task",
    ),
    b(
        "tid",
        NONE,
        Some(L),
        Ctx::ANY,
        "thread id of the current task",
    ),
    b(
        "execname",
        NONE,
        Some(S),
        Ctx::ANY,
        "name of the current executable",
    ),
    b("cpu", NONE, Some(L), Ctx::ANY, "current CPU number"),
    b(
        "gettimeofday_ns",
        NONE,
        Some(L),
        Ctx::ANY,
        "wall-clock time in ns",
    ),
    b(
        "gettimeofday_us",
        NONE,
        Some(L),
        Ctx::ANY,
        "wall-clock time in us",
    ),
    b(
        "gettimeofday_ms",
        NONE,
        Some(L),
        Ctx::ANY,
        "wall-clock time in ms",
    ),
    b(
        "gettimeofday_s",
        NONE,
        Some(L),
        Ctx::ANY,
        "wall-clock time in s",
    ),
    b("pp", NONE, Some(S), Ctx::ANY, "the probe point being run"),
    b(
        "probefunc",
        NONE,
        Some(S),
        Ctx::ANY_USER,
        "the probed function's name",
    ),
    b(
        "ppfunc",
        NONE,
        Some(S),
        Ctx::ANY_USER,
        "the probed function's name",
    ),
    b(
        "target",
        NONE,
        Some(L),
        Ctx::ANY,
        "pid of the -c/-x target process",
    ),
    b(
        "user_string",
        Params::Fixed(&[&[L], &[L, S]]),
        Some(S),
        Ctx::ANY_USER,
        "NUL-terminated string at a user address",
    ),
    b(
        "user_string_n",
        Params::Fixed(&[&[L, L], &[L, L, S]]),
        Some(S),
        Ctx::ANY_USER,
        "at most N bytes at a user address",
    ),
    b(
        "user_long",
        ONE_LONG,
        Some(L),
        Ctx::ANY_USER,
        "8-byte integer at a user address",
    ),
    b(
        "user_int",
        ONE_LONG,
        Some(L),
        Ctx::ANY_USER,
        "4-byte integer at a user address",
    ),
    b(
        "user_short",
        ONE_LONG,
        Some(L),
        Ctx::ANY_USER,
        "2-byte integer at a user address",
    ),
    b(
        "user_char",
        ONE_LONG,
        Some(L),
        Ctx::ANY_USER,
        "byte at a user address",
    ),
    b("printf", Params::Format, None, Ctx::ANY, "formatted output"),
    b(
        "sprintf",
        Params::Format,
        Some(S),
        Ctx::ANY,
        "formatted string",
    ),
    b(
        "print",
        Params::Printable { min: 1, max: None },
        None,
        Ctx::ANY,
        "prints values",
    ),
    b(
        "println",
        Params::Printable { min: 0, max: None },
        None,
        Ctx::ANY,
        "prints values and a newline",
    ),
    b(
        "sprint",
        Params::Printable {
            min: 1,
            max: Some(1),
        },
        Some(S),
        Ctx::ANY,
        "a value as a string",
    ),
    b(
        "exit",
        NONE,
        None,
        Ctx::ANY,
        "ends the session after this probe",
    ),
    b(
        "print_ubacktrace",
        NONE,
        None,
        Ctx::ANY_USER,
        "prints the user stack",
    ),
    b(
        "print_ubacktrace_fileline",
        Params::Fixed(&[&[], &[L, L, L]]),
        None,
        Ctx::ANY_USER,
        "prints the user stack with file:line, optionally from (pc, sp, lr)",
    ),
    b(
        "ubacktrace",
        NONE,
        Some(S),
        Ctx::ANY_USER,
        "the user stack as hex addresses",
    ),
    b(
        "sprint_ubacktrace",
        NONE,
        Some(S),
        Ctx::ANY_USER,
        "the user stack, symbolised",
    ),
    b(
        "print_usyms",
        Params::Fixed(&[&[S]]),
        None,
        Ctx::ANY,
        "prints the symbols of a ubacktrace() string",
    ),
    b(
        "usymname",
        ONE_LONG,
        Some(S),
        Ctx::ANY,
        "the function containing a user address",
    ),
    b(
        "goid",
        NONE,
        Some(L),
        Ctx::ANY_USER,
        "id of the current goroutine",
    ),
    b(
        "go_wait_reason",
        ONE_LONG,
        Some(S),
        Ctx::ANY_USER,
        "the runtime's name of a waitReason number (gopark's reason), from the binary's own table",
    ),
    b(
        "register",
        Params::Fixed(&[&[S]]),
        Some(L),
        Ctx::ANY_USER,
        "a register at the probe (\"rax\", \"rbx\", …, \"r15\", \"rsp\", \"rip\"): Go's register ABI passes arguments in rax, rbx, rcx, rdi, rsi, r8-r11",
    ),
    b(
        "strlen",
        Params::Fixed(&[&[S]]),
        Some(L),
        Ctx::ANY,
        "length of a string",
    ),
    b(
        "substr",
        Params::Fixed(&[&[S, L, L]]),
        Some(S),
        Ctx::ANY,
        "substring (str, start, length)",
    ),
    b(
        "isinstr",
        Params::Fixed(&[&[S, S]]),
        Some(L),
        Ctx::ANY,
        "1 if the second string occurs in the first",
    ),
];

const fn b(
    name: &'static str,
    params: Params,
    ret: Ret,
    contexts: Ctx,
    doc: &'static str,
) -> Builtin {
    Builtin {
        name,
        params,
        ret,
        contexts,
        doc,
    }
}

pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// One `%` directive of a format string that consumes an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatArg {
    pub ty: Type,
    /// The conversion character (`d`, `s`, `x`, …).
    pub conv: char,
    /// Byte offset of the `%` in the format string.
    pub offset: usize,
}

/// The arguments a format string consumes, in order (`*` width/precision take a long).
pub fn format_args(fmt: &str) -> Result<Vec<FormatArg>, String> {
    let b = fmt.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if b.get(i) == Some(&b'%') {
            i += 1;
            continue;
        }
        while i < b.len() && b"-+ #0".contains(&b[i]) {
            i += 1;
        }
        let star = |i: &mut usize, out: &mut Vec<FormatArg>| {
            if b.get(*i) == Some(&b'*') {
                out.push(FormatArg {
                    ty: L,
                    conv: '*',
                    offset: start,
                });
                *i += 1;
            } else {
                while *i < b.len() && b[*i].is_ascii_digit() {
                    *i += 1;
                }
            }
        };
        star(&mut i, &mut out);
        if b.get(i) == Some(&b'.') {
            i += 1;
            star(&mut i, &mut out);
        }
        // Length modifiers are accepted and ignored: every script integer is 64-bit.
        while i < b.len() && b"lhLjzt".contains(&b[i]) {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            return Err("format ends in the middle of a '%' directive".into());
        };
        i += 1;
        let ty = match c {
            b'd' | b'i' | b'u' | b'x' | b'X' | b'o' | b'c' | b'p' | b'b' => L,
            b's' | b'm' | b'M' => S,
            _ => {
                return Err(format!(
                    "unknown format directive '%{}'",
                    fmt[i - 1..].chars().next().unwrap_or('?')
                ));
            }
        };
        out.push(FormatArg {
            ty,
            conv: c as char,
            offset: start,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_directives() {
        let f = format_args("runtime: newstack: %d -> %-8s %% %*x\n")
            .map(|v| v.into_iter().map(|a| (a.ty, a.conv)).collect::<Vec<_>>());
        assert_eq!(f, Ok(vec![(L, 'd'), (S, 's'), (L, '*'), (L, 'x')]));
        assert_eq!(
            format_args("%q"),
            Err("unknown format directive '%q'".to_string())
        );
    }

    #[test]
    fn names_are_unique() {
        for (i, b) in BUILTINS.iter().enumerate() {
            assert!(BUILTINS[..i].iter().all(|o| o.name != b.name), "{}", b.name);
        }
    }
}
