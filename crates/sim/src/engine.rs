//! The event loop: N copies of the protocol core on a virtual network and clock.
//!
//! One event queue ordered by (virtual time, push order) (`queue.rs`), one seeded ChaCha
//! random source for everything (network and nodes), so the same seed gives the same run.
//! Messages are moved between nodes as values sharing their bytes (`Arc`); each is encoded
//! once to count its bytes on the wire.

use crate::door::SimDoor;
use crate::metrics::{Metrics, RolloutStats, Sample};
use crate::queue::Queue;
use crate::scenario::{Action as Step, LiarMode, Scenario};
use driftless_core::bundle::{Bundle, BundleHash, Header};
use driftless_core::definition::{
    CompiledDefinition, Ownership, Resource, ResourceKind, RolloutPolicy,
};
use driftless_core::labels::{Labels, Targets};
use driftless_core::proto::fleet::{group_of, row_rank, zone_of, Count, GROUP_FLAG};
use driftless_core::proto::rollout::wave_of;
use driftless_core::proto::{
    Action, ApplyState, ChannelStatus, Config, Event, Message, Node, Now, PeerId, Persisted,
    SignedStatus, WireBundle, ZoneRow,
};
use driftless_core::trust::TrustRoot;
use driftless_core::Timestamp;
use ed25519_dalek::SigningKey;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Virtual wall clock at time 0 (2024-01-01): statuses and expiry need a plausible date.
pub const WALL0_MS: u64 = 1_704_067_200_000;
pub const FLEET: &str = "sim";
/// How many bootstrap peers each node is configured with.
const BOOTSTRAP_PEERS: usize = 3;

enum Ev {
    Deliver { from: u32, msg: Box<Message<u32>> },
    Tick,
    ApplyDone { version: u64, ok: bool, life: u32 },
    Step(usize),
    Heal,
    Restart,
    DriftHit,
    DriftFix { life: u32 },
    PeerDown(u32),
    Sample,
    Churn(usize),
}

pub struct SimNode {
    pub node: Option<Node<u32>>,
    saved: Persisted<u32>,
    bootstrap: Vec<u32>,
    wake: u64,
    /// Incarnation: bumped on every crash, so events of a past life are dropped.
    life: u32,
    pub applied: u64,
    pub unhealthy: bool,
    drift_open: u32,
    side: bool,
}

pub struct Engine<'a> {
    sc: &'a Scenario,
    pub cfg: Config,
    rng: ChaCha8Rng,
    queue: Queue<(u32, Ev)>,
    /// Events queued so far.
    seq: u64,
    pub now: u64,
    pub nodes: Vec<SimNode>,
    /// Per node: `nodes[i].node.is_some()` (running), kept in step by `crash` and `restart`.
    /// Every message sent asks it of its receiver, whose 1.5 KB `SimNode` is rarely in cache.
    up: Vec<bool>,
    /// Nodes with `unhealthy` set, kept in step where it is set: a sample counts them
    /// without a pass over every `SimNode`.
    unhealthy_count: usize,
    pub door: SimDoor,
    keys: Vec<SigningKey>,
    /// Admitted but compromised nodes: what they send is rewritten by [`Engine::lie`].
    pub liars: Vec<u32>,
    /// Per liar: the status it last signed and the forged one sent in its place.
    forged: BTreeMap<u32, (u64, Arc<SignedStatus<u32>>)>,
    release_key: SigningKey,
    rogue_key: SigningKey,
    /// The rogue node and the bundle it serves.
    rogue: Option<(u32, Arc<Bundle>)>,
    partitioned: bool,
    /// Published trusted versions: version → (hash, unhealthy share).
    pub releases: BTreeMap<u64, (BundleHash, f64)>,
    pub rogue_hashes: Vec<BundleHash>,
    pub m: Metrics,
    out: Vec<Action<u32>>,
    progress: ProgressBar,
    /// Times at which to check every sampled node's fleet view against the truth.
    pub checks_at: Vec<u64>,
    wire: crate::wire::WireSize,
    /// `DRIFTLESS_SIM_PROFILE` set: print wall time and message counts every virtual second.
    profile: Option<std::time::Instant>,
}

fn uniform(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        lo
    } else {
        lo + rng.next_u64() % (hi - lo + 1)
    }
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
}

/// A deterministic per-(node, salt) draw in [0, 1).
fn hash_share(node: u32, salt: u64) -> f64 {
    let h = driftless_core::proto::splitmix64(((node as u64) << 32) ^ salt.wrapping_mul(0x9E37));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl<'a> Engine<'a> {
    pub fn new(sc: &'a Scenario, seed: u64) -> Engine<'a> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = sc.nodes;
        let mut cfg = Config {
            zone_bits: Config::zone_bits_for(n),
            group_bits: Config::group_bits_for(n),
            reapply_ms: sc.fleet.reapply_ms,
            ..Config::default()
        };
        if let Some(r) = sc.protocol.round_ms {
            cfg.round_ms = r;
        }
        if let Some(a) = sc.protocol.active_size {
            cfg.active_size = a;
        }
        if let Some(t) = sc.protocol.peer_timeout_ms {
            cfg.peer_timeout_ms = t;
            cfg.keepalive_ms = (t / 3).max(1);
        }
        if let Some(z) = sc.protocol.zone_bits {
            cfg.zone_bits = z;
            // Zones set by hand: groups only when asked for too.
            cfg.group_bits = 0;
        }
        if let Some(g) = sc.protocol.group_bits {
            cfg.group_bits = g.min(cfg.zone_bits);
        }
        let mut seed32 = [0u8; 32];
        rng.fill_bytes(&mut seed32);
        let release_key = SigningKey::from_bytes(&seed32);
        rng.fill_bytes(&mut seed32);
        let rogue_key = SigningKey::from_bytes(&seed32);
        let keys: Vec<SigningKey> = (0..n)
            .map(|_| {
                rng.fill_bytes(&mut seed32);
                SigningKey::from_bytes(&seed32)
            })
            .collect();
        // Liars: the leader (lowest id hash) of zone 0, of zone 1, ...: the worst place for
        // one, since its row is its zone's row everywhere.
        let liars: Vec<u32> = (0..1u32 << cfg.zone_bits.min(16))
            .filter_map(|z| {
                (0..n as u32)
                    .filter(|i| zone_of(cfg.zone_bits, i) == z)
                    .min_by_key(|i| i.stable_hash())
            })
            .take(sc.fleet.liars)
            .collect();
        let door = SimDoor::new(
            TrustRoot::new(FLEET, vec![release_key.verifying_key()], 1),
            keys.iter().map(|k| k.verifying_key()).collect(),
        );
        let nodes = (0..n as u32)
            .map(|i| {
                let bootstrap = if i == 0 {
                    vec![]
                } else {
                    (0..BOOTSTRAP_PEERS.min(i as usize))
                        .map(|_| (rng.next_u64() % i as u64) as u32)
                        .collect()
                };
                SimNode {
                    node: Some(Node::new(
                        cfg.clone(),
                        i,
                        keys[i as usize].clone(),
                        Labels::new(),
                    )),
                    saved: Persisted::default(),
                    bootstrap,
                    wake: u64::MAX,
                    life: 0,
                    applied: 0,
                    unhealthy: false,
                    drift_open: 0,
                    side: false,
                }
            })
            .collect();
        let progress = ProgressBar::with_draw_target(
            Some(sc.duration_ms / 1000),
            ProgressDrawTarget::stderr(),
        );
        progress.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} virtual s ({elapsed})")
                .expect("static template")
                .progress_chars("=> "),
        );
        progress.set_message(sc.name.clone());
        Engine {
            sc,
            cfg,
            rng,
            queue: Queue::new(),
            seq: 0,
            now: 0,
            up: vec![true; n],
            unhealthy_count: 0,
            nodes,
            door,
            keys,
            liars,
            forged: BTreeMap::new(),
            release_key,
            rogue_key,
            rogue: None,
            partitioned: false,
            releases: BTreeMap::new(),
            rogue_hashes: Vec::new(),
            m: Metrics::new(n, sc.duration_ms),
            out: Vec::with_capacity(64),
            progress,
            checks_at: Vec::new(),
            wire: Default::default(),
            profile: std::env::var_os("DRIFTLESS_SIM_PROFILE").map(|_| std::time::Instant::now()),
        }
    }

    fn push(&mut self, at: u64, to: u32, ev: Ev) {
        self.seq += 1;
        self.queue.push(at, (to, ev));
    }

    fn now_of(&self, at: u64) -> Now {
        Now {
            mono_ms: at,
            wall_ms: WALL0_MS + at,
        }
    }

    pub fn make_bundle(
        &self,
        version: u64,
        rogue: bool,
        rollout: Option<RolloutPolicy>,
    ) -> Arc<Bundle> {
        let content = "#".repeat(self.sc.fleet.bundle_bytes.saturating_sub(400));
        let def = CompiledDefinition {
            name: self.sc.fleet.channel.clone(),
            targets: Targets::default(),
            vars: Default::default(),
            resources: vec![Resource {
                kind: ResourceKind::File {
                    path: "/etc/app/app.conf".into(),
                    content: format!("version = {version}\n{content}\n"),
                    template: None,
                    own: Ownership {
                        mode: Some(0o644),
                        owner: None,
                        group: None,
                    },
                },
                requires: vec![],
                notify: vec![],
                audit: false,
            }],
            checks: vec![],
            rollout: rollout.clone(),
        };
        let header = Header {
            fleet: FLEET.into(),
            channel: self.sc.fleet.channel.clone(),
            version,
            created: Timestamp(WALL0_MS / 1000),
            expires: Timestamp(WALL0_MS / 1000 + 30 * 86_400),
            content_hash: [0; 32],
            rollout,
        };
        let key = if rogue {
            &self.rogue_key
        } else {
            &self.release_key
        };
        Arc::new(Bundle::sign(header, &def, &[key]))
    }

    /// Run to the end of the scenario.
    pub fn run(&mut self) {
        let n = self.nodes.len() as u32;
        // Nodes start over the first second, each through its bootstrap peers.
        for i in 0..n {
            let at = (i as u64 * 1000) / n as u64;
            let bootstrap = self.nodes[i as usize].bootstrap.clone();
            self.start(i, at, bootstrap);
        }
        for (i, s) in self.sc.timeline.iter().enumerate() {
            self.push(s.at_ms, 0, Ev::Step(i));
        }
        if self.sc.fleet.drift_per_node_hour > 0.0 {
            for i in 0..n {
                let at = self.next_drift(0);
                self.push(at, i, Ev::DriftHit);
            }
        }
        self.push(0, 0, Ev::Sample);
        let end = self.sc.duration_ms;
        let mut checks = std::mem::take(&mut self.checks_at);
        checks.sort_unstable();
        checks.reverse();
        while let Some(at) = self.queue.next_at() {
            if at > end {
                break;
            }
            let (at, (to, ev)) = self.queue.pop().expect("an event is due");
            self.prefetch_next();
            while checks.last().is_some_and(|c| *c < at) {
                let c = checks.pop().expect("checked");
                self.now = c;
                let (ok, total) = self.fleet_view_exact();
                self.m.fleet_checks.push((c, ok, total));
            }
            self.now = at;
            self.dispatch(at, to, ev);
        }
        for c in checks.into_iter().rev() {
            self.now = c.min(end);
            let (ok, total) = self.fleet_view_exact();
            self.m.fleet_checks.push((c, ok, total));
        }
        self.now = end;
        self.progress.finish_and_clear();
    }

    /// Ask the CPU to start loading what the next events will touch first while this one is
    /// handled: with 10^4–10^5 virtual nodes a node's state and a message are rarely in
    /// cache, and their loads were the largest stalls of the loop. Two stages: the event after
    /// next gets its message and its node's struct loaded, the next one (whose struct was
    /// loaded so one event ago) its active view, which every message looks up first. Hints
    /// only: nothing is read into the simulation, nothing changes.
    fn prefetch_next(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: a prefetch reads nothing into the program and never faults, whatever
            // the address; SSE is part of the x86_64 baseline.
            let fetch = |p: *const u8| unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
            if let Some((to, ev)) = self.queue.peek_near(1) {
                if let Ev::Deliver { msg, .. } = ev {
                    let p = &**msg as *const Message<u32> as *const u8;
                    fetch(p);
                    fetch(p.wrapping_add(64));
                }
                if let Some(sn) = self.nodes.get(*to as usize) {
                    let p = sn as *const SimNode as *const u8;
                    for line in 0..std::mem::size_of::<SimNode>().div_ceil(64) {
                        fetch(p.wrapping_add(line * 64));
                    }
                }
            }
            if let Some((to, Ev::Deliver { .. })) = self.queue.peek_near(0) {
                if let Some(node) = self.nodes.get(*to as usize).and_then(|sn| sn.node.as_ref()) {
                    fetch(node.active_view_addr());
                }
            }
        }
    }

    fn next_drift(&mut self, from: u64) -> u64 {
        // Exponential inter-arrival times with the scenario's rate.
        let rate_per_ms = self.sc.fleet.drift_per_node_hour / 3_600_000.0;
        let u = ((self.rng.next_u64() >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
        from + (-u.ln() / rate_per_ms).min(1e15) as u64 + 1
    }

    fn start(&mut self, i: u32, at: u64, bootstrap: Vec<u32>) {
        self.push_event(at, i, Event::Start { bootstrap });
    }

    /// Deliver a core event now (or at `at` when in the future, via the queue).
    fn push_event(&mut self, at: u64, i: u32, ev: Event<u32>) {
        if at > self.now {
            // Only Start is ever deferred; carry it as a message-less restart marker.
            if let Event::Start { .. } = ev {
                self.push(at, i, Ev::Restart);
                return;
            }
        }
        self.handle(i, ev);
    }

    fn handle(&mut self, i: u32, ev: Event<u32>) {
        let now = self.now_of(self.now);
        let mut out = std::mem::take(&mut self.out);
        {
            let sn = &mut self.nodes[i as usize];
            let Some(node) = sn.node.as_mut() else {
                self.out = out;
                return;
            };
            node.handle(ev, now, &mut self.rng, &self.door, &mut out);
        }
        for a in out.drain(..) {
            self.act(i, a);
        }
        self.out = out;
    }

    fn act(&mut self, i: u32, a: Action<u32>) {
        match a {
            Action::Send { to, msg } => self.send(i, to, msg),
            Action::WakeAt(t) => {
                // The latest request is the node's current wish; older ticks are stale.
                self.nodes[i as usize].wake = t;
                self.push(t, i, Ev::Tick);
            }
            Action::Apply { bundle, .. } => {
                if !bundle
                    .signers()
                    .contains(&self.release_key.verifying_key().to_bytes())
                {
                    self.m.untrusted_applied += 1;
                }
                let version = bundle.header().version;
                let ms = uniform(
                    &mut self.rng,
                    self.sc.fleet.apply_min_ms,
                    self.sc.fleet.apply_max_ms,
                );
                let ok = !chance(&mut self.rng, self.sc.fleet.apply_failure);
                let life = self.nodes[i as usize].life;
                self.push(self.now + ms, i, Ev::ApplyDone { version, ok, life });
            }
            Action::PersistMarks(m) => self.nodes[i as usize].saved.marks = m,
            Action::PersistBundle(b) => {
                let saved = &mut self.nodes[i as usize].saved;
                let ch = b.header().channel.clone();
                saved.bundles.retain(|x| x.header().channel != ch);
                saved.bundles.push(b);
            }
            Action::PersistStatus(s) => {
                // The node signed it just now with its own key (the core signs only its own
                // status): the door knows the verdict.
                if s.body.node == i {
                    self.door.signed(&s, self.keys[i as usize].verifying_key());
                }
                self.nodes[i as usize].saved.status = Some(s)
            }
            Action::Accepted { version, hops, .. } => {
                if self.rogue_hashes.iter().any(|h| {
                    self.nodes[i as usize]
                        .node
                        .as_ref()
                        .and_then(|n| n.held(&self.sc.fleet.channel))
                        .is_some_and(|x| x.1 == *h)
                }) {
                    self.m.untrusted_accepted += 1;
                }
                self.m.accepted(version, hops, self.now);
            }
            Action::Refused { reason, .. } => {
                *self.m.refused.entry(reason).or_default() += 1;
                if reason == "rollout_halted" {
                    self.note_halt(i);
                }
            }
            Action::Disconnect(_) => {}
        }
    }

    /// What a compromised node sends instead of `msg`, once a version is out. It lies in every
    /// zone row it sends, of any zone: one node in the zone, running the newest version,
    /// healthy, in the last wave. So every earlier wave of those zones would look empty (done,
    /// a hurry), and the fleet small (a wave of a few nodes, a share that one sick status
    /// passes). Rows are signed by their issuer, who must belong to the zone the row
    /// describes, so it signs with its own key (it is admitted) what it may: its own zone's
    /// row, which is taken. Rows of other zones it forges three ways, taking turns by zone:
    /// under their real issuer (the old signature no longer verifies: `bad_row_signature`),
    /// signed under its own name (`row_issuer_outside_zone`), or unsigned as an older agent
    /// would send them (`unsigned_row`); every one is refused. Its own status (signed with its
    /// genuine key) says it runs the newest version in wave 0 and is unhealthy, and it hands
    /// that to every peer as a notable status: one node's word for a halt.
    fn lie(&mut self, from: u32, msg: &mut Message<u32>) {
        let Some((&latest, _)) = self.releases.iter().next_back() else {
            return;
        };
        let last_wave = self
            .m
            .rollouts
            .get(&latest)
            .map_or(0, |r| r.policy.waves.len().saturating_sub(1) as u8);
        let channel = self.sc.fleet.channel.clone();
        let wall = WALL0_MS + self.now;
        let zone_bits = self.cfg.zone_bits;
        let key = &self.keys[from as usize].clone();
        let my_zone = zone_of(zone_bits, &from);
        let liar_mode = self.sc.fleet.liar_mode;
        // Its own zone's row says as many members as its table counts: the lie is in the
        // counts (a row stuck at a restarted table's few members would only stall the
        // rollout, as any view with a sparse zone waits).
        let my_members = self.nodes[from as usize]
            .node
            .as_ref()
            .map_or(0, |n| n.fleet().zone.len() as u32);
        // With groups it is a member of its group too, and may sign the group's row: it
        // lies there as in its zone's row, its group counted as its table and the other
        // zone rows of the group it holds add up (its own zone's row may be its own forgery).
        let group_bits = self.cfg.group_bits;
        let my_group_key = (group_bits > 0).then(|| GROUP_FLAG | group_of(group_bits, &from));
        let group_members = self.nodes[from as usize].node.as_ref().map_or(0, |n| {
            let f = n.fleet();
            let g = f.my_group();
            f.rows
                .range(f.zones_of_group(g))
                .filter(|(z, _)| **z != my_zone)
                .map(|(_, r)| r.members)
                .sum::<u32>()
                + my_members
        });
        let forge_row = |r: &ZoneRow<u32>| {
            let row = ZoneRow {
                zone: r.zone,
                issued_ms: wall.max(r.issued_ms + 1),
                issuer: r.issuer,
                members: r.members,
                counts: vec![Count {
                    channel: channel.clone(),
                    version: latest,
                    state: ApplyState::Applied,
                    healthy: true,
                    target: latest,
                    wave: last_wave,
                    n: 1,
                }],
                contacts: r.contacts.clone(),
                sig: r.sig.clone(),
                cert: r.cert.clone(),
            };
            let signed_by_me = |row: ZoneRow<u32>| {
                ZoneRow {
                    issuer: from,
                    ..row
                }
                .sign(key)
            };
            let own_group = Some(r.zone) == my_group_key;
            let my_members = if own_group { group_members } else { my_members };
            Arc::new(if r.zone == my_zone || own_group {
                let members = row.members.max(my_members);
                match liar_mode {
                    LiarMode::Advance => signed_by_me(ZoneRow { members, ..row }),
                    // Every member on the previous version, in wave 0: outside its zone,
                    // wave 0 never looks done.
                    LiarMode::Stall | LiarMode::StallInflated => {
                        // Four times its table's count, not the held row's: the liar
                        // takes its own forged rows back from its peers, and four times
                        // those grew without bound (and wrapped).
                        let members = if liar_mode == LiarMode::StallInflated {
                            my_members.max(1).saturating_mul(4)
                        } else {
                            members
                        };
                        signed_by_me(ZoneRow {
                            members,
                            counts: vec![Count {
                                channel: channel.clone(),
                                version: latest.saturating_sub(1),
                                state: ApplyState::Held,
                                healthy: true,
                                target: latest,
                                wave: 0,
                                n: members,
                            }],
                            ..row
                        })
                    }
                }
            } else {
                match r.zone % 3 {
                    0 => row,
                    1 => signed_by_me(row),
                    _ => ZoneRow {
                        sig: Vec::new(),
                        ..row
                    },
                }
            })
        };
        // Digests name rows by (zone, rank); it names every row it holds, its own zone's
        // too, as newer than what anyone holds, so that its peers ask for the forgeries.
        let named: Vec<(u32, u64)> = self.nodes[from as usize]
            .node
            .as_ref()
            .map(|n| {
                n.fleet()
                    .rows
                    .values()
                    .map(|r| (r.zone, row_rank(&forge_row(r))))
                    .collect()
            })
            .unwrap_or_default();
        let own = self.own_status_lie(from, latest);
        match msg {
            Message::Digest(d) => {
                d.rows = named;
                if let Some(own) = own {
                    d.notable.retain(|s| s.body.node != from);
                    d.notable.push(own);
                }
            }
            Message::Rows(rows) | Message::RowWant { rows, .. } => {
                for r in rows.iter_mut() {
                    *r = forge_row(r);
                }
            }
            Message::Statuses(list) => {
                if let Some(own) = own {
                    for s in list.iter_mut().filter(|s| s.body.node == from) {
                        *s = own.clone();
                    }
                }
            }
            _ => {}
        }
    }

    /// The liar's own status, forged from the one its core last signed (re-signed only when
    /// that changes).
    fn own_status_lie(&mut self, liar: u32, latest: u64) -> Option<Arc<SignedStatus<u32>>> {
        let real = self.nodes[liar as usize]
            .node
            .as_ref()?
            .own_status()?
            .clone();
        if let Some((issued, forged)) = self.forged.get(&liar) {
            if *issued == real.body.issued_ms {
                return Some(forged.clone());
            }
        }
        let mut body = real.body.clone();
        body.channels = vec![ChannelStatus {
            channel: self.sc.fleet.channel.clone(),
            version: latest,
            state: ApplyState::Applied,
            target: latest,
            wave: 0,
        }];
        body.healthy = false;
        body.failing_checks = vec!["lie".into()];
        let forged = Arc::new(body.sign(&self.keys[liar as usize]));
        self.forged
            .insert(liar, (real.body.issued_ms, forged.clone()));
        Some(forged)
    }

    fn send(&mut self, from: u32, to: u32, mut msg: Message<u32>) {
        if !self.liars.is_empty() && self.liars.contains(&from) {
            self.lie(from, &mut msg);
        }
        // The envelope (magic + format version) plus the postcard body, counted, not built.
        let bytes = 6 + self.wire.of(&mut msg) as u64;
        let is_bundle = matches!(msg, Message::Bundle(_) | Message::Push { .. });
        self.m.sent(msg.kind(), bytes);
        if chance(&mut self.rng, self.sc.network.loss) {
            return;
        }
        if self.partitioned && self.nodes[from as usize].side != self.nodes[to as usize].side {
            return;
        }
        if !self.up.get(to as usize).is_some_and(|u| *u) {
            return;
        }
        let net = &self.sc.network;
        let lat = uniform(&mut self.rng, net.latency_min_ms, net.latency_max_ms);
        let wire = (bytes as f64 * 8.0 / (net.bandwidth_mbps * 1000.0)) as u64;
        if is_bundle {
            self.m.bundle_received(to, bytes);
        }
        self.push(
            self.now + lat + wire,
            to,
            Ev::Deliver {
                from,
                msg: Box::new(msg),
            },
        );
    }

    fn dispatch(&mut self, at: u64, i: u32, ev: Ev) {
        match ev {
            Ev::Deliver { from, msg } => {
                // The rogue node answers fetches of its bundle itself.
                if let Some((r, b)) = &self.rogue {
                    if i == *r {
                        if let Message::Fetch(h) = &*msg {
                            if *h == b.hash() {
                                let b = b.clone();
                                self.send(i, from, Message::Bundle(WireBundle(b)));
                                return;
                            }
                        }
                    }
                }
                self.handle(i, Event::Message { from, msg: *msg });
            }
            Ev::Tick => {
                let sn = &mut self.nodes[i as usize];
                if sn.wake != at {
                    return; // superseded
                }
                sn.wake = u64::MAX;
                self.handle(i, Event::Tick);
            }
            Ev::ApplyDone { version, ok, life } => {
                if self.nodes[i as usize].life != life || self.nodes[i as usize].node.is_none() {
                    return;
                }
                // Newer, or older when a halted rollout rolls back.
                if ok && version != self.nodes[i as usize].applied {
                    let old = self.nodes[i as usize].applied;
                    self.nodes[i as usize].applied = version;
                    self.m.applied(i, old, version, self.now, &self.releases);
                }
                let ch = self.sc.fleet.channel.clone();
                self.handle(
                    i,
                    Event::ApplyFinished {
                        channel: ch,
                        version,
                        ok,
                    },
                );
                if ok {
                    let share = self.releases.get(&version).map_or(0.0, |r| r.1);
                    let sick = hash_share(i, version) < share;
                    if sick != self.nodes[i as usize].unhealthy {
                        self.nodes[i as usize].unhealthy = sick;
                        if sick {
                            self.unhealthy_count += 1;
                        } else {
                            self.unhealthy_count -= 1;
                        }
                        let failing = if sick {
                            vec!["http".to_string()]
                        } else {
                            vec![]
                        };
                        self.handle(
                            i,
                            Event::Health {
                                healthy: !sick,
                                failing,
                            },
                        );
                    }
                    // An apply undoes whatever drift is outstanding.
                    let open = std::mem::take(&mut self.nodes[i as usize].drift_open);
                    if open > 0 {
                        self.m.drift_open -= open as i64;
                        self.handle(
                            i,
                            Event::Drift {
                                detected: 0,
                                corrected: open as u64,
                            },
                        );
                    }
                }
            }
            Ev::Step(k) => self.step(k),
            Ev::Heal => self.partitioned = false,
            Ev::Restart => self.restart(i),
            Ev::DriftHit => {
                let next = self.next_drift(self.now);
                self.push(next, i, Ev::DriftHit);
                let sn = &mut self.nodes[i as usize];
                if sn.node.is_none() {
                    return;
                }
                sn.drift_open += 1;
                let life = sn.life;
                self.m.drift_open += 1;
                self.m.drift_events += 1;
                self.handle(
                    i,
                    Event::Drift {
                        detected: 1,
                        corrected: 0,
                    },
                );
                self.push(
                    self.now + self.sc.fleet.drift_fix_ms,
                    i,
                    Ev::DriftFix { life },
                );
            }
            Ev::DriftFix { life } => {
                let sn = &mut self.nodes[i as usize];
                if sn.life != life || sn.drift_open == 0 || sn.node.is_none() {
                    return;
                }
                sn.drift_open -= 1;
                self.m.drift_open -= 1;
                self.handle(
                    i,
                    Event::Drift {
                        detected: 0,
                        corrected: 1,
                    },
                );
            }
            Ev::PeerDown(p) => self.handle(i, Event::PeerDown(p)),
            Ev::Sample => {
                self.sample();
                let every = self.m.sample_every;
                if self.now + every <= self.sc.duration_ms {
                    self.push(self.now + every, 0, Ev::Sample);
                }
            }
            Ev::Churn(k) => {
                if let Step::Churn {
                    rate,
                    down_ms,
                    until_ms,
                } = self.sc.timeline[k].action
                {
                    if self.now >= until_ms {
                        return;
                    }
                    // Each second, `rate` of the nodes crash.
                    let n = self.nodes.len();
                    let mut count = (rate * n as f64).floor() as usize;
                    if chance(&mut self.rng, rate * n as f64 - count as f64) {
                        count += 1;
                    }
                    for _ in 0..count {
                        let v = (self.rng.next_u64() % n as u64) as u32;
                        self.crash(v, down_ms);
                    }
                    self.push(self.now + 1000, 0, Ev::Churn(k));
                }
            }
        }
    }

    /// A random live node; with `main_side`, while a partition is open, one that is not cut
    /// off (the release host is on the main side).
    fn live_random(&mut self, main_side: bool) -> u32 {
        let n = self.nodes.len() as u64;
        let cut_off = |sn: &SimNode| main_side && self.partitioned && sn.side;
        for _ in 0..64 {
            let i = (self.rng.next_u64() % n) as u32;
            let sn = &self.nodes[i as usize];
            if sn.node.is_some() && !cut_off(sn) {
                return i;
            }
        }
        0
    }

    fn step(&mut self, k: usize) {
        let step = self.sc.timeline[k].clone();
        match step.action {
            Step::Publish {
                version,
                unhealthy,
                rollout,
            } => {
                let b = self.make_bundle(version, false, rollout.clone());
                self.releases.insert(version, (b.hash(), unhealthy));
                self.m.published(version, self.now, b.encode().len());
                if let Some(policy) = rollout {
                    // Each node's wave, as its core will compute it.
                    let waves = (0..self.nodes.len() as u32)
                        .map(|i| wave_of(i.stable_hash(), version, &policy.waves))
                        .collect();
                    let mut r = RolloutStats::new(policy, self.now, waves);
                    r.zone = (0..self.nodes.len() as u32)
                        .map(|i| zone_of(self.cfg.zone_bits, &i))
                        .collect();
                    for (i, sn) in self.nodes.iter().enumerate() {
                        if sn.applied == version {
                            r.running[r.wave[i] as usize] += 1;
                            r.first_applied[i] = Some(self.now);
                        }
                    }
                    self.m.rollouts.insert(version, r);
                }
                let at = self.live_random(true);
                if std::env::var_os("DRIFTLESS_SIM_TREE").is_some() {
                    self.tree_report(at);
                }
                self.handle(at, Event::Publish(b));
            }
            Step::Rogue { version } => {
                let b = self.make_bundle(version, true, None);
                self.rogue_hashes.push(b.hash());
                let r = self.live_random(false);
                self.rogue = Some((r, b.clone()));
                // The compromised node announces its bundle to its neighbours, pushes it
                // unasked to one of them, and hands it to its own agent.
                let peers = self.nodes[r as usize]
                    .node
                    .as_ref()
                    .map(|n| n.active_peers())
                    .unwrap_or_default();
                let a = driftless_core::proto::Announcement {
                    channel: self.sc.fleet.channel.clone(),
                    version,
                    hash: b.hash(),
                    hops: 0,
                };
                for p in &peers {
                    self.send(r, *p, Message::Announce(vec![a.clone()]));
                }
                if let Some(p) = peers.first() {
                    self.send(r, *p, Message::Bundle(WireBundle(b.clone())));
                }
                self.handle(r, Event::Publish(b));
            }
            Step::Partition { share, heal_ms } => {
                let n = self.nodes.len();
                for (i, sn) in self.nodes.iter_mut().enumerate() {
                    sn.side = hash_share(i as u32, 0xA11CE ^ k as u64) < share;
                }
                let _ = n;
                self.partitioned = true;
                if heal_ms != u64::MAX {
                    self.push(heal_ms, 0, Ev::Heal);
                }
            }
            Step::Crash {
                share,
                down_ms,
                wave,
            } => {
                // Of the whole fleet, or of one wave of the newest rollout.
                let mut idx: Vec<u32> = match wave {
                    None => (0..self.nodes.len() as u32).collect(),
                    Some(w) => self
                        .m
                        .rollouts
                        .values()
                        .next_back()
                        .map(|r| {
                            (0..self.nodes.len() as u32)
                                .filter(|i| r.wave[*i as usize] == w)
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                let n = idx.len();
                let mut count = (share * n as f64).round() as usize;
                if wave.is_some() && share > 0.0 {
                    count = count.max(1);
                }
                for j in 0..count.min(n) {
                    let r = j + (self.rng.next_u64() % (n - j) as u64) as usize;
                    idx.swap(j, r);
                }
                for &v in &idx[..count.min(n)] {
                    self.crash(v, down_ms);
                }
            }
            Step::Churn { .. } => self.push(self.now, 0, Ev::Churn(k)),
        }
    }

    /// `DRIFTLESS_SIM_TREE=1`: the push tree's shape when a release is published (roots,
    /// depths, children per node, links that the two ends do not agree on).
    fn tree_report(&self, publisher: u32) {
        use std::collections::BTreeMap;
        let mut roots: BTreeMap<u32, usize> = BTreeMap::new();
        let mut dists: BTreeMap<u8, usize> = BTreeMap::new();
        let mut nchild: BTreeMap<usize, usize> = BTreeMap::new();
        let mut incons = 0;
        type Position = (u32, u8, Option<u32>, Vec<u32>);
        let pos: Vec<Option<Position>> = self
            .nodes
            .iter()
            .map(|sn| sn.node.as_ref().map(|n| n.tree_position()))
            .collect();
        for (i, p) in pos.iter().enumerate() {
            let Some((r, d, par, ch)) = p else { continue };
            *roots.entry(*r).or_default() += 1;
            *dists.entry(*d).or_default() += 1;
            *nchild.entry(ch.len()).or_default() += 1;
            if let Some(par) = par {
                if let Some((_, _, _, pch)) = &pos[*par as usize] {
                    if !pch.contains(&(i as u32)) {
                        incons += 1;
                    }
                }
            }
            for c in ch {
                if pos[*c as usize].as_ref().and_then(|x| x.2) != Some(i as u32) {
                    incons += 1;
                }
            }
        }
        eprintln!(
            "tree at publish (publisher {publisher}, its dist {:?}): roots {:?} dists {:?} children {:?} inconsistent links {incons}",
            pos[publisher as usize].as_ref().map(|x| x.1),
            roots.iter().take(5).collect::<Vec<_>>(),
            dists,
            nchild
        );
    }

    fn crash(&mut self, i: u32, down_ms: u64) {
        let sn = &mut self.nodes[i as usize];
        let Some(node) = sn.node.take() else {
            return;
        };
        self.up[i as usize] = false;
        sn.life += 1;
        sn.wake = u64::MAX;
        self.m.drift_open -= sn.drift_open as i64;
        sn.drift_open = 0;
        self.m.crashes += 1;
        // The peers' transports see the connections drop.
        let lat = self.sc.network.latency_min_ms.max(1);
        for p in node.active_peers() {
            self.push(self.now + lat, p, Ev::PeerDown(i));
        }
        self.push(self.now + down_ms, i, Ev::Restart);
    }

    fn restart(&mut self, i: u32) {
        let now = self.now_of(self.now);
        let sn = &mut self.nodes[i as usize];
        if sn.node.is_none() {
            let node = Node::restore(
                self.cfg.clone(),
                i,
                self.keys[i as usize].clone(),
                Labels::new(),
                &sn.saved,
                now,
                &self.door,
            );
            sn.node = Some(node);
            self.up[i as usize] = true;
        }
        let bootstrap = sn.bootstrap.clone();
        let sick = sn.unhealthy;
        let bootstrap = if bootstrap.is_empty() && self.nodes.len() > 1 {
            vec![1]
        } else {
            bootstrap
        };
        // The agent's health checks run at start: a node that runs a bad release is still
        // unhealthy after a restart.
        if sick {
            self.handle(
                i,
                Event::Health {
                    healthy: false,
                    failing: vec!["http".to_string()],
                },
            );
        }
        self.handle(i, Event::Start { bootstrap });
    }

    /// Node `i` judged a rollout halted: note when, and in which wave.
    fn note_halt(&mut self, i: u32) {
        let Some(node) = self.nodes[i as usize].node.as_ref() else {
            return;
        };
        let Some(r) = node.rollout(&self.sc.fleet.channel) else {
            return;
        };
        let Some((wave, _, _)) = r.halted else {
            return;
        };
        if let Some(st) = self.m.rollouts.get_mut(&r.version) {
            st.halted[i as usize].get_or_insert((self.now, wave));
        }
    }

    fn sample(&mut self) {
        if let Some(t0) = self.profile {
            if self.now.is_multiple_of(1000) {
                // Wall time goes to the terminal only, never to --out.
                eprintln!(
                    "virtual {} s: wall {:.2} s, {} events queued, {} so far, messages {:?}",
                    self.now / 1000,
                    t0.elapsed().as_secs_f64(),
                    self.queue.len(),
                    self.seq,
                    self.m.count_by_kind()
                );
            }
        }
        // Counted from `up` and `unhealthy_count`, the same as a pass over `nodes` would.
        let alive = self.up.iter().filter(|u| **u).count();
        let unhealthy = self.unhealthy_count;
        debug_assert_eq!(
            (alive, unhealthy),
            (
                self.nodes.iter().filter(|n| n.node.is_some()).count(),
                self.nodes.iter().filter(|n| n.unhealthy).count()
            )
        );
        self.m.push_sample(Sample {
            t_ms: self.now,
            alive,
            unhealthy,
        });
        self.progress.set_position(self.now / 1000);
    }

    /// Nodes whose fleet view matches the truth (sampled: at most 200 nodes).
    pub fn fleet_view_exact(&self) -> (usize, usize) {
        let n = self.nodes.len();
        let latest = self.releases.keys().next_back().copied().unwrap_or(0);
        let truth = self.nodes.iter().filter(|s| s.applied >= latest).count() as u64;
        let step = n.div_ceil(200).max(1);
        let mut ok = 0;
        let mut total = 0;
        for i in (0..n).step_by(step) {
            let Some(node) = &self.nodes[i].node else {
                continue;
            };
            total += 1;
            let c = node.fleet().counts();
            if c.nodes == n as u64
                && (latest == 0 || c.applied_at_least(&self.sc.fleet.channel, latest) == truth)
            {
                ok += 1;
            } else if std::env::var_os("DRIFTLESS_SIM_DEBUG").is_some() {
                eprintln!(
                    "node {i}: sees {} nodes, {} at v{latest} (truth {n}, {truth}); zone {} rows {}",
                    c.nodes,
                    c.applied_at_least(&self.sc.fleet.channel, latest),
                    node.fleet().zone.len(),
                    node.fleet().rows.len()
                );
            }
        }
        (ok, total)
    }

    /// Approximate bytes held per node by the core (sampled).
    pub fn approx_node_bytes(&self) -> usize {
        let n = self.nodes.len();
        let step = n.div_ceil(100).max(1);
        let mut sum = 0;
        let mut k = 0;
        for i in (0..n).step_by(step) {
            if let Some(node) = &self.nodes[i].node {
                sum += node.fleet().approx_bytes()
                    + std::mem::size_of::<Node<u32>>()
                    + node.passive_peers().len() * 4;
                k += 1;
            }
        }
        sum / k.max(1)
    }

    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }
}
