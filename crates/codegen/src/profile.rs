//! The program behind `gotap profile`: run by a perf `cpu-clock` event on every CPU
//! (see `sys::CpuClock`), it takes a sample of the traced process when the event
//! interrupted one of its threads: the goroutine's id and the stack,
//! unwound by frame pointers in the kernel and continued from the system stack into
//! the goroutine (`backtrace::sample_walk`, which also keeps the caller of a
//! function sampled before its frame was built), counted per (goroutine, stack) in a
//! per-CPU hash map that user space reads at the end. Nothing crosses to user space
//! per sample.
//!
//! A map key holds at most 512 bytes (the kernel's limit, a BPF stack), so a stack
//! is kept to its innermost [`KEY_FRAMES`] frames; samples that interrupted the
//! process in the kernel (a system call, a page fault) are unwound from the user
//! registers the kernel saved at its entry (`crate::sample`, as a script's sampling
//! probe is), and counted apart;
//! samples the full map had no room for are counted.

use bpf::{
    AluOp, Cond, Helper, Insn, MapId, MapKind, MapSpec, ObjectSpec, ProgramSpec, Reg, Size, X86Reg,
};
use gobin::layout::RuntimeLayout;

use crate::emit::{CTX, Emitter, SCRATCH};

/// Frames a sample's key keeps, innermost first.
pub const KEY_FRAMES: u32 = 61;
/// Words of a key before the walk: the goroutine id, then the goroutine's `g.labels`.
pub const KEY_HEAD: u32 = 2;
/// The word of a key that holds `g.labels`.
pub const KEY_LABELS: u32 = 1;
/// Labels of a set kept (a set with more keeps the first it holds).
pub const MAX_LABELS: u32 = 8;
/// Bytes of a label's key, and of its value, kept.
pub const LABEL_TEXT: u32 = 32;
/// Bytes of one label in a [`Profile::labels`] value: a word that is 1 when it is
/// there, the key's and the value's lengths (as long as they are), then
/// [`LABEL_TEXT`] bytes of each.
pub const LABEL_BYTES: u32 = 24 + 2 * LABEL_TEXT;

/// How a Go release keeps a goroutine's label set (`runtime/pprof`'s `labelMap`,
/// to which `g.labels` points).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelSet {
    /// Before Go 1.24: `map[string]string`, a classic hash map; its first bucket
    /// holds up to 8 labels.
    HashMap,
    /// From Go 1.24: `struct { list []label }`, each label two strings, sorted by key.
    Slice,
}

impl LabelSet {
    /// The label set of a Go `major.minor` binary.
    pub fn of(major: u32, minor: u32) -> LabelSet {
        if major == 1 && minor < 24 {
            LabelSet::HashMap
        } else {
            LabelSet::Slice
        }
    }
}
/// Bytes of a key: the head, the walk's count word, the frames.
pub const KEY_BYTES: u32 = 8 * KEY_HEAD + 8 + 8 * KEY_FRAMES;
/// Distinct (goroutine, stack) pairs kept.
pub const MAX_SAMPLES: u32 = 16384;

/// Counters, at their index of [`Profile::counts`] (per CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Samples of the process unwound and counted.
    User = 0,
    /// Of the samples, those that found the process in the kernel, unwound from its
    /// user registers.
    Kernel = 1,
    /// Samples the full map had no room for (or whose user registers did not read).
    Dropped = 2,
}

/// A compiled profiler.
#[derive(Debug)]
pub struct Profile {
    pub object: ObjectSpec,
    /// Per-CPU hash: key ([`KEY_BYTES`]) → samples.
    pub samples: MapId,
    /// Per-CPU array of `u64` counters ([`Counter`]).
    pub counts: MapId,
    /// Hash: `g.labels` → [`MAX_LABELS`] labels of [`LABEL_BYTES`].
    pub labels: MapId,
}

/// Compiles the program for process `tgid`, whose binary's functions span
/// `text_len` bytes (see `backtrace::sample_walk`).
pub fn profile(
    tgid: u32,
    layout: Option<&RuntimeLayout>,
    set: LabelSet,
    text_len: u64,
) -> Result<Profile, bpf::AsmError> {
    let mut diags = Vec::new();
    let storage = crate::storage::layout(
        &lang::ast::Script::default(),
        &lang::TypeInfo::default(),
        &mut diags,
    );
    let mut object = storage.object.clone();
    let samples = object.add_map(MapSpec {
        name: "prof_samples".into(),
        kind: MapKind::PerCpuHash,
        key_size: KEY_BYTES,
        value_size: 8,
        max_entries: MAX_SAMPLES,
        flags: 0,
    });
    let counts = object.add_map(MapSpec {
        name: "prof_counts".into(),
        kind: MapKind::PerCpuArray,
        key_size: 4,
        value_size: 8,
        max_entries: 4,
        flags: 0,
    });
    let labels = object.add_map(MapSpec {
        name: "prof_labels".into(),
        kind: MapKind::Hash,
        key_size: 8,
        value_size: MAX_LABELS * LABEL_BYTES,
        max_entries: 4096,
        flags: 0,
    });
    let mut em = Emitter::new(&storage);
    let out = em.end;
    em.e(Insn::mov64(CTX, Reg::R1));
    // Another process, or the idle task: nothing, before any map is touched.
    em.a.call(Helper::GetCurrentPidTgid);
    em.e(Insn::alu64(AluOp::Rsh, Reg::R0, 32));
    em.a.jmp(Cond::Ne, Reg::R0, tgid as i32, out);
    // The scratch area (the key is larger than the BPF stack).
    em.e(Insn::st(Size::W, Reg::R10, -8, 0));
    em.a.ld_map(Reg::R1, storage.scratch);
    em.e(Insn::mov64(Reg::R2, Reg::R10));
    em.e(Insn::alu64(AluOp::Add, Reg::R2, -8));
    em.a.call(Helper::MapLookupElem);
    em.a.jmp(Cond::Eq, Reg::R0, 0, out);
    em.e(Insn::mov64(SCRATCH, Reg::R0));
    // The registers are read from a copy of the user ones from here on (see
    // `crate::sample`): a sample in the kernel is the user code's that entered it.
    let (unread, user) = (em.a.label(), em.a.label());
    crate::sample::user_registers(&mut em, unread);
    crate::sample::user_mode(&mut em, Reg::R0);
    em.a.jmp(Cond::Ne, Reg::R0, 0, user);
    bump(&mut em, counts, Counter::Kernel);
    em.a.ja(user);
    em.a.bind(unread);
    bump(&mut em, counts, Counter::Dropped);
    em.a.ja(out);
    em.a.bind(user);
    // The key, zeroed (the frames past the walk's are part of it), then filled.
    let key = em.alloc(8 * KEY_HEAD + 8 + 8 * bpf::script::MAX_FRAMES);
    for w in 0..KEY_BYTES / 8 {
        em.store_imm(key + 8 * w, Size::DW, 0);
    }
    goid(&mut em, layout, key);
    if let Some(l) = layout {
        label_set(&mut em, l, set, labels, key + 8 * KEY_LABELS);
    }
    crate::backtrace::sample_walk(&mut em, layout.copied(), text_len, key + 8 * KEY_HEAD);
    // samples[key] += 1 on this CPU, or = 1.
    let (found, done) = (em.a.label(), em.a.label());
    em.a.ld_map(Reg::R1, samples);
    em.addr(Reg::R2, key);
    em.a.call(Helper::MapLookupElem);
    em.a.jmp(Cond::Ne, Reg::R0, 0, found);
    let one = em.alloc(8);
    em.store_imm(one, Size::DW, 1);
    em.a.ld_map(Reg::R1, samples);
    em.addr(Reg::R2, key);
    em.addr(Reg::R3, one);
    em.e(Insn::mov64(Reg::R4, 0));
    em.a.call(Helper::MapUpdateElem);
    em.a.jmp(Cond::Eq, Reg::R0, 0, done);
    bump(&mut em, counts, Counter::Dropped);
    em.a.ja(out);
    em.a.bind(found);
    em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
    em.e(Insn::alu64(AluOp::Add, Reg::R1, 1));
    em.e(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
    em.a.bind(done);
    bump(&mut em, counts, Counter::User);
    em.a.bind(out);
    let abort = em.abort;
    em.a.bind(abort);
    em.e(Insn::mov64(Reg::R0, 0));
    em.a.exit();
    let high = em.high;
    let insns = em.a.finish()?;
    if let Some(m) = object.maps.get_mut(storage.scratch.0 as usize) {
        m.value_size = (high + storage.max_string).div_ceil(8) * 8;
    }
    object
        .programs
        .push(ProgramSpec::new("gotap_profile", insns));
    Ok(Profile {
        object,
        samples,
        counts,
        labels,
    })
}

/// `scratch[at]` = the interrupted goroutine's `g.labels` (of `g.m.curg`, as for
/// its id), and its labels copied into `labels` if they are not there yet.
fn label_set(em: &mut Emitter<'_>, l: &RuntimeLayout, set: LabelSet, labels: MapId, at: u32) {
    let done = em.a.label();
    em.ctx_reg(Reg::R7, X86Reg::R14);
    em.a.jmp(Cond::Eq, Reg::R7, 0, done);
    for off in [l.g_m, l.m_curg, l.g_labels] {
        em.read_user_u64(Reg::R7, Reg::R7, off as i64);
        em.a.jmp(Cond::Eq, Reg::R7, 0, done);
    }
    em.store(at, Reg::R7);
    em.a.ld_map(Reg::R1, labels);
    em.addr(Reg::R2, at);
    em.a.call(Helper::MapLookupElem);
    em.a.jmp(Cond::Ne, Reg::R0, 0, done);
    let value = em.alloc(MAX_LABELS * LABEL_BYTES);
    for w in 0..MAX_LABELS * LABEL_BYTES / 8 {
        em.store_imm(value + 8 * w, Size::DW, 0);
    }
    match set {
        LabelSet::Slice => slice_labels(em, at, value),
        LabelSet::HashMap => map_labels(em, at, value),
    }
    em.a.ld_map(Reg::R1, labels);
    em.addr(Reg::R2, at);
    em.addr(Reg::R3, value);
    em.e(Insn::mov64(Reg::R4, 1)); // BPF_NOEXIST
    em.a.call(Helper::MapUpdateElem);
    em.release(value);
    em.a.bind(done);
}

/// Go 1.24 on: `*labels` is a slice of `{key, value string}` (32 bytes each).
fn slice_labels(em: &mut Emitter<'_>, at: u32, value: u32) {
    let (list, n) = (em.alloc(8), em.alloc(8));
    em.load(Reg::R7, at);
    em.read_user_u64(Reg::R0, Reg::R7, 0);
    em.store(list, Reg::R0);
    em.load(Reg::R7, at);
    em.read_user_u64(Reg::R0, Reg::R7, 8);
    em.store(n, Reg::R0);
    let done = em.a.label();
    for i in 0..MAX_LABELS {
        em.load(Reg::R0, n);
        em.a.jmp(Cond::Le, Reg::R0, i as i32, done);
        em.load(Reg::R7, list);
        em.imm(Reg::R0, 32 * i as i64);
        em.e(Insn::alu64(AluOp::Add, Reg::R7, Reg::R0));
        label(em, value + i * LABEL_BYTES, 16);
    }
    em.a.bind(done);
    em.release(list);
}

/// Before Go 1.24: `*labels` is a `map[string]string` (an `hmap` pointer). Its
/// first bucket (all of a map of up to 8 labels) is read: `tophash [8]uint8`, 8
/// keys, 8 values (strings), a slot in use when its tophash is 5 (`minTopHash`) or
/// more.
fn map_labels(em: &mut Emitter<'_>, at: u32, value: u32) {
    const BUCKETS: i64 = 16;
    const KEYS: i64 = 8;
    const VALUES: i64 = 8 + 8 * 16;
    let (bucket, tophash) = (em.alloc(8), em.alloc(8));
    let done = em.a.label();
    em.load(Reg::R7, at);
    em.read_user_u64(Reg::R7, Reg::R7, 0);
    em.a.jmp(Cond::Eq, Reg::R7, 0, done);
    em.read_user_u64(Reg::R7, Reg::R7, BUCKETS);
    em.a.jmp(Cond::Eq, Reg::R7, 0, done);
    em.store(bucket, Reg::R7);
    em.read_user_u64(Reg::R0, Reg::R7, 0);
    em.store(tophash, Reg::R0);
    for j in 0..MAX_LABELS {
        let next = em.a.label();
        em.load(Reg::R0, tophash);
        em.e(Insn::alu64(AluOp::Rsh, Reg::R0, 8 * j as i32));
        em.e(Insn::alu64(AluOp::And, Reg::R0, 0xff));
        em.a.jmp(Cond::Lt, Reg::R0, 5, next);
        em.load(Reg::R7, bucket);
        em.imm(Reg::R0, KEYS + 16 * j as i64);
        em.e(Insn::alu64(AluOp::Add, Reg::R7, Reg::R0));
        label(em, value + j * LABEL_BYTES, VALUES - KEYS);
        em.a.bind(next);
    }
    em.a.bind(done);
    em.release(bucket);
}

/// One label into `scratch[entry]`: the key is the string at R7, the value the
/// string `gap` bytes further.
fn label(em: &mut Emitter<'_>, entry: u32, gap: i64) {
    let base = em.alloc(8);
    em.store(base, Reg::R7);
    em.store_imm(entry, Size::DW, 1);
    for (k, off) in [(0u32, 0i64), (1, gap)] {
        let (len_at, text_at) = (entry + 8 + 8 * k, entry + 24 + LABEL_TEXT * k);
        em.load(Reg::R7, base);
        em.read_user_u64(Reg::R0, Reg::R7, off + 8);
        em.store(len_at, Reg::R0);
        em.load(Reg::R7, base);
        em.read_user_u64(Reg::R8, Reg::R7, off);
        let skip = em.a.label();
        em.load(Reg::R2, len_at);
        em.a.jmp(Cond::Eq, Reg::R2, 0, skip);
        let short = em.a.label();
        em.a.jmp(Cond::Le, Reg::R2, LABEL_TEXT as i32, short);
        em.e(Insn::mov64(Reg::R2, LABEL_TEXT as i32));
        em.a.bind(short);
        em.addr(Reg::R1, text_at);
        em.e(Insn::mov64(Reg::R3, Reg::R8));
        em.a.call(Helper::ProbeReadUser);
        em.a.bind(skip);
    }
    em.release(base);
}

/// `scratch[at]` = the id of the goroutine the thread runs (`g.m.curg.goid`, so
/// that a sample on the system stack is its goroutine's), or 0 where R14 is not a
/// `g` (assembly, a thread Go did not make).
fn goid(em: &mut Emitter<'_>, layout: Option<&RuntimeLayout>, at: u32) {
    let Some(l) = layout else {
        return;
    };
    let done = em.a.label();
    let t = em.alloc(8);
    em.ctx_reg(Reg::R7, X86Reg::R14);
    em.a.jmp(Cond::Eq, Reg::R7, 0, done);
    for (off, last) in [(l.g_m, false), (l.m_curg, false), (l.g_goid, true)] {
        em.e(Insn::mov64(Reg::R3, Reg::R7));
        em.imm(Reg::R4, off as i64);
        em.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R4));
        em.addr(Reg::R1, t);
        em.e(Insn::mov64(Reg::R2, 8));
        em.a.call(Helper::ProbeReadUser);
        em.a.jmp(Cond::Ne, Reg::R0, 0, done);
        em.load(Reg::R7, t);
        if !last {
            em.a.jmp(Cond::Eq, Reg::R7, 0, done);
        }
    }
    em.store(at, Reg::R7);
    em.a.bind(done);
    em.release(t);
}

/// Adds one to counter `which` of this CPU. Clobbers R0–R3.
fn bump(em: &mut Emitter<'_>, counts: MapId, which: Counter) {
    let skip = em.a.label();
    let k = em.alloc(8);
    em.store_imm(k, Size::W, which as i32);
    em.a.ld_map(Reg::R1, counts);
    em.addr(Reg::R2, k);
    em.a.call(Helper::MapLookupElem);
    em.a.jmp(Cond::Eq, Reg::R0, 0, skip);
    em.e(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
    em.e(Insn::alu64(AluOp::Add, Reg::R1, 1));
    em.e(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
    em.a.bind(skip);
    em.release(k);
}
