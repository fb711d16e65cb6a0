//! Built-in functions in kernel probes, one lowering per entry: process and clock
//! built-ins are helper calls, `pp()`/`probefunc()` are constants of the program's
//! one site, output built-ins are ring buffer records (formatted in user space),
//! `goid()` and the backtraces read the Go runtime's structs with the layout of the
//! traced binary.

use bpf::script::{EventSpec, MAX_STRING};
use bpf::{AluOp, Cond, Helper, Insn, Reg, Size, X86Reg};
use lang::Type;
use lang::ast::{Expr, Ident};

use crate::lower::{Lower, Str};

/// A built-in whose value is a `long` (or that has none); with `want`, R0 = value.
pub fn long_call(l: &mut Lower<'_, '_>, e: &Expr, name: &Ident, args: &[Expr], _want: bool) {
    let em = &mut l.em;
    match name.name.as_str() {
        "pid" | "tid" => {
            em.a.call(Helper::GetCurrentPidTgid);
            if name.name == "pid" {
                em.e(Insn::alu64(AluOp::Rsh, Reg::R0, 32));
            } else {
                em.e(Insn::mov32(Reg::R0, Reg::R0));
            }
        }
        "cpu" => {
            em.a.call(Helper::GetSmpProcessorId);
        }
        "target" => {
            em.a.ld_map_value(Reg::R1, em.storage.scalars, em.storage.target_offset);
            em.e(Insn::ldx(Size::DW, Reg::R0, Reg::R1, 0));
        }
        "gettimeofday_ns" | "gettimeofday_us" | "gettimeofday_ms" | "gettimeofday_s" => {
            em.a.call(Helper::KtimeGetNs);
            em.a.ld_map_value(Reg::R1, em.storage.scalars, em.storage.realtime_offset);
            em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R1, 0));
            em.e(Insn::alu64(AluOp::Add, Reg::R0, Reg::R1));
            let div = match name.name.as_str() {
                "gettimeofday_us" => 1_000,
                "gettimeofday_ms" => 1_000_000,
                "gettimeofday_s" => 1_000_000_000,
                _ => 1,
            };
            if div != 1 {
                em.e(Insn::alu64(AluOp::Div, Reg::R0, div));
            }
        }
        "user_long" | "user_int" | "user_short" | "user_char" => {
            let size: i32 = match name.name.as_str() {
                "user_long" => 8,
                "user_int" => 4,
                "user_short" => 2,
                _ => 1,
            };
            let Some(a) = args.first() else { return };
            l.long(a);
            let t = l.em.alloc(8);
            l.em.store_imm(t, Size::DW, 0);
            l.em.e(Insn::mov64(Reg::R7, Reg::R0));
            l.em.read_user(t, size, Reg::R7);
            l.em.load(Reg::R0, t);
            sign_extend(&mut l.em, size as u32);
        }
        "goid" => goid(l),
        "register" => register(l, e, args),
        "strlen" => {
            let Some(a) = args.first() else { return };
            let s = l.string(a);
            let at = l.in_scratch(s);
            l.strlen_reg(at);
        }
        "isinstr" | "usymname" => {
            l.em.error(
                e.span,
                format!("'{}' is not supported in kernel probes yet", name.name),
            );
            l.em.e(Insn::mov64(Reg::R0, 0));
        }
        "printf" => {
            let Some((fmt, rest)) = args.split_first() else {
                return;
            };
            let lang::ast::ExprKind::Str(f) = &fmt.kind else {
                l.em.error(fmt.span, "the format of 'printf' must be a string literal");
                return;
            };
            let rest: Vec<&Expr> = rest.iter().collect();
            l.printf(f.as_bytes().to_vec(), &rest);
        }
        "print" | "println" => {
            let mut format = Vec::new();
            for a in args {
                format.extend_from_slice(
                    match l.env.info.expr_type(a) {
                        Some(Type::String) => "%s",
                        _ => "%d",
                    }
                    .as_bytes(),
                );
            }
            if name.name == "println" {
                format.push(b'\n');
            }
            let all: Vec<&Expr> = args.iter().collect();
            l.printf(format, &all);
        }
        "exit" => {
            l.em.event_only(l.events, EventSpec::Exit);
        }
        "print_ubacktrace" | "print_ubacktrace_fileline" => {
            crate::backtrace::print(l, args, name.name == "print_ubacktrace_fileline");
        }
        "print_usyms" => {
            if let Some(a) = args.first() {
                crate::backtrace::print_usyms(l, a);
            }
        }
        other => {
            l.em.error(
                e.span,
                format!("'{other}' is not supported in kernel probes yet"),
            );
            l.em.e(Insn::mov64(Reg::R0, 0));
        }
    }
}

/// A built-in whose value is a string.
pub fn string_call(l: &mut Lower<'_, '_>, e: &Expr, name: &Ident, args: &[Expr]) -> Str {
    match name.name.as_str() {
        "go_wait_reason" => {
            let Some(a) = args.first() else {
                return l.empty_str();
            };
            // The binary's own table, or the numbers themselves when the symbol
            // table is gone: a name per number either way.
            let names: Vec<String> = match l.env.target.binary().wait_reasons() {
                Some(t) => t.iter().map(|s| s.to_string()).collect(),
                None => (0..64).map(|n| n.to_string()).collect(),
            };
            l.long(a);
            l.em.e(Insn::mov64(Reg::R7, Reg::R0));
            let at = l.em.alloc(MAX_STRING);
            let join = l.em.a.label();
            let known = l.em.a.label();
            l.em.a.jmp(Cond::Lt, Reg::R7, names.len() as i32, known);
            l.em.const_str(at, b"unknown");
            l.em.a.ja(join);
            l.em.a.bind(known);
            search(l, &names, 0, names.len(), at, join);
            l.em.a.bind(join);
            Str::Scratch(at)
        }
        "execname" => {
            let at = l.em.alloc(MAX_STRING);
            l.em.store_imm(at, Size::DW, 0);
            l.em.store_imm(at + 8, Size::DW, 0);
            l.em.addr(Reg::R1, at);
            l.em.e(Insn::mov64(Reg::R2, 16));
            l.em.a.call(Helper::GetCurrentComm);
            Str::Scratch(at)
        }
        "pp" | "probefunc" | "ppfunc" => {
            let pp = name.name == "pp";
            let pick = |s: &(String, String)| if pp { s.0.clone() } else { s.1.clone() };
            let mut texts: Vec<String> = l.site.each.iter().map(pick).collect();
            if texts.is_empty() {
                texts.push(if pp {
                    l.site.pp.clone()
                } else {
                    l.site.function.clone()
                });
            }
            site_string(l, &texts)
        }
        "user_string" | "user_string_n" => {
            let at = l.em.alloc(MAX_STRING);
            let Some(a) = args.first() else {
                return l.empty_str();
            };
            let n_arg = if name.name == "user_string_n" {
                args.get(1)
            } else {
                None
            };
            let default = args.get(if n_arg.is_some() { 2 } else { 1 });
            if let Some(n) = n_arg {
                l.long(n);
                let t = l.em.alloc(8);
                l.em.store(t, Reg::R0);
                l.long(a);
                l.em.e(Insn::mov64(Reg::R3, Reg::R0));
                l.em.load(Reg::R2, t);
                // At most n bytes and the NUL: 1..=MAX_STRING.
                let small = l.em.a.label();
                l.em.a
                    .jmp(Cond::Slt, Reg::R2, (MAX_STRING - 1) as i32, small);
                l.em.e(Insn::mov64(Reg::R2, (MAX_STRING - 1) as i32));
                l.em.a.bind(small);
                let pos = l.em.a.label();
                l.em.a.jmp(Cond::Sge, Reg::R2, 0, pos);
                l.em.e(Insn::mov64(Reg::R2, 0));
                l.em.a.bind(pos);
                l.em.e(Insn::alu64(AluOp::Add, Reg::R2, 1));
            } else {
                l.long(a);
                l.em.e(Insn::mov64(Reg::R3, Reg::R0));
                l.em.e(Insn::mov64(Reg::R2, MAX_STRING as i32));
            }
            l.em.addr(Reg::R1, at);
            l.em.a.call(Helper::ProbeReadUserStr);
            let ok = l.em.a.label();
            l.em.a.jmp(Cond::Sgt, Reg::R0, 0, ok);
            l.em.count(bpf::script::counter::READ_FAULTS);
            match default {
                Some(d) => {
                    let s = l.string(d);
                    l.copy_str(Str::Scratch(at), s);
                }
                None => l.em.store_imm(at, Size::B, 0),
            }
            l.em.a.bind(ok);
            Str::Scratch(at)
        }
        "substr" => {
            let [s, start, len] = args else {
                return l.empty_str();
            };
            substr(l, s, start, len)
        }
        "sprintf" => {
            let Some((fmt, rest)) = args.split_first() else {
                return l.empty_str();
            };
            let lang::ast::ExprKind::Str(f) = &fmt.kind else {
                l.em.error(fmt.span, "the format of 'sprintf' must be a string literal");
                return l.empty_str();
            };
            l.sprintf(e, f, rest)
        }
        "ubacktrace" | "sprint_ubacktrace" => {
            crate::backtrace::stack_string(l, e, name.name == "sprint_ubacktrace")
        }
        "sprint" => match args.first() {
            Some(a) => l.sprint(a),
            None => l.empty_str(),
        },
        other => {
            l.em.error(
                e.span,
                format!("'{other}' is not supported in kernel probes yet"),
            );
            l.empty_str()
        }
    }
}

/// Sign-extends the low `size` bytes of R0.
pub fn sign_extend(em: &mut crate::emit::Emitter<'_>, size: u32) {
    if size < 8 {
        let bits = (64 - 8 * size) as i32;
        em.e(Insn::alu64(AluOp::Lsh, Reg::R0, bits));
        em.e(Insn::alu64(AluOp::Arsh, Reg::R0, bits));
    }
}

/// Zero-extends the low `size` bytes of R0.
pub fn zero_extend(em: &mut crate::emit::Emitter<'_>, size: u32) {
    if size < 8 {
        let bits = (64 - 8 * size) as i32;
        em.e(Insn::alu64(AluOp::Lsh, Reg::R0, bits));
        em.e(Insn::alu64(AluOp::Rsh, Reg::R0, bits));
    }
}

/// R7 = the current user goroutine's `g`: R14 in Go's register ABI, or, on the
/// system stack (`g == g.m.g0`, as in `runtime.newstack`), `g.m.curg`. 0 without a
/// runtime layout.
pub(crate) fn user_g(l: &mut Lower<'_, '_>) -> bool {
    let Some(layout) = l.env.target.layout().copied() else {
        l.em.e(Insn::mov64(Reg::R7, 0));
        return false;
    };
    let em = &mut l.em;
    let done = em.a.label();
    em.ctx_reg(Reg::R7, X86Reg::R14);
    em.a.jmp(Cond::Eq, Reg::R7, 0, done);
    em.read_user_u64(Reg::R8, Reg::R7, layout.g_m as i64); // R8 = m
    em.a.jmp(Cond::Eq, Reg::R8, 0, done);
    em.read_user_u64(Reg::R0, Reg::R8, layout.m_g0 as i64);
    em.a.jmp(Cond::Ne, Reg::R0, Reg::R7, done);
    em.read_user_u64(Reg::R7, Reg::R8, layout.m_curg as i64);
    em.a.bind(done);
    true
}

/// `goid()`: R0 = the current goroutine's id.
fn goid(l: &mut Lower<'_, '_>) {
    if !user_g(l) {
        l.em.e(Insn::mov64(Reg::R0, 0));
        return;
    }
    let Some(layout) = l.env.target.layout().copied() else {
        return;
    };
    let zero = l.em.a.label();
    let done = l.em.a.label();
    l.em.a.jmp(Cond::Eq, Reg::R7, 0, zero);
    l.em.read_user_u64(Reg::R0, Reg::R7, layout.g_goid as i64);
    l.em.a.ja(done);
    l.em.a.bind(zero);
    l.em.e(Insn::mov64(Reg::R0, 0));
    l.em.a.bind(done);
}

/// `register("rax")`: R0 = that register of the probed thread (stap's
/// `register()`/`u_register()`). The tapset reads Go's register-ABI arguments with
/// it where there is no DWARF to name them.
fn register(l: &mut Lower<'_, '_>, e: &Expr, args: &[Expr]) {
    let name = match args.first().map(|a| &a.kind) {
        Some(lang::ast::ExprKind::Str(s)) => s.as_str(),
        _ => "",
    };
    let Some(reg) = X86Reg::ALL.iter().copied().find(|r| {
        let k = r.kernel_name();
        name == k || name.strip_prefix('r') == Some(k) || name.strip_prefix('e') == Some(k)
    }) else {
        l.em.error(e.span, format!("register() takes a register name as a string literal (\"rax\", \"r14\"…), not {name:?}"));
        l.em.e(Insn::mov64(Reg::R0, 0));
        return;
    };
    l.em.ctx_reg(Reg::R0, reg);
}

/// `substr(s, start, length)`: at most `length` bytes of `s` from byte `start` (0
/// based); empty when `start` is past the end, as in stap.
fn substr(l: &mut Lower<'_, '_>, s: &Expr, start: &Expr, len: &Expr) -> Str {
    let out = l.em.alloc(MAX_STRING);
    l.em.store_imm(out, Size::DW, 0);
    let src = l.string(s);
    let src = l.in_scratch(src);
    let vals = l.em.alloc(16);
    l.long(start);
    l.em.store(vals, Reg::R0);
    l.long(len);
    l.em.store(vals + 8, Reg::R0);
    // R7 = start, if it is within the string.
    l.strlen_reg(src);
    l.em.load(Reg::R7, vals);
    let done = l.em.a.label();
    l.em.a.jmp(Cond::Slt, Reg::R7, 0, done);
    l.em.a.jmp(Cond::Ge, Reg::R7, Reg::R0, done);
    l.em.e(Insn::alu64(AluOp::And, Reg::R7, (MAX_STRING - 1) as i32));
    // R2 = min(length, 127) + 1, the bytes to copy with the NUL.
    l.em.load(Reg::R2, vals + 8);
    l.em.a.jmp(Cond::Sle, Reg::R2, 0, done);
    let small = l.em.a.label();
    l.em.a
        .jmp(Cond::Le, Reg::R2, (MAX_STRING - 1) as i32, small);
    l.em.e(Insn::mov64(Reg::R2, (MAX_STRING - 1) as i32));
    l.em.a.bind(small);
    l.em.e(Insn::alu64(AluOp::And, Reg::R2, (MAX_STRING - 1) as i32));
    l.em.e(Insn::alu64(AluOp::Add, Reg::R2, 1));
    l.em.addr(Reg::R3, src);
    l.em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R7));
    l.em.addr(Reg::R1, out);
    l.em.e(Insn::call(crate::emit::PROBE_READ_KERNEL_STR));
    l.em.a.bind(done);
    Str::Scratch(out)
}

/// A string chosen by the site that fired: a search on the attach cookie among the
/// program's sites, each leaf writing its constant (one string needs no search).
fn site_string(l: &mut Lower<'_, '_>, texts: &[String]) -> Str {
    let at = l.em.alloc(MAX_STRING);
    if texts.iter().all(|t| *t == texts[0]) {
        l.em.const_str(at, texts[0].as_bytes());
        return Str::Scratch(at);
    }
    l.em.e(Insn::mov64(Reg::R1, crate::emit::CTX));
    l.em.a.call(Helper::GetAttachCookie);
    l.em.imm(Reg::R1, l.site.first_cookie as i64);
    l.em.e(Insn::alu64(AluOp::Sub, Reg::R0, Reg::R1));
    l.em.e(Insn::mov64(Reg::R7, Reg::R0));
    let join = l.em.a.label();
    search(l, texts, 0, texts.len(), at, join);
    l.em.a.bind(join);
    Str::Scratch(at)
}

/// Binary search of R7 in `lo..hi`, writing `texts[i]` for `R7 == i`.
fn search(
    l: &mut Lower<'_, '_>,
    texts: &[String],
    lo: usize,
    hi: usize,
    at: u32,
    join: bpf::Label,
) {
    if hi - lo <= 1 {
        l.em.const_str(at, texts[lo].as_bytes());
        l.em.a.ja(join);
        return;
    }
    let mid = lo + (hi - lo) / 2;
    let right = l.em.a.label();
    l.em.a.jmp(Cond::Ge, Reg::R7, mid as i32, right);
    search(l, texts, lo, mid, at, join);
    l.em.a.bind(right);
    search(l, texts, mid, hi, at, join);
}
