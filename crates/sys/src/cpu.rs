//! Which CPUs the kernel may ever bring up: per-CPU maps hold one value for each
//! possible CPU, whether online or not, so their lookups need this count.

use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Error, Result};

const POSSIBLE: &str = "/sys/devices/system/cpu/possible";

/// The number of possible CPUs (the highest listed index plus one), read once.
pub fn possible_cpus() -> Result<usize> {
    static COUNT: OnceLock<usize> = OnceLock::new();
    if let Some(n) = COUNT.get() {
        return Ok(*n);
    }
    let text = std::fs::read_to_string(POSSIBLE).map_err(|source| Error::File {
        path: Path::new(POSSIBLE).into(),
        source,
    })?;
    let n = parse_cpu_list(&text).ok_or_else(|| Error::Parse {
        path: Path::new(POSSIBLE).into(),
        text: text.trim().to_string(),
    })?;
    Ok(*COUNT.get_or_init(|| n))
}

/// Parses a kernel CPU list (`0-3,8,10-11`) into the count of slots a per-CPU map
/// has: the highest CPU plus one.
pub fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut highest = None;
    for part in text.trim().split(',') {
        let last = match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (lo.parse::<usize>().ok()?, hi.parse::<usize>().ok()?);
                if lo > hi {
                    return None;
                }
                hi
            }
            None => part.parse::<usize>().ok()?,
        };
        highest = Some(highest.map_or(last, |h: usize| h.max(last)));
    }
    highest.map(|h| h + 1)
}

/// The size of a memory page.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf only reads a constant of the process.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(12));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn counts_at_least_the_online_cpus() {
        let online = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        assert!(possible_cpus().unwrap() >= online);
    }
}
