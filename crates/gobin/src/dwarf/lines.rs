//! Statement lines of a function, from its unit's DWARF line table, and the rule that
//! matches a user's file pattern against the paths recorded there.
//!
//! Go records absolute source paths: the toolchain's own files under the GOROOT it
//! was installed in (`/opt/go/src/runtime/stack.go`), which is rarely where the user's
//! copy of the source is. So a pattern matches a path when, after dropping a leading
//! `./`:
//! - it equals the path, or the path ends with `/` + pattern (`stack.go`,
//!   `runtime/stack.go`); or
//! - the pattern ends with `/` + the path's part after its last `/src/`
//!   (`/usr/lib/golang/src/runtime/stack.go` matches `$GOROOT/src/runtime/stack.go`:
//!   same file of another copy of the tree); or
//! - the pattern has `*` or `?`, and it glob-matches the path or a suffix of it that
//!   starts after a `/` (`runtime/*.go`, `*/stack.go`); `*` also matches `/`.

use std::collections::{BTreeMap, HashMap};

use super::{Context, Dwarf, Error, Result};
use crate::VirtAddr;

/// Whether the user's `pattern` names the source file at `path` (see the module
/// documentation for the rule).
pub fn file_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    if pattern.is_empty() {
        return false;
    }
    if pattern.contains(['*', '?']) {
        return glob(pattern.as_bytes(), path.as_bytes())
            || path
                .match_indices('/')
                .any(|(i, _)| glob(pattern.as_bytes(), &path.as_bytes()[i + 1..]));
    }
    if path == pattern
        || (path.ends_with(pattern) && path[..path.len() - pattern.len()].ends_with('/'))
    {
        return true;
    }
    match path.rfind("/src/") {
        Some(i) => {
            let rel = &path[i + "/src/".len()..];
            !rel.is_empty()
                && pattern.ends_with(rel)
                && pattern[..pattern.len() - rel.len()].ends_with('/')
        }
        None => false,
    }
}

/// Glob with `*` (any run of bytes, `/` included) and `?` (one byte), iteratively with
/// backtracking to the last `*`, so it is linear-ish and cannot blow the stack.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl<'data> Dwarf<'data> {
    /// The statement lines of function `func`: for each (source path, line), the
    /// addresses of the `is_stmt` rows of the line table inside the function's code,
    /// in increasing order. Lines of functions inlined into `func` are included (their
    /// code is `func`'s), under the inlined function's own file.
    pub fn statement_lines(&self, func: &str) -> Result<BTreeMap<(String, u64), Vec<VirtAddr>>> {
        self.blamed(self.statement_rows_of(func))
    }

    fn statement_rows_of(&self, func: &str) -> Result<BTreeMap<(String, u64), Vec<VirtAddr>>> {
        let mut out: BTreeMap<(String, u64), Vec<VirtAddr>> = BTreeMap::new();
        for (index, offset) in self.find_function(func)? {
            let unit = self.unit(index)?;
            let entry = unit.entry(offset).ctx("reading a function's DIE")?;
            let mut ranges = Vec::new();
            let mut iter = self
                .gimli
                .die_ranges(unit, &entry)
                .ctx("reading a function's ranges")?;
            while let Some(r) = iter.next().ctx("reading a function's ranges")? {
                ranges.push(r);
            }
            let Some(program) = self.line_program(index)? else {
                return Err(Error::Corrupt(format!(
                    "the unit of {func} has no line table"
                )));
            };
            let header = program.header();
            let mut paths: HashMap<u64, String> = HashMap::new();
            let mut err = None;
            // A function's rows are found by a walk of its unit's whole program; once
            // a second function of the unit asks, the unit's rows are kept by address
            // (a listing of every statement asks for all of them).
            let slot = self.slot(index)?;
            let asked = slot
                .line_queries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let each_row = |row: &mut dyn FnMut(u64, u64, u64)| -> Result<()> {
                if asked == 0 {
                    return statement_rows(header, &ranges, row);
                }
                let rows = slot
                    .rows
                    .get_or_init(|| {
                        let mut all = Vec::new();
                        let everywhere = [gimli::Range {
                            begin: 0,
                            end: u64::MAX,
                        }];
                        statement_rows(header, &everywhere, |addr, file, line| {
                            all.push(Row { addr, file, line })
                        })?;
                        all.sort_by_key(|r| r.addr);
                        Ok(all)
                    })
                    .as_ref()
                    .map_err(Clone::clone)?;
                for r in &ranges {
                    let from = rows.partition_point(|x| x.addr < r.begin);
                    for x in rows[from..].iter().take_while(|x| x.addr < r.end) {
                        row(x.addr, x.file, x.line);
                    }
                }
                Ok(())
            };
            each_row(&mut |addr, file, line| {
                if err.is_some() {
                    return;
                }
                let path = match paths.get(&file) {
                    Some(p) => p.clone(),
                    None => match self.file_path(unit, header, file) {
                        Ok(p) => {
                            paths.insert(file, p.clone());
                            p
                        }
                        Err(e) => {
                            err = Some(e);
                            return;
                        }
                    },
                };
                let addrs = out.entry((path, line)).or_default();
                if !addrs.contains(&VirtAddr(addr)) {
                    addrs.push(VirtAddr(addr));
                }
            })?;
            if let Some(e) = err {
                return Err(e);
            }
        }
        for addrs in out.values_mut() {
            addrs.sort();
        }
        Ok(out)
    }

    /// The addresses of the statement rows of `func` at `line` of a file that `file`
    /// matches (see [`file_matches`]).
    pub fn line_addresses(&self, func: &str, file: &str, line: u64) -> Result<Vec<VirtAddr>> {
        let mut out: Vec<VirtAddr> = self
            .statement_lines(func)?
            .into_iter()
            .filter(|((path, l), _)| *l == line && file_matches(file, path))
            .flat_map(|(_, addrs)| addrs)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub(crate) fn file_path(
        &self,
        unit: &super::Unit<'data>,
        header: &gimli::LineProgramHeader<super::R<'data>>,
        index: u64,
    ) -> Result<String> {
        let file = header.file(index).ok_or_else(|| {
            Error::Corrupt(format!(
                "line table names file #{index}, which it does not list"
            ))
        })?;
        let name = self
            .gimli
            .attr_string(unit, file.path_name())
            .ctx("reading a file name")?;
        let name = super::lossy(&name);
        if name.starts_with('/') {
            return Ok(name);
        }
        let dir = match file.directory(header) {
            Some(d) => super::lossy(
                &self
                    .gimli
                    .attr_string(unit, d)
                    .ctx("reading a directory name")?,
            ),
            None => String::new(),
        };
        Ok(if dir.is_empty() || dir == "." {
            name
        } else {
            format!("{}/{name}", dir.trim_end_matches('/'))
        })
    }
}

/// One statement row of a line table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row {
    addr: u64,
    file: u64,
    line: u64,
}

/// Runs the line program of `header` and calls `row(address, file, line)` for each
/// `is_stmt` row whose address is inside `ranges`.
///
/// gimli's row iterator builds every row of the unit, and Go's runtime unit has
/// hundreds of thousands of them, of which a function owns a few hundred; this walk
/// keeps the state machine's registers (DWARF 5, section 6.2.5) and builds nothing
/// for the rest. Go writes a sequence per function, but an address may be set
/// anywhere in a program, so nothing is skipped on that belief.
fn statement_rows(
    header: &gimli::LineProgramHeader<super::R<'_>>,
    ranges: &[gimli::Range],
    mut row: impl FnMut(u64, u64, u64),
) -> Result<()> {
    use gimli::Reader as _;
    let corrupt = |what: &str| Error::Corrupt(format!("line program: {what}"));
    let buf = header.raw_program_buf();
    let program = buf.to_slice().ctx("reading a line program")?;
    let code: &[u8] = &program;
    let opcode_base = header.opcode_base();
    let line_base = i64::from(header.line_base());
    let line_range = u64::from(header.line_range());
    if line_range == 0 || opcode_base == 0 {
        return Err(corrupt("a line range or opcode base of 0"));
    }
    let min_len = u64::from(header.minimum_instruction_length());
    let lengths = header
        .standard_opcode_lengths()
        .to_slice()
        .ctx("reading a line program header")?
        .into_owned();
    let default_stmt = header.default_is_stmt();
    let addr_size = usize::from(header.address_size());
    let inside = |a: u64| ranges.iter().any(|r| r.begin <= a && a < r.end);

    let (mut addr, mut file, mut line, mut stmt) = (0u64, 1u64, 1i64, default_stmt);
    let mut at = 0usize;
    let byte = |at: &mut usize| -> Result<u8> {
        let b = *code.get(*at).ok_or_else(|| corrupt("runs past its end"))?;
        *at += 1;
        Ok(b)
    };
    // ULEB128 is Go's uvarint.
    let uleb = |at: &mut usize| -> Result<u64> {
        let (v, n) = code
            .get(*at..)
            .and_then(crate::pclntab::uvarint)
            .ok_or_else(|| corrupt("a ULEB128 runs past its end or past 64 bits"))?;
        *at += n;
        Ok(v)
    };
    let sleb = |at: &mut usize| -> Result<i64> {
        let (mut v, mut shift) = (0i64, 0u32);
        loop {
            let b = byte(at)?;
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Ok(v);
            }
        }
    };
    while at < code.len() {
        let op = byte(&mut at)?;
        if op >= opcode_base {
            let adjusted = u64::from(op - opcode_base);
            addr = addr.wrapping_add(min_len * (adjusted / line_range));
            line = line.wrapping_add(line_base + (adjusted % line_range) as i64);
            if stmt && line > 0 && inside(addr) {
                row(addr, file, line as u64);
            }
            continue;
        }
        match op {
            0 => {
                let len = uleb(&mut at)?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| at.checked_add(l))
                    .filter(|e| *e <= code.len())
                    .ok_or_else(|| corrupt("an extended opcode runs past its end"))?;
                if len == 0 {
                    continue;
                }
                match byte(&mut at)? {
                    // DW_LNE_end_sequence: the row it ends is past the code.
                    1 => (addr, file, line, stmt) = (0, 1, 1, default_stmt),
                    // DW_LNE_set_address.
                    2 => {
                        let bytes = code
                            .get(at..at + addr_size.min(8))
                            .ok_or_else(|| corrupt("a short address"))?;
                        let mut word = [0u8; 8];
                        word[..bytes.len()].copy_from_slice(bytes);
                        addr = u64::from_le_bytes(word);
                    }
                    _ => {}
                }
                at = end;
            }
            // DW_LNS_copy.
            1 => {
                if stmt && line > 0 && inside(addr) {
                    row(addr, file, line as u64);
                }
            }
            2 => addr = addr.wrapping_add(min_len.wrapping_mul(uleb(&mut at)?)),
            3 => line = line.wrapping_add(sleb(&mut at)?),
            4 => file = uleb(&mut at)?,
            6 => stmt = !stmt,
            // DW_LNS_const_add_pc.
            8 => addr = addr.wrapping_add(min_len * ((255 - u64::from(opcode_base)) / line_range)),
            // DW_LNS_fixed_advance_pc: a plain u16.
            9 => {
                let lo = byte(&mut at)?;
                let hi = byte(&mut at)?;
                addr = addr.wrapping_add(u64::from(u16::from_le_bytes([lo, hi])));
            }
            // Any other standard opcode: skip its ULEB128 operands.
            _ => {
                let n = lengths.get(usize::from(op) - 1).copied().unwrap_or(0);
                for _ in 0..n {
                    uleb(&mut at)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::file_matches;

    const STACK: &str = "/opt/go/1.25/src/runtime/stack.go";

    #[test]
    fn suffixes_and_other_goroots_match() {
        assert!(file_matches("stack.go", STACK));
        assert!(file_matches("runtime/stack.go", STACK));
        assert!(file_matches(STACK, STACK));
        assert!(file_matches("/usr/lib/golang/src/runtime/stack.go", STACK));
        assert!(file_matches("./runtime/stack.go", STACK));
    }

    #[test]
    fn partial_names_do_not_match() {
        assert!(!file_matches("tack.go", STACK));
        assert!(!file_matches(
            "/usr/lib/golang/src/runtime/lfstack.go",
            STACK
        ));
        assert!(!file_matches("mgcstack.go", STACK));
        assert!(!file_matches("", STACK));
    }

    #[test]
    fn globs() {
        assert!(file_matches("runtime/*.go", STACK));
        assert!(file_matches("*/stack.go", STACK));
        assert!(file_matches("st?ck.go", STACK));
        assert!(file_matches("*", STACK));
        assert!(!file_matches("runtime/*.c", STACK));
        assert!(!file_matches("os/*.go", STACK));
    }
}
