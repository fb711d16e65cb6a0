//! Context expressions (`$x->f[i]`, `@cast(p, "runtime.g")->m`, `&$x->f`) lowered at
//! one probe address. A value is followed through three kinds of places: in the
//! target's memory at an address kept in R7, held whole in R7 (a register variable, a
//! pointer just loaded), or assembled in scratch from the pieces DWARF scatters a
//! composite over (a string whose pointer and length sit in two registers). Every
//! read of target memory is a `bpf_probe_read_user`; faults read as 0 and are counted.

use bpf::{AluOp, Cond, Helper, Insn, Reg, Size, X86Reg};
use gobin::dwarf::{Address, DwarfReg, Place, Value};
use lang::GoKind;
use lang::GoType;
use lang::ast::{Expr, PathElem, Pretty, TargetBase, TargetExpr};

use crate::builtins::{sign_extend, zero_extend};
use crate::lower::{Lower, Str};
use crate::pretty::RootAt;
use crate::target::{IndexAccess, VarPlace};

fn root_at(at: At) -> RootAt {
    match at {
        At::User => RootAt::Memory,
        At::Value => RootAt::Register,
        At::Kern(o) => RootAt::Scratch(o),
    }
}

/// R0 = the `float64` bits of the `float32` bits in R0 (IEEE 754: the exponent
/// rebiased, the fraction widened; a subnormal `float32` is normalised, since every
/// one is a normal `float64`). Clobbers R1–R3.
fn f32_to_f64_bits(em: &mut crate::emit::Emitter<'_>) {
    let done = em.a.label();
    let normal = em.a.label();
    let special = em.a.label();
    // R1 = sign << 63, R2 = exponent, R0 = fraction.
    em.e(Insn::mov64(Reg::R1, Reg::R0));
    em.e(Insn::alu64(AluOp::Rsh, Reg::R1, 31));
    em.e(Insn::alu64(AluOp::Lsh, Reg::R1, 63));
    em.e(Insn::mov64(Reg::R2, Reg::R0));
    em.e(Insn::alu64(AluOp::Rsh, Reg::R2, 23));
    em.e(Insn::alu64(AluOp::And, Reg::R2, 0xff));
    em.e(Insn::alu64(AluOp::And, Reg::R0, 0x7f_ffff));
    em.a.jmp(Cond::Eq, Reg::R2, 0xff, special);
    em.a.jmp(Cond::Ne, Reg::R2, 0, normal);
    // Zero, or subnormal: shift the fraction up to its leading one.
    let zero = em.a.label();
    em.a.jmp(Cond::Eq, Reg::R0, 0, zero);
    em.e(Insn::mov64(Reg::R3, 0));
    for step in [16, 8, 4, 2, 1] {
        let next = em.a.label();
        em.e(Insn::mov64(Reg::R2, Reg::R0));
        em.e(Insn::alu64(AluOp::Rsh, Reg::R2, 24 - step));
        em.a.jmp(Cond::Ne, Reg::R2, 0, next);
        em.e(Insn::alu64(AluOp::Lsh, Reg::R0, step));
        em.e(Insn::alu64(AluOp::Add, Reg::R3, step));
        em.a.bind(next);
    }
    // The value is 1.f × 2^(-126 - shift): exponent 1023 - 126 - shift.
    em.e(Insn::alu64(AluOp::And, Reg::R0, 0x7f_ffff));
    em.e(Insn::alu64(AluOp::Lsh, Reg::R0, 29));
    em.e(Insn::mov64(Reg::R2, 1023 - 126));
    em.e(Insn::alu64(AluOp::Sub, Reg::R2, Reg::R3));
    em.e(Insn::alu64(AluOp::Lsh, Reg::R2, 52));
    em.e(Insn::alu64(AluOp::Or, Reg::R0, Reg::R2));
    em.e(Insn::alu64(AluOp::Or, Reg::R0, Reg::R1));
    em.a.ja(done);
    em.a.bind(zero);
    em.e(Insn::mov64(Reg::R0, Reg::R1));
    em.a.ja(done);
    // Infinities and NaNs keep their fraction's high bits.
    let assemble = em.a.label();
    em.a.bind(special);
    em.e(Insn::mov64(Reg::R2, 0x7ff));
    em.a.ja(assemble);
    em.a.bind(normal);
    em.e(Insn::alu64(AluOp::Add, Reg::R2, 1023 - 127));
    em.a.bind(assemble);
    em.e(Insn::alu64(AluOp::Lsh, Reg::R0, 29));
    em.e(Insn::alu64(AluOp::Lsh, Reg::R2, 52));
    em.e(Insn::alu64(AluOp::Or, Reg::R0, Reg::R2));
    em.e(Insn::alu64(AluOp::Or, Reg::R0, Reg::R1));
    em.a.bind(done);
}

/// Where the value being followed is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// In target memory at the address in R7.
    User,
    /// The value itself is in R7.
    Value,
    /// Assembled in scratch at this offset.
    Kern(u32),
}

/// The x86-64 register of a DWARF register number.
fn x86_reg(r: DwarfReg) -> Option<X86Reg> {
    Some(match r.0 {
        0 => X86Reg::Rax,
        1 => X86Reg::Rdx,
        2 => X86Reg::Rcx,
        3 => X86Reg::Rbx,
        4 => X86Reg::Rsi,
        5 => X86Reg::Rdi,
        6 => X86Reg::Rbp,
        7 => X86Reg::Rsp,
        8 => X86Reg::R8,
        9 => X86Reg::R9,
        10 => X86Reg::R10,
        11 => X86Reg::R11,
        12 => X86Reg::R12,
        13 => X86Reg::R13,
        14 => X86Reg::R14,
        15 => X86Reg::R15,
        16 => X86Reg::Rip,
        _ => return None,
    })
}

impl Lower<'_, '_> {
    fn site_addr(&mut self, e: &Expr) -> Option<u64> {
        let a = self.site.addr;
        if a.is_none() {
            self.em
                .error(e.span, "context variables need a process probe");
        }
        a
    }

    /// R0 = an address DWARF describes.
    fn dwarf_address(&mut self, a: Address, cfa_from_sp: i64) -> bool {
        match a {
            Address::Cfa(off) => {
                self.em.ctx_reg(Reg::R0, X86Reg::Rsp);
                self.em
                    .e(Insn::alu64(AluOp::Add, Reg::R0, (cfa_from_sp + off) as i32));
            }
            Address::Register { reg, offset } => {
                let Some(r) = x86_reg(reg) else { return false };
                self.em.ctx_reg(Reg::R0, r);
                self.em.e(Insn::alu64(AluOp::Add, Reg::R0, offset as i32));
            }
            Address::Absolute(v) => self.em.imm(Reg::R0, v.0 as i64),
        }
        true
    }

    /// Places the base of a context expression; returns its type.
    fn base(&mut self, e: &Expr, t: &TargetExpr) -> Option<(At, GoType)> {
        match &t.base {
            TargetBase::Cast { addr, ty, .. } => {
                let gt = match self.env.target.named_type(ty) {
                    Ok(g) => g,
                    Err(err) => {
                        self.em.error(e.span, err.to_string());
                        return None;
                    }
                };
                self.long(addr);
                self.em.e(Insn::mov64(Reg::R7, Reg::R0));
                Some((At::User, gt))
            }
            TargetBase::Var(id) => {
                let addr = self.site_addr(e)?;
                let v = match self.env.target.variable(addr, &id.name) {
                    Ok(v) => v,
                    Err(err) => {
                        self.em.error(id.span, err.to_string());
                        return None;
                    }
                };
                let at = self.place_var(e, &v.place, v.ty.size)?;
                Some((at, v.ty))
            }
            TargetBase::Set(_) => {
                self.em.error(
                    e.span,
                    "'$$vars' and friends are not supported in kernel probes yet",
                );
                None
            }
        }
    }

    fn place_var(&mut self, e: &Expr, place: &VarPlace, size: u64) -> Option<At> {
        match place {
            VarPlace::Registers(regs) => {
                if let [r] = regs[..] {
                    self.em.ctx_reg(Reg::R7, r);
                    return Some(At::Value);
                }
                let at = self.em.alloc(8 * regs.len() as u32);
                for (i, r) in regs.iter().enumerate() {
                    self.em.ctx_reg(Reg::R0, *r);
                    self.em.store(at + 8 * i as u32, Reg::R0);
                }
                Some(At::Kern(at))
            }
            VarPlace::Dwarf { expr, cfa_from_sp } => {
                let cfa = *cfa_from_sp;
                if let [p] = &expr.pieces[..]
                    && p.size.is_none_or(|s| s >= size)
                {
                    return match p.place {
                        Place::Register(r) => {
                            let Some(x) = x86_reg(r) else {
                                self.em.error(e.span, format!("cannot read register {r}"));
                                return None;
                            };
                            self.em.ctx_reg(Reg::R7, x);
                            Some(At::Value)
                        }
                        Place::Memory(a) => {
                            if !self.dwarf_address(a, cfa) {
                                self.em.error(e.span, "unsupported DWARF location");
                                return None;
                            }
                            self.em.e(Insn::mov64(Reg::R7, Reg::R0));
                            Some(At::User)
                        }
                        Place::Value(Value::Const(c)) => {
                            self.em.imm(Reg::R7, c);
                            Some(At::Value)
                        }
                        Place::Value(Value::Address(a)) => {
                            if !self.dwarf_address(a, cfa) {
                                self.em.error(e.span, "unsupported DWARF location");
                                return None;
                            }
                            self.em.e(Insn::mov64(Reg::R7, Reg::R0));
                            Some(At::Value)
                        }
                        Place::OptimizedOut => {
                            self.em.error(e.span, "the variable is optimized out here");
                            None
                        }
                    };
                }
                // A composite in pieces: assemble it in scratch.
                let total: u64 = expr.pieces.iter().map(|p| p.size.unwrap_or(8)).sum();
                if total > 256 {
                    self.em
                        .error(e.span, "the variable is too large to assemble");
                    return None;
                }
                let at = self.em.alloc(total as u32);
                let mut pos = at;
                for p in &expr.pieces {
                    let n = p.size.unwrap_or(8) as u32;
                    match p.place {
                        Place::Register(r) => {
                            if let Some(x) = x86_reg(r) {
                                self.em.ctx_reg(Reg::R0, x);
                                if let Some(sz) = Size::from_bytes(n as usize) {
                                    let o = self.em.off(pos);
                                    self.em.e(Insn::stx(sz, crate::emit::SCRATCH, o, Reg::R0));
                                }
                            }
                        }
                        Place::Memory(a) => {
                            if self.dwarf_address(a, cfa) {
                                self.em.e(Insn::mov64(Reg::R7, Reg::R0));
                                self.em.read_user(pos, n as i32, Reg::R7);
                            }
                        }
                        Place::Value(Value::Const(c)) => {
                            self.em.imm(Reg::R0, c);
                            self.em.store(pos, Reg::R0);
                        }
                        _ => {
                            for i in 0..n.div_ceil(8) {
                                self.em.store_imm(pos + 8 * i, Size::DW, 0);
                            }
                        }
                    }
                    pos += n;
                }
                Some(At::Kern(at))
            }
        }
    }

    /// R7 = the 8-byte word at `at` (loading it from memory or scratch).
    fn word(&mut self, at: At, off: u32) {
        match at {
            At::User => self.em.read_user_u64(Reg::R7, Reg::R7, i64::from(off)),
            At::Value => {}
            At::Kern(o) => self.em.load(Reg::R7, o + off),
        }
    }

    /// Follows the path of a context expression; returns the final place and type.
    /// `read_end`: the caller reads the value the path ends at (the place may then
    /// be in a window of the struct read once, see `window`).
    fn follow(&mut self, e: &Expr, t: &TargetExpr, read_end: bool) -> Option<(At, GoType)> {
        let (mut at, mut ty) = self.base(e, t)?;
        // The window the path's first read falls in, and the path's offset from
        // the base while it still follows no pointer.
        let mut window = match at {
            At::User => self.window_for(t, read_end),
            _ => None,
        };
        let mut offset = 0u64;
        for p in &t.path {
            match p {
                PathElem::Field(f) => {
                    let m = match self.env.target.member_access(&ty, &f.name) {
                        Ok(m) => m,
                        Err(err) => {
                            self.em.error(f.span, err.to_string());
                            return None;
                        }
                    };
                    if m.deref {
                        if let Some(w) = window.take() {
                            at = At::Kern(w.at(offset));
                        }
                        self.word(at, 0);
                        at = At::User;
                    }
                    at = match at {
                        At::User => {
                            offset += m.offset;
                            self.em.imm(Reg::R1, m.offset as i64);
                            self.em.e(Insn::alu64(AluOp::Add, Reg::R7, Reg::R1));
                            At::User
                        }
                        At::Kern(o) => At::Kern(o + m.offset as u32),
                        At::Value => {
                            self.em
                                .error(f.span, "cannot take a field of a value held in a register");
                            return None;
                        }
                    };
                    ty = m.ty;
                }
                PathElem::Index(i) => {
                    window = None;
                    let acc = match self.env.target.index_access(&ty) {
                        Ok(a) => a,
                        Err(err) => {
                            self.em.error(i.span, err.to_string());
                            return None;
                        }
                    };
                    // R7 is live only for places in memory or in a register.
                    let live = !matches!(at, At::Kern(_));
                    let saved = self.em.alloc(8);
                    if live {
                        self.em.store(saved, Reg::R7);
                    }
                    self.long(i);
                    self.em.e(Insn::mov64(Reg::R8, Reg::R0));
                    if live {
                        self.em.load(Reg::R7, saved);
                    }
                    let elem = match acc {
                        IndexAccess::Pointer { elem } => {
                            self.word(at, 0);
                            elem
                        }
                        IndexAccess::Slice { elem } => {
                            self.word(at, 0);
                            elem
                        }
                        IndexAccess::Array { elem, .. } => {
                            if at != At::User {
                                self.em.error(
                                    i.span,
                                    "indexing an array held in registers is not supported",
                                );
                                return None;
                            }
                            elem
                        }
                    };
                    self.em.imm(Reg::R1, elem.size as i64);
                    self.em.e(Insn::alu64(AluOp::Mul, Reg::R8, Reg::R1));
                    self.em.e(Insn::alu64(AluOp::Add, Reg::R7, Reg::R8));
                    at = At::User;
                    ty = elem;
                }
            }
        }
        if let Some(w) = window
            && at == At::User
        {
            at = At::Kern(w.at(offset));
        }
        Some((at, ty))
    }

    /// Where the value of a pretty-printed context expression is, for its root
    /// region (see `pretty`): R7 holds its address or value.
    pub(crate) fn pretty_root(&mut self, e: &Expr, t: &TargetExpr) -> Option<RootAt> {
        let plain = TargetExpr {
            base: t.base.clone(),
            path: t.path.clone(),
            pretty: Pretty::None,
        };
        let (at, _) = self.follow(e, &plain, false)?;
        Some(root_at(at))
    }

    /// Where variable `name` of `$$vars` is at this probe, for its root region.
    pub(crate) fn var_root(&mut self, e: &Expr, name: &str) -> Option<RootAt> {
        let addr = self.site_addr(e)?;
        let v = match self.env.target.variable(addr, name) {
            Ok(v) => v,
            Err(err) => {
                self.em.error(e.span, err.to_string());
                return None;
            }
        };
        let at = self.place_var(e, &v.place, v.ty.size)?;
        Some(root_at(at))
    }

    /// The Go type of a context expression at this probe's site, found without
    /// emitting code.
    pub(crate) fn target_type(&self, t: &TargetExpr) -> Option<GoType> {
        let mut ty = match &t.base {
            TargetBase::Var(id) => self.env.target.variable(self.site.addr?, &id.name).ok()?.ty,
            TargetBase::Cast { ty, .. } => self.env.target.named_type(ty).ok()?,
            TargetBase::Set(_) => return None,
        };
        for p in &t.path {
            ty = match p {
                PathElem::Field(f) => self.env.target.member_access(&ty, &f.name).ok()?.ty,
                PathElem::Index(_) => match self.env.target.index_access(&ty).ok()? {
                    IndexAccess::Pointer { elem }
                    | IndexAccess::Slice { elem }
                    | IndexAccess::Array { elem, .. } => elem,
                },
            };
        }
        Some(ty)
    }

    /// R0 = the word at `off` of a context expression's value (a string's or a
    /// slice's length and capacity). False, with an error, when the value has no
    /// place to read a word of.
    pub(crate) fn target_word(&mut self, e: &Expr, t: &TargetExpr, off: u32) -> bool {
        let Some((at, _)) = self.follow(e, t, false) else {
            self.em.e(Insn::mov64(Reg::R0, 0));
            return false;
        };
        match at {
            At::User => self.em.read_user_u64(Reg::R0, Reg::R7, i64::from(off)),
            At::Kern(o) => self.em.load(Reg::R0, o + off),
            At::Value => {
                self.em.error(
                    e.span,
                    "this value is held in one register and has no length",
                );
                self.em.e(Insn::mov64(Reg::R0, 0));
                return false;
            }
        }
        true
    }

    /// R0 = the value of a `long` context expression (or a `float`'s bits, as a
    /// `float64`).
    pub fn target_long(&mut self, e: &Expr, t: &TargetExpr) {
        if t.pretty != Pretty::None {
            self.em.error(
                e.span,
                "internal error: a pretty-printed value used as a number",
            );
            self.em.e(Insn::mov64(Reg::R0, 0));
            return;
        }
        if let TargetBase::Cast { addr, .. } = &t.base
            && t.path.is_empty()
        {
            self.long(addr);
            return;
        }
        let Some((at, ty)) = self.follow(e, t, true) else {
            self.em.e(Insn::mov64(Reg::R0, 0));
            return;
        };
        let size = ty.size.clamp(1, 8) as u32;
        let size = match size {
            1 | 2 | 4 | 8 => size,
            _ => 8,
        };
        match at {
            At::User => {
                let tmp = self.em.alloc(8);
                self.em.store_imm(tmp, Size::DW, 0);
                self.em.read_user(tmp, size as i32, Reg::R7);
                self.em.load(Reg::R0, tmp);
            }
            At::Value => self.em.e(Insn::mov64(Reg::R0, Reg::R7)),
            At::Kern(o) => self.em.load(Reg::R0, o),
        }
        match ty.kind {
            GoKind::Int { signed: true } => sign_extend(&mut self.em, size),
            GoKind::Bool => {
                zero_extend(&mut self.em, 1);
            }
            GoKind::Float if size == 4 => {
                zero_extend(&mut self.em, 4);
                f32_to_f64_bits(&mut self.em);
            }
            _ => zero_extend(&mut self.em, size),
        }
    }

    /// R0 = the address of a context expression (`&$x->f`).
    pub fn target_addr(&mut self, e: &Expr, t: &TargetExpr) {
        match self.follow(e, t, false) {
            Some((At::User, _)) => self.em.e(Insn::mov64(Reg::R0, Reg::R7)),
            Some(_) => {
                self.em
                    .error(e.span, "this value is held in registers and has no address");
                self.em.e(Insn::mov64(Reg::R0, 0));
            }
            None => self.em.e(Insn::mov64(Reg::R0, 0)),
        }
    }

    /// A Go string context expression as a script string: its bytes (at most
    /// `MAX_STRING - 1`) read from the target, NUL-terminated.
    pub fn target_string(&mut self, e: &Expr, t: &TargetExpr) -> Str {
        if t.pretty != Pretty::None || matches!(t.base, TargetBase::Set(_)) {
            self.em.error(
                e.span,
                "internal error: a pretty-printed value used as a string",
            );
            return self.empty_str();
        }
        let out = self.em.alloc(self.em.max_string());
        self.em.store_imm(out, Size::DW, 0);
        let Some((at, ty)) = self.follow(e, t, false) else {
            return Str::Scratch(out);
        };
        if ty.kind != GoKind::String {
            self.em
                .error(e.span, format!("'{}' is not a string", ty.name));
            return Str::Scratch(out);
        }
        // R7 = data pointer, R8 = length.
        match at {
            At::User => {
                let hdr = self.em.alloc(16);
                self.em.store_imm(hdr, Size::DW, 0);
                self.em.store_imm(hdr + 8, Size::DW, 0);
                self.em.read_user(hdr, 16, Reg::R7);
                self.em.load(Reg::R7, hdr);
                self.em.load(Reg::R8, hdr + 8);
            }
            At::Kern(o) => {
                self.em.load(Reg::R7, o);
                self.em.load(Reg::R8, o + 8);
            }
            At::Value => {
                self.em
                    .error(e.span, "a string needs its pointer and length");
                return Str::Scratch(out);
            }
        }
        let short = self.em.a.label();
        self.em
            .a
            .jmp(Cond::Le, Reg::R8, (self.em.max_string() - 1) as i32, short);
        self.em
            .e(Insn::mov64(Reg::R8, (self.em.max_string() - 1) as i32));
        self.em.a.bind(short);
        // The verifier needs to see the bound on the size register itself.
        self.em.e(Insn::alu64(
            AluOp::And,
            Reg::R8,
            (self.em.max_string() - 1) as i32,
        ));
        self.em.e(Insn::mov64(Reg::R3, Reg::R7));
        self.em.addr(Reg::R1, out);
        self.em.e(Insn::mov64(Reg::R2, Reg::R8));
        self.em.a.call(Helper::ProbeReadUser);
        let ok = self.em.a.label();
        self.em.a.jmp(Cond::Eq, Reg::R0, 0, ok);
        self.em.count(bpf::script::counter::READ_FAULTS);
        self.em.e(Insn::mov64(Reg::R8, 0));
        self.em.a.bind(ok);
        // NUL at out[len].
        self.em.e(Insn::mov64(Reg::R1, crate::emit::SCRATCH));
        self.em.e(Insn::alu64(
            AluOp::And,
            Reg::R8,
            (self.em.max_string() - 1) as i32,
        ));
        self.em.e(Insn::alu64(AluOp::Add, Reg::R1, Reg::R8));
        let o = self.em.off(out);
        self.em.e(Insn::st(Size::B, Reg::R1, o, 0));
        Str::Scratch(out)
    }
}
