//! Wall-clock instants as plain numbers, handed in by the caller (the core never reads a clock).

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, UTC. The caller reads the clock; the core only compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn secs(self) -> u64 {
        self.0
    }
    pub fn plus(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs))
    }
    pub fn minus(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_sub(secs))
    }
}
