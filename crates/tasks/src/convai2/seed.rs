//! Derivation of independent random streams from the caller's seed.

use rand::SeedableRng;
use rand::rngs::StdRng;

/// A generator for one purpose and one item, e.g. the candidate shuffle of episode 12, turn 3.
///
/// Keying the stream by the item instead of drawing from one shared generator makes each item's randomness
/// independent of which other items are built, and in what order.
pub(crate) fn rng_for(seed: u64, purpose: u64, a: u64, b: u64) -> StdRng {
    let mut h = splitmix(seed ^ splitmix(purpose));
    h = splitmix(h ^ a);
    h = splitmix(h ^ b.rotate_left(32));
    StdRng::seed_from_u64(h)
}

/// Stream tags, so that e.g. the shuffle and the negative sampling of one example are unrelated.
pub(crate) mod purpose {
    pub const CANDIDATE_SHUFFLE: u64 = 1;
    pub const NEGATIVES: u64 = 2;
    pub const TIE_BREAK: u64 = 3;
}

/// SplitMix64 finaliser: a bijective mixer, so distinct inputs never collide.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
