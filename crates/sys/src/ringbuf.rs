//! Consuming a `BPF_MAP_TYPE_RINGBUF` map (Linux 5.8) in place. The kernel's layout:
//! the consumer page (our read position, which we write) at offset 0, then the
//! producer page (its write position, read-only to us) at one page, then the data
//! area, which the kernel maps twice in a row so a record that wraps around the end
//! reads as one contiguous slice. Each record starts with an 8-byte header: the
//! length in the low 30 bits of a `u32` with a busy bit (still being written) and a
//! discard bit, then the page offset; records are 8-byte aligned.
//!
//! For the producer side: submitting with `BPF_RB_NO_WAKEUP` (`bpf::helper::
//! RB_NO_WAKEUP`) spares a wakeup per event, and then [`RingBuf::poll`] finds the
//! records on its next timeout; gotap's short poll timeout makes that the cheap and
//! still timely choice.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bpf::MapKind;

use crate::cpu::page_size;
use crate::error::{Error, Result};
use crate::map::Map;
use crate::syscall::{Call, syscall};

pub(crate) const BUSY: u32 = 1 << 31;
pub(crate) const DISCARD: u32 = 1 << 30;
pub(crate) const HEADER: usize = 8;

/// A ring buffer's consumer.
#[derive(Debug)]
pub struct RingBuf {
    fd: OwnedFd,
    page: usize,
    /// The consumer page, read-write.
    consumer: usize,
    /// The producer page followed by the data area twice, read-only.
    producer: usize,
    /// The data area's size: a power of two.
    size: usize,
}

// The mappings are plain shared memory that the struct owns; it may move threads.
unsafe impl Send for RingBuf {}

impl RingBuf {
    /// Maps `map`'s pages. The consumer keeps its own descriptor of the map, so it
    /// outlives the `Map` if need be.
    pub fn new(map: &Map) -> Result<RingBuf> {
        if map.kind() != MapKind::RingBuf {
            return Err(Error::Invalid(format!(
                "map {} is a {:?}, not a ring buffer",
                map.spec().name,
                map.kind()
            )));
        }
        let size = map.spec().max_entries as usize;
        if !size.is_power_of_two() {
            return Err(Error::Invalid(format!(
                "ring buffer size {size} is not a power of two"
            )));
        }
        let page = page_size();
        let dup = syscall(Call::Dup { fd: map.as_fd() })
            .map_err(|e| Error::syscall("fcntl(F_DUPFD_CLOEXEC)", e))?;
        let fd = crate::syscall::owned_fd(dup)
            .map_err(|e| Error::syscall("fcntl(F_DUPFD_CLOEXEC)", e))?;
        let mmap = |len: usize, prot: i32, offset: usize| -> Result<usize> {
            let call = Call::Mmap {
                fd: fd.as_fd(),
                len,
                prot,
                offset: offset as i64,
            };
            let addr = syscall(call).map_err(|e| Error::syscall("mmap(ringbuf)", e))?;
            Ok(addr as usize)
        };
        let consumer = mmap(page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = match mmap(page + 2 * size, libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                let _ = syscall(Call::Munmap {
                    addr: consumer,
                    len: page,
                });
                return Err(e);
            }
        };
        Ok(RingBuf {
            fd,
            page,
            consumer,
            producer,
            size,
        })
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page is mapped read-write for the life of self, is
        // page-aligned, and its first 8 bytes are the kernel's `consumer_pos`.
        unsafe { &*(self.consumer as *const AtomicU64) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: as above for the producer page's `producer_pos`, which the kernel
        // writes concurrently; we only load it atomically.
        unsafe { &*(self.producer as *const AtomicU64) }
    }

    /// Calls `f` with each record already written, in order, and releases their
    /// space to the producer. Returns how many records `f` saw (discarded records
    /// are skipped).
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> Result<usize> {
        let data = self.producer + self.page;
        let mask = self.size as u64 - 1;
        let mut cons = self.consumer_pos().load(Ordering::Acquire);
        let mut seen = 0;
        loop {
            let prod = self.producer_pos().load(Ordering::Acquire);
            if cons >= prod {
                return Ok(seen);
            }
            while cons < prod {
                let at = data + (cons & mask) as usize;
                // SAFETY: `at` lies in the first copy of the data area and is 8-byte
                // aligned (records are), so the header's `u32` is in bounds.
                let len = unsafe { &*(at as *const AtomicU32) }.load(Ordering::Acquire);
                if len & BUSY != 0 {
                    return Ok(seen);
                }
                let n = (len & !(BUSY | DISCARD)) as usize;
                if n + HEADER > self.size {
                    return Err(Error::Invalid(format!(
                        "ring buffer record of {n} bytes in a {}-byte buffer",
                        self.size
                    )));
                }
                if len & DISCARD == 0 {
                    // SAFETY: the record lies within the data area mapped twice, so
                    // `at + 8 .. at + 8 + n` is mapped even when it wraps; the
                    // producer does not reuse it before consumer_pos passes it.
                    let rec = unsafe { std::slice::from_raw_parts((at + HEADER) as *const u8, n) };
                    f(rec);
                    seen += 1;
                }
                cons += (n + HEADER).next_multiple_of(8) as u64;
                self.consumer_pos().store(cons, Ordering::Release);
            }
        }
    }

    /// Reads the records there are; when there are none, waits up to `timeout` for
    /// the kernel to signal some (a submit without `BPF_RB_NO_WAKEUP`) and reads
    /// again. Returns how many records `f` saw; 0 on timeout or on a signal.
    pub fn poll(&mut self, timeout: Duration, mut f: impl FnMut(&[u8])) -> Result<usize> {
        let n = self.drain(&mut f)?;
        if n > 0 {
            return Ok(n);
        }
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        match syscall(Call::Poll {
            fd: self.fd.as_fd(),
            timeout_ms,
        }) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => return Ok(0),
            Err(e) => return Err(Error::syscall("poll(ringbuf)", e)),
        }
        self.drain(&mut f)
    }

    /// The bytes written and not yet consumed.
    pub fn pending(&self) -> u64 {
        let prod = self.producer_pos().load(Ordering::Acquire);
        prod.saturating_sub(self.consumer_pos().load(Ordering::Acquire))
    }
}

impl AsFd for RingBuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        let _ = syscall(Call::Munmap {
            addr: self.producer,
            len: self.page + 2 * self.size,
        });
        let _ = syscall(Call::Munmap {
            addr: self.consumer,
            len: self.page,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake;
    use bpf::MapSpec;

    /// The memory the kernel would map, laid out as it is: a consumer page, then a
    /// producer page and the data area twice.
    struct FakeRing {
        consumer: Vec<u64>,
        producer: Vec<u64>,
        page: usize,
        size: usize,
    }

    impl FakeRing {
        fn new(size: usize) -> FakeRing {
            let page = page_size();
            FakeRing {
                consumer: vec![0; page / 8],
                producer: vec![0; (page + 2 * size) / 8],
                page,
                size,
            }
        }

        fn bytes(&mut self) -> &mut [u8] {
            let n = self.producer.len() * 8;
            // SAFETY (test): viewing a Vec<u64> as its bytes.
            unsafe { std::slice::from_raw_parts_mut(self.producer.as_mut_ptr().cast::<u8>(), n) }
        }

        /// Writes a record at position `pos` with header word `len` and moves the
        /// producer position past it; the data area's second copy mirrors the first.
        fn put(&mut self, pos: u64, len: u32, payload: &[u8]) -> u64 {
            let (page, size) = (self.page, self.size);
            let mut ring: Vec<u8> = self.bytes()[page..page + size].to_vec();
            let mut rec = len.to_ne_bytes().to_vec();
            rec.extend_from_slice(&[0; 4]);
            rec.extend_from_slice(payload);
            for (i, b) in rec.iter().enumerate() {
                ring[(pos as usize + i) % size] = *b;
            }
            let bytes = self.bytes();
            bytes[page..page + size].copy_from_slice(&ring);
            bytes[page + size..page + 2 * size].copy_from_slice(&ring);
            let end = pos + (payload.len() as u64 + 8).next_multiple_of(8);
            self.producer[0] = end;
            end
        }
    }

    #[test]
    fn drains_records_in_place_skipping_discarded_stopping_at_busy_and_across_the_wrap() {
        let size = 64;
        let mut fr = FakeRing::new(size);
        let (cons, prod) = (
            fr.consumer.as_mut_ptr() as i64,
            fr.producer.as_mut_ptr() as i64,
        );
        let _g = fake::install(move |call| match call {
            Call::Bpf { .. } | Call::Dup { .. } => Ok(fake::dev_null()),
            Call::Mmap {
                offset: 0, prot, ..
            } => {
                assert_eq!(*prot, libc::PROT_READ | libc::PROT_WRITE);
                Ok(cons)
            }
            Call::Mmap {
                len, prot, offset, ..
            } => {
                assert_eq!(
                    (*len, *prot, *offset as usize),
                    (page_size() + 2 * size, libc::PROT_READ, page_size())
                );
                Ok(prod)
            }
            Call::Munmap { .. } | Call::Poll { .. } => Ok(0),
            _ => panic!("unexpected {}", call.name()),
        });
        let spec = MapSpec {
            name: "events".into(),
            kind: MapKind::RingBuf,
            key_size: 0,
            value_size: 0,
            max_entries: size as u32,
            flags: 0,
        };
        let map = Map::create(&spec).unwrap();
        let mut rb = RingBuf::new(&map).unwrap();
        let mut got: Vec<Vec<u8>> = Vec::new();

        let p = fr.put(0, 5, b"hello");
        let p = fr.put(p, 3 | DISCARD, b"bye");
        let p = fr.put(p, 20, &[7; 20]);
        assert_eq!(p, 64);
        assert_eq!(
            rb.poll(Duration::ZERO, |r| got.push(r.to_vec())).unwrap(),
            2
        );
        assert_eq!(got, vec![b"hello".to_vec(), vec![7; 20]]);
        assert_eq!(fr.consumer[0], 64);

        // A record whose payload runs past the end of the data area reads whole.
        let p = fr.put(64, 30, &[1; 30]);
        assert_eq!(rb.drain(|_| {}).unwrap(), 1);
        let wrapped: Vec<u8> = (0..20).collect();
        let p = fr.put(p, 20, &wrapped);
        let _ = fr.put(p, 8 | BUSY, &[0; 8]);
        got.clear();
        assert_eq!(rb.drain(|r| got.push(r.to_vec())).unwrap(), 1);
        assert_eq!(got, vec![wrapped]);
        assert_eq!(fr.consumer[0], p, "stops before the busy record");
        assert!(rb.pending() > 0);

        // A length no record can have is an error, not a read out of bounds.
        fr.put(p, 100, &[]);
        assert!(matches!(rb.drain(|_| {}), Err(Error::Invalid(_))));
    }
}
