//! Where the Go runtime keeps the variables a tracer reads from a live process
//! (through `/proc/PID/mem`, read only): `runtime.allgs`, the slice of every goroutine
//! ever made, and `runtime.runtimeInitTime`, the monotonic time at which
//! `runtime.main` started (what `GODEBUG=gctrace=1` counts its `@…s` from).
//!
//! The symbol table names them; a stripped binary (`-ldflags=-s`) has none, so their
//! addresses are read from the code that uses them, which `.gopclntab` still names:
//! - `runtime.forEachG` loads `allgs`' pointer and length with two RIP-relative
//!   `mov`s eight bytes apart (`for _, gp := range allgs`), in Go 1.19 to 1.27;
//! - `runtime.waitReason.String` indexes `runtime.waitReasonStrings` (the names of
//!   the reasons a goroutine waits) after checking the reason against its length;
//! - `runtime.main` stores the result of `nanotime()` to `runtimeInitTime` with a
//!   RIP-relative `mov [rip+X], rax` and tests it against zero right after
//!   (`if runtimeInitTime == 0 { throw(…) }`).
//!
//! And `runtime.memstats.numgc`, the cycles completed (see
//! [`GoBinary::gc_count_address`]), and the places in its code where it takes the
//! time a stop of the world ends at (calls of `nanotime`), where a probe can take
//! the same time.
//!
//! Addresses are as linked: a position-independent executable's need its load bias.

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use crate::GoBinary;

impl GoBinary<'_> {
    /// The address of `runtime.allgs` (a slice header: pointer, length, capacity).
    pub fn allgs_address(&self) -> Option<u64> {
        self.elf()
            .symbol_address("runtime.allgs")
            .or_else(|| self.allgs_from_code())
    }

    /// [`GoBinary::allgs_address`] as the code of `runtime.forEachG` says it.
    pub fn allgs_from_code(&self) -> Option<u64> {
        let code = self.code_of("runtime.forEachG")?;
        let loads: Vec<u64> = code
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Mov && i.op0_kind() == OpKind::Register)
            .filter_map(rip_operand)
            .collect();
        loads.windows(2).find(|w| w[1] == w[0] + 8).map(|w| w[0])
    }

    /// The address of `runtime.runtimeInitTime` (an `int64` of nanoseconds, Go's
    /// `nanotime`, which is `CLOCK_MONOTONIC`).
    pub fn runtime_init_time_address(&self) -> Option<u64> {
        self.elf()
            .symbol_address("runtime.runtimeInitTime")
            .or_else(|| self.runtime_init_time_from_code())
    }

    /// [`GoBinary::runtime_init_time_address`] as the code of `runtime.main` says it.
    pub fn runtime_init_time_from_code(&self) -> Option<u64> {
        let code = self.code_of("runtime.main")?;
        code.iter().enumerate().find_map(|(n, i)| {
            let store = i.mnemonic() == Mnemonic::Mov
                && i.op0_kind() == OpKind::Memory
                && i.op1_kind() == OpKind::Register
                && i.op1_register() == Register::RAX;
            let tested = code[n + 1..].iter().take(3).any(|t| {
                t.mnemonic() == Mnemonic::Test
                    && t.op0_register() == Register::RAX
                    && t.op1_register() == Register::RAX
            });
            if store && tested {
                rip_operand(i)
            } else {
                None
            }
        })
    }

    /// The address of `runtime.memstats.numgc` (a `uint32`: the GC cycles
    /// completed, the number `GODEBUG=gctrace=1` prints as `gc N`).
    ///
    /// Read from the code of `runtime.gcMarkTermination` even when the symbol table
    /// names `runtime.memstats`, as the field's offset changes with the release:
    /// Go 1.19 to 1.27 increment `memstats.numforcedgc` (if the cycle was forced) and
    /// then `memstats.numgc`, the field just before it, each with an
    /// `inc dword [rip+X]`, the only two there.
    pub fn gc_count_address(&self) -> Option<u64> {
        self.gc_count_increment().map(|(_, field)| field)
    }

    /// Where `runtime.gcMarkTermination` increments `memstats.numgc`: the
    /// instruction's address and the field's (see [`GoBinary::gc_count_address`]).
    /// A probe there reads the cycle's number before it is counted, at a distance
    /// from its own address that a load bias does not change.
    pub fn gc_count_increment(&self) -> Option<(u64, u64)> {
        let code = self.code_of("runtime.gcMarkTermination")?;
        let incs: Vec<(u64, u64)> = code
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Inc && i.op0_kind() == OpKind::Memory)
            .filter(|i| i.memory_size() == iced_x86::MemorySize::UInt32)
            .filter_map(|i| Some((i.ip(), rip_operand(i)?)))
            .collect();
        incs.windows(2)
            .find(|w| w[1].1.checked_add(4) == Some(w[0].1))
            .map(|w| w[1])
    }

    /// The calls of `nanotime` that take the time a stop of the world ends at, as
    /// the runtime counts its pauses (`/gc/pauses:seconds`, `PauseTotalNs`):
    /// - in `runtime.startTheWorldWithSema`, after the Ps are restarted and before
    ///   the clean-up (`wakep`, which may start a thread): the end of the sweep
    ///   termination and of other stops;
    /// - in `runtime.gcMarkTermination`, its second (`now := nanotime()`, before it
    ///   records the pause): the end of the mark termination, whose world is started
    ///   again later (Go 1.22 on passes that time to `startTheWorldWithSema`, which
    ///   then makes no call; before, its call comes after the pause was recorded).
    ///
    /// Go 1.19 to 1.27 call `runtime.nanotime1` at each. A `call` is emulated by the
    /// kernel's uprobes, so a probe there costs little. Empty if either is not found.
    pub fn pause_end_clocks(&self) -> Vec<u64> {
        let calls = |name: &str| self.nanotime_calls(name);
        let (start, term) = (
            calls("runtime.startTheWorldWithSema"),
            calls("runtime.gcMarkTermination"),
        );
        match (start.first(), term.get(1)) {
            (Some(a), Some(b)) => vec![*a, *b],
            _ => Vec::new(),
        }
    }

    /// The calls of `nanotime` that take the time a GC's stop of the world starts
    /// at, as the runtime counts its pauses:
    /// - Go 1.22 on: the first in `runtime.stopTheWorldWithSema` (its
    ///   `worldStop.startedStopping`, taken once `sched.lock` is held), for every
    ///   stop;
    /// - before: the first in `runtime.gcStart` (`work.pauseStart` of the sweep
    ///   termination) and in `runtime.gcMarkDone` (of the mark termination), taken
    ///   before the call that stops the world; other stops are timed by the
    ///   runtime from nowhere, and a tracer from `stopTheWorldWithSema`'s entry.
    ///
    /// A thread the kernel takes off its CPU between that clock and the stop's entry
    /// makes a pause that the runtime counts and an entry probe misses. Empty if one
    /// is not found.
    pub fn pause_start_clocks(&self) -> Vec<u64> {
        let v = self.go_version();
        if (v.major, v.minor) >= (1, 22) {
            return self
                .nanotime_calls("runtime.stopTheWorldWithSema")
                .first()
                .map(|a| vec![*a])
                .unwrap_or_default();
        }
        let (start, done) = (
            self.nanotime_calls("runtime.gcStart"),
            self.nanotime_calls("runtime.gcMarkDone"),
        );
        match (start.first(), done.first()) {
            (Some(a), Some(b)) => vec![*a, *b],
            _ => Vec::new(),
        }
    }

    /// The addresses of the calls to `runtime.nanotime1` in the function `name`.
    fn nanotime_calls(&self, name: &str) -> Vec<u64> {
        let Some(code) = self.code_of(name) else {
            return Vec::new();
        };
        code.iter()
            .filter(|i| i.mnemonic() == Mnemonic::Call)
            .filter(|i| {
                self.function_at(crate::VirtAddr(i.near_branch_target()))
                    .is_some_and(|t| t.name.starts_with("runtime.nanotime1"))
            })
            .map(|i| i.ip())
            .collect()
    }

    /// The address and size in bytes of `runtime.waitReasonStrings` as the code of
    /// `runtime.waitReason.String` says them, in Go 1.19 to 1.27: it compares the
    /// reason with the table's length (`cmp al, N`), then loads an entry from the
    /// table whose address a RIP-relative `lea` put in the load's base register.
    pub fn wait_reasons_from_code(&self) -> Option<(u64, u64)> {
        let code = self.code_of("runtime.waitReason.String")?;
        let n = code
            .iter()
            .find(|i| i.mnemonic() == Mnemonic::Cmp && i.op1_kind() == OpKind::Immediate8)
            .map(|i| u64::from(i.immediate8()))?;
        let table = code.windows(2).find_map(|w| {
            let loads = w[1].mnemonic() == Mnemonic::Mov
                && w[1].op1_kind() == OpKind::Memory
                && w[1].memory_base() == w[0].op0_register();
            (w[0].mnemonic() == Mnemonic::Lea && loads)
                .then(|| rip_operand(&w[0]))
                .flatten()
        })?;
        Some((table, n * 16))
    }

    fn code_of(&self, name: &str) -> Option<Vec<Instruction>> {
        let f = self.function_by_name(name)?;
        crate::x86::instructions(self, &f).ok()
    }
}

/// The address a RIP-relative memory operand names.
fn rip_operand(i: &Instruction) -> Option<u64> {
    (i.is_ip_rel_memory_operand()).then(|| i.ip_rel_memory_address())
}
