//! Valid structures of every kind the targets decode, encoded as the seed corpus: the fuzzer
//! starts from real bundles, messages and statuses instead of guessing the envelopes.

use crate::WirePeer;
use driftless_core::bundle::{Bundle, BundleHash, Header};
use driftless_core::definition::{
    CompiledDefinition, HealthCheck, OnFailure, Ownership, PackageEnsure, Presence, Probe,
    Resource, ResourceKind, ResourceRef, ResourceType, RolloutPolicy, ServiceEnsure,
};
use driftless_core::labels::{Labels, Targets};
use driftless_core::marks::{Mark, Marks};
use driftless_core::proto::fleet::Count;
use driftless_core::proto::status::LastApply;
use driftless_core::proto::{
    Announcement, ApplyState, ChannelStatus, Digest, Message, SignedStatus, StatusBody, WireBundle,
    ZoneRow,
};
use driftless_core::time::Timestamp;
use driftless_core::trust::TrustRoot;
use driftless_core::value::Value;
use ed25519_dalek::SigningKey;
use std::sync::Arc;

/// The fleet every sample belongs to.
pub const FLEET: &str = "fuzz";
/// Sample bundles are valid from here for a year; targets verify them at [`NOW`].
pub const CREATED: u64 = 1_700_000_000;
pub const NOW: Timestamp = Timestamp(CREATED + 60);

/// The release key the sample trust root trusts (a fixed seed: the corpus must be stable).
pub fn release_key() -> SigningKey {
    SigningKey::from_bytes(&[0x11; 32])
}

/// A second release key, so samples include a 2-of-2 bundle.
pub fn cosigner_key() -> SigningKey {
    SigningKey::from_bytes(&[0x22; 32])
}

/// The key of sample node `i`; statuses are signed with it.
pub fn node_key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[0x40 + i; 32])
}

pub fn peer(i: u8) -> WirePeer {
    WirePeer {
        key: node_key(i).verifying_key().to_bytes(),
        addr: i
            .is_multiple_of(2)
            .then(|| format!("/ip4/10.0.0.{i}/tcp/7400")),
    }
}

/// The trust root the verifying targets use: both release keys, threshold 1, a small size cap.
pub fn trust_root() -> TrustRoot {
    let mut root = TrustRoot::new(
        FLEET,
        vec![
            release_key().verifying_key(),
            cosigner_key().verifying_key(),
        ],
        1,
    );
    root.max_bundle_bytes = BUNDLE_CAP;
    root
}

/// The bundle size cap the targets decode with: far above any input libFuzzer makes, far below
/// the 64 MiB default, so a decoder that ignores it would be caught holding too much.
pub const BUNDLE_CAP: usize = 1 << 20;

fn own(mode: Option<u32>) -> Ownership {
    Ownership {
        mode,
        owner: Some("root".into()),
        group: None,
    }
}

fn reference(rtype: ResourceType, id: &str) -> ResourceRef {
    ResourceRef {
        rtype,
        id: id.into(),
    }
}

fn resource(kind: ResourceKind) -> Resource {
    Resource {
        kind,
        requires: vec![],
        notify: vec![],
        audit: false,
    }
}

/// One definition with every resource kind, variables of every value kind, checks and a
/// rollout; and a bare one.
pub fn definitions() -> Vec<CompiledDefinition> {
    let mut vars = std::collections::BTreeMap::new();
    vars.insert("port".into(), Value::Integer(8080));
    vars.insert("ratio".into(), Value::Float(0.25));
    vars.insert("debug".into(), Value::Bool(false));
    vars.insert("name".into(), Value::String("web".into()));
    let mut inner = std::collections::BTreeMap::new();
    inner.insert(
        "hosts".into(),
        Value::List(vec![Value::String("a".into()), Value::Integer(2)]),
    );
    vars.insert("upstream".into(), Value::Map(inner));
    let mut site = resource(ResourceKind::File {
        path: "/etc/nginx/site.conf".into(),
        content: "listen {{ port }};\n".into(),
        template: Some("site.conf.j2".into()),
        own: own(Some(0o644)),
    });
    site.requires = vec![reference(ResourceType::Package, "nginx")];
    site.notify = vec![reference(ResourceType::Service, "nginx")];
    let mut audit = resource(ResourceKind::Absent {
        path: "/etc/cron.d/old".into(),
    });
    audit.audit = true;
    let full = CompiledDefinition {
        name: "web".into(),
        targets: Targets {
            labels: [(
                "role".to_string(),
                vec!["web".to_string(), "edge".to_string()],
            )]
            .into_iter()
            .collect(),
        },
        vars,
        resources: vec![
            resource(ResourceKind::Package {
                name: "nginx".into(),
                ensure: PackageEnsure::Installed,
            }),
            site,
            resource(ResourceKind::Directory {
                path: "/srv/www".into(),
                own: own(None),
            }),
            resource(ResourceKind::Symlink {
                path: "/srv/current".into(),
                target: "/srv/www".into(),
            }),
            audit,
            resource(ResourceKind::Service {
                name: "nginx".into(),
                ensure: Some(ServiceEnsure::Running),
                enable: Some(true),
            }),
            resource(ResourceKind::User {
                name: "www".into(),
                ensure: Presence::Present,
                uid: Some(990),
                groups: vec!["www".into()],
                home: Some("/srv/www".into()),
                shell: None,
            }),
            resource(ResourceKind::Group {
                name: "www".into(),
                ensure: Presence::Present,
                gid: None,
            }),
            resource(ResourceKind::Exec {
                name: "reload".into(),
                command: "nginx -s reload".into(),
                creates: None,
                unless: Some("test -f /run/x".into()),
                onlyif: None,
                refreshonly: true,
                timeout_secs: Some(30),
            }),
        ],
        checks: vec![
            HealthCheck {
                name: "http".into(),
                probe: Probe::Http("http://127.0.0.1:8080/".into()),
                interval_secs: 10,
                timeout_secs: 2,
            },
            HealthCheck {
                name: "tcp".into(),
                probe: Probe::Tcp("127.0.0.1:8080".into()),
                interval_secs: 10,
                timeout_secs: 2,
            },
        ],
        rollout: Some(rollout()),
    };
    let bare = CompiledDefinition {
        name: "db".into(),
        targets: Targets::default(),
        vars: Default::default(),
        resources: vec![],
        checks: vec![],
        rollout: None,
    };
    vec![full, bare]
}

fn rollout() -> RolloutPolicy {
    RolloutPolicy {
        waves: vec![0.1, 0.5, 1.0],
        bake_secs: 60,
        max_unhealthy: 0.2,
        on_failure: OnFailure::Halt,
    }
}

fn header(channel: &str, version: u64, rollout: Option<RolloutPolicy>) -> Header {
    Header {
        fleet: FLEET.into(),
        channel: channel.into(),
        version,
        created: Timestamp(CREATED),
        expires: Timestamp(CREATED + 365 * 86_400),
        content_hash: [0; 32],
        rollout,
    }
}

/// Bundles the sample trust root accepts: one per definition, one cosigned, and one signed by
/// an untrusted key (decodes, but is refused).
pub fn bundles() -> Vec<Bundle> {
    let defs = definitions();
    let (full, bare) = (&defs[0], &defs[1]);
    vec![
        Bundle::sign(header("web", 3, Some(rollout())), full, &[&release_key()]),
        Bundle::sign(
            header("db", 1, None),
            bare,
            &[&release_key(), &cosigner_key()],
        ),
        Bundle::sign(header("db", 2, None), bare, &[&node_key(9)]),
    ]
}

/// Signed statuses of a healthy node and of a failing one.
pub fn statuses() -> Vec<SignedStatus<WirePeer>> {
    let mut labels = Labels::new();
    labels.insert("role".into(), "web".into());
    labels.insert("dc".into(), "a".into());
    let healthy = StatusBody {
        node: peer(1),
        issued_ms: CREATED * 1000,
        labels: labels.clone(),
        channels: vec![ChannelStatus {
            channel: "web".into(),
            version: 3,
            state: ApplyState::Applied,
            target: 3,
            wave: 1,
        }],
        last_apply: Some(LastApply {
            channel: "web".into(),
            version: 3,
            ok: true,
            at_ms: CREATED * 1000 - 5,
        }),
        drift_detected: 2,
        drift_corrected: 2,
        healthy: true,
        failing_checks: vec![],
    };
    let failing = StatusBody {
        node: peer(2),
        issued_ms: CREATED * 1000 + 7,
        labels,
        channels: vec![
            ChannelStatus {
                channel: "web".into(),
                version: 2,
                state: ApplyState::Failed,
                target: 3,
                wave: 0,
            },
            ChannelStatus {
                channel: "db".into(),
                version: 0,
                state: ApplyState::Held,
                target: 1,
                wave: 2,
            },
        ],
        last_apply: None,
        drift_detected: 1,
        drift_corrected: 0,
        healthy: false,
        failing_checks: vec!["http".into()],
    };
    vec![healthy.sign(&node_key(1)), failing.sign(&node_key(2))]
}

fn row() -> ZoneRow<WirePeer> {
    ZoneRow {
        zone: 3,
        issued_ms: CREATED * 1000,
        issuer: peer(1),
        members: 2,
        counts: vec![Count {
            channel: "web".into(),
            version: 3,
            state: ApplyState::Applied,
            healthy: true,
            target: 3,
            wave: 1,
            n: 2,
        }],
        contacts: vec![peer(1), peer(2)],
        sig: Vec::new(),
        cert: Some(Arc::new(vec![0xce; 40])),
    }
    .sign(&node_key(1))
}

/// One message of every kind.
pub fn messages() -> Vec<Message<WirePeer>> {
    let b = bundles();
    let st: Vec<Arc<SignedStatus<WirePeer>>> = statuses().into_iter().map(Arc::new).collect();
    let announce = Announcement {
        channel: "web".into(),
        version: 3,
        hash: b[0].hash(),
        hops: 2,
    };
    vec![
        Message::Join,
        Message::ForwardJoin {
            joiner: peer(4),
            ttl: 6,
        },
        Message::Neighbor { high: true },
        Message::NeighborAccept,
        Message::Disconnect { alive: true },
        Message::Shuffle {
            origin: peer(2),
            peers: vec![peer(3), peer(4)],
            ttl: 3,
        },
        Message::ShuffleReply {
            peers: vec![peer(5)],
        },
        Message::Ping,
        Message::Announce(vec![announce.clone()]),
        Message::Fetch(BundleHash([0xab; 32])),
        Message::Bundle(WireBundle(Arc::new(b[1].clone()))),
        Message::Prune,
        Message::Push {
            bundle: WireBundle(Arc::new(b[0].clone())),
            hops: 1,
        },
        Message::Digest(Digest {
            channels: vec![announce],
            rows: vec![(3, CREATED * 1000)],
            notable: vec![st[1].clone()],
            reply: true,
            rows_print: 0x1234_5678,
            want: vec![],
        }),
        Message::Digest(Digest {
            channels: vec![],
            rows: vec![(5, CREATED * 1000 + 9)],
            notable: vec![],
            reply: false,
            rows_print: 0x8765_4321,
            want: vec![3],
        }),
        Message::Statuses(st.clone()),
        Message::ZoneSync {
            zone: 3,
            fingerprint: 99,
            entries: Some(vec![
                (peer(1), CREATED * 1000),
                (peer(2), CREATED * 1000 + 7),
            ]),
        },
        Message::ZoneWant(vec![peer(2)]),
        Message::RowSync(vec![(3, CREATED * 1000)]),
        Message::Rows(vec![Arc::new(row())]),
        Message::RowWant {
            zones: vec![3],
            rows: vec![],
        },
        Message::RowWant {
            zones: vec![5],
            rows: vec![Arc::new(row())],
        },
        Message::Tree {
            seq: 2,
            root: peer(6),
            dist: 3,
            parent: true,
        },
        Message::WaveWant {
            zone: 3,
            channel: "web".into(),
            version: 4,
            wave: 1,
        },
        Message::WaveStatuses {
            zone: 3,
            channel: "web".into(),
            version: 4,
            wave: 1,
            members: 7,
            statuses: st.clone(),
        },
        Message::SizeWant { zone: 3 },
        Message::ZoneSize {
            zone: 3,
            members: 151,
        },
        Message::WaveDoubt {
            zone: 3,
            channel: "web".into(),
            version: 4,
            wave: 1,
        },
    ]
}

/// Transport frames as the agent sends them: core messages, a published bundle, answers.
/// The messages inside are encoded with [`WirePeer`]; the `frame` target decodes them with the
/// agent's own peer type, so a layout that drifted apart would show there.
#[cfg(feature = "agent")]
pub fn frames() -> Vec<Vec<u8>> {
    use driftless::agent::transport::{Request, Response};
    let msgs = messages();
    let mut out: Vec<Vec<u8>> = msgs
        .iter()
        .filter(|m| {
            matches!(
                m,
                Message::Digest(_) | Message::Fetch(_) | Message::Bundle(_)
            )
        })
        .map(|m| {
            Request::Core {
                listen: Some("/ip4/10.0.0.1/tcp/7400".into()),
                msg: m.encode(),
            }
            .encode()
        })
        .collect();
    for m in &msgs {
        let as_agent = driftless_core::proto::Message::<driftless::agent::peer::AgentPeer>::decode(
            &m.encode(),
        )
        .expect("WirePeer has the wire layout of AgentPeer");
        assert_eq!(as_agent.encode(), m.encode());
    }
    out.push(Request::Publish(bundles()[1].encode()).encode());
    out.push(Response::Ack.encode());
    out.push(Response::Core(msgs[..4].iter().map(|m| m.encode()).collect()).encode());
    out.push(
        Response::Published {
            ok: false,
            message: "refused: untrusted".into(),
        }
        .encode(),
    );
    out
}

/// High-water marks as a node persists them.
pub fn marks() -> Vec<Marks> {
    let mut m = Marks::default();
    for b in bundles() {
        m.record(b.header(), b.hash());
    }
    let mut one = Marks::default();
    one.channels.insert(
        "web".into(),
        Mark {
            version: u64::MAX,
            hash: BundleHash([7; 32]),
        },
    );
    vec![m, one]
}

/// The admission key of [`admitted_root`].
pub fn admission_key() -> SigningKey {
    SigningKey::from_bytes(&[0xad; 32])
}

/// [`trust_root`] with an admission key: what certificates and revocation lists verify against.
pub fn admitted_root() -> TrustRoot {
    trust_root().with_admission_keys(vec![admission_key().verifying_key()], 1)
}

/// Node certificates: no labels, a few, and one with two signatures.
pub fn certificates() -> Vec<driftless_core::admission::SignedCertificate> {
    use driftless_core::admission::{Certificate, SignedCertificate};
    let cert = |i: u8, labels: &[(&str, &str)]| Certificate {
        fleet: FLEET.into(),
        node_key: node_key(i).verifying_key().to_bytes(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        issued: Timestamp(CREATED),
        expires: Timestamp(CREATED + 365 * 86_400),
    };
    let mut two = SignedCertificate::sign(cert(3, &[("role", "db")]), &[&admission_key()]);
    two.add_signature(&release_key());
    vec![
        SignedCertificate::sign(cert(1, &[]), &[&admission_key()]),
        SignedCertificate::sign(cert(2, &[("role", "web"), ("dc", "a")]), &[&admission_key()]),
        two,
    ]
}

/// Revocation lists: empty, one node, several.
pub fn revocation_lists() -> Vec<driftless_core::admission::SignedRevocationList> {
    use driftless_core::admission::{RevocationList, SignedRevocationList};
    let list = |version: u64, nodes: &[u8]| RevocationList {
        fleet: FLEET.into(),
        version,
        issued: Timestamp(CREATED),
        revoked: nodes
            .iter()
            .map(|i| node_key(*i).verifying_key().to_bytes())
            .collect(),
    };
    [list(1, &[]), list(2, &[4]), list(3, &[1, 2, 5, 7])]
        .into_iter()
        .map(|l| SignedRevocationList::sign(l, &[&admission_key()]))
        .collect()
}

/// Signed roots: the next version of [`admitted_root`], with and without an expiry, signed
/// by the current root keys (the release keys double as root keys there).
pub fn roots() -> Vec<driftless_core::root::SignedRoot> {
    use driftless_core::root::SignedRoot;
    let next = admitted_root().with_version(2);
    [None, Some(Timestamp(CREATED + 86_400))]
        .into_iter()
        .map(|exp| {
            SignedRoot::sign(
                next.to_root_doc(Timestamp(CREATED), exp),
                &[&release_key(), &cosigner_key()],
            )
        })
        .collect()
}
