//! The simulator's door: the same trust checks, with verdicts on identical bytes remembered.
//!
//! Thousands of virtual nodes verify the very same bundle and the same statuses; each
//! distinct signature is checked once (ed25519, ~50 µs) and the verdict shared, which is
//! what SPEC allows ("remember signature checks of identical bytes"). Expiry is checked
//! again on every call, since it depends on the time.
//!
//! The engine runs shards of the fleet on several threads, so the verdicts live at two
//! levels: a [`SharedDoor`] (behind locks, shared by every shard) and a [`DoorCache`] per
//! shard (no lock: most lookups hit there). A [`ShardDoor`] is the two seen as one `Door`.
//! No verdict depends on which shard asked first: a verdict is a function of the bytes and
//! the key, and the count of distinct signatures checked (`distinct_signatures_checked`) is
//! the size of a set of (key, message, signature) digests, whatever the order of insertion.

use driftless_core::bundle::{Bundle, BundleHash, VerifiedBundle};
use driftless_core::proto::{Door, SignedStatus, ZoneRow};
use driftless_core::trust::{Ed25519Check, Refusal, SignatureCheck, TrustRoot};
use driftless_core::Timestamp;
use ed25519_dalek::VerifyingKey;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Verdict = Result<Arc<VerifiedBundle>, Refusal>;
/// A status (kept alive, so its address stays its own) and its verdict under its own node's
/// key (`node_keys[status.body.node]`, which never changes).
type StatusVerdict = (Arc<SignedStatus<u32>>, bool);
/// A zone row (kept alive likewise), the key it was checked with, the verdict.
type RowVerdict = (Arc<ZoneRow<u32>>, VerifyingKey, bool);
type BundleKey = (BundleHash, Vec<u8>);
type ByAddress<V> = HashMap<usize, V, crate::wire::FastHash>;

/// Remembers the verdict on identical (key, message, signature) bytes, shared by threads
/// (core's `MemoCheck` is for one thread). Two threads that miss the same signature at once
/// both check it; the set of digests, and so [`SyncMemo::len`], is the same either way.
pub struct SyncMemo {
    seen: Mutex<HashMap<[u8; 32], bool>>,
}

impl SyncMemo {
    fn new() -> Self {
        SyncMemo {
            seen: Mutex::new(HashMap::new()),
        }
    }
    /// Distinct signatures checked so far.
    pub fn len(&self) -> usize {
        self.seen.lock().expect("memo").len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SignatureCheck for SyncMemo {
    fn check(&self, key: &VerifyingKey, msg_parts: &[&[u8]], sig: &[u8]) -> bool {
        let id = driftless_core::proto::door::memo_id(key, msg_parts, sig);
        if let Some(v) = self.seen.lock().expect("memo").get(&id) {
            return *v;
        }
        // Checked outside the lock: the other threads go on meanwhile.
        let v = Ed25519Check.check(key, msg_parts, sig);
        self.seen.lock().expect("memo").insert(id, v);
        v
    }
}

/// A verdict from this shard's cache, else from the shared table, else `check`ed now, and
/// entered in both when `keep` allows it. `answer` reads a remembered value, None when it does
/// not answer this question (a row's verdict is kept with the key it was checked with);
/// `value` is what is remembered for a verdict.
fn remembered<K, V, R, S>(
    local: &RefCell<HashMap<K, V, S>>,
    shared: &Mutex<HashMap<K, V, S>>,
    key: K,
    answer: impl Fn(&V) -> Option<R>,
    value: impl Fn(&R) -> V,
    check: impl FnOnce() -> R,
    keep: impl Fn(&R) -> bool,
) -> R
where
    K: std::hash::Hash + Eq + Clone,
    S: std::hash::BuildHasher,
{
    if let Some(r) = local.borrow().get(&key).and_then(&answer) {
        return r;
    }
    let found = shared.lock().expect("door").get(&key).and_then(&answer);
    let r = match found {
        Some(r) => r,
        None => {
            let r = check();
            if keep(&r) {
                shared.lock().expect("door").insert(key.clone(), value(&r));
            }
            r
        }
    };
    if keep(&r) {
        local.borrow_mut().insert(key, value(&r));
    }
    r
}

/// The verdicts every shard shares.
pub struct SharedDoor {
    pub trust: TrustRoot,
    pub node_keys: Vec<VerifyingKey>,
    pub check: SyncMemo,
    /// Keyed by the bundle hash and its signatures: a copy with other signatures is checked anew.
    verdicts: Mutex<HashMap<BundleKey, Verdict>>,
    /// Status verdicts per shared value: a status crosses the virtual network as one `Arc`,
    /// received by every member of its zone. The `Arc` is kept, so the address cannot be
    /// reused for other bytes. Only verdicts under the status's own node key are kept, so a
    /// hit reads neither the key (~200 bytes, a cache miss of its own) nor compares it.
    statuses: Mutex<ByAddress<StatusVerdict>>,
    /// Row verdicts per shared value, likewise: a row crosses the network as one `Arc` and
    /// every node that takes it checks it.
    rows: Mutex<ByAddress<RowVerdict>>,
    /// Statuses whose verdict was known when their node signed them (see [`ShardDoor::signed`]).
    signed_here: AtomicU64,
}

impl SharedDoor {
    pub fn new(trust: TrustRoot, node_keys: Vec<VerifyingKey>) -> Self {
        SharedDoor {
            trust,
            node_keys,
            check: SyncMemo::new(),
            verdicts: Mutex::new(HashMap::new()),
            statuses: Mutex::new(HashMap::default()),
            rows: Mutex::new(HashMap::default()),
            signed_here: AtomicU64::new(0),
        }
    }

    pub fn statuses_signed(&self) -> u64 {
        self.signed_here.load(Ordering::Relaxed)
    }

    /// The key of the node whose status this is.
    fn own_key(&self, status: &SignedStatus<u32>) -> Option<&VerifyingKey> {
        self.node_keys.get(status.body.node as usize)
    }
}

/// One shard's verdicts, looked up before the shared ones (no lock).
#[derive(Default)]
pub struct DoorCache {
    verdicts: RefCell<HashMap<BundleKey, Verdict>>,
    statuses: RefCell<ByAddress<StatusVerdict>>,
    rows: RefCell<ByAddress<RowVerdict>>,
}

/// The door a shard's nodes see: its own verdicts, then the shared ones.
pub struct ShardDoor<'d> {
    pub shared: &'d SharedDoor,
    pub cache: &'d DoorCache,
}

impl ShardDoor<'_> {
    /// Node `key` just signed `status` itself: an ed25519 signature made with the key that
    /// checks it always verifies, so the verdict is known without the check (~50 µs, once per
    /// status; at 100,000 nodes over half a million). The rest of what `verify` looks at
    /// (signature length, list sizes) is checked here as it would be there. Statuses that
    /// arrive any other way, or are asked about with another key, are checked as before.
    /// The node signs before it sends, and a message takes at least the minimum latency to
    /// reach another shard, so every other shard finds the verdict in the shared table.
    pub fn signed(&self, status: &Arc<SignedStatus<u32>>, key: VerifyingKey) {
        let ok = status.sig.len() == 64 && status.within_limits();
        let at = Arc::as_ptr(status) as usize;
        if self.shared.own_key(status) == Some(&key) {
            self.shared
                .statuses
                .lock()
                .expect("statuses")
                .insert(at, (status.clone(), ok));
            self.cache
                .statuses
                .borrow_mut()
                .insert(at, (status.clone(), ok));
        }
        self.shared.signed_here.fetch_add(1, Ordering::Relaxed);
    }

    /// The verdict on `status` under its own node's `key`: this shard's, the shared one, or
    /// checked now (and entered in both).
    fn own_status_verdict(&self, status: &Arc<SignedStatus<u32>>, key: &VerifyingKey) -> bool {
        remembered(
            &self.cache.statuses,
            &self.shared.statuses,
            Arc::as_ptr(status) as usize,
            |(_, v)| Some(*v),
            |v| (status.clone(), *v),
            || status.verify(key, &self.shared.check),
            |_| true,
        )
    }
}

impl Door<u32> for ShardDoor<'_> {
    fn trust(&self) -> &TrustRoot {
        &self.shared.trust
    }
    /// Remembers the verdict per bundle (hash and signatures); expiry re-checked per call.
    fn verify_bundle(
        &self,
        bundle: &Arc<Bundle>,
        now: Timestamp,
    ) -> Result<Arc<VerifiedBundle>, Refusal> {
        let mut sigs = Vec::new();
        for s in bundle.signatures() {
            sigs.extend_from_slice(&s.key);
            sigs.extend_from_slice(&s.sig);
        }
        // Expiry depends on the asker's time (and shards' clocks differ within a window):
        // only verdicts on the bytes are remembered.
        let verdict = remembered(
            &self.cache.verdicts,
            &self.shared.verdicts,
            (bundle.hash(), sigs),
            |v| Some(v.clone()),
            |v| v.clone(),
            || {
                self.shared
                    .trust
                    .verify((**bundle).clone(), now, &self.shared.check)
                    .map(Arc::new)
            },
            |v| !matches!(v, Err(Refusal::Expired { .. })),
        );
        let v = verdict?;
        let h = v.header();
        if h.expires.plus(self.shared.trust.clock_skew_secs) < now {
            return Err(Refusal::Expired {
                expires: h.expires,
                now,
                skew: self.shared.trust.clock_skew_secs,
            });
        }
        Ok(v)
    }

    fn signatures(&self) -> &dyn SignatureCheck {
        &self.shared.check
    }

    fn node_key(&self, peer: &u32) -> Option<VerifyingKey> {
        self.shared.node_keys.get(*peer as usize).copied()
    }

    fn verify_row(&self, row: &Arc<ZoneRow<u32>>, key: &VerifyingKey) -> bool {
        remembered(
            &self.cache.rows,
            &self.shared.rows,
            Arc::as_ptr(row) as usize,
            |(_, k, v)| (k == key).then_some(*v),
            |v| (row.clone(), *key, *v),
            || row.verify(key, &self.shared.check),
            |_| true,
        )
    }

    fn verify_status(&self, status: &Arc<SignedStatus<u32>>, key: &VerifyingKey) -> bool {
        if self.shared.own_key(status) != Some(key) {
            return status.verify(key, &self.shared.check);
        }
        self.own_status_verdict(status, key)
    }

    /// As the trait's, with the key looked up only on a miss of the verdict caches.
    fn check_status(&self, status: &Arc<SignedStatus<u32>>) -> Result<(), &'static str> {
        let Some(key) = self.shared.own_key(status) else {
            return Err("unknown_node");
        };
        if self.own_status_verdict(status, key) {
            Ok(())
        } else {
            Err("bad_status_signature")
        }
    }
}
