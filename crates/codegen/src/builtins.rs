//! Built-in functions in kernel probes, one lowering per entry: process and clock
//! built-ins are helper calls, `pp()`/`probefunc()` are constants of the program's
//! one site, output built-ins are ring buffer records (formatted in user space),
//! `goid()` and the backtraces read the Go runtime's structs with the layout of the
//! traced binary.

use bpf::script::EventSpec;
use bpf::{AluOp, Cond, Helper, Insn, Reg, Size, X86Reg};
use lang::ast::{Expr, ExprKind};
use lang::{BuiltinId, GoKind, Type};

use crate::lower::{Lower, Str};

/// What lowering a built-in call left: a long in R0, a string, or nothing.
pub enum Value {
    Long,
    Str(Str),
    Void,
}

/// Lowers a call of the built-in `id`: one arm per row of `lang`'s table. Those the
/// table says run only in user space were refused by the checker in process probes.
pub fn call(l: &mut Lower<'_, '_>, e: &Expr, id: BuiltinId, args: &[Expr]) -> Value {
    match id {
        BuiltinId::Pid | BuiltinId::Tid => {
            l.em.a.call(Helper::GetCurrentPidTgid);
            if id == BuiltinId::Pid {
                l.em.e(Insn::alu64(AluOp::Rsh, Reg::R0, 32));
            } else {
                l.em.e(Insn::mov32(Reg::R0, Reg::R0));
            }
            Value::Long
        }
        BuiltinId::Cpu => {
            l.em.a.call(Helper::GetSmpProcessorId);
            Value::Long
        }
        BuiltinId::Target => {
            let em = &mut l.em;
            em.a.ld_map_value(Reg::R1, em.storage.scalars, em.storage.target_offset);
            em.e(Insn::ldx(Size::DW, Reg::R0, Reg::R1, 0));
            Value::Long
        }
        BuiltinId::GettimeofdayNs => gettimeofday(l, 1),
        BuiltinId::GettimeofdayUs => gettimeofday(l, 1_000),
        BuiltinId::GettimeofdayMs => gettimeofday(l, 1_000_000),
        BuiltinId::GettimeofdayS => gettimeofday(l, 1_000_000_000),
        BuiltinId::UserLong => user_int(l, args, 8),
        BuiltinId::UserInt => user_int(l, args, 4),
        BuiltinId::UserShort => user_int(l, args, 2),
        BuiltinId::UserChar => user_int(l, args, 1),
        BuiltinId::Goid => {
            goid(l);
            Value::Long
        }
        BuiltinId::Register => {
            register(l, e, args);
            Value::Long
        }
        BuiltinId::UserMode => {
            // A process probe is a uprobe: always in user mode.
            if l.site.sample {
                crate::sample::user_mode(&mut l.em, Reg::R0);
            } else {
                l.em.e(Insn::mov64(Reg::R0, 1));
            }
            Value::Long
        }
        BuiltinId::Len | BuiltinId::Cap => {
            length(l, id == BuiltinId::Cap, args);
            Value::Long
        }
        BuiltinId::Strlen => {
            if let Some(a) = args.first() {
                let s = l.string(a);
                let at = l.in_scratch(s);
                l.strlen_reg(at);
            }
            Value::Long
        }
        BuiltinId::Printf => {
            l.printf_call(e, args);
            Value::Void
        }
        BuiltinId::Print | BuiltinId::Println => {
            let mut format = Vec::new();
            for a in args {
                format.extend_from_slice(
                    match l.env.info.expr_type(a) {
                        _ if lang::check::is_pretty(a) => "%s",
                        Some(Type::String | Type::Stack) => "%s",
                        Some(Type::Float) => "%g",
                        _ => "%d",
                    }
                    .as_bytes(),
                );
            }
            if id == BuiltinId::Println {
                format.push(b'\n');
            }
            let all: Vec<&Expr> = args.iter().collect();
            l.printf(format, &all);
            Value::Void
        }
        BuiltinId::Exit => {
            l.em.event_only(l.events, EventSpec::Exit);
            Value::Void
        }
        BuiltinId::PrintUbacktrace | BuiltinId::PrintUbacktraceFileline => {
            crate::backtrace::print(l, args, id == BuiltinId::PrintUbacktraceFileline);
            Value::Void
        }
        BuiltinId::PrintUsyms => {
            if let Some(a) = args.first() {
                crate::backtrace::print_usyms(l, a);
            }
            Value::Void
        }
        BuiltinId::GoWaitReason => Value::Str(go_wait_reason(l, args)),
        BuiltinId::Execname => {
            let at = l.em.alloc(l.em.max_string());
            l.em.store_imm(at, Size::DW, 0);
            l.em.store_imm(at + 8, Size::DW, 0);
            l.em.addr(Reg::R1, at);
            l.em.e(Insn::mov64(Reg::R2, 16));
            l.em.a.call(Helper::GetCurrentComm);
            Value::Str(Str::Scratch(at))
        }
        BuiltinId::Pp => Value::Str(site_string(l, true)),
        BuiltinId::Probefunc | BuiltinId::Ppfunc => Value::Str(site_string(l, false)),
        BuiltinId::UserString => Value::Str(user_string(l, args.first(), None, args.get(1))),
        BuiltinId::UserStringN => {
            Value::Str(user_string(l, args.first(), args.get(1), args.get(2)))
        }
        BuiltinId::Substr => Value::Str(match args {
            [s, start, len] => substr(l, s, start, len),
            _ => l.empty_str(),
        }),
        BuiltinId::Sprintf => Value::Str(l.sprintf(e, args.get(1..).unwrap_or(&[]))),
        BuiltinId::Ubacktrace | BuiltinId::SprintUbacktrace => {
            crate::backtrace::stack_value(l, e, id == BuiltinId::SprintUbacktrace);
            Value::Long
        }
        BuiltinId::Sprint => Value::Str(match args.first() {
            Some(a) => l.sprint(a),
            None => l.empty_str(),
        }),
        BuiltinId::Isinstr | BuiltinId::Usymname => {
            l.em.error(
                e.span,
                format!(
                    "internal error: '{}' runs only in user space, and the checker let it into a process probe",
                    id.name()
                ),
            );
            Value::Long
        }
    }
}

/// `gettimeofday_*()`: the monotonic clock plus the offset user space wrote, in
/// units of `div` ns.
fn gettimeofday(l: &mut Lower<'_, '_>, div: i32) -> Value {
    let em = &mut l.em;
    em.a.call(Helper::KtimeGetNs);
    em.a.ld_map_value(Reg::R1, em.storage.scalars, em.storage.realtime_offset);
    em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R1, 0));
    em.e(Insn::alu64(AluOp::Add, Reg::R0, Reg::R1));
    if div != 1 {
        em.e(Insn::alu64(AluOp::Div, Reg::R0, div));
    }
    Value::Long
}

/// `user_long(addr)` and its narrower kin: R0 = the `size`-byte integer at `addr`,
/// sign-extended.
fn user_int(l: &mut Lower<'_, '_>, args: &[Expr], size: i32) -> Value {
    let Some(a) = args.first() else {
        return Value::Long;
    };
    l.long(a);
    let t = l.em.alloc(8);
    l.em.store_imm(t, Size::DW, 0);
    l.em.e(Insn::mov64(Reg::R7, Reg::R0));
    l.em.read_user(t, size, Reg::R7);
    l.em.load(Reg::R0, t);
    sign_extend(&mut l.em, size as u32);
    Value::Long
}

/// `go_wait_reason(n)`: the binary's own table of reason names, or the numbers
/// themselves when the table is not found (a name per number either way).
fn go_wait_reason(l: &mut Lower<'_, '_>, args: &[Expr]) -> Str {
    let Some(a) = args.first() else {
        return l.empty_str();
    };
    let names: Vec<String> = match l.env.target.binary().wait_reasons() {
        Some(t) => t.iter().map(|s| s.to_string()).collect(),
        None => (0..64).map(|n| n.to_string()).collect(),
    };
    l.long(a);
    l.em.e(Insn::mov64(Reg::R7, Reg::R0));
    let at = l.em.alloc(l.em.max_string());
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

/// `user_string(addr[, default])` and `user_string_n(addr, n[, default])`.
fn user_string(
    l: &mut Lower<'_, '_>,
    addr: Option<&Expr>,
    n_arg: Option<&Expr>,
    default: Option<&Expr>,
) -> Str {
    let at = l.em.alloc(l.em.max_string());
    let Some(a) = addr else {
        return l.empty_str();
    };
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
            .jmp(Cond::Slt, Reg::R2, (l.em.max_string() - 1) as i32, small);
        l.em.e(Insn::mov64(Reg::R2, (l.em.max_string() - 1) as i32));
        l.em.a.bind(small);
        let pos = l.em.a.label();
        l.em.a.jmp(Cond::Sge, Reg::R2, 0, pos);
        l.em.e(Insn::mov64(Reg::R2, 0));
        l.em.a.bind(pos);
        l.em.e(Insn::alu64(AluOp::Add, Reg::R2, 1));
    } else {
        l.long(a);
        l.em.e(Insn::mov64(Reg::R3, Reg::R0));
        l.em.e(Insn::mov64(Reg::R2, l.em.max_string() as i32));
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

/// Sign-extends the low `size` bytes of R0.
pub fn sign_extend(em: &mut crate::emit::Emitter<'_>, size: u32) {
    if size < 8 {
        let bits = (64 - 8 * size) as i32;
        em.e(Insn::alu64(AluOp::Lsh, Reg::R0, bits));
        em.e(Insn::alu64(AluOp::Arsh, Reg::R0, bits));
    }
}

/// `len(x)`, `cap(x)` of a Go value, as Go's built-ins; `len` of a script string
/// is its length. A nil map or channel has length 0.
fn length(l: &mut Lower<'_, '_>, cap: bool, args: &[Expr]) {
    let Some(a) = args.first() else {
        l.em.e(Insn::mov64(Reg::R0, 0));
        return;
    };
    let ExprKind::Target(t) = &a.kind else {
        let s = l.string(a);
        let at = l.in_scratch(s);
        l.strlen_reg(at);
        return;
    };
    let Some(ty) = l.target_type(t) else {
        l.em.error(a.span, "the type of this value is unknown here");
        l.em.e(Insn::mov64(Reg::R0, 0));
        return;
    };
    match ty.kind {
        GoKind::Array { len } => l.em.imm(Reg::R0, len as i64),
        GoKind::String | GoKind::Slice => {
            l.target_word(a, t, if cap { 16 } else { 8 });
        }
        // A map's header and a channel's `hchan` start with the count; a channel's
        // capacity (`dataqsiz`) follows.
        GoKind::Map | GoKind::Chan => {
            l.target_word(a, t, 0);
            let nil = l.em.a.label();
            l.em.a.jmp(Cond::Eq, Reg::R0, 0, nil);
            l.em.e(Insn::mov64(Reg::R7, Reg::R0));
            l.em.read_user_u64(Reg::R0, Reg::R7, if cap { 8 } else { 0 });
            l.em.a.bind(nil);
        }
        _ => {
            l.em.error(a.span, format!("'{}' has no length", ty.name));
            l.em.e(Insn::mov64(Reg::R0, 0));
        }
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
pub(crate) fn goid(l: &mut Lower<'_, '_>) {
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
    let out = l.em.alloc(l.em.max_string());
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
    l.em.e(Insn::alu64(
        AluOp::And,
        Reg::R7,
        (l.em.max_string() - 1) as i32,
    ));
    // R2 = min(length, 127) + 1, the bytes to copy with the NUL.
    l.em.load(Reg::R2, vals + 8);
    l.em.a.jmp(Cond::Sle, Reg::R2, 0, done);
    let small = l.em.a.label();
    l.em.a
        .jmp(Cond::Le, Reg::R2, (l.em.max_string() - 1) as i32, small);
    l.em.e(Insn::mov64(Reg::R2, (l.em.max_string() - 1) as i32));
    l.em.a.bind(small);
    l.em.e(Insn::alu64(
        AluOp::And,
        Reg::R2,
        (l.em.max_string() - 1) as i32,
    ));
    l.em.e(Insn::alu64(AluOp::Add, Reg::R2, 1));
    l.em.addr(Reg::R3, src);
    l.em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R7));
    l.em.addr(Reg::R1, out);
    l.em.e(Insn::call(crate::emit::PROBE_READ_KERNEL_STR));
    l.em.a.bind(done);
    Str::Scratch(out)
}

/// `pp()` (with `pp`) or `probefunc()`: a string chosen by the site that fired.
fn site_string(l: &mut Lower<'_, '_>, pp: bool) -> Str {
    let pick = |s: &(String, String)| if pp { s.0.clone() } else { s.1.clone() };
    let mut texts: Vec<String> = l.site.each.iter().map(pick).collect();
    if texts.is_empty() {
        texts.push(if pp {
            l.site.pp.clone()
        } else {
            l.site.function.clone()
        });
    }
    cookie_string(l, &texts)
}

/// A string chosen by the site that fired: a search on the attach cookie among the
/// program's sites, each leaf writing its constant (one string needs no search).
fn cookie_string(l: &mut Lower<'_, '_>, texts: &[String]) -> Str {
    let at = l.em.alloc(l.em.max_string());
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
