use super::*;
use crate::bundle::{Bundle, Header};
use crate::definition::CompiledDefinition;
use crate::trust::Ed25519Check;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(n: u8) -> VerifyingKey {
    key(n).verifying_key()
}

/// Version 1 of fleet `prod`: root key 10, release key 1, admission key 2.
fn v1() -> TrustRoot {
    TrustRoot::new("prod", vec![pk(1)], 1)
        .with_root_keys(vec![pk(10)], 1)
        .with_admission_keys(vec![pk(2)], 1)
}

/// The next version: root key `root`, release key `release`, admission key 2.
fn doc(version: u64, root: u8, release: u8) -> RootDoc {
    let mut d = v1().to_root_doc(Timestamp(1000), None);
    d.version = version;
    d.root.keys = vec![pk(root).to_bytes()];
    d.release.keys = vec![pk(release).to_bytes()];
    d
}

fn signed(d: RootDoc, keys: &[u8]) -> SignedRoot {
    let keys: Vec<SigningKey> = keys.iter().map(|n| key(*n)).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    SignedRoot::sign(d, &refs)
}

fn next(t: &TrustRoot, r: &SignedRoot) -> Result<TrustRoot, Rejection> {
    let r = SignedRoot::decode(&r.encode())?;
    t.verify_next_root(&r, Timestamp(2000), &Ed25519Check)
}

fn bundle(signer: u8) -> Vec<u8> {
    let def = CompiledDefinition::empty("web", None);
    let header = Header {
        fleet: "prod".into(),
        channel: "web".into(),
        version: 1,
        created: Timestamp(1000),
        expires: Timestamp(9000),
        content_hash: [0; 32],
        rollout: None,
    };
    Bundle::sign(header, &def, &[&key(signer)]).encode()
}

#[test]
fn a_root_doc_round_trips_into_the_same_trust_root() {
    let t = v1().with_version(4);
    let d = t.to_root_doc(Timestamp(1000), Some(Timestamp(5000)));
    let back = TrustRoot::from_root_doc(&d).unwrap();
    assert_eq!(back.expires, Some(Timestamp(5000)));
    assert_eq!(
        back,
        TrustRoot {
            expires: Some(Timestamp(5000)),
            ..t
        }
    );
    let bytes = signed(d.clone(), &[10]).encode();
    assert_eq!(&bytes[..4], ROOT_MAGIC);
    assert_eq!(SignedRoot::decode(&bytes).unwrap().doc(), &d);
}

#[test]
fn rotation_needs_the_old_and_the_new_root_keys_and_rotates_the_release_key_out() {
    let t1 = v1();
    let r2 = signed(doc(2, 11, 3), &[10, 11]);
    let t2 = next(&t1, &r2).unwrap();
    assert_eq!(t2.version, 2);
    assert_eq!(t2.release_keys, vec![pk(3)]);
    // Key 1 was the release key of version 1: it signs nothing any more.
    assert!(t1.verify_bytes(&bundle(1), Timestamp(2000)).is_ok());
    let err = t2.verify_bytes(&bundle(1), Timestamp(2000)).unwrap_err();
    assert_eq!(err.reason(), "untrusted");
    assert!(t2.verify_bytes(&bundle(3), Timestamp(2000)).is_ok());
    // Nor can the old root key sign the root after that.
    let r3 = signed(doc(3, 10, 1), &[10]);
    let err = next(&t2, &r3).unwrap_err();
    assert_eq!(err.reason(), "untrusted", "{err}");
}

#[test]
fn a_root_signed_by_only_one_side_of_the_rotation_is_refused() {
    let err = next(&v1(), &signed(doc(2, 11, 3), &[10])).unwrap_err();
    assert_eq!(err.reason(), "untrusted");
    assert!(err.to_string().contains("its own root keys"), "{err}");
    let err = next(&v1(), &signed(doc(2, 11, 3), &[11])).unwrap_err();
    assert_eq!(err.reason(), "untrusted");
    assert!(err.to_string().contains("current root's keys"), "{err}");
}

#[test]
fn a_release_or_admission_key_cannot_sign_a_root() {
    // The new root keeps root key 10 but the signer is the release key (or admission key).
    for wrong in [1, 2] {
        let err = next(&v1(), &signed(doc(2, 10, 3), &[wrong])).unwrap_err();
        assert_eq!(err.reason(), "wrong_role", "{err}");
    }
}

#[test]
fn a_trust_directory_of_release_keys_rotates_with_its_release_keys() {
    // TrustRoot::new: the release keys are the root keys.
    let legacy = TrustRoot::new("prod", vec![pk(1)], 1);
    assert!(legacy.is_open());
    let mut d = doc(2, 11, 3);
    d.admission = KeySet {
        keys: vec![],
        threshold: 0,
    };
    let t2 = next(&legacy, &signed(d, &[1, 11])).unwrap();
    assert!(t2.is_open());
    assert_eq!(t2.root_keys, vec![pk(11)]);
}

#[test]
fn versions_are_taken_one_at_a_time() {
    let err = next(&v1(), &signed(doc(3, 10, 3), &[10])).unwrap_err();
    assert_eq!(err.reason(), "root_version");
    assert!(err.to_string().contains("2 expected"), "{err}");
    let err = next(&v1(), &signed(doc(1, 10, 3), &[10])).unwrap_err();
    assert_eq!(err.reason(), "root_version");
    assert!(!err.is_malformed());
}

#[test]
fn a_root_of_another_fleet_or_expired_is_refused() {
    let mut d = doc(2, 10, 3);
    d.fleet = "staging".into();
    assert_eq!(
        next(&v1(), &signed(d, &[10])).unwrap_err().reason(),
        "wrong_fleet"
    );
    let mut d = doc(2, 10, 3);
    d.expires = Some(Timestamp(2000 - 301));
    assert_eq!(
        next(&v1(), &signed(d, &[10])).unwrap_err().reason(),
        "expired"
    );
}

#[test]
fn an_incoherent_root_is_malformed() {
    type Spoil = Box<dyn Fn(&mut RootDoc)>;
    let cases: Vec<(&str, Spoil)> = vec![
        ("root", Box::new(|d| d.root.threshold = 0)),
        ("release", Box::new(|d| d.release.threshold = 2)),
        ("release", Box::new(|d| d.release.keys.clear())),
        (
            "release",
            Box::new(|d| d.release.keys = vec![pk(3).to_bytes(), pk(3).to_bytes()]),
        ),
        ("admission", Box::new(|d| d.admission.keys.clear())),
        ("root", Box::new(|d| d.root.keys = vec![[0u8; 32]; 40])),
    ];
    for (field, spoil) in cases {
        let mut d = doc(2, 10, 3);
        spoil(&mut d);
        let err = next(&v1(), &signed(d, &[10])).unwrap_err();
        assert_eq!(err.reason(), "invalid_root", "{field}: {err}");
        assert!(err.is_malformed());
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn every_flipped_byte_of_a_root_is_refused() {
    let bytes = signed(doc(2, 11, 3), &[10, 11]).encode();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let r = SignedRoot::decode(&bad)
            .map_err(Rejection::from)
            .and_then(|r| v1().verify_next_root(&r, Timestamp(2000), &Ed25519Check));
        assert!(r.is_err(), "flipping byte {i} went unnoticed");
    }
    let err = SignedRoot::decode(&vec![0u8; MAX_ROOT_BYTES + 1]).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { .. }));
}

#[test]
fn a_chain_is_walked_in_version_order_and_may_not_skip() {
    let r2 = signed(doc(2, 11, 3), &[10, 11]);
    let mut d3 = doc(3, 12, 4);
    d3.expires = Some(Timestamp(9000));
    let r3 = signed(d3, &[11, 12]);
    let chain = [r3.clone(), r2.clone()];
    let t = v1()
        .verify_root_chain(&chain, Timestamp(2000), &Ed25519Check)
        .unwrap();
    assert_eq!((t.version, t.release_keys.clone()), (3, vec![pk(4)]));
    // Roots already taken on are skipped.
    let t2 = next(&v1(), &r2).unwrap();
    let again = t2
        .verify_root_chain(&chain, Timestamp(2000), &Ed25519Check)
        .unwrap();
    assert_eq!(again, t);
    // A gap is refused.
    let err = v1()
        .verify_root_chain(std::slice::from_ref(&r3), Timestamp(2000), &Ed25519Check)
        .unwrap_err();
    assert_eq!(err.reason(), "root_version");
    // An expired intermediate root is fine, an expired last one is not.
    let mut d2 = doc(2, 11, 3);
    d2.expires = Some(Timestamp(1500));
    let r2_expired = signed(d2, &[10, 11]);
    assert!(v1()
        .verify_root_chain(&[r2_expired.clone(), r3], Timestamp(2000), &Ed25519Check)
        .is_ok());
    let err = v1()
        .verify_root_chain(&[r2_expired], Timestamp(2000), &Ed25519Check)
        .unwrap_err();
    assert_eq!(err.reason(), "expired");
}
