//! A tiny deterministic in-memory network driving real nodes: fixed latency, a virtual clock,
//! links that can be cut.

use super::*;
use crate::bundle::{Bundle, Header};
use crate::definition::CompiledDefinition;
use crate::labels::Labels;
use crate::time::Timestamp;
use crate::trust::TrustRoot;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;

const WALL0: u64 = 1_700_000_000_000;
const LATENCY: u64 = 10;

fn release_key() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn node_key(i: u32) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    SigningKey::from_bytes(&seed)
}

fn bundle(version: u64, key: &SigningKey) -> Arc<Bundle> {
    bundle_with(version, key, None)
}

fn bundle_with(
    version: u64,
    key: &SigningKey,
    rollout: Option<crate::definition::RolloutPolicy>,
) -> Arc<Bundle> {
    let def = CompiledDefinition::empty("web", rollout.clone());
    let header = Header {
        fleet: "prod".into(),
        channel: "web".into(),
        version,
        created: Timestamp(WALL0 / 1000),
        expires: Timestamp(WALL0 / 1000 + 86_400),
        content_hash: [0; 32],
        rollout,
    };
    Arc::new(Bundle::sign(header, &def, &[key]))
}

type Door = PlainDoor<Box<dyn Fn(&u32) -> Option<VerifyingKey>>, MemoCheck>;

struct Net {
    nodes: Vec<Node<u32>>,
    door: Door,
    rng: StdRng,
    queue: BinaryHeap<Reverse<(u64, u64, u32)>>,
    pending: std::collections::BTreeMap<u64, (u32, Event<u32>)>,
    seq: u64,
    now: u64,
    cut: BTreeSet<u32>,
    /// Hostile nodes that announce what they hold but never hand a bundle over.
    withhold: BTreeSet<u32>,
    /// Drops a message (from, to, kind) when true: links that carry some kinds only.
    drop: Box<dyn Fn(u32, u32, &'static str) -> bool>,
    /// Hostile nodes that hand over every bundle with a spoiled signature (same hash).
    forge: BTreeSet<u32>,
    /// (to, message kind) of every delivered message.
    delivered: Vec<(u32, &'static str)>,
    applied: Vec<(u32, u64)>,
    /// (node, time) of every apply handed out, in order.
    apply_times: Vec<(u32, u64)>,
    /// Which (node, version) turns the node unhealthy once applied.
    sick: Box<dyn Fn(u32, u64) -> bool>,
    /// Which (node, version) fails to apply.
    fail: Box<dyn Fn(u32, u64) -> bool>,
    /// A compromised node and its lie: every zone row it sends, of any zone, says the zone
    /// holds one node, running `version`, healthy, in `wave` (so every earlier wave of the
    /// zone looks empty, hence done).
    liar: Option<(u32, u64, u8)>,
    /// The liar's own zone's row says instead that every member it counts is on the
    /// version before, in wave 0 (the stall: nodes of other zones wait for wave 0).
    liar_stalls: bool,
    /// The stalling row claims this many times the members it counts (1: as many).
    liar_inflates: u32,
    /// A second liar, of the first one's zone: asked for its zone's statuses of a wave, it
    /// leaves out every member that does not run the version (the wave looks done).
    short_lister: Option<u32>,
}

impl Net {
    fn new(n: u32, cfg: Config) -> Net {
        let keys: Vec<VerifyingKey> = (0..n).map(|i| node_key(i).verifying_key()).collect();
        let door = PlainDoor {
            trust: TrustRoot::new("prod", vec![release_key().verifying_key()], 1),
            node_key: Box::new(move |p: &u32| keys.get(*p as usize).copied())
                as Box<dyn Fn(&u32) -> Option<VerifyingKey>>,
            check: MemoCheck::new(crate::trust::Ed25519Check),
        };
        let nodes = (0..n)
            .map(|i| Node::new(cfg.clone(), i, node_key(i), Labels::new()))
            .collect();
        let mut net = Net {
            nodes,
            door,
            rng: StdRng::seed_from_u64(42),
            queue: BinaryHeap::new(),
            pending: Default::default(),
            seq: 0,
            now: 0,
            cut: BTreeSet::new(),
            withhold: BTreeSet::new(),
            drop: Box::new(|_, _, _| false),
            forge: BTreeSet::new(),
            delivered: Vec::new(),
            applied: Vec::new(),
            apply_times: Vec::new(),
            sick: Box::new(|_, _| false),
            fail: Box::new(|_, _| false),
            liar: None,
            liar_stalls: false,
            liar_inflates: 1,
            short_lister: None,
        };
        for i in 0..n {
            let bootstrap = if i == 0 {
                vec![]
            } else {
                vec![net.rng_below(i)]
            };
            net.push(i as u64 * 5, i, Event::Start { bootstrap });
        }
        net
    }

    fn rng_below(&mut self, n: u32) -> u32 {
        below(&mut self.rng, n as usize) as u32
    }

    fn push(&mut self, at: u64, to: u32, ev: Event<u32>) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, to)));
        self.pending.insert(self.seq, (to, ev));
    }

    fn run_until(&mut self, until: u64) {
        while let Some(Reverse((at, seq, to))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let (_, ev) = self.pending.remove(&seq).unwrap();
            if let Event::Message { msg, .. } = &ev {
                self.delivered.push((to, msg.kind()));
            }
            let now = Now {
                mono_ms: at,
                wall_ms: WALL0 + at,
            };
            let mut out = Vec::new();
            self.nodes[to as usize].handle(ev, now, &mut self.rng, &self.door, &mut out);
            for a in out {
                match a {
                    Action::Send { to: dest, msg } => {
                        if self.cut.contains(&to)
                            || self.cut.contains(&dest)
                            || (self.drop)(to, dest, msg.kind())
                        {
                            continue;
                        }
                        if self.withhold.contains(&to)
                            && matches!(msg, Message::Bundle(_) | Message::Push { .. })
                        {
                            continue;
                        }
                        let msg = if self.forge.contains(&to) {
                            match msg {
                                Message::Bundle(WireBundle(b)) => {
                                    Message::Bundle(WireBundle(forged(&b)))
                                }
                                Message::Push {
                                    bundle: WireBundle(b),
                                    hops,
                                } => Message::Push {
                                    bundle: WireBundle(forged(&b)),
                                    hops,
                                },
                                m => m,
                            }
                        } else {
                            msg
                        };
                        let msg = match self.liar {
                            Some((liar, version, wave)) if liar == to => {
                                let c = self.nodes[0].config();
                                let bits = (c.zone_bits, c.group_bits);
                                let stall = self.liar_stalls.then_some(self.liar_inflates);
                                lie(msg, liar, version, wave, bits, stall)
                            }
                            _ => msg,
                        };
                        let msg = match msg {
                            Message::WaveStatuses {
                                zone,
                                channel,
                                version,
                                wave,
                                statuses,
                                ..
                            } if self.short_lister == Some(to) => {
                                let statuses: Vec<_> = statuses
                                    .into_iter()
                                    .filter(|s| {
                                        s.body.channels.iter().any(|c| {
                                            c.version == version && c.state == ApplyState::Applied
                                        })
                                    })
                                    .collect();
                                Message::WaveStatuses {
                                    zone,
                                    channel,
                                    version,
                                    wave,
                                    members: statuses.len() as u32,
                                    statuses,
                                }
                            }
                            m => m,
                        };
                        // Every message crosses the wire as bytes.
                        let bytes = msg.encode();
                        let msg = Message::<u32>::decode(&bytes).expect("own messages decode");
                        self.push(at + LATENCY, dest, Event::Message { from: to, msg });
                    }
                    Action::WakeAt(t) => self.push(t, to, Event::Tick),
                    Action::Apply { bundle, .. } => {
                        let version = bundle.header().version;
                        self.applied.push((to, version));
                        self.apply_times.push((to, at));
                        let ev = Event::ApplyFinished {
                            channel: bundle.header().channel.clone(),
                            version,
                            ok: !(self.fail)(to, version),
                        };
                        self.push(at + 50, to, ev);
                        let sick = (self.sick)(to, version);
                        let ev = Event::Health {
                            healthy: !sick,
                            failing: if sick { vec!["app".into()] } else { vec![] },
                        };
                        self.push(at + 60, to, ev);
                    }
                    _ => {}
                }
            }
        }
        self.now = until;
    }

    fn publish(&mut self, at: u64, node: u32, b: Arc<Bundle>) {
        self.push(at, node, Event::Publish(b));
    }
}

/// A liar's rewrite of a message it sends (see `Net::liar`). It signs with its own node key
/// (it is admitted) what it may: its own zone's row, forged. Rows of other zones it forges
/// two ways: under their real issuer (the signature no longer verifies) or under its own
/// name (signed, but it is not of that zone).
fn lie(
    msg: Message<u32>,
    liar: u32,
    version: u64,
    wave: u8,
    (zone_bits, group_bits): (u8, u8),
    stall: Option<u32>,
) -> Message<u32> {
    // Its own zone's row, and with groups its own group's row: both its to sign.
    let own = |zone: u32| {
        fleet::zone_of(zone_bits, &liar) == zone
            || group_bits > 0 && zone == fleet::GROUP_FLAG | fleet::group_of(group_bits, &liar)
    };
    let forge = |rows: Vec<Arc<fleet::ZoneRow<u32>>>| -> Vec<Arc<fleet::ZoneRow<u32>>> {
        rows.into_iter()
            .map(|r| {
                let row = fleet::ZoneRow {
                    issued_ms: r.issued_ms + 1,
                    counts: vec![fleet::Count {
                        channel: "web".into(),
                        version,
                        state: ApplyState::Applied,
                        healthy: true,
                        target: version,
                        wave,
                        n: 1,
                    }],
                    ..(*r).clone()
                };
                Arc::new(if let Some(times) = stall.filter(|_| own(r.zone)) {
                    // It may take its own forged row back from a peer: capped, so that its
                    // claim does not grow with every round trip.
                    let members = r.members.min(64).saturating_mul(times);
                    fleet::ZoneRow {
                        issuer: liar,
                        // Far ahead of any honest row: it holds its zone's newest row, as a
                        // liar re-issuing every round would.
                        issued_ms: r.issued_ms + 600_000,
                        counts: vec![fleet::Count {
                            channel: "web".into(),
                            version: version - 1,
                            state: ApplyState::Held,
                            healthy: true,
                            target: version,
                            wave: 0,
                            n: members,
                        }],
                        members,
                        ..row
                    }
                    .sign(&node_key(liar))
                } else if own(r.zone) {
                    fleet::ZoneRow {
                        issuer: liar,
                        ..row
                    }
                    .sign(&node_key(liar))
                } else if r.zone % 2 == 0 {
                    row
                } else {
                    fleet::ZoneRow {
                        issuer: liar,
                        ..row
                    }
                    .sign(&node_key(liar))
                })
            })
            .collect()
    };
    match msg {
        Message::Digest(mut d) => {
            // Digests name rows: it names each one newer, so that peers ask for its forgery.
            for r in d.rows.iter_mut() {
                r.1 += 1;
            }
            Message::Digest(d)
        }
        Message::Rows(rows) => Message::Rows(forge(rows)),
        Message::RowWant { zones, rows } => Message::RowWant {
            zones,
            rows: forge(rows),
        },
        m => m,
    }
}

#[test]
fn a_version_reaches_every_node_about_once_down_the_push_tree() {
    let mut net = Net::new(40, Config::default());
    net.run_until(5_000);
    for n in &net.nodes {
        assert!(
            !n.active_peers().is_empty(),
            "node {:?} has no peers",
            n.id()
        );
        assert!(n.active_peers().len() <= n.config().active_size);
    }
    net.publish(5_000, 3, bundle(1, &release_key()));
    net.run_until(6_000);
    for n in &net.nodes {
        assert_eq!(n.held("web").map(|h| h.0), Some(1), "node {}", n.id());
        assert!(n.stats.bundles_received <= 1);
        assert_eq!(n.applied("web"), Some((1, ApplyState::Applied)));
    }
    // The push tree was built before the release, so it is pushed (one latency per hop),
    // not fetched; a few copies cross on the way (both ends of a tree link push, and the
    // publisher's copy to the root meets the one coming up the tree).
    let count = |kind: &str| net.delivered.iter().filter(|(_, k)| *k == kind).count();
    let (pushed, fetched) = (count("push"), count("bundle"));
    eprintln!("pushed {pushed}, fetched {fetched}");
    assert!(pushed >= 35, "pushed {pushed}, fetched {fetched}");
    assert!(
        pushed + fetched <= 39 + 4,
        "about one bundle transfer per node but the publisher: {pushed} + {fetched}"
    );
}

#[test]
fn a_quick_apply_costs_one_signed_status_per_node() {
    // Pending alone waits for the next round; the apply (50 ms here) ends first, so each node
    // signs (and every other node verifies) one status for the release, not two.
    let mut net = Net::new(10, Config::default());
    net.run_until(5_000);
    let before: Vec<u64> = net.nodes.iter().map(|n| n.stats.statuses_signed).collect();
    net.publish(5_000, 3, bundle(1, &release_key()));
    net.run_until(9_000);
    for (n, b) in net.nodes.iter().zip(before) {
        assert_eq!(n.applied("web"), Some((1, ApplyState::Applied)));
        assert_eq!(
            n.stats.statuses_signed - b,
            1,
            "node {} signed more than one status for one release",
            n.id()
        );
    }
}

#[test]
fn a_new_status_goes_to_connected_zone_mates_first() {
    // In a fleet of one zone every active peer is a zone mate: a changed status is pushed
    // over those links (open connections in the agent), not to random members that would
    // each cost a new connection.
    let mut net = Net::new(30, Config::default());
    net.run_until(5_000);
    let k = 7;
    let active = net.nodes[k].active_peers();
    assert!(
        active.len() >= 3,
        "node {k} has {} active peers",
        active.len()
    );
    let now = Now {
        mono_ms: 5_001,
        wall_ms: WALL0 + 5_001,
    };
    let mut out = Vec::new();
    let ev = Event::Health {
        healthy: false,
        failing: vec!["app".into()],
    };
    net.nodes[k].handle(ev, now, &mut net.rng, &net.door, &mut out);
    let to: Vec<u32> = out
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                msg: Message::Statuses(list),
            } if list
                .iter()
                .any(|s| s.body.node == k as u32 && !s.body.healthy) =>
            {
                Some(*to)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        to.len(),
        Config::default().status_fanout,
        "pushed to {to:?}"
    );
    assert!(
        to.iter().all(|p| active.contains(p)),
        "pushed to {to:?}, active peers {active:?}"
    );
}

#[test]
fn every_node_reapplies_on_its_interval_with_jitter() {
    let cfg = Config {
        reapply_ms: Some(5_000),
        ..Config::default()
    };
    let mut net = Net::new(10, cfg);
    net.run_until(2_000);
    net.publish(2_000, 0, bundle(1, &release_key()));
    net.run_until(60_000);
    let mut firsts_after = Vec::new();
    for n in 0..10u32 {
        let times: Vec<u64> = net
            .apply_times
            .iter()
            .filter(|(p, _)| *p == n)
            .map(|(_, t)| *t)
            .collect();
        // One apply of the new version, then re-applies 4.5-5.5 s apart (5 s +- 10%).
        assert!(times.len() >= 9, "node {n} applied {} times", times.len());
        for w in times[1..].windows(2) {
            let gap = w[1] - w[0];
            assert!(
                (4_400..=5_600).contains(&gap),
                "node {n}: re-applies {gap} ms apart"
            );
        }
        firsts_after.push(times[2] - times[1]);
    }
    firsts_after.sort();
    firsts_after.dedup();
    assert!(
        firsts_after.len() > 1,
        "no jitter: every node re-applies in step"
    );
}

#[test]
fn a_small_fleet_sees_every_node() {
    let mut net = Net::new(30, Config::default());
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(20_000);
    for n in &net.nodes {
        let counts = n.fleet().counts();
        assert_eq!(counts.nodes, 30, "node {} sees {}", n.id(), counts.nodes);
        assert_eq!(counts.applied_at_least("web", 1), 30, "node {}", n.id());
    }
}

#[test]
fn zones_summarise_a_larger_fleet_exactly() {
    let cfg = Config {
        zone_bits: 2,
        ..Config::default()
    };
    let mut net = Net::new(80, cfg);
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(40_000);
    for n in &net.nodes {
        let counts = n.fleet().counts();
        assert!(n.fleet().zone.len() < 80);
        let truth = net
            .nodes
            .iter()
            .filter(|m| n.fleet().zone_of(m.id()) == n.fleet().my_zone)
            .count();
        assert_eq!(n.fleet().zone.len(), truth, "zone table of node {}", n.id());
        let rows: Vec<(u32, u32)> = n
            .fleet()
            .rows
            .values()
            .map(|r| (r.zone, r.members))
            .collect();
        assert_eq!(counts.nodes, 80, "node {} rows {:?}", n.id(), rows);
        assert_eq!(counts.applied_at_least("web", 1), 80, "node {}", n.id());
    }
}

#[test]
fn any_nodes_status_is_fetched_on_demand_from_its_zone() {
    let cfg = Config {
        zone_bits: 2,
        ..Config::default()
    };
    let mut net = Net::new(80, cfg);
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(20_000);
    let asker = 0u32;
    let zone_of = |n: &Node<u32>, p: u32| n.fleet().zone_of(&p);
    let my_zone = net.nodes[0].fleet().my_zone;
    // A healthy node of another zone: only its zone's row speaks for it here.
    let far = (1..80u32)
        .find(|p| zone_of(&net.nodes[0], *p) != my_zone && net.nodes[0].fleet().status(p).is_none())
        .expect("a node of another zone whose status node 0 does not hold");
    assert!(net.nodes[0].status_of(&far).is_none());
    net.push(20_000, asker, Event::WantStatus(far));
    net.run_until(21_000);
    let got = net.nodes[0]
        .status_of(&far)
        .unwrap_or_else(|| panic!("node {far}'s status did not arrive within a second"));
    assert_eq!(got.body.node, far);
    assert!(got
        .body
        .channels
        .iter()
        .any(|c| c.channel == "web" && c.version == 1));
    // What arrived is the node's own signed status, as its zone holds it.
    let own = net.nodes[far as usize].fleet().status(&far).cloned();
    let held_in_zone = (0..80u32)
        .filter(|q| *q != far && zone_of(&net.nodes[0], *q) == zone_of(&net.nodes[0], far))
        .filter_map(|q| net.nodes[q as usize].fleet().status(&far).cloned())
        .max_by_key(|s| s.body.issued_ms);
    assert_eq!(
        Some(got.body.issued_ms),
        own.or(held_in_zone).map(|s| s.body.issued_ms)
    );
    // The own zone's statuses are all here: nothing is asked for them.
    let mate = (1..80u32)
        .find(|p| zone_of(&net.nodes[0], *p) == my_zone)
        .expect("a zone mate");
    let before = net.delivered.len();
    net.push(21_000, asker, Event::WantStatus(mate));
    net.run_until(21_001);
    assert!(net.delivered[before..]
        .iter()
        .all(|(_, kind)| *kind != "zone_want"));
    assert!(net.nodes[0].status_of(&mate).is_some());
}

#[test]
fn an_untrusted_bundle_is_refused_and_never_forwarded() {
    let mut net = Net::new(20, Config::default());
    net.run_until(3_000);
    let rogue = SigningKey::from_bytes(&[66; 32]);
    net.publish(3_000, 5, bundle(9, &rogue));
    let before = net.delivered.len();
    net.run_until(8_000);
    assert!(net.nodes.iter().all(|n| n.held("web").is_none()));
    assert_eq!(net.nodes[5].stats.refused.get("untrusted"), Some(&1));
    let spread = net.delivered[before..]
        .iter()
        .filter(|(_, k)| matches!(*k, "announce" | "bundle" | "fetch"))
        .count();
    assert_eq!(spread, 0);
}

#[test]
fn rollback_is_refused_and_counted() {
    let mut net = Net::new(5, Config::default());
    net.run_until(2_000);
    net.publish(2_000, 0, bundle(2, &release_key()));
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(4_000);
    assert_eq!(net.nodes[0].stats.refused.get("rolled_back"), Some(&1));
    assert!(net.nodes.iter().all(|n| n.held("web").unwrap().0 == 2));
}

#[test]
fn a_cut_off_node_catches_up_without_a_republish() {
    let mut net = Net::new(20, Config::default());
    net.run_until(3_000);
    net.cut.insert(7);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(30_000);
    assert_eq!(net.nodes[7].held("web"), None);
    assert!(net
        .nodes
        .iter()
        .filter(|n| *n.id() != 7)
        .all(|n| n.held("web").is_some()));
    net.cut.clear();
    net.run_until(75_000);
    assert_eq!(net.nodes[7].held("web").map(|h| h.0), Some(1));
    assert_eq!(net.nodes[7].applied("web"), Some((1, ApplyState::Applied)));
}

#[test]
fn a_node_gone_silent_leaves_the_views_and_its_status_ages_out() {
    // Node 7 falls silent (every link to it cut). Its neighbours stop hearing it and drop it
    // from their active views after the peer timeout; its status, no longer refreshed, ages
    // out of every fleet view after the status TTL, while the others' refreshed ones stay.
    let cfg = Config {
        status_ttl_ms: 30_000,
        status_refresh_ms: 10_000,
        ..Config::default()
    };
    let (ttl, timeout) = (cfg.status_ttl_ms, cfg.peer_timeout_ms);
    let mut net = Net::new(20, cfg);
    net.run_until(5_000);
    let knew: Vec<u32> = (0..20u32)
        .filter(|i| net.nodes[*i as usize].active_peers().contains(&7))
        .collect();
    assert!(!knew.is_empty(), "nobody had node 7 as a neighbour");
    assert!(net.nodes.iter().all(|n| n.fleet().status(&7).is_some()));
    net.cut.insert(7);
    net.run_until(5_000 + 3 * timeout);
    for n in net.nodes.iter().filter(|n| *n.id() != 7) {
        assert!(
            !n.active_peers().contains(&7),
            "node {} still has silent node 7 as a neighbour",
            n.id()
        );
    }
    net.run_until(5_000 + ttl + 15_000);
    for n in net.nodes.iter().filter(|n| *n.id() != 7) {
        assert!(
            n.fleet().status(&7).is_none(),
            "node {} still shows node 7",
            n.id()
        );
        assert_eq!(n.fleet().zone.len(), 19, "node {}'s table", n.id());
    }
}

#[test]
fn a_restarted_node_keeps_its_marks_and_bundles() {
    let mut net = Net::new(6, Config::default());
    net.run_until(2_000);
    net.publish(2_000, 0, bundle(3, &release_key()));
    net.run_until(4_000);
    let saved = net.nodes[4].persisted();
    let now = Now {
        mono_ms: 4_000,
        wall_ms: WALL0 + 4_000,
    };
    let node = Node::restore(
        Config::default(),
        4,
        node_key(4),
        Labels::new(),
        &saved,
        now,
        &net.door,
    );
    net.nodes[4] = node;
    assert_eq!(net.nodes[4].held("web").map(|h| h.0), Some(3));
    net.push(4_000, 4, Event::Start { bootstrap: vec![0] });
    net.publish(4_100, 4, bundle(2, &release_key()));
    net.run_until(6_000);
    assert_eq!(net.nodes[4].stats.refused.get("rolled_back"), Some(&1));
}

#[test]
fn a_forged_status_is_refused() {
    let mut net = Net::new(4, Config::default());
    net.run_until(8_000);
    let body = StatusBody {
        node: 2u32,
        issued_ms: WALL0 + 20_000,
        labels: Labels::new(),
        channels: vec![],
        last_apply: None,
        drift_detected: 0,
        drift_corrected: 0,
        healthy: false,
        failing_checks: vec![],
    };
    let forged = Arc::new(body.sign(&node_key(3))); // node 3 speaking for node 2
    net.push(
        8_000,
        1,
        Event::Message {
            from: 3,
            msg: Message::Statuses(vec![forged]),
        },
    );
    net.run_until(8_100);
    assert_eq!(
        net.nodes[1].stats.refused.get("bad_status_signature"),
        Some(&1)
    );
    assert!(net.nodes[1].fleet().status(&2).unwrap().body.healthy);
}

#[test]
fn oversized_lists_and_garbage_are_refused_while_decoding() {
    let big = Message::<u32>::ShuffleReply {
        peers: (0..1000).collect(),
    };
    let err = Message::<u32>::decode(&big.encode()).unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
    for len in 0..64 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let _ = Message::<u32>::decode(&junk);
    }
    let mut bytes = Message::<u32>::Fetch(crate::bundle::BundleHash([1; 32])).encode();
    bytes[4] = 99; // a future format version
    assert!(Message::<u32>::decode(&bytes)
        .unwrap_err()
        .to_string()
        .contains("format version 99"));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut framed = b"DLWM\x01\x00".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = Message::<u32>::decode(&framed);
            let _ = Message::<u32>::decode(&bytes);
        }

        #[test]
        fn announcements_round_trip(version in any::<u64>(), hops in any::<u16>(), ch in "[a-z]{1,12}") {
            let m = Message::<u32>::Announce(vec![Announcement {
                channel: ch, version, hash: crate::bundle::BundleHash([3; 32]), hops,
            }]);
            prop_assert_eq!(Message::<u32>::decode(&m.encode()).unwrap(), m);
        }
    }
}

fn rollout_bundle(
    version: u64,
    waves: Vec<f64>,
    bake_secs: u64,
    max_unhealthy: f64,
) -> Arc<Bundle> {
    let policy = crate::definition::RolloutPolicy {
        waves,
        bake_secs,
        max_unhealthy,
        on_failure: crate::definition::OnFailure::Rollback,
    };
    bundle_with(version, &release_key(), Some(policy))
}

fn wave(node: u32, version: u64, waves: &[f64]) -> u8 {
    rollout::wave_of(node.stable_hash(), version, waves)
}

#[test]
fn a_good_rollout_passes_every_wave_in_order_after_each_bake() {
    let waves = vec![0.1, 0.5, 1.0];
    let mut net = Net::new(40, Config::default());
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(8_000);
    net.publish(8_000, 0, rollout_bundle(2, waves.clone(), 3, 0.2));
    // Record when each node applied v2.
    let mut first: std::collections::BTreeMap<u32, u64> = Default::default();
    let mut t = 8_000;
    while t < 40_000 {
        t += 100;
        net.run_until(t);
        for n in &net.nodes {
            if n.applied("web") == Some((2, ApplyState::Applied)) {
                first.entry(*n.id()).or_insert(t);
            }
        }
    }
    assert_eq!(first.len(), 40, "every node applied v2: {first:?}");
    let last_of = |w: u8| {
        first
            .iter()
            .filter(|(n, _)| wave(**n, 2, &waves) == w)
            .map(|(_, t)| *t)
            .max()
    };
    let first_of = |w: u8| {
        first
            .iter()
            .filter(|(n, _)| wave(**n, 2, &waves) == w)
            .map(|(_, t)| *t)
            .min()
    };
    for w in 1..3u8 {
        if let (Some(prev_done), Some(start)) = (last_of(w - 1), first_of(w)) {
            assert!(
                start >= prev_done + 3_000,
                "wave {w} started at {start} before wave {} baked (complete at {prev_done})",
                w - 1
            );
        }
    }
}

#[test]
fn a_bad_rollout_halts_in_its_first_wave_and_rolls_back() {
    let waves = vec![0.2, 0.6, 1.0];
    let mut net = Net::new(40, Config::default());
    // Half of the nodes that run v2 turn unhealthy.
    net.sick = Box::new(|n, v| v == 2 && n % 2 == 0);
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(8_000);
    net.publish(8_000, 0, rollout_bundle(2, waves.clone(), 5, 0.1));
    net.run_until(40_000);
    let touched: BTreeSet<u32> = net
        .applied
        .iter()
        .filter(|(_, v)| *v == 2)
        .map(|(n, _)| *n)
        .collect();
    assert!(!touched.is_empty(), "wave 0 applied v2");
    for n in &touched {
        assert_eq!(
            wave(*n, 2, &waves),
            0,
            "node {n} of a later wave applied a halted release"
        );
    }
    for n in &net.nodes {
        let r = n.rollout("web").expect("the rollout is known everywhere");
        assert_eq!(
            r.halted.map(|h| h.0),
            Some(0),
            "node {} did not see the halt in wave 0",
            n.id()
        );
        assert_eq!(n.held("web").map(|h| h.0), Some(2), "the mark stays at v2");
        assert_eq!(
            n.applied("web"),
            Some((1, ApplyState::Held)),
            "node {} runs v1 with v2 held",
            n.id()
        );
    }
    // A newer signed version supersedes the halted one everywhere.
    net.publish(40_000, 0, bundle(3, &release_key()));
    net.run_until(60_000);
    let v3 = net.applied.iter().filter(|(_, v)| *v == 3).count();
    assert_eq!(v3, 40, "each node applies v3 once, not over and over");
    for n in &net.nodes {
        assert_eq!(
            n.applied("web"),
            Some((3, ApplyState::Applied)),
            "node {} moved on to v3",
            n.id()
        );
    }
}

#[test]
fn a_node_restarted_mid_bake_does_not_jump_the_waves_its_empty_view_hides() {
    // A restarted node's fleet view holds only its own status until gossip refills it: every
    // earlier wave looks empty. Empty waves bake on the node's own clock like complete ones,
    // so the node waits at least the bake time, by when its view shows the real waves.
    let waves = vec![0.1, 0.5, 1.0];
    let mut net = Net::new(40, Config::default());
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(8_000);
    net.publish(8_000, 0, rollout_bundle(2, waves.clone(), 10, 0.2));
    net.run_until(11_000);
    // Wave 0 runs v2 and bakes until at least 18 s; restart a node of the last wave now.
    let late = (0..40u32)
        .find(|n| wave(*n, 2, &waves) == 2 && net.nodes[*n as usize].held("web").is_some())
        .expect("a node of wave 2 holds v2");
    let saved = net.nodes[late as usize].persisted();
    let now = Now {
        mono_ms: 11_000,
        wall_ms: WALL0 + 11_000,
    };
    net.nodes[late as usize] = Node::restore(
        Config::default(),
        late,
        node_key(late),
        Labels::new(),
        &saved,
        now,
        &net.door,
    );
    net.push(11_000, late, Event::Start { bootstrap: vec![0] });
    net.run_until(11_000);
    let r = net.nodes[late as usize]
        .rollout("web")
        .expect("judged at start");
    assert!(
        !r.finished,
        "an empty view is not a finished rollout (the node would stop judging it): {r:?}"
    );
    net.run_until(16_000);
    assert!(
        !net.applied.contains(&(late, 2)),
        "node {late} of wave 2 applied v2 during wave 0's bake, right after its restart"
    );
    net.run_until(60_000);
    assert!(
        net.applied.contains(&(late, 2)),
        "and applies it in its turn"
    );
}

#[test]
fn a_restarted_node_does_not_overwrite_its_zones_summary_from_an_empty_table() {
    // After a restart a node's zone table holds only itself, so it takes itself for the zone
    // leader; a summary it issued then (1 member) would replace the real one everywhere, and
    // rollouts, which advance on summaries, would judge half the fleet missing.
    let cfg = Config {
        zone_bits: 1,
        ..Config::default()
    };
    let mut net = Net::new(40, cfg.clone());
    net.run_until(20_000);
    let sizes: Vec<u32> = (0..2)
        .map(|z| net.nodes.iter().filter(|n| n.fleet().my_zone == z).count() as u32)
        .collect();
    // Restart ten nodes, one every 2 s, each with only what it persisted.
    for (k, restarted) in (1..=10u32).enumerate() {
        let at = 20_000 + 2_000 * k as u64;
        net.run_until(at);
        let saved = net.nodes[restarted as usize].persisted();
        let now = Now {
            mono_ms: at,
            wall_ms: WALL0 + at,
        };
        net.nodes[restarted as usize] = Node::restore(
            cfg.clone(),
            restarted,
            node_key(restarted),
            Labels::new(),
            &saved,
            now,
            &net.door,
        );
        net.push(at, restarted, Event::Start { bootstrap: vec![0] });
        for t in (at + 200..=at + 2_000).step_by(200) {
            net.run_until(t);
            for n in &net.nodes {
                for (zone, row) in &n.fleet().rows {
                    let size = sizes[*zone as usize];
                    assert!(
                        row.members + 1 >= size,
                        "at {t} ms node {} holds a row of zone {zone} with {} members (of {size}), \
                         issued by {} (node {restarted} restarted at {at} ms)",
                        n.id(),
                        row.members,
                        row.issuer
                    );
                }
            }
        }
    }
}

#[test]
fn peers_that_withhold_a_bundle_are_abandoned_for_others() {
    // A third of the fleet announces versions it never hands over (slow retrieval, TUF):
    // every fetch from one of them times out and moves on to another announcer.
    let mut net = Net::new(30, Config::default());
    net.withhold = (1..=10).collect();
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(8_000);
    for n in &net.nodes {
        assert_eq!(n.held("web").map(|h| h.0), Some(1), "node {}", n.id());
    }
}

/// The same signed bytes (so the same hash) under a spoiled signature: the last byte of a
/// bundle is the last byte of its last signature.
fn forged(b: &Bundle) -> Arc<Bundle> {
    let mut bytes = b.encode();
    *bytes.last_mut().unwrap() ^= 0x01;
    let f = Bundle::decode(&bytes, usize::MAX).unwrap();
    assert_eq!(f.hash(), b.hash());
    Arc::new(f)
}

#[test]
fn a_forged_copy_under_the_genuine_hash_does_not_keep_the_genuine_bundle_out() {
    // A third of the fleet hands over every bundle with a spoiled signature (malicious
    // peers, TUF). The copy has the genuine bundle's hash: refusing that hash for good would
    // keep the genuine bundle out of every node that met a forger first.
    let mut net = Net::new(30, Config::default());
    net.forge = (1..=10).collect();
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(10_000);
    for n in net.nodes.iter().filter(|n| !net.forge.contains(n.id())) {
        assert_eq!(n.held("web").map(|h| h.0), Some(1), "node {}", n.id());
    }
    let refused: u64 = net.nodes.iter().map(|n| refused(n, "bad_signature")).sum();
    assert!(refused > 0, "no forged copy was ever handed over");
}

#[test]
fn forgotten_nodes_leave_every_view() {
    let mut net = Net::new(12, Config::default());
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(15_000);
    assert!(net.nodes.iter().all(|n| n.fleet().status(&9).is_some()));
    // Node 9 is revoked: it can no longer speak (the door would refuse it), and every node
    // is told to forget it.
    net.cut.insert(9);
    for i in 0..12 {
        net.push(15_000, i, Event::Forget(vec![9]));
    }
    net.run_until(25_000);
    for n in net.nodes.iter().filter(|n| *n.id() != 9) {
        assert!(
            n.fleet().status(&9).is_none(),
            "node {} still holds 9",
            n.id()
        );
        assert!(!n.active_peers().contains(&9), "node {}", n.id());
        assert_eq!(n.fleet().counts().nodes, 11, "node {}", n.id());
    }
}

/// Restart `i` from what it persisted, at `at`, through node 0.
fn restart(net: &mut Net, cfg: &Config, i: u32, at: u64) {
    let saved = net.nodes[i as usize].persisted();
    let now = Now {
        mono_ms: at,
        wall_ms: WALL0 + at,
    };
    net.nodes[i as usize] = Node::restore(
        cfg.clone(),
        i,
        node_key(i),
        Labels::new(),
        &saved,
        now,
        &net.door,
    );
    net.push(at, i, Event::Start { bootstrap: vec![0] });
}

#[test]
fn nodes_with_partial_views_do_not_jump_waves() {
    // Seed 6 of simulations/rollout-crash.toml, made deterministic. Wave 0 cannot complete:
    // one of its nodes is cut off before v2 is published, so every node that sees it knows
    // that not everyone received v2 and no later wave may start. Then three nodes restart
    // with their zone traffic cut off from their zones: two of zone `a` that only sync with
    // each other, one of zone `b` alone. Their zone tables stay near empty, so each takes
    // itself for its zone's leader. Before the fix, the lone node's one-member row replaced
    // zone b's real summary everywhere (rows were compared by issue time alone), and the
    // pair, seeing three nodes that all hold v2 and earlier waves empty, baked those empty
    // waves and applied v2 in wave order's face.
    let waves = vec![0.1, 0.5, 1.0];
    let cfg = Config {
        zone_bits: 1,
        ..Config::default()
    };
    let mut net = Net::new(40, cfg.clone());
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(7_000);
    let zone = |i: u32| net.nodes[i as usize].fleet().zone_of(&i);
    let w = |i: u32| wave(i, 2, &waves);
    let blocker = (1..40u32).find(|i| w(*i) == 0).expect("a wave-0 node");
    let za = zone(blocker);
    let later: Vec<u32> = (1..40u32).filter(|i| w(*i) > 0 && *i != blocker).collect();
    let pair: Vec<u32> = later
        .iter()
        .copied()
        .filter(|i| zone(*i) == za)
        .take(2)
        .collect();
    let lone = *later
        .iter()
        .find(|i| zone(**i) != za)
        .expect("a node of zone b");
    assert_eq!(pair.len(), 2);
    net.cut.insert(blocker);
    net.publish(8_000, 0, rollout_bundle(2, waves.clone(), 5, 0.2));
    net.run_until(12_000);
    let island: Vec<u32> = pair.iter().copied().chain([lone]).collect();
    for i in &island {
        assert_eq!(net.nodes[*i as usize].held("web").map(|h| h.0), Some(2));
        restart(&mut net, &cfg, *i, 12_000);
    }
    let (p0, p1) = (pair[0], pair[1]);
    net.drop = Box::new(move |from, to, kind| {
        let zone_kind = matches!(kind, "zone_sync" | "zone_want" | "statuses");
        let inside = |x: u32| x == lone || x == p0 || x == p1;
        let paired = (from == p0 && to == p1) || (from == p1 && to == p0);
        zone_kind && (inside(from) || inside(to)) && !paired
    });
    net.run_until(60_000);
    let jumped: Vec<(u32, u8)> = net
        .applied
        .iter()
        .filter(|(i, v)| *v == 2 && w(*i) > 0)
        .map(|(i, _)| (*i, w(*i)))
        .collect();
    assert!(
        jumped.is_empty(),
        "nodes of later waves applied v2 while wave 0 had not all received it: {jumped:?} \
         (islands {island:?}, blocker {blocker})"
    );
    // Once the links heal, the rollout goes on, wave by wave.
    net.cut.clear();
    net.drop = Box::new(|_, _, _| false);
    net.run_until(200_000);
    for i in 0..40u32 {
        assert!(net.applied.contains(&(i, 2)), "node {i} never applied v2");
    }
}

#[test]
fn one_sick_node_does_not_halt_a_rollout_two_do() {
    // 40 nodes, one zone: wave 0 holds about 20. One sick node of 20 is 5%, over the 4%
    // threshold, but one node's signed status alone halts nothing; two do.
    let waves = vec![0.5, 1.0];
    let in_wave0: Vec<u32> = (0..40).filter(|n| wave(*n, 2, &waves) == 0).collect();
    assert!(in_wave0.len() >= 10, "{in_wave0:?}");
    for sick_nodes in [1usize, 2] {
        let mut net = Net::new(40, Config::default());
        let sick: BTreeSet<u32> = in_wave0.iter().copied().take(sick_nodes).collect();
        net.sick = Box::new(move |n, v| v == 2 && sick.contains(&n));
        net.run_until(3_000);
        net.publish(3_000, 0, bundle(1, &release_key()));
        net.run_until(8_000);
        net.publish(8_000, 0, rollout_bundle(2, waves.clone(), 2, 0.04));
        net.run_until(30_000);
        for n in &net.nodes {
            let r = n.rollout("web").expect("the rollout is known everywhere");
            if sick_nodes == 1 {
                assert_eq!(r.halted, None, "node {} halted on one sick node", n.id());
                assert_eq!(n.applied("web"), Some((2, ApplyState::Applied)));
            } else {
                assert_eq!(
                    r.halted.map(|h| (h.0, h.1)),
                    Some((0, 2)),
                    "node {} did not halt on two sick nodes",
                    n.id()
                );
                assert_ne!(n.applied("web").map(|a| a.0), Some(2), "node {}", n.id());
            }
        }
    }
}

#[test]
fn a_liars_rows_do_not_advance_a_node_whose_own_zone_disagrees() {
    // Four zones. The wave-0 members of one zone fail to apply v2, so that zone's wave 0
    // never completes. A liar elsewhere rewrites every row it sends to say each zone holds
    // one node running v2 in the last wave: every earlier wave looks empty, hence done. No
    // node of the stuck zone may move past wave 0 on that word: its own members' signed
    // statuses show wave 0 unfinished. Nor may nodes of other zones: the liar cannot sign
    // the stuck zone's row (it is not of that zone), so they hold the honest one.
    let cfg = Config {
        zone_bits: 2,
        ..Config::default()
    };
    let waves = vec![0.2, 0.6, 1.0];
    let mut net = Net::new(80, cfg);
    let zone_of = |n: u32| fleet::zone_of(2, &n);
    let stuck_zone = (0..4u32)
        .max_by_key(|z| {
            (0..80u32)
                .filter(|n| zone_of(*n) == *z && wave(*n, 2, &waves) == 0)
                .count()
        })
        .unwrap();
    let liar = (0..80u32).find(|n| zone_of(*n) != stuck_zone).unwrap();
    net.fail = Box::new(move |n, v| {
        v == 2 && fleet::zone_of(2, &n) == stuck_zone && wave(n, 2, &[0.2, 0.6, 1.0]) == 0
    });
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(8_000);
    net.liar = Some((liar, 2, 2));
    net.publish(8_000, 0, rollout_bundle(2, waves.clone(), 2, 0.5));
    net.run_until(40_000);
    // The lie was told and refused: rows of other zones, forged under their issuer's name
    // or signed by the liar, are counted by reason and never held.
    let refused = |reason: &str| -> u64 { net.nodes.iter().map(|n| refused(n, reason)).sum() };
    assert!(refused("bad_row_signature") > 0, "no forged signature seen");
    assert!(
        refused("row_issuer_outside_zone") > 0,
        "no row signed from outside"
    );
    for n in &net.nodes {
        for (z, r) in &n.fleet().rows {
            assert_eq!(
                zone_of(r.issuer),
                *z,
                "node {} holds a row of zone {z} by {}",
                n.id(),
                r.issuer
            );
            if r.issuer != liar {
                assert!(
                    r.counts.iter().any(|c| c.wave < 2),
                    "node {} holds a forged row of zone {z}: {:?}",
                    n.id(),
                    r.counts
                );
            }
        }
    }
    // What it may still say: its own zone's row, signed by itself as a member.
    let own_lie_held = net.nodes.iter().any(|n| {
        n.fleet()
            .rows
            .get(&zone_of(liar))
            .is_some_and(|r| r.issuer == liar && r.counts.iter().all(|c| c.wave == 2))
    });
    assert!(own_lie_held, "the liar's own-zone row never took hold");
    for n in &net.nodes {
        if wave(*n.id(), 2, &waves) > 0 {
            assert_ne!(
                n.applied("web").map(|a| a.0),
                Some(2),
                "node {} (zone {}) of wave {} applied v2 on the liar's word",
                n.id(),
                zone_of(*n.id()),
                wave(*n.id(), 2, &waves)
            );
        }
        if zone_of(*n.id()) == stuck_zone && wave(*n.id(), 2, &waves) > 0 {
            assert!(
                matches!(n.rollout("web").and_then(|r| r.waiting), Some((0, _))),
                "node {} waits for wave 0: {:?}",
                n.id(),
                n.rollout("web")
            );
        }
    }
}

/// 40 nodes in two zones, v1 everywhere; then node 1, the liar, signs its own zone's row as
/// every member on v1 in wave 0, claiming `inflates` times its members, and v2 is published
/// with waves 20% / 100%. Runs to 60 s; returns the net, the waves and the liar.
fn stalled_rollout(inflates: u32) -> (Net, Vec<f64>, u32) {
    let cfg = Config {
        zone_bits: 1,
        ..Config::default()
    };
    let waves = vec![0.2, 1.0];
    let mut net = Net::new(40, cfg);
    let liar = 1u32;
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(8_000);
    net.liar = Some((liar, 2, 1));
    net.liar_stalls = true;
    net.liar_inflates = inflates;
    net.publish(8_000, 0, rollout_bundle(2, waves.clone(), 2, 0.5));
    net.run_until(60_000);
    (net, waves, liar)
}

#[track_caller]
fn every_node_applied_v2(net: &Net, waves: &[f64]) {
    for i in 0..net.nodes.len() as u32 {
        assert!(
            net.applied.contains(&(i, 2)),
            "node {i} (zone {}, wave {}) never applied v2: {:?}",
            net.nodes[i as usize].fleet().my_zone,
            wave(i, 2, waves),
            net.nodes[i as usize].rollout("web")
        );
    }
}

#[test]
fn a_liars_own_zone_row_does_not_stall_the_other_zones() {
    // Two zones. A liar signs, as its own zone's row, every member on v1 in wave 0: to the
    // other zone, wave 0 never completes. Its nodes, whose gate that row alone holds, ask a
    // member of the liar's zone (not the liar) for the zone's signed statuses of wave 0 and
    // judge the zone on them: the rollout completes everywhere.
    let (net, waves, liar) = stalled_rollout(1);
    let zone_of = |n: u32| fleet::zone_of(1, &n);
    let stall_held = net.nodes.iter().any(|n| {
        zone_of(*n.id()) != zone_of(liar)
            && n.fleet().rows.get(&zone_of(liar)).is_some_and(|r| {
                r.issuer == liar && r.counts.iter().all(|c| c.wave == 0 && c.version == 1)
            })
    });
    assert!(stall_held, "the liar's stalling row never took hold");
    every_node_applied_v2(&net, &waves);
    let probes = net
        .delivered
        .iter()
        .filter(|(to, kind)| *kind == "wave_want" && *to != liar)
        .count();
    assert!(probes > 0, "no node probed the liar's zone");
    assert!(
        !net.delivered
            .iter()
            .any(|(to, kind)| *kind == "wave_want" && *to == liar),
        "a probe went to the row's issuer"
    );
}

#[test]
fn an_inflated_own_zone_row_does_not_stall_the_rollout() {
    // Two zones of about 20. The liar signs, as its own zone's row, four times its members,
    // every one on v1 in wave 0. Against that row the other zone looks sparse (a third of
    // the typical zone) and the liar's zone mates' tables look short (they hold a quarter
    // of what the row claims, and it outranks their leader's): every view is partial and
    // no wave probe is asked. Members of the liar's zone, asked for their tables' sizes,
    // contradict the row; set aside for the partial-view rule, it still holds wave 0 for
    // the other zone, whose wave probe settles it on signed statuses. Every node applies.
    let (net, waves, liar) = stalled_rollout(4);
    let zone_of = |n: u32| fleet::zone_of(1, &n);
    let table = net.nodes[liar as usize].fleet().zone.len() as u32;
    let inflated_held = net.nodes.iter().all(|n| {
        n.fleet()
            .rows
            .get(&zone_of(liar))
            .is_some_and(|r| r.issuer == liar && r.members >= 3 * table)
    });
    assert!(
        inflated_held,
        "the liar's inflated row did not take hold everywhere"
    );
    every_node_applied_v2(&net, &waves);
    let asked = |to_liar: bool| {
        net.delivered
            .iter()
            .filter(|(to, kind)| *kind == "size_want" && (*to == liar) == to_liar)
            .count()
    };
    assert!(asked(false) > 0, "no node asked the liar's zone mates");
    assert_eq!(asked(true), 0, "a size probe went to the row's issuer");
}

#[test]
fn a_second_liar_that_leaves_laggards_out_does_not_settle_a_probe() {
    // Two zones. The liar's stalling row holds wave 0 for the other zone, whose nodes probe
    // the liar's zone. A wave-0 member of that zone really failed to apply v2, and a second
    // liar there, asked for the wave's statuses, leaves it out: alone, its list says wave 0
    // is done. A list that shows the wave done is checked with a second member, whose
    // laggards' statuses show the failed one: no node of wave 1 may apply v2.
    let cfg = Config {
        zone_bits: 1,
        ..Config::default()
    };
    let waves = vec![0.3, 1.0];
    let mut net = Net::new(40, cfg);
    let zone_of = |n: u32| fleet::zone_of(1, &n);
    let liar = 1u32;
    let victim = (0..40u32)
        .find(|n| *n != liar && zone_of(*n) == zone_of(liar) && wave(*n, 2, &waves) == 0)
        .unwrap();
    let second = (0..40u32)
        .find(|n| *n != liar && *n != victim && zone_of(*n) == zone_of(liar))
        .unwrap();
    net.fail = Box::new(move |n, v| v == 2 && n == victim);
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(8_000);
    net.liar = Some((liar, 2, 1));
    net.liar_stalls = true;
    net.short_lister = Some(second);
    net.publish(8_000, 0, rollout_bundle(2, waves.clone(), 2, 0.5));
    net.run_until(70_000);
    let asked_second = net
        .delivered
        .iter()
        .any(|(to, kind)| *to == second && *kind == "wave_want");
    assert!(asked_second, "the second liar was never asked");
    for n in &net.nodes {
        if zone_of(*n.id()) != zone_of(liar) && wave(*n.id(), 2, &waves) > 0 {
            assert_ne!(
                n.applied("web").map(|a| a.0),
                Some(2),
                "node {} of wave 1 applied v2 on a short list",
                n.id()
            );
        }
    }
}

#[test]
fn a_member_answers_a_peers_want_once_per_few_rounds_and_a_few_per_round() {
    // A member holding a rollout answers a peer's wave want once, declines the same want
    // from the same peer within `ANSWER_WINDOW_ROUNDS` rounds (`want_repeated`), answers it
    // again after, and answers at most 64 wants a round in all (`want_over_budget`). Size
    // wants count alike. Declines are counted, never held against the asker.
    let cfg = Config {
        zone_bits: 1,
        ..Config::default()
    };
    let waves = vec![0.2, 1.0];
    let mut net = Net::new(40, cfg);
    net.run_until(3_000);
    net.publish(3_000, 0, rollout_bundle(2, waves, 2, 0.5));
    net.run_until(10_000);
    let zone_of = |n: u32| fleet::zone_of(1, &n);
    let m = (0..40u32).find(|n| zone_of(*n) == 0).unwrap();
    let ask = |net: &mut Net, from: u32, at: u64, msg: Message<u32>| -> Vec<&'static str> {
        let now = Now {
            mono_ms: at,
            wall_ms: WALL0 + at,
        };
        let mut out = Vec::new();
        let ev = Event::Message { from, msg };
        net.nodes[m as usize].handle(ev, now, &mut net.rng, &net.door, &mut out);
        out.iter()
            .filter_map(|a| match a {
                Action::Send { msg, .. } if msg.kind() != "tree" => Some(msg.kind()),
                Action::Refused { reason, .. } => Some(*reason),
                _ => None,
            })
            .filter(|k| {
                matches!(
                    *k,
                    "wave_statuses" | "zone_size" | "want_repeated" | "want_over_budget"
                )
            })
            .collect()
    };
    let want = || Message::WaveWant {
        zone: 0,
        channel: "web".into(),
        version: 2,
        wave: 0,
    };
    let a = (m + 1) % 40;
    let t = net.now + 1;
    assert_eq!(ask(&mut net, a, t, want()), ["wave_statuses"]);
    assert_eq!(ask(&mut net, a, t + 10, want()), ["want_repeated"]);
    assert_eq!(
        ask(&mut net, a, t + 20, Message::SizeWant { zone: 0 }),
        ["zone_size"]
    );
    assert_eq!(
        ask(&mut net, a, t + 30, Message::SizeWant { zone: 0 }),
        ["want_repeated"]
    );
    // Three rounds later the same want is answered again.
    assert_eq!(ask(&mut net, a, t + 3_001, want()), ["wave_statuses"]);
    // The node's round resets the budget: run one, then 20 distinct askers at once.
    net.run_until(t + 4_500);
    let t = net.now + 1;
    // (Peers outside the test's network: nothing runs after this to send them anything.)
    let said: Vec<&str> = (1000..1070u32)
        .flat_map(|i| ask(&mut net, i, t, want()))
        .collect();
    let answered = said.iter().filter(|k| **k == "wave_statuses").count();
    let over = said.iter().filter(|k| **k == "want_over_budget").count();
    assert!(answered <= 64 && answered + over == 70, "{said:?}");
    assert!(over >= 6, "{said:?}");
    let n = &net.nodes[m as usize];
    assert!(refused(n, "want_repeated") >= 2);
    assert!(refused(n, "want_over_budget") >= 4);
}

#[test]
fn a_digest_exchange_where_both_sides_lack_a_row_costs_two_row_messages() {
    // A holds the newest row of one zone, B of another, each named in its digest. B asks in
    // its answering digest; A answers with one RowWant that carries B's row and asks for its
    // own; B answers with Rows. Two messages beyond the digests, and both hold both rows.
    let cfg = Config {
        zone_bits: 2,
        ..Config::default()
    };
    let net = Net::new(40, cfg.clone());
    let door = &net.door;
    let zone_of = |n: u32| fleet::zone_of(2, &n);
    let (a, b) = (1u32, 2u32);
    // Issuers of two zones other than each other's, signed with keys the door knows.
    let x_issuer = (3..40u32).find(|n| zone_of(*n) != zone_of(b)).unwrap();
    let y_issuer = (3..40u32)
        .find(|n| zone_of(*n) != zone_of(a) && zone_of(*n) != zone_of(x_issuer))
        .unwrap();
    let row = |issuer: u32| {
        Arc::new(
            fleet::ZoneRow {
                zone: zone_of(issuer),
                issued_ms: WALL0 + 1_000,
                issuer,
                members: 10,
                counts: Vec::new(),
                contacts: vec![issuer],
                sig: Vec::new(),
                cert: None,
            }
            .sign(&node_key(issuer)),
        )
    };
    let (rx, ry) = (row(x_issuer), row(y_issuer));
    let mut na = Node::new(cfg.clone(), a, node_key(a), Labels::new());
    let mut nb = Node::new(cfg.clone(), b, node_key(b), Labels::new());
    let mut rng = StdRng::seed_from_u64(7);
    let now = Now {
        mono_ms: 1_000,
        wall_ms: WALL0 + 2_000,
    };
    let mut deliver = |n: &mut Node<u32>, from: u32, msg: Message<u32>| -> Vec<Message<u32>> {
        let mut out = Vec::new();
        n.handle(Event::Message { from, msg }, now, &mut rng, door, &mut out);
        out.into_iter()
            .filter_map(|a| match a {
                Action::Send { msg, .. } => Some(msg),
                _ => None,
            })
            .filter(|m| !matches!(m, Message::Join | Message::Neighbor { .. }))
            .collect()
    };
    deliver(&mut na, 9, Message::Rows(vec![rx.clone()]));
    deliver(&mut nb, 9, Message::Rows(vec![ry.clone()]));
    let digest = |rows: Vec<(u32, u64)>, reply: bool, want: Vec<u32>| {
        Message::Digest(Digest {
            channels: vec![],
            rows,
            notable: vec![],
            reply,
            rows_print: 0,
            want,
        })
    };
    let rank = |r: &fleet::ZoneRow<u32>| fleet::row_rank(r);
    // A's digest names x; B answers naming y and wanting x.
    let out = deliver(&mut nb, a, digest(vec![(rx.zone, rank(&rx))], true, vec![]));
    let answer = out
        .iter()
        .find_map(|m| match m {
            Message::Digest(d) => Some(d.clone()),
            _ => None,
        })
        .expect("an answering digest");
    assert_eq!(answer.want, vec![rx.zone]);
    assert!(answer.rows.contains(&(ry.zone, rank(&ry))));
    assert!(
        out.iter().all(|m| matches!(m, Message::Digest(_))),
        "{out:?}"
    );
    // A gives x and asks for y in one message.
    let out = deliver(&mut na, b, Message::Digest(answer));
    assert_eq!(out.len(), 1, "{out:?}");
    let Message::RowWant { zones, rows } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(zones, &vec![ry.zone]);
    assert_eq!(rows, &vec![rx.clone()]);
    // B takes x and answers with y.
    let out = deliver(&mut nb, a, out[0].clone());
    assert_eq!(out, vec![Message::Rows(vec![ry.clone()])]);
    deliver(&mut na, b, out[0].clone());
    for n in [&na, &nb] {
        assert_eq!(n.fleet().rows.get(&rx.zone), Some(&rx));
        assert_eq!(n.fleet().rows.get(&ry.zone), Some(&ry));
    }
}

/// Three zone bits in two groups (group_bits 1): 8 zones, 4 per group.
fn grouped() -> Config {
    Config {
        zone_bits: 3,
        group_bits: 1,
        ..Config::default()
    }
}

/// How many messages `n` refused for `reason`.
fn refused(n: &Node<u32>, reason: &str) -> u64 {
    n.stats.refused.get(reason).copied().unwrap_or(0)
}

/// 160 nodes under `cfg` (8 zones of ~20 in 2 groups with [`grouped`]), v1 published at 3 s
/// by node 0, run to 45 s: every view converged.
fn grouped_fleet_at_v1(cfg: Config) -> Net {
    let mut net = Net::new(160, cfg);
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(45_000);
    net
}

#[test]
fn groups_summarise_a_larger_fleet_exactly_with_the_own_groups_zone_rows_only() {
    // 160 nodes in 8 zones of ~20, in 2 groups of 4 zones. Every node counts the whole fleet
    // exactly: its zone from its table, its group's 3 other zones from their rows, the other
    // group from that group's row. It holds no zone row of the other group.
    let cfg = grouped();
    let net = grouped_fleet_at_v1(cfg);
    for n in &net.nodes {
        let f = n.fleet();
        let counts = f.counts();
        let keys: Vec<u32> = f.rows.keys().copied().collect();
        assert_eq!(counts.nodes, 160, "node {} rows {keys:x?}", n.id());
        assert_eq!(counts.applied_at_least("web", 1), 160, "node {}", n.id());
        for k in &keys {
            if k & fleet::GROUP_FLAG == 0 {
                assert_eq!(
                    f.group_of_zone(*k),
                    f.my_group(),
                    "node {}: {keys:x?}",
                    n.id()
                );
            }
        }
        let groups = keys.iter().filter(|k| *k & fleet::GROUP_FLAG != 0).count();
        assert_eq!(
            (keys.len(), groups),
            (4 + 2, 2),
            "node {}: {keys:x?}",
            n.id()
        );
    }
}

#[test]
fn any_nodes_status_is_fetched_on_demand_across_groups_through_a_member_of_its_group() {
    // 160 nodes in 8 zones, 2 groups of 4 zones. A node holds no zone row of the other
    // group, so for a node of a zone of that group of which it knows no member (none in its
    // views, none named by a row it holds) it has no one to ask directly: it asks a member
    // of that group for the zone's row, then a member the row names for the status.
    // Smaller passive views than the default 30 of 160 nodes, for a node to know no member
    // of some zone, as at 100k (~36 peers known of 1,024 zones).
    let cfg = Config {
        passive_size: 10,
        ..grouped()
    };
    let mut net = grouped_fleet_at_v1(cfg);
    let knows_zone = |n: &Node<u32>, zone: u32| {
        let f = n.fleet();
        let peers = n
            .active_peers()
            .into_iter()
            .chain(n.passive_peers().iter().copied());
        let named = f
            .rows
            .values()
            .flat_map(|r| r.contacts.iter().copied().chain([r.issuer]));
        peers.chain(named).any(|p| f.zone_of(&p) == zone)
    };
    let (asker, far) = (0..160u32)
        .flat_map(|a| (0..160u32).map(move |t| (a, t)))
        .find(|(a, t)| {
            let n = &net.nodes[*a as usize];
            let f = n.fleet();
            f.group_of(t) != f.my_group()
                && !knows_zone(n, f.zone_of(t))
                && n.status_of(t).is_none()
        })
        .expect("a node that knows no member of some zone of the other group");
    let zone = net.nodes[asker as usize].fleet().zone_of(&far);
    let rows_before: Vec<u32> = net.nodes[asker as usize]
        .fleet()
        .rows
        .keys()
        .copied()
        .collect();
    let sent = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = sent.clone();
    net.drop = Box::new(move |from, to, kind| {
        if from == asker {
            log.borrow_mut().push((to, kind));
        }
        false
    });
    net.push(45_000, asker, Event::WantStatus(far));
    net.run_until(46_000);
    let got = net.nodes[asker as usize]
        .status_of(&far)
        .unwrap_or_else(|| {
            panic!("node {far}'s status did not reach node {asker} within a second")
        });
    // The node's own signed status, the newest its zone holds.
    assert_eq!(got.body.node, far);
    let newest = (0..160u32)
        .filter(|q| net.nodes[0].fleet().zone_of(q) == zone)
        .filter_map(|q| net.nodes[q as usize].fleet().status(&far).cloned())
        .map(|s| s.body.issued_ms)
        .max();
    assert_eq!(Some(got.body.issued_ms), newest);
    assert!(got
        .body
        .channels
        .iter()
        .any(|c| c.channel == "web" && c.version == 1));
    // Asked of a member of its group (for the zone's row), then of a member of its zone
    // (for the status); the zone row is not kept: the rows held are those held before.
    let f = net.nodes[asker as usize].fleet();
    let sent = sent.borrow();
    assert!(
        sent.iter()
            .any(|(to, k)| *k == "row_want" && f.group_of(to) == f.group_of(&far)),
        "{sent:?}"
    );
    let asked: Vec<u32> = sent
        .iter()
        .filter(|(_, k)| *k == "zone_want")
        .map(|(to, _)| *to)
        .collect();
    assert!(
        !asked.is_empty() && asked.iter().all(|p| f.zone_of(p) == zone),
        "{sent:?}"
    );
    assert_eq!(f.rows.keys().copied().collect::<Vec<_>>(), rows_before);
    assert!(f.foreign().is_none_or(|m| m.is_empty()));
}

/// A row of `key` issued by `issuer` (signed with its key).
fn signed_row(key: u32, issuer: u32, members: u32) -> Arc<fleet::ZoneRow<u32>> {
    Arc::new(
        fleet::ZoneRow {
            zone: key,
            issued_ms: WALL0 + 1_000,
            issuer,
            members,
            counts: Vec::new(),
            contacts: vec![issuer],
            sig: Vec::new(),
            cert: None,
        }
        .sign(&node_key(issuer)),
    )
}

#[test]
fn a_group_row_is_taken_only_from_a_member_of_that_group() {
    let cfg = grouped();
    let group_of = |n: u32| fleet::group_of(1, &n);
    let member = (0..100u32).find(|n| group_of(*n) == 0).unwrap();
    let outsider = (0..100u32).find(|n| group_of(*n) == 1).unwrap();
    let key = fleet::GROUP_FLAG;
    assert_eq!(
        signed_row(key, member, 80).precheck_grouped(cfg.zone_bits, cfg.group_bits),
        Ok(())
    );
    assert_eq!(
        signed_row(key, outsider, 80).precheck_grouped(cfg.zone_bits, cfg.group_bits),
        Err(fleet::RowRefusal::IssuerOutsideZone)
    );
    // Through a node: the outsider's row of group 0 is refused and counted, the member's taken.
    let net = Net::new(100, cfg.clone());
    let me = (0..100u32)
        .find(|n| *n != member && *n != outsider)
        .unwrap();
    let mut node = Node::new(cfg.clone(), me, node_key(me), Labels::new());
    let mut rng = StdRng::seed_from_u64(3);
    let now = Now {
        mono_ms: 1_000,
        wall_ms: WALL0 + 2_000,
    };
    let mut out = Vec::new();
    let forged = signed_row(key, outsider, 80);
    node.handle(
        Event::Message {
            from: outsider,
            msg: Message::Rows(vec![forged]),
        },
        now,
        &mut rng,
        &net.door,
        &mut out,
    );
    assert!(!node.fleet().rows.contains_key(&key));
    assert_eq!(node.stats.refused.get("row_issuer_outside_zone"), Some(&1));
    let genuine = signed_row(key, member, 80);
    node.handle(
        Event::Message {
            from: outsider,
            msg: Message::Rows(vec![genuine.clone()]),
        },
        now,
        &mut rng,
        &net.door,
        &mut out,
    );
    assert_eq!(node.fleet().rows.get(&key), Some(&genuine));
}

#[test]
fn a_peer_of_another_group_is_compared_and_synced_on_the_group_rows_alone() {
    // A and B are of different groups; each holds its own group's zone rows and the same
    // group rows. Their prints, as each computes it for the other, agree; a row sync between
    // them carries group rows only; digests name zone rows only to peers of the group.
    let cfg = grouped();
    let group_of = |n: u32| fleet::group_of(1, &n);
    let zone_of = |n: u32| fleet::zone_of(3, &n);
    let a = (0..200u32).find(|n| group_of(*n) == 0).unwrap();
    let b = (0..200u32).find(|n| group_of(*n) == 1).unwrap();
    let mut va = FleetView::new(&cfg, a);
    let mut vb = FleetView::new(&cfg, b);
    let g0 = (0..200u32).find(|n| group_of(*n) == 0 && *n != a).unwrap();
    let g1 = (0..200u32).find(|n| group_of(*n) == 1 && *n != b).unwrap();
    let groups = [
        signed_row(fleet::GROUP_FLAG, g0, 80),
        signed_row(fleet::GROUP_FLAG | 1, g1, 80),
    ];
    for r in &groups {
        assert!(va.receive_row(&cfg, r));
        assert!(vb.receive_row(&cfg, r));
    }
    let leaf_a = signed_row(zone_of(g0), g0, 20);
    let leaf_b = signed_row(zone_of(g1), g1, 20);
    assert!(va.receive_row(&cfg, &leaf_a));
    assert!(vb.receive_row(&cfg, &leaf_b));
    // Zone rows of another group are not taken (nor asked for).
    assert!(!va.wants_row(&leaf_b));
    assert!(!va.wants_rank(leaf_b.zone, fleet::row_rank(&leaf_b)));
    assert_ne!(va.rows_print(), vb.rows_print());
    assert_eq!(va.rows_print_for(&b), vb.rows_print_for(&a));
    let theirs = vb.row_versions_for(vb.same_group(&a));
    assert_eq!(theirs.len(), 2, "{theirs:x?}");
    assert!(va.rows_newer_for(&theirs, va.same_group(&b)).is_empty());
    assert_eq!(va.rows_newer_for(&theirs, true), vec![leaf_a.clone()]);
    // The rumor: to B, A names the group rows alone, and keeps its zone row hot.
    let named = va.take_hot_for(&cfg, false);
    assert!(named.iter().all(|(k, _)| k & fleet::GROUP_FLAG != 0));
    for _ in 0..cfg.row_hot_rounds {
        va.take_hot_for(&cfg, false);
    }
    assert_eq!(
        va.take_hot_for(&cfg, true),
        vec![(leaf_a.zone, fleet::row_rank(&leaf_a))]
    );
}

#[test]
fn the_groups_leader_sums_its_zone_rows_into_the_group_row() {
    // The group's leader is the issuer with the lowest id hash among the zone rows held for
    // the group, and only it issues the group's row: the sum of those rows, once every zone
    // of the group has one and the sum held still for a round.
    let cfg = grouped();
    let group_of = |n: u32| fleet::group_of(1, &n);
    let zone_of = |n: u32| fleet::zone_of(3, &n);
    // One issuer per zone of group 0; the lowest hash leads.
    let mut issuers: Vec<u32> = Vec::new();
    for n in 0..1000u32 {
        if group_of(n) == 0 && !issuers.iter().any(|i| zone_of(*i) == zone_of(n)) {
            issuers.push(n);
        }
    }
    assert_eq!(issuers.len(), 4);
    issuers.sort_by_key(|n| n.stable_hash());
    let t = WALL0 + 10_000;
    let run = |me: u32| {
        let mut v = FleetView::new(&cfg, me);
        // Its own zone: itself, leading it (a table of one waits ROW_SETTLE_MAX rounds).
        v.insert(&cfg, sign_status(me, t));
        let settle = fleet::ROW_SETTLE_MAX as u64 + 1;
        for r in 0..settle {
            v.maybe_issue_row(&cfg, t + r * 1_000, vec![me], &node_key(me), None);
        }
        for i in issuers.iter().filter(|i| **i != me) {
            v.receive_row(&cfg, &signed_row(zone_of(*i), *i, 20));
        }
        let mut issued = None;
        for r in settle..settle + 7 {
            issued = issued.or(v.maybe_issue_group_row(&cfg, t + r * 1_000, &node_key(me), None));
        }
        issued
    };
    let row = run(issuers[0]).expect("the leader issued no group row");
    assert_eq!(row.zone, fleet::GROUP_FLAG);
    assert_eq!(row.members, 1 + 3 * 20);
    assert!(
        run(issuers[1]).is_none(),
        "a node that does not lead issued"
    );
}

fn sign_status(node: u32, issued: u64) -> Arc<SignedStatus<u32>> {
    Arc::new(StatusBody::idle(node, issued).sign(&node_key(node)))
}

#[test]
fn a_liars_group_row_does_not_stall_the_other_groups() {
    // Two groups of four zones. A liar signs, as its zone's row and as its group's row, every
    // member on v1 in wave 0: to the other group, wave 0 never completes on the group's row.
    // Its nodes, whose gate that row alone holds, ask a member of the liar's group (not the
    // liar) for the group's zone rows, find the one zone whose row holds the wave (the
    // liar's), and probe it as any zone: the rollout completes everywhere.
    let (net, waves, liar) = stalled_groups(1, 90_000);
    let group_of = |n: u32| fleet::group_of(1, &n);
    let stall_held = net.nodes.iter().any(|n| {
        group_of(*n.id()) != group_of(liar)
            && n.fleet()
                .rows
                .get(&(fleet::GROUP_FLAG | group_of(liar)))
                .is_some_and(|r| {
                    r.issuer == liar && r.counts.iter().all(|c| c.wave == 0 && c.version == 1)
                })
    });
    assert!(stall_held, "the liar's stalling group row never took hold");
    every_node_applied_v2(&net, &waves);
}

/// Two groups of four zones with v1 everywhere; then node 1, the liar (the leader of some
/// zone, so that its rows are its zone's and may be its group's), signs its zone's row and
/// its group's row as every member on v1 in wave 0, claiming `inflates` times the members,
/// and v2 is published with waves 20% / 100%. Runs to `until`; returns the net, the waves
/// and the liar.
fn stalled_groups(inflates: u32, until: u64) -> (Net, Vec<f64>, u32) {
    let waves = vec![0.2, 1.0];
    let mut net = Net::new(160, grouped());
    let liar = 1u32;
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(20_000);
    stall_from(&mut net, liar, inflates, waves.clone(), 2, until);
    (net, waves, liar)
}

/// From now on `liar` stalls (its zone's and its group's rows, `inflates` times the members,
/// all on v1 in wave 0), and v2 is published at once with `waves` and `bake` seconds. Runs
/// to `until`.
fn stall_from(net: &mut Net, liar: u32, inflates: u32, waves: Vec<f64>, bake: u64, until: u64) {
    net.liar = Some((liar, 2, 1));
    net.liar_stalls = true;
    net.liar_inflates = inflates;
    net.publish(net.now, 0, rollout_bundle(2, waves, bake, 0.5));
    net.run_until(until);
}

#[test]
fn an_inflated_group_row_does_not_stall_the_other_group() {
    // Two groups of four zones of ~20. The liar signs, as its zone's row and its group's row,
    // four times the members (its zone's row up to 256), every one on v1 in wave 0. With two
    // groups the group row is the typical group, so the other group looks sparse to its own
    // nodes (under a third of it), and the liar's zone row swells its group mates' sum of
    // their group until the other group looks sparse to them too: every view stays partial
    // and no wave is judged. A node of the other group asks two members of the liar's group
    // (never the liar) how many members their group holds (their table and their group's
    // other zone rows, as their own size probes leave them); a node of the liar's group asks
    // two members of the zone whose row claims the most. The answers contradict the rows,
    // whose sizes are set aside, and the wave they hold is resolved through the group's zone
    // rows as in the plain stall. Every node applies.
    let (net, waves, liar) = stalled_groups(4, 90_000);
    let group_of = |n: u32| fleet::group_of(1, &n);
    let key = fleet::GROUP_FLAG | group_of(liar);
    let inflated_held = net
        .nodes
        .iter()
        .filter(|n| group_of(*n.id()) != group_of(liar))
        .all(|n| {
            let f = n.fleet();
            f.rows.get(&key).is_some_and(|r| {
                r.issuer == liar && r.members as u64 > 3 * f.own_group_members(&Default::default())
            })
        });
    assert!(
        inflated_held,
        "the liar's inflated group row did not take hold in the other group"
    );
    every_node_applied_v2(&net, &waves);
    let asked = |to_liar: bool| {
        net.delivered
            .iter()
            .filter(|(to, kind)| {
                *kind == "size_want" && group_of(*to) == group_of(liar) && (*to == liar) == to_liar
            })
            .count()
    };
    assert!(asked(false) > 0, "no node asked the liar's group mates");
    assert_eq!(asked(true), 0, "a size probe went to the row's issuer");
}

#[test]
fn a_member_answers_a_group_row_want_from_another_group_once_per_few_rounds_and_a_few_per_round() {
    // A peer of another group asks a member for its group's zone rows (as a group probe does,
    // `ask_group_rows`): answered once, declined when the same peer asks again within
    // `ANSWER_WINDOW_ROUNDS` rounds (`want_repeated`), answered again after, and at most 64
    // such wants (with the wave and size wants) a round in all (`want_over_budget`). The group
    // rows asked for are given still, and a peer of the own group is not budgeted (its
    // digests' wants name the zone rows of the group as they spread).
    let cfg = grouped();
    let mut net = grouped_fleet_at_v1(cfg);
    let group_of = |n: u32| fleet::group_of(1, &n);
    let zones: Vec<u32> = net.nodes[0].fleet().zones_of_group(0).collect();
    assert_eq!(zones.len(), 4);
    let m = (0..160u32)
        .find(|n| {
            group_of(*n) == 0
                && zones
                    .iter()
                    .all(|z| net.nodes[*n as usize].fleet().rows.contains_key(z))
        })
        .unwrap();
    // (zone rows sent, group rows sent, declines)
    let ask = |net: &mut Net, from: u32, at: u64, zones: Vec<u32>| -> (usize, usize, usize) {
        let now = Now {
            mono_ms: at,
            wall_ms: WALL0 + at,
        };
        let mut out = Vec::new();
        let msg = Message::RowWant {
            zones,
            rows: Vec::new(),
        };
        let ev = Event::Message { from, msg };
        net.nodes[m as usize].handle(ev, now, &mut net.rng, &net.door, &mut out);
        let mut got = (0, 0, 0);
        for a in &out {
            match a {
                Action::Send {
                    msg: Message::Rows(rows) | Message::RowWant { rows, .. },
                    ..
                } => {
                    for r in rows {
                        if r.zone & fleet::GROUP_FLAG == 0 {
                            got.0 += 1;
                        } else {
                            got.1 += 1;
                        }
                    }
                }
                Action::Refused { reason, .. }
                    if matches!(*reason, "want_repeated" | "want_over_budget") =>
                {
                    got.2 += 1
                }
                _ => {}
            }
        }
        got
    };
    let with_group = |mut z: Vec<u32>| {
        z.push(fleet::GROUP_FLAG | 1);
        z
    };
    let a = (0..160u32).find(|n| group_of(*n) == 1).unwrap();
    let t = net.now + 1;
    assert_eq!(ask(&mut net, a, t, with_group(zones.clone())), (4, 1, 0));
    // Again at once, or with every zone listed twice: the group row alone.
    assert_eq!(
        ask(&mut net, a, t + 10, with_group(zones.clone())),
        (0, 1, 1)
    );
    let twice: Vec<u32> = zones.iter().chain(zones.iter()).copied().collect();
    assert_eq!(ask(&mut net, a, t + 20, twice.clone()), (0, 0, 1));
    // Three rounds later it is answered again, each zone once.
    assert_eq!(ask(&mut net, a, t + 3_001, twice), (4, 0, 0));
    // A peer of the own group is answered every time.
    let b = (0..160u32).find(|n| group_of(*n) == 0 && *n != m).unwrap();
    for i in 0..3 {
        assert_eq!(ask(&mut net, b, t + 3_010 + i, zones.clone()), (4, 0, 0));
    }
    // The node's round resets the budget: run one, then 70 distinct askers of the other
    // group at once (peers outside the test's network: nothing runs after this).
    net.run_until(t + 4_500);
    let t = net.now + 1;
    let askers: Vec<u32> = (1000..5000u32)
        .filter(|n| group_of(*n) == 1)
        .take(70)
        .collect();
    let said: Vec<(usize, usize, usize)> = askers
        .iter()
        .map(|i| ask(&mut net, *i, t, zones.clone()))
        .collect();
    let answered = said.iter().filter(|s| s.0 == 4).count();
    let over = said.iter().filter(|s| s.2 == 1).count();
    assert!(answered <= 64 && answered + over == 70, "{said:?}");
    assert!(over >= 6, "{said:?}");
    let n = &net.nodes[m as usize];
    assert!(refused(n, "want_repeated") >= 2);
    assert!(refused(n, "want_over_budget") >= 6);
}

#[test]
fn a_liars_group_row_does_not_hide_a_later_wave_of_its_group() {
    // Two groups of four zones, waves 20% / 50% / 100%. The liar's group row says every
    // member is on v1 in wave 0, so to the other group its later waves look empty. A wave-1
    // member of the liar's group, outside the liar's zone, fails to apply v2: wave 1 never
    // completes, and no node of wave 2 may apply v2. Nodes of the other group resolved wave
    // 0 through the group's zone rows; they judge the later waves of that group on those
    // rows too (asked again while they show a wave short that the group row does not), not
    // on the row that hides the laggard.
    let waves = vec![0.2, 0.5, 1.0];
    let mut net = Net::new(160, grouped());
    let liar = 1u32;
    let group_of = |n: u32| fleet::group_of(1, &n);
    let zone_of = |n: u32| fleet::zone_of(3, &n);
    let failed = (0..160u32)
        .find(|n| {
            group_of(*n) == group_of(liar)
                && zone_of(*n) != zone_of(liar)
                && wave(*n, 2, &waves) == 1
        })
        .unwrap();
    net.fail = Box::new(move |n, v| v == 2 && n == failed);
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(20_000);
    stall_from(&mut net, liar, 1, waves.clone(), 2, 90_000);
    // The wave-1 members of the other group got it: wave 0 was resolved there.
    let others_wave1 = (0..160u32)
        .filter(|n| group_of(*n) != group_of(liar) && wave(*n, 2, &waves) == 1)
        .all(|n| net.applied.contains(&(n, 2)));
    assert!(
        others_wave1,
        "wave 0 was not resolved through the liar's group"
    );
    for n in 0..160u32 {
        if wave(n, 2, &waves) == 2 {
            assert!(
                !net.applied.contains(&(n, 2)),
                "node {n} (group {}) of wave 2 applied v2 while wave 1 of the liar's group \
                 never completed: {:?}",
                group_of(n),
                net.nodes[n as usize].rollout("web")
            );
        }
    }
}

#[test]
fn a_liars_group_row_does_not_stall_a_bake_longer_than_a_probes_freshness() {
    // As `a_liars_group_row_does_not_stall_the_other_groups`, with a bake of 20 s: longer
    // than the 12 rounds the group's fetched zone rows were kept. Dropped mid-bake, they gave
    // the group's row back the word, which holds wave 0 again and restarts the bake, for
    // ever. They are kept while the rollout is judged, as a zone's probe is.
    let waves = vec![0.2, 1.0];
    let mut net = Net::new(160, grouped());
    let liar = 1u32;
    net.run_until(3_000);
    net.publish(3_000, 0, bundle(1, &release_key()));
    net.run_until(20_000);
    stall_from(&mut net, liar, 1, waves.clone(), 20, 100_000);
    every_node_applied_v2(&net, &waves);
}
