//! Inputs made from a seed: a deterministic generator ([`Rng`]), the edits it makes
//! ([`Edit`]), and the input they describe ([`Input`]), with its text form, which is
//! how a finding is saved and replayed.

use std::fmt::Write as _;

/// SplitMix64: small, fast, and the same on every machine, which is all a fuzzer's
/// generator needs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn word(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.word() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// A place in a seed worth aiming at: a number the reader decodes (`numeric`, of
/// `len` 1, 2, 4 or 8 bytes, little-endian), or a run of bytes it parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spot {
    pub at: usize,
    pub len: usize,
    pub numeric: bool,
}

impl Spot {
    pub fn number(at: usize, len: usize) -> Spot {
        Spot {
            at,
            len,
            numeric: true,
        }
    }

    pub fn bytes(at: usize, len: usize) -> Spot {
        Spot {
            at,
            len,
            numeric: false,
        }
    }
}

/// One change to a seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// These bytes at this offset (past the end, the input grows).
    Write { at: usize, bytes: Vec<u8> },
    /// The input cut to this length.
    Truncate(usize),
}

/// An input: seed number `seed` of the target's seeds, with `edits` applied in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub seed: usize,
    pub edits: Vec<Edit>,
}

/// A seed and the spots a target aims at in it.
pub struct Seed {
    /// Where it came from: a corpus file, and which of its seeds.
    pub name: String,
    pub bytes: Vec<u8>,
    pub spots: Vec<Spot>,
}

impl Input {
    /// Input number `i` of the run with seed `run_seed` over `seeds`.
    pub fn make(seeds: &[Seed], run_seed: u64, i: u64) -> Input {
        let mut rng = Rng::new(run_seed ^ i.wrapping_mul(0xd134_2543_de82_ef95));
        let seed = rng.below(seeds.len());
        let s = &seeds[seed];
        // One edit often, a few sometimes: a single bad field is the likeliest bug.
        let n = 1 + [0, 0, 0, 1, 1, 2, 3][rng.below(7)];
        let edits = (0..n).map(|_| edit(&mut rng, s)).collect();
        Input { seed, edits }
    }

    /// The input's bytes.
    pub fn apply(&self, seeds: &[Seed]) -> Vec<u8> {
        let mut out = seeds
            .get(self.seed)
            .map_or_else(Vec::new, |s| s.bytes.clone());
        for e in &self.edits {
            match e {
                Edit::Write { at, bytes } => {
                    let end = at + bytes.len();
                    if out.len() < end {
                        out.resize(end, 0);
                    }
                    out[*at..end].copy_from_slice(bytes);
                }
                Edit::Truncate(n) => out.truncate(*n),
            }
        }
        out
    }

    /// The text form: `seed NAME`, then one line per edit (`write OFFSET HEX`,
    /// `truncate LEN`, numbers in hex).
    pub fn to_text(&self, seeds: &[Seed]) -> String {
        let mut t = format!("seed {}\n", seeds[self.seed].name);
        for e in &self.edits {
            match e {
                Edit::Write { at, bytes } => {
                    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    let _ = writeln!(t, "write {at:#x} {hex}");
                }
                Edit::Truncate(n) => {
                    let _ = writeln!(t, "truncate {n:#x}");
                }
            }
        }
        t
    }

    /// Reads the text form; lines starting with `#` are comments.
    pub fn parse(text: &str, seeds: &[Seed]) -> Result<Input, String> {
        let mut seed = None;
        let mut edits = Vec::new();
        let num = |s: &str| {
            usize::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| format!("{s}: {e}"))
        };
        for line in text.lines().map(str::trim) {
            let mut w = line.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (None, ..) => {}
                (Some(c), ..) if c.starts_with('#') => {}
                (Some("seed"), Some(name), None) => {
                    seed = Some(
                        seeds
                            .iter()
                            .position(|s| s.name == name)
                            .ok_or_else(|| format!("no seed {name}"))?,
                    );
                }
                (Some("write"), Some(at), Some(hex)) if hex.len() % 2 == 0 => {
                    let bytes = (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                        .collect::<Result<Vec<u8>, _>>()
                        .map_err(|e| format!("{hex}: {e}"))?;
                    edits.push(Edit::Write {
                        at: num(at)?,
                        bytes,
                    });
                }
                (Some("truncate"), Some(n), None) => edits.push(Edit::Truncate(num(n)?)),
                _ => return Err(format!("cannot read the line {line:?}")),
            }
        }
        Ok(Input {
            seed: seed.ok_or("no seed line")?,
            edits,
        })
    }
}

/// Values that break readers: zero, one, all ones, the sign bit, and around them.
fn interesting(rng: &mut Rng, len: usize, old: u64, input_len: usize) -> u64 {
    let max = if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    };
    let v = match rng.below(12) {
        0 => 0,
        1 => 1,
        2 => max,
        3 => max >> 1,
        4 => (max >> 1) + 1,
        5 => old.wrapping_add(1),
        6 => old.wrapping_sub(1),
        7 => old.wrapping_mul(2),
        8 => old >> 1,
        9 => input_len as u64 + rng.below(64) as u64,
        10 => old ^ (1 << rng.below(8 * len)),
        _ => rng.word(),
    };
    v & max
}

fn edit(rng: &mut Rng, seed: &Seed) -> Edit {
    let len = seed.bytes.len().max(1);
    let spot =
        (!seed.spots.is_empty() && rng.chance(2)).then(|| seed.spots[rng.below(seed.spots.len())]);
    match (spot, rng.below(8)) {
        // A number the reader decodes, set to a value that breaks readers.
        (Some(s), 0..=4) if s.numeric => {
            let mut old = [0u8; 8];
            let have = seed.bytes.get(s.at..s.at + s.len).unwrap_or(&[]);
            old[..have.len()].copy_from_slice(have);
            let v = interesting(rng, s.len, u64::from_le_bytes(old), len);
            Edit::Write {
                at: s.at,
                bytes: v.to_le_bytes()[..s.len].to_vec(),
            }
        }
        // A byte inside a structure, flipped or overwritten.
        (Some(s), _) => {
            let at = s.at + rng.below(s.len.max(1));
            let old = seed.bytes.get(at).copied().unwrap_or(0);
            let b = match rng.below(3) {
                0 => old ^ (1 << rng.below(8)),
                1 => [0, 0xff, 0x7f, 0x80, 1][rng.below(5)],
                _ => rng.word() as u8,
            };
            Edit::Write { at, bytes: vec![b] }
        }
        // Anywhere: a bit flip, a cut, a splice from elsewhere, a zeroed run.
        (None, 0..=3) => {
            let at = rng.below(len);
            let old = seed.bytes.get(at).copied().unwrap_or(0);
            Edit::Write {
                at,
                bytes: vec![old ^ (1 << rng.below(8))],
            }
        }
        (None, 4) => Edit::Truncate(rng.below(len)),
        (None, 5 | 6) => {
            let n = 1 + rng.below(256);
            let from = rng.below(len);
            let bytes = seed
                .bytes
                .get(from..(from + n).min(len))
                .unwrap_or(&[])
                .to_vec();
            Edit::Write {
                at: rng.below(len),
                bytes,
            }
        }
        _ => Edit::Write {
            at: rng.below(len),
            bytes: vec![0; 1 + rng.below(4096)],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds() -> Vec<Seed> {
        vec![Seed {
            name: "a#0".into(),
            bytes: (0..200u8).collect(),
            spots: vec![Spot::number(4, 4), Spot::bytes(20, 10)],
        }]
    }

    #[test]
    fn inputs_are_made_again_from_their_number() {
        let s = seeds();
        for i in 0..200 {
            assert_eq!(Input::make(&s, 7, i), Input::make(&s, 7, i));
        }
        let distinct: std::collections::HashSet<Vec<u8>> =
            (0..200).map(|i| Input::make(&s, 7, i).apply(&s)).collect();
        assert!(distinct.len() > 150, "{} distinct inputs", distinct.len());
    }

    #[test]
    fn the_text_form_reads_back() {
        let s = seeds();
        for i in 0..100 {
            let input = Input::make(&s, 3, i);
            assert_eq!(Input::parse(&input.to_text(&s), &s), Ok(input));
        }
        assert!(Input::parse("seed nosuch\n", &s).is_err());
        assert!(Input::parse("seed a#0\nwrite 10 f\n", &s).is_err());
    }
}
