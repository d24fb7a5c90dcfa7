//! What atom cache references may add to a connection's input, over its
//! life: a 2-byte reference stands for an atom of up to 1023 bytes, so a
//! peer could otherwise make the node hold 500 times what it sent (the
//! BEAM interns atoms; our decoded terms own each atom's text).
//!
//! A token bucket: every byte received adds [`PER_BYTE`] bytes of credit,
//! up to [`BURST`]; every byte a frame expands to spends one. So the
//! expanded bytes of a connection never exceed `BURST + PER_BYTE x` the
//! bytes the peer sent, whatever it holds back from being consumed, and
//! traffic whose atoms make it at most `PER_BYTE` times larger (anything
//! a BEAM sends but lists of long repeated atoms) never runs short.

/// Credit earned per byte received.
pub(crate) const PER_BYTE: usize = 16;
/// The most credit kept: the largest burst of expansion beyond the rate.
pub(crate) const BURST: usize = 16 << 20;

/// Credit for expansion left to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExpansionBudget {
    credit: usize,
}

impl Default for ExpansionBudget {
    fn default() -> Self {
        ExpansionBudget { credit: BURST }
    }
}

impl ExpansionBudget {
    /// A frame of `input` bytes arrived: the most it may expand to now.
    pub(crate) fn earn(&mut self, input: usize) -> usize {
        self.credit = self
            .credit
            .saturating_add(input.saturating_mul(PER_BYTE))
            .min(BURST.max(input.saturating_mul(PER_BYTE)));
        self.credit
    }

    /// A frame expanded to `output` bytes (at most what [`earn`] allowed).
    ///
    /// [`earn`]: ExpansionBudget::earn
    pub(crate) fn spend(&mut self, output: usize) {
        self.credit = self.credit.saturating_sub(output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_is_bounded_by_the_rate_and_the_burst() {
        let mut b = ExpansionBudget::default();
        // A small frame may use the burst at once.
        assert_eq!(b.earn(100), BURST);
        b.spend(BURST);
        // Then only what it earns.
        assert_eq!(b.earn(100), 100 * PER_BYTE);
        b.spend(100);
        // Unspent credit builds up to the burst, no more.
        assert_eq!(b.earn(BURST), BURST * PER_BYTE);
        b.spend(0);
        assert_eq!(b.earn(1), BURST);
        b.spend(usize::MAX);
        assert_eq!(b.earn(0), 0);
    }
}
