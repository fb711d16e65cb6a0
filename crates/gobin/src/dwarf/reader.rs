//! The byte reader gimli parses through: a window on a section that this crate
//! owns and shares (Go's DWARF sections are compressed, so their decompressed bytes
//! must be owned by someone; cloning a reader only bumps a reference count).
//! gimli's own `EndianArcSlice` would do, but it sits behind a gimli feature that
//! the workspace does not enable.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use gimli::{Error, LittleEndian, ReaderOffsetId, Result};

/// Bytes `start..end` of a shared section.
#[derive(Clone)]
pub struct SectionReader {
    data: Arc<[u8]>,
    start: usize,
    end: usize,
}

impl SectionReader {
    pub fn new(data: Arc<[u8]>) -> SectionReader {
        let end = data.len();
        SectionReader {
            data,
            start: 0,
            end,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or(&[])
    }
}

impl fmt::Debug for SectionReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SectionReader({}..{} of {})",
            self.start,
            self.end,
            self.data.len()
        )
    }
}

impl gimli::Reader for SectionReader {
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
        let mut r = SectionReader::new(Arc::from(&[1u8, 2, 3, 4, 0x80][..]));
        assert_eq!(r.read_u8().unwrap(), 1);
        let mut head = r.split(2).unwrap();
        assert_eq!(head.read_u16().unwrap(), 0x0302);
        assert!(head.read_u8().is_err());
        assert_eq!(
            r.offset_from(&SectionReader::new(Arc::from(&[0u8; 5][..]))),
            3
        );
        // A ULEB128 whose continuation bit runs past the end is an error.
        r.skip(1).unwrap();
        assert!(r.read_uleb128().is_err());
    }
}
