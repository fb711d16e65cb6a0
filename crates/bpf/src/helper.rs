//! The kernel helper functions a tracer calls, by number (`enum bpf_func_id` in
//! `include/uapi/linux/bpf.h`). All of them may be called from
//! `BPF_PROG_TYPE_KPROBE` programs, which is what uprobe programs are; the doc of each
//! says the kernel that brought it. `get_stack` with `BPF_F_USER_STACK` gives the
//! user stack a Go frame-pointer walk can be checked against.

use std::fmt;

macro_rules! helpers {
    ($($(#[$doc:meta])* $name:ident = $id:literal, $text:literal;)*) => {
        /// A helper function, its number being the value of `call`'s immediate.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum Helper {
            $($(#[$doc])* $name = $id,)*
        }

        impl Helper {
            pub const ALL: &'static [Helper] = &[$(Helper::$name,)*];

            /// The name without its `bpf_` prefix, as in `enum bpf_func_id`
            /// (`BPF_FUNC_probe_read_user`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Helper::$name => $text,)*
                }
            }
        }
    };
}

helpers! {
    /// `void *map_lookup_elem(map, key)`: pointer to the value or NULL. Linux 3.19.
    MapLookupElem = 1, "map_lookup_elem";
    /// `long map_update_elem(map, key, value, flags)`. Linux 3.19.
    MapUpdateElem = 2, "map_update_elem";
    /// `long map_delete_elem(map, key)`. Linux 3.19.
    MapDeleteElem = 3, "map_delete_elem";
    /// `long tail_call(ctx, prog_array_map, index)`: jumps to the program at `index`
    /// of a `BPF_MAP_TYPE_PROG_ARRAY` and does not return; falls through when the
    /// slot is empty. Linux 4.2.
    TailCall = 12, "tail_call";
    /// `u64 ktime_get_ns(void)`: monotonic clock. Linux 4.1.
    KtimeGetNs = 5, "ktime_get_ns";
    /// `long trace_printk(fmt, fmt_size, ...)`: debugging only. Linux 4.1.
    TracePrintk = 6, "trace_printk";
    /// `u32 get_prandom_u32(void)`. Linux 4.1.
    GetPrandomU32 = 7, "get_prandom_u32";
    /// `u32 get_smp_processor_id(void)`. Linux 4.1.
    GetSmpProcessorId = 8, "get_smp_processor_id";
    /// `u64 get_current_pid_tgid(void)`: tgid (the process id) in the upper half.
    /// Linux 4.2.
    GetCurrentPidTgid = 14, "get_current_pid_tgid";
    /// `u64 get_current_uid_gid(void)`. Linux 4.2.
    GetCurrentUidGid = 15, "get_current_uid_gid";
    /// `long get_current_comm(buf, size)`. Linux 4.2.
    GetCurrentComm = 16, "get_current_comm";
    /// `long perf_event_output(ctx, map, flags, data, size)`. Linux 4.4.
    PerfEventOutput = 25, "perf_event_output";
    /// `long get_stackid(ctx, map, flags)`. Linux 4.6.
    GetStackid = 27, "get_stackid";
    /// `u64 get_current_task(void)`. Linux 4.8.
    GetCurrentTask = 35, "get_current_task";
    /// `long get_stack(ctx, buf, size, flags)`; `flags = BPF_F_USER_STACK` (1 << 8)
    /// for the user stack. Linux 4.18.
    GetStack = 67, "get_stack";
    /// `u64 ktime_get_boot_ns(void)`. Linux 5.8.
    KtimeGetBootNs = 125, "ktime_get_boot_ns";
    /// `long probe_read_user(dst, size, unsafe_ptr)`: 0 or a negative errno; the
    /// buffer is zeroed on failure. Linux 5.5.
    ProbeReadUser = 112, "probe_read_user";
    /// `long probe_read_kernel(dst, size, unsafe_ptr)`. Linux 5.5.
    ProbeReadKernel = 113, "probe_read_kernel";
    /// `long probe_read_user_str(dst, size, unsafe_ptr)`: length with the NUL, or a
    /// negative errno. Linux 5.5.
    ProbeReadUserStr = 114, "probe_read_user_str";
    /// `long ringbuf_output(ringbuf, data, size, flags)`. Linux 5.8.
    RingbufOutput = 130, "ringbuf_output";
    /// `void *ringbuf_reserve(ringbuf, size, flags)`: NULL when full. Linux 5.8.
    RingbufReserve = 131, "ringbuf_reserve";
    /// `void ringbuf_submit(data, flags)`. Linux 5.8.
    RingbufSubmit = 132, "ringbuf_submit";
    /// `void ringbuf_discard(data, flags)`. Linux 5.8.
    RingbufDiscard = 133, "ringbuf_discard";
    /// `u64 ringbuf_query(ringbuf, flags)`. Linux 5.8.
    RingbufQuery = 134, "ringbuf_query";
    /// `long for_each_map_elem(map, callback, ctx, flags)`: calls
    /// `callback(map, key, value, ctx)` for each element until it returns 1.
    /// Linux 5.13.
    ForEachMapElem = 164, "for_each_map_elem";
    /// `struct task_struct *get_current_task_btf(void)`: the current task as a
    /// pointer the verifier knows the type of. Linux 5.11.
    GetCurrentTaskBtf = 158, "get_current_task_btf";
    /// `long snprintf(buf, size, fmt, data, data_len)`. Linux 5.13.
    Snprintf = 165, "snprintf";
    /// `u64 get_func_ip(ctx)`: the probed address (uprobes: Linux 6.6 for multi links,
    /// Linux 5.15 for perf-event kprobes).
    GetFuncIp = 173, "get_func_ip";
    /// `u64 get_attach_cookie(ctx)`: the cookie given at attach time. Linux 5.15
    /// (perf-event links), Linux 6.6 (uprobe-multi links).
    GetAttachCookie = 174, "get_attach_cookie";
    /// `struct pt_regs *task_pt_regs(task)`: the user registers the kernel saved
    /// when `task` entered it (a system call, a fault, an interrupt). Linux 5.15.
    TaskPtRegs = 175, "task_pt_regs";
    /// `long loop(nr_loops, callback, ctx, flags)`. Linux 5.17.
    Loop = 181, "loop";
}

/// `flags` of `ringbuf_submit`/`ringbuf_output`: do not wake the consumer (it polls on
/// a timer), and wake it whatever the amount of data.
pub const RB_NO_WAKEUP: i32 = 1 << 0;
pub const RB_FORCE_WAKEUP: i32 = 1 << 1;

/// `flags` of `get_stack`: the user stack instead of the kernel's.
pub const F_USER_STACK: i32 = 1 << 8;

/// `flags` of `map_update_elem`.
pub const ANY: i32 = 0;
pub const NOEXIST: i32 = 1;
pub const EXIST: i32 = 2;

impl Helper {
    pub fn id(self) -> i32 {
        self as i32
    }

    /// The helper with this number, if gotap knows it.
    pub fn from_id(id: i32) -> Option<Helper> {
        Helper::ALL.iter().copied().find(|h| h.id() == id)
    }
}

impl fmt::Display for Helper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bpf_{}", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_found_back() {
        for h in Helper::ALL {
            assert_eq!(Helper::from_id(h.id()), Some(*h));
        }
        assert_eq!(Helper::from_id(0), None);
        assert_eq!(Helper::ProbeReadUser.to_string(), "bpf_probe_read_user");
    }
}
