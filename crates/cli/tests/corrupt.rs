//! Corrupt is not absent: a binary whose DWARF section has a damaged compression
//! header gets an error that names the section and a non-zero exit, from `-L` and
//! from a script that reads a variable; never "has no DWARF" (which would send the
//! user to rebuild) nor "no variable", and never a listing without variables.

mod common;

use common::*;

/// The file offset of the stored bytes of section `name`, from the ELF section
/// headers (64-bit, little-endian).
fn section_offset(elf: &[u8], name: &str) -> usize {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18);
    (0..shnum)
        .find(|&i| {
            let at = strtab + u32_at(header(i));
            elf[at..].starts_with(name.as_bytes()) && elf[at + name.len()] == 0
        })
        .map(|i| u64_at(header(i) + 0x18))
        .unwrap_or_else(|| panic!("no section {name}"))
}

/// A private copy of `vars` whose `section` has an unknown compression type.
fn damaged(section: &str) -> Private {
    let tc = testprogs::newest();
    let copy = Private::copy(
        &testprogs::build("vars", &tc, Variant::Default),
        &format!("corrupt{section}"),
    );
    let mut bytes = std::fs::read(&copy.path).unwrap();
    let at = section_offset(&bytes, section);
    bytes[at..at + 4].copy_from_slice(&0x7fu32.to_le_bytes());
    // Written to a new file and moved into place, so no descriptor stays open for
    // writing on the path another test may run.
    let tmp = copy.path.with_extension("tmp");
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, &copy.path).unwrap();
    copy
}

#[test]
fn a_corrupt_section_fails_listing_and_scripts_with_its_name() {
    for section in [".debug_info", ".debug_abbrev", ".debug_loclists"] {
        let bin = damaged(section);
        let point = format!(
            "process(\"{}\").function(\"main.scalars\")",
            bin.path.display()
        );
        let listed = run(gotap().args(["-L", &point]));
        let script = format!("probe {point} {{ println($n) }}");
        let checked = run(gotap().args(["-e", &script]));
        for (what, out) in [("-L", &listed), ("a script", &checked)] {
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{section}, {what}: {err}");
            assert!(
                err.contains(section) && err.contains("corrupt"),
                "{section}, {what}: {err}"
            );
            assert!(
                !err.contains("no DWARF") && !err.contains("no variable"),
                "{section}, {what}: {err}"
            );
            assert!(
                out.stdout.is_empty(),
                "{section}, {what}: printed something"
            );
        }
    }
}
