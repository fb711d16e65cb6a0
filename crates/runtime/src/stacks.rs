//! Stacks in user space. A `ubacktrace()` value is a stack id (`bpf::script::
//! STACK_ID_MASK`): it arrives in records and map keys as 8 bytes and stays that word
//! until something prints it. Printing asks a [`StackText`], which the host
//! implements (the CLI: frames from the script's stack map, names from the binary);
//! the record writer, the interpreter and the end-of-run display all ask the same
//! way, so a stack is never text before it is output, and never parsed back.
//!
//! [`Stacks`] is that host side, given where the frames come from ([`StackSource`])
//! and, when there is a binary, a [`Symbolizer`]: frames are read once per id, and a
//! value prints as stap prints `ubacktrace()` (the addresses in hex, space separated)
//! or, with `STACK_SYMS` set, as the symbolised frames, a line each.

use std::collections::HashMap;

use bpf::script::{FIRST_IS_RETURN, STACK_BIAS_MASK, STACK_COUNT_MASK, STACK_ID_MASK, STACK_SYMS};

use crate::events::Backtrace;
use crate::symbolize::Symbolizer;

/// Turns stack values into text.
pub trait StackText {
    /// Appends the text of stack value `stack`: the addresses in hex, or the
    /// symbolised frames when the value has `STACK_SYMS`.
    fn write_stack(&mut self, stack: u64, out: &mut Vec<u8>);
}

/// Where the frames of a stack are: the stack map's value under the id, as `u64`
/// words (the count word, then the frames).
pub trait StackSource {
    fn read(&mut self, id: u64) -> Option<Vec<u64>>;
}

/// A stack as the probes stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    /// Frames after the first are return addresses; the first is the probe's pc
    /// unless `first_is_return`.
    pub frames: Vec<u64>,
    pub first_is_return: bool,
    /// The load bias of the binary in the process the stack is from.
    pub bias: u64,
}

impl Stack {
    /// The stack a stack map value holds, its frames cut to the count it says.
    pub fn from_words(words: &[u64]) -> Option<Stack> {
        let (&word, rest) = words.split_first()?;
        let n = (word & STACK_COUNT_MASK) as usize;
        Some(Stack {
            frames: rest.iter().take(n).copied().collect(),
            first_is_return: word & FIRST_IS_RETURN != 0,
            bias: word & STACK_BIAS_MASK,
        })
    }
}

/// Stack values to text, from a [`StackSource`] and the binary's symbols.
pub struct Stacks<'a, 'd> {
    source: Box<dyn StackSource + 'a>,
    sym: Option<Symbolizer<'a, 'd>>,
    /// id → its stack, or `None` when the source has none.
    cache: HashMap<u64, Option<Stack>>,
    /// The bias of stacks whose count word carries none: a sample's (`timer.profile`
    /// has no probe site to measure it from), named at the traced process's bias.
    unbiased: u64,
}

/// The bias stack `s` is named at.
fn bias_of(s: &Stack, unbiased: u64) -> u64 {
    if s.bias == 0 { unbiased } else { s.bias }
}

impl<'a, 'd> Stacks<'a, 'd> {
    pub fn new(source: Box<dyn StackSource + 'a>, sym: Option<Symbolizer<'a, 'd>>) -> Self {
        Stacks {
            source,
            sym,
            cache: HashMap::new(),
            unbiased: 0,
        }
    }

    /// Sets the bias of stacks that carry none (see [`Stacks::unbiased`]).
    pub fn set_unbiased(&mut self, bias: u64) {
        self.unbiased = bias;
    }

    /// The bias stack `s` is named at.
    pub fn bias_of(&self, s: &Stack) -> u64 {
        bias_of(s, self.unbiased)
    }

    /// The stack value `stack` names, read once.
    pub fn get(&mut self, stack: u64) -> Option<&Stack> {
        let id = stack & STACK_ID_MASK;
        let source = &mut self.source;
        self.cache
            .entry(id)
            .or_insert_with(|| source.read(id).as_deref().and_then(Stack::from_words))
            .as_ref()
    }

    /// The binary's symbols (none for a script that probes no binary).
    pub fn symbolizer(&mut self) -> Option<&mut Symbolizer<'a, 'd>> {
        self.sym.as_mut()
    }

    /// The frames of a `print_ubacktrace*()` record, a line each, as stap prints them.
    pub fn write_backtrace(&mut self, bt: &Backtrace<'_>, out: &mut Vec<u8>) {
        match self.sym.as_mut() {
            Some(sym) => {
                sym.set_bias(bt.bias);
                sym.write_stack(out, bt.frames, bt.first_is_return, bt.fileline);
            }
            None => {
                write_hex(bt.frames, out);
                out.push(b'\n');
            }
        }
    }

    /// The stack as one collapsed-stack line (`root;…;leaf`), or `None` if it is
    /// not known.
    pub fn folded(&mut self, stack: u64) -> Option<String> {
        let id = stack & STACK_ID_MASK;
        self.get(id)?;
        let unbiased = self.unbiased;
        let (Some(Some(s)), Some(sym)) = (self.cache.get(&id), self.sym.as_mut()) else {
            return None;
        };
        sym.set_bias(bias_of(s, unbiased));
        let mut line = String::new();
        sym.folded(&mut line, &s.frames, s.first_is_return);
        Some(line)
    }
}

impl StackText for Stacks<'_, '_> {
    fn write_stack(&mut self, stack: u64, out: &mut Vec<u8>) {
        let id = stack & STACK_ID_MASK;
        self.get(id);
        let unbiased = self.unbiased;
        match (self.cache.get(&id), self.sym.as_mut()) {
            (Some(Some(s)), Some(sym)) => {
                sym.set_bias(bias_of(s, unbiased));
                if stack & STACK_SYMS != 0 {
                    sym.write_stack(out, &s.frames, s.first_is_return, false);
                } else {
                    sym.write_hex(out, &s.frames, s.first_is_return);
                }
            }
            (Some(Some(s)), None) => write_hex(&s.frames, out),
            _ => write_unknown(stack, out),
        }
    }
}

/// A stack's addresses in hex, space separated (without a binary to say which
/// frames are return addresses, every one is kept).
pub fn write_hex(frames: &[u64], out: &mut Vec<u8>) {
    for (i, pc) in frames.iter().enumerate() {
        let sep = if i == 0 { "" } else { " " };
        out.extend_from_slice(format!("{sep}0x{:x}", pc & !bpf::script::FRAME_FLAGS).as_bytes());
    }
}

/// A stack whose frames are not known (the map had no room for it): its id.
pub fn write_unknown(stack: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("<stack {:016x}>", stack & STACK_ID_MASK).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Map(HashMap<u64, Vec<u64>>);

    impl StackSource for Map {
        fn read(&mut self, id: u64) -> Option<Vec<u64>> {
            self.0.get(&id).cloned()
        }
    }

    #[test]
    fn a_value_prints_its_frames_read_once_by_id() {
        // Count word: 2 frames, first is a return address, bias 0x5000.
        let word = 2 | FIRST_IS_RETURN | 0x5000;
        let map = Map(HashMap::from([(7, vec![word, 0x401000, 0x402000, 0xdead])]));
        let mut s = Stacks::new(Box::new(map), None);
        assert_eq!(
            s.get(7 | STACK_SYMS),
            Some(&Stack {
                frames: vec![0x401000, 0x402000],
                first_is_return: true,
                bias: 0x5000,
            })
        );
        let mut out = Vec::new();
        s.write_stack(7, &mut out);
        out.push(b'|');
        s.write_stack(8, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0x401000 0x402000|<stack 0000000000000008>"
        );
    }
}
