//! The programs behind `gotap funclatency`: the wall time of each call of some Go
//! functions, as a log2 histogram per function, kept in the kernel.
//!
//! An entry program at each function's probe site (its `push rbp`, after the stack
//! check, so a call that grows its stack is timed once) saves the time under the
//! call's key; a return program at each of the function's `RET`s (never uretprobes:
//! Go moves stacks) finds the key, adds the time taken to the function's statistic
//! and frees its place. The key names one call and survives the stack moving, as
//! `@entry`'s does (see the `entry` module): the process, the running `g` (R14
//! under Go's register ABI; unique among live goroutines) and the distance from the
//! top of its stack (`g.stack.hi`) to the frame's CFA, which copying a stack keeps.
//! A recursive call is deeper, so it has its own key.
//!
//! The calls under way are a table in an array map, not a hash map: a hash map's
//! update and delete cost about 250 ns a call here, against a few ns for the array's
//! lookups, which the verifier inlines. A key hashes to a place and is kept at the
//! first free one of the [`PROBES`] places from there; a place is taken with a
//! compare-and-exchange of its tag word (two goroutines on two CPUs may want it at
//! once), filled in by the one goroutine that owns the key, and freed by a store of
//! 0 when the call returns. Lookups look at all [`PROBES`] places, as a freed place
//! may sit before a key's. A call with no free place among them is not timed and is
//! counted ([`Counter::Unsaved`]).
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

/// Places in the table of calls under way (a power of two).
pub const SLOTS: u32 = 65536;

/// Places a key may be kept at, from the one it hashes to.
pub const PROBES: u32 = 8;

/// The words of a place in the table: its tag (0 when free, else the key's hash with
/// its low bit set), the key's `g` and depth, the entry time, and the process in
/// the low half of the last word with the function index in the high half.
pub const SLOT_WORDS: usize = 5;
pub const WORD_TAG: usize = 0;
pub const WORD_G: usize = 1;
pub const WORD_DEPTH: usize = 2;
pub const WORD_TIME: usize = 3;
pub const WORD_WHO: usize = 4;

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
    /// The calls under way: a mappable array of [`SLOTS`] places of
    /// [`SLOT_WORDS`] words.
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
        kind: MapKind::Array,
        key_size: 4,
        value_size: (SLOT_WORDS * 8) as u32,
        max_entries: SLOTS,
        flags: bpf::MAP_F_MMAPABLE,
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

/// With the key at [`KEY`]: R8 = its tag (its hash, low bit set, never 0), R6 =
/// the place it hashes to. Clobbers R1–R3.
fn tag(a: &mut bpf::Asm) {
    // g, the depth and the process, spread over the word, then mixed (two rounds of
    // multiply and fold) so that the high bits pick the place.
    a.emit(Insn::ldx(Size::DW, Reg::R8, Reg::R10, KEY + 8));
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R10, KEY + 16));
    a.emit(Insn::alu64(AluOp::Lsh, Reg::R1, 20));
    a.emit(Insn::alu64(AluOp::Xor, Reg::R8, Reg::R1));
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R10, KEY));
    a.emit(Insn::alu64(AluOp::Lsh, Reg::R1, 42));
    a.emit(Insn::alu64(AluOp::Xor, Reg::R8, Reg::R1));
    for k in [0x9e37_79b9_7f4a_7c15_u64, 0xd6e8_feb8_6659_fd93] {
        for i in Insn::ld_imm64(Reg::R2, k) {
            a.emit(i);
        }
        a.emit(Insn::alu64(AluOp::Mul, Reg::R8, Reg::R2));
        a.emit(Insn::mov64(Reg::R3, Reg::R8));
        a.emit(Insn::alu64(AluOp::Rsh, Reg::R3, 32));
        a.emit(Insn::alu64(AluOp::Xor, Reg::R8, Reg::R3));
    }
    a.emit(Insn::mov64(Reg::R6, Reg::R8));
    a.emit(Insn::alu64(
        AluOp::Rsh,
        Reg::R6,
        64 - SLOTS.trailing_zeros() as i32,
    ));
    a.emit(Insn::alu64(AluOp::Or, Reg::R8, 1));
}

/// R0 = place `probe` from the one in R6 (null only if the map refuses).
/// Clobbers R1–R5.
fn place(a: &mut bpf::Asm, pending: MapId, probe: u32) {
    a.emit(Insn::mov64(Reg::R1, Reg::R6));
    a.emit(Insn::alu64(AluOp::Add, Reg::R1, probe as i32));
    a.emit(Insn::alu64(AluOp::And, Reg::R1, (SLOTS - 1) as i32));
    a.emit(Insn::stx(Size::W, Reg::R10, INDEX, Reg::R1));
    a.ld_map(Reg::R1, pending);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, i32::from(INDEX)));
    a.call(Helper::MapLookupElem);
}

/// The offset of word `w` of a place (or of a statistic's slot).
const fn word(w: usize) -> i16 {
    (w * 8) as i16
}

/// Looks at the [`PROBES`] places from the one in R6 for the key at [`KEY`] with
/// tag R8: jumps to `ours` with R0 = its place; at each other place (R0, not null),
/// runs `other` with the label of the next. Clobbers R0–R5.
fn find(
    a: &mut bpf::Asm,
    pending: MapId,
    ours: bpf::Label,
    mut other: impl FnMut(&mut bpf::Asm, bpf::Label),
) {
    for probe in 0..PROBES {
        let (next, not_ours) = (a.label(), a.label());
        place(a, pending, probe);
        a.jmp(Cond::Eq, Reg::R0, 0, next);
        unless_ours(a, not_ours);
        a.ja(ours);
        a.bind(not_ours);
        other(a, next);
        a.bind(next);
    }
}

/// Jumps to `other` unless the place in R0 (not null) holds the key at [`KEY`]
/// with tag R8. Clobbers R1, R2.
fn unless_ours(a: &mut bpf::Asm, other: bpf::Label) {
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, word(WORD_TAG)));
    a.jmp(Cond::Ne, Reg::R1, Reg::R8, other);
    for (w, k) in [(WORD_G, KEY + 8), (WORD_DEPTH, KEY + 16)] {
        a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, word(w)));
        a.emit(Insn::ldx(Size::DW, Reg::R2, Reg::R10, k));
        a.jmp(Cond::Ne, Reg::R1, Reg::R2, other);
    }
    a.emit(Insn::ldx(Size::W, Reg::R1, Reg::R0, word(WORD_WHO)));
    a.emit(Insn::ldx(Size::W, Reg::R2, Reg::R10, KEY));
    a.jmp(Cond::Ne, Reg::R1, Reg::R2, other);
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
    a.call(Helper::KtimeGetNs);
    a.emit(Insn::stx(Size::DW, Reg::R10, VALUE, Reg::R0));
    tag(a);
    // R9 = the first free place. A place holding this key is a call at this depth
    // that never returned: it is counted (against its own function, which may be
    // another one at the same depth) and the place reused.
    let (stale, fill, full) = (a.label(), a.label(), a.label());
    a.emit(Insn::mov64(Reg::R9, 0));
    find(a, maps.pending, stale, |a, next| {
        a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, word(WORD_TAG)));
        a.jmp(Cond::Ne, Reg::R1, 0, next);
        a.jmp(Cond::Ne, Reg::R9, 0, next);
        a.emit(Insn::mov64(Reg::R9, Reg::R0));
    });
    // Taken if still free; another CPU may have taken it since, for another key,
    // and then the first free place is looked for again.
    a.jmp(Cond::Eq, Reg::R9, 0, full);
    a.emit(Insn::mov64(Reg::R0, 0));
    a.emit(Insn::atomic_cmpxchg64(Reg::R9, word(WORD_TAG), Reg::R8));
    a.jmp(Cond::Eq, Reg::R0, 0, fill);
    for probe in 0..PROBES {
        let next = a.label();
        place(a, maps.pending, probe);
        a.jmp(Cond::Eq, Reg::R0, 0, next);
        a.emit(Insn::mov64(Reg::R9, Reg::R0));
        a.emit(Insn::mov64(Reg::R0, 0));
        a.emit(Insn::atomic_cmpxchg64(Reg::R9, word(WORD_TAG), Reg::R8));
        a.jmp(Cond::Eq, Reg::R0, 0, fill);
        a.bind(next);
    }
    a.ja(full);
    a.bind(stale);
    a.emit(Insn::mov64(Reg::R9, Reg::R0));
    a.emit(Insn::stx(Size::DW, Reg::R10, VALUE + 8, Reg::R7));
    a.emit(Insn::ldx(Size::W, Reg::R7, Reg::R9, word(WORD_WHO) + 4));
    bump(&mut em, maps.counts, Counter::NoReturn);
    let a = &mut em.a;
    a.emit(Insn::ldx(Size::DW, Reg::R7, Reg::R10, VALUE + 8));
    // The place is this goroutine's: no other writer.
    a.bind(fill);
    for (w, k) in [
        (WORD_G, KEY + 8),
        (WORD_DEPTH, KEY + 16),
        (WORD_TIME, VALUE),
    ] {
        a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R10, k));
        a.emit(Insn::stx(Size::DW, Reg::R9, word(w), Reg::R1));
    }
    a.emit(Insn::ldx(Size::W, Reg::R1, Reg::R10, KEY));
    a.emit(Insn::stx(Size::W, Reg::R9, word(WORD_WHO), Reg::R1));
    a.emit(Insn::stx(Size::W, Reg::R9, word(WORD_WHO) + 4, Reg::R7));
    a.ja(out);
    a.bind(full);
    bump(&mut em, maps.counts, Counter::Unsaved);
    em.a.bind(out);
    em.a.emit(Insn::mov64(Reg::R0, 0)).exit();
    em.a.finish()
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
    a.emit(Insn::stx(Size::DW, Reg::R10, VALUE, Reg::R0));
    key(&mut em, tgid, layout, out);
    let a = &mut em.a;
    a.emit(Insn::mov64(Reg::R1, Reg::R6));
    a.call(Helper::GetAttachCookie);
    a.emit(Insn::mov64(Reg::R7, Reg::R0));
    // R6 (the context) is not needed any more: it becomes the key's place.
    let a = &mut em.a;
    tag(a);
    let found = a.label();
    find(a, maps.pending, found, |_, _| {});
    bump(&mut em, maps.counts, Counter::NoEntry);
    em.a.ja(out);
    let a = &mut em.a;
    a.bind(found);
    // R8 = the call's time; the place is free again.
    a.emit(Insn::ldx(Size::DW, Reg::R1, Reg::R0, word(WORD_TIME)));
    a.emit(Insn::st(Size::DW, Reg::R0, word(WORD_TAG), 0));
    a.emit(Insn::ldx(Size::DW, Reg::R8, Reg::R10, VALUE));
    a.emit(Insn::alu64(AluOp::Sub, Reg::R8, Reg::R1));
    // R9 = the function's slot on this CPU.
    a.emit(Insn::stx(Size::W, Reg::R10, INDEX, Reg::R7));
    a.ld_map(Reg::R1, maps.stats);
    a.emit(Insn::mov64(Reg::R2, Reg::R10));
    a.emit(Insn::alu64(AluOp::Add, Reg::R2, i32::from(INDEX)));
    a.call(Helper::MapLookupElem);
    a.jmp(Cond::Eq, Reg::R0, 0, out);
    a.emit(Insn::mov64(Reg::R9, Reg::R0));
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
