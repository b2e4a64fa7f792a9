//! Who may speak for the fleet, as the agent enforces it.
//!
//! - [`AgentDoor`] is the protocol core's door: bundles against the current trust root's
//!   release keys, statuses against their node key *and*, in an admitted fleet, the node's
//!   certificate carried with the status (k admission keys, this fleet, not expired, not
//!   revoked, labels equal to the certificate's).
//! - [`Admission`] is the connection side: every connection starts with a `Hello` carrying the
//!   node's certificate; a peer whose certificate does not verify gets no conversation (the
//!   connection is closed, the refusal counted by reason, the peer kept out for a while), and
//!   a peer that never says hello is closed after [`HELLO_TIMEOUT`].
//! - The current trust root (a newer signed root rotates it) and revocation list are kept in
//!   the state directory, so both survive restarts.

use super::peer::AgentPeer;
use crate::fsutil::write_atomic;
use crate::state::StateDir;
use driftless_core::admission::{
    SignedCertificate, SignedRevocationList, CERTIFICATE_WARNING_SECS, REVOCATIONS_MAGIC,
};
use driftless_core::proto::{Door, SignedStatus, ZoneRow};
use driftless_core::root::{SignedRoot, ROOT_MAGIC};
use driftless_core::signed::Rejection;
use driftless_core::time::Timestamp;
use driftless_core::trust::{Ed25519Check, SignatureCheck, TrustRoot};
use driftless_core::Labels;
use ed25519_dalek::VerifyingKey;
use libp2p::PeerId;
use sha2::{Digest as _, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A peer that has not shown a valid certificate this long after connecting is disconnected.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer refused for a bad certificate or hostile messages is kept out this long.
pub const BAN: Duration = Duration::from_secs(60);
/// Frames held for a peer until its hello arrives, at most.
const MAX_QUEUED: usize = 64;
/// Certificate verdicts remembered (by certificate hash); the table is cleared when full.
const MAX_CACHED: usize = 4096;

/// What a verified certificate grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub node_key: [u8; 32],
    pub labels: Labels,
    pub expires: Timestamp,
}

impl Grant {
    /// Expiring within the window `driftless admit` and `verify` warn about
    /// ([`CERTIFICATE_WARNING_SECS`], the core's): time to re-admit the node.
    pub fn near_expiry(&self, now: Timestamp) -> bool {
        self.expires <= now.plus(CERTIFICATE_WARNING_SECS)
    }
}

/// The door of an agent: the current trust root, the revoked node keys, and a cache of
/// certificate verdicts (thousands of statuses carry the same few certificates).
pub struct AgentDoor {
    pub trust: TrustRoot,
    pub revoked: BTreeSet<[u8; 32]>,
    check: Ed25519Check,
    /// Wall clock of the event being handled, for certificate expiry.
    pub now: Cell<Timestamp>,
    cache: RefCell<HashMap<[u8; 32], Result<Grant, &'static str>>>,
    /// Node keys already decompressed (a curve point square root each, paid again for every
    /// status checked without this).
    keys: RefCell<HashMap<[u8; 32], VerifyingKey>>,
}

/// At most this many node keys are kept decompressed; past it the cache starts over.
const KEY_CACHE: usize = 4096;

impl AgentDoor {
    pub fn new(trust: TrustRoot, revoked: BTreeSet<[u8; 32]>) -> Self {
        AgentDoor {
            trust,
            revoked,
            check: Ed25519Check,
            now: Cell::new(Timestamp(0)),
            cache: RefCell::new(HashMap::new()),
            keys: RefCell::new(HashMap::new()),
        }
    }

    pub fn is_open(&self) -> bool {
        self.trust.is_open()
    }

    /// Replace the trust root (rotation) or the revocation list: every verdict is re-taken.
    pub fn set_trust(&mut self, trust: TrustRoot) {
        self.trust = trust;
        self.cache.borrow_mut().clear();
    }
    pub fn set_revoked(&mut self, revoked: BTreeSet<[u8; 32]>) {
        self.revoked = revoked;
        self.cache.borrow_mut().clear();
    }

    /// Verify certificate bytes: (what it grants) or (reason label, detail).
    pub fn check_cert(&self, bytes: &[u8]) -> Result<Grant, (&'static str, String)> {
        let cert = SignedCertificate::decode(bytes)
            .map_err(|e| ("malformed_certificate", e.to_string()))?;
        let v = self
            .trust
            .verify_certificate(&cert, self.now.get(), &self.check)
            .map_err(|e| (cert_reason(&e), e.to_string()))?;
        let grant = Grant {
            node_key: v.node_key().to_bytes(),
            labels: v.labels().clone(),
            expires: v.expires(),
        };
        if self.revoked.contains(&grant.node_key) {
            return Err((
                "revoked",
                format!(
                    "node {} is on the revocation list",
                    super::peer::peer_id_of(&grant.node_key)
                ),
            ));
        }
        Ok(grant)
    }

    fn cached_cert(&self, bytes: &[u8]) -> Result<Grant, &'static str> {
        let id: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(v) = self.cache.borrow().get(&id) {
            // Expiry moves with the clock: a cached grant is re-judged on it.
            return match v {
                Ok(g) if g.expires.plus(self.trust.clock_skew_secs) < self.now.get() => {
                    Err("expired_certificate")
                }
                v => v.clone(),
            };
        }
        let verdict = self.check_cert(bytes).map_err(|(r, _)| r);
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(id, verdict.clone());
        verdict
    }
}

/// A stable reason label for a refused certificate.
fn cert_reason(e: &Rejection) -> &'static str {
    match e.reason() {
        "expired" => "expired_certificate",
        "wrong_fleet" => "wrong_fleet_certificate",
        "malformed" | "oversized" => "malformed_certificate",
        _ => "untrusted_certificate",
    }
}

impl Door<AgentPeer> for AgentDoor {
    fn trust(&self) -> &TrustRoot {
        &self.trust
    }
    fn signatures(&self) -> &dyn SignatureCheck {
        &self.check
    }
    fn node_key(&self, peer: &AgentPeer) -> Option<VerifyingKey> {
        if self.revoked.contains(&peer.key) {
            return None;
        }
        if let Some(k) = self.keys.borrow().get(&peer.key) {
            return Some(*k);
        }
        let k = VerifyingKey::from_bytes(&peer.key).ok()?;
        let mut keys = self.keys.borrow_mut();
        if keys.len() >= KEY_CACHE {
            keys.clear();
        }
        keys.insert(peer.key, k);
        Some(k)
    }
    /// A zone row: its issuer's signature, and in an admitted fleet its issuer's certificate
    /// (for that node key, verified and not revoked), as for a status; labels do not matter.
    fn verify_row(&self, row: &Arc<ZoneRow<AgentPeer>>, key: &VerifyingKey) -> bool {
        if !row.verify(key, &self.check) {
            return false;
        }
        if self.is_open() {
            return true;
        }
        let Some(cert) = &row.cert else {
            return false;
        };
        match self.cached_cert(cert) {
            Ok(g) => g.node_key == row.issuer.key,
            Err(_) => false,
        }
    }
    fn verify_status(&self, status: &Arc<SignedStatus<AgentPeer>>, key: &VerifyingKey) -> bool {
        if !status.verify(key, &self.check) {
            return false;
        }
        if self.is_open() {
            return true;
        }
        let Some(cert) = &status.cert else {
            return false;
        };
        match self.cached_cert(cert) {
            Ok(g) => g.node_key == status.body.node.key && g.labels == status.body.labels,
            Err(_) => false,
        }
    }
}

/// This node's own certificate, as last loaded.
#[derive(Debug, Clone)]
pub struct OwnCert {
    pub bytes: Arc<Vec<u8>>,
    pub grant: Grant,
    /// Its file's modification time when read.
    pub mtime: Option<std::time::SystemTime>,
}

/// Where a peer stands with us.
#[derive(Debug)]
pub enum PeerState {
    /// Connected, no hello yet: frames to it wait here.
    Waiting { since: Instant, queue: Vec<Vec<u8>> },
    /// Its certificate verified.
    Admitted(Grant),
}

/// The connection side of admission.
#[derive(Debug, Default)]
pub struct Admission {
    pub own: Option<OwnCert>,
    /// The certificate file's modification time when last looked at.
    pub cert_mtime: Option<std::time::SystemTime>,
    pub peers: HashMap<PeerId, PeerState>,
    pub banned: HashMap<PeerId, Instant>,
    /// The revocation list in force, as signed bytes (version, bytes).
    pub revocations: Option<(u64, Arc<Vec<u8>>)>,
    /// The signed roots taken on, oldest first, as bytes (version, bytes): sent in turn to a
    /// peer that is behind.
    pub roots: Vec<(u64, Arc<Vec<u8>>)>,
}

impl Admission {
    pub fn is_banned(&mut self, peer: &PeerId, now: Instant) -> bool {
        match self.banned.get(peer) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.banned.remove(peer);
                false
            }
            None => false,
        }
    }

    pub fn ban(&mut self, peer: PeerId, now: Instant) {
        self.peers.remove(&peer);
        self.banned.insert(peer, now + BAN);
    }

    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        matches!(self.peers.get(peer), Some(PeerState::Admitted(_)))
    }

    /// Hold a frame for a peer that has not said hello yet; false when the queue is full.
    pub fn hold(&mut self, peer: PeerId, frame: Vec<u8>, now: Instant) -> bool {
        match self.peers.entry(peer).or_insert(PeerState::Waiting {
            since: now,
            queue: Vec::new(),
        }) {
            PeerState::Waiting { queue, .. } if queue.len() < MAX_QUEUED => {
                queue.push(frame);
                true
            }
            _ => false,
        }
    }

    /// The peer showed a valid certificate: what was held for it.
    pub fn admit(&mut self, peer: PeerId, grant: Grant) -> Vec<Vec<u8>> {
        match self.peers.insert(peer, PeerState::Admitted(grant)) {
            Some(PeerState::Waiting { queue, .. }) => queue,
            _ => Vec::new(),
        }
    }

    /// Peers connected longer than [`HELLO_TIMEOUT`] without a valid hello.
    pub fn overdue(&self, now: Instant) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter_map(|(p, s)| match s {
                PeerState::Waiting { since, .. } if now.duration_since(*since) > HELLO_TIMEOUT => {
                    Some(*p)
                }
                _ => None,
            })
            .collect()
    }

    pub fn revocations_version(&self) -> u64 {
        self.revocations.as_ref().map_or(0, |r| r.0)
    }
}

/// The kinds of trust documents that spread like bundles.
pub enum TrustDoc {
    Root(SignedRoot),
    Revocations(SignedRevocationList),
}

/// Signed roots are stored as `trust/root-N.signed`, one per version.
pub fn root_file(version: u64) -> String {
    format!("trust/root-{version}.signed")
}
pub const REVOKED_FILE: &str = "trust/revoked.list";

/// Read a trust document (signed root or revocation list) by its magic; None if neither.
pub fn decode_trust_doc(bytes: &[u8]) -> Option<Result<TrustDoc, String>> {
    if bytes.starts_with(ROOT_MAGIC) {
        Some(
            SignedRoot::decode(bytes)
                .map(TrustDoc::Root)
                .map_err(|e| e.to_string()),
        )
    } else if bytes.starts_with(REVOCATIONS_MAGIC) {
        Some(
            SignedRevocationList::decode(bytes)
                .map(TrustDoc::Revocations)
                .map_err(|e| e.to_string()),
        )
    } else {
        None
    }
}

/// Persist a trust document in the state directory, atomically.
pub fn save(state: &StateDir, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = state.path().join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(&path, bytes, 0o644)?;
    Ok(())
}

/// The stored signed root and revocation list, if any (unreadable files are reported by the
/// caller, which verifies them against the trust root).
pub fn load(state: &StateDir, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(state.path().join(rel)).ok()
}

/// The peer id of a node key, for messages.
pub fn node_name(key: &[u8; 32]) -> String {
    super::peer::peer_id_of(key).to_string()
}

/// True when `labels` (from flags or config) disagree with the certificate's.
pub fn labels_disagree(given: &Labels, cert: &Labels) -> bool {
    !given.is_empty() && given != cert
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftless_core::admission::{Certificate, SignedCertificate};
    use ed25519_dalek::SigningKey;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn cert(node: u8, admission: u8) -> Arc<Vec<u8>> {
        let c = Certificate {
            fleet: "prod".into(),
            node_key: key(node).verifying_key().to_bytes(),
            labels: Labels::new(),
            issued: Timestamp(1000),
            expires: Timestamp(9000),
        };
        Arc::new(SignedCertificate::sign(c, &[&key(admission)]).encode())
    }

    fn row(node: u8, cert: Option<Arc<Vec<u8>>>) -> Arc<ZoneRow<AgentPeer>> {
        let issuer = AgentPeer {
            key: key(node).verifying_key().to_bytes(),
            addr: None,
        };
        Arc::new(
            ZoneRow {
                zone: 0,
                issued_ms: 2_000_000,
                issuer,
                members: 150,
                counts: vec![],
                contacts: vec![],
                sig: vec![],
                cert,
            }
            .sign(&key(node)),
        )
    }

    /// In an admitted fleet a zone row counts only with its issuer's certificate: anyone can
    /// make a key that hashes into any zone, so a signature alone proves nothing.
    #[test]
    fn a_row_needs_its_issuers_certificate_in_an_admitted_fleet() {
        let trust = TrustRoot::new("prod", vec![key(1).verifying_key()], 1)
            .with_admission_keys(vec![key(2).verifying_key()], 1);
        let door = AgentDoor::new(trust, BTreeSet::new());
        door.now.set(Timestamp(2000));
        let k = key(50).verifying_key();
        assert!(door.verify_row(&row(50, Some(cert(50, 2))), &k));
        assert!(!door.verify_row(&row(50, None), &k), "no certificate");
        assert!(
            !door.verify_row(&row(50, Some(cert(51, 2))), &k),
            "another node's certificate"
        );
        assert!(
            !door.verify_row(&row(50, Some(cert(50, 7))), &k),
            "a self-made certificate"
        );
        // Revoked: no key for it at all.
        let revoked = AgentDoor::new(
            TrustRoot::new("prod", vec![key(1).verifying_key()], 1)
                .with_admission_keys(vec![key(2).verifying_key()], 1),
            [k.to_bytes()].into(),
        );
        assert!(revoked.node_key(&row(50, None).issuer).is_none());
        // An open fleet has no certificates: the signature is all there is.
        let open = AgentDoor::new(
            TrustRoot::new("prod", vec![key(1).verifying_key()], 1),
            BTreeSet::new(),
        );
        assert!(open.verify_row(&row(50, None), &k));
    }
}
