use super::*;
use crate::trust::Ed25519Check;
use proptest::prelude::*;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(n: u8) -> VerifyingKey {
    key(n).verifying_key()
}

/// Fleet `prod`: release key 1, admission keys `admission` with `threshold`, root key 9.
fn trust(admission: &[u8], threshold: usize) -> TrustRoot {
    TrustRoot::new("prod", vec![pk(1)], 1)
        .with_root_keys(vec![pk(9)], 1)
        .with_admission_keys(admission.iter().map(|n| pk(*n)).collect(), threshold)
}

fn cert(fleet: &str, node: u8, issued: u64, expires: u64) -> Certificate {
    Certificate {
        fleet: fleet.into(),
        node_key: pk(node).to_bytes(),
        labels: crate::labels::parse_labels("role=web,dc=a").unwrap(),
        issued: Timestamp(issued),
        expires: Timestamp(expires),
    }
}

fn list(fleet: &str, version: u64, nodes: &[u8]) -> RevocationList {
    RevocationList {
        fleet: fleet.into(),
        version,
        issued: Timestamp(1000),
        revoked: nodes.iter().map(|n| pk(*n).to_bytes()).collect(),
    }
}

fn verify_cert(t: &TrustRoot, bytes: &[u8], now: u64) -> Result<VerifiedCertificate, Rejection> {
    let c = SignedCertificate::decode(bytes)?;
    t.verify_certificate(&c, Timestamp(now), &Ed25519Check)
}

#[test]
fn a_certificate_signed_by_an_admission_key_verifies() {
    let signed = SignedCertificate::sign(cert("prod", 50, 1000, 9000), &[&key(2)]);
    let bytes = signed.encode();
    assert_eq!(&bytes[..4], CERTIFICATE_MAGIC);
    let v = verify_cert(&trust(&[2], 1), &bytes, 2000).unwrap();
    assert_eq!(v.node_key(), &pk(50));
    assert_eq!(v.labels()["role"], "web");
    assert_eq!(v.signers(), &[pk(2).to_bytes()]);
    assert_eq!(v.encode(), bytes);
    assert!(!v.expires_within(Timestamp(2000), 1000));
    assert!(v.expires_within(Timestamp(8500), 1000));
    assert!(v.expires_within(Timestamp(9500), 0));
}

#[test]
fn a_certificate_of_another_fleet_is_refused() {
    let bytes = SignedCertificate::sign(cert("staging", 50, 1000, 9000), &[&key(2)]).encode();
    let err = verify_cert(&trust(&[2], 1), &bytes, 2000).unwrap_err();
    assert_eq!(err.reason(), "wrong_fleet");
    assert!(!err.is_malformed());
    assert!(err.to_string().contains("staging"), "{err}");
}

#[test]
fn too_few_admission_signers_are_refused_and_a_key_counts_once() {
    let mut signed = SignedCertificate::sign(cert("prod", 50, 1000, 9000), &[&key(2)]);
    let t = trust(&[2, 3], 2);
    let err = verify_cert(&t, &signed.encode(), 2000).unwrap_err();
    assert!(
        matches!(
            err,
            Rejection::NotEnoughSigners {
                valid: 1,
                needed: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reason(), "untrusted");
    signed.add_signature(&key(2));
    assert!(verify_cert(&t, &signed.encode(), 2000).is_err());
    signed.add_signature(&key(3));
    assert!(verify_cert(&t, &signed.encode(), 2000).is_ok());
}

#[test]
fn a_release_or_root_key_cannot_admit_a_node() {
    for wrong in [1, 9] {
        let bytes = SignedCertificate::sign(cert("prod", 50, 1000, 9000), &[&key(wrong)]).encode();
        let err = verify_cert(&trust(&[2], 1), &bytes, 2000).unwrap_err();
        assert_eq!(err.reason(), "wrong_role", "{err}");
        let role = if wrong == 1 {
            "release key"
        } else {
            "root key"
        };
        assert!(err.to_string().contains(role), "{err}");
    }
    // A key the root does not know at all is merely untrusted.
    let bytes = SignedCertificate::sign(cert("prod", 50, 1000, 9000), &[&key(7)]).encode();
    let err = verify_cert(&trust(&[2], 1), &bytes, 2000).unwrap_err();
    assert_eq!(err.reason(), "untrusted");
}

#[test]
fn an_open_fleet_trusts_no_certificate() {
    let bytes = SignedCertificate::sign(cert("prod", 50, 1000, 9000), &[&key(2)]).encode();
    let t = trust(&[], 0);
    assert!(t.is_open());
    assert!(!trust(&[2], 1).is_open());
    let err = verify_cert(&t, &bytes, 2000).unwrap_err();
    assert_eq!(err.reason(), "no_keys");
    assert!(err.to_string().contains("open fleet"), "{err}");
}

#[test]
fn expiry_and_issue_time_allow_the_clock_skew() {
    let bytes = SignedCertificate::sign(cert("prod", 50, 1000, 9000), &[&key(2)]).encode();
    let t = trust(&[2], 1);
    assert!(verify_cert(&t, &bytes, 9000 + 300).is_ok());
    let err = verify_cert(&t, &bytes, 9000 + 301).unwrap_err();
    assert_eq!(err.reason(), "expired");
    assert!(verify_cert(&t, &bytes, 1000 - 300).is_ok());
    let err = verify_cert(&t, &bytes, 1000 - 301).unwrap_err();
    assert_eq!(err.reason(), "not_yet_valid");
}

#[test]
fn every_flipped_byte_of_a_certificate_is_refused() {
    let bytes = SignedCertificate::sign(cert("prod", 50, 1000, 9000), &[&key(2)]).encode();
    let t = trust(&[2], 1);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(
            verify_cert(&t, &bad, 2000).is_err(),
            "flipping byte {i} went unnoticed"
        );
    }
}

#[test]
fn a_node_key_that_is_no_usable_ed25519_key_is_refused() {
    let mut c = cert("prod", 50, 1000, 9000);
    // The identity point: a valid encoding, but of small order (anyone could sign for it).
    let mut weak = [0u8; 32];
    weak[0] = 1;
    c.node_key = weak;
    let bytes = SignedCertificate::sign(c, &[&key(2)]).encode();
    let err = verify_cert(&trust(&[2], 1), &bytes, 2000).unwrap_err();
    assert_eq!(err.reason(), "bad_node_key");
}

#[test]
fn malformed_and_oversized_certificates_are_malformed() {
    let bytes = SignedCertificate::sign(cert("prod", 50, 1000, 9000), &[&key(2)]).encode();
    let err = verify_cert(&trust(&[2], 1), &bytes[..bytes.len() - 3], 2000).unwrap_err();
    assert!(err.is_malformed(), "{err}");
    assert_eq!(err.reason(), "malformed");
    let big = vec![0u8; MAX_CERTIFICATE_BYTES + 1];
    let err = verify_cert(&trust(&[2], 1), &big, 2000).unwrap_err();
    assert_eq!(err.reason(), "oversized");
    // A revocation list is not a certificate, nor the other way round.
    let rl = SignedRevocationList::sign(list("prod", 1, &[50]), &[&key(2)]).encode();
    assert!(matches!(
        SignedCertificate::decode(&rl),
        Err(DecodeError::BadMagic { .. })
    ));
    assert!(matches!(
        SignedRevocationList::decode(&bytes),
        Err(DecodeError::BadMagic { .. })
    ));
}

#[test]
fn a_revocation_list_names_the_nodes_it_revokes() {
    let t = trust(&[2], 1);
    let signed = SignedRevocationList::sign(list("prod", 3, &[50, 51]), &[&key(2)]);
    let bytes = signed.encode();
    assert_eq!(&bytes[..4], REVOCATIONS_MAGIC);
    let decoded = SignedRevocationList::decode(&bytes).unwrap();
    let v = t
        .verify_revocations(&decoded, Timestamp(2000), &Ed25519Check)
        .unwrap();
    assert_eq!(v.version(), 3);
    assert!(v.contains(&pk(50).to_bytes()));
    assert!(!v.contains(&pk(52).to_bytes()));

    let revoked = SignedCertificate::sign(cert("prod", 50, 1000, 9000), &[&key(2)]);
    let revoked = t
        .verify_certificate(&revoked, Timestamp(2000), &Ed25519Check)
        .unwrap();
    let err = v.check(&revoked).unwrap_err();
    assert_eq!(err.reason(), "revoked");
    let fine = SignedCertificate::sign(cert("prod", 52, 1000, 9000), &[&key(2)]);
    let fine = t
        .verify_certificate(&fine, Timestamp(2000), &Ed25519Check)
        .unwrap();
    assert!(v.check(&fine).is_ok());
}

#[test]
fn revocation_lists_are_refused_like_certificates() {
    let t = trust(&[2, 3], 2);
    let verify = |l: &SignedRevocationList| {
        let l = SignedRevocationList::decode(&l.encode())?;
        t.verify_revocations(&l, Timestamp(2000), &Ed25519Check)
    };
    let one = SignedRevocationList::sign(list("prod", 1, &[50]), &[&key(2)]);
    assert_eq!(verify(&one).unwrap_err().reason(), "untrusted");
    let by_release = SignedRevocationList::sign(list("prod", 1, &[50]), &[&key(1), &key(2)]);
    assert_eq!(verify(&by_release).unwrap_err().reason(), "wrong_role");
    let other = SignedRevocationList::sign(list("staging", 1, &[50]), &[&key(2), &key(3)]);
    assert_eq!(verify(&other).unwrap_err().reason(), "wrong_fleet");
    let mut future = list("prod", 1, &[50]);
    future.issued = Timestamp(2000 + 301);
    let future = SignedRevocationList::sign(future, &[&key(2), &key(3)]);
    assert_eq!(verify(&future).unwrap_err().reason(), "not_yet_valid");
    let ok = SignedRevocationList::sign(list("prod", 1, &[50]), &[&key(2), &key(3)]);
    let bytes = ok.encode();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let r = SignedRevocationList::decode(&bad)
            .map_err(Rejection::from)
            .and_then(|l| t.verify_revocations(&l, Timestamp(2000), &Ed25519Check));
        assert!(r.is_err(), "flipping byte {i} went unnoticed");
    }
    let big = vec![0u8; MAX_REVOCATIONS_BYTES + 1];
    assert!(matches!(
        SignedRevocationList::decode(&big),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn the_revocation_mark_refuses_rollback_and_conflicts() {
    let t = trust(&[2], 1);
    let v = |version: u64, nodes: &[u8]| {
        let l = SignedRevocationList::sign(list("prod", version, nodes), &[&key(2)]);
        t.verify_revocations(&l, Timestamp(2000), &Ed25519Check)
            .unwrap()
    };
    let v2 = v(2, &[50]);
    assert_eq!(v2.decide(None), Ok(MarkDecision::New));
    let mark = Some(v2.mark());
    assert_eq!(v2.decide(mark), Ok(MarkDecision::Same));
    assert_eq!(v(3, &[]).decide(mark), Ok(MarkDecision::New));
    assert_eq!(v(1, &[]).decide(mark).unwrap_err().reason(), "rolled_back");
    assert_eq!(
        v(2, &[51]).decide(mark).unwrap_err().reason(),
        "conflicting_content"
    );
}

proptest! {
    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = SignedCertificate::decode(&bytes);
        let _ = SignedRevocationList::decode(&bytes);
        let _ = crate::root::SignedRoot::decode(&bytes);
    }

    #[test]
    fn certificates_round_trip(labels in proptest::collection::btree_map("[a-z]{1,8}", "[a-z0-9]{0,8}", 0..6),
                               issued in 0u64..1 << 40, life in 0u64..1 << 30, node in 10u8..200) {
        let c = Certificate { fleet: "prod".into(), node_key: pk(node).to_bytes(), labels,
                              issued: Timestamp(issued), expires: Timestamp(issued + life) };
        let signed = SignedCertificate::sign(c.clone(), &[&key(2)]);
        let back = SignedCertificate::decode(&signed.encode()).unwrap();
        prop_assert_eq!(back.certificate(), &c);
        prop_assert_eq!(back, signed);
    }
}
