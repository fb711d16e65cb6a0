//! The context a uprobe program gets in R1: the probed thread's registers as the
//! kernel saved them, `struct pt_regs` of x86-64 (`arch/x86/include/asm/ptrace.h`).
//! Reading a Go argument is `ldx(DW, dst, R1, X86Reg::Rax.offset())` at a function's
//! entry: the Go register ABI passes integer arguments in RAX, RBX, RCX, RDI, RSI,
//! R8, R9, R10, R11, and keeps the current goroutine's `g` in R14.

/// A saved x86-64 register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum X86Reg {
    R15,
    R14,
    R13,
    R12,
    Rbp,
    Rbx,
    R11,
    R10,
    R9,
    R8,
    Rax,
    Rcx,
    Rdx,
    Rsi,
    Rdi,
    OrigRax,
    Rip,
    Cs,
    Eflags,
    Rsp,
    Ss,
}

impl X86Reg {
    /// In `pt_regs` order.
    pub const ALL: [X86Reg; 21] = [
        X86Reg::R15,
        X86Reg::R14,
        X86Reg::R13,
        X86Reg::R12,
        X86Reg::Rbp,
        X86Reg::Rbx,
        X86Reg::R11,
        X86Reg::R10,
        X86Reg::R9,
        X86Reg::R8,
        X86Reg::Rax,
        X86Reg::Rcx,
        X86Reg::Rdx,
        X86Reg::Rsi,
        X86Reg::Rdi,
        X86Reg::OrigRax,
        X86Reg::Rip,
        X86Reg::Cs,
        X86Reg::Eflags,
        X86Reg::Rsp,
        X86Reg::Ss,
    ];

    /// The byte offset of the register in `struct pt_regs`: each is 8 bytes, in
    /// the order of [`X86Reg::ALL`].
    pub fn offset(self) -> i16 {
        let i = X86Reg::ALL.iter().position(|r| *r == self).unwrap_or(0);
        (i * 8) as i16
    }

    /// The member's name in the kernel's `struct pt_regs`.
    pub fn kernel_name(self) -> &'static str {
        match self {
            X86Reg::R15 => "r15",
            X86Reg::R14 => "r14",
            X86Reg::R13 => "r13",
            X86Reg::R12 => "r12",
            X86Reg::Rbp => "bp",
            X86Reg::Rbx => "bx",
            X86Reg::R11 => "r11",
            X86Reg::R10 => "r10",
            X86Reg::R9 => "r9",
            X86Reg::R8 => "r8",
            X86Reg::Rax => "ax",
            X86Reg::Rcx => "cx",
            X86Reg::Rdx => "dx",
            X86Reg::Rsi => "si",
            X86Reg::Rdi => "di",
            X86Reg::OrigRax => "orig_ax",
            X86Reg::Rip => "ip",
            X86Reg::Cs => "cs",
            X86Reg::Eflags => "flags",
            X86Reg::Rsp => "sp",
            X86Reg::Ss => "ss",
        }
    }

    /// Go's integer argument and result registers, in order (Go 1.17+ register ABI).
    pub const GO_INT_ARGS: [X86Reg; 9] = [
        X86Reg::Rax,
        X86Reg::Rbx,
        X86Reg::Rcx,
        X86Reg::Rdi,
        X86Reg::Rsi,
        X86Reg::R8,
        X86Reg::R9,
        X86Reg::R10,
        X86Reg::R11,
    ];
}

/// `sizeof(struct pt_regs)` on x86-64.
pub const PT_REGS_SIZE: usize = 21 * 8;
