//! Pass 2 of the lowering: a probe body (and the script functions it calls, inlined at
//! each call) to eBPF. Expressions are lowered one node at a time: a `long` ends in R0,
//! with operands spilled to the scratch area between the two sides; a `string` ends in
//! a 128-byte buffer named by a [`Str`] (a scratch slot or a global's slot), copied
//! and joined with `bpf_probe_read_kernel_str`, which stops at the NUL and says how
//! long the result is. Loops are real loops; each keeps a hidden iteration counter on
//! the BPF stack so the verifier can see them end, and a loop that runs past
//! [`crate::Options::max_loop_iterations`] ends the probe with an error record.

use std::collections::HashMap;

use bpf::script::{EVENT_HEADER, EventSpec, Field, FieldKind, HistSpec};
use bpf::{AluOp, Cond, Helper, Insn, Label, Reg, Size};
use lang::ast::*;
use lang::{Binding, Callee, Span, Type};

use crate::emit::{Emitter, KEY_SLOT, SCRATCH, add_event};
use crate::storage::{Slot, hist_buckets};
use bpf::stats::{LOG_BUCKET_ZERO, WORD_BUCKETS, WORD_COUNT, WORD_MAX, WORD_MIN, WORD_SUM};

/// Byte offsets of the words of a statistics slot ([`bpf::stats`]).
const COUNT: i16 = (WORD_COUNT * 8) as i16;
const SUM: i16 = (WORD_SUM * 8) as i16;
const MIN: i16 = (WORD_MIN * 8) as i16;
const MAX: i16 = (WORD_MAX * 8) as i16;
use crate::{Env, Site};

/// `bpf_map_lookup_percpu_elem` (Linux 5.19), which `bpf::Helper` does not list.
const MAP_LOOKUP_PERCPU_ELEM: i32 = 195;

/// Where a string value is: a scratch slot or a scalar global's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Str {
    Scratch(u32),
    Global(u32),
}

struct FnFrame {
    name: String,
    /// Where it was called (an error inside names the call, as user space does).
    call: Span,
    ret: Label,
    slot: Option<(u32, Type)>,
}

/// Lowers the bodies of one program.
pub struct Lower<'a, 'd> {
    pub env: &'a Env<'a, 'd>,
    pub em: Emitter<'a>,
    pub events: &'a mut Vec<EventSpec>,
    /// Where this program's events begin in `events`.
    pub events_from: usize,
    pub site: &'a Site,
    /// Names of the body being lowered → scratch slot and type.
    scopes: Vec<HashMap<String, (u32, Type)>>,
    fns: Vec<FnFrame>,
    /// (continue, break) labels of the enclosing loops.
    loops: Vec<(Label, Label)>,
    /// In a return probe that uses `@entry`: where the entry values are.
    pub entry: Option<crate::entry::Saved>,
    /// The stack map `ubacktrace()` stores its stacks in, when the script uses it.
    pub stacks: Option<bpf::MapId>,
    /// Struct reads coalesced into one (see `window`).
    pub windows: Vec<crate::window::Window>,
    /// With `Options::goids`: (event id, offset in the record) of the goroutine id
    /// written after each printed record's fields.
    pub goids: Vec<(usize, u32)>,
    /// The shapes of the Go values this program's records carry, numbered from
    /// `value_base` in the script's list (`ScriptSpec::values`).
    pub values: Vec<bpf::govalue::Shape>,
    pub value_base: usize,
}

impl<'a, 'd> Lower<'a, 'd> {
    pub fn new(
        env: &'a Env<'a, 'd>,
        events: &'a mut Vec<EventSpec>,
        site: &'a Site,
    ) -> Lower<'a, 'd> {
        Lower {
            env,
            em: Emitter::new(env.storage),
            events_from: events.len(),
            events,
            site,
            scopes: Vec::new(),
            fns: Vec::new(),
            loops: Vec::new(),
            entry: None,
            stacks: None,
            windows: Vec::new(),
            goids: Vec::new(),
            values: Vec::new(),
            value_base: 0,
        }
    }

    /// Allocates and zeroes the locals of a probe.
    pub fn enter_probe(&mut self, locals: &[lang::VarInfo]) {
        let mut scope = HashMap::new();
        for v in locals {
            if self.env.storage.slots.contains_key(&v.name) {
                continue;
            }
            let ty = v.ty.unwrap_or(Type::Long);
            let at = self.em.alloc(self.em.storage.width(ty));
            self.em.store_imm(at, Size::DW, 0);
            scope.insert(v.name.clone(), (at, ty));
        }
        self.scopes.push(scope);
    }

    // ---- statements ----

    pub fn block(&mut self, b: &Block) {
        for s in &b.stmts {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        self.em.mark(s.span);
        let mark = self.em.top;
        match &s.kind {
            StmtKind::Block(b) => self.block(b),
            StmtKind::Expr(e) => self.effect(e),
            StmtKind::If { cond, then, els } => match self.static_cond(cond) {
                Some(true) => self.stmt(then),
                Some(false) => {
                    if let Some(e) = els {
                        self.stmt(e)
                    }
                }
                None => {
                    let else_l = self.em.a.label();
                    let done = self.em.a.label();
                    self.cond_jump_false(cond, else_l);
                    self.em.release(mark);
                    self.stmt(then);
                    if let Some(e) = els {
                        self.em.a.ja(done);
                        self.em.a.bind(else_l);
                        self.stmt(e);
                    } else {
                        self.em.a.bind(else_l);
                    }
                    self.em.a.bind(done);
                }
            },
            StmtKind::While { cond, body } => self.lower_loop(Some(cond), None, body),
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                if let Some(i) = init {
                    self.effect(i);
                    self.em.release(mark);
                }
                self.lower_loop(cond.as_ref(), step.as_ref(), body)
            }
            StmtKind::Foreach(f) => self.kernel_foreach(f),
            StmtKind::Break => match self.loops.last() {
                Some(&(_, brk)) => {
                    self.em.a.ja(brk);
                }
                None => self.em.error(s.span, "'break' outside a loop"),
            },
            StmtKind::Continue => match self.loops.last() {
                Some(&(cont, _)) => {
                    self.em.a.ja(cont);
                }
                None => self.em.error(s.span, "'continue' outside a loop"),
            },
            StmtKind::Next => {
                let end = self.em.end;
                self.em.a.ja(end);
            }
            StmtKind::Return(v) => self.ret(s.span, v.as_ref()),
            StmtKind::Delete(e) => self.delete(e),
            StmtKind::Empty => {}
        }
        self.em.release(mark);
    }

    /// `@defined(...)` conditions are known at compile time; the branch that does not
    /// apply is not lowered (it may name variables that do not exist here).
    fn static_cond(&self, e: &Expr) -> Option<bool> {
        match &e.kind {
            ExprKind::Defined(_) => self.env.info.defined.get(&e.id).copied(),
            ExprKind::Unary {
                op: UnOp::Not,
                expr,
            } => self.static_cond(expr).map(|b| !b),
            _ => None,
        }
    }

    fn lower_loop(&mut self, cond: Option<&Expr>, step: Option<&Expr>, body: &Stmt) {
        let slot = self.em.stack_slot();
        if self.em.stack_used > 512 {
            self.em
                .error(body.span, "loops nested too deep for the BPF stack");
        }
        self.em.e(Insn::st(Size::DW, Reg::R10, slot, 0));
        let head = self.em.a.label();
        let cont = self.em.a.label();
        let brk = self.em.a.label();
        self.em.a.bind(head);
        // The counter the verifier follows: it is what proves the loop ends.
        self.em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R10, slot));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R1, 1));
        self.em.e(Insn::stx(Size::DW, Reg::R10, slot, Reg::R1));
        let ok = self.em.a.label();
        let max = self.env.opts.max_loop_iterations as i32;
        self.em.a.jmp(Cond::Le, Reg::R1, max, ok);
        let msg = format!(
            "loop ran more than {} times near {}",
            self.env.opts.max_loop_iterations,
            self.env.position(body.span)
        );
        self.fail(msg);
        self.em.a.bind(ok);
        if let Some(c) = cond {
            let mark = self.em.top;
            self.cond_jump_false(c, brk);
            self.em.release(mark);
        }
        self.loops.push((cont, brk));
        self.stmt(body);
        self.loops.pop();
        self.em.a.bind(cont);
        if let Some(s) = step {
            let mark = self.em.top;
            self.effect(s);
            self.em.release(mark);
        }
        self.em.a.ja(head);
        self.em.a.bind(brk);
        // The counter is dead after the loop: the next loop may reuse its slot.
        self.em.stack_used -= 8;
    }

    /// Ends the probe with stap's error `what` near `near`, named as user space names
    /// it: the calls it happened in and the probe point.
    pub fn stop(&mut self, what: &str, near: Span) {
        let calls: Vec<Span> = self.fns.iter().rev().map(|f| f.call).collect();
        let msg = self
            .env
            .stop_message(what, near, &calls, &self.site.written);
        self.fail(msg);
    }

    /// Sends an error record and ends the probe.
    pub fn fail(&mut self, message: String) {
        self.em
            .event_only(self.events, EventSpec::Error { message });
        let end = self.em.end;
        self.em.a.ja(end);
    }

    fn ret(&mut self, span: Span, v: Option<&Expr>) {
        let Some(frame) = self.fns.last() else {
            // `return` in a probe ends the probe, as `next` does.
            let end = self.em.end;
            self.em.a.ja(end);
            return;
        };
        let (ret, slot) = (frame.ret, frame.slot);
        if let (Some(e), Some((at, ty))) = (v, slot) {
            match ty {
                Type::String => {
                    let s = self.string(e);
                    self.copy_str(Str::Scratch(at), s);
                }
                _ => {
                    self.long(e);
                    self.em.store(at, Reg::R0);
                }
            }
        } else if v.is_some() {
            self.em.error(span, "this function returns no value");
        }
        self.em.a.ja(ret);
    }

    fn delete(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Index { array, keys } => match self.slot(array) {
                Some(Slot::Array { map, keys: kt, .. })
                | Some(Slot::Stats { map, keys: kt, .. })
                    if !kt.is_empty() =>
                {
                    let key = self.key(keys, &kt);
                    self.em.map_key_args(map, key);
                    self.em.a.call(Helper::MapDeleteElem);
                }
                _ => self.em.error(e.span, "cannot delete this element"),
            },
            ExprKind::Var(id) => match self.slot(id) {
                Some(Slot::Scalar { offset, ty }) => {
                    self.em
                        .a
                        .ld_map_value(Reg::R1, self.env.storage.scalars, offset);
                    self.em.e(Insn::st(Size::DW, Reg::R1, 0, 0));
                    let _ = ty;
                }
                Some(Slot::Array { map, keys, .. }) | Some(Slot::Stats { map, keys, .. })
                    if !keys.is_empty() =>
                {
                    // Each element, deleted by a function the kernel calls for it.
                    let each = self.em.callback(crate::emit::Callback::DeleteElem);
                    self.em.a.ld_map(Reg::R1, map);
                    self.em.a.ld_fn(Reg::R2, each);
                    self.em.e(Insn::mov64(Reg::R3, 0));
                    self.em.e(Insn::mov64(Reg::R4, 0));
                    self.em.a.call(Helper::ForEachMapElem);
                }
                Some(Slot::Stats { map, hist, .. }) => self.clear_stat(map, hist),
                Some(_) => self.em.error(e.span, "cannot delete this"),
                None => match self.local(id) {
                    Some((at, _)) => self.em.store_imm(at, Size::DW, 0),
                    None => self.em.error(e.span, "cannot delete this"),
                },
            },
            _ => self.em.error(e.span, "cannot delete this"),
        }
    }

    /// `foreach` in a kernel probe: `bpf_for_each_map_elem` calls back a function made
    /// of the loop's body once per element, in the map's order (the checker refused a
    /// sorted walk and a walk in a function, which need user space). The steps: find
    /// the map and where the keys and value go; lay out, on this frame's stack, the
    /// context the callback reads (the scratch pointer, the probe's context, the hit
    /// tag, a stop flag set by `next` or an error in the body so that the probe ends
    /// after the walk, and with `limit` a count and the limit); assemble the body as a
    /// function on its own; then call the walk. `break` returns 1, which ends it.
    fn kernel_foreach(&mut self, f: &Foreach) {
        let Some((map, keys)) = self.foreach_map(f) else {
            return;
        };
        let Some(vars) = self.foreach_vars(f) else {
            return;
        };
        let frame = self.foreach_context(f);
        let entry = self.foreach_callback(f, &keys, &vars, &frame);
        // The walk, and the end of the probe if the body asked for it.
        self.em.a.ld_map(Reg::R1, map);
        self.em.a.ld_fn(Reg::R2, entry);
        self.em.e(Insn::mov64(Reg::R3, Reg::R10));
        self.em
            .e(Insn::alu64(AluOp::Add, Reg::R3, i32::from(frame.base)));
        self.em.e(Insn::mov64(Reg::R4, 0));
        self.em.a.call(Helper::ForEachMapElem);
        self.em.e(Insn::ldx(
            Size::DW,
            Reg::R0,
            Reg::R10,
            frame.base + ForeachFrame::STOP,
        ));
        let end = self.em.end;
        self.em.a.jmp(Cond::Ne, Reg::R0, 0, end);
        self.em.stack_used -= 7 * 8;
    }

    /// The map a `foreach` walks and its key types, checked against the loop.
    fn foreach_map(&mut self, f: &Foreach) -> Option<(bpf::MapId, Vec<Type>)> {
        let span = f.array.span;
        let (map, kt, value) = match self.slot(&f.array) {
            Some(Slot::Array { map, keys, value }) if !keys.is_empty() => (map, keys, Some(value)),
            Some(Slot::Stats { map, keys, .. }) if !keys.is_empty() => (map, keys, None),
            _ => {
                self.em.error(
                    span,
                    format!("'{}' is not an array with keys", f.array.name),
                );
                return None;
            }
        };
        if f.keys.len() != kt.len() {
            self.em.error(
                span,
                format!(
                    "'{}' has {} keys, not {}",
                    f.array.name,
                    kt.len(),
                    f.keys.len()
                ),
            );
            return None;
        }
        if let (Some(v), None) = (&f.value, value) {
            self.em.error(
                v.span,
                "a statistic has no single value; read @count(s[k]) and the like in the body",
            );
            return None;
        }
        Some((map, kt))
    }

    /// Where each key (then the value) of an element goes: a local's slot, or a
    /// scratch slot copied to the global the name resolved to.
    fn foreach_vars(&mut self, f: &Foreach) -> Option<Vec<(u32, Type, Option<Slot>)>> {
        let mut vars = Vec::new();
        for k in f.keys.iter().chain(&f.value) {
            let ty = self.env.info.global_of(k).and_then(|g| g.ty);
            match (self.local(k), self.slot(k)) {
                (Some((at, ty)), _) => vars.push((at, ty, None)),
                (None, Some(g @ Slot::Scalar { .. })) => {
                    let ty = ty.unwrap_or(Type::Long);
                    let at = self.em.alloc(self.em.storage.width(ty));
                    vars.push((at, ty, Some(g)));
                }
                _ => {
                    self.em
                        .error(k.span, format!("internal error: no slot for '{}'", k.name));
                    return None;
                }
            }
        }
        Some(vars)
    }

    /// The callback's context, 6 words on this frame's stack (the lowest first), and
    /// the callback's own slot for the pointer to them (the same offset there).
    fn foreach_context(&mut self, f: &Foreach) -> ForeachFrame {
        let words: Vec<i16> = (0..6).map(|_| self.em.stack_slot()).collect();
        let base = words[5];
        let own = self.em.stack_slot();
        if self.em.stack_used > 512 {
            self.em
                .error(f.array.span, "loops nested too deep for the BPF stack");
        }
        if let Some(l) = &f.limit {
            self.long(l);
            self.em.e(Insn::stx(
                Size::DW,
                Reg::R10,
                base + ForeachFrame::LIMIT,
                Reg::R0,
            ));
        }
        let put = |em: &mut Emitter<'_>, at: i16, r: Reg| {
            em.e(Insn::stx(Size::DW, Reg::R10, base + at, r))
        };
        put(&mut self.em, ForeachFrame::SCRATCH, SCRATCH);
        put(&mut self.em, ForeachFrame::CTX, crate::emit::CTX);
        self.em.e(Insn::ldx(
            Size::DW,
            Reg::R0,
            Reg::R10,
            crate::emit::HIT_SLOT,
        ));
        put(&mut self.em, ForeachFrame::HIT, Reg::R0);
        self.em
            .e(Insn::st(Size::DW, Reg::R10, base + ForeachFrame::STOP, 0));
        self.em
            .e(Insn::st(Size::DW, Reg::R10, base + ForeachFrame::COUNT, 0));
        ForeachFrame { base, own }
    }

    /// The loop's body as a BPF function of `(map, key, value, ctx)`, assembled on its
    /// own; returns its label.
    fn foreach_callback(
        &mut self,
        f: &Foreach,
        keys: &[Type],
        vars: &[(u32, Type, Option<Slot>)],
        frame: &ForeachFrame,
    ) -> Label {
        let entry = self.em.a.label();
        let outer = std::mem::take(&mut self.em.a);
        let (outer_end, outer_abort) = (self.em.end, self.em.abort);
        let spans_from = self.em.spans.len();
        let (next_elem, last_elem, stop) =
            (self.em.a.label(), self.em.a.label(), self.em.a.label());
        self.em.end = stop;
        self.em.abort = stop;
        self.foreach_enter(f, frame, last_elem);
        self.foreach_bind(keys, vars);
        self.loops.push((next_elem, last_elem));
        self.stmt(&f.body);
        self.loops.pop();
        self.foreach_returns(frame, next_elem, last_elem, stop);
        let body = std::mem::replace(&mut self.em.a, outer);
        let spans: Vec<(usize, Span)> = self.em.spans.drain(spans_from..).collect();
        self.em.end = outer_end;
        self.em.abort = outer_abort;
        self.em.functions.push((entry, body, spans));
        entry
    }

    /// The callback's start: its registers and hit tag from the context, and with
    /// `limit`, the count checked and raised.
    fn foreach_enter(&mut self, f: &Foreach, frame: &ForeachFrame, last_elem: Label) {
        // (map, key, value, ctx): R7 = key, R8 = value, R4 = ctx.
        self.em.e(Insn::stx(Size::DW, Reg::R10, frame.own, Reg::R4));
        self.em.e(Insn::mov64(Reg::R7, Reg::R2));
        self.em.e(Insn::mov64(Reg::R8, Reg::R3));
        self.em
            .e(Insn::ldx(Size::DW, SCRATCH, Reg::R4, ForeachFrame::SCRATCH));
        self.em.e(Insn::ldx(
            Size::DW,
            crate::emit::CTX,
            Reg::R4,
            ForeachFrame::CTX,
        ));
        self.em
            .e(Insn::ldx(Size::DW, Reg::R0, Reg::R4, ForeachFrame::HIT));
        self.em.e(Insn::stx(
            Size::DW,
            Reg::R10,
            crate::emit::HIT_SLOT,
            Reg::R0,
        ));
        if f.limit.is_some() {
            self.em
                .e(Insn::ldx(Size::DW, Reg::R0, Reg::R4, ForeachFrame::COUNT));
            self.em
                .e(Insn::ldx(Size::DW, Reg::R1, Reg::R4, ForeachFrame::LIMIT));
            self.em.a.jmp(Cond::Sge, Reg::R0, Reg::R1, last_elem);
            self.em.e(Insn::alu64(AluOp::Add, Reg::R0, 1));
            self.em
                .e(Insn::stx(Size::DW, Reg::R4, ForeachFrame::COUNT, Reg::R0));
        }
    }

    /// Copies the element's keys (R7) and value (R8) into the loop's variables.
    fn foreach_bind(&mut self, keys: &[Type], vars: &[(u32, Type, Option<Slot>)]) {
        let mut pos = 0i16;
        for (i, (at, ty, global)) in vars.iter().enumerate() {
            let (src, off) = if i < keys.len() {
                (Reg::R7, pos)
            } else {
                (Reg::R8, 0)
            };
            match ty {
                Type::String => {
                    self.em.addr(Reg::R1, *at);
                    self.em.e(Insn::mov64(Reg::R2, self.em.max_string() as i32));
                    self.em.e(Insn::mov64(Reg::R3, src));
                    if off != 0 {
                        self.em.e(Insn::alu64(AluOp::Add, Reg::R3, i32::from(off)));
                    }
                    self.em.a.call(Helper::ProbeReadKernel);
                }
                _ => {
                    self.em.e(Insn::ldx(Size::DW, Reg::R0, src, off));
                    self.em.store(*at, Reg::R0);
                }
            }
            if let Some(Slot::Scalar { offset, .. }) = global {
                match ty {
                    Type::String => self.copy_str(Str::Global(*offset), Str::Scratch(*at)),
                    _ => {
                        self.em.load(Reg::R0, *at);
                        self.cell(Cell::Global(*offset), Reg::R0, false);
                    }
                }
            }
            if i < keys.len() {
                pos += self.em.storage.width(keys[i]) as i16;
            }
        }
    }

    /// The callback's returns: 0 for the next element, 1 to end the walk (`break`,
    /// `limit`), 1 with the stop flag set when the probe must end. The verifier refuses
    /// code nothing reaches: each only when jumped to or fallen into (a body may end
    /// in `next` or `break`, or in an `if` whose branch ends so while the test jumps
    /// past it).
    fn foreach_returns(
        &mut self,
        frame: &ForeachFrame,
        next_elem: Label,
        last_elem: Label,
        stop: Label,
    ) {
        if self.em.a.falls_through() || self.em.a.is_referenced(next_elem) {
            self.em.a.bind(next_elem);
            self.em.e(Insn::mov64(Reg::R0, 0));
            self.em.a.exit();
        }
        if self.em.a.is_referenced(last_elem) {
            self.em.a.bind(last_elem);
            self.em.e(Insn::mov64(Reg::R0, 1));
            self.em.a.exit();
        }
        if self.em.a.is_referenced(stop) {
            self.em.a.bind(stop);
            self.em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R10, frame.own));
            self.em
                .e(Insn::st(Size::DW, Reg::R1, ForeachFrame::STOP, 1));
            self.em.e(Insn::mov64(Reg::R0, 1));
            self.em.a.exit();
        }
    }

    /// `delete s` of a statistic without keys: its one value zeroed on every CPU.
    fn clear_stat(&mut self, map: bpf::MapId, hist: bpf::script::HistSpec) {
        let words = crate::storage::stat_slot_bytes(hist) / 8;
        let key = self.em.alloc(8);
        self.em.store_imm(key, Size::DW, 0);
        let done = self.em.a.label();
        let top = self.cpu_slots(map, key, done);
        for w in 0..words {
            self.em.e(Insn::st(Size::DW, Reg::R0, (8 * w) as i16, 0));
        }
        self.next_cpu(top);
        self.em.a.bind(done);
        self.em.release(key);
    }

    /// The head of a loop over every CPU's slot of `key` in per-CPU `map`: R8 is the
    /// CPU, R0 its slot; past the last CPU (or at a missing slot) it goes to `done`.
    /// The body ends with [`Lower::next_cpu`]. The CPU number starts as a value read
    /// back from scratch and the head has a `may_goto`, so the verifier checks the
    /// body once, not once per CPU of the machine.
    fn cpu_slots(&mut self, map: bpf::MapId, key: u32, done: Label) -> Label {
        let cpu = self.em.alloc(8);
        self.em.store_imm(cpu, Size::DW, 0);
        self.em.load(Reg::R8, cpu);
        let top = self.em.a.label();
        self.em.a.bind(top);
        self.em.a.may_goto(done);
        let cpus = self.env.opts.possible_cpus.clamp(1, 4096) as i32;
        self.em.a.jmp(Cond::Ge, Reg::R8, cpus, done);
        self.em.map_key_args(map, key);
        self.em.e(Insn::mov64(Reg::R3, Reg::R8));
        self.em.e(Insn::call(MAP_LOOKUP_PERCPU_ELEM));
        self.em.a.jmp(Cond::Eq, Reg::R0, 0, done);
        top
    }

    fn next_cpu(&mut self, top: Label) {
        self.em.e(Insn::alu64(AluOp::Add, Reg::R8, 1));
        self.em.a.ja(top);
    }

    // ---- names ----

    /// Where the global `id` names lives, if the checker resolved it to a global.
    fn slot(&self, id: &Ident) -> Option<Slot> {
        match self.env.info.binding(id)? {
            Binding::Global(_) => self.env.storage.slots.get(&id.name).cloned(),
            Binding::Local => None,
        }
    }

    /// The scratch slot and type of the local `id` names, if it names a local.
    fn local(&self, id: &Ident) -> Option<(u32, Type)> {
        if let Some(Binding::Global(_)) = self.env.info.binding(id) {
            return None;
        }
        self.scopes.last().and_then(|s| s.get(&id.name)).copied()
    }

    // ---- expressions as statements ----

    fn effect(&mut self, e: &Expr) {
        self.em.mark(e.span);
        match &e.kind {
            ExprKind::Assign { .. } | ExprKind::IncDec { .. } => {
                self.assign_like(e, false);
            }
            ExprKind::Aggregate { lhs, rhs } => self.aggregate(lhs, rhs),
            ExprKind::Call { name, args } => {
                self.call(e, name, args);
            }
            _ => match self.env.info.expr_type(e) {
                Some(Type::String) => {
                    self.string(e);
                }
                _ => self.long(e),
            },
        }
    }

    // ---- conditions ----

    /// Jumps to `to` when `e` is false (0).
    fn cond_jump_false(&mut self, e: &Expr, to: Label) {
        match &e.kind {
            ExprKind::Binary {
                op: BinOp::And,
                lhs,
                rhs,
            } => {
                self.cond_jump_false(lhs, to);
                self.cond_jump_false(rhs, to);
            }
            ExprKind::Unary {
                op: UnOp::Not,
                expr,
            } => {
                let t = self.em.a.label();
                self.cond_jump_false(expr, t);
                self.em.a.ja(to);
                self.em.a.bind(t);
            }
            _ => {
                self.long(e);
                self.em.a.jmp(Cond::Eq, Reg::R0, 0, to);
            }
        }
    }

    // ---- long expressions: the value ends in R0 ----

    pub fn long(&mut self, e: &Expr) {
        self.em.mark(e.span);
        match &e.kind {
            ExprKind::Num(n) => self.em.imm(Reg::R0, *n),
            ExprKind::Str(_) => self.em.e(Insn::mov64(Reg::R0, 0)),
            ExprKind::ScriptArg { index, .. } => {
                self.em
                    .error(e.span, format!("script argument ${index} was not given"));
                self.em.e(Insn::mov64(Reg::R0, 0));
            }
            ExprKind::Var(id) => self.read_var(e.span, id),
            ExprKind::Index { array, keys } => self.read_elem(e.span, array, keys),
            ExprKind::Target(t) => self.target_long(e, t),
            ExprKind::AddrOf(inner) => match &inner.kind {
                ExprKind::Target(t) => self.target_addr(inner, t),
                _ => {
                    self.em.error(e.span, "'&' needs a context variable");
                    self.em.e(Insn::mov64(Reg::R0, 0));
                }
            },
            ExprKind::Defined(_) => {
                let v = self.env.info.defined.get(&e.id).copied().unwrap_or(false);
                self.em.e(Insn::mov64(Reg::R0, i32::from(v)));
            }
            ExprKind::Entry(_) => {
                if let Some(off) = self.entry_value(e) {
                    let t = self.em.alloc(8);
                    self.em.store_imm(t, Size::DW, 0);
                    let done = self.em.a.label();
                    self.em.a.jmp(Cond::Eq, Reg::R0, 0, done);
                    self.em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R0, off as i16));
                    self.em.store(t, Reg::R1);
                    self.em.a.bind(done);
                    self.em.load(Reg::R0, t);
                } else {
                    self.em.e(Insn::mov64(Reg::R0, 0));
                }
            }
            ExprKind::Call { name, args } => {
                self.call(e, name, args);
            }
            ExprKind::Stat { op, arg, .. } => self.stat_read(e, *op, arg),
            ExprKind::Unary { op, expr } => {
                self.long(expr);
                match op {
                    UnOp::Neg => self.em.e(Insn::neg64(Reg::R0)),
                    UnOp::Plus => {}
                    UnOp::BitNot => self.em.e(Insn::alu64(AluOp::Xor, Reg::R0, -1)),
                    UnOp::Not => self.bool_of(Cond::Eq),
                }
            }
            ExprKind::IncDec { .. } | ExprKind::Assign { .. } => {
                self.assign_like(e, true);
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(e, *op, lhs, rhs),
            ExprKind::Aggregate { lhs, rhs } => {
                self.aggregate(lhs, rhs);
                self.em.e(Insn::mov64(Reg::R0, 0));
            }
            ExprKind::Ternary { cond, then, els } => match self.static_cond(cond) {
                Some(true) => self.long(then),
                Some(false) => self.long(els),
                None => {
                    let else_l = self.em.a.label();
                    let done = self.em.a.label();
                    self.cond_jump_false(cond, else_l);
                    self.long(then);
                    self.em.a.ja(done);
                    self.em.a.bind(else_l);
                    self.long(els);
                    self.em.a.bind(done);
                }
            },
            ExprKind::In { keys, array } => match self.slot(array) {
                Some(Slot::Array { map, keys: kt, .. })
                | Some(Slot::Stats { map, keys: kt, .. }) => {
                    let key = self.key(keys, &kt);
                    self.em.map_key_args(map, key);
                    self.em.a.call(Helper::MapLookupElem);
                    self.bool_of(Cond::Ne);
                }
                _ => {
                    self.em
                        .error(e.span, format!("'{}' is not an array", array.name));
                    self.em.e(Insn::mov64(Reg::R0, 0));
                }
            },
        }
    }

    /// `R0 = (R0 cond 0) ? 1 : 0`.
    fn bool_of(&mut self, cond: Cond) {
        let t = self.em.a.label();
        let done = self.em.a.label();
        self.em.a.jmp(cond, Reg::R0, 0, t);
        self.em.e(Insn::mov64(Reg::R0, 0));
        self.em.a.ja(done);
        self.em.a.bind(t);
        self.em.e(Insn::mov64(Reg::R0, 1));
        self.em.a.bind(done);
    }

    fn read_var(&mut self, span: Span, id: &Ident) {
        if let Some((at, _)) = self.local(id) {
            self.em.load(Reg::R0, at);
            return;
        }
        match self.slot(id) {
            Some(Slot::Scalar { offset, .. }) => {
                self.em
                    .a
                    .ld_map_value(Reg::R1, self.env.storage.scalars, offset);
                self.em.e(Insn::ldx(Size::DW, Reg::R0, Reg::R1, 0));
            }
            Some(_) => {
                self.em
                    .error(span, format!("'{}' is an array or statistic", id.name));
                self.em.e(Insn::mov64(Reg::R0, 0));
            }
            None => self.em.e(Insn::mov64(Reg::R0, 0)),
        }
    }

    /// Builds a map key from `keys` in scratch and returns its offset. Strings are
    /// NUL-padded to [`MAX_STRING`] so equal strings hash alike.
    fn key(&mut self, keys: &[Expr], types: &[Type]) -> u32 {
        if types.is_empty() {
            let at = self.em.alloc(8);
            self.em.store_imm(at, Size::DW, 0);
            return at;
        }
        let size: u32 = types.iter().map(|t| self.em.storage.width(*t)).sum();
        let at = self.em.alloc(size);
        let mut pos = at;
        for (k, t) in keys.iter().zip(types) {
            match t {
                Type::String => {
                    for i in 0..self.em.max_string() / 8 {
                        self.em.store_imm(pos + 8 * i, Size::DW, 0);
                    }
                    let s = self.string(k);
                    self.copy_str(Str::Scratch(pos), s);
                }
                _ => {
                    self.long(k);
                    self.em.store(pos, Reg::R0);
                }
            }
            pos += self.em.storage.width(*t);
        }
        at
    }

    /// An element of an array of numbers, or of stacks: a stack is its id, 8 bytes
    /// like a long, so that a stack kept per key can key another array.
    fn read_elem(&mut self, span: Span, array: &Ident, keys: &[Expr]) {
        match self.slot(array) {
            Some(Slot::Array {
                map,
                keys: kt,
                value: Type::Long | Type::Stack,
            }) => {
                let key = self.key(keys, &kt);
                self.em.map_key_args(map, key);
                self.em.a.call(Helper::MapLookupElem);
                let done = self.em.a.label();
                self.em.a.jmp(Cond::Eq, Reg::R0, 0, done);
                self.em.e(Insn::ldx(Size::DW, Reg::R0, Reg::R0, 0));
                self.em.a.bind(done);
            }
            _ => {
                self.em
                    .error(span, format!("'{}' is not an array of numbers", array.name));
                self.em.e(Insn::mov64(Reg::R0, 0));
            }
        }
    }

    fn binary(&mut self, e: &Expr, op: BinOp, lhs: &Expr, rhs: &Expr) {
        match op {
            BinOp::And | BinOp::Or => {
                let short = self.em.a.label();
                let done = self.em.a.label();
                self.long(lhs);
                let c = if op == BinOp::And { Cond::Eq } else { Cond::Ne };
                self.em.a.jmp(c, Reg::R0, 0, short);
                self.long(rhs);
                self.bool_of(Cond::Ne);
                self.em.a.ja(done);
                self.em.a.bind(short);
                self.em.e(Insn::mov64(Reg::R0, i32::from(op == BinOp::Or)));
                self.em.a.bind(done);
                return;
            }
            BinOp::Concat => {
                // A string in a long context: its value is not a number.
                let s = self.string(e);
                let _ = s;
                self.em.e(Insn::mov64(Reg::R0, 0));
                return;
            }
            BinOp::Match | BinOp::NotMatch => {
                self.em.error(
                    e.span,
                    "internal error: the checker let a regular expression into a process probe",
                );
                self.em.e(Insn::mov64(Reg::R0, 0));
                return;
            }
            _ => {}
        }
        let strings = self.env.info.expr_type(lhs) == Some(Type::String)
            || self.env.info.expr_type(rhs) == Some(Type::String);
        if op.is_comparison() && strings {
            let a = self.string(lhs);
            let a = self.in_scratch(a);
            let b = self.string(rhs);
            let b = self.in_scratch(b);
            self.strcmp(a, b);
            self.compare_r0(op);
            return;
        }
        self.long(lhs);
        let t = self.em.alloc(8);
        self.em.store(t, Reg::R0);
        self.long(rhs);
        self.em.e(Insn::mov64(Reg::R1, Reg::R0));
        self.em.load(Reg::R0, t);
        self.em.release(t);
        self.arith(Operator::of(lhs, rhs), op);
    }

    /// `R0 = R0 op R1` for a `long` operator (comparisons give 0 or 1).
    fn arith(&mut self, at: Operator, op: BinOp) {
        let alu = |s: &mut Self, o: AluOp| s.em.e(Insn::alu64(o, Reg::R0, Reg::R1));
        match op {
            BinOp::Add => alu(self, AluOp::Add),
            BinOp::Sub => alu(self, AluOp::Sub),
            BinOp::Mul => alu(self, AluOp::Mul),
            BinOp::BitAnd => alu(self, AluOp::And),
            BinOp::BitOr => alu(self, AluOp::Or),
            BinOp::BitXor => alu(self, AluOp::Xor),
            BinOp::Shl => {
                self.em.e(Insn::alu64(AluOp::And, Reg::R1, 63));
                alu(self, AluOp::Lsh)
            }
            BinOp::Shr => {
                self.em.e(Insn::alu64(AluOp::And, Reg::R1, 63));
                alu(self, AluOp::Arsh)
            }
            BinOp::Div | BinOp::Mod => self.divide(at, op == BinOp::Mod),
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let c = match op {
                    BinOp::Eq => Cond::Eq,
                    BinOp::Ne => Cond::Ne,
                    BinOp::Lt => Cond::Slt,
                    BinOp::Le => Cond::Sle,
                    BinOp::Gt => Cond::Sgt,
                    _ => Cond::Sge,
                };
                let t = self.em.a.label();
                let done = self.em.a.label();
                self.em.a.jmp(c, Reg::R0, Reg::R1, t);
                self.em.e(Insn::mov64(Reg::R0, 0));
                self.em.a.ja(done);
                self.em.a.bind(t);
                self.em.e(Insn::mov64(Reg::R0, 1));
                self.em.a.bind(done);
            }
            _ => {}
        }
    }

    /// Signed `R0 / R1` or `R0 % R1` (C semantics: truncation toward zero, the
    /// remainder has the dividend's sign) with BPF's unsigned division; a zero
    /// divisor ends the probe with stap's error (not checked when the divisor is a
    /// number written in the script other than 0).
    fn divide(&mut self, at: Operator, modulo: bool) {
        if !at.divisor_nonzero {
            let ok = self.em.a.label();
            self.em.a.jmp(Cond::Ne, Reg::R1, 0, ok);
            self.stop("division by 0", at.place);
            self.em.a.bind(ok);
        }
        // R2 = sign of the result (dividend's for %, xor of both for /).
        self.em.e(Insn::mov64(Reg::R2, Reg::R0));
        if !modulo {
            self.em.e(Insn::alu64(AluOp::Xor, Reg::R2, Reg::R1));
        }
        for r in [Reg::R0, Reg::R1] {
            let pos = self.em.a.label();
            self.em.a.jmp(Cond::Sge, r, 0, pos);
            self.em.e(Insn::neg64(r));
            self.em.a.bind(pos);
        }
        let op = if modulo { AluOp::Mod } else { AluOp::Div };
        self.em.e(Insn::alu64(op, Reg::R0, Reg::R1));
        let pos = self.em.a.label();
        self.em.a.jmp(Cond::Sge, Reg::R2, 0, pos);
        self.em.e(Insn::neg64(Reg::R0));
        self.em.a.bind(pos);
    }

    /// `R0 = (R0 op 0)` after a string comparison left `a - b`'s sign in R0.
    fn compare_r0(&mut self, op: BinOp) {
        self.em.e(Insn::mov64(Reg::R1, 0));
        self.arith(Operator::comparison(), op);
    }

    // ---- assignments ----

    /// Lowers `=`, `op=`, `++` and `--`; with `want`, the expression's value is left
    /// in R0 (for a string assignment, R0 is 0).
    fn assign_like(&mut self, e: &Expr, want: bool) {
        let (op, lhs, rhs, post): (Option<BinOp>, &Expr, Option<&Expr>, bool) = match &e.kind {
            ExprKind::Assign { op, lhs, rhs } => (*op, lhs, Some(rhs), false),
            ExprKind::IncDec { inc, prefix, expr } => (
                Some(if *inc { BinOp::Add } else { BinOp::Sub }),
                expr,
                None,
                !*prefix,
            ),
            _ => return,
        };
        let ty = self.env.info.expr_type(lhs).unwrap_or(Type::Long);
        if ty == Type::String {
            let Some(rhs) = rhs else { return };
            let target = self.str_place(lhs);
            let Some(target) = target else { return };
            match target {
                StrPlace::Slot(dst) => {
                    let v = if op == Some(BinOp::Concat) {
                        self.concat_exprs(lhs, rhs)
                    } else {
                        self.string(rhs)
                    };
                    self.copy_str(dst, v);
                }
                StrPlace::Elem { array, keys } => {
                    let v = if op == Some(BinOp::Concat) {
                        self.concat_exprs(lhs, rhs)
                    } else {
                        self.string(rhs)
                    };
                    let v = self.in_scratch(v);
                    self.store_elem(&array, keys, Some(v), None);
                }
            }
            self.em.e(Insn::mov64(Reg::R0, 0));
            return;
        }
        // The new value: `rhs`, `old op rhs`, or `old ± 1`.
        let rhs_val = |s: &mut Self| match rhs {
            Some(r) => s.long(r),
            None => s.em.e(Insn::mov64(Reg::R0, 1)),
        };
        match &lhs.kind {
            ExprKind::Var(id) => {
                let scalar = match self.slot(id) {
                    Some(Slot::Scalar { offset, .. }) => Some(offset),
                    _ => None,
                };
                let local = self.local(id);
                // Atomic add on a shared global: `x++`, `x += v`, `x -= v`.
                if let (Some(offset), Some(o @ (BinOp::Add | BinOp::Sub))) = (scalar, op) {
                    rhs_val(self);
                    if o == BinOp::Sub {
                        self.em.e(Insn::neg64(Reg::R0));
                    }
                    self.em.e(Insn::mov64(Reg::R2, Reg::R0));
                    self.em
                        .a
                        .ld_map_value(Reg::R1, self.env.storage.scalars, offset);
                    self.em.e(Insn::mov64(Reg::R0, Reg::R2));
                    if let Some(i) = Insn::atomic_fetch_add(Size::DW, Reg::R1, 0, Reg::R0) {
                        self.em.e(i);
                    }
                    // R0 = old value; the new one is old + delta.
                    if !post {
                        self.em.e(Insn::alu64(AluOp::Add, Reg::R0, Reg::R2));
                    }
                    return;
                }
                let cell = match (scalar, local) {
                    (Some(offset), _) => Cell::Global(offset),
                    (None, Some((at, _))) => Cell::Local(at),
                    _ => {
                        self.em.error(lhs.span, "cannot assign to this");
                        return;
                    }
                };
                rhs_val(self);
                match op {
                    None => self.cell(cell, Reg::R0, false),
                    Some(o) => {
                        self.em.e(Insn::mov64(Reg::R1, Reg::R0));
                        self.cell(cell, Reg::R0, true);
                        let old = self.em.alloc(8);
                        self.em.store(old, Reg::R0);
                        self.arith(Operator::compound(lhs, rhs), o);
                        self.cell(cell, Reg::R0, false);
                        if post {
                            self.em.load(Reg::R0, old);
                        }
                    }
                }
                let _ = want;
            }
            ExprKind::Index { array, keys } => {
                rhs_val(self);
                let v = self.em.alloc(8);
                self.em.store(v, Reg::R0);
                match op {
                    None => self.store_elem(array, keys, None, Some(v)),
                    Some(o) => {
                        self.update_elem(Operator::compound(lhs, rhs), array, keys, o, v, post)
                    }
                }
                if op.is_none() {
                    self.em.load(Reg::R0, v);
                }
            }
            ExprKind::Target(_) => self
                .em
                .error(lhs.span, "context variables cannot be assigned"),
            _ => self.em.error(lhs.span, "cannot assign to this"),
        }
    }

    /// Loads (`load`) or stores the long variable `c` from or to `r` (clobbers R5).
    fn cell(&mut self, c: Cell, r: Reg, load: bool) {
        match c {
            Cell::Global(offset) => {
                self.em
                    .a
                    .ld_map_value(Reg::R5, self.env.storage.scalars, offset);
                if load {
                    self.em.e(Insn::ldx(Size::DW, r, Reg::R5, 0));
                } else {
                    self.em.e(Insn::stx(Size::DW, Reg::R5, 0, r));
                }
            }
            Cell::Local(at) if load => self.em.load(r, at),
            Cell::Local(at) => self.em.store(at, r),
        }
    }

    /// `a[k] = v`: the value is the string `sv` or the long at `scratch[lv]`.
    fn store_elem(&mut self, array: &Ident, keys: &[Expr], sv: Option<u32>, lv: Option<u32>) {
        let Some(Slot::Array { map, keys: kt, .. }) = self.slot(array) else {
            self.em
                .error(array.span, format!("'{}' is not an array", array.name));
            return;
        };
        let key = self.key(keys, &kt);
        let val = sv.or(lv).unwrap_or(key);
        self.em.map_store(map, key, val);
    }

    /// `a[k] op= v`, `a[k]++`: in place when the element exists (atomically for
    /// `+`/`-`), else created from 0.
    fn update_elem(
        &mut self,
        at: Operator,
        array: &Ident,
        keys: &[Expr],
        op: BinOp,
        v: u32,
        post: bool,
    ) {
        let Some(Slot::Array { map, keys: kt, .. }) = self.slot(array) else {
            self.em
                .error(array.span, format!("'{}' is not an array", array.name));
            return;
        };
        let key = self.key(keys, &kt);
        let result = self.em.alloc(8);
        let found = self.em.a.label();
        let done = self.em.a.label();
        // Missing: created as 0 (another CPU may win the race; then update theirs).
        let zero = self.em.alloc(8);
        self.em.store_imm(zero, Size::DW, 0);
        self.em.map_slot(map, key, zero, found);
        self.em.store_imm(result, Size::DW, 0);
        self.em.a.ja(done);
        self.em.a.bind(found);
        self.em.e(Insn::mov64(Reg::R7, Reg::R0));
        if matches!(op, BinOp::Add | BinOp::Sub) {
            self.em.load(Reg::R1, v);
            if op == BinOp::Sub {
                self.em.e(Insn::neg64(Reg::R1));
            }
            self.em.e(Insn::mov64(Reg::R2, Reg::R1));
            if let Some(i) = Insn::atomic_fetch_add(Size::DW, Reg::R7, 0, Reg::R1) {
                self.em.e(i);
            }
            if !post {
                self.em.e(Insn::alu64(AluOp::Add, Reg::R1, Reg::R2));
            }
            self.em.store(result, Reg::R1);
        } else {
            self.em.e(Insn::ldx(Size::DW, Reg::R0, Reg::R7, 0));
            self.em.load(Reg::R1, v);
            self.arith(at, op);
            self.em.e(Insn::stx(Size::DW, Reg::R7, 0, Reg::R0));
            self.em.store(result, Reg::R0);
        }
        self.em.a.bind(done);
        self.em.load(Reg::R0, result);
    }

    // ---- statistics ----

    fn aggregate(&mut self, lhs: &Expr, rhs: &Expr) {
        let (name, keys): (&Ident, &[Expr]) = match &lhs.kind {
            ExprKind::Var(id) => (id, &[]),
            ExprKind::Index { array, keys } => (array, keys),
            _ => {
                self.em.error(lhs.span, "'<<<' needs a statistic");
                return;
            }
        };
        let Some(Slot::Stats {
            map,
            keys: kt,
            hist,
        }) = self.slot(name)
        else {
            self.em
                .error(lhs.span, format!("'{}' is not a statistic", name.name));
            return;
        };
        self.long(rhs);
        let v = self.em.alloc(8);
        self.em.store(v, Reg::R0);
        let key = if kt.is_empty() {
            let k = self.em.alloc(8);
            self.em.store_imm(k, Size::DW, 0);
            k
        } else {
            self.key(keys, &kt)
        };
        let found = self.em.a.label();
        let skip = self.em.a.label();
        // A new key: an empty slot (the scratch area's first bytes stay 0).
        self.em.map_slot(map, key, 0, found);
        self.em.a.ja(skip);
        self.em.a.bind(found);
        // R7 = slot, R1 = v, R2 = count. Per-CPU: no other writer, no atomics.
        self.em.e(Insn::mov64(Reg::R7, Reg::R0));
        self.em.load(Reg::R1, v);
        self.em.e(Insn::ldx(Size::DW, Reg::R2, Reg::R7, COUNT));
        let first = self.em.a.label();
        let counted = self.em.a.label();
        self.em.a.jmp(Cond::Eq, Reg::R2, 0, first);
        let no_min = self.em.a.label();
        self.em.e(Insn::ldx(Size::DW, Reg::R3, Reg::R7, MIN));
        self.em.a.jmp(Cond::Sge, Reg::R1, Reg::R3, no_min);
        self.em.e(Insn::stx(Size::DW, Reg::R7, MIN, Reg::R1));
        self.em.a.bind(no_min);
        let no_max = self.em.a.label();
        self.em.e(Insn::ldx(Size::DW, Reg::R3, Reg::R7, MAX));
        self.em.a.jmp(Cond::Sle, Reg::R1, Reg::R3, no_max);
        self.em.e(Insn::stx(Size::DW, Reg::R7, MAX, Reg::R1));
        self.em.a.bind(no_max);
        self.em.a.ja(counted);
        self.em.a.bind(first);
        self.em.e(Insn::stx(Size::DW, Reg::R7, MIN, Reg::R1));
        self.em.e(Insn::stx(Size::DW, Reg::R7, MAX, Reg::R1));
        self.em.a.bind(counted);
        self.em.e(Insn::alu64(AluOp::Add, Reg::R2, 1));
        self.em.e(Insn::stx(Size::DW, Reg::R7, COUNT, Reg::R2));
        self.em.e(Insn::ldx(Size::DW, Reg::R3, Reg::R7, SUM));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R1));
        self.em.e(Insn::stx(Size::DW, Reg::R7, SUM, Reg::R3));
        if hist != HistSpec::None {
            // R1 = v; R0 = the bucket.
            self.em.e(Insn::mov64(Reg::R0, Reg::R1));
            bucket(&mut self.em, hist);
            let last = hist_buckets(hist) as i32 - 1;
            let in_range = self.em.a.label();
            self.em.a.jmp(Cond::Le, Reg::R0, last, in_range);
            self.em.e(Insn::mov64(Reg::R0, last));
            self.em.a.bind(in_range);
            self.em.e(Insn::alu64(AluOp::Lsh, Reg::R0, 3));
            self.em.e(Insn::alu64(AluOp::Add, Reg::R0, Reg::R7));
            let o = (WORD_BUCKETS * 8) as i16;
            self.em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R0, o));
            self.em.e(Insn::alu64(AluOp::Add, Reg::R1, 1));
            self.em.e(Insn::stx(Size::DW, Reg::R0, o, Reg::R1));
        }
        self.em.a.bind(skip);
    }

    /// `@count(s)`, `@sum`, `@min`, `@max`, `@avg`: R0 = the value over every
    /// CPU's slot, read with `bpf_map_lookup_percpu_elem` (Linux 5.19) for each of
    /// [`crate::Options::possible_cpus`]. An empty aggregate reads as 0.
    fn stat_read(&mut self, e: &Expr, op: StatOp, arg: &Expr) {
        let (name, keys): (&Ident, &[Expr]) = match &arg.kind {
            ExprKind::Var(id) => (id, &[]),
            ExprKind::Index { array, keys } => (array, keys),
            _ => {
                self.em.error(arg.span, "a statistic is needed here");
                self.em.e(Insn::mov64(Reg::R0, 0));
                return;
            }
        };
        if !matches!(
            op,
            StatOp::Count | StatOp::Sum | StatOp::Min | StatOp::Max | StatOp::Avg
        ) {
            self.em.error(
                e.span,
                format!(
                    "'@{}' cannot be read in a kernel probe; read it in an 'end' or timer probe",
                    op.as_str()
                ),
            );
            self.em.e(Insn::mov64(Reg::R0, 0));
            return;
        }
        let Some(Slot::Stats { map, keys: kt, .. }) = self.slot(name) else {
            self.em
                .error(arg.span, format!("'{}' is not a statistic", name.name));
            self.em.e(Insn::mov64(Reg::R0, 0));
            return;
        };
        let key = if kt.is_empty() {
            let k = self.em.alloc(8);
            self.em.store_imm(k, Size::DW, 0);
            k
        } else {
            self.key(keys, &kt)
        };
        // acc: count, sum, min, max.
        let acc = self.em.alloc(32);
        for i in 0..4 {
            self.em.store_imm(acc + 8 * i, Size::DW, 0);
        }
        let next = self.em.a.label();
        let done = self.em.a.label();
        let top = self.cpu_slots(map, key, done);
        self.em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R0, COUNT));
        self.em.a.jmp(Cond::Eq, Reg::R1, 0, next);
        self.em.load(Reg::R2, acc);
        let first = self.em.a.label();
        let merged = self.em.a.label();
        self.em.a.jmp(Cond::Eq, Reg::R2, 0, first);
        let keep_min = self.em.a.label();
        self.em.e(Insn::ldx(Size::DW, Reg::R3, Reg::R0, MIN));
        self.em.load(Reg::R4, acc + 16);
        self.em.a.jmp(Cond::Sge, Reg::R3, Reg::R4, keep_min);
        self.em.store(acc + 16, Reg::R3);
        self.em.a.bind(keep_min);
        let keep_max = self.em.a.label();
        self.em.e(Insn::ldx(Size::DW, Reg::R3, Reg::R0, MAX));
        self.em.load(Reg::R4, acc + 24);
        self.em.a.jmp(Cond::Sle, Reg::R3, Reg::R4, keep_max);
        self.em.store(acc + 24, Reg::R3);
        self.em.a.bind(keep_max);
        self.em.a.ja(merged);
        self.em.a.bind(first);
        self.em.e(Insn::ldx(Size::DW, Reg::R3, Reg::R0, MIN));
        self.em.store(acc + 16, Reg::R3);
        self.em.e(Insn::ldx(Size::DW, Reg::R3, Reg::R0, MAX));
        self.em.store(acc + 24, Reg::R3);
        self.em.a.bind(merged);
        self.em.e(Insn::alu64(AluOp::Add, Reg::R2, Reg::R1));
        self.em.store(acc, Reg::R2);
        self.em.e(Insn::ldx(Size::DW, Reg::R3, Reg::R0, SUM));
        self.em.load(Reg::R4, acc + 8);
        self.em.e(Insn::alu64(AluOp::Add, Reg::R4, Reg::R3));
        self.em.store(acc + 8, Reg::R4);
        self.em.a.bind(next);
        self.next_cpu(top);
        self.em.a.bind(done);
        // Only @count is defined on an empty aggregate (stap's "empty aggregate").
        if op != StatOp::Count {
            let some = self.em.a.label();
            self.em.load(Reg::R1, acc);
            self.em.a.jmp(Cond::Ne, Reg::R1, 0, some);
            self.stop("empty aggregate", e.span);
            self.em.a.bind(some);
        }
        match op {
            StatOp::Count => self.em.load(Reg::R0, acc),
            StatOp::Sum => self.em.load(Reg::R0, acc + 8),
            StatOp::Min => self.em.load(Reg::R0, acc + 16),
            StatOp::Max => self.em.load(Reg::R0, acc + 24),
            _ => {
                self.em.load(Reg::R1, acc);
                self.em.load(Reg::R0, acc + 8);
                self.divide(
                    Operator {
                        place: e.span,
                        divisor_nonzero: true,
                    },
                    false,
                );
            }
        }
    }

    // ---- strings ----

    /// A string expression's value; literals and computed strings go to a fresh
    /// scratch slot, variables are used in place.
    pub fn string(&mut self, e: &Expr) -> Str {
        self.em.mark(e.span);
        match &e.kind {
            ExprKind::Str(s) => {
                let at = self.em.alloc(self.em.max_string());
                self.em.const_str(at, s.as_bytes());
                Str::Scratch(at)
            }
            ExprKind::Var(id) => {
                if let Some((at, _)) = self.local(id) {
                    return Str::Scratch(at);
                }
                match self.slot(id) {
                    Some(Slot::Scalar { offset, .. }) => Str::Global(offset),
                    _ => self.empty_str(),
                }
            }
            ExprKind::Index { array, keys } => {
                let Some(Slot::Array {
                    map,
                    keys: kt,
                    value: Type::String,
                }) = self.slot(array)
                else {
                    self.em.error(
                        e.span,
                        format!("'{}' is not an array of strings", array.name),
                    );
                    return self.empty_str();
                };
                let out = self.em.alloc(self.em.max_string());
                self.em.store_imm(out, Size::DW, 0);
                let key = self.key(keys, &kt);
                self.em.map_key_args(map, key);
                self.em.a.call(Helper::MapLookupElem);
                let done = self.em.a.label();
                self.em.a.jmp(Cond::Eq, Reg::R0, 0, done);
                self.em.e(Insn::mov64(Reg::R3, Reg::R0));
                self.em.addr(Reg::R1, out);
                self.em.e(Insn::mov64(Reg::R2, self.em.max_string() as i32));
                self.em.e(Insn::call(crate::emit::PROBE_READ_KERNEL_STR));
                self.em.a.bind(done);
                Str::Scratch(out)
            }
            ExprKind::Binary {
                op: BinOp::Concat,
                lhs,
                rhs,
            } => self.concat_exprs(lhs, rhs),
            ExprKind::Target(t) => self.target_string(e, t),
            ExprKind::Call { name, args } => self.call_string(e, name, args),
            ExprKind::Ternary { cond, then, els } => match self.static_cond(cond) {
                Some(true) => self.string(then),
                Some(false) => self.string(els),
                None => {
                    let out = self.em.alloc(self.em.max_string());
                    let else_l = self.em.a.label();
                    let done = self.em.a.label();
                    self.cond_jump_false(cond, else_l);
                    let a = self.string(then);
                    self.copy_str(Str::Scratch(out), a);
                    self.em.a.ja(done);
                    self.em.a.bind(else_l);
                    let b = self.string(els);
                    self.copy_str(Str::Scratch(out), b);
                    self.em.a.bind(done);
                    Str::Scratch(out)
                }
            },
            ExprKind::Assign { rhs, .. } => {
                self.assign_like(e, false);
                self.string(rhs)
            }
            ExprKind::ScriptArg { index, .. } => {
                self.em
                    .error(e.span, format!("script argument @{index} was not given"));
                self.empty_str()
            }
            ExprKind::Entry(_) => {
                let out = self.em.alloc(self.em.max_string());
                self.em.store_imm(out, Size::DW, 0);
                if let Some(off) = self.entry_value(e) {
                    let done = self.em.a.label();
                    self.em.a.jmp(Cond::Eq, Reg::R0, 0, done);
                    self.em.e(Insn::mov64(Reg::R3, Reg::R0));
                    self.em.e(Insn::alu64(AluOp::Add, Reg::R3, off as i32));
                    self.em.addr(Reg::R1, out);
                    self.em.e(Insn::mov64(Reg::R2, self.em.max_string() as i32));
                    self.em.e(Insn::call(crate::emit::PROBE_READ_KERNEL_STR));
                    self.em.a.bind(done);
                }
                Str::Scratch(out)
            }
            _ => {
                self.em.error(e.span, "this is not a string");
                self.empty_str()
            }
        }
    }

    pub fn empty_str(&mut self) -> Str {
        let at = self.em.alloc(self.em.max_string());
        self.em.store_imm(at, Size::DW, 0);
        Str::Scratch(at)
    }

    /// `reg = &string`.
    pub fn str_ptr(&mut self, reg: Reg, s: Str) {
        match s {
            Str::Scratch(at) => self.em.addr(reg, at),
            Str::Global(off) => {
                self.em.a.ld_map_value(reg, self.env.storage.scalars, off);
            }
        }
    }

    /// Copies a string; R0 = its length with the NUL. Clobbers R0–R5.
    pub fn copy_str(&mut self, dst: Str, src: Str) {
        if dst == src {
            return;
        }
        self.str_ptr(Reg::R3, src);
        self.str_ptr(Reg::R1, dst);
        self.em.e(Insn::mov64(Reg::R2, self.em.max_string() as i32));
        self.em.e(Insn::call(crate::emit::PROBE_READ_KERNEL_STR));
    }

    /// The string in a scratch slot (copied there if it is a global).
    pub fn in_scratch(&mut self, s: Str) -> u32 {
        match s {
            Str::Scratch(at) => at,
            Str::Global(_) => {
                let at = self.em.alloc(self.em.max_string());
                self.copy_str(Str::Scratch(at), s);
                at
            }
        }
    }

    fn concat_exprs(&mut self, lhs: &Expr, rhs: &Expr) -> Str {
        let out = self.em.alloc(self.em.max_string());
        let a = self.string(lhs);
        self.copy_str(Str::Scratch(out), a);
        let b = self.string(rhs);
        self.append(out, b);
        Str::Scratch(out)
    }

    /// Appends `src` to the string at `scratch[dst]`, cutting at `MAX_STRING - 1`.
    pub fn append(&mut self, dst: u32, src: Str) {
        self.str_ptr(Reg::R8, src);
        self.append_r8(dst);
    }

    /// Appends the string R8 points to (kernel memory) to `scratch[dst]`.
    pub fn append_r8(&mut self, dst: u32) {
        self.strlen_reg(dst);
        // R0 = length (0..=127). Copy to dst + len, at most 128 - len bytes.
        self.em.e(Insn::mov64(Reg::R7, Reg::R0));
        self.em.e(Insn::mov64(Reg::R3, Reg::R8));
        self.em.addr(Reg::R1, dst);
        self.em.e(Insn::alu64(AluOp::Add, Reg::R1, Reg::R7));
        self.em.e(Insn::mov64(Reg::R2, self.em.max_string() as i32));
        self.em.e(Insn::alu64(AluOp::Sub, Reg::R2, Reg::R7));
        self.em.e(Insn::call(crate::emit::PROBE_READ_KERNEL_STR));
    }

    /// R0 = the length of the string at `scratch[at]` (0..=127), found by copying it
    /// to a throwaway slot. Clobbers R0–R5.
    pub fn strlen_reg(&mut self, at: u32) {
        let tmp = self.em.alloc(self.em.max_string());
        self.em.addr(Reg::R3, at);
        self.em.addr(Reg::R1, tmp);
        self.em.e(Insn::mov64(Reg::R2, self.em.max_string() as i32));
        self.em.e(Insn::call(crate::emit::PROBE_READ_KERNEL_STR));
        self.em.release(tmp);
        let pos = self.em.a.label();
        self.em.a.jmp(Cond::Sgt, Reg::R0, 0, pos);
        self.em.e(Insn::mov64(Reg::R0, 1));
        self.em.a.bind(pos);
        self.em.e(Insn::alu64(AluOp::Sub, Reg::R0, 1));
        // Bounds the verifier can see: 0..=127.
        self.em.e(Insn::alu64(
            AluOp::And,
            Reg::R0,
            (self.em.max_string() - 1) as i32,
        ));
    }

    /// R0 = the sign of `a - b` comparing bytes as unsigned (`strcmp`).
    fn strcmp(&mut self, a: u32, b: u32) {
        // R8 = index (a register the verifier tracks), R0 = result.
        let top = self.em.a.label();
        let done = self.em.a.label();
        let differ = self.em.a.label();
        self.em.e(Insn::mov64(Reg::R8, 0));
        self.em.a.bind(top);
        self.em.e(Insn::mov64(Reg::R1, SCRATCH));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R1, Reg::R8));
        let (oa, ob) = (self.em.off(a), self.em.off(b));
        self.em.e(Insn::ldx(Size::B, Reg::R2, Reg::R1, oa));
        self.em.e(Insn::ldx(Size::B, Reg::R3, Reg::R1, ob));
        self.em.a.jmp(Cond::Ne, Reg::R2, Reg::R3, differ);
        self.em.e(Insn::mov64(Reg::R0, 0));
        self.em.a.jmp(Cond::Eq, Reg::R2, 0, done);
        self.em.e(Insn::alu64(AluOp::Add, Reg::R8, 1));
        self.em
            .a
            .jmp(Cond::Lt, Reg::R8, self.em.max_string() as i32, top);
        self.em.a.ja(done);
        self.em.a.bind(differ);
        self.em.e(Insn::mov64(Reg::R0, Reg::R2));
        self.em.e(Insn::alu64(AluOp::Sub, Reg::R0, Reg::R3));
        self.em.a.bind(done);
    }

    /// Where a string assignment stores.
    fn str_place<'e>(&mut self, lhs: &'e Expr) -> Option<StrPlace<'e>> {
        match &lhs.kind {
            ExprKind::Var(id) => {
                if let Some((at, _)) = self.local(id) {
                    return Some(StrPlace::Slot(Str::Scratch(at)));
                }
                match self.slot(id) {
                    Some(Slot::Scalar { offset, .. }) => Some(StrPlace::Slot(Str::Global(offset))),
                    _ => {
                        self.em.error(lhs.span, "cannot assign to this");
                        None
                    }
                }
            }
            ExprKind::Index { array, keys } => Some(StrPlace::Elem {
                array: array.clone(),
                keys,
            }),
            _ => {
                self.em.error(lhs.span, "cannot assign to this");
                None
            }
        }
    }

    // ---- calls ----

    /// A call in a `long` (or no-value) context; R0 holds a long value.
    fn call(&mut self, e: &Expr, name: &Ident, args: &[Expr]) {
        match self.env.info.callee(e) {
            Some(Callee::Function(_)) => {
                if let Some((at, Type::Long)) = self.inline(e, name, args) {
                    self.em.load(Reg::R0, at);
                }
            }
            Some(Callee::Builtin(id)) => {
                // A string in a long context: its value is not a number.
                if let crate::builtins::Value::Str(_) = crate::builtins::call(self, e, id, args) {
                    self.em.e(Insn::mov64(Reg::R0, 0));
                }
            }
            None => self.unresolved(e, name),
        }
    }

    fn call_string(&mut self, e: &Expr, name: &Ident, args: &[Expr]) -> Str {
        match self.env.info.callee(e) {
            Some(Callee::Function(_)) => match self.inline(e, name, args) {
                Some((at, Type::String)) => Str::Scratch(at),
                _ => self.empty_str(),
            },
            Some(Callee::Builtin(id)) => match crate::builtins::call(self, e, id, args) {
                crate::builtins::Value::Str(s) => s,
                _ => self.empty_str(),
            },
            None => {
                self.unresolved(e, name);
                self.empty_str()
            }
        }
    }

    fn unresolved(&mut self, e: &Expr, name: &Ident) {
        self.em.error(
            e.span,
            format!(
                "internal error: the call of '{}' was not resolved",
                name.name
            ),
        );
        self.em.e(Insn::mov64(Reg::R0, 0));
    }

    /// Inlines a script function at its call; returns the result's slot.
    fn inline(&mut self, e: &Expr, name: &Ident, args: &[Expr]) -> Option<(u32, Type)> {
        let fi = self.env.info.called_function(e)?.clone();
        if self.fns.iter().any(|f| f.name == name.name)
            || self.fns.len() >= lang::backend::MAX_INLINED_CALLS
        {
            self.em.error(
                e.span,
                format!(
                    "internal error: the checker let '{}' be inlined recursively or too deep",
                    name.name
                ),
            );
            return None;
        }
        let Some(Item::Function(func)) = self.env.script.items.get(fi.item) else {
            return None;
        };
        // Arguments are evaluated in the caller's scope, into the callee's slots.
        let mut scope = HashMap::new();
        let mut slots = Vec::new();
        for v in &fi.locals {
            let ty = v.ty.unwrap_or(Type::Long);
            let at = self.em.alloc(self.em.storage.width(ty));
            slots.push((at, ty));
            scope.insert(v.name.clone(), (at, ty));
        }
        for (i, (at, ty)) in slots.iter().enumerate() {
            match args.get(i).filter(|_| i < fi.params.len()) {
                Some(a) if *ty == Type::String => {
                    let s = self.string(a);
                    self.copy_str(Str::Scratch(*at), s);
                }
                Some(a) => {
                    self.long(a);
                    self.em.store(*at, Reg::R0);
                }
                None => self.em.store_imm(*at, Size::DW, 0),
            }
        }
        let ret_slot = fi.ret.map(|t| {
            let at = self.em.alloc(self.em.storage.width(t));
            self.em.store_imm(at, Size::DW, 0);
            (at, t)
        });
        let ret = self.em.a.label();
        self.scopes.push(scope);
        self.fns.push(FnFrame {
            name: name.name.clone(),
            call: name.span,
            ret,
            slot: ret_slot,
        });
        let loops = std::mem::take(&mut self.loops);
        self.block(&func.body);
        self.loops = loops;
        self.fns.pop();
        self.scopes.pop();
        self.em.a.bind(ret);
        ret_slot
    }

    // ---- records ----

    /// `printf(fmt, args…)`: a record of the values, formatted in user space with the
    /// format the checker parsed. A `%m`/`%M` argument is an address whose bytes are
    /// read here and sent.
    pub fn printf_call(&mut self, e: &Expr, args: &[Expr]) {
        let (Some(format), Some((fmt, rest))) = (self.env.info.format(e), args.split_first())
        else {
            self.em.error(e.span, "internal error: an unchecked format");
            return;
        };
        let ExprKind::Str(text) = &fmt.kind else {
            return;
        };
        // The bytes each argument dumps, for those that are memory.
        let mut dumps = Vec::new();
        for c in format.conversions() {
            for count in [c.width, c.precision] {
                if count == lang::format::Count::Dynamic {
                    dumps.push(None);
                }
            }
            dumps.push(match c.value_kind() {
                lang::format::ArgKind::Memory => c.memory_len(),
                _ => None,
            });
        }
        let rest: Vec<&Expr> = rest.iter().collect();
        self.record(text.as_bytes().to_vec(), &rest, &dumps);
    }

    /// Sends a printf record: `format` and its arguments.
    pub fn printf(&mut self, format: Vec<u8>, args: &[&Expr]) {
        self.record(format, args, &[]);
    }

    /// A printf record; `dumps[i]` is the length of a memory dump for argument `i`.
    fn record(&mut self, format: Vec<u8>, args: &[&Expr], dumps: &[Option<usize>]) {
        enum Arg {
            Long,
            Str,
            Memory(u32),
            Value(Box<crate::pretty::Planned>),
            Stack,
        }
        let kinds: Vec<Arg> = args
            .iter()
            .enumerate()
            .map(|(i, a)| match dumps.get(i).copied().flatten() {
                Some(n) => Arg::Memory(n as u32),
                None if lang::check::is_pretty(a) => match self.plan_value(a) {
                    Some(p) => Arg::Value(Box::new(p)),
                    None => Arg::Long,
                },
                None => match self.env.info.expr_type(a) {
                    Some(Type::String) => Arg::Str,
                    Some(Type::Stack) => Arg::Stack,
                    _ => Arg::Long,
                },
            })
            .collect();
        let mut fields = Vec::new();
        let mut size = 0u32;
        for k in &kinds {
            let (kind, bytes) = match k {
                Arg::Str => (
                    FieldKind::Str {
                        len: self.em.max_string(),
                    },
                    self.em.max_string(),
                ),
                Arg::Memory(n) => (FieldKind::Str { len: *n }, n.div_ceil(8) * 8),
                Arg::Long => (FieldKind::Long, 8),
                Arg::Value(p) => {
                    let shape = (self.value_base + self.values.len()) as u32;
                    self.values.push(p.shape.clone());
                    let len = p.shape.len;
                    (FieldKind::Value { len, shape }, len)
                }
                Arg::Stack => (FieldKind::Stack, 8),
            };
            fields.push(Field { offset: size, kind });
            size += bytes;
        }
        let id = add_event(
            self.events,
            self.events_from,
            EventSpec::Printf {
                format,
                args: fields.clone(),
            },
        );
        // The goroutine that prints, after the fields, for the exported logs.
        let goid_at = (self.env.opts.goids && self.env.target.layout().is_some()).then(|| {
            let at = EVENT_HEADER + size.div_ceil(8) * 8;
            size = size.div_ceil(8) * 8 + 8;
            at
        });
        let rec = self.em.alloc(EVENT_HEADER + size);
        for ((a, k), f) in args.iter().zip(&kinds).zip(&fields) {
            let at = rec + EVENT_HEADER + f.offset;
            match k {
                Arg::Str => {
                    let s = self.string(a);
                    self.copy_str(Str::Scratch(at), s);
                }
                Arg::Long | Arg::Stack => {
                    self.long(a);
                    self.em.store(at, Reg::R0);
                }
                Arg::Memory(n) => {
                    self.long(a);
                    self.em.e(Insn::mov64(Reg::R7, Reg::R0));
                    self.em.read_user(at, *n as i32, Reg::R7);
                }
                Arg::Value(p) => self.emit_value(a, p, at),
            }
        }
        if let Some(at) = goid_at {
            crate::builtins::goid(self);
            self.em.store(rec + at, Reg::R0);
            self.goids.push((id, at));
        }
        self.em.header(rec, id);
        self.em.output(rec, EVENT_HEADER + size);
        // The record is sent: its scratch (and what evaluating it took) is free.
        self.em.release(rec);
    }
}

/// Where a binary operator is, for its error, and whether its right side is a number
/// written in the script other than 0 (a division that cannot fail).
#[derive(Clone, Copy)]
struct Operator {
    place: Span,
    divisor_nonzero: bool,
}

impl Operator {
    /// The operator between `lhs` and `rhs` (`a / b`).
    fn of(lhs: &Expr, rhs: &Expr) -> Operator {
        Operator {
            place: lang::stop::operator_place(lhs.span, rhs.span),
            divisor_nonzero: matches!(rhs.kind, ExprKind::Num(n) if n != 0),
        }
    }

    /// `x /= v`: the operator is between the place and the value, as for `x / v`;
    /// `x++` has no value and does not divide.
    fn compound(lhs: &Expr, rhs: Option<&Expr>) -> Operator {
        match rhs {
            Some(r) => Operator::of(lhs, r),
            None => Operator {
                place: lhs.span,
                divisor_nonzero: true,
            },
        }
    }

    /// A comparison made by the code itself, which cannot fail.
    fn comparison() -> Operator {
        Operator {
            place: Span::default(),
            divisor_nonzero: true,
        }
    }
}

/// Where a `foreach` callback's context is on the probe's stack.
struct ForeachFrame {
    /// The lowest of its words.
    base: i16,
    /// The callback's own slot for the pointer to them.
    own: i16,
}

impl ForeachFrame {
    const SCRATCH: i16 = 0;
    const CTX: i16 = 8;
    const HIT: i16 = 16;
    const STOP: i16 = 24;
    const COUNT: i16 = 32;
    const LIMIT: i16 = 40;
}

/// A scalar `long` variable: a global's offset in the scalars map, or a local's slot.
#[derive(Clone, Copy)]
enum Cell {
    Global(u32),
    Local(u32),
}

enum StrPlace<'e> {
    Slot(Str),
    Elem { array: Ident, keys: &'e [Expr] },
}

/// R0 = the histogram bucket of the value in R0 (the bucket math of
/// `runtime::stats`). Clobbers R1–R3.
pub fn bucket(em: &mut Emitter<'_>, hist: HistSpec) {
    match hist {
        HistSpec::None => {}
        HistSpec::Log => {
            // 0 → 64; else 64 ± (bits of |v|).
            let nonzero = em.a.label();
            let done = em.a.label();
            em.a.jmp(Cond::Ne, Reg::R0, 0, nonzero);
            em.e(Insn::mov64(Reg::R0, LOG_BUCKET_ZERO as i32));
            em.a.ja(done);
            em.a.bind(nonzero);
            em.e(Insn::mov64(Reg::R3, Reg::R0)); // sign
            let pos = em.a.label();
            em.a.jmp(Cond::Sge, Reg::R0, 0, pos);
            em.e(Insn::neg64(Reg::R0));
            em.a.bind(pos);
            // R1 = floor(log2 |v|) by halving search; |i64::MIN| stays 1 << 63.
            em.e(Insn::mov64(Reg::R1, 0));
            for shift in [32, 16, 8, 4, 2, 1] {
                let small = em.a.label();
                em.e(Insn::mov64(Reg::R2, Reg::R0));
                em.e(Insn::alu64(AluOp::Rsh, Reg::R2, shift));
                em.a.jmp(Cond::Eq, Reg::R2, 0, small);
                em.e(Insn::mov64(Reg::R0, Reg::R2));
                em.e(Insn::alu64(AluOp::Add, Reg::R1, shift));
                em.a.bind(small);
            }
            em.e(Insn::alu64(AluOp::Add, Reg::R1, 1)); // bits
            let neg = em.a.label();
            em.a.jmp(Cond::Slt, Reg::R3, 0, neg);
            em.e(Insn::mov64(Reg::R0, LOG_BUCKET_ZERO as i32));
            em.e(Insn::alu64(AluOp::Add, Reg::R0, Reg::R1));
            em.a.ja(done);
            em.a.bind(neg);
            em.e(Insn::mov64(Reg::R0, LOG_BUCKET_ZERO as i32));
            em.e(Insn::alu64(AluOp::Sub, Reg::R0, Reg::R1));
            em.a.bind(done);
        }
        HistSpec::Linear {
            start,
            stop: _,
            interval,
        } => {
            let last = i64::from(hist_buckets(hist)) - 1;
            let under = em.a.label();
            let done = em.a.label();
            em.imm(Reg::R1, start);
            em.e(Insn::alu64(AluOp::Sub, Reg::R0, Reg::R1));
            em.a.jmp(Cond::Slt, Reg::R0, 0, under);
            em.imm(Reg::R1, interval.max(1));
            em.e(Insn::alu64(AluOp::Div, Reg::R0, Reg::R1));
            em.e(Insn::alu64(AluOp::Add, Reg::R0, 1));
            em.imm(Reg::R1, last);
            em.a.jmp(Cond::Lt, Reg::R0, Reg::R1, done);
            em.e(Insn::mov64(Reg::R0, Reg::R1));
            em.a.ja(done);
            em.a.bind(under);
            em.e(Insn::mov64(Reg::R0, 0));
            em.a.bind(done);
        }
    }
}

/// Key of the stack slot used by helpers (exported for the other passes).
pub const _KEY: i16 = KEY_SLOT;

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket the emitted code picks for `v`, run in rbpf (a user-space eBPF
    /// interpreter): the program reads `v` from its memory and returns the bucket.
    fn emitted_bucket(hist: HistSpec, values: &[i64]) -> Vec<usize> {
        let storage = crate::storage::layout(
            &lang::ast::Script::default(),
            &lang::TypeInfo::default(),
            &mut Vec::new(),
        );
        let mut em = Emitter::new(&storage);
        em.e(Insn::ldx(Size::DW, Reg::R0, Reg::R1, 0));
        bucket(&mut em, hist);
        em.a.exit();
        let program = std::mem::take(&mut em.a).finish().expect("assembles");
        let bytes = Insn::encode_all(&program.insns);
        let vm = rbpf::EbpfVmRaw::new(Some(&bytes)).expect("loads");
        values
            .iter()
            .map(|v| {
                let mut mem = v.to_le_bytes().to_vec();
                vm.execute_program(&mut mem).expect("runs") as usize
            })
            .collect()
    }

    /// Values at and around every power of two, both signs, and the extremes.
    fn edges() -> Vec<i64> {
        let mut v = vec![0, i64::MIN, i64::MAX, i64::MIN + 1];
        for k in 0..63 {
            let p = 1i64 << k;
            v.extend([p - 1, p, p + 1, -p - 1, -p, -p + 1]);
        }
        v
    }

    #[test]
    fn log_buckets_are_the_rule_of_bpf_stats() {
        let values = edges();
        let want: Vec<usize> = values
            .iter()
            .map(|&v| bpf::stats::bucket(HistSpec::Log, v).unwrap())
            .collect();
        assert_eq!(emitted_bucket(HistSpec::Log, &values), want);
    }

    #[test]
    fn linear_buckets_are_the_rule_of_bpf_stats() {
        let values = edges();
        for hist in [
            HistSpec::Linear {
                start: 0,
                stop: 10,
                interval: 2,
            },
            HistSpec::Linear {
                start: -1000,
                stop: 1000,
                interval: 100,
            },
            HistSpec::Linear {
                start: i64::MIN / 2,
                stop: i64::MAX / 2,
                interval: i64::MAX / 64,
            },
        ] {
            let want: Vec<usize> = values
                .iter()
                .map(|&v| bpf::stats::bucket(hist, v).unwrap())
                .collect();
            assert_eq!(emitted_bucket(hist, &values), want, "{hist:?}");
        }
    }
}
