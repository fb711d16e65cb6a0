//! Medians and ranges of repeated measurements, and the interleaving that produces
//! them: every case of a comparison runs once per repetition, in turn (A B A B …), so
//! that a change of the machine's state during the run touches all cases alike.

use crate::error::Result;
use std::collections::BTreeMap;

/// The metrics one run of one case produced, by name (`"ns"`, `"armed_ms"` …).
pub type Sample = BTreeMap<&'static str, f64>;

/// Every run of one case.
#[derive(Debug, Default, Clone)]
pub struct Runs {
    pub samples: Vec<Sample>,
    pub errors: Vec<String>,
}

impl Runs {
    /// The values of one metric, in the order of the repetitions that produced it.
    pub fn values(&self, metric: &str) -> Vec<f64> {
        self.samples
            .iter()
            .filter_map(|s| s.get(metric).copied())
            .collect()
    }

    /// The summary of one metric, or why there is none.
    pub fn stat(&self, metric: &str) -> Cell {
        Cell::of(&self.values(metric), self.errors.first())
    }
}

/// The summary of a series of measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// What a table cell shows: a summary, a failure, or nothing measured.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Value(Stat),
    Failed(String),
    None,
}

impl Cell {
    pub fn of(values: &[f64], error: Option<&String>) -> Cell {
        match Stat::of(values) {
            Some(s) => Cell::Value(s),
            None => match error {
                Some(e) => Cell::Failed(e.clone()),
                None => Cell::None,
            },
        }
    }

    pub fn median(&self) -> Option<f64> {
        match self {
            Cell::Value(s) => Some(s.median),
            _ => None,
        }
    }
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

/// One case of a comparison: a name for progress messages, how many repetitions it
/// takes part in (a case too slow to repeat takes part in the first few only), and
/// the run itself.
pub struct Case<'a> {
    pub name: String,
    pub reps: usize,
    pub run: Box<dyn FnMut() -> Result<Sample> + 'a>,
}

impl<'a> Case<'a> {
    pub fn new(name: impl Into<String>, run: impl FnMut() -> Result<Sample> + 'a) -> Case<'a> {
        Case {
            name: name.into(),
            reps: usize::MAX,
            run: Box::new(run),
        }
    }

    pub fn at_most(mut self, reps: usize) -> Case<'a> {
        self.reps = reps;
        self
    }
}

/// Runs the cases `reps` times, interleaved, and returns their runs in case order.
pub fn interleave(group: &str, reps: usize, cases: &mut [Case<'_>]) -> Vec<Runs> {
    let mut out = vec![Runs::default(); cases.len()];
    for rep in 0..reps {
        for (case, runs) in cases.iter_mut().zip(out.iter_mut()) {
            if rep >= case.reps {
                continue;
            }
            eprint!("bench: {group} [{}/{reps}] {} ... ", rep + 1, case.name);
            match (case.run)() {
                Ok(s) => {
                    eprintln!("{}", show(&s));
                    runs.samples.push(s);
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    runs.errors.push(e.to_string());
                }
            }
        }
    }
    out
}

/// Per repetition, `a − b` of the same metric: the cost a tracer adds over the
/// untraced run of the same repetition.
pub fn paired_difference(a: &Runs, b: &Runs, metric: &str) -> Cell {
    let (va, vb) = (a.values(metric), b.values(metric));
    let base = Stat::of(&vb).map(|s| s.median);
    let diffs: Vec<f64> = va
        .iter()
        .enumerate()
        .filter_map(|(i, x)| vb.get(i).or(base.as_ref()).map(|y| x - y))
        .collect();
    Cell::of(&diffs, a.errors.first().or(b.errors.first()))
}

fn show(s: &Sample) -> String {
    s.iter()
        .map(|(k, v)| format!("{k}={v:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_series() {
        assert_eq!(Stat::of(&[3.0, 1.0, 2.0]).map(|s| s.median), Some(2.0));
        assert_eq!(
            Stat::of(&[4.0, 1.0, 2.0, 3.0]).map(|s| (s.median, s.min, s.max)),
            Some((2.5, 1.0, 4.0))
        );
        assert_eq!(Stat::of(&[]), None);
    }
}
