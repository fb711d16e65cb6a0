//! The argument blocks the kernel reads: `union bpf_attr` (one `repr(C)` struct per
//! command gotap uses, laid out as in `include/uapi/linux/bpf.h`) and
//! `struct perf_event_attr` at its full 136-byte size (`PERF_ATTR_SIZE_VER8`), with
//! the numbers of commands, program types and attach types. Field offsets are
//! checked in the tests at the bottom against the kernel's header layout.

/// `enum bpf_cmd`.
pub(crate) mod cmd {
    pub const MAP_CREATE: u32 = 0;
    pub const MAP_LOOKUP_ELEM: u32 = 1;
    pub const MAP_UPDATE_ELEM: u32 = 2;
    pub const MAP_DELETE_ELEM: u32 = 3;
    pub const MAP_GET_NEXT_KEY: u32 = 4;
    pub const PROG_LOAD: u32 = 5;
    pub const RAW_TRACEPOINT_OPEN: u32 = 17;
    pub const BTF_LOAD: u32 = 18;
    pub const PROG_GET_NEXT_ID: u32 = 11;
    pub const PROG_GET_FD_BY_ID: u32 = 13;
    pub const OBJ_GET_INFO_BY_FD: u32 = 15;
    pub const LINK_CREATE: u32 = 28;
    pub const LINK_GET_FD_BY_ID: u32 = 30;
    pub const LINK_GET_NEXT_ID: u32 = 31;
    pub const ENABLE_STATS: u32 = 32;

    pub fn name(cmd: u32) -> &'static str {
        match cmd {
            MAP_CREATE => "bpf(BPF_MAP_CREATE)",
            MAP_LOOKUP_ELEM => "bpf(BPF_MAP_LOOKUP_ELEM)",
            MAP_UPDATE_ELEM => "bpf(BPF_MAP_UPDATE_ELEM)",
            MAP_DELETE_ELEM => "bpf(BPF_MAP_DELETE_ELEM)",
            MAP_GET_NEXT_KEY => "bpf(BPF_MAP_GET_NEXT_KEY)",
            PROG_LOAD => "bpf(BPF_PROG_LOAD)",
            BTF_LOAD => "bpf(BPF_BTF_LOAD)",
            RAW_TRACEPOINT_OPEN => "bpf(BPF_RAW_TRACEPOINT_OPEN)",
            LINK_CREATE => "bpf(BPF_LINK_CREATE)",
            ENABLE_STATS => "bpf(BPF_ENABLE_STATS)",
            _ => "bpf",
        }
    }
}

/// `BPF_PROG_TYPE_KPROBE`: uprobes run programs of this type.
pub(crate) const PROG_TYPE_KPROBE: u32 = 2;
/// `BPF_PROG_TYPE_PERF_EVENT`: programs run by a sampling perf event (their context
/// is `struct bpf_perf_event_data`, whose first member is the interrupted `pt_regs`).
pub(crate) const PROG_TYPE_PERF_EVENT: u32 = 7;
/// `BPF_PROG_TYPE_RAW_TRACEPOINT`: programs on a tracepoint's raw arguments.
pub(crate) const PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
/// `enum bpf_attach_type`.
pub(crate) const ATTACH_PERF_EVENT: u32 = 41;
pub(crate) const ATTACH_TRACE_UPROBE_MULTI: u32 = 48;

/// `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct MapCreate {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; 16],
    pub map_ifindex: u32,
    pub btf_fd: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub map_extra: u64,
}

/// `BPF_MAP_*_ELEM` and `BPF_MAP_GET_NEXT_KEY` (`value` is `next_key` there).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct MapElem {
    pub map_fd: u32,
    pub _pad: u32,
    pub key: u64,
    pub value: u64,
    pub flags: u64,
}

/// `BPF_PROG_LOAD`, up to `log_true_size` (Linux 6.4).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct ProgLoad {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    pub attach_btf_id: u32,
    pub attach_prog_fd: u32,
    pub core_relo_cnt: u32,
    pub fd_array: u64,
    pub core_relos: u64,
    pub core_relo_rec_size: u32,
    pub log_true_size: u32,
}

/// `BPF_LINK_CREATE` for `BPF_PERF_EVENT` (`a` is the cookie) and for
/// `BPF_TRACE_UPROBE_MULTI` (all fields).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct LinkCreate {
    pub prog_fd: u32,
    pub target_fd: u32,
    pub attach_type: u32,
    pub flags: u32,
    /// `perf_event.bpf_cookie` or `uprobe_multi.path`.
    pub a: u64,
    pub offsets: u64,
    pub ref_ctr_offsets: u64,
    pub cookies: u64,
    pub cnt: u32,
    pub multi_flags: u32,
    pub pid: u32,
    pub _pad: u32,
}

/// `BPF_*_GET_NEXT_ID` (`start_id` in, `next_id` out) and `BPF_*_GET_FD_BY_ID` (the
/// id in `start_id`).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct GetId {
    pub start_id: u32,
    pub next_id: u32,
    pub open_flags: u32,
}

/// `BPF_OBJ_GET_INFO_BY_FD`: the kernel writes up to `info_len` bytes at `info`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct ObjInfo {
    pub bpf_fd: u32,
    pub info_len: u32,
    pub info: u64,
}

/// `BPF_RAW_TRACEPOINT_OPEN` (Linux 4.17; the cookie 6.10): `name` points at the
/// tracepoint's NUL-terminated name.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct RawTracepointOpen {
    pub name: u64,
    pub prog_fd: u32,
    pub _pad: u32,
    pub cookie: u64,
}

/// `BPF_BTF_LOAD`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct BtfLoad {
    pub btf: u64,
    pub btf_log_buf: u64,
    pub btf_size: u32,
    pub btf_log_size: u32,
    pub btf_log_level: u32,
}

/// `BPF_ENABLE_STATS`: `enable_stats.type`, `BPF_STATS_RUN_TIME` (0).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct EnableStats {
    pub stats_type: u32,
}

/// The part of `union bpf_attr` gotap fills, zeroed around it: the kernel refuses
/// nonzero bytes past the fields it knows.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) union BpfAttr {
    pub map_create: MapCreate,
    pub map_elem: MapElem,
    pub prog_load: ProgLoad,
    pub link_create: LinkCreate,
    pub get_id: GetId,
    pub obj_info: ObjInfo,
    pub btf_load: BtfLoad,
    pub raw_tracepoint: RawTracepointOpen,
    pub enable_stats: EnableStats,
    raw: [u64; 18],
}

impl Default for BpfAttr {
    fn default() -> BpfAttr {
        BpfAttr { raw: [0; 18] }
    }
}

impl BpfAttr {
    pub fn map_create(a: MapCreate) -> BpfAttr {
        let mut attr = BpfAttr::default();
        attr.map_create = a;
        attr
    }
    pub fn map_elem(a: MapElem) -> BpfAttr {
        let mut attr = BpfAttr::default();
        attr.map_elem = a;
        attr
    }
    pub fn prog_load(a: ProgLoad) -> BpfAttr {
        let mut attr = BpfAttr::default();
        attr.prog_load = a;
        attr
    }
    pub fn link_create(a: LinkCreate) -> BpfAttr {
        let mut attr = BpfAttr::default();
        attr.link_create = a;
        attr
    }

    pub fn get_id(a: GetId) -> BpfAttr {
        let mut attr = BpfAttr::default();
        attr.get_id = a;
        attr
    }
    pub fn raw_tracepoint(a: RawTracepointOpen) -> BpfAttr {
        let mut attr = BpfAttr::default();
        attr.raw_tracepoint = a;
        attr
    }
    pub fn btf_load(a: BtfLoad) -> BpfAttr {
        let mut attr = BpfAttr::default();
        attr.btf_load = a;
        attr
    }
    pub fn enable_stats(a: EnableStats) -> BpfAttr {
        let mut attr = BpfAttr::default();
        attr.enable_stats = a;
        attr
    }
    pub fn obj_info(a: ObjInfo) -> BpfAttr {
        let mut attr = BpfAttr::default();
        attr.obj_info = a;
        attr
    }

    /// The `get_id` view, for the id the kernel wrote back.
    pub fn as_get_id(&self) -> GetId {
        // SAFETY: as in `as_prog_load`.
        unsafe { self.get_id }
    }

    /// The `prog_load` view, for reading what the kernel wrote back.
    pub fn as_prog_load(&self) -> ProgLoad {
        // SAFETY: every variant is plain integers and the union is fully initialised
        // (it is built from the zeroed `raw`), so any view is valid.
        unsafe { self.prog_load }
    }

    #[cfg(test)]
    pub fn as_map_create(&self) -> MapCreate {
        // SAFETY: as in `as_prog_load`.
        unsafe { self.map_create }
    }

    #[cfg(test)]
    pub fn as_map_elem(&self) -> MapElem {
        // SAFETY: as in `as_prog_load`.
        unsafe { self.map_elem }
    }

    #[cfg(test)]
    pub fn as_link_create(&self) -> LinkCreate {
        // SAFETY: as in `as_prog_load`.
        unsafe { self.link_create }
    }
}

/// `PERF_ATTR_SIZE_VER8`: the whole structure as of Linux 6.3. A shorter `size` makes
/// the kernel ignore the fields past it.
pub(crate) const PERF_ATTR_SIZE: u32 = 136;
/// `PERF_FLAG_FD_CLOEXEC`.
pub(crate) const PERF_FLAG_FD_CLOEXEC: u64 = 1 << 3;
/// `_IO('$', 0)`, `_IO('$', 1)` and `_IOW('$', 8, __u32)`.
pub(crate) const PERF_EVENT_IOC_ENABLE: u64 = 0x2400;
pub(crate) const PERF_EVENT_IOC_SET_BPF: u64 = 0x4004_2408;

/// `struct perf_event_attr`, as far as a uprobe needs it.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    /// The bit fields (`disabled`, `inherit`, …).
    pub flags: u64,
    pub wakeup_events: u32,
    pub bp_type: u32,
    /// `uprobe_path`: a pointer to the NUL-terminated path of the probed file.
    pub config1: u64,
    /// `probe_offset`: the file offset of the probed instruction.
    pub config2: u64,
    pub branch_sample_type: u64,
    pub sample_regs_user: u64,
    pub sample_stack_user: u32,
    pub clockid: i32,
    pub sample_regs_intr: u64,
    pub aux_watermark: u32,
    pub sample_max_stack: u16,
    pub _reserved_2: u16,
    pub aux_sample_size: u32,
    pub _reserved_3: u32,
    pub sig_data: u64,
    pub config3: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_the_kernel_headers() {
        // Offsets from `pahole` of `union bpf_attr` and `struct perf_event_attr`.
        assert_eq!(offset_of!(MapCreate, map_name), 28);
        assert_eq!(offset_of!(RawTracepointOpen, prog_fd), 8);
        assert_eq!(offset_of!(RawTracepointOpen, cookie), 16);
        assert_eq!(offset_of!(MapCreate, map_extra), 64);
        assert_eq!(offset_of!(MapElem, key), 8);
        assert_eq!(offset_of!(MapElem, flags), 24);
        assert_eq!(offset_of!(ProgLoad, log_buf), 32);
        assert_eq!(offset_of!(ProgLoad, prog_name), 48);
        assert_eq!(offset_of!(ProgLoad, expected_attach_type), 68);
        assert_eq!(offset_of!(ProgLoad, fd_array), 120);
        assert_eq!(offset_of!(ProgLoad, log_true_size), 140);
        assert_eq!(size_of::<ProgLoad>(), 144);
        assert_eq!(offset_of!(LinkCreate, a), 16);
        assert_eq!(offset_of!(LinkCreate, cookies), 40);
        assert_eq!(offset_of!(LinkCreate, cnt), 48);
        assert_eq!(offset_of!(LinkCreate, pid), 56);
        assert_eq!(size_of::<BpfAttr>(), 144);
        assert_eq!(offset_of!(PerfEventAttr, config1), 56);
        assert_eq!(offset_of!(PerfEventAttr, config2), 64);
        assert_eq!(offset_of!(PerfEventAttr, config3), 128);
        assert_eq!(size_of::<PerfEventAttr>() as u32, PERF_ATTR_SIZE);
    }

    /// Enumerator name to value.
    type Enums = std::collections::HashMap<String, i64>;
    /// Struct or union name to its members' names and byte offsets.
    type Structs = std::collections::HashMap<String, Vec<(String, u32)>>;

    /// The enumerators and struct members of the kernel's BTF
    /// (`/sys/kernel/btf/vmlinux`), by name: the
    /// running kernel's own word on the numbers above. BTF is a header, then type
    /// records of 12 bytes (name offset, info with kind and count, size) each
    /// followed by kind-specific data, then the string table.
    fn kernel_btf() -> (Enums, Structs) {
        let d = std::fs::read("/sys/kernel/btf/vmlinux").expect("kernel BTF");
        let u32_at = |o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
        assert_eq!(u16::from_le_bytes([d[0], d[1]]), 0xeb9f, "BTF magic");
        let hdr = u32_at(4) as usize;
        let (types, types_len) = (hdr + u32_at(8) as usize, u32_at(12) as usize);
        let strs = hdr + u32_at(16) as usize;
        let name = |o: u32| {
            let start = strs + o as usize;
            let end = start + d[start..].iter().position(|b| *b == 0).unwrap();
            String::from_utf8_lossy(&d[start..end]).into_owned()
        };
        let mut out = std::collections::HashMap::new();
        let mut structs = std::collections::HashMap::new();
        let mut p = types;
        while p < types + types_len {
            let info = u32_at(p + 4);
            let type_name = name(u32_at(p));
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            p += 12;
            p += match kind {
                1 | 14 | 17 => 4, // int, var, decl_tag
                3 => 12,          // array
                4 | 5 => {
                    // Member offsets are in bits (the low 24 when kind_flag is set).
                    let kflag = info >> 31 == 1;
                    let members = (0..vlen)
                        .map(|i| {
                            let m = p + 12 * i;
                            let bits = u32_at(m + 8);
                            (
                                name(u32_at(m)),
                                if kflag { bits & 0xff_ffff } else { bits } / 8,
                            )
                        })
                        .collect::<Vec<_>>();
                    structs.entry(type_name).or_insert(members);
                    12 * vlen
                }
                15 => 12 * vlen, // datasec
                13 => 8 * vlen,  // func_proto
                6 => {
                    for i in 0..vlen {
                        let e = p + 8 * i;
                        out.insert(name(u32_at(e)), i64::from(u32_at(e + 4) as i32));
                    }
                    8 * vlen
                }
                19 => 12 * vlen, // enum64
                _ => 0,
            };
        }
        (out, structs)
    }

    #[test]
    fn numbers_match_the_running_kernel() {
        let (e, structs) = kernel_btf();
        // Linux 6.9+ wraps cs and ss in anonymous unions (for FRED); the other
        // members are named.
        let pt_regs = &structs["pt_regs"];
        assert_eq!(pt_regs.len(), bpf::X86Reg::ALL.len());
        for (r, (name, off)) in bpf::X86Reg::ALL.iter().zip(pt_regs) {
            assert!(
                name.is_empty() || name == r.kernel_name(),
                "{r:?} is {name}"
            );
            assert_eq!(*off as i16, r.offset(), "{r:?}");
        }
        assert_eq!(pt_regs.len() * 8, bpf::ctx::PT_REGS_SIZE);
        let get = |n: &str| *e.get(n).unwrap_or_else(|| panic!("{n} not in kernel BTF"));
        assert_eq!(get("BPF_MAP_CREATE"), i64::from(cmd::MAP_CREATE));
        assert_eq!(
            get("BPF_MAP_GET_NEXT_KEY"),
            i64::from(cmd::MAP_GET_NEXT_KEY)
        );
        assert_eq!(get("BPF_PROG_LOAD"), i64::from(cmd::PROG_LOAD));
        assert_eq!(get("BPF_LINK_CREATE"), i64::from(cmd::LINK_CREATE));
        assert_eq!(get("BPF_PROG_TYPE_KPROBE"), i64::from(PROG_TYPE_KPROBE));
        assert_eq!(
            get("BPF_PROG_TYPE_PERF_EVENT"),
            i64::from(PROG_TYPE_PERF_EVENT)
        );
        assert_eq!(get("BPF_PERF_EVENT"), i64::from(ATTACH_PERF_EVENT));
        assert_eq!(
            get("BPF_TRACE_UPROBE_MULTI"),
            i64::from(ATTACH_TRACE_UPROBE_MULTI)
        );
        for h in bpf::Helper::ALL {
            assert_eq!(
                get(&format!("BPF_FUNC_{}", h.name())),
                i64::from(h.id()),
                "{h}"
            );
        }
        use bpf::MapKind::*;
        for (k, n) in [
            (Hash, "HASH"),
            (Array, "ARRAY"),
            (PerCpuHash, "PERCPU_HASH"),
            (PerCpuArray, "PERCPU_ARRAY"),
            (PerfEventArray, "PERF_EVENT_ARRAY"),
            (StackTrace, "STACK_TRACE"),
            (LruHash, "LRU_HASH"),
            (RingBuf, "RINGBUF"),
        ] {
            assert_eq!(
                get(&format!("BPF_MAP_TYPE_{n}")),
                i64::from(k.type_id()),
                "{k:?}"
            );
        }
        assert_eq!(
            get("BPF_RB_NO_WAKEUP"),
            i64::from(bpf::helper::RB_NO_WAKEUP)
        );
        assert_eq!(
            get("BPF_RB_FORCE_WAKEUP"),
            i64::from(bpf::helper::RB_FORCE_WAKEUP)
        );
        assert_eq!(
            get("BPF_F_USER_STACK"),
            i64::from(bpf::helper::F_USER_STACK)
        );
        assert_eq!(get("BPF_RINGBUF_BUSY_BIT") as u32, crate::ringbuf::BUSY);
        assert_eq!(
            get("BPF_RINGBUF_DISCARD_BIT") as u32,
            crate::ringbuf::DISCARD
        );
        assert_eq!(get("BPF_RINGBUF_HDR_SZ") as usize, crate::ringbuf::HEADER);
    }
}
