//! The kernel's clocks, as BPF programs read them: `bpf_ktime_get_ns` is
//! `CLOCK_MONOTONIC`, so wall-clock time in a probe is that plus an offset user space
//! measures once.

/// `clock_gettime(id)` in nanoseconds.
fn now_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into a live local.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

/// `CLOCK_MONOTONIC` in nanoseconds: what `bpf_ktime_get_ns` returns.
pub fn monotonic_ns() -> i64 {
    now_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME - CLOCK_MONOTONIC`: add it to `bpf_ktime_get_ns` for the wall clock.
/// The wall clock is read between two reads of the monotonic one; a thread preempted
/// between them would put the midpoint milliseconds off (seen on a loaded machine),
/// so the tightest of a few tries is kept.
pub fn realtime_offset_ns() -> i64 {
    let mut best = (i64::MAX, 0);
    for _ in 0..8 {
        let a = now_ns(libc::CLOCK_MONOTONIC);
        let r = now_ns(libc::CLOCK_REALTIME);
        let b = now_ns(libc::CLOCK_MONOTONIC);
        if b - a < best.0 {
            best = (b - a, r - (a + (b - a) / 2));
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_offset_gives_the_wall_clock() {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as i64;
        let derived = super::monotonic_ns() + super::realtime_offset_ns();
        assert!(
            (derived - wall).abs() < 50_000_000,
            "derived {derived} vs wall {wall}"
        );
    }
}
