//! The stacks `ubacktrace()` names, in user space: their frames are read from the
//! script's stack map (codegen's `backtrace` module fills it), once per id. Output
//! that holds a `ustack:<id>` string gets the addresses in hex, as stap prints
//! `ubacktrace()`; `usyms:ustack:<id>` (from `print_usyms()`, `sprint_ubacktrace()`)
//! gets the symbolised frames. At the end of a run, every array or statistic keyed
//! by such strings becomes a flame graph (`--folded`, `--svg`).

use std::collections::HashMap;

use anyhow::Result;
use bpf::script::{GlobalShape, ScriptSpec};
use runtime::flame::Folded;
use runtime::globals::{Globals, Value};
use runtime::symbolize::{Symbolizer, find_token};

use crate::maps::KernelGlobals;

#[derive(Default)]
pub struct Stacks {
    map: Option<usize>,
    /// id → the count word and frames, or `None` if the map does not have it.
    cache: HashMap<u64, Option<Vec<u64>>>,
}

impl Stacks {
    pub fn new(spec: &ScriptSpec) -> Stacks {
        Stacks {
            map: spec.stacks.map(|m| m.0 as usize),
            cache: HashMap::new(),
        }
    }

    /// The count word and frames of stack `id`.
    fn get(&mut self, maps: &[sys::Map], id: u64) -> Option<&[u64]> {
        let map = self.map.and_then(|m| maps.get(m));
        self.cache
            .entry(id)
            .or_insert_with(|| {
                let map = map?;
                let mut buf = vec![0u8; map.value_buf_size()];
                if !map.lookup(&id.to_le_bytes(), &mut buf).ok()? {
                    return None;
                }
                let words: Vec<u64> = buf
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect();
                let n = (words.first()? & bpf::script::STACK_COUNT_MASK) as usize;
                let word = *words.first()?;
                let mut v = vec![word];
                v.extend(words.iter().skip(1).take(n));
                Some(v)
            })
            .as_deref()
    }

    /// Replaces the stack names in `text[from..]` with their stacks.
    pub fn expand(
        &mut self,
        sym: &mut Symbolizer<'_, '_>,
        maps: &[sys::Map],
        text: &mut Vec<u8>,
        from: usize,
    ) {
        let Some(first) = find_token(text, from) else {
            return;
        };
        let mut out = text[..first.start].to_vec();
        let mut at = first.start;
        let mut next = Some(first);
        while let Some(t) = next {
            out.extend_from_slice(&text[at..t.start]);
            match self.get(maps, t.id) {
                Some(stack) => {
                    let (word, frames) = (stack[0], &stack[1..]);
                    sym.set_bias(word & bpf::script::STACK_BIAS_MASK);
                    let first_is_return = word & bpf::script::FIRST_IS_RETURN != 0;
                    if t.syms {
                        sym.write_stack(&mut out, frames, first_is_return, false);
                    } else {
                        sym.write_hex(&mut out, frames, first_is_return);
                    }
                }
                None => out.extend_from_slice(&text[t.start..t.end]),
            }
            at = t.end;
            next = find_token(text, at);
        }
        out.extend_from_slice(&text[at..]);
        *text = out;
    }

    /// Every array or statistic element keyed by a stack, as collapsed stacks
    /// weighted by the element's value (an array) or count (a statistic).
    pub fn folded(
        &mut self,
        sym: &mut Symbolizer<'_, '_>,
        maps: &[sys::Map],
        spec: &ScriptSpec,
    ) -> Result<Folded> {
        let mut folded = Folded::default();
        let mut globals = KernelGlobals { maps };
        for g in &spec.globals {
            let entries: Vec<(Vec<Value>, i64)> = match &g.shape {
                GlobalShape::Array { .. } => globals
                    .entries(g)?
                    .into_iter()
                    .map(|(k, v)| (k, v.as_long()))
                    .collect(),
                GlobalShape::Stats { keys, .. } if !keys.is_empty() => globals
                    .stat_entries(g)?
                    .into_iter()
                    .map(|(k, s)| (k, s.count))
                    .collect(),
                _ => continue,
            };
            for (keys, weight) in entries {
                let Some(t) = keys.iter().find_map(|k| match k {
                    Value::Str(s) => find_token(s, 0),
                    Value::Long(_) => None,
                }) else {
                    continue;
                };
                let Some(stack) = self.get(maps, t.id) else {
                    continue;
                };
                let (word, frames) = (stack[0], stack[1..].to_vec());
                sym.set_bias(word & bpf::script::STACK_BIAS_MASK);
                let mut line = String::new();
                sym.folded(&mut line, &frames, word & bpf::script::FIRST_IS_RETURN != 0);
                folded.add(line, u64::try_from(weight).unwrap_or(0));
            }
        }
        Ok(folded)
    }
}
