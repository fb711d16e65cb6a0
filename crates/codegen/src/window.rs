//! Reads of one struct coalesced into one. Every read of target memory is a
//! `bpf_probe_read_user` call, and the call, not the bytes, is what costs: on the
//! machines we measured one costs 150–200 ns whether it copies 8 bytes or 64. A
//! probe often reads several fields of one struct through the same pointer — the
//! tapset's `go.stack.grow` reads `stack.lo`, `stack.hi` and `sched.pc` of one
//! `runtime.g` — so before a probe body is lowered, the reads it makes at constant
//! offsets from one `@cast(BASE, "T")` are gathered, and those close together become
//! a window: the first of them to run reads the whole window into scratch, the others
//! load from there.
//!
//! The window is kept with the pointer it was read from, and a read whose pointer
//! differs (a base variable assigned again, a loop walking a list) reads it afresh,
//! so the reuse is right under any control flow; the pointer is forgotten at the
//! start of every hit. A window spans the struct's bytes from the first field read
//! to the end of the last, so it reaches no memory outside the struct the probe
//! reads; if its read faults, its fields read as 0 and the fault is counted once.

use bpf::script::counter;
use bpf::{AluOp, Cond, Helper, Insn, Reg, Size};
use lang::GoKind;
use lang::GoType;
use lang::ast::{Block, Expr, ExprKind, PathElem, TargetBase, TargetExpr, walk_expr, walk_stmt};

use crate::lower::Lower;

/// The widest window: copying more bytes in one read costs little, but a window
/// stretched over fields far apart would copy mostly bytes no one reads.
const WINDOW_MAX: u64 = 256;

/// One window: bytes `[lo, hi)` of the struct at a base named by `key`.
#[derive(Clone, Debug)]
pub struct Window {
    key: String,
    lo: u64,
    hi: u64,
    /// Scratch offset of the copy, and of the pointer it was read from (0: none yet).
    data: u32,
    base: u32,
}

/// A read the path of a context expression makes at a constant offset from its
/// `@cast` base: the first pointer it follows, or (`read_end`) the value it ends at.
pub struct FirstRead {
    pub offset: u64,
    pub size: u64,
}

/// The group a `@cast` base belongs to: the same pure expression (a variable or a
/// `register("…")`) and the same type. The pointer is still compared when the code
/// runs, so two bases that look alike but differ in value are told apart there.
fn key(info: &lang::TypeInfo, t: &TargetExpr) -> Option<String> {
    let TargetBase::Cast { addr, ty, module } = &t.base else {
        return None;
    };
    let base = match &addr.kind {
        ExprKind::Var(id) => format!("var {}", id.name),
        ExprKind::Call { args, .. }
            if info.callee(addr) == Some(lang::Callee::Builtin(lang::BuiltinId::Register)) =>
        {
            match &args[..] {
                [
                    Expr {
                        kind: ExprKind::Str(r),
                        ..
                    },
                ] => format!("register {r}"),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(format!(
        "{base} as {ty} in {}",
        module.as_deref().unwrap_or("")
    ))
}

impl Lower<'_, '_> {
    /// The read `t`'s path makes first at a constant offset from its `@cast` base,
    /// if it makes one: following a pointer field, or (`read_end`) reading the
    /// scalar the path ends at. Paths with an index are left alone.
    pub(crate) fn first_read(&self, t: &TargetExpr, read_end: bool) -> Option<FirstRead> {
        let TargetBase::Cast { ty, .. } = &t.base else {
            return None;
        };
        let mut ty: GoType = self.env.target.named_type(ty).ok()?;
        let mut offset = 0u64;
        for p in &t.path {
            let PathElem::Field(f) = p else { return None };
            let m = self.env.target.member_access(&ty, &f.name).ok()?;
            if m.deref {
                return Some(FirstRead { offset, size: 8 });
            }
            offset += m.offset;
            ty = m.ty;
        }
        // What `target_long` reads: a value of 1, 2, 4 or 8 bytes.
        let scalar = matches!(ty.size, 1 | 2 | 4 | 8)
            && !matches!(
                ty.kind,
                GoKind::String
                    | GoKind::Struct
                    | GoKind::Array { .. }
                    | GoKind::Interface
                    | GoKind::Slice
                    | GoKind::Complex
            );
        (read_end && scalar && !t.path.is_empty()).then_some(FirstRead {
            offset,
            size: ty.size,
        })
    }

    /// Gathers the reads of `bodies` (an alias's body and the probe's, lowered in
    /// one program) and sets up their windows. Called once per program, after the
    /// locals are placed.
    pub fn plan_windows(&mut self, bodies: &[&Block]) {
        // Context expressions under `@entry` are read by the entry program, and
        // `&x->f` reads nothing at its end.
        let mut skip = Vec::new();
        let mut addr_of = Vec::new();
        let mut targets: Vec<(&TargetExpr, bool)> = Vec::new();
        for b in bodies {
            for s in &b.stmts {
                walk_stmt(s, &mut |e: &Expr| match &e.kind {
                    ExprKind::Entry(x) => walk_expr(x, &mut |i: &Expr| skip.push(i.id)),
                    ExprKind::AddrOf(x) => addr_of.push(x.id),
                    _ => {}
                });
                // A pretty-printed value is read whole by its own plan.
                walk_stmt(s, &mut |e: &Expr| {
                    if let ExprKind::Target(t) = &e.kind
                        && !skip.contains(&e.id)
                        && t.pretty == lang::ast::Pretty::None
                    {
                        targets.push((t, !addr_of.contains(&e.id)));
                    }
                });
            }
        }
        self.plan(&targets);
    }

    /// The same for the expressions an entry program evaluates (`@entry`'s insides).
    pub fn plan_windows_of(&mut self, exprs: &[&Expr]) {
        let mut addr_of = Vec::new();
        let mut targets: Vec<(&TargetExpr, bool)> = Vec::new();
        for x in exprs {
            walk_expr(x, &mut |e: &Expr| {
                if let ExprKind::AddrOf(x) = &e.kind {
                    addr_of.push(x.id);
                }
            });
            walk_expr(x, &mut |e: &Expr| {
                if let ExprKind::Target(t) = &e.kind {
                    targets.push((t, !addr_of.contains(&e.id)));
                }
            });
        }
        self.plan(&targets);
    }

    /// A window for each run of two or more reads of one base that fits in
    /// [`WINDOW_MAX`] bytes; `targets` are the context expressions with whether
    /// their value is read.
    fn plan(&mut self, targets: &[(&TargetExpr, bool)]) {
        let mut reads: Vec<(String, u64, u64)> = Vec::new();
        for (t, end) in targets {
            if let (Some(k), Some(r)) = (key(self.env.info, t), self.first_read(t, *end)) {
                reads.push((k, r.offset, r.offset + r.size));
            }
        }
        reads.sort();
        let mut i = 0;
        while i < reads.len() {
            let (k, lo, mut hi) = reads[i].clone();
            let mut j = i + 1;
            while j < reads.len() && reads[j].0 == k && reads[j].2 - lo <= WINDOW_MAX {
                hi = hi.max(reads[j].2);
                j += 1;
            }
            if j - i >= 2 {
                let base = self.em.alloc(8);
                self.em.store_imm(base, Size::DW, 0);
                let data = self.em.alloc((hi - lo) as u32);
                self.windows.push(Window {
                    key: k,
                    lo,
                    hi,
                    data,
                    base,
                });
            }
            i = j;
        }
    }

    /// For a context expression whose base pointer is in R7: when its first read
    /// falls in a window, makes sure the window holds the bytes at that pointer
    /// (reading them unless it already does) and returns the window. Clobbers
    /// R0–R5.
    pub(crate) fn window_for(&mut self, t: &TargetExpr, read_end: bool) -> Option<Window> {
        let k = key(self.env.info, t)?;
        let r = self.first_read(t, read_end)?;
        let w = self
            .windows
            .iter()
            .find(|w| w.key == k && w.lo <= r.offset && r.offset + r.size <= w.hi)?
            .clone();
        let read = self.em.a.label();
        let have = self.em.a.label();
        self.em.load(Reg::R1, w.base);
        self.em.a.jmp(Cond::Eq, Reg::R7, 0, read);
        self.em.a.jmp(Cond::Eq, Reg::R1, Reg::R7, have);
        self.em.a.bind(read);
        self.em.store(w.base, Reg::R7);
        self.em.e(Insn::mov64(Reg::R3, Reg::R7));
        if w.lo != 0 {
            self.em.imm(Reg::R4, w.lo as i64);
            self.em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R4));
        }
        self.em.addr(Reg::R1, w.data);
        self.em.e(Insn::mov64(Reg::R2, (w.hi - w.lo) as i32));
        self.em.a.call(Helper::ProbeReadUser);
        self.em.a.jmp(Cond::Eq, Reg::R0, 0, have);
        self.em.count(counter::READ_FAULTS);
        self.em.a.bind(have);
        Some(w)
    }
}

impl Window {
    /// The scratch offset of the struct's byte `offset` (inside the window).
    pub fn at(&self, offset: u64) -> u32 {
        self.data + (offset - self.lo) as u32
    }
}
