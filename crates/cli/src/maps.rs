//! Script globals in the kernel's maps, for the user-space side of a script (`begin`,
//! `end` and timer probes, and the display of globals at exit). The byte layout is the
//! runtime's (`runtime::globals`); this file only moves bytes in and out of maps. The
//! stacks values name are printed by the trace's symbols, lent for the while.

use bpf::script::{GlobalShape, GlobalSpec};
use runtime::globals::{self, Globals, GlobalsError, Value};
use runtime::stacks::StackText;
use runtime::stats::{Hist, Stat};

pub struct KernelGlobals<'a> {
    pub maps: &'a [sys::Map],
    pub stacks: &'a mut dyn StackText,
}

impl StackText for KernelGlobals<'_> {
    fn write_stack(&mut self, stack: u64, out: &mut Vec<u8>) {
        self.stacks.write_stack(stack, out);
    }
}

fn storage(g: &GlobalSpec, e: sys::Error) -> GlobalsError {
    GlobalsError::Storage {
        global: g.name.clone(),
        source: Box::new(e),
    }
}

const SCALAR_KEY: [u8; 4] = 0u32.to_le_bytes();

/// The histogram layout of statistic `g` (an error if `g` is not a statistic).
fn hist_of(g: &GlobalSpec) -> Result<Hist, GlobalsError> {
    let GlobalShape::Stats { hist, .. } = &g.shape else {
        return Err(GlobalsError::Shape {
            global: g.name.clone(),
            expected: "a statistic",
        });
    };
    globals::hist(hist).map_err(|source| GlobalsError::Stats {
        global: g.name.clone(),
        source,
    })
}

impl KernelGlobals<'_> {
    fn map(&self, g: &GlobalSpec) -> Result<&sys::Map, GlobalsError> {
        self.maps
            .get(g.map.0 as usize)
            .ok_or_else(|| GlobalsError::Shape {
                global: g.name.clone(),
                expected: "a created map",
            })
    }

    fn key(&self, g: &GlobalSpec, keys: &[Value]) -> Result<Vec<u8>, GlobalsError> {
        let mut k = Vec::new();
        match &g.shape {
            GlobalShape::Array { keys: kinds, .. } => globals::encode_key(kinds, keys, &mut k)?,
            GlobalShape::Stats { keys: kinds, .. } if kinds.is_empty() => {
                k.extend_from_slice(&SCALAR_KEY)
            }
            GlobalShape::Stats { keys: kinds, .. } => globals::encode_key(kinds, keys, &mut k)?,
            GlobalShape::Scalar { .. } => k.extend_from_slice(&SCALAR_KEY),
        }
        Ok(k)
    }

    /// The raw per-CPU value of a statistic, or `None` if it has none.
    fn stat_bytes(&self, g: &GlobalSpec, key: &[u8]) -> Result<Option<Vec<u8>>, GlobalsError> {
        let m = self.map(g)?;
        let mut buf = vec![0u8; m.value_buf_size()];
        let found = m.lookup(key, &mut buf).map_err(|e| storage(g, e))?;
        Ok(found.then_some(buf))
    }

    fn decode_stat(&self, g: &GlobalSpec, bytes: &[u8]) -> Result<Stat, GlobalsError> {
        let h = hist_of(g)?;
        Stat::from_per_cpu(&h, bytes).map_err(|source| GlobalsError::Stats {
            global: g.name.clone(),
            source,
        })
    }
}

impl Globals for KernelGlobals<'_> {
    fn get(&mut self, g: &GlobalSpec, keys: &[Value]) -> Result<Value, GlobalsError> {
        let m = self.map(g)?;
        match &g.shape {
            GlobalShape::Scalar { offset, value } => {
                let v = m
                    .get(&SCALAR_KEY)
                    .map_err(|e| storage(g, e))?
                    .unwrap_or_default();
                globals::decode_scalar(*offset, *value, &v)
            }
            GlobalShape::Array { value, .. } => {
                let k = self.key(g, keys)?;
                match m.get(&k).map_err(|e| storage(g, e))? {
                    Some(v) => globals::decode_value(*value, &v),
                    None => Ok(Value::zero(*value)),
                }
            }
            GlobalShape::Stats { .. } => Err(GlobalsError::Shape {
                global: g.name.clone(),
                expected: "a scalar or an array",
            }),
        }
    }

    fn set(&mut self, g: &GlobalSpec, keys: &[Value], value: Value) -> Result<(), GlobalsError> {
        let m = self.map(g)?;
        match &g.shape {
            GlobalShape::Scalar {
                offset,
                value: kind,
            } => {
                let mut v = m
                    .get(&SCALAR_KEY)
                    .map_err(|e| storage(g, e))?
                    .unwrap_or_else(|| vec![0; m.spec().value_size as usize]);
                globals::encode_scalar(*offset, *kind, &value, &mut v)?;
                m.update(&SCALAR_KEY, &v, sys::UpdateFlags::Any)
                    .map_err(|e| storage(g, e))
            }
            GlobalShape::Array { value: kind, .. } => {
                let k = self.key(g, keys)?;
                let mut v = Vec::new();
                globals::encode_value(*kind, &value, &mut v)?;
                m.update(&k, &v, sys::UpdateFlags::Any)
                    .map_err(|e| match e.errno() {
                        Some(libc::E2BIG) => GlobalsError::Full {
                            global: g.name.clone(),
                            max: Some(u64::from(m.spec().max_entries)),
                        },
                        _ => storage(g, e),
                    })
            }
            GlobalShape::Stats { .. } => Err(GlobalsError::Shape {
                global: g.name.clone(),
                expected: "a scalar or an array",
            }),
        }
    }

    fn delete(&mut self, g: &GlobalSpec, keys: Option<&[Value]>) -> Result<(), GlobalsError> {
        let m = self.map(g)?;
        match (&g.shape, keys) {
            (GlobalShape::Scalar { value, .. }, _) => self.set(g, &[], Value::zero(*value)),
            (GlobalShape::Stats { keys: kinds, .. }, _) if kinds.is_empty() => {
                let zero = vec![0u8; m.value_buf_size()];
                m.update(&SCALAR_KEY, &zero, sys::UpdateFlags::Any)
                    .map_err(|e| storage(g, e))
            }
            (_, Some(keys)) => {
                let k = self.key(g, keys)?;
                m.delete(&k).map(|_| ()).map_err(|e| storage(g, e))
            }
            (_, None) => {
                for k in m.keys().map_err(|e| storage(g, e))? {
                    m.delete(&k).map_err(|e| storage(g, e))?;
                }
                Ok(())
            }
        }
    }

    fn contains(&mut self, g: &GlobalSpec, keys: &[Value]) -> Result<bool, GlobalsError> {
        let k = self.key(g, keys)?;
        let m = self.map(g)?;
        let mut buf = vec![0u8; m.value_buf_size()];
        m.lookup(&k, &mut buf).map_err(|e| storage(g, e))
    }

    fn entries(&mut self, g: &GlobalSpec) -> Result<Vec<(Vec<Value>, Value)>, GlobalsError> {
        let GlobalShape::Array { keys: kinds, value } = &g.shape else {
            return Err(GlobalsError::Shape {
                global: g.name.clone(),
                expected: "an array",
            });
        };
        let m = self.map(g)?;
        let mut out = Vec::new();
        for k in m.keys().map_err(|e| storage(g, e))? {
            if let Some(v) = m.get(&k).map_err(|e| storage(g, e))? {
                out.push((
                    globals::decode_key(kinds, &k)?,
                    globals::decode_value(*value, &v)?,
                ));
            }
        }
        Ok(out)
    }

    fn stat(&mut self, g: &GlobalSpec, keys: &[Value]) -> Result<Stat, GlobalsError> {
        let k = self.key(g, keys)?;
        match self.stat_bytes(g, &k)? {
            Some(b) => self.decode_stat(g, &b),
            None => Ok(Stat::new(&hist_of(g)?)),
        }
    }

    fn stat_entries(&mut self, g: &GlobalSpec) -> Result<Vec<(Vec<Value>, Stat)>, GlobalsError> {
        let GlobalShape::Stats { keys: kinds, .. } = &g.shape else {
            return Err(GlobalsError::Shape {
                global: g.name.clone(),
                expected: "a statistic",
            });
        };
        if kinds.is_empty() {
            return Ok(vec![(Vec::new(), self.stat(g, &[])?)]);
        }
        let m = self.map(g)?;
        let mut out = Vec::new();
        for k in m.keys().map_err(|e| storage(g, e))? {
            if let Some(b) = self.stat_bytes(g, &k)? {
                out.push((globals::decode_key(kinds, &k)?, self.decode_stat(g, &b)?));
            }
        }
        Ok(out)
    }

    fn record(&mut self, g: &GlobalSpec, keys: &[Value], v: i64) -> Result<(), GlobalsError> {
        // User space adds to CPU 0's slot: count, sum, min, max, then the bucket.
        let h = hist_of(g)?;
        let k = self.key(g, keys)?;
        let m = self.map(g)?;
        let mut buf = self
            .stat_bytes(g, &k)?
            .unwrap_or_else(|| vec![0u8; m.value_buf_size()]);
        let slot = h.slot_bytes();
        let mut s = Stat::from_slot(&h, buf.get(..slot).unwrap_or_default()).map_err(|source| {
            GlobalsError::Stats {
                global: g.name.clone(),
                source,
            }
        })?;
        s.add(&h, v);
        let words = [s.count, s.sum, s.min, s.max]
            .into_iter()
            .chain(s.buckets.iter().copied());
        for (i, w) in words.enumerate() {
            if let Some(dst) = buf.get_mut(i * 8..i * 8 + 8) {
                dst.copy_from_slice(&w.to_le_bytes());
            }
        }
        m.update(&k, &buf, sys::UpdateFlags::Any)
            .map_err(|e| storage(g, e))
    }
}
