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

/// Writes to `out` a copy of `exe` where `symbol` starts at its old value + `delta`.
pub fn moved_symbol_copy(exe: &Path, out: &Path, symbol: &str, delta: u64) -> Result<()> {
    let mut data = std::fs::read(exe).map_err(|source| Error::File {
        path: exe.to_path_buf(),
        source,
    })?;
    let at = symtab_entry(&data, symbol)
        .ok_or_else(|| Error::Setup(format!("{}: no symbol {symbol} in .symtab", exe.display())))?;
    let value = u64_at(&data, at + 8).unwrap_or(0);
    let size = u64_at(&data, at + 16).unwrap_or(0);
    if delta >= size {
        return Err(Error::Setup(format!(
            "{symbol}: offset {delta} is past its size {size}"
        )));
    }
    data[at + 8..at + 16].copy_from_slice(&(value + delta).to_le_bytes());
    data[at + 16..at + 24].copy_from_slice(&(size - delta).to_le_bytes());
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

/// The file offset of `symbol`'s `Elf64_Sym` in the (little-endian, 64-bit) `.symtab`.
fn symtab_entry(d: &[u8], symbol: &str) -> Option<usize> {
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
            if &d[name..name + end] == symbol.as_bytes() {
                return Some(e);
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
