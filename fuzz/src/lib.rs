//! What every fuzz target shares: the agent's peer-id shape, an allocation meter and the
//! invariants a decoder of untrusted bytes must keep; [`samples`] builds the seed corpus.

pub mod samples;

use driftless_core::proto::PeerId;
use driftless_core::trust::SignatureCheck;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The agent's peer id as it travels on the wire: a node key plus the address it listens on.
/// It has the field layout of `AgentPeer` (src/agent/peer.rs, in the binary crate, which the
/// fuzz crate cannot depend on), so `Message<WirePeer>` decodes exactly the bytes the agent
/// decodes. Unlike `AgentPeer`, equality covers the address too, so round trips are exact.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WirePeer {
    pub key: [u8; 32],
    pub addr: Option<String>,
}

impl PeerId for WirePeer {
    fn stable_hash(&self) -> u64 {
        self.key.stable_hash()
    }
}

/// A signature checker that accepts everything, so the fuzzer reaches what a trust root checks
/// after the signatures (content hash, definition, channel) without forging ed25519.
pub struct AcceptAll;

impl SignatureCheck for AcceptAll {
    fn check(&self, _: &VerifyingKey, _: &[&[u8]], _: &[u8]) -> bool {
        true
    }
}

/// Counts live heap bytes and their peak, so a target can assert that decoding `n` bytes never
/// holds more than [`allocation_cap`]`(n)` (libFuzzer's `-malloc_limit_mb` only sees single
/// allocations, not many medium ones).
pub struct Meter;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are only
// bookkeeping.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static METER: Meter = Meter;

/// Run `f` and return its result with the most heap it held at once beyond what was live
/// before (its result included).
pub fn peak_heap<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let r = f();
    (r, PEAK.load(Relaxed).saturating_sub(base))
}

/// The most heap decoding `input_len` bytes may take: a decoded structure is a small multiple
/// of its encoding (an empty `Vec` is 24 bytes in memory and 1 byte on the wire), and serde
/// reserves at most 1 MiB ahead for each sequence it reads, of which a message nests a few.
/// A decoder over this cap lets a peer multiply the memory it makes a node spend.
pub fn allocation_cap(input_len: usize) -> usize {
    64 * input_len + (8 << 20)
}

/// Decode with the meter running and fail the run when the decoder took more than
/// [`allocation_cap`].
pub fn within_cap<R>(what: &str, input_len: usize, f: impl FnOnce() -> R) -> R {
    within(what, input_len, allocation_cap(input_len), f)
}

/// Decode with the meter running and fail the run when the decoder held more than `cap` bytes.
pub fn within<R>(what: &str, input_len: usize, cap: usize, f: impl FnOnce() -> R) -> R {
    let (r, peak) = peak_heap(f);
    assert!(
        peak <= cap,
        "decoding {input_len} bytes as a {what} held {peak} bytes of heap at once (cap {cap})"
    );
    r
}
