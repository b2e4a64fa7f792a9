//! One node's protocol state: events in, actions out.
//!
//! Dissemination: a node that accepts a new version (verified by the door, above its
//! high-water mark) persists it, hands it to apply when it targets this node, pushes it to
//! its neighbours on the push tree (`tree.rs`, built before any release) and announces it
//! (channel, version, hash) to its other active peers. A peer that learns of a newer version
//! and gets no push within a grace period fetches the bundle by hash from the first peer that
//! announced it, once; other announcers are kept as alternates for a retry. Every round a node sends a digest of what it holds to
//! one random peer, who answers with its own (push-pull): whoever is behind fetches. So a
//! bundle crosses each node about once, and a node that was down or cut off catches up
//! within a round or two of reconnecting, with no re-publish.

use super::config::Config;
use super::door::Door;
use super::fleet::{row_rank, FleetView, Foreign, RowRefusal, ZoneRow, GROUP_FLAG};
use super::membership::Membership;
use super::message::{Announcement, Digest, Message, WireBundle};
use super::rollout::{self, Decision, Wait, WaveTally};
use super::status::{ApplyState, ChannelStatus, LastApply, SignedStatus, StatusBody};
use super::tree::Tree;
use super::{below, sample, Now, PeerId};
use crate::bundle::{Bundle, BundleHash, VerifiedBundle};
use crate::definition::OnFailure;
use crate::labels::Labels;
use crate::marks::{MarkDecision, Marks};
use crate::trust::Refusal;
use ed25519_dalek::SigningKey;
use rand_core::RngCore;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Concurrent fetches at most (a peer cannot make us chase many hashes at once).
const MAX_FETCHES: usize = 8;
/// Attempts per fetch (rotating through the announcers) before it is left to anti-entropy.
const FETCH_ATTEMPTS: u32 = 6;
/// Alternates remembered per fetch.
const MAX_ALTERNATES: usize = 4;
/// Refused bundle hashes remembered, so they are not fetched again.
const REFUSED_MEMORY: usize = 16;
/// Every this many rounds, the anti-entropy peer is drawn from the passive view instead of
/// the active one, so that separate overlays (a healed partition) find each other.
const PASSIVE_DIGEST_EVERY: u64 = 4;
/// A greeting digest from a peer greeted this recently crossed ours (see `Node::greeted`).
const GREETING_MS: u64 = 1_000;
/// Compare zone-row fingerprints every this many rounds.
const ROW_SYNC_EVERY: u64 = 1;
/// `rows_print` value meaning "do not compare".
const NO_PRINT: u64 = 0;
/// A zone table smaller than this (zones are sized to hold 64 or more) asks random peers
/// for members of its zone every round (and issues no row until it has been still a while).
const PROBE_BELOW: usize = super::fleet::FEW_MEMBERS;
/// Members named in answer to such a probe, at most.
const PROBE_ANSWER: usize = 8;
/// Expire statuses every this many rounds (it walks the zone table).
const EXPIRE_EVERY: u64 = 10;

#[derive(Debug)]
pub enum Event<P> {
    /// Start, or restart after a crash: join the overlay through these peers.
    Start { bootstrap: Vec<P> },
    /// A decoded message from a peer.
    Message { from: P, msg: Message<P> },
    /// The time asked for with [`Action::WakeAt`] has come (early ticks are harmless).
    Tick,
    /// A bundle handed to this node (`driftless publish`); verified like any other.
    Publish(Arc<Bundle>),
    /// The apply of `version` finished.
    ApplyFinished {
        channel: String,
        version: u64,
        ok: bool,
    },
    /// Health checks ran.
    Health { healthy: bool, failing: Vec<String> },
    /// Drift seen and undone since the last report (increments).
    Drift { detected: u64, corrected: u64 },
    /// The transport lost the connection to a peer.
    PeerDown(P),
    /// This node's certificate (admitted fleets) and the labels it grants, at start or when
    /// the operator puts a new one in place; statuses carry it from now on.
    Credential {
        cert: Option<Arc<Vec<u8>>>,
        labels: Labels,
    },
    /// These nodes were revoked: drop them from every view, disconnect, forget their statuses.
    /// (The door refuses anything they say from now on.)
    Forget(Vec<P>),
    /// Someone (`driftless fleet --node`) wants this node's full status: ask for it (SPEC:
    /// any node's status on demand). The answer shows in [`Node::status_of`].
    WantStatus(P),
}

/// Rounds over which a peer's refusals add up toward `bad_peer_limit`.
const BAD_PEER_WINDOW: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyReason {
    NewVersion,
    Reapply,
    /// A halted rollout goes back to the version that ran before it.
    Rollback,
}

#[derive(Debug)]
pub enum Action<P> {
    Send {
        to: P,
        msg: Message<P>,
    },
    Disconnect(P),
    /// Converge to this bundle; answer with [`Event::ApplyFinished`]. Never blocks gossip.
    Apply {
        bundle: Arc<VerifiedBundle>,
        reason: ApplyReason,
    },
    /// Write atomically before carrying out the actions after it (a driver may send the
    /// messages of the same batch first: peers verify what they get, and a crash before the
    /// write only means the version is fetched again).
    PersistMarks(Marks),
    PersistBundle(Arc<Bundle>),
    PersistStatus(Arc<SignedStatus<P>>),
    /// Deliver [`Event::Tick`] at this monotonic time.
    WakeAt(u64),
    /// Something was refused (already counted); for the log.
    Refused {
        from: Option<P>,
        reason: &'static str,
        detail: String,
    },
    /// A new version was verified and stored.
    Accepted {
        channel: String,
        version: u64,
        hash: BundleHash,
        hops: u16,
    },
}

/// What survives a crash: written through the Persist actions, handed back on restart.
#[derive(Debug, Clone, Default)]
pub struct Persisted<P> {
    pub marks: Marks,
    pub bundles: Vec<Arc<Bundle>>,
    pub status: Option<Arc<SignedStatus<P>>>,
    /// Peers to re-join through (the agent's bootstrap list and last active view).
    pub peers: Vec<P>,
    /// Per channel, the bundle that ran before the newest one (what a rollback returns to).
    pub previous: Vec<Arc<Bundle>>,
}

#[derive(Debug, Clone)]
struct Held {
    bundle: Arc<Bundle>,
    verified: Arc<VerifiedBundle>,
    hops: u16,
}

#[derive(Debug, Clone)]
struct Fetch<P> {
    hash: BundleHash,
    hops: u16,
    from: P,
    deadline: u64,
    alternates: Vec<P>,
    attempts: u32,
    /// False while waiting for the parent's push (the grace period).
    sent: bool,
}

#[derive(Debug, Clone, Default)]
struct ChannelState {
    applied: u64,
    state: Option<ApplyState>,
    applying: Option<u64>,
    /// The bundle being applied and why.
    applying_bundle: Option<(Arc<VerifiedBundle>, ApplyReason)>,
    /// The bundle this node runs now, and the one it ran before (a rollback goes back to it).
    current: Option<Arc<VerifiedBundle>>,
    previous: Option<Arc<VerifiedBundle>>,
    /// The rollout of the newest held version, when its bundle has a policy.
    rollout: Option<RolloutState>,
    /// The last version handed to apply as a new version (a failed one is not retried every
    /// round; the periodic re-apply retries it).
    attempted: u64,
}

/// Where a rollout stands, as this node judges it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutState {
    pub version: u64,
    pub wave: u8,
    /// What holds this node back (None: it applied, or may).
    pub waiting: Option<(u8, Wait)>,
    /// The rollout halted: (wave, signed unhealthy statuses, wave size).
    pub halted: Option<(u8, u64, u64)>,
    /// The wave tallies last seen.
    pub tallies: Vec<WaveTally>,
    /// Every node that reports the channel holds and runs the version: nothing left to judge.
    pub finished: bool,
}

/// Counters a driver reads for metrics and the simulator for its figures.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub refused: BTreeMap<&'static str, u64>,
    pub bundles_received: u64,
    pub statuses_signed: u64,
}

pub struct Node<P> {
    cfg: Config,
    me: P,
    key: SigningKey,
    labels: Labels,
    members: Membership<P>,
    marks: Marks,
    held: BTreeMap<String, Held>,
    channels: BTreeMap<String, ChannelState>,
    fetches: Vec<Fetch<P>>,
    /// The push tree for bundles (`tree.rs`): parent and children get a new version
    /// pushed; the other active peers get it announced.
    tree: Tree<P>,
    refused_hashes: Vec<BundleHash>,
    bad: BTreeMap<P, u32>,
    fleet: FleetView<P>,
    own: Option<Arc<SignedStatus<P>>>,
    /// This node's certificate, attached to every status it signs (admitted fleets).
    cert: Option<Arc<Vec<u8>>>,
    drift_detected: u64,
    drift_corrected: u64,
    healthy: bool,
    failing: Vec<String>,
    last_apply: Option<LastApply>,
    /// The status changed in a way others should hear of at once.
    status_dirty: bool,
    /// The status changed only to `pending` (an apply began), at this time (mono ms): it is
    /// signed a round later, and usually never, because the apply ends first and its result
    /// is signed at once. A release then costs one signed status per node, not two, and every
    /// node of a zone verifies one signature per node, not two.
    status_lazy: Option<u64>,
    round: u64,
    /// The round in which the status was last signed.
    round_signed: u64,
    next_round: u64,
    next_reapply: Option<u64>,
    wake: Option<u64>,
    /// When this node (re)started (mono ms): it issues no zone row for a while after.
    started_ms: Option<u64>,
    /// (channel, version, wave) → when this node first saw the wave complete (mono ms), and
    /// how many nodes its fleet view showed then.
    complete_since: BTreeMap<(String, u64, u8), (u64, u64)>,
    /// (zone, wave) → a probe of a foreign zone whose row alone held this node's gate at
    /// that wave: the zone's signed statuses of the wave, asked of one of its members, judge
    /// the zone in place of its row (`Node::probe_stalls`).
    probes: BTreeMap<(u32, u8), Probe<P>>,
    /// Statuses asked for on demand; at most [`ON_DEMAND`], the oldest dropped first.
    asked: Vec<Asked<P>>,
    /// Statuses fetched on demand (verified), newest last; at most [`ON_DEMAND`].
    fetched: Vec<Arc<SignedStatus<P>>>,
    /// zone → asking members of a zone how many members their tables hold, where the
    /// zone's row claims more than this node's view can square with (`Node::probe_sizes`).
    sizes: BTreeMap<u32, SizeProbe<P>>,
    /// Wave and size wants answered lately: (asker and question, when), oldest first, at
    /// most `ANSWERED_CAP` (`Node::may_answer`).
    answered: VecDeque<(u64, u64)>,
    /// Wants answered this round (at most `ANSWER_BUDGET`).
    answers_this_round: u32,
    /// New active peers greeted with a digest, and when (mono ms): both ends of a new
    /// connection greet, so a greeting from one of these needs no answer (see `after`).
    greeted: Vec<(P, u64)>,
    pub stats: Stats,
}

/// Statuses asked for and kept on demand, at most (a person at a terminal asks for a few).
const ON_DEMAND: usize = 16;
/// An on-demand question is forgotten after this long (an answer after it is unsolicited).
const ON_DEMAND_MS: u64 = 10_000;

/// A status asked for on demand ([`Node::want_status`]).
struct Asked<P> {
    node: P,
    /// When (mono ms).
    at_ms: u64,
    /// The member of the node's group asked for the row of the node's zone, while that row
    /// is awaited: the node is of another group, and no member of its zone was known here
    /// ([`Node::take_row_on_demand`]).
    row_from: Option<P>,
}

/// Asking members of one zone the size of their zone tables (see `Node::sizes`).
struct SizeProbe<P> {
    /// When it was last asked (mono ms): at most once per `PROBE_EVERY_ROUNDS` rounds.
    asked_ms: u64,
    /// How many times it was asked: each time of other members, in turn.
    asks: u32,
    /// The members asked (an answer from anyone else is unsolicited); at most
    /// `SIZE_ASKED_CAP`, newest last.
    asked: Vec<P>,
    /// (member, the size of its table, when it answered), one per member, newest last.
    answers: Vec<(P, u32, u64)>,
}

/// Members asked at once for their zone table's size: a row is set aside only on the word
/// of two members besides its issuer, so one more liar cannot make it so.
const SIZE_ASK: usize = 2;
/// Members remembered as asked, per zone.
const SIZE_ASKED_CAP: usize = 8;
/// Answers of a size probe count for this many rounds...
const SIZE_FRESH_ROUNDS: u64 = 12;
/// ... and are asked again after this many while they set a row aside.
const SIZE_REFRESH_ROUNDS: u64 = 6;
/// A member answers the same peer's same want at most once per this many rounds (honest
/// probes ask again after `PROBE_EVERY_ROUNDS`).
const ANSWER_WINDOW_ROUNDS: u64 = 3;
/// Wants remembered as answered (bounded: the oldest is forgotten first).
const ANSWERED_CAP: usize = 64;
/// The question of a want for the own group's zone rows from a peer of another group
/// (`Node::rows_asked`), as `Node::may_answer` remembers it.
const GROUP_ROWS_QUESTION: u64 = 1 << 61;
/// Wave, size and group-row wants answered per round at most: an answer can carry `MAX_STATUSES`
/// statuses, so peers must not make a member send them at will. Honest probes crowd too:
/// at 10k nodes, when one zone's row lags at the end of a wave, most of the fleet probes
/// that zone through the few contacts its row names (their views hold no member of it),
/// so those contacts were answering hundreds of wants a round (ARCHITECTURE.md).
const ANSWER_BUDGET: u32 = 64;

/// Asking a zone's members for their signed statuses of one wave (see `Node::probes`).
struct Probe<P> {
    channel: String,
    version: u64,
    /// When it was last asked (mono ms): at most once per `PROBE_EVERY_ROUNDS` rounds.
    asked_ms: u64,
    /// How many times it was asked: each time of another member, in turn.
    asks: u32,
    /// The member asked for the wave's statuses (`WaveWant`), and the one asked at the
    /// same time for those of its members that do not run the version (`WaveDoubt`).
    full_from: Option<P>,
    doubt_from: Option<P>,
    /// The member to ask for its doubts should the first answer show the wave done, and
    /// the question (`asks`) it was last asked for.
    doubt_next: Option<P>,
    doubt_asked: u32,
    /// The statuses a member sent, verified, each of the zone and of the wave.
    got: Option<Vec<Arc<SignedStatus<P>>>>,
    /// The laggards' statuses the second member sent, verified likewise. The probe judges
    /// the zone only once both answered, on the newest status per node of the two: a
    /// member can leave statuses out, not forge them, so one honest answer of the two
    /// shows every laggard it holds.
    doubt: Option<Vec<Arc<SignedStatus<P>>>>,
}

impl<P: PeerId> Probe<P> {
    /// The wave's statuses as both answers show them (the newest per node), once both came.
    fn statuses(&self) -> Option<Vec<Arc<SignedStatus<P>>>> {
        let (got, doubt) = (self.got.as_ref()?, self.doubt.as_ref()?);
        let mut by: BTreeMap<&P, &Arc<SignedStatus<P>>> = BTreeMap::new();
        for s in got.iter().chain(doubt) {
            let e = by.entry(&s.body.node).or_insert(s);
            if e.body.issued_ms < s.body.issued_ms {
                *e = s;
            }
        }
        Some(by.into_values().cloned().collect())
    }
}

/// Whether the zone rows of a group (`rows`, fetched for a probe) show wave `k` of the
/// rollout of `version` on `channel` short while counting more members in it than the
/// group's row `grow` does: the group's row leaves out members of that wave (a liar's group
/// row that puts every member in wave 0 shows the later waves empty). An honest group row
/// that lags its zone rows counts the same members, only fewer of them done.
fn hides_members<P: PeerId>(
    grow: &ZoneRow<P>,
    rows: &BTreeMap<u32, Arc<ZoneRow<P>>>,
    channel: &str,
    version: u64,
    k: u8,
) -> bool {
    let (mut nodes, mut short) = (0u64, false);
    for c in rows.values().flat_map(|r| r.wave(channel, version, k)) {
        nodes += c.n as u64;
        short |= !c.done();
    }
    let claimed: u64 = grow.wave(channel, version, k).map(|c| c.n as u64).sum();
    short && claimed < nodes
}

/// A held gate asks again after this many rounds (a member's statuses go on changing as
/// the wave applies).
const PROBE_EVERY_ROUNDS: u64 = 4;

impl<P: PeerId> Node<P> {
    /// A node with nothing but its identity; deliver [`Event::Start`] next.
    pub fn new(cfg: Config, me: P, key: SigningKey, labels: Labels) -> Self {
        Node {
            fleet: FleetView::new(&cfg, me.clone()),
            members: Membership::new(me.clone()),
            tree: Tree::new(me.clone()),
            cfg,
            me,
            key,
            labels,
            marks: Marks::default(),
            held: BTreeMap::new(),
            channels: BTreeMap::new(),
            fetches: Vec::new(),
            refused_hashes: Vec::new(),
            bad: BTreeMap::new(),
            own: None,
            cert: None,
            drift_detected: 0,
            drift_corrected: 0,
            healthy: true,
            failing: Vec::new(),
            last_apply: None,
            status_dirty: true,
            status_lazy: None,
            round: 0,
            round_signed: 0,
            next_round: 0,
            next_reapply: None,
            wake: None,
            started_ms: None,
            complete_since: BTreeMap::new(),
            probes: BTreeMap::new(),
            asked: Vec::new(),
            fetched: Vec::new(),
            sizes: BTreeMap::new(),
            answered: VecDeque::new(),
            answers_this_round: 0,
            greeted: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// A node restarted from what it persisted. Stored bundles pass the door again.
    pub fn restore(
        cfg: Config,
        me: P,
        key: SigningKey,
        labels: Labels,
        saved: &Persisted<P>,
        now: Now,
        door: &dyn Door<P>,
    ) -> Self {
        let mut node = Node::new(cfg, me, key, labels);
        node.marks = saved.marks.clone();
        if let Some(s) = &saved.status {
            node.drift_detected = s.body.drift_detected;
            node.drift_corrected = s.body.drift_corrected;
            for c in &s.body.channels {
                node.channels.insert(
                    c.channel.clone(),
                    ChannelState {
                        applied: c.version,
                        state: Some(c.state),
                        ..ChannelState::default()
                    },
                );
            }
        }
        for b in &saved.previous {
            if let Ok(v) = door.verify_bundle(b, now.wall()) {
                let ch = node.channels.entry(v.header().channel.clone()).or_default();
                if ch.applied == v.header().version {
                    ch.current = Some(v);
                } else {
                    ch.previous = Some(v);
                }
            }
        }
        for b in &saved.bundles {
            if let Ok(v) = door.verify_bundle(b, now.wall()) {
                let ch = v.header().channel.clone();
                let st = node.channels.entry(ch.clone()).or_default();
                if st.applied == v.header().version {
                    st.current = Some(v.clone());
                }
                node.held.insert(
                    ch,
                    Held {
                        bundle: b.clone(),
                        verified: v,
                        hops: 0,
                    },
                );
            }
        }
        node
    }

    // ----- read-only views for drivers -----

    pub fn id(&self) -> &P {
        &self.me
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn fleet(&self) -> &FleetView<P> {
        &self.fleet
    }
    /// Where the active view's entries live: every message received looks its sender up
    /// there first. A hint for a simulator that prefetches the state its next event touches.
    pub fn active_view_addr(&self) -> *const u8 {
        self.members.active.as_ptr() as *const u8
    }
    pub fn active_peers(&self) -> Vec<P> {
        self.members.active_ids().cloned().collect()
    }
    /// The push tree: (root, distance, parent, children).
    pub fn tree_position(&self) -> (P, u8, Option<P>, Vec<P>) {
        let children = self.tree.children().cloned().collect();
        (
            self.tree.root.clone(),
            self.tree.dist,
            self.tree.parent.clone(),
            children,
        )
    }
    pub fn passive_peers(&self) -> &[P] {
        &self.members.passive
    }
    pub fn marks(&self) -> &Marks {
        &self.marks
    }
    /// The newest accepted version of a channel and how many hops its announcement took.
    pub fn held(&self, channel: &str) -> Option<(u64, BundleHash, u16)> {
        self.held
            .get(channel)
            .map(|h| (h.verified.header().version, h.verified.hash(), h.hops))
    }
    /// The version running and the state of the newest accepted one.
    pub fn applied(&self, channel: &str) -> Option<(u64, ApplyState)> {
        self.channels
            .get(channel)
            .and_then(|c| c.state.map(|s| (c.applied, s)))
    }
    pub fn own_status(&self) -> Option<&Arc<SignedStatus<P>>> {
        self.own.as_ref()
    }
    /// What to persist in full (the Persist actions carry the same, piece by piece).
    pub fn persisted(&self) -> Persisted<P> {
        Persisted {
            marks: self.marks.clone(),
            bundles: self.held.values().map(|h| h.bundle.clone()).collect(),
            status: self.own.clone(),
            peers: self.active_peers(),
            previous: self
                .channels
                .iter()
                .flat_map(|(name, c)| {
                    let held = self.held.get(name).map(|h| h.verified.hash());
                    let current = c.current.as_ref().filter(|v| Some(v.hash()) != held);
                    current.into_iter().chain(c.previous.iter())
                })
                .map(|v| Arc::new(v.bundle().clone()))
                .collect(),
        }
    }

    /// The rollout of a channel's newest version, as this node judges it.
    pub fn rollout(&self, channel: &str) -> Option<&RolloutState> {
        self.channels.get(channel).and_then(|c| c.rollout.as_ref())
    }

    // ----- the state machine -----

    pub fn handle(
        &mut self,
        event: Event<P>,
        now: Now,
        rng: &mut dyn RngCore,
        door: &dyn Door<P>,
        out: &mut Vec<Action<P>>,
    ) {
        match event {
            Event::Start { bootstrap } => {
                self.started_ms = Some(now.mono_ms);
                self.members.join(&self.cfg, &bootstrap, now.mono_ms, out);
                // Spread the first rounds of the fleet over one interval.
                self.next_round = now.mono_ms + below(rng, self.cfg.round_ms as usize + 1) as u64;
                if let Some(every) = self.cfg.reapply_ms {
                    self.next_reapply = Some(now.mono_ms + jitter(rng, every));
                }
                // Converge to what we run, and on to what we hold where a rollout allows
                // (after a restart).
                self.reapply_all(now, out);
                self.status_dirty = true;
            }
            Event::Message { from, msg } => self.on_message(from, msg, now, rng, door, out),
            Event::Tick => self.on_tick(now, rng, door, out),
            Event::Publish(bundle) => self.accept(bundle, None, 0, true, now, door, out),
            Event::ApplyFinished {
                channel,
                version,
                ok,
            } => self.on_applied(channel, version, ok, now, out),
            Event::Health { healthy, failing } => {
                if healthy != self.healthy || failing != self.failing {
                    self.healthy = healthy;
                    self.failing = failing;
                    self.status_dirty = true;
                }
            }
            Event::Drift {
                detected,
                corrected,
            } => {
                if detected + corrected > 0 {
                    self.drift_detected += detected;
                    self.drift_corrected += corrected;
                    self.status_dirty = true;
                }
            }
            Event::PeerDown(p) => self.members.peer_down(&p, now.mono_ms),
            Event::Credential { cert, labels } => {
                if cert != self.cert || labels != self.labels {
                    let relabelled = labels != self.labels;
                    self.cert = cert;
                    self.labels = labels;
                    self.status_dirty = true;
                    if relabelled {
                        // Which bundles target this node may have changed.
                        self.reapply_all(now, out);
                    }
                }
            }
            Event::Forget(nodes) => {
                for p in nodes {
                    if p == self.me {
                        continue;
                    }
                    let was_active = self.members.is_active(&p);
                    self.members.forget(&p);
                    self.fleet.forget(&p);
                    self.tree.remove(&p);
                    // A fetch from it times out and moves on to an alternate.
                    for f in &mut self.fetches {
                        f.alternates.retain(|a| a != &p);
                    }
                    self.fetched.retain(|s| s.body.node != p);
                    if was_active {
                        out.push(Action::Disconnect(p));
                    }
                }
            }
            Event::WantStatus(p) => self.want_status(p, now, out),
        }
        self.after(now, rng, out);
    }

    fn send(&mut self, to: P, msg: Message<P>, now: Now, out: &mut Vec<Action<P>>) {
        self.members.note_sent(&to, now.mono_ms);
        out.push(Action::Send { to, msg });
    }

    /// Bookkeeping after every event: greet new neighbours, sign a changed status, ask for
    /// the next wake-up.
    fn after(&mut self, now: Now, rng: &mut dyn RngCore, out: &mut Vec<Action<P>>) {
        let downs = std::mem::take(&mut self.members.downs);
        for p in &downs {
            self.tree.remove(p);
        }
        let ups = std::mem::take(&mut self.members.ups);
        // The push tree: choose again after any change of the active view or an advert;
        // tell every active peer when our position changed, and each new one in any case.
        // (Only then: this runs after every event of every node, 100,000 of them in the
        // simulator.)
        let members = &self.members;
        let held_due = self.tree.held_until().is_some_and(|t| now.mono_ms >= t);
        let moved = if self.tree.dirty || held_due || !ups.is_empty() || !downs.is_empty() {
            self.tree.recompute(&|p| members.is_active(p));
            self.tree.changed(now.mono_ms, self.cfg.tree_hold_ms)
        } else {
            None
        };
        let told = if let Some(((root, dist, parent), seq, old)) = moved {
            let mut peers: Vec<P> = self.members.active_ids().cloned().collect();
            if let Some(old) = old.filter(|o| !peers.contains(o)) {
                peers.push(old);
            }
            for p in peers {
                let msg = Message::Tree {
                    seq,
                    root: root.clone(),
                    dist,
                    parent: parent.as_ref() == Some(&p),
                };
                self.send(p, msg, now, out);
            }
            true
        } else {
            false
        };
        if !ups.is_empty() {
            let since = now.mono_ms.saturating_sub(GREETING_MS);
            self.greeted.retain(|(_, t)| *t >= since);
        }
        for p in ups {
            if !told && self.tree.held_until().is_some() {
                // It gets the held advert with every other active peer.
                self.tree.greet = true;
            } else if !told {
                let ((root, dist, parent), seq) = self.tree.position();
                let msg = Message::Tree {
                    seq,
                    root,
                    dist,
                    parent: parent.as_ref() == Some(&p),
                };
                self.send(p.clone(), msg, now, out);
            }
            // On every (re)connection, exchange digests (and rows if the prints differ).
            let d = Digest {
                channels: self.digest_channels(),
                // Rows travel only on a fingerprint mismatch (RowSync), not on every connect.
                rows: Vec::new(),
                notable: self.notable_sample(rng),
                reply: true,
                rows_print: self.fleet.rows_print_for(&p),
                want: Vec::new(),
            };
            self.greeted.push((p.clone(), now.mono_ms));
            self.send(p, Message::Digest(d), now, out);
        }
        // A changed status is signed at most once per round (the first one at once); a change
        // to `pending` alone waits for the next round (see `status_lazy`).
        let due = self.status_dirty
            || self
                .status_lazy
                .is_some_and(|t| now.mono_ms >= t + self.cfg.round_ms);
        if due && (self.own.is_none() || self.round_signed < self.round) {
            self.round_signed = self.round;
            self.issue_status(now, rng, out);
        }
        let mut next = self.next_round;
        if let Some(d) = self.members.next_deadline() {
            next = next.min(d);
        }
        if let Some(f) = self.fetches.iter().map(|f| f.deadline).min() {
            next = next.min(f);
        }
        if let Some(r) = self.next_reapply {
            next = next.min(r);
        }
        if let Some(t) = self.tree.held_until() {
            next = next.min(t);
        }
        let next = next.max(now.mono_ms + 1);
        if self.wake != Some(next) {
            self.wake = Some(next);
            out.push(Action::WakeAt(next));
        }
    }

    fn on_tick(
        &mut self,
        now: Now,
        rng: &mut dyn RngCore,
        door: &dyn Door<P>,
        out: &mut Vec<Action<P>>,
    ) {
        if self.wake.is_some_and(|w| w <= now.mono_ms) {
            self.wake = None;
        }
        self.members.expire(now.mono_ms);
        self.retry_fetches(now, out);
        if let Some(r) = self.next_reapply {
            if r <= now.mono_ms {
                let every = self.cfg.reapply_ms.unwrap_or(u64::MAX / 4);
                self.next_reapply = Some(now.mono_ms + jitter(rng, every));
                self.reapply_all(now, out);
            }
        }
        if now.mono_ms >= self.next_round {
            self.round += 1;
            if self.round.is_multiple_of(BAD_PEER_WINDOW) {
                // Refusals are held against a peer within a window of rounds, not forever.
                self.bad.clear();
            }
            self.next_round = now.mono_ms + self.cfg.round_ms;
            self.on_round(now, rng, door, out);
        }
    }

    /// Re-apply what each channel runs (a rollback runs an older bundle than it holds), then
    /// let each channel move on to its newest version if its rollout allows.
    fn reapply_all(&mut self, now: Now, out: &mut Vec<Action<P>>) {
        let names: Vec<String> = self.held.keys().cloned().collect();
        for name in names {
            let Some(held) = self.held.get(&name).map(|h| h.verified.clone()) else {
                continue;
            };
            if held.header().rollout.is_none() {
                // No rollout: the newest held bundle is what must run (after a crash the
                // last signed status may lag behind what was applied).
                self.maybe_apply(held, ApplyReason::Reapply, now, out);
                continue;
            }
            // A rollout may hold this node on an older version: re-apply what runs.
            let current = self.channels.get(&name).and_then(|c| {
                c.current
                    .clone()
                    .filter(|b| b.header().version == c.applied)
            });
            if let Some(b) = current {
                self.maybe_apply(b, ApplyReason::Reapply, now, out);
            }
            self.consider_rollout(&name, now, out);
        }
    }

    fn on_round(
        &mut self,
        now: Now,
        rng: &mut dyn RngCore,
        _door: &dyn Door<P>,
        out: &mut Vec<Action<P>>,
    ) {
        // Rollouts in progress are judged again every round, by every node (those that
        // applied too: a later halt rolls them back), until every node holds the version and
        // runs it, or the rollout halted and this node no longer runs the halted version.
        let rolling: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                c.rollout.as_ref().is_some_and(|r| {
                    c.applying.is_none()
                        && (r.halted.is_none() && !r.finished
                            || r.halted.is_some() && c.applied == r.version)
                })
            })
            .map(|(n, _)| n.clone())
            .collect();
        self.answers_this_round = 0;
        for name in rolling {
            self.consider_rollout(&name, now, out);
        }
        self.members
            .tick(&self.cfg, self.round, now.mono_ms, rng, out);
        // Push-pull anti-entropy with one random peer.
        let peer = if self.round.is_multiple_of(PASSIVE_DIGEST_EVERY) {
            self.members
                .random_passive(rng)
                .or_else(|| self.members.random_active(rng))
        } else if self.fleet.group_bits() > 0 && self.round % 2 == 1 {
            // With groups, every other round a member of the own group: the group's zone
            // rows spread among its members only, and random peers are rarely of the group.
            self.fleet
                .random_group_mate(rng)
                .or_else(|| self.members.random_active(rng))
        } else {
            self.members.random_active(rng)
        };
        let same_group = peer.as_ref().is_none_or(|p| self.fleet.same_group(p));
        let rows = self.fleet.take_hot_for(&self.cfg, same_group);
        if let Some(p) = peer {
            // Rumors spread row changes within a few rounds; the fingerprint is the slower
            // repair, compared every few rounds, so that the prints that differ only because
            // a rumor is on its way do not each cost a RowSync (R entries) and its answer.
            let rows_print = if self.round.is_multiple_of(ROW_SYNC_EVERY) {
                self.fleet.rows_print_for(&p)
            } else {
                NO_PRINT
            };
            let d = Digest {
                channels: self.digest_channels(),
                rows,
                notable: self.notable_sample(rng),
                reply: true,
                rows_print,
                want: Vec::new(),
            };
            self.send(p, Message::Digest(d), now, out);
        }
        // Zone anti-entropy with one member of the own zone (from the table once it has
        // any, else from the neighbours and the zone row's contacts).
        // One round in four, a neighbour or a contact from the zone's row, so that groups
        // of members that only know each other do not stay apart.
        // Zone mates seen on the network whose status the table lacks come first: they join
        // groups of members that only know each other.
        let from_table = if let Some(m) = self.fleet.random_mate(rng) {
            Some(m)
        } else if below(rng, 4) == 0 {
            None
        } else {
            self.fleet.random_member(rng)
        };
        let contact = match from_table {
            Some(p) => Some(p),
            None => {
                let c = self.zone_contacts();
                (!c.is_empty()).then(|| c[below(rng, c.len())].clone())
            }
        };
        // Knowing few members of its zone (zones hold over a hundred), a node asks for some
        // with a probe: a shuffle that carries only itself, on a random walk that ends at the
        // first node that knows members of the prober's zone (it names them in a shuffle
        // reply), or else as a shuffle does, its end answering with a sample of its peers.
        // Nodes of older versions take it for a shuffle.
        if self.fleet.zone_bits() > 0 && self.fleet.zone.len() < PROBE_BELOW {
            if let Some(to) = self.members.random_active(rng) {
                let probe = Message::Shuffle {
                    origin: self.me.clone(),
                    peers: vec![self.me.clone()],
                    ttl: self.cfg.active_walk,
                };
                self.send(to, probe, now, out);
            }
        }
        if let Some(p) = contact.clone() {
            let msg = Message::ZoneSync {
                zone: self.fleet.my_zone,
                fingerprint: self.fleet.fingerprint(),
                entries: None,
            };
            self.send(p, msg, now, out);
        }
        if self.round.is_multiple_of(EXPIRE_EVERY) {
            self.fleet.expire(&self.cfg, now.wall_ms);
        }
        let mut row_contacts: Vec<P> = contact.into_iter().collect();
        if let Some(p) = self.fleet.random_member(rng) {
            if !row_contacts.contains(&p) {
                row_contacts.push(p);
            }
        }
        row_contacts.push(self.me.clone());
        // Just (re)started, the zone table holds little more than this node, which so takes
        // itself for the zone's leader: a row issued now would replace the zone's real
        // summary everywhere with a near-empty one. Lead only once zone syncs had time to
        // fill the table.
        if self
            .started_ms
            .is_some_and(|t| now.mono_ms.saturating_sub(t) >= self.cfg.row_min_ms)
        {
            let issued = self.fleet.maybe_issue_row(
                &self.cfg,
                now.wall_ms,
                row_contacts,
                &self.key,
                self.cert.clone(),
            );
            // With groups: a new zone row goes straight to the group's leader, which sums
            // the group's zone rows into the group's row, rather than waiting on the rumor.
            if let Some(row) = issued {
                if let Some(leader) = self.fleet.group_leader().filter(|l| **l != self.me) {
                    let to = leader.clone();
                    self.send(to, Message::Rows(vec![row]), now, out);
                }
            }
            self.fleet
                .maybe_issue_group_row(&self.cfg, now.wall_ms, &self.key, self.cert.clone());
        }
        if self.own.as_ref().is_some_and(|s| {
            now.wall_ms.saturating_sub(s.body.issued_ms) >= self.cfg.status_refresh_ms
        }) {
            self.status_dirty = true;
        }
    }

    fn zone_contacts(&self) -> Vec<P> {
        self.fleet
            .zone_contacts(self.members.active_ids().chain(self.members.passive.iter()))
    }

    fn digest_channels(&self) -> Vec<Announcement> {
        self.held
            .iter()
            .map(|(ch, h)| Announcement {
                channel: ch.clone(),
                version: h.verified.header().version,
                hash: h.verified.hash(),
                hops: h.hops,
            })
            .collect()
    }

    fn notable_sample(&self, rng: &mut dyn RngCore) -> Vec<Arc<SignedStatus<P>>> {
        let mut v: Vec<Arc<SignedStatus<P>>> = Vec::new();
        if let Some(own) = &self.own {
            if own.body.is_notable() {
                v.push(own.clone());
            }
        }
        let k = self.cfg.notable_per_round.saturating_sub(v.len());
        if k > 0 && !(self.fleet.notable.is_empty() && self.fleet.evidence.is_empty()) {
            // Halt evidence travels with the notable statuses (each value once).
            let all: Vec<&Arc<SignedStatus<P>>> = self
                .fleet
                .notable
                .values()
                .chain(self.fleet.evidence.iter().filter_map(|(p, e)| {
                    let same = self
                        .fleet
                        .notable
                        .get(p)
                        .is_some_and(|n| n.body.issued_ms == e.body.issued_ms);
                    (!same).then_some(e)
                }))
                .collect();
            for s in sample(rng, &all, k) {
                v.push(s.clone());
            }
        }
        v
    }

    fn refuse(
        &mut self,
        from: Option<&P>,
        reason: &'static str,
        detail: String,
        out: &mut Vec<Action<P>>,
    ) {
        *self.stats.refused.entry(reason).or_default() += 1;
        // A bundle that arrives unasked is a race honest peers run into (a fetch that timed out
        // answered late, a push from a parent just replaced): counted, not held against them.
        // A repeated or over-budget want is declined, not held against the asker either (an
        // honest node that restarted asks again at once).
        let honest_race = matches!(reason, "unsolicited" | "want_repeated" | "want_over_budget");
        if let Some(p) = from.filter(|_| !honest_race) {
            let n = self.bad.entry(p.clone()).or_default();
            *n += 1;
            if *n >= self.cfg.bad_peer_limit {
                self.bad.remove(p);
                self.members.peer_down(p, 0);
                out.push(Action::Disconnect(p.clone()));
            }
        }
        out.push(Action::Refused {
            from: from.cloned(),
            reason,
            detail,
        });
    }

    fn on_message(
        &mut self,
        from: P,
        msg: Message<P>,
        now: Now,
        rng: &mut dyn RngCore,
        door: &dyn Door<P>,
        out: &mut Vec<Action<P>>,
    ) {
        if from == self.me {
            return;
        }
        self.members.heard(&from, now.mono_ms);
        // Every peer id seen may be a member of the own zone that a newcomer needs.
        self.fleet.learn(&from);
        match &msg {
            Message::ForwardJoin { joiner, .. } => self.fleet.learn(joiner),
            Message::Shuffle { origin, peers, .. } => {
                self.fleet.learn(origin);
                peers.iter().for_each(|p| self.fleet.learn(p));
            }
            Message::ShuffleReply { peers } => peers.iter().for_each(|p| self.fleet.learn(p)),
            _ => {}
        }
        if let Message::Shuffle { origin, peers, .. } = &msg {
            if peers.len() == 1 && peers[0] == *origin && *origin != self.me {
                // A zone probe (see on_round): answer it here if we know members of the
                // prober's zone, else let it walk on as a shuffle.
                let zone = self.fleet.zone_of(origin);
                let mut found = self.fleet.contacts_in(
                    zone,
                    self.members.active_ids().chain(self.members.passive.iter()),
                );
                if zone == self.fleet.my_zone {
                    found.insert(0, self.me.clone());
                }
                found.retain(|p| p != origin);
                if !found.is_empty() {
                    found.truncate(PROBE_ANSWER);
                    let to = origin.clone();
                    self.send(to, Message::ShuffleReply { peers: found }, now, out);
                    return;
                }
            }
        }
        if let Message::Disconnect { .. } = msg {
            // Whatever our views say of it, it is no longer on our push tree.
            self.tree.remove(&from);
        }
        if self
            .members
            .handle(&self.cfg, &from, &msg, now.mono_ms, rng, out)
        {
            return;
        }
        let doubt = matches!(msg, Message::WaveDoubt { .. });
        match msg {
            Message::Announce(list) => {
                for a in list {
                    self.consider(a, &from, now, out);
                }
            }
            Message::Fetch(hash) => {
                let found = self
                    .held
                    .values()
                    .find(|h| h.verified.hash() == hash)
                    .map(|h| h.bundle.clone());
                if let Some(b) = found {
                    self.send(from, Message::Bundle(WireBundle(b)), now, out);
                }
            }
            Message::Tree {
                seq,
                root,
                dist,
                parent,
            } => {
                // Chosen again in `after`, which also tells the peers if anything changed.
                self.tree.heard(&from, seq, root, dist, parent);
            }
            Message::Push {
                bundle: WireBundle(b),
                hops,
            } => {
                let hash = b.hash();
                if self.held.values().any(|h| h.verified.hash() == hash) {
                    // It reached us another way first (both ends of a tree link push, and
                    // the publisher's copy to the root meets the one coming up the tree).
                    return;
                }
                let on_tree = self.tree.is_neighbour(&from);
                // The publisher sends its release to the root as well as down its own tree
                // links (see `accept`): the root takes a push of hop 0 from anyone.
                let to_root = hops == 0 && self.tree.root == self.me;
                if !on_tree && !to_root {
                    self.refuse(
                        Some(&from),
                        "unsolicited",
                        format!(
                            "bundle {} pushed by a peer not on our push tree",
                            hash.short()
                        ),
                        out,
                    );
                    return;
                }
                self.fetches.retain(|f| f.hash != hash);
                self.stats.bundles_received += 1;
                self.accept(b, Some(&from), hops.saturating_add(1), true, now, door, out);
            }
            Message::Bundle(WireBundle(b)) => {
                let hash = b.hash();
                let asked = self.fetches.iter().position(|f| f.hash == hash);
                let Some(i) = asked else {
                    self.refuse(
                        Some(&from),
                        "unsolicited",
                        format!("bundle {} that was not asked for", hash.short()),
                        out,
                    );
                    return;
                };
                let f = self.fetches.swap_remove(i);
                self.stats.bundles_received += 1;
                self.accept(
                    b,
                    Some(&from),
                    f.hops.saturating_add(1),
                    false,
                    now,
                    door,
                    out,
                );
            }
            Message::Digest(d) => {
                for a in d.channels.iter() {
                    self.consider(a.clone(), &from, now, out);
                }
                // Hot rows are named, not carried: ask for those that outrank ours.
                let want: Vec<u32> = d
                    .rows
                    .iter()
                    .filter(|(z, rank)| self.fleet.wants_rank(*z, *rank))
                    .map(|(z, _)| *z)
                    .collect();
                for s in d.notable {
                    self.take_status(&from, s, door, out);
                }
                // The rows the peer asked for in answer to our digest.
                let give = self.rows_asked(&from, &d.want, now, out);
                // Prints that differ while rows are on their way between the two (named
                // here, or asked for by the peer) differ by those rows, most likely: no full
                // row sync for that. Otherwise the rumor missed one of us: sync at once.
                // With groups, a peer of the own group is also synced while rows are on their
                // way, at most every few rounds: after a release a group's zone rows and every
                // group's row are on the move for several seconds, so nearly every exchange
                // names some, and a node that the rumors of a few zone rows missed (they are
                // named only to peers of the group, half its digests) stayed behind on them
                // past the next row (100k: 1-2 of 200 nodes, a dozen zone rows of their group
                // stale 19 s after a release).
                let differ =
                    d.rows_print != NO_PRINT && d.rows_print != self.fleet.rows_print_for(&from);
                let quiet = want.is_empty() && give.is_empty();
                if differ && (quiet || self.fleet.group_sync_due(&from, self.round)) {
                    let mine = self.fleet.row_versions_for(self.fleet.same_group(&from));
                    self.send(from.clone(), Message::RowSync(mine), now, out);
                }
                // Both ends of a new connection send a greeting digest asking for an answer
                // (either may be the one that just restarted): each end already has the
                // other's, so a greeting that crosses ours is not answered. That was 4
                // digests per new connection where 2 carry the same; at start-up ~14 digests
                // per node in the first second at 10,000 and 100,000 nodes.
                let crossed = d.reply && {
                    let since = now.mono_ms.saturating_sub(GREETING_MS);
                    let before = self.greeted.len();
                    self.greeted.retain(|(p, t)| !(p == &from && *t >= since));
                    self.greeted.len() != before
                };
                if d.reply && !crossed {
                    let same_group = self.fleet.same_group(&from);
                    let rows = self.fleet.take_hot_for(&self.cfg, same_group);
                    let reply = Digest {
                        channels: self.digest_channels(),
                        rows,
                        notable: self.notable_sample(rng),
                        reply: false,
                        // Compared both ways in the rounds the sender compares.
                        rows_print: if d.rows_print == NO_PRINT {
                            NO_PRINT
                        } else {
                            self.fleet.rows_print_for(&from)
                        },
                        want,
                    };
                    self.send(from.clone(), Message::Digest(reply), now, out);
                    self.send_rows(&from, give, Vec::new(), now, out);
                } else {
                    self.send_rows(&from, give, want, now, out);
                }
            }
            Message::Statuses(list) => {
                for s in list {
                    self.take_status(&from, s, door, out);
                }
            }
            Message::ZoneSync {
                zone,
                fingerprint,
                entries,
            } => {
                if zone != self.fleet.my_zone {
                    return;
                }
                match entries {
                    None => {
                        if fingerprint != self.fleet.fingerprint() {
                            let msg = Message::ZoneSync {
                                zone,
                                fingerprint: self.fleet.fingerprint(),
                                entries: Some(self.fleet.zone_entries()),
                            };
                            self.send(from, msg, now, out);
                        }
                    }
                    Some(theirs) if theirs.windows(2).all(|w| w[0].0 < w[1].0) => {
                        // In key order, as every node sends them: one merge walk.
                        let (push, want) = self.fleet.zone_diff(&theirs);
                        for chunk in push.chunks(super::config::limits::MAX_STATUSES) {
                            self.send(from.clone(), Message::Statuses(chunk.to_vec()), now, out);
                        }
                        if !want.is_empty() {
                            self.send(from, Message::ZoneWant(want), now, out);
                        }
                    }
                    Some(theirs) => {
                        let theirs: BTreeMap<P, u64> = theirs.into_iter().collect();
                        let mut push = Vec::new();
                        for (p, (issued, s)) in &self.fleet.zone {
                            if theirs.get(p).is_none_or(|t| t < issued) {
                                push.push(s.clone());
                            }
                        }
                        let want: Vec<P> = theirs
                            .iter()
                            .filter(|(p, t)| {
                                self.fleet
                                    .zone
                                    .get(*p)
                                    .is_none_or(|(issued, _)| issued < *t)
                            })
                            .map(|(p, _)| p.clone())
                            .collect();
                        for chunk in push.chunks(super::config::limits::MAX_STATUSES) {
                            self.send(from.clone(), Message::Statuses(chunk.to_vec()), now, out);
                        }
                        if !want.is_empty() {
                            self.send(from, Message::ZoneWant(want), now, out);
                        }
                    }
                }
            }
            Message::RowSync(theirs) => {
                let newer = self
                    .fleet
                    .rows_newer_for(&theirs, self.fleet.same_group(&from));
                for chunk in newer.chunks(self.cfg.rows_per_message.max(1)) {
                    self.send(from.clone(), Message::Rows(chunk.to_vec()), now, out);
                }
            }
            Message::Rows(rows) => {
                for row in &rows {
                    if self
                        .asked
                        .iter()
                        .any(|a| a.row_from.as_ref() == Some(&from))
                    {
                        self.take_row_on_demand(&from, row, door, now, out);
                    }
                    if self.fleet.foreign().is_some_and(|m| !m.is_empty())
                        && !self.fleet.wants_row(row)
                    {
                        self.take_foreign_row(&from, row, door, out);
                        continue;
                    }
                    self.take_row(&from, row, door, out);
                }
            }
            Message::RowWant { zones, rows } => {
                for row in &rows {
                    self.take_row(&from, row, door, out);
                }
                let give = self.rows_asked(&from, &zones, now, out);
                self.send_rows(&from, give, Vec::new(), now, out);
            }
            Message::ZoneWant(want) => {
                let list: Vec<Arc<SignedStatus<P>>> = want
                    .iter()
                    .filter_map(|p| self.fleet.status(p).cloned())
                    .collect();
                for chunk in list.chunks(super::config::limits::MAX_STATUSES) {
                    self.send(from.clone(), Message::Statuses(chunk.to_vec()), now, out);
                }
            }
            Message::WaveWant {
                zone,
                channel,
                version,
                wave,
            }
            | Message::WaveDoubt {
                zone,
                channel,
                version,
                wave,
            } => {
                if zone != self.fleet.my_zone {
                    return;
                }
                let Some(policy) = self
                    .held
                    .get(&channel)
                    .filter(|h| h.verified.header().version == version)
                    .and_then(|h| h.verified.header().rollout.clone())
                else {
                    return;
                };
                let question = version.rotate_left(8) ^ wave as u64 ^ (doubt as u64) << 62;
                if !self.may_answer(&from, question, now, out) {
                    return;
                }
                let of_wave: Vec<Arc<SignedStatus<P>>> = self
                    .fleet
                    .zone
                    .iter()
                    .filter(|(p, _)| {
                        rollout::wave_of(p.stable_hash(), version, &policy.waves) == wave
                    })
                    .map(|(_, (_, s))| s.clone())
                    .collect();
                let members = of_wave.len() as u32;
                let mut statuses = of_wave;
                if doubt {
                    statuses.retain(|s| {
                        !s.body.channels.iter().any(|c| {
                            c.channel == channel
                                && c.version == version
                                && c.state == ApplyState::Applied
                        })
                    });
                }
                statuses.truncate(super::config::limits::MAX_STATUSES);
                let msg = Message::WaveStatuses {
                    zone,
                    channel,
                    version,
                    wave,
                    members,
                    statuses,
                };
                self.send(from, msg, now, out);
            }
            Message::WaveStatuses {
                zone,
                channel,
                version,
                wave,
                members,
                statuses,
            } => self.take_wave_statuses(
                &from, zone, &channel, version, wave, members, statuses, door, now, out,
            ),
            Message::SizeWant { zone } => {
                // Of the own zone: its table. Of the own group (`GROUP_FLAG | g`): its table
                // and the group's other zone rows, each row set aside for its size as this
                // node's own size probes say (`FleetView::own_group_members`).
                let group = self.fleet.is_group_key(zone) && zone == self.fleet.my_group_key();
                if zone != self.fleet.my_zone && !group
                    || !self.may_answer(&from, 1 << 63 | (group as u64) << 62, now, out)
                {
                    return;
                }
                let members = if group {
                    let seen = self.seen_sizes(now);
                    self.fleet.own_group_members(&seen).min(u32::MAX as u64) as u32
                } else {
                    self.fleet.zone.len() as u32
                };
                self.send(from, Message::ZoneSize { zone, members }, now, out);
            }
            Message::ZoneSize { zone, members } => {
                let asked = self
                    .sizes
                    .get(&zone)
                    .is_some_and(|p| p.asked.contains(&from));
                let of_it = if self.fleet.is_group_key(zone) {
                    GROUP_FLAG | self.fleet.group_of(&from) == zone
                } else {
                    self.fleet.zone_of(&from) == zone
                };
                if !asked || !of_it {
                    self.refuse(
                        Some(&from),
                        "unsolicited",
                        format!("size of zone {zone} that was not asked for"),
                        out,
                    );
                    return;
                }
                let p = self.sizes.get_mut(&zone).expect("checked above");
                p.answers.retain(|(q, _, _)| *q != from);
                p.answers.push((from, members, now.mono_ms));
                if p.answers.len() > SIZE_ASKED_CAP {
                    p.answers.remove(0);
                }
            }
            // Membership messages were handled above.
            _ => {}
        }
    }

    /// Whether to answer `from`'s wave, size or group-row want (`question` names it): at most once per
    /// (asker, question) every `ANSWER_WINDOW_ROUNDS` rounds and `ANSWER_BUDGET` answers a
    /// round, in bounded state. A declined want is counted (`want_repeated`,
    /// `want_over_budget`), not held against the asker.
    fn may_answer(&mut self, from: &P, question: u64, now: Now, out: &mut Vec<Action<P>>) -> bool {
        let key = super::splitmix64(from.stable_hash() ^ question);
        let window = ANSWER_WINDOW_ROUNDS * self.cfg.round_ms.max(1);
        let repeated = self
            .answered
            .iter()
            .any(|(k, at)| *k == key && now.mono_ms < at + window);
        let reason = if repeated {
            "want_repeated"
        } else if self.answers_this_round >= ANSWER_BUDGET {
            "want_over_budget"
        } else {
            self.answered.push_back((key, now.mono_ms));
            if self.answered.len() > ANSWERED_CAP {
                self.answered.pop_front();
            }
            self.answers_this_round += 1;
            return true;
        };
        self.refuse(
            Some(from),
            reason,
            format!("a want from {from:?} declined"),
            out,
        );
        false
    }

    /// The answer to a probe (`Node::probe_stalls`): kept only if this node asked it of
    /// `from`'s zone for that wave, the list is whole, and every status verifies, belongs
    /// to the zone and to the wave. A refused answer is counted like any other refusal.
    #[allow(clippy::too_many_arguments)]
    fn take_wave_statuses(
        &mut self,
        from: &P,
        zone: u32,
        channel: &str,
        version: u64,
        wave: u8,
        members: u32,
        statuses: Vec<Arc<SignedStatus<P>>>,
        door: &dyn Door<P>,
        now: Now,
        out: &mut Vec<Action<P>>,
    ) {
        let asked = self
            .probes
            .get(&(zone, wave))
            .filter(|p| p.channel == channel && p.version == version);
        let doubt = asked.is_some_and(|p| p.doubt_from.as_ref() == Some(from));
        let full = asked.is_some_and(|p| p.full_from.as_ref() == Some(from));
        if !(doubt || full) || self.fleet.zone_of(from) != zone {
            self.refuse(
                Some(from),
                "unsolicited",
                format!("statuses of zone {zone} wave {wave} that were not asked for"),
                out,
            );
            return;
        }
        let Some(policy) = self
            .held
            .get(channel)
            .and_then(|h| h.verified.header().rollout.clone())
        else {
            return;
        };
        // A whole list of the wave, or (from the member asked for its doubts) the laggards
        // among the `members` of the wave it holds.
        let whole = members as usize == statuses.len();
        if full && !whole || doubt && statuses.len() > members as usize {
            self.refuse(
                Some(from),
                "wave_statuses_short",
                format!(
                    "zone {zone} wave {wave}: {} of {members} statuses",
                    statuses.len()
                ),
                out,
            );
            return;
        }
        for s in &statuses {
            let fits = self.fleet.zone_of(&s.body.node) == zone
                && rollout::wave_of(s.body.node.stable_hash(), version, &policy.waves) == wave;
            let verified = fits && door.check_status(s).is_ok();
            if !verified {
                self.refuse(
                    Some(from),
                    "bad_wave_status",
                    format!("zone {zone} wave {wave}: status of {:?}", s.body.node),
                    out,
                );
                return;
            }
        }
        let runs = |s: &Arc<SignedStatus<P>>| {
            s.body.channels.iter().any(|c| {
                c.channel == channel && c.version == version && c.state == ApplyState::Applied
            })
        };
        let all_run = statuses.iter().all(runs);
        let Some(p) = self.probes.get_mut(&(zone, wave)) else {
            return;
        };
        if doubt {
            p.doubt = Some(statuses);
            return;
        }
        p.got = Some(statuses);
        // A whole list that shows the wave done is checked with a second member (one asked
        // per question, never the first): a list that shows laggards needs no second word.
        if all_run && p.doubt_asked < p.asks {
            if let Some(to) = p.doubt_next.clone() {
                p.doubt_asked = p.asks;
                p.doubt_from = Some(to.clone());
                let msg = Message::WaveDoubt {
                    zone,
                    channel: channel.to_string(),
                    version,
                    wave,
                };
                self.send(to, msg, now, out);
            }
        }
    }

    /// A signed status from the network: verify with the issuer's node key, then keep.
    fn take_status(
        &mut self,
        from: &P,
        s: Arc<SignedStatus<P>>,
        door: &dyn Door<P>,
        out: &mut Vec<Action<P>>,
    ) {
        if s.body.node == self.me {
            return; // only we speak for ourselves
        }
        let mut only_evidence = false;
        if let Some(have) = self.fleet.status_issued(&s.body.node) {
            if have >= s.body.issued_ms {
                if !self.fleet.wants_evidence(&s) {
                    return; // nothing new: skip the signature check
                }
                // Superseded, but it shows the node sick on a version: keep it as evidence.
                only_evidence = true;
            }
        }
        if let Err(reason) = door.check_status(&s) {
            let detail = match reason {
                "unknown_node" => format!("status of unknown node {:?}", s.body.node),
                _ => format!("status of {:?} does not verify", s.body.node),
            };
            self.refuse(Some(from), reason, detail, out);
            return;
        }
        if let Some(i) = self.asked.iter().position(|a| a.node == s.body.node) {
            self.asked.remove(i);
            self.fetched.retain(|f| f.body.node != s.body.node);
            if self.fetched.len() >= ON_DEMAND {
                self.fetched.remove(0);
            }
            self.fetched.push(s.clone());
        }
        if only_evidence {
            self.fleet.add_evidence(&self.cfg, &s);
        } else {
            self.fleet.insert(&self.cfg, s);
        }
    }

    /// Members of `zone` (or of a group, keyed `GROUP_FLAG | g`) to ask something of, never
    /// `not` (a row's issuer, or the node asked about) nor this node: those in its active
    /// and passive views, and when they are fewer than `at_least`, the contacts the zone's
    /// (group's) row names too. Sorted, each once.
    fn members_to_ask(&self, zone: u32, not: &P, at_least: usize) -> Vec<P> {
        if self.fleet.is_group_key(zone) {
            // Members of a group, for its size: from the views, else its row's contacts.
            let g = zone & !GROUP_FLAG;
            let fits = |p: &P| self.fleet.group_of(p) == g && p != not && *p != self.me;
            return self.peers_fitting(fits, self.fleet.rows.get(&zone), at_least);
        }
        let fits = |p: &P| self.fleet.zone_of(p) == zone && p != not && *p != self.me;
        self.peers_fitting(fits, self.row_of_zone(zone), at_least)
    }

    /// The peers in the active and passive views that `fits` takes, and when they are fewer
    /// than `at_least`, those among the contacts `row` names too. Sorted, each once.
    fn peers_fitting(
        &self,
        fits: impl Fn(&P) -> bool,
        row: Option<&Arc<ZoneRow<P>>>,
        at_least: usize,
    ) -> Vec<P> {
        let mut peers: Vec<P> = self
            .members
            .active_ids()
            .chain(self.members.passive.iter())
            .filter(|p| fits(p))
            .cloned()
            .collect();
        if peers.len() < at_least {
            if let Some(row) = row {
                peers.extend(row.contacts.iter().filter(|p| fits(p)).cloned());
            }
        }
        peers.sort();
        peers.dedup();
        peers
    }

    /// Ask for `node`'s signed status: of the node itself when it is a peer in this node's
    /// views, and of a member of its zone (a neighbour of that zone, else a contact its row
    /// names), which holds its zone's statuses in full (`ZoneWant`). A relay cannot forge the
    /// status (the node signed it), only withhold it or send an older one, which is why two
    /// are asked when there are two. Nothing is asked for the own zone, whose statuses are
    /// all here.
    ///
    /// With groups, this node holds no zone row of another group, so for a node of another
    /// group it often knows no member of the node's zone. It then asks a member of that
    /// group (a neighbour of it, else a contact of the group's row), which holds the group's
    /// zone rows, for the row of the node's zone (`RowWant`, one zone), and asks a member
    /// that row names when it comes ([`Node::take_row_on_demand`]): two round trips, one
    /// row and one status, nothing forwarded on anyone's behalf.
    fn want_status(&mut self, node: P, now: Now, out: &mut Vec<Action<P>>) {
        let zone = self.fleet.zone_of(&node);
        if node == self.me || zone == self.fleet.my_zone {
            return;
        }
        self.asked
            .retain(|a| a.node != node && a.at_ms + ON_DEMAND_MS > now.mono_ms);
        if self.asked.len() >= ON_DEMAND {
            self.asked.remove(0);
        }
        let known = |p: &P| *p == node;
        let mut ask: Vec<P> = self
            .members
            .active_ids()
            .chain(self.members.passive.iter())
            .filter(|p| known(p))
            .cloned()
            .collect();
        let relay = self
            .members_to_ask(zone, &node, 1)
            .into_iter()
            .next()
            .or_else(|| {
                let issuer = &self.fleet.rows.get(&zone)?.issuer;
                (!known(issuer) && *issuer != self.me).then(|| issuer.clone())
            });
        let row_from = match relay {
            None => self.group_member_to_ask(zone, &node),
            Some(_) => None,
        };
        self.asked.push(Asked {
            node: node.clone(),
            at_ms: now.mono_ms,
            row_from: row_from.clone(),
        });
        ask.extend(relay);
        for to in ask {
            self.send(to, Message::ZoneWant(vec![node.clone()]), now, out);
        }
        if let Some(to) = row_from {
            let msg = Message::RowWant {
                zones: vec![zone],
                rows: Vec::new(),
            };
            self.send(to, msg, now, out);
        }
    }

    /// A member of the group of `zone` to ask for that zone's row, when it is another group
    /// than this node's: a peer of that group in the views, else a contact its group row
    /// names (its issuer and two zone leaders), never `node` (asked itself when known). One
    /// per round in turn, so a question asked again a round later or more goes to another
    /// member where there is one (the first may be gone or withhold the row).
    fn group_member_to_ask(&self, zone: u32, node: &P) -> Option<P> {
        let g = self.fleet.group_of_zone(zone);
        if self.fleet.group_bits() == 0 || g == self.fleet.my_group() {
            return None;
        }
        let peers = self.members_to_ask(GROUP_FLAG | g, node, 1);
        let n = peers.len().max(1) as u64;
        peers.into_iter().nth((self.round % n) as usize)
    }

    /// The row of another group's zone, from the member of that group asked for it by
    /// [`Node::want_status`]: verified as in [`Node::take_row`] (its contacts decide whom
    /// this node asks), the statuses awaited of that zone are asked of a member it names
    /// (`ZoneWant`), a contact else its issuer, one question per status. The row is not kept
    /// (this node holds no zone row of another group) and is taken once per question:
    /// further rows from that member, or rows from anyone else, change nothing.
    fn take_row_on_demand(
        &mut self,
        from: &P,
        row: &Arc<ZoneRow<P>>,
        door: &dyn Door<P>,
        now: Now,
        out: &mut Vec<Action<P>>,
    ) {
        if self.fleet.is_group_key(row.zone) || (row.zone as u64) >> self.cfg.zone_bits != 0 {
            return;
        }
        let waiting: Vec<P> = self
            .asked
            .iter()
            .filter(|a| {
                a.row_from.as_ref() == Some(from)
                    && self.fleet.zone_of(&a.node) == row.zone
                    && now.mono_ms < a.at_ms + ON_DEMAND_MS
            })
            .map(|a| a.node.clone())
            .collect();
        if waiting.is_empty() {
            return;
        }
        if let Err(r) = self.check_row(row, door) {
            self.refuse(
                Some(from),
                r.reason(),
                format!("row of zone {} issued by {:?}", row.zone, row.issuer),
                out,
            );
            return;
        }
        for a in &mut self.asked {
            if waiting.contains(&a.node) {
                a.row_from = None;
            }
        }
        for node in waiting {
            let to = row
                .contacts
                .iter()
                .chain([&row.issuer])
                .find(|p| self.fleet.zone_of(p) == row.zone && **p != node && **p != self.me)
                .cloned();
            if let Some(to) = to {
                self.send(to, Message::ZoneWant(vec![node]), now, out);
            }
        }
    }

    /// The newest signed status held of `node`: from the own zone's table, the notable
    /// statuses, or one fetched on demand ([`Event::WantStatus`]).
    pub fn status_of(&self, node: &P) -> Option<&Arc<SignedStatus<P>>> {
        let fetched = self.fetched.iter().rev().find(|s| s.body.node == *node);
        [self.fleet.status(node), fetched]
            .into_iter()
            .flatten()
            .max_by_key(|s| s.body.issued_ms)
    }

    /// The rows held of these zones (asked for by a peer).
    fn rows_of(&self, zones: &[u32]) -> Vec<Arc<ZoneRow<P>>> {
        let mut out = Vec::with_capacity(zones.len());
        out.extend(zones.iter().filter_map(|z| self.fleet.rows.get(z).cloned()));
        out
    }

    /// The rows `from` asked for (in a digest's wants or a `RowWant`). A peer of another
    /// group asks for this group's zone rows only to resolve a group row that holds its gate
    /// (`Node::ask_group_rows`): that answer, a row per zone of the group, is budgeted like
    /// the wave and size wants (`Node::may_answer`: once per asker every few rounds, a few
    /// answers a round in all), each zone at most once, so peers cannot make a member send
    /// them at will. The group rows asked for are given as ever.
    fn rows_asked(
        &mut self,
        from: &P,
        zones: &[u32],
        now: Now,
        out: &mut Vec<Action<P>>,
    ) -> Vec<Arc<ZoneRow<P>>> {
        let leaves = |z: &u32| !self.fleet.is_group_key(*z);
        if self.fleet.same_group(from) || !zones.iter().any(leaves) {
            return self.rows_of(zones);
        }
        let mut asked: Vec<u32> = zones.to_vec();
        asked.sort_unstable();
        asked.dedup();
        if !self.may_answer(from, GROUP_ROWS_QUESTION, now, out) {
            asked.retain(|z| self.fleet.is_group_key(*z));
        }
        self.rows_of(&asked)
    }

    /// Send `rows` to `to`, asking for its rows of the zones `want` in the same message.
    fn send_rows(
        &mut self,
        to: &P,
        rows: Vec<Arc<ZoneRow<P>>>,
        want: Vec<u32>,
        now: Now,
        out: &mut Vec<Action<P>>,
    ) {
        let per = self.cfg.rows_per_message.max(1);
        let mut chunks = rows.chunks(per);
        if !want.is_empty() {
            let first = chunks.next().map(<[_]>::to_vec).unwrap_or_default();
            let msg = Message::RowWant {
                zones: want,
                rows: first,
            };
            self.send(to.clone(), msg, now, out);
        }
        for chunk in chunks {
            self.send(to.clone(), Message::Rows(chunk.to_vec()), now, out);
        }
    }

    /// A zone row from the network: kept only if it would replace the row held for its zone,
    /// is signed, its issuer belongs to that zone, and the signature verifies with the
    /// issuer's node key as the door hands it out (admitted, not revoked). So a node can
    /// speak for its own zone only, and a forged row of another zone is refused. Honest
    /// nodes forward only rows they verified, so a bad row counts against its sender; an
    /// unsigned row (from an agent that writes format 2 or older) does not.
    fn take_row(
        &mut self,
        from: &P,
        row: &Arc<ZoneRow<P>>,
        door: &dyn Door<P>,
        out: &mut Vec<Action<P>>,
    ) {
        if !self.fleet.wants_row(row) {
            return; // nothing new: skip the signature check
        }
        let verdict = self.check_row(row, door);
        match verdict {
            Ok(()) => {
                self.fleet.receive_row(&self.cfg, row);
            }
            Err(RowRefusal::Unsigned) => {
                *self.stats.refused.entry("unsigned_row").or_default() += 1;
                out.push(Action::Refused {
                    from: Some(from.clone()),
                    reason: "unsigned_row",
                    detail: format!("unsigned row of zone {} (an older agent)", row.zone),
                });
            }
            Err(r) => self.refuse(
                Some(from),
                r.reason(),
                format!("row of zone {} issued by {:?}", row.zone, row.issuer),
                out,
            ),
        }
    }

    /// Who may speak for a zone or group: the row is signed, its issuer hashes into what it
    /// describes, the door knows the issuer's key (admitted, not revoked) and the signature
    /// verifies with it.
    fn check_row(&self, row: &Arc<ZoneRow<P>>, door: &dyn Door<P>) -> Result<(), RowRefusal> {
        row.precheck_grouped(self.cfg.zone_bits, self.fleet.group_bits())?;
        let key = door
            .node_key(&row.issuer)
            .ok_or(RowRefusal::UnknownIssuer)?;
        if door.verify_row(row, &key) {
            Ok(())
        } else {
            Err(RowRefusal::BadSignature)
        }
    }

    /// A zone row of another group, from the member asked for them (`FleetView::foreign`): kept,
    /// under the checks of [`Node::take_row`], when it outranks the one held for its zone.
    /// Rows of other groups that were not asked for are dropped in silence, as any row not
    /// wanted (a peer's rumor may cross a fetch).
    fn take_foreign_row(
        &mut self,
        from: &P,
        row: &Arc<ZoneRow<P>>,
        door: &dyn Door<P>,
        out: &mut Vec<Action<P>>,
    ) {
        if self.fleet.is_group_key(row.zone) || (row.zone as u64) >> self.cfg.zone_bits != 0 {
            return;
        }
        let g = self.fleet.group_of_zone(row.zone);
        let Some(f) = self.fleet.foreign().and_then(|m| m.get(&g)) else {
            return;
        };
        if f.asked.as_ref() != Some(from)
            || f.rows
                .get(&row.zone)
                .is_some_and(|r| row_rank(r) >= row_rank(row))
        {
            return;
        }
        let verdict = self.check_row(row, door);
        match verdict {
            Ok(()) => {
                if let Some(f) = self.fleet.foreign_mut().and_then(|m| m.get_mut(&g)) {
                    f.rows.insert(row.zone, row.clone());
                }
            }
            Err(r) => self.refuse(
                Some(from),
                r.reason(),
                format!("row of zone {} issued by {:?}", row.zone, row.issuer),
                out,
            ),
        }
    }

    /// The zone rows of group `g` fetched for a probe of the rollout of `version` on
    /// `channel`, when they cover every zone of it.
    fn foreign_rows(
        &self,
        g: u32,
        channel: &str,
        version: u64,
    ) -> Option<&BTreeMap<u32, Arc<ZoneRow<P>>>> {
        let f = self.fleet.foreign()?.get(&g)?;
        let covered = f.rows.len() == self.fleet.zones_of_group(g).len();
        (covered && f.rollout.0 == channel && f.rollout.1 == version).then_some(&f.rows)
    }

    /// The row of zone `z`: held, or fetched for a probe of its group.
    fn row_of_zone(&self, z: u32) -> Option<&Arc<ZoneRow<P>>> {
        self.fleet.rows.get(&z).or_else(|| {
            self.fleet
                .foreign()?
                .get(&self.fleet.group_of_zone(z))?
                .rows
                .get(&z)
        })
    }

    /// A peer says it holds a version: fetch it if it is newer than anything we accepted.
    fn consider(&mut self, a: Announcement, from: &P, now: Now, out: &mut Vec<Action<P>>) {
        if let Some(mark) = self.marks.get(&a.channel) {
            if a.version <= mark.version {
                return;
            }
        }
        if self.refused_hashes.contains(&a.hash) {
            return;
        }
        // The parent announces (rather than pushes) what it had to fetch: its push will not
        // come, so a node waiting for it fetches at once, from the parent. Without this a
        // slow branch of the tree fell to a cascade of grace periods, one per level
        // (announce, 80 ms, fetch: ~170 ms a hop; the last nodes of bench-10k seed 4).
        let from_parent = self.tree.parent.as_ref() == Some(from);
        if let Some(f) = self.fetches.iter_mut().find(|f| f.hash == a.hash) {
            if !f.sent && from_parent {
                let first = std::mem::replace(&mut f.from, from.clone());
                if f.alternates.len() < MAX_ALTERNATES {
                    f.alternates.push(first);
                }
                f.sent = true;
                f.deadline = now.mono_ms + self.cfg.fetch_timeout_ms;
                self.send(from.clone(), Message::Fetch(a.hash), now, out);
            } else if f.from != *from
                && !f.alternates.contains(from)
                && f.alternates.len() < MAX_ALTERNATES
            {
                f.alternates.push(from.clone());
            }
            return;
        }
        if self.fetches.len() >= MAX_FETCHES {
            return;
        }
        // With a live tree neighbour, its push is probably on the way: wait a moment before
        // fetching from whoever announced first.
        let members = &self.members;
        let wait = !from_parent
            && self
                .tree
                .neighbours(&|p| members.is_active(p))
                .iter()
                .any(|p| p != from);
        self.fetches.push(Fetch {
            hash: a.hash,
            hops: a.hops,
            from: from.clone(),
            deadline: now.mono_ms
                + if wait {
                    self.cfg.push_grace_ms
                } else {
                    self.cfg.fetch_timeout_ms
                },
            alternates: Vec::new(),
            attempts: 1,
            sent: !wait,
        });
        if !wait {
            self.send(from.clone(), Message::Fetch(a.hash), now, out);
        }
    }

    fn retry_fetches(&mut self, now: Now, out: &mut Vec<Action<P>>) {
        let timeout = self.cfg.fetch_timeout_ms;
        let mut resend = Vec::new();
        self.fetches.retain_mut(|f| {
            if f.deadline > now.mono_ms {
                return true;
            }
            if !f.sent {
                // The parent's push did not come: fetch from the first announcer.
                f.sent = true;
                f.deadline = now.mono_ms + timeout;
                resend.push((f.from.clone(), f.hash));
                return true;
            }
            if f.attempts >= FETCH_ATTEMPTS {
                return false; // anti-entropy will bring it back
            }
            f.attempts += 1;
            // Next announcer in turn; the one that failed goes to the back of the line.
            if !f.alternates.is_empty() {
                let next = f.alternates.remove(0);
                let failed = std::mem::replace(&mut f.from, next);
                f.alternates.push(failed);
            }
            f.deadline = now.mono_ms + timeout;
            resend.push((f.from.clone(), f.hash));
            true
        });
        for (to, hash) in resend {
            self.send(to, Message::Fetch(hash), now, out);
        }
    }

    /// The door: verify, check the mark, then store, persist, apply and announce.
    /// `pushed`: it came down (or up) the tree, or from the publish command, rather than by
    /// a fetch.
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        bundle: Arc<Bundle>,
        from: Option<&P>,
        hops: u16,
        pushed: bool,
        now: Now,
        door: &dyn Door<P>,
        out: &mut Vec<Action<P>>,
    ) {
        let hash = bundle.hash();
        let verified = match door.verify_bundle(&bundle, now.wall()) {
            Ok(v) => v,
            Err(r) => {
                // The hash names the signed bytes only. A copy whose signatures or size were
                // spoiled on the way has the genuine bundle's hash: refusing that hash for
                // good would let one malicious peer keep the genuine bundle out.
                if !matches!(
                    r,
                    Refusal::BadSignature { .. }
                        | Refusal::NotEnoughSigners { .. }
                        | Refusal::Malformed(crate::encoding::DecodeError::TooLarge { .. })
                ) {
                    self.remember_refused(hash);
                }
                self.refuse(from, r.reason(), r.to_string(), out);
                return;
            }
        };
        let header = verified.header().clone();
        match self.marks.decide(&header, hash) {
            Err(r) => {
                self.remember_refused(hash);
                self.refuse(from, r.reason(), r.to_string(), out);
                return;
            }
            Ok(MarkDecision::Same) => return,
            Ok(MarkDecision::New) => {}
        }
        self.marks.record(&header, hash);
        out.push(Action::PersistMarks(self.marks.clone()));
        out.push(Action::PersistBundle(bundle.clone()));
        out.push(Action::Accepted {
            channel: header.channel.clone(),
            version: header.version,
            hash,
            hops,
        });
        self.fetches.retain(|f| f.hash != hash);
        self.held.insert(
            header.channel.clone(),
            Held {
                bundle,
                verified: verified.clone(),
                hops,
            },
        );
        self.consider_rollout(&header.channel, now, out);
        // Announce onwards to every active peer but the one it came from.
        let a = Announcement {
            channel: header.channel.clone(),
            version: header.version,
            hash,
            hops,
        };
        // Tree links work both ways (as PlumTree's eager links): push to the parent and the
        // children, whichever side the release came from. The publisher also sends it
        // straight to the root, so that it runs down the whole tree from the top at once
        // instead of climbing the publisher's branch first: every node is then at most one
        // hop plus the tree's depth from the publisher, not up to twice the depth.
        // A node that had to fetch it (the push from its tree neighbour was lost or late)
        // announces it to them instead: they missed the same push, started the same grace
        // period on the same announcements, and are most likely fetching already, so a push
        // would cross their fetch.
        let members = &self.members;
        let mut children: Vec<P> = if pushed {
            self.tree
                .neighbours(&|p| members.is_active(p))
                .into_iter()
                .filter(|c| Some(c) != from)
                .collect()
        } else {
            Vec::new()
        };
        if from.is_none() && self.tree.root != self.me && !children.contains(&self.tree.root) {
            children.push(self.tree.root.clone());
        }
        let pushed = Arc::clone(&self.held[&header.channel].bundle);
        for c in &children {
            let push = Message::Push {
                bundle: WireBundle(pushed.clone()),
                hops,
            };
            self.send(c.clone(), push, now, out);
        }
        let peers: Vec<P> = self
            .members
            .active_ids()
            .filter(|p| Some(*p) != from && !children.contains(p))
            .cloned()
            .collect();
        for p in peers {
            self.send(p, Message::Announce(vec![a.clone()]), now, out);
        }
    }

    fn remember_refused(&mut self, hash: BundleHash) {
        if self.refused_hashes.len() >= REFUSED_MEMORY {
            self.refused_hashes.remove(0);
        }
        self.refused_hashes.push(hash);
    }

    /// Hand a bundle to apply if it targets this node and no apply of the channel runs.
    fn maybe_apply(
        &mut self,
        v: Arc<VerifiedBundle>,
        reason: ApplyReason,
        now: Now,
        out: &mut Vec<Action<P>>,
    ) {
        if !v.definition().targets.matches(&self.labels) {
            return;
        }
        let version = v.header().version;
        let ch = self.channels.entry(v.header().channel.clone()).or_default();
        if ch.applying.is_some() {
            return; // on_applied picks up the newest when the running apply ends
        }
        if reason == ApplyReason::NewVersion || ch.applied != version {
            ch.state = Some(ApplyState::Pending);
            self.status_lazy.get_or_insert(now.mono_ms);
        }
        ch.applying = Some(version);
        if reason == ApplyReason::NewVersion {
            ch.attempted = version;
        }
        ch.applying_bundle = Some((v.clone(), reason));
        out.push(Action::Apply { bundle: v, reason });
    }

    fn on_applied(
        &mut self,
        channel: String,
        version: u64,
        ok: bool,
        now: Now,
        out: &mut Vec<Action<P>>,
    ) {
        let ch = self.channels.entry(channel.clone()).or_default();
        if ch.applying == Some(version) {
            ch.applying = None;
        }
        let applied = ch
            .applying_bundle
            .take()
            .filter(|(b, _)| b.header().version == version);
        let before = (ch.applied, ch.state);
        if ok {
            if let Some((b, reason)) = applied {
                let same = ch.current.as_ref().is_some_and(|c| c.hash() == b.hash());
                if !same {
                    if reason == ApplyReason::Rollback {
                        // Going back: what ran before stays the fallback.
                        ch.current = Some(b);
                    } else {
                        ch.previous = ch.current.replace(b);
                    }
                }
            }
            ch.applied = version;
            ch.state = Some(ApplyState::Applied);
            // A halted version this node does not run is held, not applied.
            if let Some(r) = &ch.rollout {
                if r.halted.is_some() && r.version > version {
                    ch.state = Some(ApplyState::Held);
                }
            }
        } else {
            ch.state = Some(ApplyState::Failed);
        }
        if before != (ch.applied, ch.state) || !ok {
            self.status_dirty = true;
        }
        self.last_apply = Some(LastApply {
            channel: channel.clone(),
            version,
            ok,
            at_ms: now.wall_ms,
        });
        let newer = self
            .held
            .get(&channel)
            .is_some_and(|h| h.verified.header().version > version);
        let rolling = self
            .channels
            .get(&channel)
            .is_some_and(|c| c.rollout.is_some());
        if newer || rolling {
            self.consider_rollout(&channel, now, out);
        }
    }

    /// Apply the newest held version of `channel` when its rollout lets this node, or halt
    /// (and roll back) when a wave's signed unhealthy statuses pass the threshold.
    fn consider_rollout(&mut self, channel: &str, now: Now, out: &mut Vec<Action<P>>) {
        let Some(v) = self.held.get(channel).map(|h| h.verified.clone()) else {
            return;
        };
        if !v.definition().targets.matches(&self.labels) {
            return;
        }
        let version = v.header().version;
        let Some(policy) = v.header().rollout.clone() else {
            let ch = self.channels.entry(channel.to_string()).or_default();
            // A newer version without a rollout supersedes an older (halted) rollout.
            if ch.rollout.as_ref().is_some_and(|r| r.version < version) {
                ch.rollout = None;
                self.status_dirty = true;
            }
            if ch.applied != version || ch.state != Some(ApplyState::Applied) {
                self.maybe_apply(v, ApplyReason::NewVersion, now, out);
            }
            return;
        };
        let wave = rollout::wave_of(self.me.stable_hash(), version, &policy.waves);
        let ch = self.channels.entry(channel.to_string()).or_default();
        let fresh = ch.rollout.as_ref().is_none_or(|r| r.version != version);
        if fresh {
            ch.rollout = Some(RolloutState {
                version,
                wave,
                waiting: None,
                halted: None,
                tallies: Vec::new(),
                finished: false,
            });
            self.status_dirty = true;
        }
        let already_halted = ch.rollout.as_ref().and_then(|r| r.halted).is_some();
        // Zone rows of other groups fetched for a probe are kept while the rollout they
        // were asked for is judged, as a zone's probe is: fresh only for 12 rounds, they were
        // dropped during any longer bake, the group's row judged the group again, and a
        // liar's row that holds the wave restarted the bake every time (a stall).
        if let Some(m) = self.fleet.foreign_mut() {
            m.retain(|_, f| f.rollout.0 != channel || f.rollout.1 == version);
        }
        let (tallies, all_received, view_nodes) =
            self.tallies(channel, version, policy.waves.len());
        // Waves are judged only on a view that looks whole. A node that just restarted, or
        // whose zone sync or rows lag, sees part of the fleet: waves it cannot see look
        // empty or complete, and baking them would let it jump them (see
        // `FleetView::partial`). A node whose view holds no other node while it has peers
        // knows nothing of the fleet yet; only a node truly alone may go on by itself.
        let seen: u64 = tallies.iter().map(|t| t.nodes).sum();
        let has_peers =
            self.members.active_ids().next().is_some() || !self.members.passive.is_empty();
        let sizes = self.seen_sizes(now);
        let partial = self.fleet.partial_given(
            self.members.active_ids(),
            self.members.active_ids().chain(self.members.passive.iter()),
            &sizes,
        );
        let suspect = partial.and_then(|why| self.fleet.size_suspect(why, &sizes));
        self.probe_sizes(suspect, &sizes, now, out);
        let whole = partial.is_none() && !(seen < 2 && has_peers && view_nodes < 2);
        // A wave that is not complete (any more) starts its bake anew when it is. The bake
        // starts only once every node the view shows holds the version and the view looks
        // whole: before that a wave can look complete (even empty) only because its
        // members' statuses have not arrived. An empty wave is complete too: its bake runs
        // from when this node first saw it so. A bake also starts anew when the view grew
        // since it started (by more than 1/64, at least 2 nodes): it was judged on a view
        // that lacked nodes, which may be the wave's.
        let grew = |at_start: u64| view_nodes > at_start + (at_start / 64).max(1);
        for (k, t) in tallies.iter().enumerate() {
            let key = (channel.to_string(), version, k as u8);
            match rollout::bake_clock(t, all_received && whole) {
                rollout::Clock::Reset => {
                    self.complete_since.remove(&key);
                }
                rollout::Clock::Run => {
                    let e = self
                        .complete_since
                        .entry(key)
                        .or_insert((now.mono_ms, view_nodes));
                    if grew(e.1) {
                        *e = (now.mono_ms, view_nodes);
                    }
                }
                rollout::Clock::Hold => {
                    if let Some(e) = self.complete_since.get_mut(&key) {
                        if grew(e.1) {
                            self.complete_since.remove(&key);
                        }
                    }
                }
            }
        }
        if already_halted {
            let ch = self.channels.get_mut(channel).expect("inserted above");
            if ch.applied == version
                && ch.applying.is_none()
                && policy.on_failure == OnFailure::Rollback
            {
                if let Some(prev) = ch.previous.clone() {
                    ch.state = Some(ApplyState::Held);
                    self.maybe_apply(prev, ApplyReason::Rollback, now, out);
                }
            }
        }
        let bake_ms = policy.bake_secs.saturating_mul(1000);
        let since = &self.complete_since;
        let mut baked = |k: u8| {
            since
                .get(&(channel.to_string(), version, k))
                .is_some_and(|(t, _)| now.mono_ms.saturating_sub(*t) >= bake_ms)
        };
        let decision = if already_halted {
            None
        } else {
            Some(rollout::decide(
                &policy,
                wave,
                &tallies,
                rollout::View {
                    all_received,
                    whole,
                    exact: whole && self.cfg.zone_bits == 0,
                },
                &mut baked,
            ))
        };
        if let Some(Decision::Wait {
            wave: k,
            why: rollout::Wait::NotApplied,
        }) = decision
        {
            self.probe_stalls(channel, version, k, &tallies, now, out);
        }
        let ch = self.channels.get_mut(channel).expect("inserted above");
        // Finished only once this node runs it too: a view that shows no one yet (just
        // restarted) has every wave complete and every node "received", and a node that took
        // that for finished would stop judging the rollout.
        let runs_it = ch.applied == version;
        let r = ch.rollout.as_mut().expect("set above");
        r.finished = runs_it && all_received && whole && tallies.iter().all(rollout::complete);
        r.tallies = tallies;
        match decision {
            None => {}
            Some(Decision::Apply) => {
                r.waiting = None;
                let failed_here = ch.state == Some(ApplyState::Failed) && ch.attempted == version;
                if ch.applied != version && ch.applying != Some(version) && !failed_here {
                    self.maybe_apply(v, ApplyReason::NewVersion, now, out);
                }
            }
            Some(Decision::Wait { wave: w, why }) => {
                if r.waiting != Some((w, why)) {
                    r.waiting = Some((w, why));
                }
                if ch.applied != version && ch.state != Some(ApplyState::Pending) {
                    ch.state = Some(ApplyState::Pending);
                    self.status_lazy.get_or_insert(now.mono_ms);
                }
            }
            Some(Decision::Halt {
                wave: w,
                unhealthy,
                of,
            }) => {
                r.halted = Some((w, unhealthy, of));
                r.waiting = None;
                self.status_dirty = true;
                out.push(Action::Refused {
                    from: None,
                    reason: "rollout_halted",
                    detail: format!(
                        "{channel} v{version}: rollout halted in wave {w}: {unhealthy} of {of} nodes unhealthy (over {}%)",
                        policy.max_unhealthy * 100.0
                    ),
                });
                let runs_it = ch.applied == version || ch.applying == Some(version);
                match (&policy.on_failure, runs_it, ch.previous.clone()) {
                    (OnFailure::Rollback, true, Some(prev)) => {
                        ch.state = Some(ApplyState::Held);
                        self.maybe_apply(prev, ApplyReason::Rollback, now, out);
                    }
                    _ => {
                        if ch.applied != version {
                            ch.state = Some(ApplyState::Held);
                        }
                    }
                }
            }
        }
    }

    /// zone → the size of that zone as its members' tables hold it, for each zone whose row
    /// (issued by another node) claims well more (by the `ZoneTableShort` margin, 1/16):
    /// the largest of the fresh answers of at least `SIZE_ASK` distinct members other than
    /// the row's issuer, and, for the own zone, this node's table. The partial-view rule
    /// sets those rows' sizes aside (`FleetView::partial_given`). Taking the largest means
    /// one honest member with a full table keeps an honest row, and a member whose table
    /// is partial (it restarted) cannot make a row look inflated alone.
    fn seen_sizes(&self, now: Now) -> BTreeMap<u32, u32> {
        let fresh = SIZE_FRESH_ROUNDS * self.cfg.round_ms.max(1);
        let mut out = BTreeMap::new();
        for (z, p) in &self.sizes {
            let Some(row) = self.fleet.rows.get(z).filter(|r| r.issuer != self.me) else {
                continue;
            };
            let answers: Vec<u32> = p
                .answers
                .iter()
                .filter(|(q, _, at)| *q != row.issuer && now.mono_ms < at + fresh)
                .map(|(_, m, _)| *m)
                .collect();
            if answers.len() < SIZE_ASK {
                continue;
            }
            let mut m = answers.into_iter().max().unwrap_or(0);
            if *z == self.fleet.my_zone {
                m = m.max(self.fleet.zone.len() as u32);
            }
            if (m as u64) * 16 < row.members as u64 * 15 {
                out.insert(*z, m);
            }
        }
        out
    }

    /// Ask `SIZE_ASK` members of a zone (never its row's issuer) how many members their
    /// tables hold: of `suspect`, the zone whose row makes this view partial
    /// (`FleetView::size_suspect`), and again of each zone whose row is set aside while
    /// its answers age. At most once per `PROBE_EVERY_ROUNDS` rounds per zone.
    fn probe_sizes(
        &mut self,
        suspect: Option<u32>,
        seen: &BTreeMap<u32, u32>,
        now: Now,
        out: &mut Vec<Action<P>>,
    ) {
        let round = self.cfg.round_ms.max(1);
        let fresh = SIZE_FRESH_ROUNDS * round;
        self.sizes.retain(|_, p| now.mono_ms < p.asked_ms + fresh);
        let mut zones: Vec<u32> = suspect.into_iter().collect();
        for z in seen.keys() {
            let newest = self
                .sizes
                .get(z)
                .and_then(|p| p.answers.iter().map(|a| a.2).max());
            if newest.is_none_or(|t| now.mono_ms >= t + SIZE_REFRESH_ROUNDS * round) {
                zones.push(*z);
            }
        }
        for zone in zones {
            let Some(row) = self.fleet.rows.get(&zone) else {
                continue;
            };
            let issuer = row.issuer.clone();
            let asks = match self.sizes.get(&zone) {
                Some(p) if now.mono_ms < p.asked_ms + PROBE_EVERY_ROUNDS * round => continue,
                Some(p) => p.asks,
                None => 0,
            };
            let mut peers = self.members_to_ask(zone, &issuer, SIZE_ASK);
            if zone == self.fleet.my_zone && peers.len() < SIZE_ASK {
                let fits = |p: &&P| **p != issuer && **p != self.me;
                peers.extend(self.fleet.zone.keys().filter(fits).take(8).cloned());
                peers.sort();
                peers.dedup();
            }
            if peers.is_empty() {
                continue;
            }
            let n = SIZE_ASK.min(peers.len());
            let to: Vec<P> = (0..n)
                .map(|i| peers[(asks as usize * SIZE_ASK + i) % peers.len()].clone())
                .collect();
            let p = self.sizes.entry(zone).or_insert(SizeProbe {
                asked_ms: now.mono_ms,
                asks: 0,
                asked: Vec::new(),
                answers: Vec::new(),
            });
            p.asked_ms = now.mono_ms;
            p.asks += 1;
            for q in &to {
                p.asked.retain(|a| a != q);
                p.asked.push(q.clone());
            }
            while p.asked.len() > SIZE_ASKED_CAP {
                p.asked.remove(0);
            }
            for q in to {
                self.send(q, Message::SizeWant { zone }, now, out);
            }
        }
    }

    /// A gate held at wave `k` by one foreign zone's row alone (the own zone's signed
    /// statuses and every other zone's row show the wave complete): ask a member of that
    /// zone, not the row's issuer, for the zone's signed statuses of the wave, and judge the
    /// zone on them (`tallies`). A compromised node may sign its own zone's row, so a row
    /// saying its wave never completes would otherwise halt the rollout on one node's word.
    /// At most one question per zone and wave every `PROBE_EVERY_ROUNDS` rounds, only while
    /// the gate is held that way.
    fn probe_stalls(
        &mut self,
        channel: &str,
        version: u64,
        k: u8,
        tallies: &[WaveTally],
        now: Now,
        out: &mut Vec<Action<P>>,
    ) {
        self.probes
            .retain(|_, p| p.channel == channel && p.version == version);
        let Some(t) = tallies.get(k as usize) else {
            return;
        };
        if t.own_ready < t.own_nodes {
            return;
        }
        let probe_done = |p: &Probe<P>| {
            p.statuses().map(|got| {
                got.iter().all(|s| {
                    s.body.channels.iter().any(|c| {
                        c.channel == channel
                            && c.version == version
                            && c.state == ApplyState::Applied
                    })
                })
            })
        };
        let short_in = |row: &ZoneRow<P>| -> u64 {
            row.wave(channel, version, k)
                .filter(|c| !c.done())
                .map(|c| c.n as u64)
                .sum()
        };
        let mut holders = Vec::new();
        let mut gone = Vec::new();
        let mut refresh = Vec::new();
        let own_group = self.fleet.my_group_key();
        for (z, row) in &self.fleet.rows {
            if *z == self.fleet.my_zone || self.fleet.is_group_key(*z) && *z == own_group {
                continue;
            }
            // A group's zone rows, once fetched, also judge a wave that the group's row shows
            // complete with fewer members than they count (`tallies`): a liar's group row
            // that holds one wave shows the later ones empty, and would hide their laggards.
            let fetched = self
                .fleet
                .is_group_key(*z)
                .then(|| self.foreign_rows(*z & !GROUP_FLAG, channel, version))
                .flatten();
            let fetched_short =
                fetched.is_some_and(|rows| hides_members(row, rows, channel, version, k));
            // A probe stands in for a row only while the row says the wave is short: once
            // it does not, the row judges the zone again (a stale probe must hold nothing).
            if short_in(row) == 0 && !fetched_short {
                gone.push(*z);
                continue;
            }
            if self.fleet.is_group_key(*z) {
                // A group whose row (or fetched zone rows) hold the wave: once its zone rows
                // are here, the zones among them that hold it (each probed as any zone), else
                // the group itself (its zone rows are asked for below).
                match fetched {
                    Some(rows) => {
                        // Asked again while they stand in for the group's row.
                        refresh.push((*z & !GROUP_FLAG, row.issuer.clone()));
                        for (zz, r) in rows {
                            if short_in(r) > 0
                                && self.probes.get(&(*zz, k)).and_then(probe_done) != Some(true)
                            {
                                holders.push((*zz, r.issuer.clone()));
                            }
                        }
                    }
                    None => holders.push((*z, row.issuer.clone())),
                }
                continue;
            }
            if self.probes.get(&(*z, k)).and_then(probe_done) != Some(true) {
                holders.push((*z, row.issuer.clone()));
            }
        }
        for (g, issuer) in refresh {
            self.ask_group_rows(g, &issuer, channel, version, now, out);
        }
        for z in gone {
            if self.fleet.is_group_key(z) {
                let zones = self.fleet.zones_of_group(z & !GROUP_FLAG);
                self.probes
                    .retain(|(pz, w), _| !(zones.contains(pz) && *w == k));
            } else {
                self.probes.remove(&(z, k));
            }
        }
        let [(zone, issuer)] = holders.as_slice() else {
            return;
        };
        let every = PROBE_EVERY_ROUNDS * self.cfg.round_ms.max(1);
        if self.fleet.is_group_key(*zone) {
            let g = *zone & !GROUP_FLAG;
            self.ask_group_rows(g, &issuer.clone(), channel, version, now, out);
            return;
        }
        let asks = match self.probes.get(&(*zone, k)) {
            Some(p) if now.mono_ms < p.asked_ms + every => return,
            Some(p) => p.asks,
            None => 0,
        };
        let peers = self.members_to_ask(*zone, issuer, 2);
        // Two members: one for the wave's statuses, the next for its laggards' should the
        // first show the wave done (`take_wave_statuses`). With one member known the probe
        // cannot be settled (one member's word); it asks anyway, and more members turn up.
        let n = peers.len();
        if n == 0 {
            return;
        }
        let full_to = peers[asks as usize % n].clone();
        let doubt_to = peers[(asks as usize + 1) % n].clone();
        let zone = *zone;
        let p = self.probes.entry((zone, k)).or_insert(Probe {
            channel: channel.to_string(),
            version,
            asked_ms: now.mono_ms,
            asks: 0,
            full_from: None,
            doubt_from: None,
            doubt_next: None,
            doubt_asked: 0,
            got: None,
            doubt: None,
        });
        p.asked_ms = now.mono_ms;
        p.asks += 1;
        p.full_from = Some(full_to.clone());
        p.doubt_next = (doubt_to != full_to).then_some(doubt_to);
        let msg = Message::WaveWant {
            zone,
            channel: channel.to_string(),
            version,
            wave: k,
        };
        self.send(full_to, msg, now, out);
    }

    /// Ask a member of group `g` (never `issuer`, its row's) for its zone rows of the group,
    /// for the rollout of `version` on `channel`: at most once per `PROBE_EVERY_ROUNDS`
    /// rounds, each time of the next member in turn.
    fn ask_group_rows(
        &mut self,
        g: u32,
        issuer: &P,
        channel: &str,
        version: u64,
        now: Now,
        out: &mut Vec<Action<P>>,
    ) {
        let every = PROBE_EVERY_ROUNDS * self.cfg.round_ms.max(1);
        let rollout = (channel.to_string(), version);
        if let Some(m) = self.fleet.foreign_mut() {
            // Rows fetched for another rollout judge nothing here.
            m.retain(|k, f| *k != g || f.rollout == rollout);
        }
        let asks = match self.fleet.foreign().and_then(|m| m.get(&g)) {
            Some(f) if now.mono_ms < f.asked_ms + every => return,
            Some(f) => f.asks,
            None => 0,
        };
        let peers = self.members_to_ask(GROUP_FLAG | g, issuer, usize::MAX);
        if peers.is_empty() {
            return;
        }
        let to = peers[asks as usize % peers.len()].clone();
        let Some(m) = self.fleet.foreign_mut() else {
            return;
        };
        let f = m.entry(g).or_insert(Foreign {
            asked_ms: now.mono_ms,
            asks: 0,
            asked: None,
            rows: BTreeMap::new(),
            rollout,
        });
        f.asked_ms = now.mono_ms;
        f.asks += 1;
        f.asked = Some(to.clone());
        let zones: Vec<u32> = self.fleet.zones_of_group(g).collect();
        self.send(
            to,
            Message::RowWant {
                zones,
                rows: Vec::new(),
            },
            now,
            out,
        );
    }

    /// Per wave of `version`: nodes, applied and healthy from the summaries; unhealthy from the
    /// signed statuses held. And whether every node reporting the channel holds `version`,
    /// and how many nodes the view shows.
    fn tallies(&self, channel: &str, version: u64, waves: usize) -> (Vec<WaveTally>, bool, u64) {
        let counts = self.fleet.counts();
        let mut t = vec![WaveTally::default(); waves];
        if let Some(m) = counts.by_wave.get(&(channel.to_string(), version)) {
            for (w, (nodes, applied, healthy)) in m {
                if let Some(x) = t.get_mut(*w as usize) {
                    x.nodes += nodes;
                    x.applied += applied;
                    x.healthy += healthy;
                }
            }
        }
        // Whether every node reporting the channel holds v: on the rows' word, before the
        // probes below (a probed zone's row still says how many of it hold v).
        let holding: u64 = t.iter().map(|x| x.nodes).sum();
        // Adds (or takes out) a row's counts of wave `k` to the tally.
        let tally = |x: &mut WaveTally, row: &ZoneRow<P>, k: u8, add: bool| {
            for c in row.wave(channel, version, k) {
                let n = c.n as u64;
                let f = |v: &mut u64| *v = if add { *v + n } else { v.saturating_sub(n) };
                f(&mut x.nodes);
                if c.done() {
                    f(&mut x.applied);
                    if c.healthy {
                        f(&mut x.healthy);
                    }
                }
            }
        };
        // A group whose row held a wave, resolved to its zones (`probe_stalls`): each wave
        // of the group that its row or those zone rows show short is judged on the zone
        // rows, each signed by a member of its zone, not on the group's row.
        let mut resolved: Vec<(u32, u8)> = Vec::new();
        for g in self.fleet.foreign().into_iter().flat_map(|m| m.keys()) {
            let (Some(rows), Some(grow)) = (
                self.foreign_rows(*g, channel, version),
                self.fleet.rows.get(&(GROUP_FLAG | g)),
            ) else {
                continue;
            };
            for (k, x) in t.iter_mut().enumerate() {
                let k = k as u8;
                // Every wave that the group's row shows short, and every wave it shows complete
                // with fewer members than the zone rows count, which show it short: such a
                // row leaves out members, and would hide the wave's laggards.
                if !grow.wave_short(channel, version, k)
                    && !hides_members(grow, rows, channel, version, k)
                {
                    continue;
                }
                tally(x, grow, k, false);
                for r in rows.values() {
                    tally(x, r, k, true);
                }
                resolved.push((*g, k));
            }
        }
        // A zone probed because its row alone held a wave (`probe_stalls`): that wave of the
        // zone is judged on its members' signed statuses, not on its row.
        for ((zone, k), probe) in &self.probes {
            let Some(got) = probe
                .statuses()
                .filter(|_| probe.channel == channel && probe.version == version)
            else {
                continue;
            };
            let Some(x) = t.get_mut(*k as usize) else {
                continue;
            };
            // Only in place of a row that says the wave is short (`probe_stalls`).
            let short = |row: &&Arc<ZoneRow<P>>| row.wave_short(channel, version, *k);
            let foreign = || {
                let g = self.fleet.group_of_zone(*zone);
                resolved
                    .contains(&(g, *k))
                    .then(|| self.fleet.foreign()?.get(&g)?.rows.get(zone))
                    .flatten()
            };
            let held = self.fleet.rows.get(zone).filter(|_| {
                self.fleet.group_bits() == 0
                    || self.fleet.group_of_zone(*zone) == self.fleet.my_group()
            });
            let Some(row) = held.or_else(foreign).filter(short) else {
                continue;
            };
            tally(x, row, *k, false);
            for s in got {
                x.nodes += 1;
                let runs = s.body.channels.iter().any(|c| {
                    c.channel == channel && c.version == version && c.state == ApplyState::Applied
                });
                if runs {
                    x.applied += 1;
                    if s.body.healthy {
                        x.healthy += 1;
                    }
                }
            }
        }
        let policy = self
            .held
            .get(channel)
            .and_then(|h| h.verified.header().rollout.clone());
        // A node's wave for v is drawn from its id, which its signature vouches for: recompute
        // it rather than take the wave a status claims (a compromised node could claim any).
        let wave_of = |p: &P| {
            policy
                .as_ref()
                .map(|pol| rollout::wave_of(p.stable_hash(), version, &pol.waves))
        };
        // The own zone, from signed statuses: per wave, its members that report the channel
        // (whatever version they hold), and those that run v. (Their health is the halt
        // rule's: one sick member below the threshold must not hold the zone back forever.)
        for (p, (_, s)) in &self.fleet.zone {
            let Some(c) = s.body.channels.iter().find(|c| c.channel == channel) else {
                continue;
            };
            let Some(w) = wave_of(p) else { break };
            if let Some(x) = t.get_mut(w as usize) {
                x.own_nodes += 1;
                if c.version == version && c.state == ApplyState::Applied {
                    x.own_ready += 1;
                }
            }
        }
        // Each node counts once: its current status, or the evidence kept from an older one
        // (sick on v, then rolled back: still a reason to halt v).
        let mut sick_on: BTreeMap<&P, u8> = BTreeMap::new();
        let statuses = self
            .fleet
            .zone
            .iter()
            .map(|(p, (_, s))| (p, s))
            .chain(self.fleet.notable.iter())
            .chain(self.fleet.evidence.iter());
        for (p, s) in statuses {
            if s.body.healthy {
                continue;
            }
            for c in s.body.channels.iter().filter(|c| c.channel == channel) {
                if c.target == version && c.version == version {
                    sick_on.entry(p).or_insert(wave_of(p).unwrap_or(c.wave));
                }
            }
        }
        for w in sick_on.values() {
            if let Some(x) = t.get_mut(*w as usize) {
                x.unhealthy_evidence += 1;
            }
        }
        let reporting: u64 = counts
            .by_channel
            .get(channel)
            .map_or(0, |m| m.values().sum());
        if let Some(policy) = policy {
            let mut below = 0.0;
            for (k, x) in t.iter_mut().enumerate() {
                let upto = policy.waves.get(k).copied().unwrap_or(1.0);
                x.expected = ((upto - below) * reporting as f64).floor() as u64;
                below = upto;
            }
        }
        (t, holding >= reporting, counts.nodes)
    }

    fn issue_status(&mut self, now: Now, rng: &mut dyn RngCore, out: &mut Vec<Action<P>>) {
        self.status_dirty = false;
        self.status_lazy = None;
        let issued_ms = match &self.own {
            Some(s) if s.body.issued_ms >= now.wall_ms => s.body.issued_ms + 1,
            _ => now.wall_ms,
        };
        let body = StatusBody {
            node: self.me.clone(),
            issued_ms,
            labels: self.labels.clone(),
            channels: self
                .channels
                .iter()
                .filter_map(|(c, s)| {
                    s.state.map(|state| {
                        let (target, wave) = match (&s.rollout, self.held.get(c)) {
                            (Some(r), _) => (r.version, r.wave),
                            (None, Some(h)) => (h.verified.header().version, 0),
                            (None, None) => (s.applied, 0),
                        };
                        ChannelStatus {
                            channel: c.clone(),
                            version: s.applied,
                            state,
                            target,
                            wave,
                        }
                    })
                })
                .collect(),
            last_apply: self.last_apply.clone(),
            drift_detected: self.drift_detected,
            drift_corrected: self.drift_corrected,
            healthy: self.healthy,
            failing_checks: self.failing.clone(),
        };
        let signed = Arc::new(body.sign(&self.key).with_cert(self.cert.clone()));
        self.stats.statuses_signed += 1;
        self.own = Some(signed.clone());
        self.fleet.insert(&self.cfg, signed.clone());
        out.push(Action::PersistStatus(signed.clone()));
        // Zone mates among the active peers first: they are connected already (in the
        // agent a new connection costs a Noise handshake, most of what a spread costs on
        // one machine), and in a fleet of one zone every active peer is one. Random members
        // of the zone make up the rest; zone syncs carry the status on from there.
        let fanout = self.cfg.status_fanout;
        let mates: Vec<P> = self
            .members
            .active_ids()
            .filter(|p| self.fleet.zone_of(p) == self.fleet.my_zone)
            .cloned()
            .collect();
        let mut to = super::sample(rng, &mates, fanout);
        for _ in to.len()..fanout {
            let Some(p) = self.fleet.random_member(rng) else {
                break;
            };
            if !to.contains(&p) {
                to.push(p);
            }
        }
        for p in to {
            self.send(p, Message::Statuses(vec![signed.clone()]), now, out);
        }
    }
}

/// `every` ± 10%.
fn jitter(rng: &mut dyn RngCore, every: u64) -> u64 {
    let spread = every / 5;
    every - every / 10 + below(rng, spread as usize + 1) as u64
}
