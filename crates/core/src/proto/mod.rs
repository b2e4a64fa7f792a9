//! The gossip protocol as a state machine: events and the current time in, actions out.
//!
//! [`Node`] is the whole protocol one agent runs: HyParView-like membership
//! ([`membership`]), announcement flooding with fetch-by-hash and push-pull anti-entropy of
//! digests ([`node`]), and the fleet view of signed statuses and zone summaries ([`fleet`]).
//! It owns no socket and reads no clock: the caller hands in [`Now`], a random source and a
//! [`Door`] (the trust root plus a signature checker), and carries out the [`Action`]s it
//! gets back. The agent drives it with its network runtime; the simulator drives thousands of
//! copies on a virtual network. Nothing here is written twice.

pub mod config;
pub mod door;
pub mod fleet;
pub mod membership;
pub mod message;
pub mod node;
pub mod rollout;
pub mod status;
pub mod tree;

#[cfg(test)]
mod tests;

pub use config::Config;
pub use door::{Door, MemoCheck, PlainDoor};
pub use fleet::{ChannelCounts, FleetView, ZoneRow};
pub use message::{Announcement, Digest, Message, WireBundle};
pub use node::{Action, ApplyReason, Event, Node, Persisted, RolloutState};
pub use status::{ApplyState, ChannelStatus, SignedStatus, StatusBody};

use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use std::hash::Hash;

/// The current time as the caller sees it. `mono_ms` only ever goes forward (protocol timers);
/// `wall_ms` is Unix time in milliseconds (expiry, status age), which may jump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono_ms: u64,
    pub wall_ms: u64,
}

impl Now {
    pub fn wall(&self) -> crate::Timestamp {
        crate::Timestamp(self.wall_ms / 1000)
    }
}

/// What a node is called on the network: a libp2p peer id in the agent, a number in the
/// simulator. `stable_hash` places a node in its fleet-view zone and must be the same on
/// every node and every build.
pub trait PeerId: Clone + Eq + Ord + Hash + Debug + Serialize + DeserializeOwned + 'static {
    fn stable_hash(&self) -> u64;
}

impl PeerId for u32 {
    fn stable_hash(&self) -> u64 {
        splitmix64(*self as u64)
    }
}

impl PeerId for [u8; 32] {
    fn stable_hash(&self) -> u64 {
        u64::from_le_bytes(self[..8].try_into().expect("8 bytes"))
    }
}

/// A fixed, well-mixed 64-bit hash (SplitMix64's finaliser).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform index below `n` (n > 0) from the caller's random source.
pub(crate) fn below(rng: &mut dyn rand_core::RngCore, n: usize) -> usize {
    debug_assert!(n > 0);
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// Pick up to `k` distinct items of `items` at random (partial Fisher–Yates on indices).
pub(crate) fn sample<T: Clone>(rng: &mut dyn rand_core::RngCore, items: &[T], k: usize) -> Vec<T> {
    let n = items.len();
    if k >= n {
        return items.to_vec();
    }
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + below(rng, n - i);
        idx.swap(i, j);
    }
    idx[..k].iter().map(|&i| items[i].clone()).collect()
}
