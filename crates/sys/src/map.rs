//! BPF maps owned by a file descriptor: creation from a [`bpf::MapSpec`] and the
//! element operations user space needs (lookup, update, delete, key iteration), with
//! per-CPU values read as one slot per possible CPU. Key and value sizes are checked
//! here, so a wrong-sized buffer is an error and never a kernel read past its end.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use bpf::{MapKind, MapSpec};

use crate::attr::{BpfAttr, MapCreate, MapElem, cmd};
use crate::error::{Error, Result};
use crate::syscall::{Call, owned_fd, syscall};

/// `flags` of [`Map::update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateFlags {
    /// Create or replace (`BPF_ANY`).
    Any = 0,
    /// Create only (`BPF_NOEXIST`).
    NoExist = 1,
    /// Replace only (`BPF_EXIST`).
    Exist = 2,
}

/// A map in the kernel; closing it (dropping) frees it once no program uses it.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    spec: MapSpec,
    /// For per-CPU maps, the number of value slots in a lookup.
    cpus: usize,
}

/// The name as the kernel takes it: at most 15 bytes of `[A-Za-z0-9_.]`.
pub(crate) fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let clean = name
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.');
    for (slot, b) in out.iter_mut().take(15).zip(clean) {
        *slot = b;
    }
    out
}

impl Map {
    /// Creates the map. Ring buffers need Linux 5.8, the rest 4.6.
    pub fn create(spec: &MapSpec) -> Result<Map> {
        let cpus = if spec.kind.is_per_cpu() {
            crate::cpu::possible_cpus()?
        } else {
            1
        };
        let mut attr = BpfAttr::map_create(MapCreate {
            map_type: spec.kind.type_id(),
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            map_flags: spec.flags,
            map_name: object_name(&spec.name),
            ..MapCreate::default()
        });
        let ret = syscall(Call::Bpf {
            cmd: cmd::MAP_CREATE,
            attr: &mut attr,
        })
        .map_err(|e| Error::syscall(cmd::name(cmd::MAP_CREATE), e))?;
        let fd = owned_fd(ret).map_err(|e| Error::syscall("bpf(BPF_MAP_CREATE)", e))?;
        Ok(Map {
            fd,
            spec: spec.clone(),
            cpus,
        })
    }

    pub fn spec(&self) -> &MapSpec {
        &self.spec
    }

    pub fn kind(&self) -> MapKind {
        self.spec.kind
    }

    /// The size of a lookup's value buffer: the value size, or for per-CPU maps the
    /// value size rounded up to 8 bytes times the number of possible CPUs.
    pub fn value_buf_size(&self) -> usize {
        let v = self.spec.value_size as usize;
        if self.spec.kind.is_per_cpu() {
            v.next_multiple_of(8) * self.cpus
        } else {
            v
        }
    }

    /// For per-CPU maps, the number of slots in a value buffer (else 1).
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() != self.spec.key_size as usize {
            return Err(Error::Invalid(format!(
                "map {}: key of {} bytes, expected {}",
                self.spec.name,
                key.len(),
                self.spec.key_size
            )));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() != self.value_buf_size() {
            return Err(Error::Invalid(format!(
                "map {}: value buffer of {} bytes, expected {}",
                self.spec.name,
                value.len(),
                self.value_buf_size()
            )));
        }
        Ok(())
    }

    fn elem(&self, cmd: u32, key: u64, value: u64, flags: u64) -> Result<bool> {
        let mut attr = BpfAttr::map_elem(MapElem {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key,
            value,
            flags,
        });
        match syscall(Call::Bpf {
            cmd,
            attr: &mut attr,
        }) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(Error::syscall(cmd::name(cmd), e)),
        }
    }

    /// Copies the value for `key` into `value` (of [`Map::value_buf_size`] bytes);
    /// false when the key is absent.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> Result<bool> {
        self.check_key(key)?;
        self.check_value(value)?;
        self.elem(
            cmd::MAP_LOOKUP_ELEM,
            key.as_ptr() as u64,
            value.as_mut_ptr() as u64,
            0,
        )
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut v = vec![0u8; self.value_buf_size()];
        Ok(self.lookup(key, &mut v)?.then_some(v))
    }

    /// For a per-CPU map, the value for `key` on each possible CPU, each of
    /// `value_size` bytes.
    pub fn get_per_cpu(&self, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        let Some(buf) = self.get(key)? else {
            return Ok(None);
        };
        let v = self.spec.value_size as usize;
        let stride = if self.spec.kind.is_per_cpu() {
            v.next_multiple_of(8)
        } else {
            v
        };
        Ok(Some(
            buf.chunks(stride.max(1))
                .map(|c| c[..v.min(c.len())].to_vec())
                .collect(),
        ))
    }

    /// Sets `key` to `value` (per-CPU maps take one slot per possible CPU).
    pub fn update(&self, key: &[u8], value: &[u8], flags: UpdateFlags) -> Result<()> {
        self.check_key(key)?;
        self.check_value(value)?;
        let done = self.elem(
            cmd::MAP_UPDATE_ELEM,
            key.as_ptr() as u64,
            value.as_ptr() as u64,
            flags as u64,
        )?;
        if done {
            Ok(())
        } else {
            // ENOENT from an update means BPF_EXIST and no such key.
            Err(Error::Invalid(format!(
                "map {}: no such key to replace",
                self.spec.name
            )))
        }
    }

    /// Removes `key`; false when it was absent.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.check_key(key)?;
        self.elem(cmd::MAP_DELETE_ELEM, key.as_ptr() as u64, 0, 0)
    }

    /// Writes the key after `key` (the first key when `None`) into `next`; false at
    /// the end. Keys deleted meanwhile restart hash iteration at the first key, as
    /// the kernel does.
    pub fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<bool> {
        if let Some(k) = key {
            self.check_key(k)?;
        }
        self.check_key(next)?;
        let k = key.map_or(0, |k| k.as_ptr() as u64);
        self.elem(cmd::MAP_GET_NEXT_KEY, k, next.as_mut_ptr() as u64, 0)
    }

    /// Every key, in the kernel's order.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut next = vec![0u8; self.spec.key_size as usize];
        loop {
            let found = self.next_key(keys.last().map(Vec::as_slice), &mut next)?;
            // A hash map that changes under iteration may return to its start; the
            // bound keeps a busy map from making this loop forever.
            if !found || keys.len() > self.spec.max_entries as usize {
                return Ok(keys);
            }
            keys.push(next.clone());
        }
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake;

    fn spec(kind: MapKind) -> MapSpec {
        MapSpec {
            name: "gotap-counts!".into(),
            kind,
            key_size: 4,
            value_size: 12,
            max_entries: 3,
            flags: 0,
        }
    }

    #[test]
    fn create_sends_the_spec_and_a_cleaned_name() {
        let _g = fake::install(|call| match call {
            Call::Bpf {
                cmd: cmd::MAP_CREATE,
                attr,
            } => {
                let a = attr.as_map_create();
                assert_eq!(
                    (a.map_type, a.key_size, a.value_size, a.max_entries),
                    (1, 4, 12, 3)
                );
                assert_eq!(&a.map_name[..12], b"gotapcounts\0");
                Ok(fake::dev_null())
            }
            _ => panic!("unexpected {}", call.name()),
        });
        let m = Map::create(&spec(MapKind::Hash)).unwrap();
        assert_eq!(m.value_buf_size(), 12);
    }

    #[test]
    fn eperm_becomes_not_permitted() {
        let _g = fake::install(|_| fake::errno(libc::EPERM));
        let e = Map::create(&spec(MapKind::Array)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::NotPermitted {
                    call: "bpf(BPF_MAP_CREATE)"
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("gotap needs root, or CAP_BPF and CAP_PERFMON")
        );
    }

    #[test]
    fn lookups_pass_buffers_and_report_absence() {
        let _g = fake::install(|call| match call {
            Call::Bpf {
                cmd: cmd::MAP_CREATE,
                ..
            } => Ok(fake::dev_null()),
            Call::Bpf {
                cmd: cmd::MAP_LOOKUP_ELEM,
                attr,
            } => {
                let a = attr.as_map_elem();
                // SAFETY (test): the map checked the key is 4 bytes.
                let key = unsafe { std::ptr::read_unaligned(a.key as *const u32) };
                if key == 7 {
                    // Per-CPU: write byte i+1 into each 16-byte slot, as the kernel
                    // writes one value per possible CPU.
                    let n = crate::cpu::possible_cpus().unwrap();
                    for i in 0..n {
                        // SAFETY (test): the buffer is 16 × possible CPUs long.
                        unsafe { *(a.value as *mut u8).add(16 * i) = i as u8 + 1 };
                    }
                    Ok(0)
                } else {
                    fake::errno(libc::ENOENT)
                }
            }
            _ => panic!("unexpected {}", call.name()),
        });
        let m = Map::create(&spec(MapKind::PerCpuArray)).unwrap();
        let n = crate::cpu::possible_cpus().unwrap();
        assert_eq!(m.value_buf_size(), 16 * n, "12 rounds up to 16 per CPU");
        let per_cpu = m.get_per_cpu(&7u32.to_ne_bytes()).unwrap().unwrap();
        assert_eq!(per_cpu.len(), n);
        for (i, v) in per_cpu.iter().enumerate() {
            assert_eq!(v.len(), 12);
            assert_eq!(v[0], i as u8 + 1);
        }
        assert_eq!(m.get(&8u32.to_ne_bytes()).unwrap(), None);
        assert!(matches!(m.get(&[0u8; 3]), Err(Error::Invalid(_))));
    }
}
