//! Typing calls: built-ins from their table row (fixed signatures, printable values,
//! and formats, parsed once here with [`Format::parse`] and kept in
//! [`TypeInfo::formats`]), and script functions, whose parameter and return types are
//! inferred from their calls and bodies.

use super::*;
use crate::builtins::{Builtin, Params};
use crate::diag::nearest;
use crate::format::ArgKind;
use crate::target::GoKind;

/// Whether `e` is a pretty-printed context expression (`$x$`, `$x->f$$`, `$$vars`).
pub fn is_pretty(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Target(t) => t.pretty != Pretty::None || matches!(t.base, TargetBase::Set(_)),
        _ => false,
    }
}

impl Checker<'_> {
    pub(super) fn call(&mut self, e: &Expr, name: &Ident, args: &[Expr]) -> Ty {
        match self.calls.get(&e.id).copied() {
            Some(Callee::Function(fi)) => self.call_function(e, fi, name, args),
            Some(Callee::Builtin(id)) => self.call_builtin(e, id.row(), args),
            None => {
                self.unknown_function(name);
                for a in args {
                    self.expr(a);
                }
                Ty::Unknown
            }
        }
    }

    pub(super) fn unknown_function(&mut self, name: &Ident) {
        let mut d = Diagnostic::error(name.span, format!("unknown function '{}'", name.name));
        let cands = self
            .fn_index
            .keys()
            .copied()
            .chain(crate::builtins::BUILTINS.iter().map(|b| b.name));
        if let Some(n) = nearest(&name.name, cands).first() {
            d = d.with_help(format!("did you mean '{n}'?"));
        }
        self.err(d);
    }

    pub(super) fn call_builtin(&mut self, e: &Expr, b: &Builtin, args: &[Expr]) -> Ty {
        match b.params {
            Params::Fixed(sigs) => self.fixed_args(e, b, sigs, args),
            Params::Format => self.format_call(e, b, args),
            Params::Printable { min, max } => self.printable_args(e, b, min, max, args),
            Params::Length { strings } => self.length_arg(e, b, strings, args),
        }
        b.ret.map_or(Ty::Void, Ty::Known)
    }

    /// Arguments of one of a built-in's fixed signatures.
    pub(super) fn fixed_args(&mut self, e: &Expr, b: &Builtin, sigs: &[&[Type]], args: &[Expr]) {
        let Some(sig) = sigs.iter().find(|s| s.len() == args.len()) else {
            let counts: Vec<String> = sigs.iter().map(|s| s.len().to_string()).collect();
            let n = counts.join(" or ");
            let plural = if counts.len() == 1 && sigs[0].len() == 1 {
                ""
            } else {
                "s"
            };
            self.error(
                e.span,
                format!(
                    "'{}' takes {n} argument{plural}, found {}",
                    b.name,
                    args.len()
                ),
            );
            for a in args {
                self.expr(a);
            }
            return;
        };
        for (i, (a, t)) in args.iter().zip(sig.iter()).enumerate() {
            self.expect(a, *t, &format!("argument {} of '{}'", i + 1, b.name));
        }
    }

    /// The one argument of `len` and `cap`: a Go value that has a length (a context
    /// expression of a string, slice, array, map or channel), or for `len` a string.
    pub(super) fn length_arg(&mut self, e: &Expr, b: &Builtin, strings: bool, args: &[Expr]) {
        let [a] = args else {
            self.error(
                e.span,
                format!("'{}' takes 1 argument, found {}", b.name, args.len()),
            );
            for a in args {
                self.expr(a);
            }
            return;
        };
        let what = if strings {
            "a string, slice, array, map or channel"
        } else {
            "a slice, array or channel"
        };
        let ExprKind::Target(t) = &a.kind else {
            if strings {
                self.expect(a, Type::String, &format!("the argument of '{}'", b.name));
            } else {
                self.value(a, None);
                self.error(
                    a.span,
                    format!(
                        "'{}' needs a Go value of the traced program: {what}",
                        b.name
                    ),
                );
            }
            return;
        };
        if t.pretty != Pretty::None || matches!(t.base, TargetBase::Set(_)) {
            self.expr(a);
            self.err(super::types::pretty_only(a.span));
            return;
        }
        self.target_expr(a, t, true);
        let Some(ty) = self.go_types.get(&a.id) else {
            return;
        };
        let ok = match ty.kind {
            GoKind::String | GoKind::Map => strings,
            GoKind::Slice | GoKind::Array { .. } | GoKind::Chan => true,
            _ => false,
        };
        if !ok {
            let name = ty.name.clone();
            self.error(
                a.span,
                format!("'{}' needs {what}; this is a '{name}'", b.name),
            );
        }
    }

    /// Arguments of `print`, `println`, `sprint`: values of any type, and histograms.
    pub(super) fn printable_args(
        &mut self,
        e: &Expr,
        b: &Builtin,
        min: usize,
        max: Option<usize>,
        args: &[Expr],
    ) {
        if args.len() < min || max.is_some_and(|m| args.len() > m) {
            let want = match max {
                Some(m) if m == min => format!("{m}"),
                _ => format!("at least {min}"),
            };
            self.error(
                e.span,
                format!(
                    "'{}' takes {want} argument{}, found {}",
                    b.name,
                    if want == "1" { "" } else { "s" },
                    args.len()
                ),
            );
        }
        for a in args {
            match self.expr(a) {
                Ty::Void => self.error(a.span, "this expression has no value"),
                Ty::Hist if b.ret.is_some() => self.err(
                    Diagnostic::error(a.span, "a histogram can only be printed")
                        .with_help("pass it to print() or println()"),
                ),
                Ty::Pretty if b.ret.is_some() => self.err(super::types::pretty_only(a.span)),
                Ty::Known(Type::Float) if b.ret.is_some() => self.err(
                    Diagnostic::error(a.span, "a float can only be printed")
                        .with_help("print it with printf's '%f', '%e' or '%g', or print()"),
                ),
                Ty::Known(Type::Stats) => self.err(
                    Diagnostic::error(a.span, "a statistics aggregate has no value to print")
                        .with_help("print @count(s), @sum(s), … or a histogram of it"),
                ),
                _ => {}
            }
        }
    }

    /// A `printf`/`sprintf` call: its literal format parsed once (and kept for the
    /// back ends), then each argument typed by the directive that consumes it.
    pub(super) fn format_call(&mut self, e: &Expr, b: &Builtin, args: &[Expr]) {
        let Some((fmt, rest)) = args.split_first() else {
            self.error(e.span, format!("'{}' needs a format string", b.name));
            return;
        };
        let ExprKind::Str(text) = &fmt.kind else {
            self.expr(fmt);
            self.error(
                fmt.span,
                format!("the format of '{}' must be a string literal", b.name),
            );
            for a in rest {
                self.expr(a);
            }
            return;
        };
        // A format is not a string value: no string limit applies.
        self.exprs.insert(fmt.id, Type::String);
        let format = match Format::parse(text.as_bytes()) {
            Ok(f) => f,
            Err(err) => {
                let at = format_place(fmt, text, err.at()..err.at() + 1);
                let d = Diagnostic::error(at, err.to_string()).with_help(
                    "a directive is '%', at most one flag of '-+ #0', a width, a '.precision', an optional 'l', then one of d i u o x X p c s m M b f e g",
                );
                self.err(d);
                for a in rest {
                    self.expr(a);
                }
                return;
            }
        };
        let kinds = format.arg_kinds().to_vec();
        if kinds.len() != rest.len() {
            self.error(
                e.span,
                format!(
                    "format of '{}' needs {} argument{}, found {}",
                    b.name,
                    kinds.len(),
                    if kinds.len() == 1 { "" } else { "s" },
                    rest.len()
                ),
            );
        }
        let mut slots = Vec::new();
        for c in format.conversions() {
            let directive = String::from_utf8_lossy(&text.as_bytes()[c.at.clone()]).into_owned();
            for count in [c.width, c.precision] {
                if count == crate::format::Count::Dynamic {
                    slots.push(format!("a '*' of '{directive}'"));
                }
            }
            slots.push(format!("the argument for '{directive}'"));
        }
        for (i, a) in rest.iter().enumerate() {
            match kinds.get(i) {
                // A pretty-printed value travels whole to user space, for printf's
                // `%s` only: sprintf builds its string in the kernel.
                Some(ArgKind::Str) if is_pretty(a) => {
                    if self.expr(a) == Ty::Pretty && b.ret.is_some() {
                        self.err(super::types::pretty_only(a.span));
                    }
                }
                Some(ArgKind::Str) => self.expect_text(a, &slots[i]),
                Some(k) => self.expect(a, k.script_type(), &slots[i]),
                None => {
                    self.value(a, None);
                }
            }
        }
        self.formats.insert(e.id, format);
    }

    /// The argument of a `%s`: a string, or a stack, which prints as its text.
    fn expect_text(&mut self, a: &Expr, what: &str) {
        if let Ty::Known(t) = self.value(a, Some(Type::String))
            && t != Type::String
            && t != Type::Stack
        {
            self.error(a.span, format!("{what} must be string, found {t}"));
        }
    }

    pub(super) fn call_function(&mut self, e: &Expr, fi: usize, name: &Ident, args: &[Expr]) -> Ty {
        let Item::Function(def) = &self.script.items[self.fns[fi].item] else {
            return Ty::Unknown;
        };
        let nparams = def.params.len();
        if args.len() != nparams {
            self.err(
                Diagnostic::error(
                    e.span,
                    format!(
                        "function '{}' takes {nparams} argument{}, found {}",
                        name.name,
                        if nparams == 1 { "" } else { "s" },
                        args.len()
                    ),
                )
                .with_note(Some(def.name.span), "defined here"),
            );
        }
        let same_body = self.body == Body::Function(fi);
        for (i, a) in args.iter().enumerate() {
            if i >= nparams {
                self.value(a, None);
                continue;
            }
            let pty = if same_body {
                self.locals[i].ty
            } else {
                self.fns[fi].locals[i].ty
            };
            let t = self.value(a, pty);
            match (pty, t) {
                (Some(p), Ty::Known(t)) if p != t => {
                    let pname = def.params[i].name.name.clone();
                    self.error(
                        a.span,
                        format!(
                            "argument {} of '{}' ('{pname}') must be {p}, found {t}",
                            i + 1,
                            name.name
                        ),
                    );
                }
                (None, Ty::Known(t)) => {
                    let v = if same_body {
                        &mut self.locals[i]
                    } else {
                        &mut self.fns[fi].locals[i]
                    };
                    v.ty = Some(t);
                    v.ty_span = a.span;
                    self.changed = true;
                }
                _ => {}
            }
        }
        if !self.fns[fi].returns_value {
            return Ty::Void;
        }
        self.fns[fi].ret.map_or(Ty::Unknown, Ty::Known)
    }
}

/// The place of bytes `at` of a format literal's text in the source. The text is
/// the literal with its escapes decoded; written the usual way (`\n`, `\"`, `\\`),
/// each escape is two source bytes. When the literal's length says it was written
/// otherwise (`\x0a`, `\012`), the place is the whole literal.
pub(super) fn format_place(lit: &Expr, text: &str, at: std::ops::Range<usize>) -> Span {
    let inner = lit
        .span
        .end
        .saturating_sub(lit.span.start)
        .saturating_sub(2) as usize;
    // offsets[i]: the source offset (after the quote) of text byte i.
    let mut offsets = Vec::with_capacity(text.len() + 1);
    let mut src = 0usize;
    for &b in text.as_bytes() {
        offsets.push(src);
        src += match b {
            b'\n' | b'\t' | b'\r' | 7 | 8 | 11 | 12 | b'\\' | b'"' => 2,
            _ => 1,
        };
    }
    offsets.push(src);
    if src != inner {
        return lit.span;
    }
    let off = |i: usize| lit.span.start + 1 + offsets[i.min(text.len())] as u32;
    Span {
        file: lit.span.file,
        start: off(at.start),
        end: off(at.end).max(off(at.start)),
    }
}
