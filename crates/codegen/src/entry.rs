//! `@entry(x)` in a `.return` probe: the value `x` had when the function was entered.
//! A second program, at the entry of each probed function, evaluates every `@entry`
//! operand there and saves the values in a hash map; the return probe reads them and
//! deletes the entry when it ends.
//!
//! The key must name one call of one function and survive Go's stack copying (a
//! goroutine stack that grows is moved, so addresses in it change): it is the
//! goroutine id and the distance from the top of the goroutine's stack
//! (`g.stack.hi`) to the frame's CFA, which copying keeps. Recursive calls have
//! different distances; calls on different goroutines different ids; the process id
//! tells apart processes running the same binary.

use bpf::script::{AttachSite, AttachSpec, EventSpec, counter};
use bpf::{Cond, Helper, Insn, MapId, MapKind, MapSpec, ProgramSpec, Reg, Size, X86Reg};
use lang::ast::{Expr, ExprId, ExprKind, Probe, walk_stmt};
use lang::{Diagnostic, ProbeInfo, Span, Type};

use crate::lower::{Lower, Str};
use crate::{Env, Site};

/// Saved calls a return probe may have pending at once (beyond that, the values of
/// the least recently entered calls, most often ones that will never return, go).
const MAX_PENDING: u32 = 65536;

/// The `@entry` values of one return probe.
#[derive(Clone, Debug)]
pub struct Saved {
    pub map: MapId,
    /// `@entry` expression → (its operand, type, offset in the saved value).
    pub values: Vec<(ExprId, Expr, Type, u32)>,
    pub size: u32,
}

impl Saved {
    fn offset(&self, id: ExprId) -> Option<u32> {
        self.values.iter().find(|v| v.0 == id).map(|v| v.3)
    }
}

/// The `@entry` operands of `probe` and of the alias prologues it runs (`prologues`),
/// laid out in one map value, if it has any.
pub fn saved_values(
    info: &lang::TypeInfo,
    probe: &Probe,
    prologues: &[&lang::ast::Block],
    first_map: u32,
    maps: &mut Vec<MapSpec>,
) -> Option<Saved> {
    let mut values = Vec::new();
    let mut size = 0u32;
    let mut visit = |e: &Expr| {
        if let ExprKind::Entry(inner) = &e.kind {
            let ty = info.expr_type(e).unwrap_or(Type::Long);
            values.push((e.id, (**inner).clone(), ty, size));
            size += match ty {
                Type::String => info.limits.max_string,
                _ => 8,
            };
        }
    };
    for s in prologues
        .iter()
        .flat_map(|b| &b.stmts)
        .chain(&probe.body.stmts)
    {
        walk_stmt(s, &mut visit);
    }
    if values.is_empty() {
        return None;
    }
    let map = MapId(first_map + maps.len() as u32);
    maps.push(MapSpec {
        name: format!("gotap_entry{}", maps.len()),
        // Calls that never return (a panic unwinding through them, runtime.Goexit)
        // leave their values behind; an LRU map lets them make room for new calls
        // instead of filling the map for the rest of the run.
        kind: MapKind::LruHash,
        key_size: 16,
        value_size: size,
        max_entries: MAX_PENDING,
        flags: 0,
    });
    Some(Saved { map, values, size })
}

impl Lower<'_, '_> {
    /// Builds the key of the current call in scratch: (goid, g.stack.hi - CFA).
    fn entry_key(&mut self) -> u32 {
        let key = self.em.alloc(16);
        self.em.store_imm(key, Size::DW, 0);
        self.em.store_imm(key + 8, Size::DW, 0);
        let Some(layout) = self.env.target.layout().copied() else {
            return key;
        };
        let sp_delta = self
            .site
            .addr
            .and_then(|a| self.env.target.sp_delta(a))
            .unwrap_or(0);
        crate::builtins::user_g(self);
        let none = self.em.a.label();
        self.em.a.jmp(Cond::Eq, Reg::R7, 0, none);
        self.em
            .read_user_u64(Reg::R0, Reg::R7, layout.g_goid as i64);
        self.em.store(key, Reg::R0);
        // The distance is taken on the stack the frame is on: the running g's (R14),
        // which is g0's on the system stack (runtime.copystack, which moves the
        // user goroutine's stack between its entry and its return).
        self.em.ctx_reg(Reg::R8, X86Reg::R14);
        self.em
            .read_user_u64(Reg::R8, Reg::R8, layout.g_stack_hi as i64);
        self.em.ctx_reg(Reg::R1, X86Reg::Rsp);
        self.em
            .e(Insn::alu64(bpf::AluOp::Add, Reg::R1, (sp_delta + 8) as i32));
        self.em.e(Insn::alu64(bpf::AluOp::Sub, Reg::R8, Reg::R1));
        self.em.store(key + 8, Reg::R8);
        // Goroutine ids and stack depths repeat in every process that runs the binary:
        // the process id takes the distance's upper half (a goroutine stack is at
        // most 1 GB), so two processes tracing at once never share a key.
        self.em.a.call(Helper::GetCurrentPidTgid);
        self.em.e(Insn::alu64(bpf::AluOp::Rsh, Reg::R0, 32));
        let o = self.em.off(key + 12);
        self.em
            .e(Insn::stx(Size::W, crate::emit::SCRATCH, o, Reg::R0));
        self.em.a.bind(none);
        key
    }

    /// R0 = the saved values of this call (or NULL); returns where `e`'s is in them.
    pub fn entry_value(&mut self, e: &Expr) -> Option<u32> {
        let Some(saved) = self.entry.clone() else {
            self.em
                .error(e.span, "'@entry' can only be used in a '.return' probe");
            return None;
        };
        let off = saved.offset(e.id)?;
        let key = self.entry_key();
        self.em.map_key_args(saved.map, key);
        self.em.a.call(Helper::MapLookupElem);
        Some(off)
    }

    /// Deletes the saved values of this call (at the end of a return probe).
    pub fn forget_entry(&mut self) {
        let Some(saved) = self.entry.clone() else {
            return;
        };
        let key = self.entry_key();
        self.em.map_key_args(saved.map, key);
        self.em.a.call(Helper::MapDeleteElem);
        // Nothing to delete: the `@entry` values this return read were zeros, which
        // the user is told.
        let found = self.em.a.label();
        self.em.a.jmp(Cond::Eq, Reg::R0, 0, found);
        self.em.count(counter::ENTRY_MISSED);
        self.em.a.bind(found);
    }
}

/// Where an entry program goes and what it reports.
pub struct EntrySite {
    pub addr: u64,
    pub function: String,
    pub pp: String,
}

/// What compiling an entry program adds to the script.
pub struct Out<'o> {
    pub events: &'o mut Vec<EventSpec>,
    pub programs: &'o mut Vec<ProgramSpec>,
    pub spans: &'o mut Vec<Vec<(usize, Span)>>,
    pub attachments: &'o mut Vec<AttachSpec>,
    pub cookie: &'o mut u64,
    pub diags: &'o mut Vec<Diagnostic>,
    pub high: &'o mut u32,
}

/// The program at a function's entry that saves the `@entry` values.
pub fn entry_program(
    env: &Env<'_, '_>,
    saved: &Saved,
    locals: &ProbeInfo,
    at: &EntrySite,
    out: Out<'_>,
) {
    let site = Site {
        addr: Some(at.addr),
        pp: at.pp.clone(),
        function: at.function.clone(),
        each: Vec::new(),
        first_cookie: 0,
        written: at.pp.clone(),
        sample: false,
    };
    let mut l = Lower::new(env, out.events, &site);
    crate::prologue_code(&mut l.em);
    l.enter_probe(&locals.locals);
    let inners: Vec<&lang::ast::Expr> = saved.values.iter().map(|v| &v.1).collect();
    l.plan_windows_of(&inners);
    let buf = l.em.alloc(saved.size);
    for (_, inner, ty, off) in &saved.values {
        match ty {
            Type::String => {
                let s = l.string(inner);
                l.copy_str(Str::Scratch(buf + off), s);
            }
            _ => {
                l.long(inner);
                l.em.store(buf + off, Reg::R0);
            }
        }
    }
    let key = l.entry_key();
    l.em.map_store(saved.map, key, buf);
    let end = l.em.end;
    l.em.a.bind(end);
    let abort = l.em.abort;
    l.em.a.bind(abort);
    l.em.e(Insn::mov64(Reg::R0, 0));
    l.em.a.exit();
    for (span, msg) in l.em.errors.drain(..) {
        out.diags.push(Diagnostic::error(span, msg));
    }
    *out.high = (*out.high).max(l.em.high);
    let spans = std::mem::take(&mut l.em.spans);
    let asm = std::mem::take(&mut l.em.a);
    let program = match asm.finish() {
        Ok(p) => p,
        Err(e) => {
            out.diags.push(Diagnostic::error(
                Span::default(),
                format!("internal error: {e}"),
            ));
            return;
        }
    };
    let Some(off) = env.target.binary().file_offset(gobin::VirtAddr(at.addr)) else {
        return;
    };
    let index = out.programs.len();
    out.programs
        .push(ProgramSpec::new(format!("gotap_p{index}"), program));
    out.spans.push(spans);
    out.attachments.push(AttachSpec {
        program: index,
        binary: env.target.path().to_string(),
        probe: format!("{} (entry, for @entry)", at.pp),
        sites: vec![AttachSite {
            addr: at.addr,
            file_offset: off.0,
            cookie: *out.cookie,
        }],
    });
    *out.cookie += 1;
}
