//! `SignedRevocationList::decode`: a revocation list as a peer pushes it or `publish` hands it
//! over (the agent checks it with `TrustRoot::verify_revocations` and its high-water mark).
//! Invariants: the size cap holds; what decodes re-encodes to no more bytes and decodes equal;
//! verification and the mark decision never panic.
#![no_main]

use driftless_core::admission::{SignedRevocationList, MAX_REVOCATIONS_BYTES};
use driftless_fuzz::{samples, within_cap, AcceptAll};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = within_cap("revocation list", data.len(), || {
        SignedRevocationList::decode(data)
    });
    let Ok(list) = decoded else { return };
    assert!(data.len() <= MAX_REVOCATIONS_BYTES);
    let bytes = list.encode();
    assert!(bytes.len() <= data.len(), "re-encoding a revocation list grew it");
    let again = SignedRevocationList::decode(&bytes).expect("a re-encoded list decodes");
    assert_eq!(again, list);
    if let Ok(v) = samples::admitted_root().verify_revocations(&list, samples::NOW, &AcceptAll) {
        assert_eq!(v.list().fleet, samples::FLEET);
        let _ = v.decide(None);
        let _ = v.decide(Some(v.mark()));
    }
});
