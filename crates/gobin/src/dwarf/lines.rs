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
            let mut paths: HashMap<u64, String> = HashMap::new();
            let mut rows = program.rows();
            while let Some((header, row)) = rows.next_row().ctx("reading the line table")? {
                if !row.is_stmt() || row.end_sequence() {
                    continue;
                }
                let addr = row.address();
                if !ranges.iter().any(|r| r.begin <= addr && addr < r.end) {
                    continue;
                }
                let Some(line) = row.line() else { continue };
                let path = match paths.get(&row.file_index()) {
                    Some(p) => p.clone(),
                    None => {
                        let p = self.file_path(unit, header, row.file_index())?;
                        paths.insert(row.file_index(), p.clone());
                        p
                    }
                };
                let addrs = out.entry((path, line.get())).or_default();
                if !addrs.contains(&VirtAddr(addr)) {
                    addrs.push(VirtAddr(addr));
                }
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

    fn file_path(
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
