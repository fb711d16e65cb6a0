//! The byte reader gimli parses through: a window on a section that all readers of
//! it share (cloning a reader only bumps a reference count).
//!
//! Go's linker zlib-compresses its DWARF sections, and a query reads a few scattered
//! pieces of a few of them: one package's unit of `.debug_info`, the types it names,
//! a location list. A compressed section is therefore inflated in segments
//! ([`inflate::SEGMENT`] bytes each), each when something first reads it. One pass
//! over the stream ([`inflate::Pass`]) goes only as far as reads have needed: a
//! segment it reaches is kept from its output, a segment it went by is inflated again
//! from the checkpoint it left there. Its size is known beforehand from the
//! compression header, which is all gimli asks of a section it has not read yet.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use gimli::{Error, LittleEndian, ReaderOffsetId, Result};

use super::inflate::{self, SEGMENT};

/// Where a DWARF section's bytes come from.
pub enum Section<'data> {
    /// The bytes themselves (stored plainly, or inflated by the caller).
    Bytes(Cow<'data, [u8]>),
    /// A zlib stream that inflates to `size` bytes: inflated where it is read.
    Zlib { stream: &'data [u8], size: usize },
    /// A section that is there but cannot be read: its compression header is
    /// corrupt (`reason` says how). It reads as empty, and says it is damaged.
    Damaged { reason: String },
}

/// Called with the stored bytes of a compressed section after each pass over them,
/// so that the caller may let go of the pages they sit in (they are read again only
/// to inflate a segment nobody has read yet).
pub type Release<'data> = Arc<dyn Fn(&'data [u8]) + Send + Sync + 'data>;

/// A section as readers share it.
struct Shared<'data> {
    len: usize,
    source: Source<'data>,
    /// Why the section cannot be read, when that was known from its header.
    damage: Option<String>,
}

enum Source<'data> {
    Borrowed(&'data [u8]),
    Owned(Box<[u8]>),
    Zlib(Box<Lazy<'data>>),
}

/// A compressed section, inflated a segment at a time.
struct Lazy<'data> {
    stream: &'data [u8],
    /// The pass over the stream, as far as reads have taken it.
    pass: Mutex<PassState<'data>>,
    /// Each segment's bytes once read; empty if the stream is corrupt.
    segments: Box<[OnceLock<Box<[u8]>>]>,
    release: Option<Release<'data>>,
    /// Set once the stream failed to inflate: its reads come back empty.
    failed: std::sync::atomic::AtomicBool,
}

enum PassState<'data> {
    NotStarted,
    Running(inflate::Pass<'data>),
    Corrupt,
}

impl<'data> Lazy<'data> {
    fn fail(&self) {
        self.failed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn release(&self, passed: &'data [u8]) {
        if let Some(r) = &self.release {
            r(passed);
        }
    }

    /// Runs `f` on the pass over the stream, started if need be, with the input it
    /// has passed released as it goes. A corrupt stream stays so.
    fn with_pass<T>(
        &self,
        len: usize,
        f: impl FnOnce(&mut inflate::Pass<'data>, &dyn Fn(&'data [u8])) -> inflate::Result<T>,
    ) -> Option<T> {
        let mut state = self.pass.lock().unwrap_or_else(|e| e.into_inner());
        if let PassState::NotStarted = *state {
            *state = match inflate::Pass::new(self.stream, len) {
                Ok(p) => PassState::Running(p),
                Err(_) => PassState::Corrupt,
            };
        }
        let PassState::Running(pass) = &mut *state else {
            return None;
        };
        match f(pass, &|passed| self.release(passed)) {
            Ok(v) => Some(v),
            Err(_) => {
                *state = PassState::Corrupt;
                self.fail();
                None
            }
        }
    }

    /// Takes the pass to the stream's end now, handing the output to `observe` if
    /// the pass starts here. Returns whether `observe` saw the whole output.
    /// Each segment the pass goes by whole is kept if `keep` says so at its end.
    fn pass_all(
        &self,
        len: usize,
        mut observe: impl FnMut(usize, &[u8]),
        keep: impl Fn(usize) -> bool,
    ) -> bool {
        // Kept segments are stored once the pass is done and its lock let go of: a
        // reader of one of them may be waiting for that lock inside the segment's
        // `OnceLock`, which storing would wait for in turn.
        let mut kept: Vec<(usize, Box<[u8]>)> = Vec::new();
        let saw = self
            .with_pass(len, |pass, done| {
                if pass.reached() > 0 || pass.finished() {
                    pass.advance(usize::MAX, |_, _| {}, done)?;
                    return Ok(false);
                }
                // The segment being gone by, copied as it comes.
                let mut current: Vec<u8> = Vec::new();
                pass.advance(
                    usize::MAX,
                    |at, mut bytes| {
                        observe(at, bytes);
                        let mut at = at;
                        while !bytes.is_empty() {
                            let i = at / SEGMENT;
                            let end = inflate::segment_range(i, len).end;
                            let take = (end - at).min(bytes.len());
                            current.extend_from_slice(&bytes[..take]);
                            (at, bytes) = (at + take, &bytes[take..]);
                            if at == end {
                                if keep(i) {
                                    kept.push((i, std::mem::take(&mut current).into()));
                                }
                                current.clear();
                            }
                        }
                    },
                    done,
                )?;
                Ok(true)
            })
            .unwrap_or(false);
        for (i, bytes) in kept {
            if let Some(slot) = self.segments.get(i) {
                let _ = slot.set(bytes);
            }
        }
        saw
    }

    /// Bytes the pass holds: its checkpoints, and its buffer while it runs.
    fn pass_held(&self) -> usize {
        match &*self.pass.lock().unwrap_or_else(|e| e.into_inner()) {
            PassState::Running(p) => p.held(),
            _ => 0,
        }
    }

    fn passed_all(&self) -> bool {
        matches!(&*self.pass.lock().unwrap_or_else(|e| e.into_inner()),
            PassState::Running(p) if p.finished())
    }

    #[inline]
    fn segment(&self, i: usize, len: usize) -> &[u8] {
        match self.segments.get(i) {
            Some(slot) => match slot.get() {
                Some(seg) => seg,
                None => self.inflate_segment(slot, i, len),
            },
            None => &[],
        }
    }

    #[cold]
    #[inline(never)]
    fn inflate_segment<'a>(&self, slot: &'a OnceLock<Box<[u8]>>, i: usize, len: usize) -> &'a [u8] {
        slot.get_or_init(|| {
            let range = inflate::segment_range(i, len);
            let bytes = if self.segments.len() == 1 {
                let b = inflate::whole(self.stream, len).ok();
                self.release(self.stream);
                b
            } else {
                self.segment_of_pass(i, len, range)
            };
            if bytes.is_none() {
                self.fail();
            }
            bytes.unwrap_or_default().into_boxed_slice()
        })
    }

    /// Segment `i`: inflated from its checkpoint if the pass has gone by, else taken
    /// from the pass's output as it goes on to the segment's end.
    fn segment_of_pass(
        &self,
        i: usize,
        len: usize,
        range: std::ops::Range<usize>,
    ) -> Option<Vec<u8>> {
        let reached = self.with_pass(len, |pass, done| {
            if let Some(cp) = pass.index().checkpoint(i) {
                return Ok(Err(cp.clone()));
            }
            let mut out = Vec::with_capacity(range.len());
            pass.advance(
                range.end,
                |at, bytes| {
                    let from = range.start.max(at);
                    let to = range.end.min(at + bytes.len());
                    if from < to {
                        out.extend_from_slice(&bytes[from - at..to - at]);
                    }
                },
                done,
            )?;
            Ok(Ok(out))
        })?;
        match reached {
            Ok(out) => (out.len() == range.len()).then_some(out),
            Err(cp) => {
                let out = inflate::segment_from(self.stream, &cp, range).ok();
                self.release(self.stream);
                out
            }
        }
    }
}

impl<'data> Shared<'data> {
    /// The bytes from `start`, up to `end` or the end of the segment `start` is in.
    /// Empty when `start == end` or the bytes cannot be had (a corrupt stream).
    #[inline]
    fn piece(&self, start: usize, end: usize) -> &[u8] {
        if start >= end {
            return &[];
        }
        match &self.source {
            Source::Borrowed(b) => b.get(start..end).unwrap_or(&[]),
            Source::Owned(b) => b.get(start..end).unwrap_or(&[]),
            Source::Zlib(z) => {
                let i = start / SEGMENT;
                let at = i * SEGMENT;
                let seg = z.segment(i, self.len);
                seg.get(start - at..(end - at).min(seg.len()))
                    .unwrap_or(&[])
            }
        }
    }
}

/// Bytes `start..end` of a shared section.
#[derive(Clone)]
pub struct SectionReader<'data> {
    data: Arc<Shared<'data>>,
    start: usize,
    end: usize,
}

impl<'data> SectionReader<'data> {
    pub fn new(section: Section<'data>, release: Option<Release<'data>>) -> SectionReader<'data> {
        let mut damage = None;
        let (len, source) = match section {
            Section::Bytes(Cow::Borrowed(b)) => (b.len(), Source::Borrowed(b)),
            Section::Bytes(Cow::Owned(v)) => (v.len(), Source::Owned(v.into_boxed_slice())),
            Section::Damaged { reason } => {
                damage = Some(reason);
                (0, Source::Borrowed(&[][..]))
            }
            // Deflate inflates at most 1032 bytes a byte: a larger stated size is a
            // damaged header, read as an empty, damaged section rather than
            // allocated for.
            Section::Zlib { stream, size } if size / 1032 > stream.len() => {
                damage = Some(format!(
                    "has a compression header that states {size} bytes, more than its {} stored bytes can hold",
                    stream.len()
                ));
                (0, Source::Borrowed(&[][..]))
            }
            Section::Zlib { stream, size } => (
                size,
                Source::Zlib(Box::new(Lazy {
                    stream,
                    pass: Mutex::new(PassState::NotStarted),
                    segments: (0..size.div_ceil(SEGMENT).max(1))
                        .map(|_| OnceLock::new())
                        .collect(),
                    release,
                    failed: std::sync::atomic::AtomicBool::new(false),
                })),
            ),
        };
        SectionReader {
            data: Arc::new(Shared {
                len,
                source,
                damage,
            }),
            start: 0,
            end: len,
        }
    }

    /// Why the section cannot be read, if it cannot: its header says so, or its
    /// stream failed to inflate as far as it has been read.
    pub fn damage(&self) -> Option<String> {
        if let Some(d) = &self.data.damage {
            return Some(d.clone());
        }
        match &self.data.source {
            Source::Zlib(z) if z.failed.load(std::sync::atomic::Ordering::Relaxed) => {
                Some("does not inflate: its zlib stream is corrupt".into())
            }
            _ => None,
        }
    }

    /// The first piece of this reader's bytes (see [`Shared::piece`]).
    fn piece(&self) -> &[u8] {
        self.data.piece(self.start, self.end)
    }

    /// True when reading costs nothing more than inflating the segments read: the
    /// bytes are plain, or the pass over the stream is done.
    pub fn is_ready(&self) -> bool {
        match &self.data.source {
            Source::Zlib(z) if z.segments.len() == 1 => z.segments[0].get().is_some(),
            Source::Zlib(z) => z.passed_all(),
            _ => true,
        }
    }

    /// Makes the section ready ([`SectionReader::is_ready`]) if nobody has yet.
    pub fn make_ready(&self) {
        self.scan(|_, _| {}, |_| false);
    }

    /// Makes the section ready, handing the whole section to `observe` in order (its
    /// offset, then bytes) if that happens now, and keeping the segments (of
    /// [`inflate::SEGMENT`] bytes) for which `keep` says so once the pass has gone by
    /// them, so that reading them later inflates nothing. `keep(i)` is asked after
    /// `observe` has seen all of segment `i`. Returns false when the section was ready
    /// already, and `observe` saw nothing.
    pub fn scan(
        &self,
        mut observe: impl FnMut(usize, &[u8]),
        keep: impl Fn(usize) -> bool,
    ) -> bool {
        match &self.data.source {
            Source::Borrowed(_) | Source::Owned(_) => false,
            Source::Zlib(z) if z.segments.len() == 1 => {
                if z.segments[0].get().is_some() {
                    return false;
                }
                // A corrupt stream inflates to nothing, which `observe` must not take
                // for an empty section.
                let seg = z.segment(0, self.data.len);
                if seg.len() != self.data.len {
                    return false;
                }
                observe(0, seg);
                true
            }
            Source::Zlib(z) => z.pass_all(self.data.len, observe, keep),
        }
    }

    /// Bytes held in memory for this section: inflated segments and checkpoints.
    pub fn held(&self) -> usize {
        match &self.data.source {
            Source::Zlib(z) => {
                z.segments
                    .iter()
                    .filter_map(|s| s.get())
                    .map(|s| s.len())
                    .sum::<usize>()
                    + z.pass_held()
            }
            Source::Owned(b) => b.len(),
            Source::Borrowed(_) => 0,
        }
    }
}

impl fmt::Debug for SectionReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SectionReader({}..{} of {})",
            self.start, self.end, self.data.len
        )
    }
}

impl gimli::Reader for SectionReader<'_> {
    type Endian = LittleEndian;
    type Offset = usize;

    fn endian(&self) -> LittleEndian {
        LittleEndian
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn empty(&mut self) {
        self.start = self.end;
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len() {
            return Err(Error::UnexpectedEof(self.offset_id()));
        }
        self.end = self.start + len;
        Ok(())
    }

    fn offset_from(&self, base: &Self) -> usize {
        self.start.wrapping_sub(base.start)
    }

    fn offset_id(&self) -> ReaderOffsetId {
        ReaderOffsetId(self.start as u64)
    }

    fn lookup_offset_id(&self, id: ReaderOffsetId) -> Option<usize> {
        let id = usize::try_from(id.0).ok()?;
        (id >= self.start && id <= self.end).then(|| id - self.start)
    }

    fn find(&self, byte: u8) -> Result<usize> {
        let mut at = self.start;
        loop {
            let piece = self.data.piece(at, self.end);
            if piece.is_empty() {
                return Err(Error::UnexpectedEof(self.offset_id()));
            }
            if let Some(i) = piece.iter().position(|b| *b == byte) {
                return Ok(at + i - self.start);
            }
            at += piece.len();
        }
    }

    fn skip(&mut self, len: usize) -> Result<()> {
        if len > self.len() {
            return Err(Error::UnexpectedEof(self.offset_id()));
        }
        self.start += len;
        Ok(())
    }

    fn split(&mut self, len: usize) -> Result<Self> {
        if len > self.len() {
            return Err(Error::UnexpectedEof(self.offset_id()));
        }
        let head = SectionReader {
            data: self.data.clone(),
            start: self.start,
            end: self.start + len,
        };
        self.start += len;
        Ok(head)
    }

    fn to_slice(&self) -> Result<Cow<'_, [u8]>> {
        let first = self.piece();
        if first.len() == self.len() {
            return Ok(Cow::Borrowed(first));
        }
        // Bytes that straddle two segments are copied together.
        let mut all = vec![0; self.len()];
        self.clone().read_slice(&mut all)?;
        Ok(Cow::Owned(all))
    }

    fn to_string(&self) -> Result<Cow<'_, str>> {
        match self.to_slice()? {
            Cow::Borrowed(b) => std::str::from_utf8(b)
                .map(Cow::Borrowed)
                .map_err(|_| Error::BadUtf8),
            Cow::Owned(v) => String::from_utf8(v)
                .map(Cow::Owned)
                .map_err(|_| Error::BadUtf8),
        }
    }

    fn to_string_lossy(&self) -> Result<Cow<'_, str>> {
        Ok(match self.to_slice()? {
            Cow::Borrowed(b) => String::from_utf8_lossy(b),
            Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
        })
    }

    #[inline]
    fn read_u8(&mut self) -> Result<u8> {
        match self.piece().first() {
            Some(&b) => {
                self.start += 1;
                Ok(b)
            }
            None => Err(Error::UnexpectedEof(self.offset_id())),
        }
    }

    #[inline]
    fn read_slice(&mut self, buf: &mut [u8]) -> Result<()> {
        if buf.len() > self.len() {
            return Err(Error::UnexpectedEof(self.offset_id()));
        }
        // Nearly always the bytes lie in one piece.
        if let Some(src) = self.piece().get(..buf.len()) {
            buf.copy_from_slice(src);
            self.start += buf.len();
            return Ok(());
        }
        let mut done = 0;
        while done < buf.len() {
            let piece = self.data.piece(self.start + done, self.start + buf.len());
            if piece.is_empty() {
                return Err(Error::UnexpectedEof(self.offset_id()));
            }
            buf[done..done + piece.len()].copy_from_slice(piece);
            done += piece.len();
        }
        self.start += buf.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gimli::Reader;

    #[test]
    fn reads_split_and_runs_out_cleanly() {
        let mut r = SectionReader::new(Section::Bytes(Cow::Borrowed(&[1u8, 2, 3, 4, 0x80])), None);
        assert_eq!(r.read_u8().unwrap(), 1);
        let mut head = r.split(2).unwrap();
        assert_eq!(head.read_u16().unwrap(), 0x0302);
        assert!(head.read_u8().is_err());
        assert_eq!(
            r.offset_from(&SectionReader::new(
                Section::Bytes(Cow::Owned(vec![0u8; 5])),
                None
            )),
            3
        );
        // A ULEB128 whose continuation bit runs past the end is an error.
        r.skip(1).unwrap();
        assert!(r.read_uleb128().is_err());
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut z = flate2::Compress::new(flate2::Compression::default(), true);
        let mut out = Vec::with_capacity(data.len() + 64);
        z.compress_vec(data, &mut out, flate2::FlushCompress::Finish)
            .unwrap();
        out
    }

    #[test]
    fn a_compressed_section_is_inflated_where_it_is_read() {
        let plain: Vec<u8> = (0..3 * SEGMENT as u32 + 100)
            .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
            .collect();
        let stream = zlib(&plain);
        let released = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = released.clone();
        let r = SectionReader::new(
            Section::Zlib {
                stream: &stream,
                size: plain.len(),
            },
            Some(Arc::new(move |_: &[u8]| {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })),
        );
        // Its length is known, and splitting it reads nothing.
        assert_eq!(r.len(), plain.len());
        let mut tail = r.clone();
        tail.skip(2 * SEGMENT - 3).unwrap();
        assert!(!r.is_ready());
        assert_eq!(r.held(), 0);
        // A read that straddles two segments inflates both, and only them: the pass
        // over the stream goes as far as the second one's end, and keeps them.
        let mut six = [0u8; 6];
        tail.clone().read_slice(&mut six).unwrap();
        assert_eq!(six, plain[2 * SEGMENT - 3..2 * SEGMENT + 3]);
        assert!(!r.is_ready());
        let held = r.held();
        assert!((2 * SEGMENT..3 * SEGMENT).contains(&held), "{held}");
        // The second segment's checkpoint comes before the first one's end, so it
        // was inflated from there, which let go of the stored bytes once.
        let count = || released.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(count(), 1);
        // So is any segment the pass went by.
        assert_eq!(r.clone().read_u8().unwrap(), plain[0]);
        assert_eq!(count(), 2);
        // Finishing the pass lets go of the rest.
        r.make_ready();
        assert!(r.is_ready());
        assert_eq!(count(), 3);
        assert_eq!(tail.to_slice().unwrap(), &plain[2 * SEGMENT - 3..]);
        assert_eq!(tail.find(plain[2 * SEGMENT + 7]).ok(), Some(10));
        assert_eq!(r.to_slice().unwrap(), &plain[..]);
    }

    #[test]
    fn a_corrupt_or_wrong_sized_stream_reads_as_running_out() {
        let plain = vec![7u8; 4096];
        let mut stream = zlib(&plain);
        let long = SectionReader::new(
            Section::Zlib {
                stream: &stream,
                size: plain.len() + 1,
            },
            None,
        );
        assert!(long.clone().read_u8().is_err());
        drop(long);
        let n = stream.len();
        stream[n / 2] ^= 0xff;
        stream.truncate(n - 3);
        let mut bad = SectionReader::new(
            Section::Zlib {
                stream: &stream,
                size: plain.len(),
            },
            None,
        );
        assert!(bad.read_u32().is_err());
    }
}
