//! The traced binary's symbols for one trace: addresses to names, with the PIE load
//! bias learnt once from the traced process, and the stacks `ubacktrace()` names,
//! read from the script's stack map by id. Stacks and backtrace records carry the
//! bias they were taken with; the bias learnt here is for the bare addresses a
//! tool's records carry (a function's pc, where a goroutine was created) and for
//! `usymname()`.
//!
//! Every stack printed in a trace comes through here ([`StackText`]): the records'
//! text, the interpreter's `printf`/`print_usyms()` (through [`KernelGlobals`]), the
//! globals shown at the end, the JSON output, and the flame graphs.

use std::cell::Cell;
use std::rc::Rc;

use anyhow::Result;
use bpf::script::{FieldKind, GlobalShape, ScriptSpec};
use runtime::events::Backtrace;
use runtime::flame::Folded;
use runtime::globals::Globals;
use runtime::stacks::{StackSource, StackText, Stacks};
use runtime::symbolize::{FrameText, Symbolizer};

use crate::binary::Binary;
use crate::maps::KernelGlobals;

/// A load bias, learnt once and read by whoever names addresses.
pub type Bias = Rc<Cell<Option<u64>>>;

pub struct Symbols<'a, 'd> {
    stacks: Stacks<'a, 'd>,
    /// The binary, when the script probes one.
    bin: Option<(&'a Binary, &'a gobin::GoBinary<'d>)>,
    pid: Option<u32>,
    bias: Bias,
}

impl<'a, 'd> Symbols<'a, 'd> {
    /// The symbols of `bin` (none for a script that probes no binary), the stacks in
    /// `spec`'s stack map, the bias from process `pid`'s maps.
    pub fn new(
        bin: Option<(&'a Binary, &'a gobin::GoBinary<'d>)>,
        spec: &ScriptSpec,
        maps: &'a [sys::Map],
        pid: Option<u32>,
    ) -> Symbols<'a, 'd> {
        let source = MapStacks {
            map: spec.stacks.and_then(|m| maps.get(m.0 as usize)),
        };
        let sym = bin.map(|(b, go)| Symbolizer::new(go, b.path.display().to_string(), 0));
        Symbols {
            stacks: Stacks::new(Box::new(source), sym),
            bin,
            pid,
            bias: Bias::default(),
        }
    }

    /// The bias, shared (for `usymname()` in the interpreter).
    pub fn bias(&self) -> Bias {
        self.bias.clone()
    }

    /// The traced process, if one is.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The traced binary, when the script probes one.
    pub fn binary(&self) -> Option<(&'a Binary, &'a gobin::GoBinary<'d>)> {
        self.bin
    }

    /// The binary's load bias in the traced process as far as it is known: 0 for a
    /// fixed-address binary, or while the process has not mapped it yet.
    pub fn load_bias(&mut self) -> u64 {
        self.learn_bias();
        self.bias.get().unwrap_or(0)
    }

    /// Whether addresses can be named yet: the bias is known, or not needed.
    pub fn ready(&self) -> bool {
        match self.bin {
            Some((_, go)) => !go.is_pie() || self.bias.get().is_some() || self.pid.is_none(),
            None => true,
        }
    }

    /// Learns the bias from the traced process's maps if it is not known yet; as
    /// early as can be, since a short-lived command may be gone (its maps empty) by
    /// the time its records are read.
    pub fn learn_bias(&mut self) {
        if self.ready() {
            return;
        }
        let (Some((bin, go)), Some(pid)) = (self.bin, self.pid) else {
            return;
        };
        if let Some(b) = process_bias(bin, go, pid) {
            self.bias.set(Some(b));
            self.stacks.set_unbiased(b);
        }
    }

    /// A backtrace's bias, which holds even when the process is gone before its maps
    /// were read.
    fn saw_bias(&mut self, bias: u64) {
        // A sample's stack carries none (0, where no PIE binary is loaded).
        if bias != 0 && self.bias.get().is_none() && self.bin.is_some_and(|(_, go)| go.is_pie()) {
            self.bias.set(Some(bias));
            self.stacks.set_unbiased(bias);
        }
    }

    /// The symbolizer, set to the learnt bias.
    fn at_bias(&mut self) -> Option<&mut Symbolizer<'a, 'd>> {
        self.learn_bias();
        let bias = self.bias.get().unwrap_or(0);
        let sym = self.stacks.symbolizer()?;
        sym.set_bias(bias);
        Some(sym)
    }

    /// The name of the function holding `pc` (its innermost inlined call), or the
    /// address. `exact` is for a pc that is not a return address.
    pub fn function(&mut self, pc: u64, exact: bool) -> String {
        match self
            .at_bias()
            .and_then(|s| s.frames(pc, exact).first().cloned())
        {
            Some(f) => f.function,
            None => format!("0x{pc:x}"),
        }
    }

    /// `function (file:line)` at `pc`, innermost inlined call first.
    pub fn place(&mut self, pc: u64, exact: bool) -> String {
        match self
            .at_bias()
            .and_then(|s| s.frames(pc, exact).first().cloned())
        {
            Some(f) => format!("{} ({}:{})", f.function, f.file, f.line),
            None => format!("0x{pc:x}"),
        }
    }

    /// Every function at `pc`, outermost last (inlined calls first).
    pub fn functions(&mut self, pc: u64, exact: bool) -> Vec<String> {
        let names: Vec<String> = match self.at_bias() {
            Some(s) => s
                .frames(pc, exact)
                .iter()
                .map(|f| f.function.clone())
                .collect(),
            None => Vec::new(),
        };
        if names.is_empty() {
            return vec![format!("0x{pc:x}")];
        }
        names
    }

    /// SystemTap's frame lines for `pc`.
    pub fn write(&mut self, out: &mut Vec<u8>, pc: u64, exact: bool) {
        if let Some(s) = self.at_bias() {
            s.write(out, pc, exact, true);
        }
    }

    /// A backtrace record's frames as return addresses: frames after the switch from
    /// the system stack that are only maybe return addresses are kept or dropped as
    /// the pclntab says.
    pub fn logical(&mut self, bt: &Backtrace<'_>) -> Vec<u64> {
        self.saw_bias(bt.bias);
        let Some(sym) = self.stacks.symbolizer() else {
            return bt.frames.to_vec();
        };
        sym.set_bias(bt.bias);
        sym.logical(bt.frames, bt.first_is_return)
            .iter()
            .map(|p| p.0)
            .collect()
    }

    /// The frames of the stack value `stack` names, innermost first: each logical
    /// pc with its functions (inlined calls first). `None` when the stack map has no
    /// such stack or there is no binary to name it.
    pub fn stack_frames(&mut self, stack: u64) -> Option<Vec<(u64, Vec<FrameText>)>> {
        self.learn_bias();
        let s = self.stacks.get(stack)?.clone();
        self.saw_bias(s.bias);
        let bias = self.stacks.bias_of(&s);
        let sym = self.stacks.symbolizer()?;
        sym.set_bias(bias);
        let pcs = sym.logical(&s.frames, s.first_is_return).to_vec();
        Some(
            pcs.into_iter()
                .map(|(pc, exact)| (pc, sym.frames(pc, exact).to_vec()))
                .collect(),
        )
    }

    pub fn stacks(&mut self) -> &mut Stacks<'a, 'd> {
        &mut self.stacks
    }

    /// Every array or statistic keyed by a stack, as collapsed stacks weighted by
    /// the element's value (an array) or count (a statistic), read from the id.
    pub fn folded(&mut self, spec: &ScriptSpec, maps: &[sys::Map]) -> Result<Folded> {
        let mut folded = Folded::default();
        for g in &spec.globals {
            let (GlobalShape::Array { keys, .. } | GlobalShape::Stats { keys, .. }) = &g.shape
            else {
                continue;
            };
            let Some(k) = keys.iter().position(|k| *k == FieldKind::Stack) else {
                continue;
            };
            let mut globals = KernelGlobals {
                maps,
                stacks: &mut self.stacks,
            };
            let entries: Vec<(u64, i64)> = match &g.shape {
                GlobalShape::Array { .. } => globals
                    .entries(g)?
                    .into_iter()
                    .map(|(ks, v)| (ks[k].as_long() as u64, v.as_long()))
                    .collect(),
                _ => globals
                    .stat_entries(g)?
                    .into_iter()
                    .map(|(ks, s)| (ks[k].as_long() as u64, s.count))
                    .collect(),
            };
            for (stack, weight) in entries {
                if let Some(line) = self.stacks.folded(stack) {
                    folded.add(line, u64::try_from(weight).unwrap_or(0));
                }
            }
        }
        Ok(folded)
    }
}

impl StackText for Symbols<'_, '_> {
    fn write_stack(&mut self, stack: u64, out: &mut Vec<u8>) {
        self.stacks.write_stack(stack, out);
    }
}

/// The load bias of `bin` in process `pid`, from its maps. The mapping is found by
/// inode: its name is the path as the process sees it, which differs from ours in
/// another mount namespace; the mapping at file offset 0 holds the first segment,
/// linked at its vaddr.
pub fn process_bias(bin: &Binary, go: &gobin::GoBinary<'_>, pid: u32) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let first_vaddr = go
        .elf()
        .segments()
        .iter()
        .find(|s| s.offset == 0)
        .map_or(0, |s| s.vaddr);
    runtime::symbolize::bias_from_maps(&maps, &bin.maps_name(&maps), first_vaddr)
}

/// `usymname(addr)` in user-space probes: the function of the traced binary at a
/// run-time address, with the bias the trace learnt.
pub fn usymname<'g>(
    go: &'g gobin::GoBinary<'_>,
    bias: Bias,
) -> impl FnMut(u64) -> Option<String> + 'g {
    move |addr| {
        let at = addr.wrapping_sub(bias.get().unwrap_or(0));
        go.function_at(gobin::VirtAddr(at))
            .map(|f| f.name.to_string())
    }
}

/// The script's stack map, read by id.
struct MapStacks<'m> {
    map: Option<&'m sys::Map>,
}

impl StackSource for MapStacks<'_> {
    fn read(&mut self, id: u64) -> Option<Vec<u64>> {
        let map = self.map?;
        let mut buf = vec![0u8; map.value_buf_size()];
        if !map.lookup(&id.to_le_bytes(), &mut buf).ok()? {
            return None;
        }
        Some(
            buf.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        )
    }
}
