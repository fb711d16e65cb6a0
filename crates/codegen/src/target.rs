//! [`GoTarget`]: the traced executable as the type checker and the code generator see
//! it. It answers `lang`'s [`Target`] questions (where does a probe point go, what is
//! `$x`, what is `->f`) from one [`GoBinary`], its DWARF when it has some (loaded on
//! first use), and the Go runtime's struct layouts, read from DWARF or, for a stripped
//! executable, taken from gobin's per-release tables. With those tables `runtime.g`,
//! `runtime.m`, `runtime.gobuf` and `runtime.stack` exist as a small synthetic type
//! model, so `@cast(x, "runtime.g")->m->curg->stack->hi` works without DWARF.
//!
//! Probe placement follows the Go runtime's habits: a function probe goes after the
//! stack-bound check ([`x86::probe_site`]), because `morestack` restarts a function
//! at its entry and an entry probe would fire twice; a return probe is one probe per
//! `RET` instruction, because Go copies goroutine stacks and a uretprobe's patched
//! return address would be copied to a stale place.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bpf::X86Reg;
use gobin::dwarf::{self, BaseEncoding, Dwarf, TypeKind, TypeRef};
use gobin::layout::RuntimeLayout;
use gobin::{Func, GoBinary, VirtAddr, x86};
use lang::ast::VarSet;
use lang::probe::Instances;
use lang::{GoKind, GoType, Lines, Location, ProcessProbe, Site, Target, TargetError};

/// Handles with this bit set name a synthetic type (see [`Synth`]); the others are
/// DWARF type offsets.
const SYNTH: u64 = 1 << 63;

/// The synthetic runtime types used when the executable has no DWARF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Synth {
    G = 1,
    M,
    Gobuf,
    Stack,
    PtrG,
    PtrM,
    Uintptr,
    Int64,
    Uint32,
}

impl Synth {
    const ALL: [Synth; 9] = [
        Synth::G,
        Synth::M,
        Synth::Gobuf,
        Synth::Stack,
        Synth::PtrG,
        Synth::PtrM,
        Synth::Uintptr,
        Synth::Int64,
        Synth::Uint32,
    ];

    fn from_handle(h: u64) -> Option<Synth> {
        if h & SYNTH == 0 {
            return None;
        }
        Synth::ALL.iter().copied().find(|s| *s as u64 == h & !SYNTH)
    }

    fn go_type(self) -> GoType {
        let (name, kind, size) = match self {
            Synth::G => ("runtime.g", GoKind::Struct, 0),
            Synth::M => ("runtime.m", GoKind::Struct, 0),
            Synth::Gobuf => ("runtime.gobuf", GoKind::Struct, 0),
            Synth::Stack => ("runtime.stack", GoKind::Struct, 16),
            Synth::PtrG => ("*runtime.g", GoKind::Pointer, 8),
            Synth::PtrM => ("*runtime.m", GoKind::Pointer, 8),
            Synth::Uintptr => ("uintptr", GoKind::Uintptr, 8),
            Synth::Int64 => ("int64", GoKind::Int { signed: true }, 8),
            Synth::Uint32 => ("uint32", GoKind::Int { signed: false }, 4),
        };
        GoType {
            name: name.into(),
            kind,
            size,
            handle: SYNTH | self as u64,
        }
    }

    /// The fields of a synthetic struct: name, offset, type.
    fn fields(self, l: &RuntimeLayout) -> Vec<(&'static str, u64, Synth)> {
        use Synth::*;
        match self {
            G => vec![
                ("stack", l.g_stack_lo, Stack),
                ("stackguard0", l.g_stackguard0, Uintptr),
                ("_panic", l.g_panic, Uintptr),
                ("_defer", l.g_defer, Uintptr),
                ("m", l.g_m, PtrM),
                ("sched", l.g_sched, Gobuf),
                ("syscallsp", l.g_syscallsp, Uintptr),
                ("syscallpc", l.g_syscallpc, Uintptr),
                ("atomicstatus", l.g_atomicstatus, Uint32),
                ("goid", l.g_goid, Int64),
                ("gopc", l.g_gopc, Uintptr),
                ("startpc", l.g_startpc, Uintptr),
            ],
            M => vec![
                ("g0", l.m_g0, PtrG),
                ("morebuf", l.m_morebuf, Gobuf),
                ("procid", l.m_procid, Int64),
                ("gsignal", l.m_gsignal, PtrG),
                ("curg", l.m_curg, PtrG),
                ("id", l.m_id, Int64),
            ],
            Gobuf => {
                let mut v = vec![
                    ("sp", l.gobuf_sp, Uintptr),
                    ("pc", l.gobuf_pc, Uintptr),
                    ("g", l.gobuf_g, PtrG),
                    ("ctxt", l.gobuf_ctxt, Uintptr),
                    ("lr", l.gobuf_lr, Uintptr),
                    ("bp", l.gobuf_bp, Uintptr),
                ];
                if let Some(r) = l.gobuf_ret {
                    v.push(("ret", r, Uintptr));
                }
                v
            }
            Stack => vec![
                // `g.stack` starts with `lo`: the struct is placed at `g_stack_lo`.
                ("lo", 0, Uintptr),
                ("hi", l.g_stack_hi - l.g_stack_lo, Uintptr),
            ],
            _ => Vec::new(),
        }
    }

    fn pointee(self) -> Option<Synth> {
        match self {
            Synth::PtrG => Some(Synth::G),
            Synth::PtrM => Some(Synth::M),
            _ => None,
        }
    }
}

/// How a member access reaches its field: the offset from the struct's start, and
/// whether a pointer must be loaded first (`->` through a pointer to a struct).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAccess {
    pub deref: bool,
    pub offset: u64,
    pub ty: GoType,
}

/// How `x[i]` reaches its element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexAccess {
    /// `x` is a pointer: the element is at `ptr + i * size`.
    Pointer { elem: GoType },
    /// `x` is a slice: its first word is the array pointer.
    Slice { elem: GoType },
    /// `x` is an array held in place.
    Array { elem: GoType, len: u64 },
}

/// Where a context variable's value is at a probe address.
#[derive(Clone, Debug, PartialEq)]
pub enum VarPlace {
    /// A DWARF location expression; `cfa_from_sp` is what to add to RSP to get the
    /// canonical frame address at this pc.
    Dwarf { expr: dwarf::Expr, cfa_from_sp: i64 },
    /// Registers of the Go register ABI, in order, for a result DWARF does not place.
    Registers(Vec<X86Reg>),
}

/// One variable of a probe context.
#[derive(Clone, Debug, PartialEq)]
pub struct ContextVar {
    pub name: String,
    pub ty: GoType,
    pub place: VarPlace,
    pub is_param: bool,
    pub is_return: bool,
}

/// The traced executable, for the checker and the code generator.
pub struct GoTarget<'data> {
    bin: GoBinary<'data>,
    path: String,
    /// The DWARF once opened: `Err` when there is none, or it is corrupt.
    dwarf: OnceLock<Result<Dwarf<'data>, dwarf::Error>>,
    layout: OnceLock<Option<RuntimeLayout>>,
    release: Option<dwarf::Release<'data>>,
    /// The packages of the functions probe points have named so far.
    probed_packages: std::sync::Mutex<Vec<String>>,
    /// Probe sites the kernel cannot take, left out of what probe points resolved to.
    refused: std::sync::Mutex<Vec<x86::Refused>>,
    /// The inlined calls probe points resolved to, by address: whose variables a
    /// probe there reads.
    inline_sites: std::sync::Mutex<std::collections::HashMap<u64, InlineSite>>,
    /// Inlined calls that probe points named but left out (`.call`), as sentences.
    left_out: std::sync::Mutex<Vec<String>>,
    /// Types described for the pretty-printer (see `types`).
    types: crate::types::TypeCache,
}

/// A probe site at an inlined call.
#[derive(Clone, Debug)]
struct InlineSite {
    /// The inlined function.
    callee: String,
    /// The function whose code holds the call: where DWARF has the call's own
    /// parameters and locals, when a probe reads them.
    holder: String,
}

/// An inlined call found for a pattern.
struct InlinedCall {
    callee: String,
    holder: String,
    addr: VirtAddr,
}

impl<'data> GoTarget<'data> {
    /// A target over `bin`, the executable at `path` (absolute, as attachments name it).
    pub fn new(bin: GoBinary<'data>, path: impl Into<String>) -> GoTarget<'data> {
        GoTarget {
            bin,
            path: path.into(),
            dwarf: OnceLock::new(),
            layout: OnceLock::new(),
            release: None,
            probed_packages: std::sync::Mutex::new(Vec::new()),
            refused: std::sync::Mutex::new(Vec::new()),
            inline_sites: std::sync::Mutex::new(std::collections::HashMap::new()),
            left_out: std::sync::Mutex::new(Vec::new()),
            types: crate::types::TypeCache::default(),
        }
    }

    /// What probe points left out so far, one sentence each: the sites the kernel
    /// cannot take ([`GoTarget::refused`]), and inlined calls a `.call` probe does
    /// not cover.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.skipped_warning().into_iter().collect();
        if let Ok(l) = self.left_out.lock() {
            out.extend(l.iter().cloned());
        }
        out
    }

    /// The inlined function whose call is probed at `addr`, if a probe point
    /// resolved to an inlined call there.
    pub fn inlined_at(&self, addr: u64) -> Option<String> {
        let sites = self.inline_sites.lock().ok()?;
        sites.get(&addr).map(|s| s.callee.clone())
    }

    /// Every inlined call of a function matching `pattern`, from `.gopclntab`'s
    /// inline trees, with or without DWARF: DWARF's inlined subroutines name the
    /// same calls at the same pcs (`gobin/tests/inlined.rs`), but finding them there
    /// means walking every unit of `.debug_info`. DWARF is read for a call only when
    /// a probe there reads its variables ([`GoTarget::variables`]).
    ///
    /// Finding them reads every function's inline tree; with a page releaser
    /// ([`GoTarget::releasing`]) the pages read go as the pass goes, so that it does
    /// not hold much of `.gopclntab` for the rest of the run.
    fn inlined_calls(&self, pattern: &str) -> Vec<InlinedCall> {
        let release = || {
            if let Some(release) = &self.release {
                release(self.bin.elf().data());
            }
        };
        self.bin
            .inlined_calls_matching_paged(pattern, release)
            .into_iter()
            .map(|c| InlinedCall {
                callee: c.callee.to_string(),
                holder: c.holder.name.to_string(),
                addr: c.addr,
            })
            .collect()
    }

    /// Where `.function(pattern)` probes go: each matching function's entry site
    /// (or its `RET`s for `.return`) unless `.inline`, and each inlined call of one
    /// unless `.call` (or `.return`: inlined code has no return of its own).
    fn resolve_function(
        &self,
        pattern: &str,
        ret: bool,
        instances: Instances,
    ) -> Result<Vec<Location>, TargetError> {
        let funcs = self.bin.functions_matching(pattern);
        let inlined = if ret {
            Vec::new()
        } else {
            self.inlined_calls(pattern)
        };
        if funcs.is_empty() && inlined.is_empty() {
            return Err(self.no_function(pattern));
        }
        let mut out = Vec::new();
        let mut first_error = None;
        if ret || instances != Instances::Inline {
            match self.function_sites(&funcs, pattern, ret) {
                Ok(l) => out.extend(l),
                Err(e) if !inlined.is_empty() && instances == Instances::All => {
                    first_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        if !ret && instances != Instances::Call {
            for call in &inlined {
                match self.inlined_site(call) {
                    Ok(l) => out.push(l),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        } else if !inlined.is_empty() {
            let n = inlined.len();
            let why = if ret {
                "'.return' probes only the out-of-line body's returns"
            } else {
                "'.call' probes only the out-of-line body; '.function' probes both"
            };
            if let Ok(mut l) = self.left_out.lock() {
                l.push(format!(
                    "{n} inlined call{} of '{pattern}' {} not probed: {why}",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" }
                ));
            }
        }
        match first_error {
            Some(e) if out.is_empty() => Err(e),
            _ if out.is_empty() => Err(other(format!(
                "'{pattern}' has no {} to probe",
                match instances {
                    Instances::Inline => "inlined call",
                    _ => "out-of-line body",
                }
            ))),
            _ => Ok(out),
        }
    }

    /// The location of an inlined call, if a uprobe may go there; registered for
    /// its variables. Named after the inlined function, placed at its call site.
    fn inlined_site(&self, call: &InlinedCall) -> Result<Location, TargetError> {
        let holder = self.function_at(call.addr.0)?;
        let code = x86::Decoded::of(&self.bin, &holder)
            .map_err(|e| other(format!("decoding {}: {e}", holder.name)))?;
        if let Some(r) = code.refused(call.addr) {
            self.refuse(r.clone());
            return Err(other(format!(
                "cannot place a probe on the inlined call of {} at {r}",
                call.callee
            )));
        }
        // The caller's frame at the call gives the call site's position.
        let frames = self.bin.frames_at(call.addr);
        let at = frames
            .iter()
            .position(|f| f.inlined && f.function == call.callee)
            .and_then(|i| frames.get(i + 1));
        if let Ok(mut sites) = self.inline_sites.lock() {
            sites.insert(
                call.addr.0,
                InlineSite {
                    callee: call.callee.clone(),
                    holder: call.holder.clone(),
                },
            );
        }
        Ok(Location {
            function: call.callee.clone(),
            file: at.map(|f| f.file.to_string()),
            line: at.map(|f| f.line),
            address: call.addr.0,
        })
    }

    /// The entry sites (or `RET`s) of `funcs`; a wildcard passes over what cannot
    /// be probed (markers such as `go:textfipsstart`, code that does not decode,
    /// sites the kernel refuses, which are reported); a name does not.
    fn function_sites(
        &self,
        funcs: &[Func<'data>],
        pattern: &str,
        ret: bool,
    ) -> Result<Vec<Location>, TargetError> {
        let wildcard = gobin::funcs::is_glob(pattern);
        let mut out = Vec::new();
        let mut first_error = None;
        for f in funcs.iter().filter(|f| !wildcard || !self.is_marker(f)) {
            let sites = if ret {
                match x86::returns(&self.bin, f) {
                    Ok(rets) => self.placeable(f, rets),
                    // Its returns cannot be found in code that does not decode.
                    Err(gobin::Error::BadInstruction(at)) => {
                        let r = x86::Refused::at(f, at, x86::Refusal::Undecodable);
                        self.refuse(r.clone());
                        Err(other(format!("cannot find the returns of {}: {r}", f.name)))
                    }
                    Err(e) => Err(other(format!("decoding {}: {e}", f.name))),
                }
            } else {
                let site = x86::probe_site(&self.bin, f);
                match (x86::Refused::of_entry(f, &site), site) {
                    (Some(r), _) => {
                        self.refuse(r.clone());
                        Err(other(format!("cannot place a probe at {r}")))
                    }
                    (None, Ok(site)) => Ok(vec![self.location(f, site.addr)]),
                    (None, Err(e)) => Err(other(format!("decoding {}: {e}", f.name))),
                }
            };
            match sites {
                Ok(l) => out.extend(l),
                Err(e) if wildcard => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match first_error {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// The probe sites left out so far because the kernel cannot take them (`int3`,
    /// a `lock` prefix, an address inside an instruction, code that does not
    /// decode), each once, in address order.
    pub fn refused(&self) -> Vec<x86::Refused> {
        let mut all = self.refused.lock().map(|r| r.clone()).unwrap_or_default();
        all.sort_by_key(|r| r.addr);
        all.dedup_by_key(|r| r.addr);
        all
    }

    /// The warning that names and counts [`GoTarget::refused`], if any site was.
    pub fn skipped_warning(&self) -> Option<String> {
        x86::skipped_sentence(&self.refused())
    }

    fn refuse(&self, r: x86::Refused) {
        if let Ok(mut all) = self.refused.lock() {
            all.push(r);
        }
    }

    pub(crate) fn types_cache(&self) -> &crate::types::TypeCache {
        &self.types
    }

    /// Has DWARF hand the stored bytes of each compressed section to `release` after
    /// each pass over them, so the caller can drop their pages from memory; passes
    /// over every function's tables (finding inlined calls) hand it the whole
    /// executable as they go.
    pub fn releasing(mut self, release: dwarf::Release<'data>) -> GoTarget<'data> {
        self.release = Some(release);
        self
    }

    pub fn binary(&self) -> &GoBinary<'data> {
        &self.bin
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The DWARF, if the executable has some that reads.
    pub fn dwarf(&self) -> Option<&Dwarf<'data>> {
        self.dwarf_and(&[])
    }

    /// The DWARF if something has opened it already; never opens it. For tests
    /// that hold what a query read ([`Dwarf::units_walked`], [`Dwarf::held`]).
    pub fn opened_dwarf(&self) -> Option<&Dwarf<'data>> {
        self.dwarf.get()?.as_ref().ok()
    }

    /// The DWARF, or why variables and types cannot be read: there is none, or it
    /// is corrupt (said with the section's name, never as "no DWARF").
    pub fn dwarf_or_error(&self) -> Result<&Dwarf<'data>, TargetError> {
        match self.dwarf_and(&[]) {
            Some(d) => Ok(d),
            None => Err(match self.dwarf.get() {
                Some(Err(e)) if !matches!(e, dwarf::Error::NoDwarf) => dw(e.clone()),
                _ => no_dwarf(),
            }),
        }
    }

    /// True when the executable has DWARF that cannot be read.
    pub fn dwarf_is_corrupt(&self) -> bool {
        self.dwarf();
        matches!(self.dwarf.get(), Some(Err(e)) if !matches!(e, dwarf::Error::NoDwarf))
    }

    /// The DWARF, with `more` sections inflated as well: opened, with what reading
    /// a variable needs, all side by side; sections asked for later are inflated
    /// when asked for.
    fn dwarf_and(&self, more: &[&str]) -> Option<&Dwarf<'data>> {
        const VARIABLES: [&str; 6] = [
            ".debug_info",
            ".debug_loclists",
            ".debug_loc",
            ".debug_rnglists",
            ".debug_ranges",
            ".debug_addr",
        ];
        let d = self
            .dwarf
            .get_or_init(|| {
                let d = Dwarf::load_sections_releasing(
                    |name| self.bin.dwarf_section(name),
                    self.release.clone(),
                )?;
                // What was read of the executable so far (the names of all functions,
                // to find one) is not what DWARF reads: the pages may go.
                if let Some(release) = &self.release {
                    release(self.bin.elf().data());
                }
                if let Ok(p) = self.probed_packages.lock() {
                    d.will_read_packages(p.iter().map(String::as_str));
                }
                let wanted: Vec<&str> = VARIABLES.iter().chain(more).copied().collect();
                d.inflate(&wanted);
                Ok(d)
            })
            .as_ref()
            .ok()?;
        d.inflate(more);
        Some(d)
    }

    /// The runtime's struct layout: from DWARF, else the table of the binary's release.
    pub fn layout(&self) -> Option<&RuntimeLayout> {
        self.layout
            .get_or_init(|| {
                self.dwarf()
                    .and_then(|d| RuntimeLayout::from_dwarf(d).ok())
                    .or_else(|| {
                        let v = self.bin.go_version();
                        RuntimeLayout::builtin(v.major, v.minor)
                    })
            })
            .as_ref()
    }

    /// `.statement(ADDRESS)`: the instruction there, if one starts there and a
    /// uprobe may take it.
    fn resolve_address(&self, addr: u64) -> Result<Vec<Location>, TargetError> {
        let f = self.function_at(addr)?;
        gobin::x86::check(&self.bin, &f, VirtAddr(addr))
            .map_err(|why| other(format!("no probe can go at {addr:#x} in {}: {why}", f.name)))?;
        Ok(vec![self.location(&f, VirtAddr(addr))])
    }

    fn function_at(&self, addr: u64) -> Result<Func<'data>, TargetError> {
        self.bin
            .function_at(VirtAddr(addr))
            .ok_or_else(|| other(format!("no function holds address {addr:#x}")))
    }

    fn location(&self, f: &Func<'data>, addr: VirtAddr) -> Location {
        let pos = self.bin.line_at(f, addr);
        Location {
            function: f.name.to_string(),
            file: pos.map(|(file, _)| file.to_string()),
            line: pos.map(|(_, l)| l),
            address: addr.0,
        }
    }

    /// True for the linker's markers in the function table (`go:textfipsstart`):
    /// no code, or no source position.
    fn is_marker(&self, f: &Func<'data>) -> bool {
        f.end <= f.entry || self.bin.line_at(f, f.entry).is_none()
    }

    fn no_function(&self, pattern: &str) -> TargetError {
        let names: Vec<&str> = self.bin.functions().map(|f| f.name).collect();
        TargetError::NoSuchFunction {
            pattern: pattern.to_string(),
            nearest: lang::diag::nearest(pattern, names)
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    /// The locations of `sites` in `f` that a uprobe may take; the others are kept in
    /// [`GoTarget::refused`]. `Err` when none is left and one was refused: the error
    /// names the function, the offset and why.
    fn placeable(
        &self,
        f: &Func<'data>,
        sites: impl IntoIterator<Item = VirtAddr>,
    ) -> Result<Vec<Location>, TargetError> {
        let code = x86::Decoded::of(&self.bin, f)
            .map_err(|e| other(format!("decoding {}: {e}", f.name)))?;
        let (mut out, mut first_refused) = (Vec::new(), None);
        for addr in sites {
            match code.refused(addr) {
                None => out.push(self.location(f, addr)),
                Some(r) => {
                    first_refused.get_or_insert_with(|| r.clone());
                    self.refuse(r);
                }
            }
        }
        match first_refused {
            Some(r) if out.is_empty() => Err(other(format!("cannot place a probe at {r}"))),
            _ => Ok(out),
        }
    }

    /// Statement lines of `f`: (file, line) → addresses, from DWARF when present.
    fn statement_lines(&self, f: &Func<'data>) -> BTreeMap<(String, u32), Vec<VirtAddr>> {
        if let Some(d) = self.dwarf_and(&[".debug_line"])
            && let Ok(lines) = d.statement_lines(f.name)
        {
            let mut out: BTreeMap<(String, u32), Vec<VirtAddr>> = BTreeMap::new();
            for ((file, line), addrs) in lines {
                let line = u32::try_from(line).unwrap_or(u32::MAX);
                out.entry((file, line))
                    .or_default()
                    .extend(addrs.into_iter().filter(|a| f.contains(*a)));
            }
            out.retain(|_, v| !v.is_empty());
            if !out.is_empty() {
                return out;
            }
        }
        let mut out: BTreeMap<(String, u32), Vec<VirtAddr>> = BTreeMap::new();
        for (pc, file, line, inlined) in self.bin.positions(f) {
            if !inlined {
                out.entry((file.to_string(), line)).or_default().push(pc);
            }
        }
        out
    }

    fn resolve_statement(
        &self,
        function: &str,
        file: Option<&str>,
        lines: Lines,
    ) -> Result<Vec<Location>, TargetError> {
        let funcs = self.bin.functions_matching(function);
        if funcs.is_empty() {
            return Err(self.no_function(function));
        }
        let mut out = Vec::new();
        let mut valid = Vec::new();
        let mut first_error = None;
        for f in funcs.iter().filter(|f| !self.is_marker(f)) {
            let table = self.statement_lines(f);
            let mut sites = Vec::new();
            let mut first_of_line: BTreeMap<u32, bool> = BTreeMap::new();
            for ((path, line), addrs) in &table {
                if file.is_some_and(|p| !dwarf::file_matches(p, path)) {
                    continue;
                }
                valid.push(*line);
                let wanted = match lines {
                    Lines::Any => true,
                    Lines::One(n) => *line == n,
                    Lines::Range(a, b) => (a..=b).contains(line),
                };
                if !wanted {
                    continue;
                }
                // With `*` every line gets one probe (its first address); a named
                // line gets every block that starts it (a `for` clause has several).
                let take = match lines {
                    Lines::Any => {
                        if first_of_line.insert(*line, true).is_some() {
                            0
                        } else {
                            1
                        }
                    }
                    _ => addrs.len(),
                };
                sites.extend(addrs.iter().take(take));
            }
            if sites.is_empty() {
                continue;
            }
            // A site the kernel cannot take is left out and reported; a statement
            // with none left is an error only if nothing else was found.
            match self.placeable(f, sites) {
                Ok(l) => out.extend(l),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let (true, Some(e)) = (out.is_empty(), first_error) {
            return Err(e);
        }
        if out.is_empty() {
            valid.sort_unstable();
            valid.dedup();
            return Err(TargetError::NoSuchLine {
                function: function.to_string(),
                line: lines.to_string(),
                valid: line_ranges(&valid),
            });
        }
        out.sort_by_key(|l| l.address);
        out.dedup_by_key(|l| l.address);
        Ok(out)
    }

    /// The DWARF type `t` as the checker sees it.
    fn dwarf_type(&self, d: &Dwarf<'data>, t: TypeRef) -> Result<GoType, TargetError> {
        let name = d.type_name(t).map_err(dw)?;
        let r = d.resolve_typedefs(t).map_err(dw)?;
        let info = d.type_info(r).map_err(dw)?;
        let (kind, size) = match &info.kind {
            TypeKind::Base(enc) => (
                match enc {
                    BaseEncoding::Signed => GoKind::Int { signed: true },
                    BaseEncoding::Unsigned if name == "uintptr" => GoKind::Uintptr,
                    BaseEncoding::Unsigned | BaseEncoding::Other(_) => {
                        GoKind::Int { signed: false }
                    }
                    BaseEncoding::Bool => GoKind::Bool,
                    BaseEncoding::Float => GoKind::Float,
                    BaseEncoding::Complex => GoKind::Complex,
                },
                info.size.unwrap_or(8),
            ),
            TypeKind::Pointer { target: None } => (GoKind::UnsafePointer, 8),
            TypeKind::Pointer { .. } => (GoKind::Pointer, 8),
            TypeKind::Struct | TypeKind::Other | TypeKind::Typedef { .. } => {
                (GoKind::Struct, info.size.unwrap_or(0))
            }
            TypeKind::String => (GoKind::String, 16),
            TypeKind::Slice { .. } => (GoKind::Slice, 24),
            TypeKind::Interface { .. } => (GoKind::Interface, 16),
            TypeKind::Map { .. } => (GoKind::Map, 8),
            TypeKind::Chan { .. } => (GoKind::Chan, 8),
            TypeKind::Array { count, .. } => (
                GoKind::Array {
                    len: count.unwrap_or(0),
                },
                info.size.unwrap_or(0),
            ),
            TypeKind::Func => (GoKind::Func, 8),
        };
        Ok(GoType {
            name,
            kind,
            size,
            handle: r.0,
        })
    }

    /// How `->field` of `ty` is reached (see [`MemberAccess`]).
    pub fn member_access(&self, ty: &GoType, field: &str) -> Result<MemberAccess, TargetError> {
        if let Some(s) = Synth::from_handle(ty.handle) {
            let (deref, strukt) = match s.pointee() {
                Some(p) => (true, p),
                None => (false, s),
            };
            let layout = self
                .layout()
                .ok_or_else(|| other("no runtime layout for this Go release".to_string()))?;
            let fields = strukt.fields(layout);
            if fields.is_empty() {
                return Err(TargetError::NotAStruct {
                    ty: ty.name.clone(),
                    field: field.to_string(),
                });
            }
            return match fields.iter().find(|(n, ..)| *n == field) {
                Some((_, off, t)) => Ok(MemberAccess {
                    deref,
                    offset: *off,
                    ty: t.go_type(),
                }),
                None => Err(TargetError::NoSuchField {
                    ty: strukt.go_type().name,
                    field: field.to_string(),
                    fields: fields.iter().map(|(n, ..)| n.to_string()).collect(),
                }),
            };
        }
        let d = self.dwarf_or_error()?;
        let mut deref = false;
        let mut t = TypeRef(ty.handle);
        let mut info = d.type_info(t).map_err(dw)?;
        if let TypeKind::Pointer { target: Some(p) } = info.kind {
            deref = true;
            t = d.resolve_typedefs(p).map_err(dw)?;
            info = d.type_info(t).map_err(dw)?;
        }
        let structish = matches!(
            info.kind,
            TypeKind::Struct
                | TypeKind::String
                | TypeKind::Slice { .. }
                | TypeKind::Interface { .. }
        );
        if !structish {
            return Err(TargetError::NotAStruct {
                ty: ty.name.clone(),
                field: field.to_string(),
            });
        }
        if let Some(m) = info.members.iter().find(|m| m.name == field) {
            return Ok(MemberAccess {
                deref,
                offset: m.offset,
                ty: self.dwarf_type(d, m.type_id)?,
            });
        }
        // A field promoted from an embedded struct (one level).
        for m in info.members.iter().filter(|m| m.embedded) {
            if let Ok(Some((off, ft))) = d.member(m.type_id, field) {
                return Ok(MemberAccess {
                    deref,
                    offset: m.offset + off,
                    ty: self.dwarf_type(d, ft)?,
                });
            }
        }
        Err(TargetError::NoSuchField {
            ty: info.name.clone(),
            field: field.to_string(),
            fields: info.members.iter().map(|m| m.name.clone()).collect(),
        })
    }

    /// How `x[i]` of `ty` is reached.
    pub fn index_access(&self, ty: &GoType) -> Result<IndexAccess, TargetError> {
        let not = || TargetError::NotIndexable {
            ty: ty.name.clone(),
        };
        if Synth::from_handle(ty.handle).is_some() {
            return Err(not());
        }
        let d = self.dwarf_or_error()?;
        let info = d.type_info(TypeRef(ty.handle)).map_err(dw)?;
        match info.kind {
            TypeKind::Pointer { target: Some(e) } => Ok(IndexAccess::Pointer {
                elem: self.dwarf_type(d, e)?,
            }),
            TypeKind::Slice { elem } => {
                let e = match elem {
                    Some(e) => e,
                    // Older DWARF: the element type is the pointee of `array`.
                    None => match info.members.first().map(|m| d.type_info(m.type_id)) {
                        Some(Ok(dwarf::Type {
                            kind: TypeKind::Pointer { target: Some(e) },
                            ..
                        })) => e,
                        _ => return Err(not()),
                    },
                };
                Ok(IndexAccess::Slice {
                    elem: self.dwarf_type(d, e)?,
                })
            }
            TypeKind::Array {
                elem: Some(e),
                count,
            } => Ok(IndexAccess::Array {
                elem: self.dwarf_type(d, e)?,
                len: count.unwrap_or(0),
            }),
            _ => Err(not()),
        }
    }

    /// The variables in scope at `addr`, with where each one is there.
    pub fn variables(&self, addr: u64) -> Result<Vec<ContextVar>, TargetError> {
        self.variables_and_missing(addr).map(|(vars, _)| vars)
    }

    /// The variables at `addr` with a place there, and the names of those in scope
    /// whose value the compiler kept nowhere at `addr`. At an inlined call, the
    /// variables are the inlined function's own (its DWARF instance's).
    fn variables_and_missing(
        &self,
        addr: u64,
    ) -> Result<(Vec<ContextVar>, Vec<String>), TargetError> {
        let f = self.function_at(addr)?;
        let sp_delta = self.bin.sp_delta(&f, VirtAddr(addr)).unwrap_or(0);
        let cfa_from_sp = i64::from(sp_delta) + 8;
        let is_ret = x86::returns(&self.bin, &f)
            .map(|r| r.contains(&VirtAddr(addr)))
            .unwrap_or(false);
        // Without DWARF, a RET has its results in registers; corrupt DWARF is an error.
        let d = match self.dwarf_or_error() {
            Ok(d) => d,
            Err(e) if self.dwarf_is_corrupt() => return Err(e),
            Err(_) if is_ret => return Ok((register_results(), Vec::new())),
            Err(_) => return Ok((Vec::new(), Vec::new())),
        };
        let inlined = self
            .inline_sites
            .lock()
            .ok()
            .and_then(|s| s.get(&addr).cloned());
        let vars = match inlined {
            Some(InlineSite { callee, holder }) => {
                match d
                    .inlined_call(&holder, &callee, VirtAddr(addr))
                    .map_err(dw)?
                {
                    Some(call) => d
                        .inlined_function(call.die, &callee)
                        .map_err(dw)?
                        .variables_at(VirtAddr(addr)),
                    None => Vec::new(),
                }
            }
            None => match d.variables_at(f.name, VirtAddr(addr)) {
                Ok(v) => v,
                Err(dwarf::Error::NoFunction(_)) => Vec::new(),
                Err(e) => return Err(dw(e)),
            },
        };
        let mut out = Vec::new();
        let mut missing = Vec::new();
        let mut reg_next = 0usize;
        for v in vars {
            let ty = self.dwarf_type(d, v.type_id)?;
            let name = v.name.trim_start_matches('~').to_string();
            let words = abi_words(&ty);
            let place = match v.location {
                Some(expr) => Some(VarPlace::Dwarf { expr, cfa_from_sp }),
                // At a RET, results are in the ABI's registers even where DWARF's
                // location list stops short of the RET.
                None if v.is_return && is_ret => words.and_then(|n| {
                    let regs = X86Reg::GO_INT_ARGS.get(reg_next..reg_next + n)?;
                    Some(VarPlace::Registers(regs.to_vec()))
                }),
                None => None,
            };
            if v.is_return {
                reg_next += words.unwrap_or(usize::MAX / 2);
            }
            match place {
                Some(place) => out.push(ContextVar {
                    name,
                    ty,
                    place,
                    is_param: v.is_param,
                    is_return: v.is_return,
                }),
                None => missing.push(name),
            }
        }
        if is_ret && !out.iter().any(|v| v.is_return) && reg_next == 0 {
            return Ok((register_results(), missing));
        }
        Ok((out, missing))
    }

    /// The variable `$name` at `addr`; `$return` is the first result.
    pub fn variable(&self, addr: u64, name: &str) -> Result<ContextVar, TargetError> {
        let (vars, missing) = self.variables_and_missing(addr)?;
        let found = if name == "return" {
            vars.iter().find(|v| v.is_return)
        } else {
            vars.iter().find(|v| v.name == name)
        };
        match found {
            Some(v) => Ok(v.clone()),
            // In scope, but optimised away here: said as such, not as "no variable".
            None if missing.iter().any(|m| m == name) => Err(TargetError::Other {
                message: format!(
                    "the value of '${name}' is not available at {}: the compiler kept it nowhere there",
                    self.describe(addr)
                ),
                help: Some(if vars.is_empty() {
                    "no variable has a value here; probe the function's out-of-line body ('.call') or a later statement".into()
                } else {
                    let v: Vec<String> = vars.iter().map(|v| format!("${}", v.name)).collect();
                    format!("available here: {}", v.join(", "))
                }),
            }),
            None => Err(TargetError::NoSuchVariable {
                name: name.to_string(),
                location: self.describe(addr),
                available: vars.iter().map(|v| v.name.clone()).collect(),
            }),
        }
    }

    fn describe(&self, addr: u64) -> String {
        if let Some(callee) = self.inlined_at(addr)
            && let Some(f) = self.bin.function_at(VirtAddr(addr))
        {
            return format!("the call of {callee} inlined into {} at {addr:#x}", f.name);
        }
        match self.bin.function_at(VirtAddr(addr)) {
            Some(f) => match self.bin.line_at(&f, VirtAddr(addr)) {
                Some((file, line)) => format!("{} ({file}:{line})", f.name),
                None => f.name.to_string(),
            },
            None => format!("{addr:#x}"),
        }
    }

    /// The type `@cast` names.
    pub fn named_type(&self, name: &str) -> Result<GoType, TargetError> {
        if let Some(d) = self.dwarf()
            && let Ok(Some(t)) = d.type_by_name(name)
        {
            return self.dwarf_type(d, t);
        }
        let synth = [
            ("runtime.g", Synth::G),
            ("runtime.m", Synth::M),
            ("runtime.gobuf", Synth::Gobuf),
            ("runtime.stack", Synth::Stack),
        ];
        if let Some((_, s)) = synth.iter().find(|(n, _)| *n == name)
            && self.layout().is_some()
        {
            return Ok(s.go_type());
        }
        // The standard types whose layout Go fixes, for a stripped executable.
        if self.dwarf().is_none()
            && let Some(t) = self.model_type(name)
        {
            return Ok(t);
        }
        Err(TargetError::NoSuchType {
            name: name.to_string(),
            nearest: lang::diag::nearest(name, synth.iter().map(|(n, _)| *n))
                .into_iter()
                .map(String::from)
                .collect(),
        })
    }

    /// The probe site at the entry of the function holding `addr`, when `addr` is
    /// one of its `RET`s.
    pub fn entry_site(&self, addr: u64) -> Option<u64> {
        let f = self.bin.function_at(VirtAddr(addr))?;
        let rets = x86::returns(&self.bin, &f).ok()?;
        if !rets.contains(&VirtAddr(addr)) {
            return None;
        }
        x86::probe_site(&self.bin, &f).ok().map(|s| s.addr.0)
    }

    /// The SP delta (bytes below the entry SP, return address not counted) at `addr`.
    pub fn sp_delta(&self, addr: u64) -> Option<i64> {
        let f = self.bin.function_at(VirtAddr(addr))?;
        self.bin.sp_delta(&f, VirtAddr(addr)).map(i64::from)
    }
}

/// The results of a function without DWARF: one integer in RAX.
fn register_results() -> Vec<ContextVar> {
    vec![ContextVar {
        name: "r0".into(),
        ty: Synth::Int64.go_type(),
        place: VarPlace::Registers(vec![X86Reg::Rax]),
        is_param: false,
        is_return: true,
    }]
}

/// How many integer registers the Go ABI gives a value of this type, if it is one
/// gotap can read from registers.
fn abi_words(ty: &GoType) -> Option<usize> {
    match ty.kind {
        GoKind::Bool
        | GoKind::Int { .. }
        | GoKind::Uintptr
        | GoKind::Pointer
        | GoKind::UnsafePointer
        | GoKind::Map
        | GoKind::Chan
        | GoKind::Func => Some(1),
        GoKind::String | GoKind::Interface => Some(2),
        GoKind::Slice => Some(3),
        _ => None,
    }
}

fn other(message: String) -> TargetError {
    TargetError::Other {
        message,
        help: None,
    }
}

fn no_dwarf() -> TargetError {
    TargetError::Other {
        message: "the executable has no DWARF, so its variables and types are unknown".into(),
        help: Some("rebuild without -ldflags=-w, or use @cast(addr, \"runtime.g\")".into()),
    }
}

fn dw(e: dwarf::Error) -> TargetError {
    other(format!("reading DWARF: {e}"))
}

/// `[930, 931, 932, 940]` → `["930-932", "940"]`.
fn line_ranges(lines: &[u32]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out
}

impl Target for GoTarget<'_> {
    fn resolve_probe_point(&self, probe: &ProcessProbe) -> Result<Vec<Location>, TargetError> {
        // A probed function's unit will be read for its variables: the pass over
        // DWARF keeps it (a wildcard may name any number of packages, and does not).
        let named = match &probe.site {
            Site::Function { pattern, .. } if !gobin::funcs::is_glob(pattern) => Some(pattern),
            Site::Statement { function, .. } if !gobin::funcs::is_glob(function) => Some(function),
            _ => None,
        };
        if let (Some(name), Ok(mut w)) = (named, self.probed_packages.lock()) {
            w.push(dwarf::package_of(name).to_string());
        }
        match &probe.site {
            Site::Function {
                pattern,
                ret,
                instances,
            } => self.resolve_function(pattern, *ret, *instances),
            Site::Statement {
                function,
                file,
                lines,
            } => self.resolve_statement(function, file.as_deref(), *lines),
            Site::Address(a) => self.resolve_address(*a),
        }
    }

    fn context_var(&self, at: &Location, name: &str) -> Result<GoType, TargetError> {
        if !(name == "return" || name == "r0") {
            self.dwarf_or_error()?;
        }
        match self.variable(at.address, name) {
            Ok(v) => Ok(v.ty),
            // At a RET the parameters are usually gone; the checker asks about them
            // for `@entry($x)`, which is evaluated at the function's entry. A direct
            // read at the RET is refused by the code generator.
            Err(e) => self
                .entry_site(at.address)
                .and_then(|entry| self.variable(entry, name).ok())
                .map(|v| v.ty)
                .ok_or(e),
        }
    }

    fn context_vars(
        &self,
        at: &Location,
        set: VarSet,
    ) -> Result<Vec<(String, GoType)>, TargetError> {
        Ok(self
            .variables(at.address)?
            .into_iter()
            .filter(|v| in_set(v, set))
            .map(|v| (v.name, v.ty))
            .collect())
    }

    fn member(&self, ty: &GoType, field: &str) -> Result<GoType, TargetError> {
        self.member_access(ty, field).map(|m| m.ty)
    }

    fn index(&self, ty: &GoType) -> Result<GoType, TargetError> {
        Ok(match self.index_access(ty)? {
            IndexAccess::Pointer { elem }
            | IndexAccess::Slice { elem }
            | IndexAccess::Array { elem, .. } => elem,
        })
    }

    fn cast_type(&self, name: &str, _module: Option<&str>) -> Result<GoType, TargetError> {
        self.named_type(name)
    }
}

/// Whether `v` belongs in `$$vars`, `$$parms`, `$$locals` or `$$return`.
pub fn in_set(v: &ContextVar, set: VarSet) -> bool {
    match set {
        VarSet::Vars => !v.is_return,
        VarSet::Parms => v.is_param && !v.is_return,
        VarSet::Locals => !v.is_param && !v.is_return,
        VarSet::Return => v.is_return,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ranges_join_neighbours() {
        assert_eq!(line_ranges(&[930, 931, 932, 940]), vec!["930-932", "940"]);
        assert_eq!(line_ranges(&[]), Vec::<String>::new());
    }
}
