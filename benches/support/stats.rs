//! Figures over a bench's rounds, shared by the benches' reports.

// Each bench includes this file and uses only part of it.
#![allow(dead_code)]

/// The median of `values` (NaN when there are none).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The lowest and the highest of `values`.
pub fn range(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// How a figure is read: for latencies lower is better, for throughputs
/// higher is.
#[derive(Clone, Copy, PartialEq)]
pub enum Better {
    Lower,
    Higher,
}

impl Better {
    /// erl_quorum's figure against the BEAM's, so that above 1 always means
    /// erl_quorum is better.
    pub fn ratio(self, beam: f64, ours: f64) -> f64 {
        match self {
            Better::Lower => beam / ours,
            Better::Higher => ours / beam,
        }
    }
}

/// The rounds' ratios of erl_quorum's figures (`ours`) against the BEAM's
/// (`beam`), round by round: their median, lowest and highest.
pub fn ratio_summary(better: Better, beam: &[f64], ours: &[f64]) -> (f64, f64, f64) {
    let ratios: Vec<f64> = beam
        .iter()
        .zip(ours)
        .map(|(b, o)| better.ratio(*b, *o))
        .collect();
    let (lo, hi) = range(&ratios);
    (median(ratios), lo, hi)
}
