//! `.gopclntab`, the table the Go runtime itself uses for tracebacks, and which
//! survives `-ldflags=-s -w`: the sorted function table, each function's `_func`
//! record (name, flags, funcID, start line), and the pc-value tables that map a pc to
//! a file, a line, an SP delta or an inline-tree index.
//!
//! Layouts read here (all little-endian, 64-bit):
//!
//! * Go 1.18–1.19, magic `0xfffffff0`: `_func` without `startLine`, inline tree
//!   entries of 20 bytes.
//! * Go 1.20 and later, magic `0xfffffff1`: `_func` with `startLine`, inline tree
//!   entries of 16 bytes. Since Go 1.27 the header's `textStart` is zero and the text
//!   base comes from the module data instead.
//!
//! A pc-value table is a sequence of (value delta, pc delta) pairs, each a uvarint; the
//! value delta is zig-zag encoded, the pc delta is in units of the minimum instruction
//! size; the value starts at -1 and the pc at the function's entry; a zero value delta
//! after the first pair ends the table.

use crate::error::{Error, Result};

/// Magic of Go 1.18–1.19 tables.
pub const MAGIC_118: u32 = 0xffff_fff0;
/// Magic of Go 1.20+ tables.
pub const MAGIC_120: u32 = 0xffff_fff1;
/// Magic of Go 1.16–1.17 tables (recognised, not read).
pub const MAGIC_116: u32 = 0xffff_fffa;
/// Magic of Go 1.2–1.15 tables (recognised, not read).
pub const MAGIC_12: u32 = 0xffff_fffb;

/// `PCDATA_InlTreeIndex`: which pcdata table holds the inline-tree index.
pub const PCDATA_INL_TREE_INDEX: usize = 2;
/// `FUNCDATA_InlTree`: which funcdata points to the inline tree.
pub const FUNCDATA_INL_TREE: usize = 3;

/// The two layouts this module reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Go118,
    Go120,
}

impl Layout {
    /// Size of the fixed part of `_func`, up to and including `nfuncdata`.
    fn func_header_len(self) -> usize {
        match self {
            Layout::Go118 => 40,
            Layout::Go120 => 44,
        }
    }

    /// Size of one inline tree entry (`runtime.inlinedCall`).
    pub fn inlined_call_len(self) -> u64 {
        match self {
            Layout::Go118 => 20,
            Layout::Go120 => 16,
        }
    }
}

/// The decoded header and the sub-tables it points at.
#[derive(Clone, Debug)]
pub struct Table<'data> {
    pub layout: Layout,
    /// Virtual address of the header.
    pub addr: u64,
    /// pc quantum (1 on x86).
    pub quantum: u32,
    pub nfunc: usize,
    /// The header's `textStart`; zero since Go 1.27.
    pub header_text_start: u64,
    funcnametab: &'data [u8],
    cutab: &'data [u8],
    filetab: &'data [u8],
    pctab: &'data [u8],
    /// `pclntable`: the functab followed by the `_func` records.
    pclntable: &'data [u8],
}

/// The raw fields of one `_func` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFunc<'data> {
    pub entry_off: u32,
    pub name_off: u32,
    pub args: i32,
    pub pcsp: u32,
    pub pcfile: u32,
    pub pcln: u32,
    pub npcdata: u32,
    pub cu_offset: u32,
    pub start_line: Option<i32>,
    pub func_id: u8,
    pub flag: u8,
    pub nfuncdata: u8,
    /// The record from its start to the end of the table (pcdata and funcdata follow).
    pub bytes: &'data [u8],
    layout: Layout,
}

impl RawFunc<'_> {
    /// Offset into the pc-value tables of pcdata table `i`, if the function has one.
    pub fn pcdata(&self, i: usize) -> Option<u32> {
        if i >= self.npcdata as usize {
            return None;
        }
        let off = read_u32(self.bytes, self.layout.func_header_len() + 4 * i)?;
        (off != 0).then_some(off)
    }

    /// Offset from the module's `go:func.*` of funcdata `i`, if present.
    pub fn funcdata(&self, i: usize) -> Option<u32> {
        if i >= usize::from(self.nfuncdata) {
            return None;
        }
        let at = self.layout.func_header_len() + 4 * self.npcdata as usize + 4 * i;
        let off = read_u32(self.bytes, at)?;
        (off != u32::MAX).then_some(off)
    }
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Reads a uvarint; returns the value and the number of bytes used.
pub(crate) fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// True if `b` starts with a header this module can read (or the 1.16 one), judged by
/// the magic, the zero padding, a plausible quantum and 8-byte pointers.
pub fn looks_like_header(b: &[u8]) -> bool {
    let Some(magic) = read_u32(b, 0) else {
        return false;
    };
    matches!(magic, MAGIC_118 | MAGIC_120 | MAGIC_116)
        && b.get(4..8)
            .is_some_and(|h| h[0] == 0 && h[1] == 0 && matches!(h[2], 1 | 2 | 4) && h[3] == 8)
}

impl<'data> Table<'data> {
    /// Decodes the header at the start of `data`, which lies at virtual address `addr`
    /// and runs to the end of whatever holds it.
    pub fn parse(data: &'data [u8], addr: u64) -> Result<Table<'data>> {
        let magic = read_u32(data, 0).ok_or(Error::Truncated {
            what: "pclntab header",
        })?;
        let layout = match magic {
            MAGIC_118 => Layout::Go118,
            MAGIC_120 => Layout::Go120,
            MAGIC_116 => {
                return Err(Error::Unsupported {
                    what: "Go 1.16/1.17 pclntab",
                });
            }
            MAGIC_12 => {
                return Err(Error::Unsupported {
                    what: "Go 1.2–1.15 pclntab",
                });
            }
            _ => {
                return Err(Error::Corrupt {
                    what: "pclntab magic",
                });
            }
        };
        let head = data.get(..72).ok_or(Error::Truncated {
            what: "pclntab header",
        })?;
        if head[4] != 0 || head[5] != 0 || head[7] != 8 {
            return Err(Error::Unsupported {
                what: "pclntab with pointers other than 8 bytes",
            });
        }
        let quantum = u32::from(head[6]);
        if quantum == 0 {
            return Err(Error::Corrupt {
                what: "pclntab pc quantum",
            });
        }
        let word = |i: usize| read_u64(head, 8 + 8 * i).unwrap_or(0);
        let nfunc = usize::try_from(word(0)).map_err(|_| Error::Corrupt {
            what: "pclntab function count",
        })?;
        let sub = |i: usize, what: &'static str| -> Result<&'data [u8]> {
            let off = usize::try_from(word(i)).map_err(|_| Error::Corrupt { what })?;
            data.get(off..).ok_or(Error::Truncated { what })
        };
        let funcnametab = sub(3, "pclntab function names")?;
        let cutab = sub(4, "pclntab compilation unit table")?;
        let filetab = sub(5, "pclntab file names")?;
        let pctab = sub(6, "pclntab pc-value tables")?;
        let pclntable = sub(7, "pclntab function table")?;
        let need = nfunc
            .checked_add(1)
            .and_then(|n| n.checked_mul(8))
            .ok_or(Error::Corrupt {
                what: "pclntab function count",
            })?;
        if pclntable.len() < need {
            return Err(Error::Truncated {
                what: "pclntab function table",
            });
        }
        let table = Table {
            layout,
            addr,
            quantum,
            nfunc,
            header_text_start: word(2),
            funcnametab,
            cutab,
            filetab,
            pctab,
            pclntable,
        };
        // The function table must be sorted, or binary search would lie.
        let mut prev = 0;
        for i in 0..=nfunc {
            let e = table.entry_off(i).unwrap_or(0);
            if e < prev {
                return Err(Error::Corrupt {
                    what: "pclntab function table is not sorted",
                });
            }
            prev = e;
        }
        Ok(table)
    }

    /// The entry offset (from the text start) of function `i`; `i == nfunc` gives the
    /// end of the last function.
    pub fn entry_off(&self, i: usize) -> Option<u32> {
        read_u32(self.pclntable, i.checked_mul(8)?)
    }

    /// Index of the function whose range holds the text offset `off`.
    pub fn find(&self, off: u32) -> Option<usize> {
        let (first, last) = (self.entry_off(0)?, self.entry_off(self.nfunc)?);
        if off < first || off >= last {
            return None;
        }
        // The last i with entry_off(i) <= off.
        let (mut lo, mut hi) = (0, self.nfunc);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.entry_off(mid)? <= off {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    /// The `_func` record of function `i`.
    pub fn raw_func(&self, i: usize) -> Result<RawFunc<'data>> {
        let corrupt = Error::Corrupt {
            what: "pclntab function record",
        };
        if i >= self.nfunc {
            return Err(corrupt);
        }
        let func_off = read_u32(self.pclntable, i * 8 + 4).ok_or(corrupt.clone())?;
        let bytes = self
            .pclntable
            .get(func_off as usize..)
            .ok_or(Error::Truncated {
                what: "pclntab function record",
            })?;
        let fixed = bytes
            .get(..self.layout.func_header_len())
            .ok_or(Error::Truncated {
                what: "pclntab function record",
            })?;
        let f = |n: usize| read_u32(fixed, 4 * n).unwrap_or(0);
        let (start_line, tail) = match self.layout {
            Layout::Go118 => (None, 36),
            Layout::Go120 => (Some(f(9) as i32), 40),
        };
        Ok(RawFunc {
            entry_off: f(0),
            name_off: f(1),
            args: f(2) as i32,
            pcsp: f(4),
            pcfile: f(5),
            pcln: f(6),
            npcdata: f(7),
            cu_offset: f(8),
            start_line,
            func_id: fixed[tail],
            flag: fixed[tail + 1],
            nfuncdata: fixed[tail + 3],
            bytes,
            layout: self.layout,
        })
    }

    /// True if function `i` is called exactly `name`: its name's bytes compared in
    /// place, with no record decoded and no UTF-8 check (a scan of every function).
    pub fn func_name_is(&self, i: usize, name: &str) -> bool {
        if i >= self.nfunc {
            return false;
        }
        let Some(func_off) = read_u32(self.pclntable, i * 8 + 4) else {
            return false;
        };
        let Some(name_off) = read_u32(self.pclntable, func_off as usize + 4) else {
            return false;
        };
        let n = name.len();
        self.funcnametab
            .get(name_off as usize..)
            .is_some_and(|b| b.len() > n && &b[..n] == name.as_bytes() && b[n] == 0)
    }

    /// A NUL-terminated name from the function name table.
    pub fn name(&self, off: u32) -> Option<&'data str> {
        cstr(self.funcnametab.get(off as usize..)?)
    }

    /// The file name of file number `fileno` of the compilation unit at `cu_offset`.
    pub fn file(&self, cu_offset: u32, fileno: i32) -> Option<&'data str> {
        let idx = u32::try_from(fileno).ok()?.checked_add(cu_offset)? as usize;
        let off = read_u32(self.cutab, idx.checked_mul(4)?)?;
        if off == u32::MAX {
            return None;
        }
        cstr(self.filetab.get(off as usize..)?)
    }

    /// The pc-value table at `off`, walked from `entry`.
    pub fn pcvalues(&self, off: u32, entry: u64) -> PcValues<'data> {
        let table = if off == 0 {
            &[][..]
        } else {
            self.pctab.get(off as usize..).unwrap_or(&[])
        };
        PcValues {
            table,
            pc: entry,
            value: -1,
            first: true,
            quantum: u64::from(self.quantum),
        }
    }

    /// The value of the table at `off` for `pc` in the function starting at `entry`.
    pub fn pcvalue(&self, off: u32, entry: u64, pc: u64) -> Option<i32> {
        if off == 0 {
            return None;
        }
        self.pcvalues(off, entry)
            .find(|r| pc >= r.start && pc < r.end)
            .map(|r| r.value)
    }
}

fn cstr(b: &[u8]) -> Option<&str> {
    let n = b.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&b[..n]).ok()
}

/// One run of a pc-value table: `value` holds for pcs in `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcRange {
    pub start: u64,
    pub end: u64,
    pub value: i32,
}

/// Iterator over the runs of one pc-value table. It ends at the table's end or at the
/// first malformed byte.
#[derive(Clone, Debug)]
pub struct PcValues<'data> {
    table: &'data [u8],
    pc: u64,
    value: i32,
    first: bool,
    quantum: u64,
}

impl Iterator for PcValues<'_> {
    type Item = PcRange;

    fn next(&mut self) -> Option<PcRange> {
        let (uvdelta, n) = uvarint(self.table)?;
        if uvdelta == 0 && !self.first {
            self.table = &[];
            return None;
        }
        self.first = false;
        let delta = if uvdelta & 1 != 0 {
            !(uvdelta >> 1) as i64
        } else {
            (uvdelta >> 1) as i64
        };
        self.value = self.value.wrapping_add(delta as i32);
        let (pcdelta, m) = uvarint(&self.table[n..])?;
        self.table = &self.table[n + m..];
        let start = self.pc;
        self.pc = self.pc.wrapping_add(pcdelta.wrapping_mul(self.quantum));
        Some(PcRange {
            start,
            end: self.pc,
            value: self.value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_value_table_decodes() {
        // Value deltas are zig-zag: 2 → +1, 0x14 → +10, 3 → -2. Pc deltas in quanta.
        // (+1 from -1 = 0 for 4 bytes) (+10 = 10 for 6) (-2 = 8 for 1) end.
        let table = [2u8, 4, 0x14, 6, 3, 1, 0];
        let t = PcValues {
            table: &table,
            pc: 0x1000,
            value: -1,
            first: true,
            quantum: 1,
        };
        let got: Vec<_> = t.map(|r| (r.start, r.end, r.value)).collect();
        assert_eq!(
            got,
            vec![
                (0x1000, 0x1004, 0),
                (0x1004, 0x100a, 10),
                (0x100a, 0x100b, 8)
            ]
        );
    }

    /// A Go 1.20 table with one function, `main.f`, 4 bytes long at text offset 0.
    fn one_function_table() -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&MAGIC_120.to_le_bytes());
        t.extend_from_slice(&[0, 0, 1, 8]); // pad, pad, pc quantum 1, pointer size 8
        for word in [
            1u64,   // nfunc
            1,      // nfiles
            0x1000, // textStart
            72,     // funcnameOffset
            79,     // cuOffset
            83,     // filetabOffset
            88,     // pctabOffset
            101,    // pclnOffset
        ] {
            t.extend_from_slice(&word.to_le_bytes());
        }
        t.extend_from_slice(b"main.f\0"); // 72: funcnametab
        t.extend_from_slice(&0u32.to_le_bytes()); // 79: cutab, CU 0 file 0 → filetab 0
        t.extend_from_slice(b"f.go\0"); // 83: filetab
        t.extend_from_slice(&[
            0, // 88: pctab offset 0 means "no table"
            22, 4, 0, // offset 1, pcln: +11 (line 10) for 4 bytes, end
            2, 4, 0, // offset 4, pcfile: +1 (file 0) for 4 bytes, end
            2, 1, 16, 3, 0, // offset 7, pcsp: 0 for 1 byte, +8 (8) for 3, end
            0, // pad
        ]);
        // 101: functab, (entry offset, _func offset) pairs, then the end sentinel.
        for word in [0u32, 16, 4, 0] {
            t.extend_from_slice(&word.to_le_bytes());
        }
        // 117: _func: entryOff, nameOff, args, deferreturn, pcsp, pcfile, pcln,
        // npcdata, cuOffset, startLine; funcID, flag (ASM), pad, nfuncdata.
        for word in [0u32, 0, 8, 0, 7, 4, 1, 0, 0, 10] {
            t.extend_from_slice(&word.to_le_bytes());
        }
        t.extend_from_slice(&[0, 4, 0, 0]);
        t
    }

    #[test]
    fn a_one_function_table_reads_back() {
        let data = one_function_table();
        let t = Table::parse(&data, 0x5000).expect("parse");
        assert_eq!(
            (t.layout, t.nfunc, t.header_text_start, t.quantum),
            (Layout::Go120, 1, 0x1000, 1)
        );
        assert_eq!((t.find(0), t.find(3), t.find(4)), (Some(0), Some(0), None));
        let f = t.raw_func(0).expect("func");
        assert_eq!(
            (f.args, f.start_line, f.flag, f.npcdata, f.nfuncdata),
            (8, Some(10), 4, 0, 0)
        );
        assert_eq!(t.name(f.name_off), Some("main.f"));
        assert_eq!(t.file(f.cu_offset, 0), Some("f.go"));
        assert_eq!(t.pcvalue(f.pcln, 0x1000, 0x1003), Some(10));
        assert_eq!(t.pcvalue(f.pcln, 0x1000, 0x1004), None);
        assert_eq!(t.pcvalue(f.pcfile, 0x1000, 0x1000), Some(0));
        let sp: Vec<i32> = (0x1000..0x1004)
            .map(|pc| t.pcvalue(f.pcsp, 0x1000, pc).unwrap_or(-99))
            .collect();
        assert_eq!(sp, [0, 8, 8, 8]);
        assert!(t.raw_func(1).is_err());
    }

    #[test]
    fn bad_headers_are_named() {
        let mut data = one_function_table();
        data[..4].copy_from_slice(&MAGIC_116.to_le_bytes());
        assert_eq!(
            Table::parse(&data, 0).err(),
            Some(Error::Unsupported {
                what: "Go 1.16/1.17 pclntab"
            })
        );
        data[..4].copy_from_slice(&MAGIC_12.to_le_bytes());
        assert!(matches!(
            Table::parse(&data, 0),
            Err(Error::Unsupported { .. })
        ));
        data[..4].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        assert_eq!(
            Table::parse(&data, 0).err(),
            Some(Error::Corrupt {
                what: "pclntab magic"
            })
        );
        let data = one_function_table();
        assert!(matches!(
            Table::parse(&data[..60], 0),
            Err(Error::Truncated { .. })
        ));
        // A function count that the function table cannot hold.
        let mut data = one_function_table();
        data[8] = 200;
        assert_eq!(
            Table::parse(&data, 0).err(),
            Some(Error::Truncated {
                what: "pclntab function table"
            })
        );
        // Entries out of order.
        let mut data = one_function_table();
        data[101..105].copy_from_slice(&9u32.to_le_bytes());
        assert!(matches!(Table::parse(&data, 0), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn uvarint_reads_multibyte_and_rejects_overlong() {
        assert_eq!(uvarint(&[0xac, 0x02]), Some((300, 2)));
        assert_eq!(uvarint(&[0x80; 11]), None);
        assert_eq!(uvarint(&[]), None);
    }
}
