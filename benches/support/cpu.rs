//! CPU accounting shared by the benchmarks: how much CPU each of our
//! processes used, and how much went to other processes (the 2-core machines
//! these run on are shared; a compile next door skews figures far more than
//! anything in the code under test). Included by each bench with `#[path]`.

#![allow(dead_code)]

/// How busy the machine was with processes other than ours: the 2-core
/// machines this runs on are shared, and a compile next door skews the
/// figures far more than anything in the code under test.
pub struct CpuMeter {
    start: Option<(u64, u64, u64)>,
}

impl CpuMeter {
    pub fn start(ours: &[u32]) -> CpuMeter {
        CpuMeter {
            start: Self::sample(ours),
        }
    }

    /// The share of all CPU time since `start` that other processes used.
    pub fn foreign_share(&self, ours: &[u32]) -> Option<f64> {
        let (busy0, total0, ours0) = self.start?;
        let (busy1, total1, ours1) = Self::sample(ours)?;
        let foreign = (busy1 - busy0).saturating_sub(ours1 - ours0);
        Some(foreign as f64 / (total1 - total0).max(1) as f64)
    }

    /// (busy, total) clock ticks of the whole machine from /proc/stat, and
    /// the ticks the processes `ours` used (all their threads), or None
    /// where /proc is not Linux's.
    fn sample(ours: &[u32]) -> Option<(u64, u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal ...
        let total: u64 = cpu.iter().take(8).sum();
        let busy = total - cpu.get(3)? - cpu.get(4)?;
        let mut ours_ticks = 0;
        for &pid in ours {
            ours_ticks += cpu_ticks(pid)?;
        }
        Some((busy, total, ours_ticks))
    }
}

/// Linux's USER_HZ, the unit of /proc's CPU times: 100 on every
/// architecture this runs on.
pub const CLOCK_TICKS_PER_S: f64 = 100.0;

/// CPU time (user + system, all threads) process `pid` has used so far, in
/// clock ticks; None where /proc is not Linux's.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that ends the command name: utime and stime are
    // the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The 1-minute load average, for the record.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
