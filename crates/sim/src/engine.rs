//! The event loop: N copies of the protocol core on a virtual network and clock, run as a
//! conservative windowed parallel discrete-event simulation.
//!
//! The fleet is split into shards by node index (node i in shard i mod S); each shard owns
//! its nodes, their random sources, an event queue, its caches and its metrics, and runs on
//! a thread of its own. A message takes at least the minimum latency L to arrive, so within
//! a window [T, T+L) nothing one shard sends arrives at another inside the window: every
//! shard runs its events before T+L alone, then the windows' cross-shard messages are handed
//! over and the metrics merged. Timeline events (publish, crash, partitions, samples, fleet
//! view checks) run alone between windows, which are cut at their times.
//!
//! The run does not depend on S (same seed, same bytes with 1 thread or 8), because nothing
//! depends on the order in which shards or threads interleave:
//! - each node draws from its own random stream (seeded from the scenario's seed and its
//!   index), for its own handling and for the latency and loss of what it sends;
//! - simultaneous events pop in the order of a key that says who caused them (origin node,
//!   that node's count of events caused), not in push order ([`crate::queue`]);
//! - metrics that are sequences in time (adoption curves, halts, accepted) are logged per
//!   shard and merged in (time, node) order; the rest are sums;
//! - what is shared across shards (the door's verdicts) gives the same answer whoever asks
//!   first.
//!
//! A minimum latency of 0 runs on one shard. Messages are moved between nodes as values
//! sharing their bytes (`Arc`); each is sized once to count its bytes on the wire.

use crate::door::{DoorCache, ShardDoor, SharedDoor};
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
    splitmix64, Action, ApplyState, ChannelStatus, Config, Event, Message, Node, Now, PeerId,
    Persisted, SignedStatus, WireBundle, ZoneRow,
};
use driftless_core::trust::TrustRoot;
use driftless_core::Timestamp;
use ed25519_dalek::SigningKey;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};

/// Virtual wall clock at time 0 (2024-01-01): statuses and expiry need a plausible date.
pub const WALL0_MS: u64 = 1_704_067_200_000;
pub const FLEET: &str = "sim";
/// How many bootstrap peers each node is configured with.
const BOOTSTRAP_PEERS: usize = 3;
/// The origin of events caused by the timeline (in keys: after every node's).
const TIMELINE: u32 = u32::MAX;
/// Below this many nodes per shard, a window holds too little work to pay for handing it
/// over between threads: the default thread count stays at or under N / this. Measured on
/// a shared 2-core machine: at 1,000 and 3,000 nodes two threads took 1.7x and 2.2x the wall
/// time of one (a hand-over per 10 ms window costs more than the window's work when the
/// threads share a core); at 10,000 they gain where a core is free.
const MIN_NODES_PER_SHARD: usize = 5000;
/// Threads that helped on the machines measured (see ARCHITECTURE.md); more are allowed
/// with `--threads`.
const DEFAULT_MAX_THREADS: usize = 8;

/// The thread count `--threads` defaults to for `nodes`: the machine's parallelism, at most
/// one shard per `MIN_NODES_PER_SHARD` nodes.
pub fn default_threads(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores
        .min(DEFAULT_MAX_THREADS)
        .min(nodes / MIN_NODES_PER_SHARD)
        .max(1)
}

/// A node's own random stream (SplitMix64): 8 bytes beside its state, where a ChaCha
/// generator is 300. Seeded from the scenario's seed and the node's index, so what a node
/// draws depends on nothing but its own history.
#[derive(Clone)]
pub struct NodeRng(u64);

impl NodeRng {
    fn new(seed: u64, node: u32) -> Self {
        NodeRng(splitmix64(
            splitmix64(seed ^ 0x6472_6966_746c_6573) ^ (node as u64 + 1),
        ))
    }
}

impl RngCore for NodeRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// An event for one node.
enum Ev {
    /// `sent`: when it left its sender; `bytes`: its size on the wire.
    Deliver {
        from: u32,
        bytes: u32,
        sent: u64,
        msg: Box<Message<u32>>,
    },
    Tick,
    ApplyDone {
        version: u64,
        ok: bool,
        life: u32,
    },
    Restart,
    DriftHit,
    DriftFix {
        life: u32,
    },
    PeerDown(u32),
}

/// An event of the timeline: run alone, between windows, before the nodes' events at its time.
enum Global {
    Step(usize),
    Heal,
    Sample,
    Churn(usize),
    /// Check the fleet views as they are after every event at this time.
    Check(u64),
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
    rng: NodeRng,
    /// Events this node has caused: with its index, the key that orders simultaneous events.
    caused: u32,
    /// When it last (re)started: what was sent to it before was lost with its connections.
    up_since: u64,
    /// Bundle bytes delivered to it.
    bundle_rx: u64,
}

/// What stays fixed while shards run (shared by every thread).
struct Fixed<'a> {
    sc: &'a Scenario,
    cfg: Config,
    keys: Vec<SigningKey>,
    door: SharedDoor,
    /// Admitted but compromised nodes: what they send is rewritten by [`Shard::lie`].
    liars: Vec<u32>,
    release_key: [u8; 32],
}

/// What only the timeline changes (between windows): read by every shard during one.
#[derive(Clone)]
struct Cuts {
    /// Published trusted versions: version → (hash, unhealthy share).
    releases: BTreeMap<u64, (BundleHash, f64)>,
    /// The last wave of the newest version's rollout (0 without one).
    last_wave: u8,
    /// The rogue node and the bundle it serves.
    rogue: Option<(u32, Arc<Bundle>)>,
    rogue_hashes: Vec<BundleHash>,
    partitioned: bool,
    /// Per node: on the cut-off side of the partition.
    side: Vec<bool>,
}

/// Things a window's shard logs for the merged metrics, in (time, node) order.
enum Note {
    Applied { old: u64, new: u64 },
    Accepted { version: u64, hops: u16 },
    Halted { version: u64, wave: u8 },
}

/// A shard's share of the metrics since the last merge.
#[derive(Default)]
struct ShardMetrics {
    /// (kind, bytes, messages), found by the kind's address first (see `Metrics::sent`).
    kinds: Vec<(&'static str, u64, u64)>,
    drift_open: i64,
    drift_events: u64,
    untrusted_applied: u64,
    untrusted_accepted: u64,
    refused: BTreeMap<&'static str, u64>,
    notes: Vec<(u64, u32, Note)>,
}

impl ShardMetrics {
    fn sent(&mut self, kind: &'static str, bytes: u64) {
        crate::metrics::add_kind(&mut self.kinds, kind, bytes, 1);
    }
}

/// A message or event for a node of another shard, handed over after the window.
type Outgoing = (u64, u64, u32, Ev);

struct Shard {
    /// This shard's number, and how many there are.
    k: u32,
    of: u32,
    /// Its nodes: node i is `nodes[i / of]`.
    nodes: Vec<SimNode>,
    queue: Queue<(u32, Ev)>,
    /// Per other shard: what goes there after the window.
    outbox: Vec<Vec<Outgoing>>,
    /// Per other shard: what came from there, queued at the start of the next window (by
    /// this shard's thread, not while the others wait).
    inbox: Vec<Vec<Outgoing>>,
    /// Wall time spent running windows, and the thread's CPU time in the last window and in
    /// all (`DRIFTLESS_SIM_PROFILE`; never in the outputs).
    busy: std::time::Duration,
    window_cpu: std::time::Duration,
    cpu: std::time::Duration,
    cache: DoorCache,
    wire: crate::wire::WireSize,
    out: Vec<Action<u32>>,
    /// Per liar: the status it last signed and the forged one sent in its place.
    forged: BTreeMap<u32, (u64, Arc<SignedStatus<u32>>)>,
    sm: ShardMetrics,
    now: u64,
    /// Its running nodes, and those with `unhealthy` set (kept in step where they change).
    alive: usize,
    unhealthy: usize,
    /// Events queued so far.
    pushed: u64,
}

fn uniform(rng: &mut impl RngCore, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        lo
    } else {
        lo + rng.next_u64() % (hi - lo + 1)
    }
}

fn chance(rng: &mut impl RngCore, p: f64) -> bool {
    p > 0.0 && ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
}

/// A deterministic per-(node, salt) draw in [0, 1).
fn hash_share(node: u32, salt: u64) -> f64 {
    let h = splitmix64(((node as u64) << 32) ^ salt.wrapping_mul(0x9E37));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn now_of(at: u64) -> Now {
    Now {
        mono_ms: at,
        wall_ms: WALL0_MS + at,
    }
}

/// `SigningKey::from_bytes` of every seed, in order, on up to `threads` threads.
fn derive_keys(seeds: &[[u8; 32]], threads: usize) -> Vec<SigningKey> {
    let chunk = seeds.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = seeds
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(SigningKey::from_bytes).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("key derivation"))
            .collect()
    })
}

/// The calling thread's CPU time (zero where unknown): for `DRIFTLESS_SIM_PROFILE` only.
fn thread_cpu() -> std::time::Duration {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    std::time::Duration::ZERO
}

/// Exponential inter-arrival times with the scenario's drift rate.
fn next_drift(sc: &Scenario, rng: &mut NodeRng, from: u64) -> u64 {
    let rate_per_ms = sc.fleet.drift_per_node_hour / 3_600_000.0;
    let u = ((rng.next_u64() >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
    from + (-u.ln() / rate_per_ms).min(1e15) as u64 + 1
}

impl Shard {
    /// Node `i`'s place in `nodes` (a shift when the shard count is a power of two: this is
    /// asked several times per event, and a division takes tens of cycles).
    #[inline]
    fn local(&self, i: u32) -> usize {
        if self.of.is_power_of_two() {
            (i >> self.of.trailing_zeros()) as usize
        } else {
            (i / self.of) as usize
        }
    }

    /// The shard of node `i`.
    #[inline]
    fn shard_of(&self, i: u32) -> u32 {
        if self.of.is_power_of_two() {
            i & (self.of - 1)
        } else {
            i % self.of
        }
    }

    /// The key of the next event node `i` (of this shard) causes.
    fn key_of(&mut self, i: u32) -> u64 {
        let l = self.local(i);
        let sn = &mut self.nodes[l];
        sn.caused = sn.caused.wrapping_add(1);
        ((i as u64) << 32) | sn.caused as u64
    }

    /// Queue `ev` for node `to` at `at`: here, or after the window for another shard's node.
    fn route(&mut self, at: u64, key: u64, to: u32, ev: Ev) {
        let s = self.shard_of(to);
        if s == self.k {
            self.pushed += 1;
            self.queue.push(at, key, (to, ev));
        } else {
            self.outbox[s as usize].push((at, key, to, ev));
        }
    }

    /// Run every event of this shard due before `until`.
    fn run_until(&mut self, fx: &Fixed, cuts: &Cuts, until: u64, timed: bool) {
        let t0 = timed.then(|| (std::time::Instant::now(), thread_cpu()));
        self.take_inbox();
        while let Some((at, _, (to, ev))) = self.queue.pop_before(until) {
            self.prefetch_next();
            self.now = at;
            self.dispatch(fx, cuts, to, ev);
        }
        if let Some((t0, c0)) = t0 {
            self.busy += t0.elapsed();
            self.window_cpu = thread_cpu().saturating_sub(c0);
            self.cpu += self.window_cpu;
        }
    }

    /// Queue what other shards sent here. The order of pushes does not matter: events pop
    /// in key order.
    fn take_inbox(&mut self) {
        for from in 0..self.inbox.len() {
            for (at, key, i, ev) in self.inbox[from].drain(..) {
                self.pushed += 1;
                self.queue.push(at, key, (i, ev));
            }
        }
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
                if let Some(sn) = self.nodes.get(self.local(*to)) {
                    let p = sn as *const SimNode as *const u8;
                    for line in 0..std::mem::size_of::<SimNode>().div_ceil(64) {
                        fetch(p.wrapping_add(line * 64));
                    }
                }
            }
            if let Some((to, Ev::Deliver { .. })) = self.queue.peek_near(0) {
                if let Some(node) = self
                    .nodes
                    .get(self.local(*to))
                    .and_then(|sn| sn.node.as_ref())
                {
                    fetch(node.active_view_addr());
                }
            }
        }
    }

    fn handle(&mut self, fx: &Fixed, cuts: &Cuts, i: u32, ev: Event<u32>) {
        let now = now_of(self.now);
        let mut out = std::mem::take(&mut self.out);
        {
            let l = self.local(i);
            let SimNode { node, rng, .. } = &mut self.nodes[l];
            let Some(node) = node.as_mut() else {
                self.out = out;
                return;
            };
            let door = ShardDoor {
                shared: &fx.door,
                cache: &self.cache,
            };
            node.handle(ev, now, rng, &door, &mut out);
        }
        for a in out.drain(..) {
            self.act(fx, cuts, i, a);
        }
        self.out = out;
    }

    fn act(&mut self, fx: &Fixed, cuts: &Cuts, i: u32, a: Action<u32>) {
        let l = self.local(i);
        match a {
            Action::Send { to, msg } => self.send(fx, cuts, i, to, msg),
            Action::WakeAt(t) => {
                // The latest request is the node's current wish; older ticks are stale.
                self.nodes[l].wake = t;
                let key = self.key_of(i);
                self.route(t, key, i, Ev::Tick);
            }
            Action::Apply { bundle, .. } => {
                if !bundle.signers().contains(&fx.release_key) {
                    self.sm.untrusted_applied += 1;
                }
                let version = bundle.header().version;
                let f = &fx.sc.fleet;
                let sn = &mut self.nodes[l];
                let ms = uniform(&mut sn.rng, f.apply_min_ms, f.apply_max_ms);
                let ok = !chance(&mut sn.rng, f.apply_failure);
                let life = sn.life;
                let key = self.key_of(i);
                self.route(self.now + ms, key, i, Ev::ApplyDone { version, ok, life });
            }
            Action::PersistMarks(m) => self.nodes[l].saved.marks = m,
            Action::PersistBundle(b) => {
                let saved = &mut self.nodes[l].saved;
                let ch = b.header().channel.clone();
                saved.bundles.retain(|x| x.header().channel != ch);
                saved.bundles.push(b);
            }
            Action::PersistStatus(s) => {
                // The node signed it just now with its own key (the core signs only its own
                // status): the door knows the verdict.
                if s.body.node == i {
                    let door = ShardDoor {
                        shared: &fx.door,
                        cache: &self.cache,
                    };
                    door.signed(&s, fx.keys[i as usize].verifying_key());
                }
                self.nodes[l].saved.status = Some(s)
            }
            Action::Accepted { version, hops, .. } => {
                if cuts.rogue_hashes.iter().any(|h| {
                    self.nodes[l]
                        .node
                        .as_ref()
                        .and_then(|n| n.held(&fx.sc.fleet.channel))
                        .is_some_and(|x| x.1 == *h)
                }) {
                    self.sm.untrusted_accepted += 1;
                }
                self.sm
                    .notes
                    .push((self.now, i, Note::Accepted { version, hops }));
            }
            Action::Refused { reason, .. } => {
                *self.sm.refused.entry(reason).or_default() += 1;
                if reason == "rollout_halted" {
                    self.note_halt(fx, i);
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
    fn lie(&mut self, fx: &Fixed, cuts: &Cuts, from: u32, msg: &mut Message<u32>) {
        let Some((&latest, _)) = cuts.releases.iter().next_back() else {
            return;
        };
        let last_wave = cuts.last_wave;
        let channel = fx.sc.fleet.channel.clone();
        let wall = WALL0_MS + self.now;
        let zone_bits = fx.cfg.zone_bits;
        let key = &fx.keys[from as usize];
        let my_zone = zone_of(zone_bits, &from);
        let liar_mode = fx.sc.fleet.liar_mode;
        let l = self.local(from);
        // Its own zone's row says as many members as its table counts: the lie is in the
        // counts (a row stuck at a restarted table's few members would only stall the
        // rollout, as any view with a sparse zone waits).
        let my_members = self.nodes[l]
            .node
            .as_ref()
            .map_or(0, |n| n.fleet().zone.len() as u32);
        // With groups it is a member of its group too, and may sign the group's row: it
        // lies there as in its zone's row, its group counted as its table and the other
        // zone rows of the group it holds add up (its own zone's row may be its own forgery).
        let group_bits = fx.cfg.group_bits;
        let my_group_key = (group_bits > 0).then(|| GROUP_FLAG | group_of(group_bits, &from));
        let group_members = self.nodes[l].node.as_ref().map_or(0, |n| {
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
        let named: Vec<(u32, u64)> = self.nodes[l]
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
        let own = self.own_status_lie(fx, from, latest);
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
    fn own_status_lie(
        &mut self,
        fx: &Fixed,
        liar: u32,
        latest: u64,
    ) -> Option<Arc<SignedStatus<u32>>> {
        let real = self.nodes[self.local(liar)]
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
            channel: fx.sc.fleet.channel.clone(),
            version: latest,
            state: ApplyState::Applied,
            target: latest,
            wave: 0,
        }];
        body.healthy = false;
        body.failing_checks = vec!["lie".into()];
        let forged = Arc::new(body.sign(&fx.keys[liar as usize]));
        self.forged
            .insert(liar, (real.body.issued_ms, forged.clone()));
        Some(forged)
    }

    /// Node `from` sends `msg`: counted, then lost, cut off by a partition, or delivered
    /// after a latency drawn from the sender's own stream. Whether the receiver is up is
    /// asked at delivery, by the receiver's shard.
    fn send(&mut self, fx: &Fixed, cuts: &Cuts, from: u32, to: u32, mut msg: Message<u32>) {
        if !fx.liars.is_empty() && fx.liars.contains(&from) {
            self.lie(fx, cuts, from, &mut msg);
        }
        // The envelope (magic + format version) plus the postcard body, counted, not built.
        let bytes = 6 + self.wire.of(&mut msg) as u64;
        self.sm.sent(msg.kind(), bytes);
        let net = &fx.sc.network;
        let l = self.local(from);
        let rng = &mut self.nodes[l].rng;
        if chance(rng, net.loss) {
            return;
        }
        if cuts.partitioned && cuts.side[from as usize] != cuts.side[to as usize] {
            return;
        }
        let lat = uniform(rng, net.latency_min_ms, net.latency_max_ms);
        let wire = (bytes as f64 * 8.0 / (net.bandwidth_mbps * 1000.0)) as u64;
        let key = self.key_of(from);
        self.route(
            self.now + lat + wire,
            key,
            to,
            Ev::Deliver {
                from,
                bytes: bytes.min(u32::MAX as u64) as u32,
                sent: self.now,
                msg: Box::new(msg),
            },
        );
    }

    fn dispatch(&mut self, fx: &Fixed, cuts: &Cuts, i: u32, ev: Ev) {
        let l = self.local(i);
        match ev {
            Ev::Deliver {
                from,
                bytes,
                sent,
                msg,
            } => {
                let sn = &mut self.nodes[l];
                // A message to a node that was down when it was sent (or that crashed since)
                // is lost with the connection.
                if sn.node.is_none() || sent < sn.up_since {
                    return;
                }
                if matches!(*msg, Message::Bundle(_) | Message::Push { .. }) {
                    sn.bundle_rx += bytes as u64;
                }
                // The rogue node answers fetches of its bundle itself.
                if let Some((r, b)) = &cuts.rogue {
                    if i == *r {
                        if let Message::Fetch(h) = &*msg {
                            if *h == b.hash() {
                                let b = b.clone();
                                self.send(fx, cuts, i, from, Message::Bundle(WireBundle(b)));
                                return;
                            }
                        }
                    }
                }
                self.handle(fx, cuts, i, Event::Message { from, msg: *msg });
            }
            Ev::Tick => {
                let sn = &mut self.nodes[l];
                if sn.wake != self.now {
                    return; // superseded
                }
                sn.wake = u64::MAX;
                self.handle(fx, cuts, i, Event::Tick);
            }
            Ev::ApplyDone { version, ok, life } => {
                let sn = &mut self.nodes[l];
                if sn.life != life || sn.node.is_none() {
                    return;
                }
                // Newer, or older when a halted rollout rolls back.
                if ok && version != sn.applied {
                    let old = sn.applied;
                    sn.applied = version;
                    self.sm
                        .notes
                        .push((self.now, i, Note::Applied { old, new: version }));
                }
                let channel = fx.sc.fleet.channel.clone();
                self.handle(
                    fx,
                    cuts,
                    i,
                    Event::ApplyFinished {
                        channel,
                        version,
                        ok,
                    },
                );
                if ok {
                    let share = cuts.releases.get(&version).map_or(0.0, |r| r.1);
                    let sick = hash_share(i, version) < share;
                    if sick != self.nodes[l].unhealthy {
                        self.nodes[l].unhealthy = sick;
                        if sick {
                            self.unhealthy += 1;
                        } else {
                            self.unhealthy -= 1;
                        }
                        let failing = if sick {
                            vec!["http".to_string()]
                        } else {
                            vec![]
                        };
                        self.handle(
                            fx,
                            cuts,
                            i,
                            Event::Health {
                                healthy: !sick,
                                failing,
                            },
                        );
                    }
                    // An apply undoes whatever drift is outstanding.
                    let open = std::mem::take(&mut self.nodes[l].drift_open);
                    if open > 0 {
                        self.sm.drift_open -= open as i64;
                        self.handle(
                            fx,
                            cuts,
                            i,
                            Event::Drift {
                                detected: 0,
                                corrected: open as u64,
                            },
                        );
                    }
                }
            }
            Ev::Restart => self.restart(fx, cuts, i),
            Ev::DriftHit => {
                let next = next_drift(fx.sc, &mut self.nodes[l].rng, self.now);
                let key = self.key_of(i);
                self.route(next, key, i, Ev::DriftHit);
                let sn = &mut self.nodes[l];
                if sn.node.is_none() {
                    return;
                }
                sn.drift_open += 1;
                let life = sn.life;
                self.sm.drift_open += 1;
                self.sm.drift_events += 1;
                self.handle(
                    fx,
                    cuts,
                    i,
                    Event::Drift {
                        detected: 1,
                        corrected: 0,
                    },
                );
                let key = self.key_of(i);
                self.route(
                    self.now + fx.sc.fleet.drift_fix_ms,
                    key,
                    i,
                    Ev::DriftFix { life },
                );
            }
            Ev::DriftFix { life } => {
                let sn = &mut self.nodes[l];
                if sn.life != life || sn.drift_open == 0 || sn.node.is_none() {
                    return;
                }
                sn.drift_open -= 1;
                self.sm.drift_open -= 1;
                self.handle(
                    fx,
                    cuts,
                    i,
                    Event::Drift {
                        detected: 0,
                        corrected: 1,
                    },
                );
            }
            Ev::PeerDown(p) => self.handle(fx, cuts, i, Event::PeerDown(p)),
        }
    }

    /// Start node `i`, or restart it after a crash from what it persisted.
    fn restart(&mut self, fx: &Fixed, cuts: &Cuts, i: u32) {
        let now = now_of(self.now);
        let l = self.local(i);
        let sn = &mut self.nodes[l];
        if sn.node.is_none() {
            let door = ShardDoor {
                shared: &fx.door,
                cache: &self.cache,
            };
            let node = Node::restore(
                fx.cfg.clone(),
                i,
                fx.keys[i as usize].clone(),
                Labels::new(),
                &sn.saved,
                now,
                &door,
            );
            sn.node = Some(node);
            sn.up_since = self.now;
            self.alive += 1;
        }
        let sn = &self.nodes[l];
        // A node without bootstrap peers (the first) comes back through node 1.
        let bootstrap = if sn.bootstrap.is_empty() && sn.life > 0 && fx.sc.nodes > 1 {
            vec![1]
        } else {
            sn.bootstrap.clone()
        };
        // The agent's health checks run at start: a node that runs a bad release is still
        // unhealthy after a restart.
        if sn.unhealthy {
            self.handle(
                fx,
                cuts,
                i,
                Event::Health {
                    healthy: false,
                    failing: vec!["http".to_string()],
                },
            );
        }
        self.handle(fx, cuts, i, Event::Start { bootstrap });
    }

    /// Node `i` judged a rollout halted: note when, and in which wave.
    fn note_halt(&mut self, fx: &Fixed, i: u32) {
        let Some(node) = self.nodes[self.local(i)].node.as_ref() else {
            return;
        };
        let Some(r) = node.rollout(&fx.sc.fleet.channel) else {
            return;
        };
        let Some((wave, _, _)) = r.halted else {
            return;
        };
        let version = r.version;
        self.sm
            .notes
            .push((self.now, i, Note::Halted { version, wave }));
    }
}

pub struct Engine<'a> {
    fx: Arc<Fixed<'a>>,
    cuts: Arc<Cuts>,
    shards: Vec<Shard>,
    /// The timeline's own queue, in (time, push order).
    globals: BTreeMap<(u64, u64), Global>,
    gseq: u64,
    /// Events the timeline caused for nodes (their keys).
    gcaused: u32,
    /// The timeline's random source (which node publishes, which crash).
    rng: ChaCha8Rng,
    release_key: SigningKey,
    rogue_key: SigningKey,
    now: u64,
    /// Windows are at most this long: the minimum latency (0: one shard, no windows).
    lookahead: u64,
    pub m: Metrics,
    progress: ProgressBar,
    /// Times at which to check every sampled node's fleet view against the truth.
    pub checks_at: Vec<u64>,
    /// `DRIFTLESS_SIM_PROFILE` set: print wall time and message counts every virtual second.
    profile: Option<std::time::Instant>,
}

impl<'a> Engine<'a> {
    /// A fleet for scenario `sc`, run on `threads` threads (1 when the minimum latency is 0).
    /// The run is the same whatever `threads` is.
    pub fn new(sc: &'a Scenario, seed: u64, threads: usize) -> Engine<'a> {
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
        // The seeds are drawn in order; the keys (a scalar multiplication each, ~2 s of CPU
        // at 100,000 nodes) are derived on the run's threads.
        let seeds: Vec<[u8; 32]> = (0..n)
            .map(|_| {
                rng.fill_bytes(&mut seed32);
                seed32
            })
            .collect();
        let keys = derive_keys(&seeds, threads);
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
        let door = SharedDoor::new(
            TrustRoot::new(FLEET, vec![release_key.verifying_key()], 1),
            keys.iter().map(|k| k.verifying_key()).collect(),
        );
        let lookahead = sc.network.latency_min_ms;
        let of = if lookahead == 0 {
            1
        } else {
            threads.clamp(1, n.max(1))
        } as u32;
        let mut shards: Vec<Shard> = (0..of)
            .map(|k| Shard {
                k,
                of,
                nodes: Vec::with_capacity(n / of as usize + 1),
                queue: Queue::new(),
                outbox: (0..of).map(|_| Vec::new()).collect(),
                inbox: (0..of).map(|_| Vec::new()).collect(),
                busy: Default::default(),
                window_cpu: Default::default(),
                cpu: Default::default(),
                cache: DoorCache::default(),
                wire: Default::default(),
                out: Vec::with_capacity(64),
                forged: BTreeMap::new(),
                sm: ShardMetrics::default(),
                now: 0,
                alive: 0,
                unhealthy: 0,
                pushed: 0,
            })
            .collect();
        for i in 0..n as u32 {
            let bootstrap = if i == 0 {
                vec![]
            } else {
                (0..BOOTSTRAP_PEERS.min(i as usize))
                    .map(|_| (rng.next_u64() % i as u64) as u32)
                    .collect()
            };
            let sh = &mut shards[(i % of) as usize];
            sh.nodes.push(SimNode {
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
                rng: NodeRng::new(seed, i),
                caused: 0,
                up_since: 0,
                bundle_rx: 0,
            });
            sh.alive += 1;
        }
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
        let release_bytes = release_key.verifying_key().to_bytes();
        let cuts = Cuts {
            releases: BTreeMap::new(),
            last_wave: 0,
            rogue: None,
            rogue_hashes: Vec::new(),
            partitioned: false,
            side: vec![false; n],
        };
        Engine {
            fx: Arc::new(Fixed {
                sc,
                cfg,
                keys,
                door,
                liars,
                release_key: release_bytes,
            }),
            cuts: Arc::new(cuts),
            shards,
            globals: BTreeMap::new(),
            gseq: 0,
            gcaused: 0,
            rng,
            release_key,
            rogue_key,
            now: 0,
            lookahead,
            m: Metrics::new(n, sc.duration_ms),
            progress,
            checks_at: Vec::new(),
            profile: std::env::var_os("DRIFTLESS_SIM_PROFILE").map(|_| std::time::Instant::now()),
        }
    }

    pub fn cfg(&self) -> &Config {
        &self.fx.cfg
    }

    /// Admitted but compromised nodes.
    pub fn liars(&self) -> &[u32] {
        &self.fx.liars
    }

    /// Distinct signatures the door checked (bundles, and statuses or rows not signed here).
    pub fn signatures_checked(&self) -> usize {
        self.fx.door.check.len()
    }

    /// Statuses whose verdict the door knew when their node signed them.
    pub fn statuses_signed(&self) -> u64 {
        self.fx.door.statuses_signed()
    }

    /// How many shards (threads) run the fleet.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    fn of(&self) -> u32 {
        self.shards.len() as u32
    }

    pub fn node(&self, i: u32) -> &SimNode {
        let of = self.of();
        &self.shards[(i % of) as usize].nodes[(i / of) as usize]
    }

    /// Every node, in index order.
    pub fn nodes(&self) -> impl Iterator<Item = &SimNode> + '_ {
        (0..self.fx.sc.nodes as u32).map(|i| self.node(i))
    }

    pub fn releases(&self) -> &BTreeMap<u64, (BundleHash, f64)> {
        &self.cuts.releases
    }

    pub fn is_partitioned(&self) -> bool {
        self.cuts.partitioned
    }

    fn cuts_mut(&mut self) -> &mut Cuts {
        Arc::make_mut(&mut self.cuts)
    }

    fn global_at(&mut self, at: u64, g: Global) {
        self.gseq += 1;
        self.globals.insert((at, self.gseq), g);
    }

    /// Queue an event the timeline causes for node `i`.
    fn queue_for(&mut self, at: u64, i: u32, ev: Ev) {
        self.gcaused = self.gcaused.wrapping_add(1);
        let key = ((TIMELINE as u64) << 32) | self.gcaused as u64;
        let of = self.of();
        self.shards[(i % of) as usize].route(at, key, i, ev);
    }

    /// Node `i` handles `ev` now, from the timeline.
    fn node_handle(&mut self, i: u32, ev: Event<u32>) {
        let of = self.of();
        let sh = &mut self.shards[(i % of) as usize];
        sh.now = self.now;
        sh.handle(&self.fx, &self.cuts, i, ev);
    }

    /// Node `from` sends `msg` now, from the timeline.
    fn node_send(&mut self, from: u32, to: u32, msg: Message<u32>) {
        let of = self.of();
        let sh = &mut self.shards[(from % of) as usize];
        sh.now = self.now;
        sh.send(&self.fx, &self.cuts, from, to, msg);
    }

    pub fn make_bundle(
        &self,
        version: u64,
        rogue: bool,
        rollout: Option<RolloutPolicy>,
    ) -> Arc<Bundle> {
        let sc = self.fx.sc;
        let content = "#".repeat(sc.fleet.bundle_bytes.saturating_sub(400));
        let def = CompiledDefinition {
            name: sc.fleet.channel.clone(),
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
            channel: sc.fleet.channel.clone(),
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
        let sc = self.fx.sc;
        let n = sc.nodes as u32;
        let end = sc.duration_ms;
        // Nodes start over the first second, each through its bootstrap peers.
        for i in 0..n {
            self.queue_for((i as u64 * 1000) / n as u64, i, Ev::Restart);
        }
        for (k, s) in sc.timeline.iter().enumerate() {
            self.global_at(s.at_ms, Global::Step(k));
        }
        if sc.fleet.drift_per_node_hour > 0.0 {
            for i in 0..n {
                let of = self.of();
                let sn = &mut self.shards[(i % of) as usize].nodes[(i / of) as usize];
                let at = next_drift(sc, &mut sn.rng, 0);
                self.queue_for(at, i, Ev::DriftHit);
            }
        }
        self.global_at(0, Global::Sample);
        let mut checks = std::mem::take(&mut self.checks_at);
        checks.sort_unstable();
        // A check at c sees every event at c: it runs before those at c + 1.
        let late = checks.split_off(checks.partition_point(|c| *c < end));
        for c in checks {
            self.global_at(c + 1, Global::Check(c));
        }
        let shards = self.shards.len();
        let lookahead = if shards > 1 { self.lookahead } else { u64::MAX };
        let timed = self.profile.is_some();
        let (mut windows, mut waited) = (0u64, std::time::Duration::ZERO);
        // CPU time: per window the slowest shard's, summed; and the main thread's outside
        // windows (the timeline, hand-overs, merges).
        let (mut slowest, mut between) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        let mut mark = thread_cpu();
        std::thread::scope(|scope| {
            // Shards 1.. go to a thread each for every window and come back.
            let mut jobs = Vec::new();
            let mut dones = Vec::new();
            for _ in 1..shards {
                let (job_tx, job_rx) = mpsc::channel::<(Shard, Arc<Cuts>, u64)>();
                let (done_tx, done_rx) = mpsc::channel::<Shard>();
                let fx = self.fx.clone();
                scope.spawn(move || {
                    while let Ok((mut sh, cuts, until)) = job_rx.recv() {
                        sh.run_until(&fx, &cuts, until, timed);
                        // Dropped before the shard goes back, so the timeline can change
                        // `cuts` in place.
                        drop(cuts);
                        if done_tx.send(sh).is_err() {
                            break;
                        }
                    }
                });
                jobs.push(job_tx);
                dones.push(done_rx);
            }
            let mut t = 0u64;
            while t <= end {
                // The timeline's events at t, before the nodes' events at t.
                while let Some(entry) = self.globals.first_entry() {
                    if entry.key().0 > t {
                        break;
                    }
                    let g = entry.remove();
                    self.now = t;
                    self.global(g);
                }
                self.flush_outboxes();
                let next_global = self
                    .globals
                    .first_key_value()
                    .map_or(u64::MAX, |(k, _)| k.0);
                let until = next_global.min(end + 1).min(t.saturating_add(lookahead));
                if timed {
                    between += thread_cpu().saturating_sub(mark);
                }
                if shards == 1 {
                    self.shards[0].run_until(&self.fx, &self.cuts, until, timed);
                } else {
                    let rest = self.shards.split_off(1);
                    for (sh, job) in rest.into_iter().zip(&jobs) {
                        job.send((sh, self.cuts.clone(), until))
                            .expect("shard thread");
                    }
                    self.shards[0].run_until(&self.fx, &self.cuts, until, timed);
                    let w0 = timed.then(std::time::Instant::now);
                    for done in &dones {
                        self.shards.push(done.recv().expect("shard thread"));
                    }
                    if let Some(w0) = w0 {
                        waited += w0.elapsed();
                    }
                }
                windows += 1;
                if timed {
                    mark = thread_cpu();
                    slowest += self
                        .shards
                        .iter()
                        .map(|s| s.window_cpu)
                        .max()
                        .unwrap_or_default();
                }
                self.flush_outboxes();
                self.merge();
                t = until;
            }
            drop(jobs);
        });
        if let Some(t0) = self.profile {
            // Wall time goes to the terminal only, never to --out.
            let busy: Vec<String> = self
                .shards
                .iter()
                .map(|s| format!("{:.2}", s.busy.as_secs_f64()))
                .collect();
            let cpu: Vec<String> = self
                .shards
                .iter()
                .map(|s| format!("{:.2}", s.cpu.as_secs_f64()))
                .collect();
            eprintln!(
                "{shards} shards, {windows} windows: wall {:.2} s; shards busy {} s (wall), {} s (CPU); shard 0 waited {:.2} s for the others; CPU of the slowest shard per window, summed, {:.2} s, plus {:.2} s between windows (on {shards} free cores the run would take about their sum)",
                t0.elapsed().as_secs_f64(),
                busy.join(" / "),
                cpu.join(" / "),
                waited.as_secs_f64(),
                slowest.as_secs_f64(),
                between.as_secs_f64(),
            );
        }
        for c in late {
            self.now = c.min(end);
            let (ok, total) = self.fleet_view_exact();
            self.m.fleet_checks.push((c, ok, total));
        }
        self.now = end;
        for i in 0..n {
            self.m.bundle_rx[i as usize] = self.node(i).bundle_rx;
        }
        self.progress.finish_and_clear();
    }

    /// Hand what each shard queued for another's nodes over to it: whole lists, each queued
    /// by its receiver at the start of its next window ([`Shard::take_inbox`]).
    fn flush_outboxes(&mut self) {
        let of = self.shards.len();
        for k in 0..of {
            for j in 0..of {
                if j == k || self.shards[k].outbox[j].is_empty() {
                    continue;
                }
                let mut out = std::mem::take(&mut self.shards[k].outbox[j]);
                let inbox = &mut self.shards[j].inbox[k];
                if inbox.is_empty() {
                    // The receiver's empty list (its capacity kept) goes back as the outbox.
                    std::mem::swap(inbox, &mut out);
                } else {
                    inbox.append(&mut out);
                }
                self.shards[k].outbox[j] = out;
            }
        }
    }

    /// Merge the shards' metrics of the window into the run's, notes in (time, node) order
    /// (a node's notes keep their order: each node is in one shard).
    fn merge(&mut self) {
        let mut notes = Vec::new();
        for sh in &mut self.shards {
            let sm = &mut sh.sm;
            for k in sm.kinds.iter_mut() {
                if k.2 > 0 {
                    self.m.sent_many(k.0, k.1, k.2);
                    k.1 = 0;
                    k.2 = 0;
                }
            }
            self.m.drift_open += std::mem::take(&mut sm.drift_open);
            self.m.drift_events += std::mem::take(&mut sm.drift_events);
            self.m.untrusted_applied += std::mem::take(&mut sm.untrusted_applied);
            self.m.untrusted_accepted += std::mem::take(&mut sm.untrusted_accepted);
            for (reason, c) in std::mem::take(&mut sm.refused) {
                *self.m.refused.entry(reason).or_default() += c;
            }
            notes.append(&mut sm.notes);
        }
        notes.sort_by_key(|(t, i, _)| (*t, *i));
        for (t, i, note) in notes {
            match note {
                Note::Applied { old, new } => {
                    self.m.applied(i, old, new, t, &self.cuts.releases);
                }
                Note::Accepted { version, hops } => self.m.accepted(version, hops, t),
                Note::Halted { version, wave } => {
                    if let Some(st) = self.m.rollouts.get_mut(&version) {
                        st.halted[i as usize].get_or_insert((t, wave));
                    }
                }
            }
        }
    }

    fn global(&mut self, g: Global) {
        match g {
            Global::Step(k) => self.step(k),
            Global::Heal => self.cuts_mut().partitioned = false,
            Global::Sample => {
                self.sample();
                let every = self.m.sample_every;
                if self.now + every <= self.fx.sc.duration_ms {
                    self.global_at(self.now + every, Global::Sample);
                }
            }
            Global::Churn(k) => {
                if let Step::Churn {
                    rate,
                    down_ms,
                    until_ms,
                } = self.fx.sc.timeline[k].action
                {
                    if self.now >= until_ms {
                        return;
                    }
                    // Each second, `rate` of the nodes crash.
                    let n = self.fx.sc.nodes;
                    let mut count = (rate * n as f64).floor() as usize;
                    if chance(&mut self.rng, rate * n as f64 - count as f64) {
                        count += 1;
                    }
                    for _ in 0..count {
                        let v = (self.rng.next_u64() % n as u64) as u32;
                        self.crash(v, down_ms);
                    }
                    self.global_at(self.now + 1000, Global::Churn(k));
                }
            }
            Global::Check(c) => {
                let (ok, total) = self.fleet_view_exact();
                self.m.fleet_checks.push((c, ok, total));
            }
        }
    }

    /// A random live node; with `main_side`, while a partition is open, one that is not cut
    /// off (the release host is on the main side).
    fn live_random(&mut self, main_side: bool) -> u32 {
        let n = self.fx.sc.nodes as u64;
        for _ in 0..64 {
            let i = (self.rng.next_u64() % n) as u32;
            let cut_off = main_side && self.cuts.partitioned && self.cuts.side[i as usize];
            if self.node(i).node.is_some() && !cut_off {
                return i;
            }
        }
        0
    }

    fn step(&mut self, k: usize) {
        let sc = self.fx.sc;
        let step = sc.timeline[k].clone();
        let n = sc.nodes as u32;
        match step.action {
            Step::Publish {
                version,
                unhealthy,
                rollout,
            } => {
                let b = self.make_bundle(version, false, rollout.clone());
                self.cuts_mut()
                    .releases
                    .insert(version, (b.hash(), unhealthy));
                self.m.published(version, self.now, b.encode().len());
                if let Some(policy) = rollout {
                    // Each node's wave, as its core will compute it.
                    let waves = (0..n)
                        .map(|i| wave_of(i.stable_hash(), version, &policy.waves))
                        .collect();
                    let mut r = RolloutStats::new(policy, self.now, waves);
                    r.zone = (0..n).map(|i| zone_of(self.fx.cfg.zone_bits, &i)).collect();
                    for i in 0..n {
                        if self.node(i).applied == version {
                            r.running[r.wave[i as usize] as usize] += 1;
                            r.first_applied[i as usize] = Some(self.now);
                        }
                    }
                    self.m.rollouts.insert(version, r);
                }
                // What liars claim: the last wave of the newest version's rollout.
                let last_wave = self
                    .cuts
                    .releases
                    .keys()
                    .next_back()
                    .and_then(|v| self.m.rollouts.get(v))
                    .map_or(0, |r| r.policy.waves.len().saturating_sub(1) as u8);
                self.cuts_mut().last_wave = last_wave;
                let at = self.live_random(true);
                if std::env::var_os("DRIFTLESS_SIM_TREE").is_some() {
                    self.tree_report(at);
                }
                self.node_handle(at, Event::Publish(b));
            }
            Step::Rogue { version } => {
                let b = self.make_bundle(version, true, None);
                let r = self.live_random(false);
                let cuts = self.cuts_mut();
                cuts.rogue_hashes.push(b.hash());
                cuts.rogue = Some((r, b.clone()));
                // The compromised node announces its bundle to its neighbours, pushes it
                // unasked to one of them, and hands it to its own agent.
                let peers = self
                    .node(r)
                    .node
                    .as_ref()
                    .map(|n| n.active_peers())
                    .unwrap_or_default();
                let a = driftless_core::proto::Announcement {
                    channel: sc.fleet.channel.clone(),
                    version,
                    hash: b.hash(),
                    hops: 0,
                };
                for p in &peers {
                    self.node_send(r, *p, Message::Announce(vec![a.clone()]));
                }
                if let Some(p) = peers.first() {
                    self.node_send(r, *p, Message::Bundle(WireBundle(b.clone())));
                }
                self.node_handle(r, Event::Publish(b));
            }
            Step::Partition { share, heal_ms } => {
                let cuts = self.cuts_mut();
                for (i, side) in cuts.side.iter_mut().enumerate() {
                    *side = hash_share(i as u32, 0xA11CE ^ k as u64) < share;
                }
                cuts.partitioned = true;
                if heal_ms != u64::MAX {
                    self.global_at(heal_ms, Global::Heal);
                }
            }
            Step::Crash {
                share,
                down_ms,
                wave,
            } => {
                // Of the whole fleet, or of one wave of the newest rollout.
                let mut idx: Vec<u32> = match wave {
                    None => (0..n).collect(),
                    Some(w) => self
                        .m
                        .rollouts
                        .values()
                        .next_back()
                        .map(|r| (0..n).filter(|i| r.wave[*i as usize] == w).collect())
                        .unwrap_or_default(),
                };
                let len = idx.len();
                let mut count = (share * len as f64).round() as usize;
                if wave.is_some() && share > 0.0 {
                    count = count.max(1);
                }
                for j in 0..count.min(len) {
                    let r = j + (self.rng.next_u64() % (len - j) as u64) as usize;
                    idx.swap(j, r);
                }
                for &v in &idx[..count.min(len)] {
                    self.crash(v, down_ms);
                }
            }
            Step::Churn { .. } => self.global_at(self.now, Global::Churn(k)),
        }
    }

    /// `DRIFTLESS_SIM_TREE=1`: the push tree's shape when a release is published (roots,
    /// depths, children per node, links that the two ends do not agree on).
    fn tree_report(&self, publisher: u32) {
        let mut roots: BTreeMap<u32, usize> = BTreeMap::new();
        let mut dists: BTreeMap<u8, usize> = BTreeMap::new();
        let mut nchild: BTreeMap<usize, usize> = BTreeMap::new();
        let mut incons = 0;
        type Position = (u32, u8, Option<u32>, Vec<u32>);
        let pos: Vec<Option<Position>> = self
            .nodes()
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
        let of = self.of();
        let sh = &mut self.shards[(i % of) as usize];
        let sn = &mut sh.nodes[(i / of) as usize];
        let Some(node) = sn.node.take() else {
            return;
        };
        sh.alive -= 1;
        sn.life += 1;
        sn.wake = u64::MAX;
        self.m.drift_open -= sn.drift_open as i64;
        sn.drift_open = 0;
        self.m.crashes += 1;
        // The peers' transports see the connections drop.
        let lat = self.fx.sc.network.latency_min_ms.max(1);
        for p in node.active_peers() {
            self.queue_for(self.now + lat, p, Ev::PeerDown(i));
        }
        self.queue_for(self.now + down_ms, i, Ev::Restart);
    }

    fn sample(&mut self) {
        if let Some(t0) = self.profile {
            if self.now.is_multiple_of(1000) {
                // Wall time goes to the terminal only, never to --out.
                eprintln!(
                    "virtual {} s: wall {:.2} s, {} events queued, {} so far, messages {:?}",
                    self.now / 1000,
                    t0.elapsed().as_secs_f64(),
                    self.shards.iter().map(|s| s.queue.len()).sum::<usize>(),
                    self.shards.iter().map(|s| s.pushed).sum::<u64>(),
                    self.m.count_by_kind()
                );
            }
        }
        // Counted per shard where nodes change, the same as a pass over the nodes would.
        let alive = self.shards.iter().map(|s| s.alive).sum();
        let unhealthy = self.shards.iter().map(|s| s.unhealthy).sum();
        debug_assert_eq!(
            (alive, unhealthy),
            (
                self.nodes().filter(|n| n.node.is_some()).count(),
                self.nodes().filter(|n| n.unhealthy).count()
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
        let n = self.fx.sc.nodes;
        let channel = &self.fx.sc.fleet.channel;
        let latest = self.cuts.releases.keys().next_back().copied().unwrap_or(0);
        let truth = self.nodes().filter(|s| s.applied >= latest).count() as u64;
        let step = n.div_ceil(200).max(1);
        let mut ok = 0;
        let mut total = 0;
        for i in (0..n).step_by(step) {
            let Some(node) = &self.node(i as u32).node else {
                continue;
            };
            total += 1;
            let c = node.fleet().counts();
            if c.nodes == n as u64 && (latest == 0 || c.applied_at_least(channel, latest) == truth)
            {
                ok += 1;
            } else if std::env::var_os("DRIFTLESS_SIM_DEBUG").is_some() {
                eprintln!(
                    "node {i}: sees {} nodes, {} at v{latest} (truth {n}, {truth}); zone {} rows {}",
                    c.nodes,
                    c.applied_at_least(channel, latest),
                    node.fleet().zone.len(),
                    node.fleet().rows.len()
                );
            }
        }
        (ok, total)
    }

    /// Approximate bytes held per node by the core (sampled).
    pub fn approx_node_bytes(&self) -> usize {
        let n = self.fx.sc.nodes;
        let step = n.div_ceil(100).max(1);
        let mut sum = 0;
        let mut k = 0;
        for i in (0..n).step_by(step) {
            if let Some(node) = &self.node(i as u32).node {
                sum += node.fleet().approx_bytes()
                    + std::mem::size_of::<Node<u32>>()
                    + node.passive_peers().len() * 4;
                k += 1;
            }
        }
        sum / k.max(1)
    }
}
