//! Puts each probe hit's records back together. A hit's records are written by one CPU
//! in order, but records of hits on other CPUs can fall between them in the ring
//! buffer, so a `printf` and the backtrace after it could print apart. Every record
//! header carries its hit's tag (`bpf::script::EVENT_HEADER`); records are held for one
//! drain of the ring buffer and handed out hit by hit, hits in the order their first
//! record arrived. The buffers are kept between drains: no allocation per record once
//! they have grown.

use std::collections::HashMap;

#[derive(Default)]
pub struct Regroup {
    bytes: Vec<u8>,
    /// (tag, start, len) of each record held, in arrival order.
    records: Vec<(u32, usize, usize)>,
    /// The position of each tag's first record.
    first: HashMap<u32, usize>,
    order: Vec<(usize, usize)>,
}

impl Regroup {
    pub fn new() -> Regroup {
        Regroup::default()
    }

    /// Holds a copy of `rec`.
    pub fn push(&mut self, rec: &[u8]) {
        let tag = rec
            .get(4..8)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let start = self.bytes.len();
        self.bytes.extend_from_slice(rec);
        self.records.push((tag, start, rec.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Hands out every record held, hit by hit, and forgets them. Records with tag 0
    /// (no hit known) keep their place.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) {
        self.first.clear();
        self.order.clear();
        for (i, (tag, _, _)) in self.records.iter().enumerate() {
            let group = if *tag == 0 {
                i
            } else {
                *self.first.entry(*tag).or_insert(i)
            };
            self.order.push((group, i));
        }
        // Stable within a group: records keep the order their CPU wrote them in.
        self.order.sort_unstable();
        for (_, i) in &self.order {
            let (_, start, len) = self.records[*i];
            f(&self.bytes[start..start + len]);
        }
        self.records.clear();
        self.bytes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tag: u32, n: u8) -> Vec<u8> {
        let mut r = vec![0, 0, 0, 0];
        r.extend_from_slice(&tag.to_le_bytes());
        r.push(n);
        r
    }

    fn drained(g: &mut Regroup) -> Vec<u8> {
        let mut out = Vec::new();
        g.drain(|r| out.push(r[8]));
        out
    }

    #[test]
    fn a_hits_records_print_together_in_the_order_hits_began() {
        let mut g = Regroup::new();
        // CPU 1's hit (printf 1, backtrace 3) interleaved with CPU 2's (printf 2, backtrace 4).
        for (tag, n) in [
            (0x0100_0001, 1),
            (0x0200_0007, 2),
            (0x0100_0001, 3),
            (0x0200_0007, 4),
            (0x0100_0002, 5),
        ] {
            g.push(&rec(tag, n));
        }
        assert_eq!(drained(&mut g), [1, 3, 2, 4, 5]);
        assert!(g.is_empty());
    }

    #[test]
    fn untagged_records_keep_their_place() {
        let mut g = Regroup::new();
        for (tag, n) in [(0, 1), (0, 2), (7, 3), (0, 4), (7, 5)] {
            g.push(&rec(tag, n));
        }
        assert_eq!(drained(&mut g), [1, 2, 3, 5, 4]);
    }
}
