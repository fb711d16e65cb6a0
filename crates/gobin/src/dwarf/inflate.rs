//! A zlib (RFC 1950) / deflate (RFC 1951) decoder that can start again in the middle
//! of a stream.
//!
//! Go's linker compresses each DWARF section into one zlib stream, and a stream can
//! only be read from its start. A query reads a few scattered pieces of a section (one
//! package's unit, the types it names, a location list), so inflating every section
//! whole would hold megabytes that nothing reads. Instead the stream is decoded once
//! ([`Pass`], as far as it is needed), into a small sliding buffer, and every
//! [`SEGMENT`] bytes of output the decoder leaves a [`Checkpoint`]: where it was in
//! the input, in which block, and the last 32 KiB it wrote (all a later match can
//! refer to). A segment is then inflated on its own, from its checkpoint, when
//! something first reads it.
//!
//! A general zlib library cannot be stopped and resumed at an arbitrary bit of its
//! input, which is why this module decodes deflate itself. A pass that reaches the
//! stream's end checks its Adler-32; a segment inflated again from a checkpoint is
//! the same bytes the pass produced. A checkpoint may fall
//! inside a Huffman block, between two symbols; resuming re-reads the block's header
//! to rebuild its code tables.

use std::fmt;

/// Output bytes between two checkpoints.
pub const SEGMENT: usize = 256 * 1024;
/// How far back a match may reach.
const WINDOW: usize = 32 * 1024;
/// The longest match, which is also the most one symbol writes.
const MAX_MATCH: usize = 258;
/// Room after the stop position: the longest match plus the overshoot of a copy made
/// in 16-byte pieces.
const SLACK: usize = MAX_MATCH + 16;
/// Bytes decoded between two calls of the observer in [`scan`].
const CHUNK: usize = 64 * 1024;

/// What is wrong with a stream. Every malformed input ends in one of these, never in a
/// panic or a read past the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Corrupt {}

pub type Result<T> = std::result::Result<T, Corrupt>;

/// Where decoding can start again.
#[derive(Clone)]
pub struct Checkpoint {
    /// The output offset decoding resumes at.
    out: usize,
    /// The input bit offset (within the deflate data) of the next symbol or block.
    bit: usize,
    block: Block,
    /// The current block is the stream's last.
    last: bool,
    /// Up to 32 KiB of output before `out`.
    window: Box<[u8]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    /// Between blocks: the next bits are a block header.
    Between,
    /// In a stored block with `left` bytes still to copy.
    Stored { left: usize },
    /// In a Huffman block whose code tables start at bit `tables` (a dynamic block)
    /// or are the fixed ones.
    Huffman { tables: usize, fixed: bool },
}

/// The checkpoints of a stream, one per segment of its output (of the segments a
/// [`Pass`] has reached, while it runs).
pub struct Index {
    size: usize,
    checkpoints: Vec<Checkpoint>,
}

impl Index {
    /// The number of segments with a checkpoint.
    pub fn segments(&self) -> usize {
        self.checkpoints.len()
    }

    /// The output range of segment `i`.
    pub fn segment_range(&self, i: usize) -> std::ops::Range<usize> {
        segment_range(i, self.size)
    }

    /// The checkpoint of segment `i`, if the pass has reached it.
    pub fn checkpoint(&self, i: usize) -> Option<&Checkpoint> {
        self.checkpoints.get(i)
    }

    /// Bytes held by the checkpoints.
    pub fn held(&self) -> usize {
        self.checkpoints.iter().map(|c| c.window.len()).sum()
    }
}

/// The output range of segment `i` of a stream of `size` bytes.
pub fn segment_range(i: usize, size: usize) -> std::ops::Range<usize> {
    let start = (i * SEGMENT).min(size);
    start..(start + SEGMENT).min(size)
}

/// The deflate data of a zlib stream: what follows its two-byte header.
fn deflate_data(zlib: &[u8]) -> Result<&[u8]> {
    let [cmf, flg, ..] = *zlib else {
        return Err(Corrupt("zlib stream shorter than its header"));
    };
    if cmf & 0x0f != 8 || cmf >> 4 > 7 {
        return Err(Corrupt("zlib stream of a method other than deflate"));
    }
    if (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
        return Err(Corrupt("zlib header check failed"));
    }
    if flg & 0x20 != 0 {
        return Err(Corrupt("zlib stream needs a preset dictionary"));
    }
    Ok(&zlib[2..])
}

/// Decodes the whole zlib stream `zlib`, which must inflate to exactly `size` bytes,
/// handing the output to `observe` in order (its offset, then the bytes), and returns
/// the checkpoints of every segment. Holds a buffer of under 100 KiB while it runs.
/// `done` is given each stretch of `zlib` the decoder has gone past, a megabyte or
/// so at a time, then the rest at the end.
pub fn scan<'a>(
    zlib: &'a [u8],
    size: usize,
    observe: impl FnMut(usize, &[u8]),
    done: impl FnMut(&'a [u8]),
) -> Result<Index> {
    let mut pass = Pass::new(zlib, size)?;
    pass.advance(usize::MAX, observe, done)?;
    Ok(pass.index)
}

/// One pass over a zlib stream that goes only as far as it is asked to, leaving a
/// checkpoint at each segment it reaches: a section read near its start need not
/// be decoded to its end.
pub struct Pass<'a> {
    zlib: &'a [u8],
    d: Decoder<'a>,
    /// The sliding output buffer: `buf[0]` is output offset `base`, `o` is the next
    /// position to write.
    buf: Vec<u8>,
    base: usize,
    o: usize,
    /// Where the next segment starts.
    next: usize,
    ended: bool,
    /// How much of `zlib` has been handed to `done`.
    done_to: usize,
    /// The Adler-32 of the output so far, checked against the stream's at its end.
    adler: u32,
    index: Index,
}

impl<'a> Pass<'a> {
    pub fn new(zlib: &'a [u8], size: usize) -> Result<Pass<'a>> {
        Ok(Pass {
            zlib,
            d: Decoder::new(deflate_data(zlib)?),
            buf: Vec::new(),
            base: 0,
            o: 0,
            next: SEGMENT,
            ended: false,
            done_to: 0,
            adler: 1,
            index: Index {
                size,
                checkpoints: vec![Checkpoint {
                    out: 0,
                    bit: 0,
                    block: Block::Between,
                    last: false,
                    window: Box::default(),
                }],
            },
        })
    }

    /// The checkpoints so far.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// How far the output has been decoded.
    pub fn reached(&self) -> usize {
        self.base + self.o
    }

    /// Bytes held: the checkpoints, and the buffer while the pass runs.
    pub fn held(&self) -> usize {
        self.index.held() + self.buf.len()
    }

    /// The pass has decoded the whole stream (and found it of the stated size).
    pub fn finished(&self) -> bool {
        self.ended
    }

    /// Decodes on until the output reaches `until` or the stream ends, handing the
    /// output to `observe` and the input passed to `done` (as [`scan`] does). At the
    /// stream's end, checks that it had the stated size. The buffer it decodes into
    /// is freed when the stream ends.
    pub fn advance(
        &mut self,
        until: usize,
        mut observe: impl FnMut(usize, &[u8]),
        mut done: impl FnMut(&'a [u8]),
    ) -> Result<()> {
        const DONE_STEP: usize = 1 << 20;
        let limit = WINDOW + CHUNK;
        let size = self.index.size;
        if self.buf.is_empty() && !self.ended {
            self.buf = vec![0u8; WINDOW + CHUNK + SLACK];
        }
        while !self.ended && self.base + self.o < until {
            // The checkpoint of the segment at `next` is taken at the first symbol
            // boundary at or after `next - MAX_MATCH`, so it is at most `next`.
            let want = if self.next < size {
                self.next - MAX_MATCH
            } else {
                usize::MAX
            };
            let (base, o) = (self.base, self.o);
            let stop = limit
                .min(want.saturating_sub(base))
                .min(until.saturating_sub(base))
                .max(o);
            let mut at = o;
            self.ended = self.d.run(&mut self.buf, &mut at, stop)?;
            self.o = at;
            if base + at > size {
                return Err(Corrupt("zlib stream inflates to more than its stated size"));
            }
            observe(base + o, &self.buf[o..at]);
            self.adler = zlib_rs::adler32::adler32(self.adler, &self.buf[o..at]);
            if base + at >= want && !self.ended {
                let window = &self.buf[at.saturating_sub(WINDOW)..at];
                let cp = self.d.checkpoint(base + at, window)?;
                self.index.checkpoints.push(cp);
                self.next += SEGMENT;
            }
            // The decoder has read up to 8 bytes ahead; bytes before those are
            // behind it.
            let read = (self.d.bits.pos + 2).saturating_sub(8).min(self.zlib.len());
            if read >= self.done_to + DONE_STEP {
                done(&self.zlib[self.done_to..read]);
                self.done_to = read;
            }
            if self.o >= limit {
                self.buf.copy_within(self.o - WINDOW..self.o, 0);
                self.base += self.o - WINDOW;
                self.o = WINDOW;
            }
        }
        if self.ended && !self.buf.is_empty() {
            self.buf = Vec::new();
            done(&self.zlib[self.done_to..]);
            self.done_to = self.zlib.len();
            // A stream that ended before a segment's start left it without a
            // checkpoint; that only happens when `size` is wrong, caught here.
            if self.base + self.o != size {
                return Err(Corrupt("zlib stream inflates to less than its stated size"));
            }
            self.d.trailer(self.adler)?;
        }
        Ok(())
    }
}

/// Inflates segment `i` of the stream `zlib` that `index` was made from.
pub fn segment(zlib: &[u8], index: &Index, i: usize) -> Result<Vec<u8>> {
    let cp = index
        .checkpoints
        .get(i)
        .ok_or(Corrupt("segment past the end of the stream"))?;
    segment_from(zlib, cp, index.segment_range(i))
}

/// Inflates the output `range` of the stream `zlib` from checkpoint `cp` (at or
/// before `range.start`).
pub fn segment_from(
    zlib: &[u8],
    cp: &Checkpoint,
    range: std::ops::Range<usize>,
) -> Result<Vec<u8>> {
    if cp.out > range.start {
        return Err(Corrupt("checkpoint after its segment's start"));
    }
    let w = cp.window.len();
    let stop = w + (range.end - cp.out);
    let mut buf = vec![0u8; stop + SLACK];
    buf[..w].copy_from_slice(&cp.window);
    let mut d = Decoder::resume(deflate_data(zlib)?, cp)?;
    let mut o = w;
    while o < stop {
        if d.run(&mut buf, &mut o, stop)? {
            break;
        }
    }
    if o < stop {
        return Err(Corrupt("zlib stream ended inside a segment"));
    }
    buf.truncate(stop);
    buf.drain(..w + (range.start - cp.out));
    Ok(buf)
}

/// Inflates the whole stream at once, into exactly `size` bytes.
pub fn whole(zlib: &[u8], size: usize) -> Result<Vec<u8>> {
    let mut d = Decoder::new(deflate_data(zlib)?);
    // One byte more than the stream should give: reaching it means the stream is
    // longer than stated.
    let mut buf = vec![0u8; size + 1 + SLACK];
    let mut o = 0;
    while !d.run(&mut buf, &mut o, size + 1)? {
        if o > size {
            return Err(Corrupt("zlib stream inflates to more than its stated size"));
        }
    }
    if o != size {
        return Err(Corrupt("zlib stream inflates to less than its stated size"));
    }
    buf.truncate(size);
    d.trailer(zlib_rs::adler32::adler32(1, &buf))?;
    Ok(buf)
}

/// Reads the input least significant bit first, as deflate packs it.
struct Bits<'a> {
    data: &'a [u8],
    /// The next byte to load into `buf`; may pass the end (zeros are loaded then,
    /// and [`Bits::check`] reports the overrun).
    pos: usize,
    buf: u64,
    /// Valid bits in `buf`.
    n: u32,
}

impl<'a> Bits<'a> {
    fn at(data: &'a [u8], bit: usize) -> Bits<'a> {
        let mut b = Bits {
            data,
            pos: bit / 8,
            buf: 0,
            n: 0,
        };
        b.refill();
        b.consume((bit % 8) as u32);
        b
    }

    /// Loads whole bytes until at least 56 bits are valid.
    #[inline(always)]
    fn refill(&mut self) {
        if let Some(w) = self.data.get(self.pos..self.pos + 8) {
            let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
            self.buf |= w << self.n;
            self.pos += (63 - self.n as usize) >> 3;
            self.n |= 56;
        } else {
            while self.n <= 56 {
                let b = self.data.get(self.pos).copied().unwrap_or(0);
                self.buf |= u64::from(b) << self.n;
                self.pos += 1;
                self.n += 8;
            }
        }
    }

    #[inline(always)]
    fn consume(&mut self, k: u32) {
        self.buf >>= k;
        self.n -= k;
    }

    /// The next `k` bits (at most 32), consumed.
    #[inline(always)]
    fn take(&mut self, k: u32) -> u32 {
        if self.n < k {
            self.refill();
        }
        let v = (self.buf & ((1u64 << k) - 1)) as u32;
        self.consume(k);
        v
    }

    /// The offset of the next unread bit.
    fn bit(&self) -> usize {
        self.pos * 8 - self.n as usize
    }

    /// Fails when reading has gone past the end of the input.
    fn check(&self) -> Result<()> {
        if self.bit() > self.data.len() * 8 {
            return Err(Corrupt("deflate data ends in the middle of a block"));
        }
        Ok(())
    }
}

// A code table entry, packed into a u32:
//   bits 0..4   the code's length, the bits a lookup consumes;
//   bits 4..8   extra bits that follow (a length or distance), or a subtable's index bits;
//   bits 8..11  the kind below;
//   bits 16..32 the literal, the base length or distance, or the subtable's position.
const LIT: u32 = 0;
const BASE: u32 = 1;
const END: u32 = 2;
const SUB: u32 = 3;
const BAD: u32 = 4 << 8;

const LIT_BITS: u32 = 10;
const DIST_BITS: u32 = 8;

const fn entry(kind: u32, extra: u32, value: u32) -> u32 {
    value << 16 | kind << 8 | extra << 4
}

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which a dynamic block lists the lengths of the code-length code.
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

fn lit_entry(sym: usize) -> u32 {
    match sym {
        0..=255 => entry(LIT, 0, sym as u32),
        256 => entry(END, 0, 0),
        257..=285 => entry(
            BASE,
            u32::from(LENGTH_EXTRA[sym - 257]),
            u32::from(LENGTH_BASE[sym - 257]),
        ),
        _ => BAD,
    }
}

fn dist_entry(sym: usize) -> u32 {
    match sym {
        0..=29 => entry(BASE, u32::from(DIST_EXTRA[sym]), u32::from(DIST_BASE[sym])),
        _ => BAD,
    }
}

/// Entries of the literal/length and distance tables: the primary entries plus room
/// for the subtables of codes longer than the primary bits (a complete code of at
/// most 15 bits needs fewer than these).
const LIT_TABLE: usize = 2048;
const DIST_TABLE: usize = 1024;

/// Builds the lookup table of the canonical Huffman code with code `lengths`:
/// `1 << bits` entries indexed by the next input bits, then the subtables of codes
/// longer than `bits`. A position no code reaches holds `BAD`, so an incomplete code
/// fails when the input uses what it lacks.
fn build(table: &mut [u32], lengths: &[u8], bits: u32, kind: fn(usize) -> u32) -> Result<()> {
    let mut count = [0u16; 16];
    for &l in lengths {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut left: i32 = 1;
    for &c in &count[1..] {
        left = (left << 1) - i32::from(c);
        if left < 0 {
            return Err(Corrupt("deflate code lengths over-subscribed"));
        }
    }
    let mut next = [0u32; 16];
    let mut code = 0u32;
    for l in 1..16 {
        code = (code + u32::from(count[l - 1])) << 1;
        next[l] = code;
    }
    // Codes in order, each with its reversed bits (the order the input gives them).
    let mut codes = [(0u32, 0u32); 288];
    for (sym, &l) in lengths.iter().enumerate() {
        if l > 0 {
            let l = u32::from(l);
            codes[sym] = (next[l as usize].reverse_bits() >> (32 - l), l);
            next[l as usize] += 1;
        }
    }
    let primary = 1usize << bits;
    let mask = primary as u32 - 1;
    // The longest code under each primary index decides its subtable's size.
    let mut longest = [0u8; 1 << LIT_BITS];
    for &(rev, l) in &codes[..lengths.len()] {
        if l > bits {
            let p = (rev & mask) as usize;
            longest[p] = longest[p].max(l as u8);
        }
    }
    table[..primary].fill(BAD);
    let mut used = primary;
    for (p, &l) in longest[..primary].iter().enumerate() {
        if l > 0 {
            let sub = u32::from(l) - bits;
            let end = used + (1 << sub);
            if end > table.len() {
                return Err(Corrupt("deflate code too large for its table"));
            }
            table[p] = entry(SUB, sub, used as u32);
            table[used..end].fill(BAD);
            used = end;
        }
    }
    for (sym, &(rev, l)) in codes[..lengths.len()].iter().enumerate() {
        if l == 0 {
            continue;
        }
        let e = kind(sym) | l;
        if l <= bits {
            let mut i = rev as usize;
            while i < primary {
                table[i] = e;
                i += 1 << l;
            }
        } else {
            let p = table[(rev & mask) as usize];
            let (start, sub) = ((p >> 16) as usize, (p >> 4) & 15);
            let mut i = (rev >> bits) as usize;
            while i < 1 << sub {
                table[start + i] = e;
                i += 1 << (l - bits);
            }
        }
    }
    Ok(())
}

struct Decoder<'a> {
    bits: Bits<'a>,
    block: Block,
    last: bool,
    /// The stream's last block has ended.
    done: bool,
    lit: Box<[u32; LIT_TABLE]>,
    dist: Box<[u32; DIST_TABLE]>,
}

impl<'a> Decoder<'a> {
    fn new(data: &'a [u8]) -> Decoder<'a> {
        Decoder {
            bits: Bits::at(data, 0),
            block: Block::Between,
            last: false,
            done: false,
            lit: Box::new([BAD; LIT_TABLE]),
            dist: Box::new([BAD; DIST_TABLE]),
        }
    }

    fn resume(data: &'a [u8], cp: &Checkpoint) -> Result<Decoder<'a>> {
        let mut d = Decoder::new(data);
        d.last = cp.last;
        if let Block::Huffman { tables, fixed } = cp.block {
            d.bits = Bits::at(data, tables);
            d.tables(fixed)?;
        }
        d.block = cp.block;
        d.bits = Bits::at(data, cp.bit);
        Ok(d)
    }

    /// After the last block: checks that the input did not run out, and that the
    /// zlib trailer (the Adler-32 of the output, big-endian, on the next byte
    /// boundary) is `adler`.
    fn trailer(&self, adler: u32) -> Result<()> {
        self.bits.check()?;
        let at = self.bits.bit().div_ceil(8);
        match self.bits.data.get(at..at + 4) {
            Some(t) if u32::from_be_bytes([t[0], t[1], t[2], t[3]]) == adler => Ok(()),
            Some(_) => Err(Corrupt("zlib stream's Adler-32 does not match its data")),
            None => Err(Corrupt("zlib stream ends without its Adler-32")),
        }
    }

    fn checkpoint(&self, out: usize, window: &[u8]) -> Result<Checkpoint> {
        self.bits.check()?;
        Ok(Checkpoint {
            out,
            bit: self.bits.bit(),
            block: self.block,
            last: self.last,
            window: window.into(),
        })
    }

    /// Decodes into `out` from position `*o` until `*o >= stop` or the stream ends,
    /// stopping only between symbols. `out` must have `SLACK` bytes after `stop`, and
    /// the `WINDOW` bytes before `*o` (or all of them, at the stream's start) must be
    /// the output so far. Returns true when the stream has ended.
    fn run(&mut self, out: &mut [u8], o: &mut usize, stop: usize) -> Result<bool> {
        if out.len() < stop + SLACK {
            return Err(Corrupt("inflate buffer too small"));
        }
        loop {
            if self.done {
                return Ok(true);
            }
            match self.block {
                Block::Between => {
                    if *o >= stop {
                        return Ok(false);
                    }
                    self.header()?;
                }
                Block::Stored { left } => {
                    let k = left.min(stop.saturating_sub(*o));
                    let at = self.bits.bit() / 8;
                    let src = self
                        .bits
                        .data
                        .get(at..at + k)
                        .ok_or(Corrupt("deflate data ends in a stored block"))?;
                    out[*o..*o + k].copy_from_slice(src);
                    *o += k;
                    self.bits = Bits::at(self.bits.data, (at + k) * 8);
                    if k == left {
                        self.end_block();
                    } else {
                        self.block = Block::Stored { left: left - k };
                        return Ok(false);
                    }
                }
                Block::Huffman { .. } => {
                    if !self.symbols(out, o, stop)? {
                        self.bits.check()?;
                        return Ok(false);
                    }
                    self.end_block();
                }
            }
        }
    }

    fn end_block(&mut self) {
        self.block = Block::Between;
        self.done = self.last;
    }

    /// Reads a block header, and the code tables of a dynamic block.
    fn header(&mut self) -> Result<()> {
        self.last = self.bits.take(1) == 1;
        match self.bits.take(2) {
            0 => {
                // Stored: the rest of this byte is padding, then LEN and its complement.
                let pad = (8 - self.bits.bit() % 8) % 8;
                self.bits.take(pad as u32);
                let len = self.bits.take(16);
                let nlen = self.bits.take(16);
                if len != !nlen & 0xffff {
                    return Err(Corrupt("stored block length check failed"));
                }
                self.bits.check()?;
                self.block = Block::Stored { left: len as usize };
            }
            1 => {
                self.tables(true)?;
                self.block = Block::Huffman {
                    tables: self.bits.bit(),
                    fixed: true,
                };
            }
            2 => {
                let tables = self.bits.bit();
                self.tables(false)?;
                self.block = Block::Huffman {
                    tables,
                    fixed: false,
                };
            }
            _ => return Err(Corrupt("deflate block of reserved type 3")),
        }
        Ok(())
    }

    /// Builds the fixed tables, or reads a dynamic block's from the input.
    fn tables(&mut self, fixed: bool) -> Result<()> {
        let mut lengths = [0u8; 288 + 32];
        let (nlit, ndist) = if fixed {
            lengths[..144].fill(8);
            lengths[144..256].fill(9);
            lengths[256..280].fill(7);
            lengths[280..288].fill(8);
            lengths[288..320].fill(5);
            (288, 32)
        } else {
            self.dynamic_lengths(&mut lengths)?
        };
        if lengths[256] == 0 {
            return Err(Corrupt("deflate block without an end-of-block code"));
        }
        build(&mut self.lit[..], &lengths[..nlit], LIT_BITS, lit_entry)?;
        build(
            &mut self.dist[..],
            &lengths[nlit..nlit + ndist],
            DIST_BITS,
            dist_entry,
        )?;
        self.bits.check()
    }

    /// Reads a dynamic block's code lengths into `lengths` (literal/length codes,
    /// then distance codes); returns how many of each.
    fn dynamic_lengths(&mut self, lengths: &mut [u8; 320]) -> Result<(usize, usize)> {
        let nlit = self.bits.take(5) as usize + 257;
        let ndist = self.bits.take(5) as usize + 1;
        let ncode = self.bits.take(4) as usize + 4;
        if nlit > 286 || ndist > 30 {
            return Err(Corrupt("deflate block with too many codes"));
        }
        let mut cl = [0u8; 19];
        for &i in &CODE_LENGTH_ORDER[..ncode] {
            cl[i] = self.bits.take(3) as u8;
        }
        let mut table = [BAD; 128];
        build(&mut table, &cl, 7, |sym| entry(LIT, 0, sym as u32))?;
        let mut i = 0;
        while i < nlit + ndist {
            self.bits.refill();
            let e = table[(self.bits.buf & 0x7f) as usize];
            if e & BAD != 0 {
                return Err(Corrupt("bad code-length code"));
            }
            self.bits.consume(e & 15);
            let sym = e >> 16;
            let (value, repeat) = match sym {
                0..=15 => (sym as u8, 1),
                16 => {
                    let prev = *lengths
                        .get(i.wrapping_sub(1))
                        .ok_or(Corrupt("repeated code length with none before"))?;
                    (prev, 3 + self.bits.take(2) as usize)
                }
                17 => (0, 3 + self.bits.take(3) as usize),
                _ => (0, 11 + self.bits.take(7) as usize),
            };
            if i + repeat > nlit + ndist {
                return Err(Corrupt("code lengths run past their count"));
            }
            lengths[i..i + repeat].fill(value);
            i += repeat;
        }
        // Distance lengths follow the literal ones directly in `lengths`.
        Ok((nlit, ndist))
    }

    /// Decodes symbols of a Huffman block until `*o >= stop` (false) or the block's
    /// end (true).
    fn symbols(&mut self, out: &mut [u8], o: &mut usize, stop: usize) -> Result<bool> {
        let (lit, dist) = (&*self.lit, &*self.dist);
        let bits = &mut self.bits;
        let mut p = *o;
        let result = loop {
            if p >= stop {
                break Ok(false);
            }
            // One symbol takes at most 15 + 5 + 15 + 13 bits.
            if bits.n < 48 {
                bits.refill();
            }
            let mut e = lookup(lit, bits.buf, LIT_BITS);
            bits.consume(e & 15);
            // Runs of literals are common: a second one fits in the bits at hand.
            if (e >> 8) & 7 == LIT {
                out[p] = (e >> 16) as u8;
                p += 1;
                if bits.n < 15 || p >= stop {
                    continue;
                }
                e = lookup(lit, bits.buf, LIT_BITS);
                bits.consume(e & 15);
                if (e >> 8) & 7 == LIT {
                    out[p] = (e >> 16) as u8;
                    p += 1;
                    continue;
                }
                if bits.n < 33 {
                    bits.refill();
                }
            }
            match (e >> 8) & 7 {
                BASE => {
                    let extra = (e >> 4) & 15;
                    let len = (e >> 16) as usize + (bits.buf & ((1 << extra) - 1)) as usize;
                    bits.consume(extra);
                    let d = lookup(dist, bits.buf, DIST_BITS);
                    if (d >> 8) & 7 != BASE {
                        break Err(Corrupt("bad distance code"));
                    }
                    bits.consume(d & 15);
                    let extra = (d >> 4) & 15;
                    let back = (d >> 16) as usize + (bits.buf & ((1 << extra) - 1)) as usize;
                    bits.consume(extra);
                    if back > p {
                        break Err(Corrupt("deflate match reaches before the window"));
                    }
                    copy_match(out, p, back, len);
                    p += len;
                }
                END => break Ok(true),
                _ => break Err(Corrupt("bad literal/length code")),
            }
        };
        *o = p;
        result
    }
}

/// The entry of `table` for the code at the bottom of `buf` (its primary entry, or
/// the subtable's entry that entry points to).
#[inline(always)]
fn lookup<const N: usize>(table: &[u32; N], buf: u64, bits: u32) -> u32 {
    let e = table[(buf & ((1 << bits) - 1)) as usize & (N - 1)];
    if (e >> 8) & 7 != SUB {
        return e;
    }
    let sub = (buf >> bits) & ((1 << ((e >> 4) & 15)) - 1);
    table[((e >> 16) as usize + sub as usize) & (N - 1)]
}

/// Copies `len` bytes from `back` bytes before `p` to `p`, as LZ77 means it: a
/// match may overlap the bytes it writes, repeating them. Writes up to 15 bytes past
/// `p + len` (scratch the caller leaves room for).
#[inline(always)]
fn copy_match(out: &mut [u8], p: usize, back: usize, len: usize) {
    let from = p - back;
    if back >= 16 {
        // Each 16-byte piece reads only bytes already final.
        let mut k = 0;
        while k < len {
            out.copy_within(from + k..from + k + 16, p + k);
            k += 16;
        }
    } else if back == 1 {
        let b = out[from];
        out[p..p + len].fill(b);
    } else {
        for k in 0..len {
            out[p + k] = out[from + k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zlib(data: &[u8], level: u32) -> Vec<u8> {
        let mut z = flate2::Compress::new(flate2::Compression::new(level), true);
        let mut out = Vec::with_capacity(data.len() + 1024);
        z.compress_vec(data, &mut out, flate2::FlushCompress::Finish)
            .unwrap();
        out
    }

    /// Data with long and short matches, overlapping ones, and literal stretches,
    /// of `n` bytes.
    fn sample(n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 4 {
                0 => out.extend_from_slice(format!("runtime.func{} ", x % 977).as_bytes()),
                1 => out.extend(std::iter::repeat_n((x >> 8) as u8, (x % 300) as usize)),
                2 if out.len() > 40_000 => {
                    let at = out.len() - 1 - (x >> 20) as usize % 30_000;
                    let len = (x >> 40) as usize % 700;
                    for k in 0..len {
                        let b = out[at + k];
                        out.push(b);
                    }
                }
                _ => out.extend((0..(x % 50)).map(|i| (x >> (i % 56)) as u8)),
            }
        }
        out.truncate(n);
        out
    }

    #[test]
    fn inflates_what_zlib_deflates_at_every_level() {
        let plain = sample(300_000);
        for level in [0, 1, 6, 9] {
            let z = zlib(&plain, level);
            assert_eq!(whole(&z, plain.len()).unwrap(), plain, "level {level}");
        }
    }

    #[test]
    fn every_segment_inflates_alone_from_its_checkpoint() {
        let plain = sample(5 * SEGMENT / 2 + 1234);
        for level in [0, 1, 9] {
            let z = zlib(&plain, level);
            let mut seen = Vec::new();
            let mut passed = 0;
            let index = scan(
                &z,
                plain.len(),
                |at, bytes| {
                    assert_eq!(at, seen.len());
                    seen.extend_from_slice(bytes);
                },
                |stretch| {
                    // In order, without gaps, and all of the stream in the end.
                    assert_eq!(stretch.as_ptr() as usize, z.as_ptr() as usize + passed);
                    passed += stretch.len();
                },
            )
            .unwrap();
            assert_eq!(passed, z.len());
            assert_eq!(seen, plain, "level {level}");
            assert_eq!(index.segments(), 3);
            // Backwards, so no segment can lean on one inflated before it.
            for i in (0..index.segments()).rev() {
                let r = index.segment_range(i);
                assert_eq!(
                    segment(&z, &index, i).unwrap(),
                    &plain[r],
                    "level {level} #{i}"
                );
            }
        }
    }

    #[test]
    fn a_wrong_size_or_damaged_stream_is_an_error() {
        let plain = sample(100_000);
        let z = zlib(&plain, 6);
        assert!(whole(&z, plain.len() + 1).is_err());
        assert!(whole(&z, plain.len() - 1).is_err());
        assert!(scan(&z, plain.len() + 1, |_, _| {}, |_| {}).is_err());
        assert!(scan(&z, plain.len() - 1, |_, _| {}, |_| {}).is_err());
        assert!(whole(&z[..z.len() / 2], plain.len()).is_err());
        assert!(whole(&[0x78], 1).is_err());
        assert!(whole(&[0x79, 0x9c, 0, 0], 1).is_err());
        // A changed byte of stored data decodes, and the Adler-32 catches it.
        let stored = zlib(&plain, 0);
        let mut bad = stored.clone();
        bad[1000] ^= 1;
        assert!(whole(&stored, plain.len()).is_ok());
        assert!(whole(&bad, plain.len()).is_err());
        assert!(scan(&bad, plain.len(), |_, _| {}, |_| {}).is_err());
        // Flipped bits anywhere: an error or other bytes, never a panic.
        for i in (2..z.len()).step_by(97) {
            let mut bad = z.clone();
            bad[i] ^= 0x5a;
            let _ = whole(&bad, plain.len());
            let _ = scan(&bad, plain.len(), |_, _| {}, |_| {});
        }
    }
}
