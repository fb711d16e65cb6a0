//! What a compiled script tells user space: besides its maps and programs, where each
//! program is attached, the layout of every event record it sends through the ring
//! buffer, and where each global lives. Codegen writes a [`ScriptSpec`]; the CLI loads
//! and attaches it, and the runtime decodes its records and reads its globals.
//!
//! Every value a script handles is a `long` (8 bytes, little endian, signed), a
//! string of at most [`MAX_STRING`] bytes, NUL-padded when stored in a fixed slot, or
//! a stack (8 bytes, see [`STACK_ID_MASK`]).

use crate::spec::{MapId, ObjectSpec};

/// The slot of a string value by default, its terminating NUL included (strings hold
/// at most `MAX_STRING - 1` bytes); a script compiled with another string limit
/// (`lang::Limits`, `-D MAXSTRINGLEN`) says its slot in every [`FieldKind::Str`] and
/// [`ValueKind::Str`].
pub const MAX_STRING: u32 = 128;

/// Every ring buffer record starts with the event id (`u32`, an index into
/// [`ScriptSpec::events`]) and the probe hit's tag (`u32`: `(cpu + 1) << 24` and 24
/// bits of the clock, 0 if unknown); fields follow at their offsets. Records with the
/// same tag come from one hit and are printed together.
pub const EVENT_HEADER: u32 = 8;

/// The most frames a user backtrace holds (a record, or an entry of the stack map).
pub const MAX_FRAMES: u32 = 128;

/// What `ubacktrace()` is as a script value: 8 bytes, the stack's id in the low 63
/// bits (a hash of its frames, the key of [`ScriptSpec::stacks`]) and [`STACK_SYMS`].
/// It travels as that word everywhere (keys, values, records: [`FieldKind::Stack`],
/// [`ValueKind::Stack`]) and only the printer turns it into text: the addresses in hex
/// as stap prints `ubacktrace()`, or the symbolised frames.
pub const STACK_ID_MASK: u64 = !STACK_SYMS;

/// In a stack value: print the stack's symbolised frames, not its addresses
/// (`sprint_ubacktrace()`, `print_usyms()`).
pub const STACK_SYMS: u64 = 1 << 63;

/// In a stack's count word: the first frame is a return address (the `(pc, sp,
/// lr)` form), not the probe's own pc. The word holds the number of frames in its
/// low 8 bits ([`STACK_COUNT_MASK`]), this flag, and the load bias of the binary in
/// the process the stack is from (page aligned, [`STACK_BIAS_MASK`]: the probe's pc
/// at run time minus its address as linked), so a PIE symbolises without
/// `/proc/PID/maps`, even after the process is gone.
pub const FIRST_IS_RETURN: u64 = 1 << 8;

/// The frame count in a stack's count word.
pub const STACK_COUNT_MASK: u64 = 0xff;

/// The load bias in a stack's count word.
pub const STACK_BIAS_MASK: u64 = !0xfff;

/// On a frame: a word that is a return address only if the function of the last
/// frame before it that is not tentative (its anchor) had not built its frame there:
/// the word at the goroutine's saved SP after a switch from the system stack, or the
/// words at a sample's SP. It is kept when the anchor's SP delta (the pclntab's, in
/// user space) is the one the frame was read at: 0, or 8 with [`AT_SP_8`].
pub const TENTATIVE: u64 = 1 << 63;

/// On a [`TENTATIVE`] frame: it was read at SP + 8 (a function stopped between its
/// `push rbp` and `mov rbp, rsp`), and is kept only when the anchor's SP delta is 8.
pub const AT_SP_8: u64 = 1 << 62;

/// The flags a frame may carry: its address is the frame without them.
pub const FRAME_FLAGS: u64 = TENTATIVE | AT_SP_8;

/// Index of the counters in [`ScriptSpec::counters`] (a per-CPU array of `u64`).
pub mod counter {
    /// Records that did not fit in the ring buffer (reservation failed).
    pub const LOST_EVENTS: u32 = 0;
    /// Reads of target memory that faulted (the value read as 0 / "").
    pub const READ_FAULTS: u32 = 1;
    /// Updates of a full map that failed.
    pub const MAP_FULL: u32 = 2;
    /// Probe hits (all programs).
    pub const HITS: u32 = 3;
    /// Return probes that found no `@entry` values for their call: it began before
    /// the probes were attached, or more calls were pending than the map keeps.
    pub const ENTRY_MISSED: u32 = 4;
    pub const COUNT: u32 = 8;
}

#[derive(Clone, Debug, Default)]
pub struct ScriptSpec {
    pub object: ObjectSpec,
    pub attachments: Vec<AttachSpec>,
    /// Programs run by a sampling perf event on every CPU (`timer.profile`,
    /// `timer.hz(N)`), loaded as `BPF_PROG_TYPE_PERF_EVENT`.
    pub samples: Vec<SampleSpec>,
    pub events: Vec<EventSpec>,
    pub globals: Vec<GlobalSpec>,
    /// The ring buffer events travel through, if any program sends one.
    pub ringbuf: Option<MapId>,
    /// Per-CPU `u64` counters, indexed by the constants of [`counter`].
    pub counters: Option<MapId>,
    /// Probes that run in user space (`begin`, `end`, `timer.*`): indexes into the
    /// script's probe items, in the order they appear.
    pub user_probes: Vec<UserProbe>,
    /// The array map holding the scalar globals, which user space fills before
    /// attaching (added by codegen; see [`ScalarsSpec`]).
    pub scalars: Option<ScalarsSpec>,
    /// The stacks `ubacktrace()` has named: a hash map from the id (`u64`, a stack
    /// value without [`STACK_SYMS`]) to a `u64` count word and [`MAX_FRAMES`] return
    /// addresses (innermost first; the first is the probe's own pc).
    pub stacks: Option<MapId>,
    /// The shapes of the Go values records carry ([`FieldKind::Value`]).
    pub values: Vec<crate::govalue::Shape>,
}

/// The one-entry array map that holds every scalar global (their offsets are in
/// [`GlobalShape::Scalar`]), plus one `i64` the programs add to
/// `bpf_ktime_get_ns()` for `gettimeofday_*()`. Before attaching, user space writes
/// `initial` (the `global x = 1` initial values, zeros elsewhere) as the value of
/// key 0, with the `i64` at `realtime_offset` set to `CLOCK_REALTIME -
/// CLOCK_MONOTONIC` in nanoseconds and the `i64` at `target_offset` to the pid of
/// the `-c`/`-x` process, what `target()` returns (both little endian).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalarsSpec {
    pub map: MapId,
    pub initial: Vec<u8>,
    pub realtime_offset: u32,
    pub target_offset: u32,
}

/// One program run by a perf software `cpu-clock` event on every CPU, in frequency
/// mode. It is given the interrupted registers (`bpf_perf_event_data` begins with
/// `pt_regs`, as a uprobe's context is) and chooses the traced process's samples
/// itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleSpec {
    /// Index into `object.programs`.
    pub program: usize,
    /// Samples a second of CPU time, per CPU.
    pub hz: u64,
    /// The probe point as written, for messages (`timer.profile`).
    pub probe: String,
}

/// One program attached at a set of addresses of one binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachSpec {
    /// Index into `object.programs`.
    pub program: usize,
    /// The executable, as an absolute path.
    pub binary: String,
    /// The probe point as written, for messages (`process("…").function("main.*")`).
    pub probe: String,
    pub sites: Vec<AttachSite>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachSite {
    /// The probe address as linked (what `-v` and `pp()` show).
    pub addr: u64,
    /// Where the uprobe goes: the offset in the file.
    pub file_offset: u64,
    /// Handed to the program through `bpf_get_attach_cookie`.
    pub cookie: u64,
}

/// A probe body run in user space, not in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserProbe {
    /// Index of the probe among the script's items.
    pub item: usize,
    pub when: UserProbeKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserProbeKind {
    Begin,
    End,
    Timer { period_ns: u64 },
}

/// What a record means and where its fields are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventSpec {
    /// `printf(format, args…)` (and `print`/`println`, compiled to formats): the
    /// format is formatted in user space.
    Printf { format: Vec<u8>, args: Vec<Field> },
    /// `exit()`: end the run after this record.
    Exit,
    /// A user stack as return addresses, `u64` count at `count`, then up to `max`
    /// addresses from `frames`; printed by `print_ubacktrace*()`.
    Backtrace {
        count: u32,
        frames: u32,
        max: u32,
        fileline: bool,
    },
    /// A probe hit an error it cannot go on from (as stap's "ERROR: division by
    /// zero near …"): printed, and the run ends.
    Error { message: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Byte offset from the start of the record (after the header).
    pub offset: u32,
    pub kind: FieldKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// 8 bytes, signed.
    Long,
    /// `len` bytes, NUL-terminated within them.
    Str { len: u32 },
    /// A Go value to print as Go does: `len` bytes laid out by the shape at index
    /// `shape` of [`ScriptSpec::values`] (see [`crate::govalue`]). Only in records.
    Value { len: u32, shape: u32 },
    /// 8 bytes: a stack value (see [`STACK_ID_MASK`]).
    Stack,
}

/// A script global and the map that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalSpec {
    pub name: String,
    pub map: MapId,
    pub shape: GlobalShape,
    /// Whether the script reads it anywhere (stap prints, at exit, the globals a
    /// script writes but never reads).
    pub read: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobalShape {
    /// A scalar at `offset` in the single value of an array map (shared by all
    /// scalars).
    Scalar { offset: u32, value: ValueKind },
    /// An associative array: a hash map whose key is the keys laid end to end.
    Array {
        keys: Vec<FieldKind>,
        value: ValueKind,
    },
    /// A statistic (`<<<`): per-CPU slots in the layout of `runtime::stats`
    /// (count, sum, min, max, then buckets), `keys` empty for a scalar statistic
    /// (then the map is a per-CPU array of one entry).
    Stats {
        keys: Vec<FieldKind>,
        hist: HistSpec,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Long,
    /// A string in a slot of `len` bytes, NUL-terminated within them.
    Str {
        len: u32,
    },
    /// 8 bytes: a stack value (see [`STACK_ID_MASK`]).
    Stack,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistSpec {
    None,
    Log,
    Linear {
        start: i64,
        stop: i64,
        interval: i64,
    },
}
