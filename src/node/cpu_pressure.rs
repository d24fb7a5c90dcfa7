//! Whether the machine has a core to spare for a reader that polls its
//! socket instead of sleeping (see `read_pacing`). Spinning while every core
//! is wanted takes CPU from the very peer whose answer we wait for, so
//! readers spin only while no more threads are runnable than there are
//! cores. The count comes from `/proc/loadavg`, read at most once a
//! millisecond per OS process (about 6 µs); where it cannot be read, a
//! core is assumed spare.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

const SAMPLE_EVERY_NS: u64 = 1_000_000;

static SAMPLED_AT_NS: AtomicU64 = AtomicU64::new(0);
static SPARE: AtomicBool = AtomicBool::new(true);

/// Whether a core was spare at the last sample (taking a new one when due).
pub(super) fn spare_core() -> bool {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let now = EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + SAMPLE_EVERY_NS;
    let at = SAMPLED_AT_NS.load(Relaxed);
    // One thread samples; the others use the value it leaves.
    if now.saturating_sub(at) >= SAMPLE_EVERY_NS
        && SAMPLED_AT_NS
            .compare_exchange(at, now, Relaxed, Relaxed)
            .is_ok()
    {
        SPARE.store(sample().unwrap_or(true), Relaxed);
    }
    SPARE.load(Relaxed)
}

/// `/proc/loadavg`'s fourth field is `runnable/total` threads, the caller
/// among the runnable.
fn sample() -> Option<bool> {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut text = String::with_capacity(64);
    std::fs::File::open("/proc/loadavg")
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    Some(runnable(&text)? <= cores)
}

fn runnable(loadavg: &str) -> Option<usize> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_runnable_count() {
        assert_eq!(super::runnable("1.50 1.44 1.42 3/80 345\n"), Some(3));
        assert_eq!(super::runnable("garbage"), None);
    }
}
