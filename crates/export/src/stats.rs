//! The language's statistics aggregates (`x <<< v`, read as [`runtime::stats::Stat`])
//! as exported histograms, bucket for bucket. The values are integers, so each of
//! stap's half-open buckets is exactly an interval closed above, which is what both
//! Prometheus' `le` and OTLP's explicit bounds mean:
//!
//! - `@hist_log`: bucket 64 holds 0 (bound 0); bucket `64+k` holds `[2^(k-1), 2^k)`,
//!   so its bound is `2^k - 1`; bucket `64-k` holds `(-2^k, -2^(k-1)]`, bound
//!   `-2^(k-1)`. The bounds run from the lowest non-empty bucket (or 0, when every
//!   value is positive, so that the layout only ever grows at the top) to the highest.
//! - `@hist_linear(x, start, stop, step)`: the underflow bucket's bound is `start-1`,
//!   regular bucket `i`'s `start + i*step - 1`; the overflow bucket is `+Inf`'s.
//! - No histogram: `@count` and `@sum` with `@min`/`@max`, and no buckets (`@avg` is
//!   `sum/count`).
//!
//! `scale` converts the script's integers to the exported unit (1e-9 for
//! nanoseconds exported as seconds).
//!
//! A statistic may bucket each value divided by a `bin` while its sum, min and max
//! keep the values themselves (funclatency's `--us` and `--ms`: nanoseconds summed,
//! microseconds bucketed). Division rounds toward zero, so a bucket whose bound is
//! `u` in quotients holds the values up to `(u+1)*bin - 1` when `u >= 0` and up to
//! `u*bin` when `u < 0`; [`binned_histogram`] exports those bounds, in the values'
//! own unit, so that `le` still means "at most".

use runtime::stats::{Hist, LOG_BUCKET_ZERO, LOG_BUCKETS, Stat, log_bucket_value};

use crate::model::Histogram;

/// The inclusive upper bound of log bucket `b`, in the script's integers.
fn log_upper(b: usize) -> i64 {
    if b <= LOG_BUCKET_ZERO {
        log_bucket_value(b)
    } else if b + 1 < LOG_BUCKETS {
        log_bucket_value(b + 1) - 1
    } else {
        i64::MAX
    }
}

/// `stat` (all CPUs merged) as a histogram in the exported unit.
pub fn histogram(stat: &Stat, hist: &Hist, scale: f64) -> Histogram {
    binned_histogram(stat, hist, 1, scale)
}

/// `stat`, whose buckets counted each value divided by `bin` (its sum, min and max
/// the values themselves), as a histogram in the exported unit.
pub fn binned_histogram(stat: &Stat, hist: &Hist, bin: i64, scale: f64) -> Histogram {
    let s = scaled(scale);
    let bin = bin.max(1) as f64;
    // A bucket's bound in quotients, as the bound of the values it holds.
    let bound = |u: i64| {
        let u = u as f64;
        s(if u >= 0.0 {
            (u + 1.0) * bin - 1.0
        } else {
            u * bin
        })
    };
    let (bounds, counts) = match hist {
        Hist::None => (Vec::new(), vec![clamp(stat.count)]),
        Hist::Log => log_layout(&stat.buckets, &bound),
        Hist::Linear(l) => {
            let n = l.buckets();
            let bounds: Vec<f64> = (0..n - 1)
                .map(|i| {
                    bound(
                        l.start()
                            .wrapping_add((i as i64).wrapping_mul(l.interval()))
                            - 1,
                    )
                })
                .collect();
            if bounds.windows(2).all(|w| w[0] < w[1]) && stat.buckets.len() == n {
                (bounds, stat.buckets.iter().map(|c| clamp(*c)).collect())
            } else {
                (Vec::new(), vec![clamp(stat.count)])
            }
        }
    };
    let seen = stat.count > 0;
    Histogram {
        bounds,
        counts,
        count: clamp(stat.count),
        sum: s(stat.sum as f64),
        min: seen.then(|| s(stat.min as f64)),
        max: seen.then(|| s(stat.max as f64)),
    }
}

/// Multiplies by `scale`, or divides by its inverse where that is a whole number
/// (1e-9: nanoseconds to seconds), which rounds once: 1999 ns is `1.999e-06`, the
/// number a reader of `le` expects, not `1.9990000000000003e-06`.
fn scaled(scale: f64) -> impl Fn(f64) -> f64 {
    let per = (1.0 / scale).round();
    let divide = per > 1.0 && per * scale == 1.0;
    move |v| if divide { v / per } else { v * scale }
}

fn log_layout(buckets: &[i64], s: &impl Fn(i64) -> f64) -> (Vec<f64>, Vec<u64>) {
    let nonzero = |b: &&i64| **b != 0;
    let first = buckets
        .iter()
        .position(|b| nonzero(&b))
        .map_or(LOG_BUCKET_ZERO, |f| f.min(LOG_BUCKET_ZERO));
    let last = buckets
        .iter()
        .rposition(|b| nonzero(&b))
        .unwrap_or(LOG_BUCKET_ZERO)
        .max(LOG_BUCKET_ZERO);
    let bounds = (first..=last).map(|b| s(log_upper(b))).collect();
    let mut counts: Vec<u64> = (first..=last)
        .map(|b| clamp(buckets.get(b).copied().unwrap_or(0)))
        .collect();
    counts.push(0);
    (bounds, counts)
}

/// Kernel counters are `i64` words that only grow; a negative one is a wrapped count.
fn clamp(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::stats::Linear;

    fn stat_of(hist: &Hist, values: &[i64]) -> Stat {
        let mut s = Stat::new(hist);
        for v in values {
            s.add(hist, *v);
        }
        s
    }

    /// Every value lands in the exported bucket whose bound is the first one at or
    /// above it, exactly as a Prometheus `le` reader counts it.
    fn check_against_values(h: &Histogram, values: &[i64], scale: f64) {
        let mut want = vec![0u64; h.bounds.len() + 1];
        for v in values {
            let x = scaled(scale)(*v as f64);
            want[h.bounds.partition_point(|b| *b < x)] += 1;
        }
        assert_eq!(h.counts, want, "bounds {:?}", h.bounds);
    }

    #[test]
    fn log_buckets_keep_every_value_in_its_le_bucket() {
        let values = [0, 1, 2, 3, 4, 7, 8, 1023, 1024, 1025, 5_000_000];
        let st = stat_of(&Hist::Log, &values);
        let h = histogram(&st, &Hist::Log, 1.0);
        check_against_values(&h, &values, 1.0);
        assert_eq!(&h.bounds[..5], &[0.0, 1.0, 3.0, 7.0, 15.0]);
        assert_eq!(h.count, values.len() as u64);
        assert_eq!(h.sum, values.iter().sum::<i64>() as f64);
        assert_eq!((h.min, h.max), (Some(0.0), Some(5_000_000.0)));
    }

    #[test]
    fn negative_log_values_get_their_own_bounds() {
        let values = [-5, -1, 0, 3];
        let st = stat_of(&Hist::Log, &values);
        let h = histogram(&st, &Hist::Log, 1.0);
        check_against_values(&h, &values, 1.0);
        assert_eq!(h.bounds, [-4.0, -2.0, -1.0, 0.0, 1.0, 3.0]);
    }

    #[test]
    fn linear_buckets_map_underflow_and_overflow() {
        let lin = Hist::Linear(Linear::new(0, 100, 10).unwrap());
        let values = [-3, 0, 9, 10, 55, 99, 100, 1000];
        let st = stat_of(&lin, &values);
        let h = histogram(&st, &lin, 1.0);
        check_against_values(&h, &values, 1.0);
        // stap keeps a bucket for `stop` itself: [100, 110) here.
        assert_eq!(h.bounds.len(), 12);
        assert_eq!(h.bounds[0], -1.0);
        assert_eq!(h.bounds[11], 109.0);
        assert_eq!(*h.counts.last().unwrap(), 1, "1000 overflows");
    }

    #[test]
    fn nanoseconds_scale_to_seconds() {
        let values = [1_000, 2_000_000];
        let st = stat_of(&Hist::Log, &values);
        let h = histogram(&st, &Hist::Log, 1e-9);
        check_against_values(&h, &values, 1e-9);
        assert!((h.sum - 0.002001).abs() < 1e-12);
    }

    /// funclatency's `--us`: nanoseconds summed, microseconds bucketed. Each
    /// nanosecond value is still at or below the bound of its bucket, and above the
    /// one before.
    #[test]
    fn binned_buckets_bound_the_values_themselves() {
        let values = [0, 999, 1_000, 1_999, 2_000, 3_999, 4_000, 5_000_000];
        let mut st = stat_of(&Hist::Log, &values.map(|v| v / 1_000));
        st.sum = values.iter().sum();
        st.min = 0;
        st.max = 5_000_000;
        let h = binned_histogram(&st, &Hist::Log, 1_000, 1e-9);
        check_against_values(&h, &values, 1e-9);
        assert_eq!(&h.bounds[..3], &[999e-9, 1_999e-9, 3_999e-9]);
        assert!((h.sum - 5.013997e-3).abs() < 1e-12);
        assert_eq!(h.max, Some(5e-3));
    }

    #[test]
    fn a_plain_aggregate_is_count_sum_min_max() {
        let st = stat_of(&Hist::None, &[4, 8, 12]);
        let h = histogram(&st, &Hist::None, 1.0);
        assert!(h.bounds.is_empty());
        assert_eq!(h.counts, [3]);
        assert_eq!(
            (h.count, h.sum, h.min, h.max),
            (3, 24.0, Some(4.0), Some(12.0))
        );
        let empty = histogram(&Stat::new(&Hist::None), &Hist::None, 1.0);
        assert_eq!((empty.count, empty.min), (0, None));
    }
}
