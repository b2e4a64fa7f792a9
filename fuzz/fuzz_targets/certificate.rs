//! `SignedCertificate::decode`: a node certificate as a peer shows it in its hello and as it
//! rides with every status (the agent checks it with `TrustRoot::verify_certificate`).
//! Invariants: the size cap holds; what decodes re-encodes to no more bytes and decodes equal;
//! verification (with every signature taken as valid, to reach what comes after it) never
//! panics, and what verifies names this fleet and a usable node key.
#![no_main]

use driftless_core::admission::{SignedCertificate, MAX_CERTIFICATE_BYTES};
use driftless_fuzz::{samples, within_cap, AcceptAll};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = within_cap("certificate", data.len(), || SignedCertificate::decode(data));
    let Ok(cert) = decoded else { return };
    assert!(data.len() <= MAX_CERTIFICATE_BYTES);
    let bytes = cert.encode();
    assert!(bytes.len() <= data.len(), "re-encoding a certificate grew it");
    let again = SignedCertificate::decode(&bytes).expect("a re-encoded certificate decodes");
    assert_eq!(again, cert);
    if let Ok(v) = samples::admitted_root().verify_certificate(&cert, samples::NOW, &AcceptAll) {
        assert_eq!(v.certificate().fleet, samples::FLEET);
        assert_eq!(v.node_key().to_bytes(), cert.certificate().node_key);
    }
});
