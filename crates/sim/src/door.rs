//! The simulator's door: the same trust checks, with verdicts on identical bytes remembered.
//!
//! Thousands of virtual nodes verify the very same bundle and the same statuses; each
//! distinct signature is checked once (ed25519, ~50 µs) and the verdict shared, which is
//! what SPEC allows ("remember signature checks of identical bytes"). Expiry is checked
//! again on every call, since it depends on the time.

use driftless_core::bundle::{Bundle, BundleHash, VerifiedBundle};
use driftless_core::proto::{Door, MemoCheck, SignedStatus, ZoneRow};
use driftless_core::trust::{Ed25519Check, Refusal, SignatureCheck, TrustRoot};
use driftless_core::Timestamp;
use ed25519_dalek::VerifyingKey;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

type Verdict = Result<Arc<VerifiedBundle>, Refusal>;
/// A status (kept alive, so its address stays its own) and its verdict under its own node's
/// key (`node_keys[status.body.node]`, which never changes).
type StatusVerdict = (Arc<SignedStatus<u32>>, bool);
/// A zone row (kept alive likewise), the key it was checked with, the verdict.
type RowVerdict = (Arc<ZoneRow<u32>>, VerifyingKey, bool);

pub struct SimDoor {
    pub trust: TrustRoot,
    pub node_keys: Vec<VerifyingKey>,
    pub check: MemoCheck<Ed25519Check>,
    /// Keyed by the bundle hash and its signatures: a copy with other signatures is checked anew.
    verdicts: RefCell<HashMap<(BundleHash, Vec<u8>), Verdict>>,
    /// Status verdicts per shared value: a status crosses the virtual network as one `Arc`,
    /// received by every member of its zone. The `Arc` is kept, so the address cannot be
    /// reused for other bytes. Only verdicts under the status's own node key are kept, so a
    /// hit reads neither the key (~200 bytes, a cache miss of its own) nor compares it.
    statuses: RefCell<HashMap<usize, StatusVerdict, crate::wire::FastHash>>,
    /// Statuses whose verdict was known when their node signed them (see [`SimDoor::signed`]).
    pub signed_here: std::cell::Cell<u64>,
    /// Row verdicts per shared value, likewise: a row crosses the network as one `Arc` and
    /// every node that takes it checks it.
    rows: RefCell<HashMap<usize, RowVerdict, crate::wire::FastHash>>,
}

impl SimDoor {
    pub fn new(trust: TrustRoot, node_keys: Vec<VerifyingKey>) -> Self {
        SimDoor {
            trust,
            node_keys,
            check: MemoCheck::new(Ed25519Check),
            verdicts: RefCell::new(HashMap::new()),
            statuses: RefCell::new(HashMap::default()),
            signed_here: Default::default(),
            rows: RefCell::new(HashMap::default()),
        }
    }

    /// Node `key` just signed `status` itself: an ed25519 signature made with the key that
    /// checks it always verifies, so the verdict is known without the check (~50 µs, once per
    /// status; at 100,000 nodes over half a million). The rest of what `verify` looks at
    /// (signature length, list sizes) is checked here as it would be there. Statuses that
    /// arrive any other way, or are asked about with another key, are checked as before.
    pub fn signed(&self, status: &Arc<SignedStatus<u32>>, key: VerifyingKey) {
        let ok = status.sig.len() == 64 && status.within_limits();
        let at = Arc::as_ptr(status) as usize;
        if self.own_key(status) == Some(&key) {
            self.statuses.borrow_mut().insert(at, (status.clone(), ok));
        }
        self.signed_here.set(self.signed_here.get() + 1);
    }

    /// The key of the node whose status this is.
    fn own_key(&self, status: &SignedStatus<u32>) -> Option<&VerifyingKey> {
        self.node_keys.get(status.body.node as usize)
    }
}

impl Door<u32> for SimDoor {
    fn trust(&self) -> &TrustRoot {
        &self.trust
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
        let hash = (bundle.hash(), sigs);
        let cached = self.verdicts.borrow().get(&hash).cloned();
        let verdict = match cached {
            Some(v) => v,
            None => {
                let v = self
                    .trust
                    .verify((**bundle).clone(), now, &self.check)
                    .map(Arc::new);
                self.verdicts.borrow_mut().insert(hash, v.clone());
                v
            }
        };
        let v = verdict?;
        let h = v.header();
        if h.expires.plus(self.trust.clock_skew_secs) < now {
            return Err(Refusal::Expired {
                expires: h.expires,
                now,
                skew: self.trust.clock_skew_secs,
            });
        }
        Ok(v)
    }

    fn signatures(&self) -> &dyn SignatureCheck {
        &self.check
    }

    fn node_key(&self, peer: &u32) -> Option<VerifyingKey> {
        self.node_keys.get(*peer as usize).copied()
    }

    fn verify_row(&self, row: &Arc<ZoneRow<u32>>, key: &VerifyingKey) -> bool {
        let at = Arc::as_ptr(row) as usize;
        if let Some((_, k, v)) = self.rows.borrow().get(&at) {
            if k == key {
                return *v;
            }
        }
        let v = row.verify(key, &self.check);
        self.rows.borrow_mut().insert(at, (row.clone(), *key, v));
        v
    }

    fn verify_status(&self, status: &Arc<SignedStatus<u32>>, key: &VerifyingKey) -> bool {
        if self.own_key(status) != Some(key) {
            return status.verify(key, &self.check);
        }
        let at = Arc::as_ptr(status) as usize;
        if let Some((_, v)) = self.statuses.borrow().get(&at) {
            return *v;
        }
        let v = status.verify(key, &self.check);
        self.statuses.borrow_mut().insert(at, (status.clone(), v));
        v
    }

    /// As the trait's, with the key looked up only on a miss of the verdict cache.
    fn check_status(&self, status: &Arc<SignedStatus<u32>>) -> Result<(), &'static str> {
        let Some(key) = self.own_key(status) else {
            return Err("unknown_node");
        };
        let at = Arc::as_ptr(status) as usize;
        let known = self.statuses.borrow().get(&at).map(|(_, v)| *v);
        let ok = match known {
            Some(v) => v,
            None => {
                let v = status.verify(key, &self.check);
                self.statuses.borrow_mut().insert(at, (status.clone(), v));
                v
            }
        };
        if ok {
            Ok(())
        } else {
            Err("bad_status_signature")
        }
    }
}
