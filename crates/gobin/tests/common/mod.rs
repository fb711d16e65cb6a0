//! What gobin's tests share: Go's own disassembler (`go tool objdump`), which decodes
//! independently of iced-x86, as the oracle of instruction addresses.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use testprogs::Toolchain;

/// One function as objdump shows it: its instructions' addresses and Go-syntax text.
#[derive(Debug, Default)]
pub struct Listing {
    pub insns: Vec<(u64, String)>,
    /// objdump printed `?` for an instruction it cannot decode, or decoded a VEX
    /// (AVX) instruction, which its decoder gets wrong (`vzeroupper` as five bytes in
    /// memeqbody): its addresses after that are not to be trusted.
    pub undecoded: bool,
}

/// `go tool objdump` of the whole program, by function entry.
pub fn objdump(tc: &Toolchain, exe: &Path) -> BTreeMap<u64, (String, Listing)> {
    let mut cmd: Command = tc.go_command();
    let out = cmd
        .args(["tool", "objdump"])
        .arg(exe)
        .output()
        .expect("run objdump");
    assert!(
        out.status.success(),
        "objdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut all = BTreeMap::new();
    let mut current: Option<(String, Listing)> = None;
    let flush = |cur: Option<(String, Listing)>, all: &mut BTreeMap<u64, (String, Listing)>| {
        if let Some((name, l)) = cur
            && let Some(&(entry, _)) = l.insns.first()
        {
            all.insert(entry, (name, l));
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("TEXT ") {
            flush(current.take(), &mut all);
            let name = rest.split("(SB)").next().unwrap_or(rest).to_string();
            current = Some((name, Listing::default()));
            continue;
        }
        let fields: Vec<&str> = line
            .split('\t')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect();
        let (Some(cur), [_pos, addr, _hex, asm, ..]) = (current.as_mut(), fields.as_slice()) else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr.trim_start_matches("0x"), 16) else {
            continue;
        };
        cur.1.undecoded |= *asm == "?" || asm.starts_with('V');
        cur.1.insns.push((addr, asm.to_string()));
    }
    flush(current.take(), &mut all);
    all
}
