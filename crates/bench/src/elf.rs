//! A copy of a Go executable whose symbol for a function starts a few bytes into the
//! function. bpftrace 0.17 as Debian builds it refuses `uprobe:BIN:FUNC+OFFSET` ("compiled
//! without (k|u)probe offset support"), and resolves `uprobe:BIN:0xADDR` to the same
//! refused form; moving the symbol is how it can probe the very address gotap probes
//! (the `push rbp` after Go's stack-check prologue, or a statement's first
//! instruction). Only `.symtab` changes: the code, and so the cost of running it, is
//! the same.

use crate::error::{Error, Result};
use std::path::Path;

const SHT_SYMTAB: u32 = 2;
const STT_FUNC: u8 = 2;

/// Writes to `out` a copy of `exe` where `symbol` starts at its old value + `delta`.
pub fn moved_symbol_copy(exe: &Path, out: &Path, symbol: &str, delta: u64) -> Result<()> {
    aimed_copy(exe, out, &[(symbol, symbol, delta)])
}

/// Writes to `out` a copy of `exe` where, for each `(symbol, func, delta)`, `symbol`
/// starts at `func`'s value + `delta` and ends where `func` ends. With `symbol` another
/// function than `func` (one the workload does not run), bpftrace can probe a second
/// address inside `func` in the same run: a function's entry and its `RET`.
pub fn aimed_copy(exe: &Path, out: &Path, aims: &[(&str, &str, u64)]) -> Result<()> {
    let mut data = std::fs::read(exe).map_err(|source| Error::File {
        path: exe.to_path_buf(),
        source,
    })?;
    let entry = |d: &[u8], name: &str| {
        symtab_entry(d, name)
            .ok_or_else(|| Error::Setup(format!("{}: no symbol {name} in .symtab", exe.display())))
    };
    // Every value is read before any is written: a symbol moved by one aim may be
    // the function another aim is measured from.
    let mut edits = Vec::new();
    for (symbol, func, delta) in aims {
        let f = entry(&data, func)?;
        let value = u64_at(&data, f + 8).unwrap_or(0);
        let size = u64_at(&data, f + 16).unwrap_or(0);
        if *delta >= size {
            return Err(Error::Setup(format!(
                "{func}: offset {delta} is past its size {size}"
            )));
        }
        edits.push((entry(&data, symbol)?, value + delta, size - delta));
    }
    for (at, value, size) in edits {
        data[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
        data[at + 16..at + 24].copy_from_slice(&size.to_le_bytes());
    }
    std::fs::write(out, &data).map_err(|source| Error::File {
        path: out.to_path_buf(),
        source,
    })?;
    let perm = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(out, perm).map_err(|source| Error::File {
        path: out.to_path_buf(),
        source,
    })
}

/// The function symbols of `exe`'s `.symtab` as (start, end, name), sorted by start:
/// to name the bare addresses bpftrace prints for a process that has exited.
pub fn functions(exe: &Path) -> Result<Vec<(u64, u64, String)>> {
    let data = std::fs::read(exe).map_err(|source| Error::File {
        path: exe.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    each_symbol(&data, |d, e, name| {
        if d.get(e + 4).is_some_and(|info| info & 0xf == STT_FUNC) {
            let (value, size) = (u64_at(d, e + 8)?, u64_at(d, e + 16)?);
            out.push((
                value,
                value + size,
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        None::<()>
    });
    out.sort_unstable();
    Ok(out)
}

/// The file offset of `symbol`'s `Elf64_Sym` in the (little-endian, 64-bit) `.symtab`.
fn symtab_entry(d: &[u8], symbol: &str) -> Option<usize> {
    each_symbol(d, |_, e, name| (name == symbol.as_bytes()).then_some(e))
}

/// The first `Some` of `f(data, entry offset, name)` over the entries of `.symtab`.
fn each_symbol<T>(d: &[u8], mut f: impl FnMut(&[u8], usize, &[u8]) -> Option<T>) -> Option<T> {
    if d.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let shoff = usize::try_from(u64_at(d, 0x28)?).ok()?;
    let shentsize = usize::from(u16_at(d, 0x3a)?);
    let shnum = usize::from(u16_at(d, 0x3c)?);
    let section = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    for i in 0..shnum {
        let sh = section(i)?;
        if u32_at(d, sh + 4)? != SHT_SYMTAB {
            continue;
        }
        let (off, size) = (
            usize::try_from(u64_at(d, sh + 0x18)?).ok()?,
            usize::try_from(u64_at(d, sh + 0x20)?).ok()?,
        );
        let strtab = section(usize::try_from(u32_at(d, sh + 0x28)?).ok()?)?;
        let stroff = usize::try_from(u64_at(d, strtab + 0x18)?).ok()?;
        for e in (off..off.checked_add(size)?).step_by(24) {
            let name = stroff.checked_add(usize::try_from(u32_at(d, e)?).ok()?)?;
            let end = d.get(name..)?.iter().position(|b| *b == 0)?;
            if let Some(x) = f(d, e, &d[name..name + end]) {
                return Some(x);
            }
        }
    }
    None
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?))
}
