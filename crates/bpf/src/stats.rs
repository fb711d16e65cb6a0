//! The layout of a statistics aggregate (`s <<< v`) and its bucket rules, written once
//! for both sides: `codegen` emits the code that fills one CPU's slot and picks a
//! histogram bucket; `runtime::stats` reads the slots back, merges the CPUs and draws
//! the histograms. The facts follow stap's runtime (`runtime/stat.h`,
//! `stat-common.c`).
//!
//! One CPU's slot is `HEADER_WORDS + buckets` little-endian 64-bit words: count, sum,
//! min, max, then the histogram's buckets. The first `<<<` (count 0) sets min and max
//! to the value.
//!
//! A log histogram has [`LOG_BUCKETS`] buckets: bucket [`LOG_BUCKET_ZERO`] holds 0,
//! bucket `64 + k` holds `[2^(k-1), 2^k)` and bucket `64 - k` holds
//! `(-2^k, -2^(k-1)]`, so `-1` is bucket 63 and `i64::MIN` bucket 0. A linear
//! histogram over `[start, stop)` with step `interval` has `(stop - start) / interval`
//! regular buckets plus an underflow bucket (0) and an overflow bucket (last), at most
//! [`MAX_LINEAR_BUCKETS`] in all.

use crate::script::HistSpec;

/// Word indexes of one CPU's slot.
pub const WORD_COUNT: usize = 0;
pub const WORD_SUM: usize = 1;
pub const WORD_MIN: usize = 2;
pub const WORD_MAX: usize = 3;
/// Words before the buckets: count, sum, min, max.
pub const HEADER_WORDS: usize = 4;
/// The index of the first bucket.
pub const WORD_BUCKETS: usize = HEADER_WORDS;

/// Buckets of a log histogram (stap's `HIST_LOG_BUCKETS`).
pub const LOG_BUCKETS: usize = 128;
/// The log bucket that holds 0 (stap's `HIST_LOG_BUCKET0`).
pub const LOG_BUCKET_ZERO: usize = 64;
/// Most buckets a linear histogram may have, under/overflow included (stap's
/// `STP_MAX_BUCKETS`).
pub const MAX_LINEAR_BUCKETS: usize = 128;

/// The log bucket of `v`: 64 for 0, else 64 ± the number of bits of `|v|`.
pub fn log_bucket(v: i64) -> usize {
    if v == 0 {
        return LOG_BUCKET_ZERO;
    }
    let bits = 64 - v.unsigned_abs().leading_zeros() as usize;
    if v > 0 {
        LOG_BUCKET_ZERO + bits
    } else {
        LOG_BUCKET_ZERO - bits
    }
}

/// Buckets of a linear histogram, under- and overflow included, if the parameters
/// give between 1 and `MAX_LINEAR_BUCKETS - 2` regular buckets (stap's
/// `_stp_stat_calc_buckets`); the regular count otherwise.
pub fn linear_buckets(start: i64, stop: i64, interval: i64) -> Result<usize, i128> {
    if interval == 0 {
        return Err(0);
    }
    let regular = (i128::from(stop) - i128::from(start)) / i128::from(interval);
    let buckets = regular + 2 + 1;
    if (3..=MAX_LINEAR_BUCKETS as i128).contains(&buckets) {
        Ok(buckets as usize)
    } else {
        Err(regular)
    }
}

/// The linear bucket of `v` among `buckets`: 0 below `start`, the last at or above
/// `stop`. Like stap (and 64-bit eBPF arithmetic) `v - start` wraps, and the quotient
/// is unsigned.
pub fn linear_bucket(v: i64, start: i64, interval: i64, buckets: usize) -> usize {
    let d = v.wrapping_sub(start);
    let last = buckets.saturating_sub(1);
    if d < 0 {
        return 0;
    }
    let b = d as u64 / interval.max(1) as u64 + 1;
    if b >= last as u64 { last } else { b as usize }
}

/// Buckets a slot holds for a histogram spec (0 without a histogram). Linear
/// parameters the checker let through but stap would refuse are clamped to the
/// allowed range.
pub fn buckets(h: HistSpec) -> usize {
    match h {
        HistSpec::None => 0,
        HistSpec::Log => LOG_BUCKETS,
        HistSpec::Linear {
            start,
            stop,
            interval,
        } => match linear_buckets(start, stop, interval.max(1)) {
            Ok(n) => n,
            Err(regular) => (regular + 3).clamp(3, MAX_LINEAR_BUCKETS as i128) as usize,
        },
    }
}

/// The bucket `v` goes to in a slot of this spec, if it has a histogram.
pub fn bucket(h: HistSpec, v: i64) -> Option<usize> {
    match h {
        HistSpec::None => None,
        HistSpec::Log => Some(log_bucket(v)),
        HistSpec::Linear {
            start, interval, ..
        } => Some(linear_bucket(v, start, interval, buckets(h))),
    }
}

/// 64-bit words in one CPU's slot.
pub fn slot_words(h: HistSpec) -> usize {
    HEADER_WORDS + buckets(h)
}

/// Bytes in one CPU's slot.
pub fn slot_bytes(h: HistSpec) -> usize {
    8 * slot_words(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_edges_like_stap() {
        assert_eq!(log_bucket(0), 64);
        assert_eq!(log_bucket(1), 65);
        assert_eq!(log_bucket(-1), 63);
        assert_eq!(log_bucket(i64::MAX), 127);
        assert_eq!(log_bucket(i64::MIN), 0);
    }

    #[test]
    fn linear_parameters_and_buckets() {
        assert_eq!(linear_buckets(0, 10, 2), Ok(8));
        assert_eq!(linear_buckets(0, 10, 0), Err(0));
        assert_eq!(linear_buckets(0, 1000, 1), Err(1000));
        let h = HistSpec::Linear {
            start: 0,
            stop: 10,
            interval: 2,
        };
        assert_eq!(slot_bytes(h), 8 * (4 + 8));
        let got: Vec<usize> = [-1, 0, 1, 2, 9, 10, 1 << 40]
            .iter()
            .map(|&v| bucket(h, v).unwrap())
            .collect();
        assert_eq!(got, [0, 1, 1, 2, 5, 6, 7]);
    }
}
