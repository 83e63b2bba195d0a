//! Sources for the [`IdSource`] port: the part of a new cycle id nobody can derive from what
//! it names.
//!
//! Production (Lambda, the CLI's intake, `selfbuild serve`) draws it from the OS; a replayed
//! embedded run (`selfbuild demo`, `selfbuild cycle`) from its scenario, so that running a
//! scenario twice writes the same records.

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::ports::IdSource;

/// The operating system's random numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl IdSource for OsRandom {
    fn suffix(&self) -> u32 {
        // As std's HashMap seeding does: without OS randomness nothing here is safe to run,
        // and getrandom(2) on Linux waits for the pool rather than fail.
        getrandom::u32().expect("the operating system gave no random bytes")
    }
}

/// A replayable stream of suffixes, derived from a seed and a name (a scenario's).
#[derive(Debug)]
pub struct SeededIds {
    key: [u8; 32],
    next: AtomicU64,
}

impl SeededIds {
    /// The stream of `seed` and `name`: the same pair always gives the same suffixes.
    pub fn new(seed: u64, name: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"selfbuild cycle ids\0");
        hash.update(seed.to_be_bytes());
        hash.update(name.as_bytes());
        Self {
            key: hash.finalize().into(),
            next: AtomicU64::new(0),
        }
    }
}

impl IdSource for SeededIds {
    fn suffix(&self) -> u32 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let digest = Sha256::new()
            .chain_update(self.key)
            .chain_update(n.to_be_bytes())
            .finalize();
        u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_and_name_replay_the_same_stream_and_others_differ() {
        let take = |ids: &SeededIds| (0..4).map(|_| ids.suffix()).collect::<Vec<_>>();
        let first = take(&SeededIds::new(7, "timeouts"));
        assert_eq!(first, take(&SeededIds::new(7, "timeouts")));
        assert_ne!(first, take(&SeededIds::new(8, "timeouts")));
        assert_ne!(first, take(&SeededIds::new(7, "throttling")));
        let mut distinct = first.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), first.len(), "{first:?}");
    }

    #[test]
    fn the_os_gives_different_suffixes() {
        // 2^-32 chance of a false failure per pair; three draws make it negligible.
        let draws = [OsRandom.suffix(), OsRandom.suffix(), OsRandom.suffix()];
        assert!(draws[0] != draws[1] || draws[1] != draws[2], "{draws:?}");
    }
}
