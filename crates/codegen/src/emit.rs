//! The code generator's workbench: one program being assembled, its scratch-area
//! allocator, and the small instruction sequences every lowering pass uses (reading
//! target memory, bumping a counter, sending a record). Register use is fixed for a
//! whole program: R6 holds the context (the probed thread's `pt_regs`), R9 the
//! per-CPU scratch area; R0–R5 are clobbered by every helper call, R7 and R8 are
//! scratch registers of single lowering steps.

use bpf::helper::{RB_FORCE_WAKEUP, RB_NO_WAKEUP};

/// `BPF_RB_AVAIL_DATA`: `bpf_ringbuf_query` answers the bytes not yet consumed.
const RB_AVAIL_DATA: i32 = 0;

/// Unread bytes past which a record wakes user space (a quarter of the buffer).
pub const WAKEUP_WATERMARK: u32 = crate::storage::RINGBUF_BYTES / 4;
use bpf::script::{EVENT_HEADER, EventSpec, counter};
use bpf::{AluOp, Asm, Cond, Helper, Insn, Label, MapId, Reg, Size, X86Reg};
use lang::Span;

use crate::storage::Storage;

/// `bpf_probe_read_kernel_str` (Linux 5.5), which `bpf::Helper` does not list: it
/// copies a string between kernel buffers (scratch, map values) and returns its length
/// with the NUL.
pub const PROBE_READ_KERNEL_STR: i32 = 115;

pub const CTX: Reg = Reg::R6;
pub const SCRATCH: Reg = Reg::R9;

/// The most scratch bytes one program may use (a per-CPU value is at most 32 KiB;
/// string copies may reach `MAX_STRING` past a slot, so that much stays spare).
pub const SCRATCH_LIMIT: u32 = 30 * 1024;

/// Stack bytes at the top of the BPF stack used for map keys of one helper call.
pub const KEY_SLOT: i16 = -8;
/// The stack slot that holds the probe hit's tag for record headers (see
/// [`Emitter::count_and_tag_hit`]); loop counters start below it.
pub const HIT_SLOT: i16 = -16;

/// One program under construction.
pub struct Emitter<'s> {
    pub a: Asm,
    pub storage: &'s Storage,
    /// (first instruction, source span) of each statement and expression lowered.
    pub spans: Vec<(usize, Span)>,
    /// The next free scratch byte, and the most ever used.
    pub top: u32,
    pub high: u32,
    /// The program's end (`next`, errors), where cleanup runs.
    pub end: Label,
    /// The very last instructions (`return 0`), for when the scratch area is missing.
    pub abort: Label,
    /// Errors found while lowering (the program is still finished, for `-d bpf`).
    pub errors: Vec<(Span, String)>,
    /// Bytes of BPF stack used for loop counters, below [`KEY_SLOT`].
    pub stack_used: i16,
    /// Functions that helpers call back, placed after the program by
    /// [`Emitter::emit_callbacks`].
    pub callbacks: Vec<(Label, Callback)>,
    /// Functions lowered from the script (a kernel `foreach` body), each assembled
    /// on its own with the spans of its statements, placed after the program too.
    pub functions: Vec<Function>,
}

/// A BPF function lowered from the script: where it is called from, its code, and
/// the spans of its statements (instruction indexes within its own code).
pub type Function = (Label, Asm, Vec<(usize, Span)>);

/// A BPF function a helper calls back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callback {
    /// For `bpf_for_each_map_elem`: deletes the element it is given.
    DeleteElem,
}

impl<'s> Emitter<'s> {
    /// Bytes of a string slot, its NUL included.
    pub fn max_string(&self) -> u32 {
        self.storage.max_string
    }

    pub fn new(storage: &'s Storage) -> Emitter<'s> {
        let mut a = Asm::new();
        let end = a.label();
        let abort = a.label();
        let start = storage.zero_bytes.div_ceil(8) * 8;
        Emitter {
            a,
            storage,
            spans: Vec::new(),
            top: start,
            high: start,
            end,
            abort,
            errors: Vec::new(),
            stack_used: 16,
            callbacks: Vec::new(),
            functions: Vec::new(),
        }
    }

    /// The label of the callback `c`, asked for once per program.
    pub fn callback(&mut self, c: Callback) -> Label {
        if let Some((l, _)) = self.callbacks.iter().find(|(_, k)| *k == c) {
            return *l;
        }
        let l = self.a.label();
        self.callbacks.push((l, c));
        l
    }

    /// Places the callbacks, after the program's last `exit`.
    pub fn emit_callbacks(&mut self) {
        for (label, body, spans) in std::mem::take(&mut self.functions) {
            self.a.bind(label);
            let base = self.a.append(body);
            self.spans
                .extend(spans.into_iter().map(|(at, span)| (at + base, span)));
        }
        for (label, c) in std::mem::take(&mut self.callbacks) {
            self.a.bind(label);
            match c {
                // (map, key, value, ctx): delete key from map, go on.
                Callback::DeleteElem => {
                    self.a.call(bpf::Helper::MapDeleteElem);
                    self.e(Insn::mov64(Reg::R0, 0));
                    self.a.exit();
                }
            }
        }
    }

    pub fn mark(&mut self, span: Span) {
        self.spans.push((self.a.pos(), span));
    }

    pub fn error(&mut self, span: Span, msg: impl Into<String>) {
        self.errors.push((span, msg.into()));
    }

    pub fn e(&mut self, insn: Insn) {
        self.a.emit(insn);
    }

    /// `n` bytes of scratch, 8-aligned; freed with [`Emitter::release`].
    pub fn alloc(&mut self, n: u32) -> u32 {
        let at = self.top;
        self.top += n.div_ceil(8) * 8;
        self.high = self.high.max(self.top);
        at
    }

    pub fn release(&mut self, to: u32) {
        self.top = to;
    }

    /// The scratch offset as an instruction offset. Past the limit the program is
    /// reported as too large by [`Emitter::check_size`]; the offset is clamped here.
    pub fn off(&self, at: u32) -> i16 {
        i16::try_from(at.min(SCRATCH_LIMIT)).unwrap_or(i16::MAX)
    }

    pub fn load(&mut self, dst: Reg, at: u32) {
        let o = self.off(at);
        self.e(Insn::ldx(Size::DW, dst, SCRATCH, o));
    }

    pub fn store(&mut self, at: u32, src: Reg) {
        let o = self.off(at);
        self.e(Insn::stx(Size::DW, SCRATCH, o, src));
    }

    pub fn store_imm(&mut self, at: u32, size: Size, v: i32) {
        let o = self.off(at);
        self.e(Insn::st(size, SCRATCH, o, v));
    }

    /// `dst = &scratch[at]`.
    pub fn addr(&mut self, dst: Reg, at: u32) {
        self.e(Insn::mov64(dst, SCRATCH));
        let o = i32::from(self.off(at));
        if o != 0 {
            self.e(Insn::alu64(AluOp::Add, dst, o));
        }
    }

    /// `dst = v` for any 64-bit constant.
    pub fn imm(&mut self, dst: Reg, v: i64) {
        match i32::try_from(v) {
            Ok(small) => self.e(Insn::mov64(dst, small)),
            Err(_) => {
                self.a.ld_imm64(dst, v as u64);
            }
        }
    }

    pub fn ctx_reg(&mut self, dst: Reg, r: X86Reg) {
        self.e(Insn::ldx(Size::DW, dst, CTX, r.offset()));
    }

    /// Adds one to counter `idx` of this CPU, leaving its new value in R1, or jumps
    /// to `missing` if the counters map has no such slot. Clobbers R0–R5.
    fn bump_counter(&mut self, idx: u32, missing: Label) {
        self.e(Insn::st(Size::W, Reg::R10, KEY_SLOT, idx as i32));
        self.a.ld_map(Reg::R1, self.storage.counters);
        self.e(Insn::mov64(Reg::R2, Reg::R10));
        self.e(Insn::alu64(AluOp::Add, Reg::R2, i32::from(KEY_SLOT)));
        self.a.call(Helper::MapLookupElem);
        self.a.jmp(Cond::Eq, Reg::R0, 0, missing);
        self.e(Insn::ldx(Size::DW, Reg::R1, Reg::R0, 0));
        self.e(Insn::alu64(AluOp::Add, Reg::R1, 1));
        self.e(Insn::stx(Size::DW, Reg::R0, 0, Reg::R1));
    }

    /// Adds one to counter `idx` of this CPU. Clobbers R0–R5.
    pub fn count(&mut self, idx: u32) {
        let skip = self.a.label();
        self.bump_counter(idx, skip);
        self.a.bind(skip);
    }

    /// Reads `size` bytes of target memory at the address in `addr` into
    /// `scratch[dst]`; a fault zeroes them and is counted. Clobbers R0–R5.
    pub fn read_user(&mut self, dst: u32, size: i32, addr: Reg) {
        self.e(Insn::mov64(Reg::R3, addr));
        self.addr(Reg::R1, dst);
        self.e(Insn::mov64(Reg::R2, size));
        self.a.call(Helper::ProbeReadUser);
        let ok = self.a.label();
        self.a.jmp(Cond::Eq, Reg::R0, 0, ok);
        self.count(counter::READ_FAULTS);
        self.a.bind(ok);
    }

    /// `dst = *(u64 *)(addr + off)` in target memory (0 on a fault). Clobbers R0–R5.
    pub fn read_user_u64(&mut self, dst: Reg, addr: Reg, off: i64) {
        let t = self.alloc(8);
        self.e(Insn::mov64(Reg::R3, addr));
        if off != 0 {
            self.imm(Reg::R4, off);
            self.e(Insn::alu64(AluOp::Add, Reg::R3, Reg::R4));
        }
        self.addr(Reg::R1, t);
        self.e(Insn::mov64(Reg::R2, 8));
        self.a.call(Helper::ProbeReadUser);
        let ok = self.a.label();
        self.a.jmp(Cond::Eq, Reg::R0, 0, ok);
        self.count(counter::READ_FAULTS);
        self.a.bind(ok);
        self.load(dst, t);
        self.release(t);
    }

    /// Sends `size` bytes at `scratch[at]` as a record; a full ring buffer is
    /// counted. Clobbers R0–R5.
    ///
    /// A wakeup costs about 3 µs a record, so records go out without one and user
    /// space polls on a short timer; only past [`WAKEUP_WATERMARK`] of unread data is
    /// user space woken at once, before the buffer can fill.
    pub fn output(&mut self, at: u32, size: u32) {
        self.a.ld_map(Reg::R1, self.storage.ringbuf);
        self.e(Insn::mov64(Reg::R2, RB_AVAIL_DATA));
        self.a.call(Helper::RingbufQuery);
        self.e(Insn::mov64(Reg::R4, RB_NO_WAKEUP));
        let quiet = self.a.label();
        self.a
            .jmp(Cond::Lt, Reg::R0, WAKEUP_WATERMARK as i32, quiet);
        self.e(Insn::mov64(Reg::R4, RB_FORCE_WAKEUP));
        self.a.bind(quiet);
        self.a.ld_map(Reg::R1, self.storage.ringbuf);
        self.addr(Reg::R2, at);
        self.e(Insn::mov64(Reg::R3, size as i32));
        self.a.call(Helper::RingbufOutput);
        let ok = self.a.label();
        self.a.jmp(Cond::Eq, Reg::R0, 0, ok);
        self.count(counter::LOST_EVENTS);
        self.a.bind(ok);
    }

    /// Writes the header of a record of event `id` at `scratch[at]`.
    /// The second word is the probe hit's tag (see [`HIT_SLOT`]). Clobbers R0.
    pub fn header(&mut self, at: u32, id: usize) {
        self.store_imm(at, Size::W, id as i32);
        self.e(Insn::ldx(Size::W, Reg::R0, Reg::R10, HIT_SLOT));
        let o = self.off(at + 4);
        self.e(Insn::stx(Size::W, SCRATCH, o, Reg::R0));
    }

    /// Counts the hit and tags it for its records' headers: `(cpu + 1) << 24` with
    /// the low 24 bits of this CPU's hit count. Records of one hit come from one CPU
    /// in order, but other CPUs' records may fall between them in the ring buffer;
    /// user space puts a hit's records back together by this tag (as stap prints a
    /// hit's output at once). Two hits of one CPU get different tags unless 2^24
    /// hits apart, far more records than one drain of the ring buffer holds. The
    /// count is the per-CPU hit counter the program bumps anyway: a clock read
    /// (`bpf_ktime_get_ns`) would cost about 100 ns a hit. Clobbers R0–R5.
    pub fn count_and_tag_hit(&mut self) {
        self.a.call(Helper::GetSmpProcessorId);
        self.e(Insn::alu64(AluOp::Add, Reg::R0, 1));
        self.e(Insn::alu64(AluOp::Lsh, Reg::R0, 24));
        self.e(Insn::stx(Size::W, Reg::R10, HIT_SLOT, Reg::R0));
        let skip = self.a.label();
        self.bump_counter(counter::HITS, skip);
        self.e(Insn::alu64(AluOp::And, Reg::R1, 0x00ff_ffff));
        self.e(Insn::ldx(Size::W, Reg::R2, Reg::R10, HIT_SLOT));
        self.e(Insn::alu64(AluOp::Or, Reg::R1, Reg::R2));
        self.e(Insn::stx(Size::W, Reg::R10, HIT_SLOT, Reg::R1));
        self.a.bind(skip);
    }

    /// Sends a record with only a header.
    pub fn event_only(&mut self, events: &mut Vec<EventSpec>, ev: EventSpec) {
        let id = add_event(events, 0, ev);
        let at = self.alloc(EVENT_HEADER);
        self.header(at, id);
        self.output(at, EVENT_HEADER);
        self.release(at);
    }

    /// `R1 = &map`, `R2 = &scratch[key]`.
    pub fn map_key_args(&mut self, map: MapId, key: u32) {
        self.a.ld_map(Reg::R1, map);
        self.addr(Reg::R2, key);
    }

    /// `map[scratch[key]] = scratch[value]`; an update the full map refuses is
    /// counted (`MAP_FULL`). Clobbers R0–R5.
    pub fn map_store(&mut self, map: MapId, key: u32, value: u32) {
        self.map_key_args(map, key);
        self.addr(Reg::R3, value);
        self.e(Insn::mov64(Reg::R4, bpf::helper::ANY));
        self.a.call(Helper::MapUpdateElem);
        let ok = self.a.label();
        self.a.jmp(Cond::Eq, Reg::R0, 0, ok);
        self.count(counter::MAP_FULL);
        self.a.bind(ok);
    }

    /// R0 = the element `map[scratch[key]]`, created from the bytes at
    /// `scratch[initial]` if it is missing, and a jump to `found`. Falls through
    /// when the map is full (counted as `MAP_FULL`). Another CPU may create the
    /// element first; the second lookup then finds theirs. Clobbers R0–R5.
    pub fn map_slot(&mut self, map: MapId, key: u32, initial: u32, found: Label) {
        self.map_key_args(map, key);
        self.a.call(Helper::MapLookupElem);
        self.a.jmp(Cond::Ne, Reg::R0, 0, found);
        self.map_key_args(map, key);
        self.addr(Reg::R3, initial);
        self.e(Insn::mov64(Reg::R4, bpf::helper::NOEXIST));
        self.a.call(Helper::MapUpdateElem);
        self.map_key_args(map, key);
        self.a.call(Helper::MapLookupElem);
        self.a.jmp(Cond::Ne, Reg::R0, 0, found);
        self.count(counter::MAP_FULL);
    }

    /// Writes a constant string at `scratch[at]`, cut to `MAX_STRING - 1` bytes.
    pub fn const_str(&mut self, at: u32, s: &[u8]) {
        let n = s.len().min(self.max_string() as usize - 1);
        let mut bytes = s[..n].to_vec();
        bytes.push(0);
        while !bytes.len().is_multiple_of(8) {
            bytes.push(0);
        }
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let v = u64::from_le_bytes(w);
            self.a.ld_imm64(Reg::R1, v);
            self.store(at + 8 * i as u32, Reg::R1);
        }
    }

    /// A fresh stack slot for a loop counter.
    pub fn stack_slot(&mut self) -> i16 {
        self.stack_used += 8;
        -self.stack_used
    }
}

/// Adds an event kind (or finds the same one among the events from `from` on) and
/// returns its id. Printing events are shared within one program only (`from` is
/// where its events begin), so that every printed record names its probe
/// ([`crate::Compiled::event_probes`]).
pub fn add_event(events: &mut Vec<EventSpec>, from: usize, ev: EventSpec) -> usize {
    if let Some(i) = events.iter().skip(from).position(|e| *e == ev) {
        return from + i;
    }
    events.push(ev);
    events.len() - 1
}
