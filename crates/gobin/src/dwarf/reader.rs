//! The byte reader gimli parses through: a window on a section that all readers of
//! it share (cloning a reader only bumps a reference count).
//!
//! Go's linker zlib-compresses its DWARF sections, and a query needs only a few of
//! them (a variable's type needs `.debug_info`, not the line table or the range
//! lists), so a compressed section is inflated on its first read, once, by whichever
//! reader gets there first. Its size is known beforehand from the compression
//! header, which is all gimli asks of a section it has not read yet.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use gimli::{Error, LittleEndian, ReaderOffsetId, Result};

/// Where a DWARF section's bytes come from.
pub enum Section<'data> {
    /// The bytes themselves (stored plainly, or inflated by the caller).
    Bytes(Cow<'data, [u8]>),
    /// A zlib stream that inflates to `size` bytes: inflated on the first read.
    Zlib { stream: &'data [u8], size: usize },
}

/// A section as readers share it.
struct Shared<'data> {
    len: usize,
    source: Source<'data>,
    inflated: OnceLock<Box<[u8]>>,
}

enum Source<'data> {
    Borrowed(&'data [u8]),
    Owned(Box<[u8]>),
    Zlib(&'data [u8]),
}

impl<'data> Shared<'data> {
    fn bytes(&self) -> &[u8] {
        match &self.source {
            Source::Borrowed(b) => b,
            Source::Owned(b) => b,
            Source::Zlib(stream) => self.inflated.get_or_init(|| inflate(stream, self.len)),
        }
    }
}

/// Inflates a whole zlib stream into exactly `size` bytes. A stream that is corrupt or
/// of another size gives an empty section, which every read then reports as running
/// out of data (gimli's error), never as wrong data.
fn inflate(stream: &[u8], size: usize) -> Box<[u8]> {
    let mut out = Vec::with_capacity(size);
    let mut z = flate2::Decompress::new(true);
    match z.decompress_vec(stream, &mut out, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd) if out.len() == size => out.into_boxed_slice(),
        _ => Box::default(),
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
    pub fn new(section: Section<'data>) -> SectionReader<'data> {
        let (len, source) = match section {
            Section::Bytes(Cow::Borrowed(b)) => (b.len(), Source::Borrowed(b)),
            Section::Bytes(Cow::Owned(v)) => (v.len(), Source::Owned(v.into_boxed_slice())),
            Section::Zlib { stream, size } => (size, Source::Zlib(stream)),
        };
        SectionReader {
            data: Arc::new(Shared {
                len,
                source,
                inflated: OnceLock::new(),
            }),
            start: 0,
            end: len,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.data.bytes().get(self.start..self.end).unwrap_or(&[])
    }

    /// True when reading costs nothing more: the bytes are plain or inflated.
    pub fn is_ready(&self) -> bool {
        !matches!(self.data.source, Source::Zlib(_)) || self.data.inflated.get().is_some()
    }

    /// Inflates the section now if it is compressed and nobody has yet.
    pub fn make_ready(&self) {
        self.data.bytes();
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
        self.bytes()
            .iter()
            .position(|b| *b == byte)
            .ok_or(Error::UnexpectedEof(self.offset_id()))
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
        Ok(Cow::Borrowed(self.bytes()))
    }

    fn to_string(&self) -> Result<Cow<'_, str>> {
        std::str::from_utf8(self.bytes())
            .map(Cow::Borrowed)
            .map_err(|_| Error::BadUtf8)
    }

    fn to_string_lossy(&self) -> Result<Cow<'_, str>> {
        Ok(String::from_utf8_lossy(self.bytes()))
    }

    fn read_slice(&mut self, buf: &mut [u8]) -> Result<()> {
        let src = self
            .bytes()
            .get(..buf.len())
            .ok_or(Error::UnexpectedEof(self.offset_id()))?;
        buf.copy_from_slice(src);
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
        let mut r = SectionReader::new(Section::Bytes(Cow::Borrowed(&[1u8, 2, 3, 4, 0x80])));
        assert_eq!(r.read_u8().unwrap(), 1);
        let mut head = r.split(2).unwrap();
        assert_eq!(head.read_u16().unwrap(), 0x0302);
        assert!(head.read_u8().is_err());
        assert_eq!(
            r.offset_from(&SectionReader::new(Section::Bytes(Cow::Owned(vec![
                0u8;
                5
            ])))),
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
    fn a_compressed_section_is_inflated_when_first_read() {
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let stream = zlib(&plain);
        assert!(stream.len() < plain.len() / 10);
        let r = SectionReader::new(Section::Zlib {
            stream: &stream,
            size: plain.len(),
        });
        // Its length is known, and splitting it reads nothing.
        assert_eq!(r.len(), plain.len());
        let mut tail = r.clone();
        tail.skip(99_990).unwrap();
        assert!(r.data.inflated.get().is_none());
        assert_eq!(tail.to_slice().unwrap(), &plain[99_990..]);
        // Every reader shares the one inflated copy.
        assert!(r.data.inflated.get().is_some());
        assert_eq!(r.to_slice().unwrap().len(), plain.len());
    }

    #[test]
    fn a_corrupt_or_wrong_sized_stream_reads_as_running_out() {
        let plain = vec![7u8; 4096];
        let mut stream = zlib(&plain);
        let long = SectionReader::new(Section::Zlib {
            stream: &stream,
            size: plain.len() + 1,
        });
        assert!(long.clone().read_u8().is_err());
        let n = stream.len();
        stream[n / 2] ^= 0xff;
        stream.truncate(n - 3);
        let mut bad = SectionReader::new(Section::Zlib {
            stream: &stream,
            size: plain.len(),
        });
        assert!(bad.read_u32().is_err());
    }
}
