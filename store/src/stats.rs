//! What an ingest did: counted by the unpack pipeline's writers, summed over stones by
//! ingest. A leaf module, so that `ingest` → `unpack` → `unpack::queue` import one way.

use std::ops::{Add, AddAssign};

/// What an ingest did. For each stone, `written + present` is the number of unique assets
/// its index lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Assets this call placed in the store.
    pub written: u64,
    /// Assets that were already there (or that a concurrent writer placed first).
    pub present: u64,
    /// Bytes of the assets this call placed.
    pub bytes_written: u64,
}

impl Add for IngestStats {
    type Output = IngestStats;

    fn add(self, other: IngestStats) -> IngestStats {
        IngestStats {
            written: self.written + other.written,
            present: self.present + other.present,
            bytes_written: self.bytes_written + other.bytes_written,
        }
    }
}

impl AddAssign for IngestStats {
    fn add_assign(&mut self, other: IngestStats) {
        *self = *self + other;
    }
}
