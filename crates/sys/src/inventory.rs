//! The kernel's own lists of BPF programs and links (what `bpftool prog` and `bpftool
//! link` show), so that tests and `-v` can check that a trace left nothing behind.
//! Linux 4.13 for programs, 5.8 for links.

use std::os::fd::AsRawFd;

use crate::attr::{BpfAttr, GetId, ObjInfo, cmd};
use crate::error::{Error, Result};
use crate::syscall::{Call, owned_fd, syscall};

/// A program loaded in the kernel, by anyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramInfo {
    pub id: u32,
    pub prog_type: u32,
    /// The name given at load time (at most 15 bytes).
    pub name: String,
}

/// A link in the kernel: a program attached somewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub id: u32,
    pub link_type: u32,
    pub prog_id: u32,
}

/// `struct bpf_prog_info`: `type` at 0, `id` at 4, `name[16]` at 64.
const PROG_INFO_NAME: usize = 64;
/// Room for the info structs; the kernel fills what it knows and checks the rest is 0.
const INFO_LEN: usize = 256;

fn next_id(command: u32, start: u32) -> Result<Option<u32>> {
    let mut attr = BpfAttr::get_id(GetId {
        start_id: start,
        ..GetId::default()
    });
    match syscall(Call::Bpf {
        cmd: command,
        attr: &mut attr,
    }) {
        Ok(_) => Ok(Some(attr.as_get_id().next_id)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::syscall("bpf(BPF_*_GET_NEXT_ID)", e)),
    }
}

/// Fills `buf` with the info of object `id`; `Ok(false)` if it went away meanwhile.
fn info_of(get_fd: u32, id: u32, buf: &mut [u8; INFO_LEN]) -> Result<bool> {
    let mut attr = BpfAttr::get_id(GetId {
        start_id: id,
        ..GetId::default()
    });
    let fd = match syscall(Call::Bpf {
        cmd: get_fd,
        attr: &mut attr,
    }) {
        Ok(fd) => owned_fd(fd).map_err(|e| Error::syscall("bpf(BPF_*_GET_FD_BY_ID)", e))?,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
        Err(e) => return Err(Error::syscall("bpf(BPF_*_GET_FD_BY_ID)", e)),
    };
    let mut attr = BpfAttr::obj_info(ObjInfo {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: INFO_LEN as u32,
        info: buf.as_mut_ptr() as u64,
    });
    syscall(Call::Bpf {
        cmd: cmd::OBJ_GET_INFO_BY_FD,
        attr: &mut attr,
    })
    .map_err(|e| Error::syscall("bpf(BPF_OBJ_GET_INFO_BY_FD)", e))?;
    Ok(true)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Every BPF program loaded in the kernel.
pub fn programs() -> Result<Vec<ProgramInfo>> {
    let mut out = Vec::new();
    let mut id = 0;
    while let Some(next) = next_id(cmd::PROG_GET_NEXT_ID, id)? {
        id = next;
        let mut buf = [0u8; INFO_LEN];
        if info_of(cmd::PROG_GET_FD_BY_ID, id, &mut buf)? {
            let name = &buf[PROG_INFO_NAME..PROG_INFO_NAME + 16];
            let len = name.iter().position(|b| *b == 0).unwrap_or(16);
            out.push(ProgramInfo {
                id,
                prog_type: u32_at(&buf, 0),
                name: String::from_utf8_lossy(&name[..len]).into_owned(),
            });
        }
    }
    Ok(out)
}

/// Every BPF link in the kernel.
pub fn links() -> Result<Vec<LinkInfo>> {
    let mut out = Vec::new();
    let mut id = 0;
    while let Some(next) = next_id(cmd::LINK_GET_NEXT_ID, id)? {
        id = next;
        let mut buf = [0u8; INFO_LEN];
        if info_of(cmd::LINK_GET_FD_BY_ID, id, &mut buf)? {
            out.push(LinkInfo {
                id,
                link_type: u32_at(&buf, 0),
                prog_id: u32_at(&buf, 8),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root: a program this test loads shows in the kernel's list under its name,
    /// and is gone once dropped.
    #[test]
    fn a_loaded_program_is_listed_until_dropped() {
        let mut a = bpf::Asm::new();
        a.emit(bpf::Insn::mov64(bpf::Reg::R0, 0)).exit();
        let spec = bpf::ProgramSpec::new("gotap_inv_test", a.finish().expect("assemble"));
        let prog =
            crate::LoadedProgram::load(&spec, &[], crate::LoadOptions::default()).expect("load");
        let listed = programs().expect("list programs");
        let mine: Vec<_> = listed
            .iter()
            .filter(|p| p.name == "gotap_inv_test")
            .collect();
        assert!(!mine.is_empty(), "not listed: {listed:?}");
        assert!(
            mine.iter().all(|p| p.prog_type == 2),
            "kprobe type: {mine:?}"
        );
        let ids: Vec<u32> = mine.iter().map(|p| p.id).collect();
        drop(prog);
        // The kernel frees programs after an RCU grace period.
        let mut left = ids.clone();
        for _ in 0..100 {
            let now = programs().expect("list programs");
            left.retain(|id| now.iter().any(|p| p.id == *id));
            if left.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(left.is_empty(), "program {left:?} still loaded after drop");
        links().expect("list links");
    }
}
