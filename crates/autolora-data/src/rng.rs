//! Deterministic seeded shuffling.
//!
//! The permutation is Fisher-Yates driven by ChaCha8's raw 64-bit output, whose stream is
//! fixed by the ChaCha specification. `rand`'s own `shuffle` does not promise the same order
//! across crate versions; writing the few lines here keeps a split or an epoch order identical
//! for a given seed whatever dependency updates come.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Shuffles `items` in place; the same seed always gives the same order.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        // Multiply-shift maps 64 random bits onto 0..=i; its bias (< i / 2^64) is negligible.
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        items.swap(i, j);
    }
}

/// A seeded permutation of `0..n`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, seed);
    order
}

/// The workspace's one seed scheme: the seed of draw `index` (a step, an epoch, a class) of
/// `stream` in a run seeded with `seed`, by chained SplitMix64 mixing, so nearby inputs give
/// unrelated outputs. `autolora-core` (which cannot depend on this crate) seeds libtorch with
/// the same function shifted right by one bit (`autolora_core::bilevel::derive_seed`); a test
/// in the CLI checks that the two agree.
pub fn derive_seed(seed: u64, index: u64, stream: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    mix(mix(mix(seed) ^ index) ^ stream)
}

/// Every random stream of a run, in one list, so no two uses share draws. Streams 1 and 2
/// are drawn by the search engine of `autolora-core` (its `TRAIN_STREAM` and `VAL_STREAM`).
pub mod stream {
    /// Dropout masks of the search's evaluations on training batches (core's engine).
    pub const SEARCH_TRAIN_DROPOUT: u64 = 1;
    /// Dropout masks of the search's evaluations on validation batches (core's engine).
    pub const SEARCH_VAL_DROPOUT: u64 = 2;
    /// Dropout masks of fixed-rank training; index = step.
    pub const TRAIN_DROPOUT: u64 = 3;
    /// The subset kept by a size limit; index = the split's role.
    pub const SUBSET: u64 = 4;
    /// The search's train/validation split of the training set.
    pub const SEARCH_SPLIT: u64 = 5;
    /// Batch order of the search's training part; index = epoch.
    pub const SEARCH_TRAIN_BATCHES: u64 = 6;
    /// Batch order of the search's validation part; index = epoch.
    pub const SEARCH_VAL_BATCHES: u64 = 7;
    /// Batch order of fixed-rank training; index = epoch.
    pub const TRAIN_BATCHES: u64 = 8;
    /// Initial values of the LoRA factors.
    pub const ADAPTER_INIT: u64 = 9;
    /// Initial values of a new task head.
    pub const HEAD_INIT: u64 = 10;
    /// A random rank allocation (the experiment's control arm); index = the allocation.
    pub const RANDOM_ALLOCATION: u64 = 11;
    /// The planted task's factors `U`, `V`; index = the module's position in the model.
    pub const PLANTED_FACTORS: u64 = 12;
    /// The planted task's shuffled control: the permutation of targets; index = the split.
    pub const PLANTED_SHUFFLE: u64 = 13;
    /// The development set held out of a user's training file that has no dev file beside it.
    pub const DEV_SPLIT: u64 = 14;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_seeded_and_complete() {
        let a = permutation(100, 7);
        assert_eq!(a, permutation(100, 7));
        assert_ne!(a, permutation(100, 8));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(
            a, sorted,
            "a permutation of 100 items should move something"
        );
    }

    #[test]
    fn derived_seeds_differ() {
        assert_ne!(derive_seed(1, 0, 0), derive_seed(1, 0, 1));
        assert_ne!(derive_seed(1, 0, 0), derive_seed(1, 1, 0));
        assert_ne!(derive_seed(1, 0, 0), derive_seed(2, 0, 0));
    }
}
