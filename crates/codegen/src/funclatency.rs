//! The programs behind `gotap funclatency`: the wall time of each call of some Go
//! functions, as a log2 histogram per function, kept in the kernel.
//!
//! An entry program at each function's probe site (its `push rbp`, after the stack
//! check, so a call that grows its stack is timed once) saves the time under the
//! call's key; a return program at each of the function's `RET`s (never uretprobes:
//! Go moves stacks) looks the key up, adds the time taken to the function's
//! statistic and forgets the key. The key names one call and survives the stack
//! moving, as `@entry`'s does (see the `entry` module): the process, the running
//! `g` (R14 under Go's register ABI; unique among live goroutines) and the distance
//! from the top of its stack (`g.stack.hi`) to the frame's CFA, which copying a
//! stack keeps. A recursive call is deeper, so it has its own key.
//!
//! A call that never returns (a panic unwound past it, `runtime.Goexit`) leaves its
//! key behind: the next call at the same depth of the same goroutine finds it and
//! counts it as an entry without return, and user space counts those still there at
//! the end. A return without an entry (a call under way when tracing began) is
//! counted too. Neither is timed.
//!
//! The statistic of function `i` is entry `i` of a per-CPU array, one
//! `bpf::stats` slot with a log histogram: its count, its sum, min and max in
//! nanoseconds, and its buckets over the time in the tool's unit (ns, µs or ms), so
//! that the histogram reads in that unit and the sum keeps every nanosecond.

use bpf::script::HistSpec;
use bpf::stats::{WORD_BUCKETS, WORD_COUNT, WORD_MAX, WORD_MIN, WORD_SUM};
use bpf::{
    AluOp, AsmError, Cond, Helper, Insn, MapId, MapKind, MapSpec, ObjectSpec, ProgramSpec, Reg,
    Size, X86Reg,
};
use gobin::layout::RuntimeLayout;

use crate::emit::Emitter;

/// Calls that may be under way at once (beyond that, entries are not saved and are
/// counted as [`Counter::Unsaved`]).
pub const MAX_PENDING: u32 = 65536;

/// Bytes of a pending call's key: tgid (`u32`), 0 (`u32`), g, depth.
pub const KEY_BYTES: u32 = 24;

/// The per-function counters besides the statistic, at `4 * function + counter` of
/// [`Funclatency::counts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// An entry found the key of an earlier call that never returned.
    NoReturn = 0,
    /// A return found no entry (the call began before tracing did).
    NoEntry = 1,
    /// An entry could not be saved: too many calls under way.
    Unsaved = 2,
}

/// Counters per function.
pub const COUNTERS: u32 = 4;

/// A compiled funclatency.
#[derive(Debug)]
pub struct Funclatency {
    pub object: ObjectSpec,
    /// Program indexes: at the functions' probe sites, and at their `RET`s.
    pub entry: usize,
    pub ret: usize,
    /// Pending calls: key ([`KEY_BYTES`]) → entry time and function index.
    pub pending: MapId,
    /// Per-CPU array: function index → its `bpf::stats` slot ([`HIST`]).
    pub stats: MapId,
    /// Per-CPU array of `u64`: `COUNTERS * function + counter`.
    pub counts: MapId,
}

/// The statistic's layout: a log histogram.
pub const HIST: HistSpec = HistSpec::Log;

/// Compiles the programs for `functions` functions, with histogram buckets in units
/// of `unit_ns` nanoseconds. With `tgid`, other processes' calls are not timed.
pub fn funclatency(
    functions: u32,
    unit_ns: u64,
    tgid: Option<u32>,
    layout: &RuntimeLayout,
) -> Result<Funclatency, AsmError> {
    let storage = crate::storage::layout(
        &lang::ast::Script::default(),
        &lang::TypeInfo::default(),
        &mut Vec::new(),
    );
    let mut object = ObjectSpec::default();
    let pending = object.add_map(MapSpec {
        name: "lat_pending".into(),
        kind: MapKind::Hash,
        key_size: KEY_BYTES,
        value_size: 16,
        max_entries: MAX_PENDING,
        flags: 0,
    });
    let stats = object.add_map(MapSpec {
        name: "lat_stats".into(),
        kind: MapKind::PerCpuArray,
        key_size: 4,
        value_size: bpf::stats::slot_bytes(HIST) as u32,
        max_entries: functions.max(1),
        flags: 0,
    });
    let counts = object.add_map(MapSpec {
        name: "lat_counts".into(),
        kind: MapKind::PerCpuArray,
        key_size: 4,
        value_size: 8,
        max_entries: COUNTERS * functions.max(1),
        flags: 0,
    });
    let maps = Maps {
        pending,
        stats,
        counts,
    };
    let entry = entry_program(&storage, &maps, tgid, layout)?;
    let ret = return_program(&storage, &maps, tgid, layout, unit_ns)?;
    object
        .programs
        .push(ProgramSpec::new("gotap_lat_in", entry));
    object.programs.push(ProgramSpec::new("gotap_lat_ret", ret));
    Ok(Funclatency {
        object,
        entry: 0,
        ret: 1,
        pending,
        stats,
        counts,
    })
}

struct Maps {
    pending: MapId,
    stats: MapId,
    counts: MapId,
}

/// BPF stack offsets: the key, the value, a word read from the target.
const KEY: i16 = -24;
const VALUE: i16 = -40;
const WORD: i16 = -48;
const INDEX: i16 = -52;

/// With R6 = ctx: stops (jumps to `out`) for another process; builds the call's key
/// at [`KEY`]. Clobbers R0–R5, R7.
fn key(em: &mut Emitter<'_>, tgid: Option<u32>, layout: &RuntimeLayout, out: bpf::Label) {
    let a = &mut em.a;
    a.call(Helper::GetCurrentPidTgid);
    a.emit(Insn::alu64(AluOp::Rsh, Reg::R0, 32));
    if let Some(t) = tgid {
        // Process ids fit in 22 bits, so the signed immediate holds any of them.
        a.jmp(Cond::Ne, Reg::R0, t as i32, out);
    }
    a.emit(Insn::stx(Size::DW, Reg::R10, KEY, Reg::R0));
    a.emit(Insn::ldx(Size::DW, Reg::R7, Reg::R6, X86Reg::R14.offset()));
    a.emit(Insn::stx(Size::DW, Reg::R10, KEY + 8, Reg::R7));
    // g.stack.hi; a failed read (R14 not a g) leaves 0, and the key is still the
    // same at the entry and the return of one call.
    a.emit(Insn::st(Size::DW, Reg::R10, WORD, 0));
    a.emit(Insn::mov64(Reg::R1, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R1, i32::from(WORD)));
    a.emit(Insn::mov64(Reg::R2, 8));
    a.emit(Insn::mov64(Reg::R3, Reg::R7));
    a.emit(Insn::alu64(AluOp::Add, Reg::R3, layout.g_stack_hi as i32));
    a.call(Helper::ProbeReadUser);
    // The CFA: both sites have an SP delta of 0 (the caller checks), so it is RSP
    // plus the return address.
    a.emit(Insn::ldx(Size::DW, Reg::R0, Reg::R10, WORD));
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R6, X86Reg::Rsp.offset()));
    a.emit(Insn::alu64(AluOp::Add, Reg::R1, 8));
    a.emit(Insn::alu64(AluOp::Sub, Reg::R0, Reg::R1));
    a.emit(Insn::stx(Size::DW, Reg::R10, KEY + 16, Reg::R0));
}

/// Adds one to counter `which` of the function in R7. Clobbers R0–R3.
fn bump(em: &mut Emitter<'_>, counts: MapId, which: Counter) {
    let a = &mut em.a;
    let skip = a.label();
    a.emit(Insn::mov64(Reg::R0, Reg::R7));
    a.emit(Insn::alu64(AluOp::Mul, Reg::R0, COUNTERS as i32));
    a.emit(Insn::alu64(AluOp::Add, Reg::R0, which as i32));
    a.emit(Insn::stx(Size::W, Reg::R10, INDEX, Reg::R0));
    a.ld_map(Reg::R1, counts);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, i32::from(INDEX)));
    a.call(Helper::MapLookupElem);
    a.jmp(Cond::Eq, Reg::R0, 0, skip);
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
    a.emit(Insn::alu64(AluOp::Add, Reg::R1, 1));
    a.emit(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
    a.bind(skip);
}

fn entry_program(
    storage: &crate::storage::Storage,
    maps: &Maps,
    tgid: Option<u32>,
    layout: &RuntimeLayout,
) -> Result<bpf::Program, AsmError> {
    let mut em = Emitter::new(storage);
    let out = em.a.label();
    em.a.emit(Insn::mov64(Reg::R6, Reg::R1));
    key(&mut em, tgid, layout, out);
    let a = &mut em.a;
    a.emit(Insn::mov64(Reg::R1, Reg::R6));
    a.call(Helper::GetAttachCookie);
    a.emit(Insn::mov64(Reg::R7, Reg::R0));
    a.emit(Insn::stx(Size::DW, Reg::R10, VALUE + 8, Reg::R7));
    a.call(Helper::KtimeGetNs);
    a.emit(Insn::stx(Size::DW, Reg::R10, VALUE, Reg::R0));
    // A key already there is a call at this depth that never returned.
    let saved = a.label();
    let full = a.label();
    update(a, maps.pending, bpf::helper::NOEXIST);
    a.jmp(Cond::Eq, Reg::R0, 0, saved);
    a.jmp(Cond::Ne, Reg::R0, -libc_eexist(), full);
    // Counted against the function of the call that never returned, which may be
    // another one at the same depth.
    let a = &mut em.a;
    a.ld_map(Reg::R1, maps.pending);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, i32::from(KEY)));
    a.call(Helper::MapLookupElem);
    let stale = a.label();
    a.jmp(Cond::Eq, Reg::R0, 0, stale);
    a.emit(Insn::ldx(Size::DW, Reg::R7, Reg::R0, 8));
    a.bind(stale);
    bump(&mut em, maps.counts, Counter::NoReturn);
    update(&mut em.a, maps.pending, bpf::helper::ANY);
    em.a.ja(saved);
    em.a.bind(full);
    bump(&mut em, maps.counts, Counter::Unsaved);
    em.a.bind(saved);
    em.a.bind(out);
    em.a.emit(Insn::mov64(Reg::R0, 0)).exit();
    em.a.finish()
}

/// `EEXIST`, which `map_update_elem` returns negated for a key `BPF_NOEXIST` finds.
const fn libc_eexist() -> i32 {
    17
}

/// `pending[KEY] = VALUE` with `flags`; R0 = the result.
fn update(a: &mut bpf::Asm, map: MapId, flags: i32) {
    a.ld_map(Reg::R1, map);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, i32::from(KEY)));
    a.emit(Insn::mov64(Reg::R3, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R3, i32::from(VALUE)));
    a.emit(Insn::mov64(Reg::R4, flags));
    a.call(Helper::MapUpdateElem);
}

fn return_program(
    storage: &crate::storage::Storage,
    maps: &Maps,
    tgid: Option<u32>,
    layout: &RuntimeLayout,
    unit_ns: u64,
) -> Result<bpf::Program, AsmError> {
    let mut em = Emitter::new(storage);
    let out = em.a.label();
    // The time first: what the probe costs before it is not the call's.
    let a = &mut em.a;
    a.emit(Insn::mov64(Reg::R6, Reg::R1));
    a.call(Helper::KtimeGetNs);
    a.emit(Insn::mov64(Reg::R8, Reg::R0));
    key(&mut em, tgid, layout, out);
    let a = &mut em.a;
    a.emit(Insn::mov64(Reg::R1, Reg::R6));
    a.call(Helper::GetAttachCookie);
    a.emit(Insn::mov64(Reg::R7, Reg::R0));
    a.ld_map(Reg::R1, maps.pending);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, i32::from(KEY)));
    a.call(Helper::MapLookupElem);
    let found = a.label();
    a.jmp(Cond::Ne, Reg::R0, 0, found);
    bump(&mut em, maps.counts, Counter::NoEntry);
    em.a.ja(out);
    let a = &mut em.a;
    a.bind(found);
    // R8 = the call's time.
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
    a.emit(Insn::alu64(AluOp::Sub, Reg::R8, Reg::R1));
    a.ld_map(Reg::R1, maps.pending);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, i32::from(KEY)));
    a.call(Helper::MapDeleteElem);
    // R9 = the function's slot on this CPU.
    a.emit(Insn::stx(Size::W, Reg::R10, INDEX, Reg::R7));
    a.ld_map(Reg::R1, maps.stats);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, i32::from(INDEX)));
    a.call(Helper::MapLookupElem);
    a.jmp(Cond::Eq, Reg::R0, 0, out);
    a.emit(Insn::mov64(Reg::R9, Reg::R0));
    let word = |w: usize| (w * 8) as i16;
    // Per-CPU: no other writer, no atomics. The first call sets min and max.
    let (first, counted, no_min, no_max) = (a.label(), a.label(), a.label(), a.label());
    a.emit(Insn::ldx(Size::DW, Reg::R2, Reg::R9, word(WORD_COUNT)));
    a.jmp(Cond::Eq, Reg::R2, 0, first);
    a.emit(Insn::ldx(Size::DW, Reg::R3, Reg::R9, word(WORD_MIN)));
    a.jmp(Cond::Sge, Reg::R8, Reg::R3, no_min);
    a.emit(Insn::stx(Size::DW, Reg::R9, word(WORD_MIN), Reg::R8));
    a.bind(no_min);
    a.emit(Insn::ldx(Size::DW, Reg::R3, Reg::R9, word(WORD_MAX)));
    a.jmp(Cond::Sle, Reg::R8, Reg::R3, no_max);
    a.emit(Insn::stx(Size::DW, Reg::R9, word(WORD_MAX), Reg::R8));
    a.bind(no_max);
    a.ja(counted);
    a.bind(first);
    a.emit(Insn::stx(Size::DW, Reg::R9, word(WORD_MIN), Reg::R8));
    a.emit(Insn::stx(Size::DW, Reg::R9, word(WORD_MAX), Reg::R8));
    a.bind(counted);
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, 1));
    a.emit(Insn::stx(Size::DW, Reg::R9, word(WORD_COUNT), Reg::R2));
    a.emit(Insn::ldx(Size::DW, Reg::R3, Reg::R9, word(WORD_SUM)));
    a.emit(Insn::alu64(AluOp::Add, Reg::R3, Reg::R8));
    a.emit(Insn::stx(Size::DW, Reg::R9, word(WORD_SUM), Reg::R3));
    // The bucket of the time in the tool's unit, by the rule of `bpf::stats`.
    a.emit(Insn::mov64(Reg::R0, Reg::R8));
    if unit_ns > 1 {
        em.imm(Reg::R1, unit_ns as i64);
        em.a.emit(Insn::alu64(AluOp::Div, Reg::R0, Reg::R1));
    }
    crate::lower::bucket(&mut em, HIST);
    let a = &mut em.a;
    let last = bpf::stats::buckets(HIST) as i32 - 1;
    let in_range = a.label();
    a.jmp(Cond::Le, Reg::R0, last, in_range);
    a.emit(Insn::mov64(Reg::R0, last));
    a.bind(in_range);
    a.emit(Insn::alu64(AluOp::Lsh, Reg::R0, 3));
    a.emit(Insn::alu64(AluOp::Add, Reg::R0, Reg::R9));
    let o = word(WORD_BUCKETS);
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, o));
    a.emit(Insn::alu64(AluOp::Add, Reg::R1, 1));
    a.emit(Insn::stx(Size::DW, Reg::R0, o, Reg::R1));
    a.bind(out);
    a.emit(Insn::mov64(Reg::R0, 0)).exit();
    em.a.finish()
}
