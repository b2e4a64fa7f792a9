//! The fleet view: full statuses of a bounded set of nodes, exact counts for the whole fleet.
//!
//! After Astrolabe (van Renesse, Birman, Vogels 2003), with two levels. Node ids hash into
//! `2^zone_bits` zones of a few hundred nodes at most. A node holds:
//! - the full signed status of every node of its own zone (kept in step by a zone sync with
//!   one zone member per round: fingerprints first, entries only on a mismatch);
//! - the full status of up to `notable_cap` failing, drifting or unhealthy nodes elsewhere
//!   (they are few, and a halt rests on them);
//! - one summary row per zone: nodes by (channel, version, state, health). A zone's row is
//!   issued by its *leader* (the member with the lowest id hash in the issuer's table) when
//!   its content changes, signed with the leader's node key, and spread as a rumor for a
//!   few rounds (digests name it by (zone, rank); peers that lack it ask for it). A row is
//!   taken only from a member of the zone it describes ([`ZoneRow::precheck`],
//!   [`ZoneRow::verify`]; `Node::take_row`), so a compromised node can misstate its own
//!   zone's summary, never another zone's.
//!
//! **Which row wins.** A node whose zone table is partial (just restarted, or cut off from its
//! zone) takes itself for the leader of the few members it knows, and its row is newer than
//! the real leader's. Were rows compared by issue time alone, its near-empty row would replace
//! the zone's real summary everywhere, and rollouts, which advance on summaries, would judge
//! most of the zone missing. So a row's *rank* is its issue time plus a bonus for how many
//! members it counts ([`row_rank`]: 10 s per 1/16 of a doubling): a row counting half the
//! members must be 160 s newer to win, longer than a live leader takes to re-issue its own
//! (`row_refresh_ms`, 120 s), so a sparse row never displaces a fuller one whose leader is
//! alive; a row counting 1 member of 139 would need 19 minutes, by when the fuller one has
//! aged out (`status_ttl_ms`). A leader's own next row (same or more members, newer) always
//! wins; one that shrank by a few members waits a few seconds. Ranks are a function of the
//! row alone, so every node orders rows alike and the row prints and `RowSync` (which carry
//! ranks) converge as before. A node also issues no row that would not outrank the one it
//! holds for its zone: a partial table does not even try.
//!
//! **Groups of zones** (`group_bits` > 0, fleets of 20,000 and more): zones whose numbers share
//! their top `group_bits` bits form a group. A node then holds the zone rows of its own group
//! only, and one *group row* per group (key [`GROUP_FLAG`] | group: the sum of that group's
//! zone rows, issued by the group's leader, the lowest id hash among the issuers of the group's
//! zone rows, and taken only from a member of the group). Zone rows spread within their group,
//! group rows fleet-wide; the rows print a digest carries depends on the receiver's group
//! ([`FleetView::rows_print_for`]). ARCHITECTURE.md, "Groups of zones".
//!
//! With `zone_bits = 0` there is one zone: a small fleet has the whole table. Per node this is
//! `Z` statuses + `N/Z` rows; with zones of about √N·c nodes both stay small (see
//! ARCHITECTURE.md for measured figures).

use super::config::{limits, Config};
use super::status::{ApplyState, SignedStatus, MAX_CERT_BYTES};
use super::{splitmix64, PeerId};
use crate::trust::SignatureCheck;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Nodes in one zone with a given (channel, version, state, health).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Count {
    pub channel: String,
    pub version: u64,
    pub state: ApplyState,
    pub healthy: bool,
    /// The newest version the nodes hold and their wave for it (rollouts advance on these).
    pub target: u64,
    pub wave: u8,
    pub n: u32,
}

impl Count {
    /// These nodes run their target version, applied: done with the rollout of it.
    pub fn done(&self) -> bool {
        self.version == self.target && self.state == ApplyState::Applied
    }
}

impl<P> ZoneRow<P> {
    /// The counts of wave `k` of the rollout of `version` on `channel`.
    pub fn wave<'a>(
        &'a self,
        channel: &'a str,
        version: u64,
        k: u8,
    ) -> impl Iterator<Item = &'a Count> + 'a {
        self.counts
            .iter()
            .filter(move |c| c.channel == channel && c.target == version && c.wave == k)
    }

    /// Whether the row counts members of that wave not yet done ([`Count::done`]).
    pub fn wave_short(&self, channel: &str, version: u64, k: u8) -> bool {
        self.wave(channel, version, k).any(|c| !c.done())
    }
}

/// A zone's summary as its leader computed it, signed by that leader with its node key.
///
/// Anyone can check who may have issued a row: the signature verifies with the issuer's node
/// key (in an admitted fleet, of a node admitted and not revoked), and the issuer belongs to
/// the zone the row describes (zones are a hash prefix of the node id). So an admitted but
/// compromised node can misstate its own zone's row, never another zone's ([`ZoneRow::check`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneRow<P> {
    pub zone: u32,
    pub issued_ms: u64,
    pub issuer: P,
    pub members: u32,
    pub counts: Vec<Count>,
    /// A few members, so nodes of this zone can find each other.
    pub contacts: Vec<P>,
    /// The issuer's signature over [`ROW_CONTEXT`] and the row without it (64 bytes; empty
    /// for a row read from an older message format, which is never taken: see
    /// `message.rs`).
    pub sig: Vec<u8>,
    /// The issuer's certificate, in an admitted fleet (outside the signature, as on a
    /// status): the door takes a row only from an admitted, unrevoked issuer, and the row
    /// travels far beyond the peers that saw its issuer's hello.
    pub cert: Option<Arc<Vec<u8>>>,
}

/// A zone row as message formats 1 and 2 carried it: unsigned. Still read, never trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsignedZoneRow<P> {
    pub zone: u32,
    pub issued_ms: u64,
    pub issuer: P,
    pub members: u32,
    pub counts: Vec<Count>,
    pub contacts: Vec<P>,
}

impl<P> From<UnsignedZoneRow<P>> for ZoneRow<P> {
    fn from(r: UnsignedZoneRow<P>) -> Self {
        ZoneRow {
            zone: r.zone,
            issued_ms: r.issued_ms,
            issuer: r.issuer,
            members: r.members,
            counts: r.counts,
            contacts: r.contacts,
            sig: Vec::new(),
            cert: None,
        }
    }
}

impl<P: Clone> From<&ZoneRow<P>> for UnsignedZoneRow<P> {
    /// The row as an agent of message format 2 reads it: without signature or certificate.
    fn from(r: &ZoneRow<P>) -> Self {
        UnsignedZoneRow {
            zone: r.zone,
            issued_ms: r.issued_ms,
            issuer: r.issuer.clone(),
            members: r.members,
            counts: r.counts.clone(),
            contacts: r.contacts.clone(),
        }
    }
}

/// Domain separation: a row signature never passes for a status or bundle signature.
pub const ROW_CONTEXT: &[u8] = b"driftless zone row signature v1\0";

/// Why a zone row from a peer was not taken (the reason counted in refusals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowRefusal {
    /// No signature: a row from an older message format (an honest older agent sends it).
    Unsigned,
    /// The issuer does not belong to the zone the row describes.
    IssuerOutsideZone,
    /// The issuer has no node key this node accepts (unknown, not admitted, revoked).
    UnknownIssuer,
    /// The signature does not verify with the issuer's key, or a list is over its bound.
    BadSignature,
}

impl RowRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            RowRefusal::Unsigned => "unsigned_row",
            RowRefusal::IssuerOutsideZone => "row_issuer_outside_zone",
            RowRefusal::UnknownIssuer => "unknown_row_issuer",
            RowRefusal::BadSignature => "bad_row_signature",
        }
    }
}

impl<P: PeerId> ZoneRow<P> {
    /// The bytes the issuer signs: the row without its signature, as format 1 of the row
    /// body (postcard, behind `"DLZR" 1`).
    fn signed_bytes(&self) -> Vec<u8> {
        crate::encoding::encode(
            ROW_MAGIC,
            ROW_FORMAT,
            &(
                self.zone,
                self.issued_ms,
                &self.issuer,
                self.members,
                &self.counts,
                &self.contacts,
            ),
        )
    }

    /// Sign the row as its issuer (`key` must be the issuer's node key).
    pub fn sign(mut self, key: &ed25519_dalek::SigningKey) -> Self {
        use ed25519_dalek::Signer;
        let bytes = self.signed_bytes();
        let mut msg = Vec::with_capacity(ROW_CONTEXT.len() + bytes.len());
        msg.extend_from_slice(ROW_CONTEXT);
        msg.extend_from_slice(&bytes);
        self.sig = key.sign(&msg).to_bytes().to_vec();
        self
    }

    /// The checks that need no key, cheapest first: signed at all, and by a member of the
    /// zone it describes.
    pub fn precheck(&self, zone_bits: u8) -> Result<(), RowRefusal> {
        self.precheck_grouped(zone_bits, 0)
    }

    /// [`ZoneRow::precheck`] in a fleet with groups: a group row (`zone` = [`GROUP_FLAG`] |
    /// group) must be signed by a member of that group, as a zone row by a member of its zone.
    pub fn precheck_grouped(&self, zone_bits: u8, group_bits: u8) -> Result<(), RowRefusal> {
        if self.sig.is_empty() {
            return Err(RowRefusal::Unsigned);
        }
        let inside = if group_bits > 0 && self.zone & GROUP_FLAG != 0 {
            group_of(group_bits, &self.issuer) == self.zone & !GROUP_FLAG
        } else {
            zone_of(zone_bits, &self.issuer) == self.zone
        };
        if !inside {
            return Err(RowRefusal::IssuerOutsideZone);
        }
        Ok(())
    }

    /// The signature verifies with `key` (the issuer's node key) and the lists are within
    /// their bounds. Call [`ZoneRow::precheck`] first; the certificate is the door's to judge.
    pub fn verify(&self, key: &ed25519_dalek::VerifyingKey, check: &dyn SignatureCheck) -> bool {
        self.sig.len() == 64
            && self.cert.as_ref().is_none_or(|c| c.len() <= MAX_CERT_BYTES)
            && self.counts.len() <= limits::MAX_ROW_COUNTS
            && self.contacts.len() <= limits::MAX_PEERS_PER_MESSAGE
            && check.check(key, &[ROW_CONTEXT, &self.signed_bytes()], &self.sig)
    }
}

/// The `zone` of a group row is this flag | the group: group rows travel and are checked as
/// zone rows do (the same message types and signature), and no zone number has this bit
/// (zones are at most 2^24).
pub const GROUP_FLAG: u32 = 1 << 31;

/// What a row signature covers: `"DLZR" 1 (zone, issued_ms, issuer, members, counts,
/// contacts)`.
pub const ROW_MAGIC: &[u8; 4] = b"DLZR";
pub const ROW_FORMAT: u16 = 1;

/// Fleet-wide counts, per channel: (version, state, healthy) → nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelCounts {
    pub nodes: u64,
    pub by_channel: BTreeMap<String, BTreeMap<(u64, ApplyState, bool), u64>>,
    /// Per channel and target version: per wave, (nodes, applied the target, of those healthy).
    pub by_wave: BTreeMap<(String, u64), BTreeMap<u8, WaveCount>>,
}

/// Nodes of one wave, those of them that run the target version, and of those the healthy.
pub type WaveCount = (u64, u64, u64);

impl ChannelCounts {
    /// Nodes at `version` or above on `channel` in state `applied`.
    pub fn applied_at_least(&self, channel: &str, version: u64) -> u64 {
        self.by_channel.get(channel).map_or(0, |m| {
            m.iter()
                .filter(|((v, s, _), _)| *v >= version && *s == ApplyState::Applied)
                .map(|(_, n)| *n)
                .sum()
        })
    }
}

#[derive(Debug, Clone)]
pub struct FleetView<P> {
    zone_bits: u8,
    /// Groups of zones (0: none): see [`Config::group_bits`]. With groups, `rows` holds the
    /// zone rows of the own group's zones and one row per group (key [`GROUP_FLAG`] | group).
    group_bits: u8,
    /// What only a fleet with groups needs (boxed: a node without groups pays one pointer).
    grp: Option<Box<GroupState<P>>>,
    pub my_zone: u32,
    me: P,
    /// Full statuses of the own zone, the node itself included, each with its `issued_ms`
    /// beside it: zone syncs read the issue times of the whole table, and here they read no
    /// status (each one a pointer away, and rarely in cache among 10^4–10^5 virtual nodes).
    pub zone: BTreeMap<P, (u64, Arc<SignedStatus<P>>)>,
    /// Full statuses of failing/drifting/unhealthy nodes of other zones, at most `notable_cap`.
    pub notable: BTreeMap<P, Arc<SignedStatus<P>>>,
    /// Halt evidence that outlives its status: per node, the newest signed status in which it
    /// ran the version it targets and was unhealthy, kept when a newer status (say, healthy
    /// again after a rollback) replaces it, and spread with the notable ones, so that a halt
    /// reaches nodes that never saw the sick ones sick. At most `notable_cap`.
    pub evidence: BTreeMap<P, Arc<SignedStatus<P>>>,
    /// One summary per zone (the own zone's too, as issued by its leader). Change it only
    /// through the methods here, which keep `ranks` and `rows_print` in step.
    pub rows: BTreeMap<u32, Arc<ZoneRow<P>>>,
    /// The rank + 1 of the row held per zone (0: none), when there are at most 2^16 zones: a
    /// row received is compared here, in one array read, and nearly every row received is a
    /// copy of one held (rumors reach each node several times).
    ranks: Vec<u64>,
    /// Rows learned recently, named in the next few digests: (zone, rank, digests left), in
    /// the order learned, one per zone. Digests name rows, so the rows themselves are not
    /// touched to name them, and a short list is walked once per digest.
    hot: Vec<(u32, u64, u8)>,
    fingerprint: u64,
    /// XOR of a hash of (zone, issued) over `rows`: equal prints, equal row sets.
    rows_print: u64,
    /// The keys of `zone` but self, for picking a random member in O(1).
    zone_ids: Vec<P>,
    /// The lowest id hash among the keys of `zone` (u64::MAX when empty): who leads it.
    min_hash: u64,
    /// Members of the own zone seen on the network (as senders or in peer lists) whose status
    /// the table may still lack: zone syncs go to them until the table knows the zone.
    mates: Vec<P>,
    /// The zone table's size at the last [`FleetView::maybe_issue_row`], the rounds since it
    /// last grew, and the rounds a row has waited for it to stop growing.
    table_len: u32,
    quiet_rounds: u32,
    settle_waits: u32,
    /// One bit per peer id seen (the low 6 bits of its hash, [`FleetView::learn`]): with
    /// [`FEW_MEMBERS`] bits set, this node has seen at least that many other nodes, so the
    /// fleet is larger than a table of few members, which is then most likely still filling.
    /// In a fleet of fewer nodes (a few agents) a table that small may well be the whole zone.
    seen: u64,
    /// The leader's own counts at the last [`FleetView::maybe_issue_row`], the rounds since
    /// they last changed, and the rounds a row has waited for them to stop changing.
    last_counts: Vec<Count>,
    counts_quiet: u32,
    count_waits: u32,
}

/// The group-level state of a [`FleetView`] (fleets with groups only).
#[derive(Debug, Clone, Default)]
struct GroupState<P> {
    /// XOR of a hash of (key, rank) over the group rows: what a peer of another group
    /// compares (it holds none of this group's zone rows).
    print: u64,
    /// Members of the own group outside the own zone, seen on the network (newest kept, at
    /// most [`MATES_CAP`]): partners for exchanging the group's zone rows.
    mates: Vec<P>,
    /// The group's leader as this node sees it ([`FleetView::group_leader`]), found again
    /// whenever a zone row of the group changes (not every round: it reads every row).
    leader: Option<P>,
    /// The group's aggregate at the last [`FleetView::maybe_issue_group_row`], the rounds
    /// since it last changed, and the rounds a group row has waited for it to settle.
    last: (u32, Vec<Count>),
    quiet: u32,
    waits: u32,
    /// group → the zone rows of another group, asked of one of its members when that
    /// group's row alone held this node's gate (`Node::probe_stalls`): they resolve the group
    /// to its zones, each row signed by a member of its zone, and the one zone that holds
    /// the wave is probed as any other. (Here rather than in `Node`: a node without groups
    /// pays nothing for it.)
    foreign: BTreeMap<u32, Foreign<P>>,
    /// The round of the last row sync with a group mate while rows were on their way.
    synced_round: u64,
}

/// The zone rows of another group, fetched for a probe (see [`FleetView::foreign`]).
#[derive(Debug, Clone)]
pub struct Foreign<P> {
    /// When they were last asked for (mono ms), and how many times (each time of another
    /// member, in turn).
    pub asked_ms: u64,
    pub asks: u32,
    /// The member last asked (rows from anyone else are not taken here).
    pub asked: Option<P>,
    /// The rows received, verified, the highest rank per zone.
    pub rows: BTreeMap<u32, Arc<ZoneRow<P>>>,
    /// The rollout (channel, version) they were asked for: they judge that rollout only, and
    /// are kept as long as it is judged (as a zone's probe is), not only while fresh.
    pub rollout: (String, u64),
}

/// A leader issues a row that counts other members than the one held only once its table has
/// not grown for this many rounds: a row of a table still filling (a fleet booting, a zone
/// sync bringing a whole table) would be replaced within seconds, and every node fetches
/// every row version once, signature included.
const ROW_SETTLE_ROUNDS: u32 = 2;
/// … but waits no longer than this many rounds (a zone that keeps growing still gets rows).
pub(crate) const ROW_SETTLE_MAX: u32 = 20;
/// A zone table smaller than this knows few members of its zone: zones are sized to hold 64
/// or more ([`Config::zone_bits_for`]), so it is most likely still filling (the node probes
/// for members, `Node::on_round`). Its node leads those few members, and a row of them
/// spreads through the zone's group before a fuller one outranks it: in a booting fleet of
/// 100,000 nodes, tables fill over 3–19 s, and 34,800 of the 35,000 zone rows issued in the
/// first 20 s (1,024 zones) came from tables under 16 members, quiet for the two rounds a
/// row waits. Such a table issues a row only once it has not grown for [`ROW_SETTLE_MAX`]
/// rounds, once the node has seen that many other nodes (`FleetView::seen`): a zone that
/// small in a fleet that small (a few agents with more zone bits than they need) gets its
/// row as any other. (The membership views were not the test: at 100k, most nodes' views
/// held 16–27 peers then, and the 800 rows of nodes whose views held 8–16 multiplied row
/// traffic by 20 in the first 20 s.)
pub const FEW_MEMBERS: usize = 16;

/// A leader issues a row of new counts only once they have not changed for this many rounds:
/// a release sweeps through a zone in a second or two, but its statuses reach the leader over
/// a few rounds, and a row issued at the first change (a few members applied) was replaced by
/// the next one `row_min_ms` later, while every node fetched both. At 30,000 nodes rows were
/// the largest item that grows with the fleet (R = N/Z rows per node per version).
const ROW_COUNTS_SETTLE_ROUNDS: u32 = 1;
/// … but waits no longer than this many rounds (counts that keep changing still get rows):
/// as long as `row_min_ms` (5 s) would have held back the full row after a partial one. At
/// 30,000 nodes a zone's statuses reach its leader over 4–5 rounds; with 3 here the leader
/// often issued a partial row at the third round anyway, and the full one came 5 s later
/// than before (bench-30k missed "fleet view exact by 59s": 192 of 200).
const ROW_COUNTS_SETTLE_MAX: u32 = 5;

/// A group's row is re-issued at most every `row_min_ms` / this: it waits for its zone rows
/// to hold still for a round anyway, and a release reaches the zones of a group over several
/// seconds, so its first row after a release is often partial; at 30,000 nodes the full one
/// came `row_min_ms` (5 s) later and 18 of 200 nodes counted exactly 15 s after a release
/// (flat zones: 58), at 2.5 s 195 of 200, for slightly fewer bytes (fewer row syncs).
const GROUP_ROW_MIN_DIVISOR: u64 = 2;

/// With groups, a row sync with a group mate while rows are on their way at most every this
/// many rounds (`FleetView::group_sync_due`): at 100k, 1-2 of 200 nodes still held stale zone
/// rows of their group 19 s after a release without it, none with it (+10% bytes).
const GROUP_SYNC_ROUNDS: u64 = 4;

/// Zone mates remembered beside the table (a newcomer needs one to start its zone syncs).
const MATES_CAP: usize = 8;

/// A row counting twice the members outranks one issued up to 16 steps later.
pub const ROW_FULLNESS_STEP_MS: u64 = 10_000;

/// log2(members) in 1/16 steps, in integers (every node must compute the same rank): the
/// integer part from the highest bit, the fraction from the next four bits. Non-decreasing.
pub fn fullness_steps(members: u32) -> u64 {
    if members == 0 {
        return 0;
    }
    let b = 31 - members.leading_zeros();
    let frac = if b >= 4 {
        (members >> (b - 4)) & 15
    } else {
        (members << (4 - b)) & 15
    };
    (b as u64) * 16 + frac as u64
}

/// The order of rows of one zone: issue time plus a bonus for fullness (see the module doc).
pub fn row_rank<P>(row: &ZoneRow<P>) -> u64 {
    row.issued_ms
        .saturating_add(fullness_steps(row.members) * ROW_FULLNESS_STEP_MS)
}

/// Why a fleet view cannot be trusted to show the whole fleet yet (rollouts do not advance on
/// it): see [`FleetView::partial`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    /// No summary row is held for some zone.
    RowsMissing,
    /// A connected neighbour of the own zone is missing from the zone table.
    NeighbourMissing,
    /// The zone table counts far fewer members than the zone's row from another issuer says.
    ZoneTableShort,
    /// A zone (the own table or a row) counts far fewer nodes than the typical zone, or fewer
    /// than the peers this node knows in it.
    ZoneSparse,
}

fn entry_print<P: PeerId>(p: &P, issued: u64) -> u64 {
    splitmix64(p.stable_hash() ^ issued.rotate_left(17))
}

impl<P: PeerId> FleetView<P> {
    pub fn new(cfg: &Config, me: P) -> Self {
        let zone_bits = cfg.zone_bits;
        let group_bits = cfg.group_bits.min(zone_bits);
        FleetView {
            zone_bits,
            group_bits,
            grp: (group_bits > 0).then(|| {
                Box::new(GroupState {
                    print: 0,
                    mates: Vec::new(),
                    leader: None,
                    last: (0, Vec::new()),
                    quiet: 0,
                    waits: 0,
                    foreign: BTreeMap::new(),
                    synced_round: 0,
                })
            }),
            my_zone: zone_of(zone_bits, &me),
            me,
            zone: BTreeMap::new(),
            notable: BTreeMap::new(),
            evidence: BTreeMap::new(),
            rows: BTreeMap::new(),
            ranks: Vec::new(),
            hot: Vec::new(),
            fingerprint: 0,
            zone_ids: Vec::new(),
            rows_print: 0,
            min_hash: u64::MAX,
            mates: Vec::new(),
            table_len: 0,
            quiet_rounds: 0,
            seen: 0,
            settle_waits: 0,
            last_counts: Vec::new(),
            counts_quiet: 0,
            count_waits: 0,
        }
    }

    pub fn zone_of(&self, p: &P) -> u32 {
        zone_of(self.zone_bits, p)
    }

    pub fn group_bits(&self) -> u8 {
        self.group_bits
    }

    /// Whether to sync rows with `p` although rows are on their way (see `Node`'s digest
    /// handling): with groups, for a peer of the own group, at most once per
    /// [`GROUP_SYNC_ROUNDS`] rounds; never without groups.
    pub fn group_sync_due(&mut self, p: &P, round: u64) -> bool {
        let same = self.same_group(p);
        let Some(g) = self.grp.as_mut() else {
            return false;
        };
        if !same || round < g.synced_round + GROUP_SYNC_ROUNDS {
            return false;
        }
        g.synced_round = round;
        true
    }

    /// The own group (0 without groups).
    pub fn my_group(&self) -> u32 {
        self.group_of_zone(self.my_zone)
    }

    /// Zone rows of other groups fetched for a wave probe (`Node::probe_stalls`), by group;
    /// None without groups.
    pub fn foreign(&self) -> Option<&BTreeMap<u32, Foreign<P>>> {
        self.grp.as_ref().map(|g| &g.foreign)
    }

    pub fn foreign_mut(&mut self) -> Option<&mut BTreeMap<u32, Foreign<P>>> {
        self.grp.as_mut().map(|g| &mut g.foreign)
    }

    pub fn group_of(&self, p: &P) -> u32 {
        group_of(self.group_bits, p)
    }

    /// The group of zone `z` (0 without groups).
    pub fn group_of_zone(&self, z: u32) -> u32 {
        if self.group_bits == 0 {
            0
        } else {
            z >> (self.zone_bits - self.group_bits)
        }
    }

    /// Whether `key` names a group row (not a zone row).
    pub fn is_group_key(&self, key: u32) -> bool {
        self.group_bits > 0 && key & GROUP_FLAG != 0
    }

    /// The key of the own group's row.
    pub fn my_group_key(&self) -> u32 {
        GROUP_FLAG | self.my_group()
    }

    /// Whether `p` belongs to the own group (always, without groups): such a peer holds the
    /// same zone rows, and exchanges them with this node.
    pub fn same_group(&self, p: &P) -> bool {
        self.group_bits == 0 || self.group_of(p) == self.my_group()
    }

    /// The zones of group `g`.
    pub fn zones_of_group(&self, g: u32) -> std::ops::Range<u32> {
        let per = 1u32 << (self.zone_bits - self.group_bits);
        g * per..(g + 1) * per
    }

    /// Whether a row keyed `key` is one this node holds: a zone of the own group, or a group.
    fn holds_key(&self, key: u32) -> bool {
        if self.is_group_key(key) {
            (key & !GROUP_FLAG) >> self.group_bits == 0
        } else {
            ((key as u64) >> self.zone_bits == 0 || self.zone_bits >= 32)
                && self.group_of_zone(key) == self.my_group()
        }
    }

    /// The index of `key` in `ranks`: zones first, then groups.
    fn rank_index(&self, key: u32) -> usize {
        if self.is_group_key(key) {
            self.zone_slots() + (key & !GROUP_FLAG) as usize
        } else {
            // (A zone of another group lands past the end: held by no node of this one.)
            key.wrapping_sub(self.first_zone()) as usize
        }
    }

    /// Zones with a slot in `ranks`: the own group's zones (every zone without groups). With
    /// one slot per zone of the fleet, a node at 100k kept 1,056 slots (8 KB) for the 64 rows
    /// it holds, and walked them all for every row sync and print compared.
    fn zone_slots(&self) -> usize {
        1usize << (self.zone_bits - self.group_bits)
    }

    /// The own group's first zone (0 without groups): its slot is the first.
    fn first_zone(&self) -> u32 {
        self.zones_of_group(self.my_group()).start
    }

    /// The rows print as a peer `p` holds it: every row for a peer of the own group, the
    /// group rows alone for a peer of another.
    pub fn rows_print_for(&self, p: &P) -> u64 {
        match &self.grp {
            Some(g) if !self.same_group(p) => g.print,
            _ => self.rows_print,
        }
    }

    /// `rows_print` and `group_print` with the row of `key` at `rank` added or taken out.
    fn toggle_print(&mut self, key: u32, rank: u64) {
        let h = row_print(key, rank);
        self.rows_print ^= h;
        if self.is_group_key(key) {
            if let Some(g) = &mut self.grp {
                g.print ^= h;
            }
        }
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The newest status known for `p` (own zone or notable).
    pub fn status(&self, p: &P) -> Option<&Arc<SignedStatus<P>>> {
        self.zone
            .get(p)
            .map(|(_, s)| s)
            .or_else(|| self.notable.get(p))
    }

    /// The issue time of [`FleetView::status`], read without touching the status when it is
    /// of the own zone.
    pub fn status_issued(&self, p: &P) -> Option<u64> {
        match self.zone.get(p) {
            Some((t, _)) => Some(*t),
            None => self.notable.get(p).map(|s| s.body.issued_ms),
        }
    }

    /// Keep `s` as halt evidence if it is some (see [`FleetView::evidence`]); true when new.
    pub fn add_evidence(&mut self, cfg: &Config, s: &Arc<SignedStatus<P>>) -> bool {
        if !is_evidence(s) {
            return false;
        }
        let node = &s.body.node;
        if let Some(old) = self.evidence.get(node) {
            if old.body.issued_ms >= s.body.issued_ms {
                return false;
            }
        } else if self.evidence.len() >= cfg.notable_cap {
            let (oldest, t) = self
                .evidence
                .iter()
                .map(|(p, e)| (p.clone(), e.body.issued_ms))
                .min_by_key(|(_, t)| *t)
                .expect("cap > 0");
            if t >= s.body.issued_ms {
                return false;
            }
            self.evidence.remove(&oldest);
        }
        self.evidence.insert(node.clone(), s.clone());
        true
    }

    /// True when `s` would be new evidence here (so an older status is still worth checking).
    pub fn wants_evidence(&self, s: &SignedStatus<P>) -> bool {
        is_evidence(s)
            && self
                .evidence
                .get(&s.body.node)
                .is_none_or(|e| e.body.issued_ms < s.body.issued_ms)
    }

    /// Insert an already verified status; true when it was news.
    pub fn insert(&mut self, cfg: &Config, s: Arc<SignedStatus<P>>) -> bool {
        self.add_evidence(cfg, &s);
        let node = s.body.node.clone();
        let issued = s.body.issued_ms;
        if self.zone_of(&node) == self.my_zone {
            match self.zone.get(&node) {
                Some((old, _)) if *old >= issued => return false,
                Some((old, _)) => self.fingerprint ^= entry_print(&node, *old),
                None => {}
            }
            self.fingerprint ^= entry_print(&node, issued);
            self.min_hash = self.min_hash.min(node.stable_hash());
            if self.zone.insert(node.clone(), (issued, s)).is_none() && node != self.me {
                self.mates.retain(|q| *q != node);
                self.zone_ids.push(node);
            }
            return true;
        }
        match self.notable.get(&node) {
            Some(old) if old.body.issued_ms >= issued => return false,
            _ => {}
        }
        if !s.body.is_notable() {
            // Recovered: it no longer needs a place in the bounded set.
            return self.notable.remove(&node).is_some();
        }
        if self.notable.len() >= cfg.notable_cap && !self.notable.contains_key(&node) {
            let (oldest, oldest_issued) = self
                .notable
                .iter()
                .map(|(p, s)| (p.clone(), s.body.issued_ms))
                .min_by_key(|(_, t)| *t)
                .expect("cap > 0");
            if oldest_issued >= issued {
                return false;
            }
            self.notable.remove(&oldest);
        }
        self.notable.insert(node, s);
        true
    }

    /// Drop everything held about `p` (its admission was revoked), the rows it issued
    /// included (peers would refuse them now); true when something was.
    pub fn forget(&mut self, p: &P) -> bool {
        self.mates.retain(|q| q != p);
        let mut found = self.notable.remove(p).is_some();
        let issued: Vec<u32> = self
            .rows
            .values()
            .filter(|r| r.issuer == *p)
            .map(|r| r.zone)
            .collect();
        for z in issued {
            if let Some(r) = self.rows.remove(&z) {
                found = true;
                self.toggle_print(r.zone, row_rank(&r));
                self.hot.retain(|h| h.0 != z);
            }
        }
        self.recompute_leader();
        if *p != self.me {
            if let Some((old, _)) = self.zone.remove(p) {
                found = true;
                self.fingerprint ^= entry_print(p, old);
                self.zone_ids.retain(|q| q != p);
                self.min_hash = self
                    .zone
                    .keys()
                    .map(|q| q.stable_hash())
                    .min()
                    .unwrap_or(u64::MAX);
            }
        }
        found
    }

    /// Entries of the zone table, for a zone sync.
    pub fn zone_entries(&self) -> Vec<(P, u64)> {
        self.zone
            .iter()
            .map(|(p, (t, _))| (p.clone(), *t))
            .collect()
    }

    /// Against a peer's zone entries in key order: our statuses that are newer or that it
    /// lacks (to push), and the members whose status it has newer or we lack (to want).
    pub fn zone_diff(&self, theirs: &[(P, u64)]) -> (Vec<Arc<SignedStatus<P>>>, Vec<P>) {
        use std::cmp::Ordering;
        let mut push = Vec::new();
        let mut want = Vec::new();
        let mut mine = self.zone.iter().peekable();
        let mut it = theirs.iter().peekable();
        loop {
            match (mine.peek(), it.peek()) {
                (None, None) => break,
                (Some((_, (_, s))), None) => {
                    push.push(s.clone());
                    mine.next();
                }
                (None, Some((q, _))) => {
                    want.push(q.clone());
                    it.next();
                }
                (Some((p, (issued, s))), Some((q, t))) => match (*p).cmp(q) {
                    Ordering::Less => {
                        push.push(s.clone());
                        mine.next();
                    }
                    Ordering::Greater => {
                        want.push(q.clone());
                        it.next();
                    }
                    Ordering::Equal => {
                        if t < issued {
                            push.push(s.clone());
                        } else if issued < t {
                            want.push(q.clone());
                        }
                        mine.next();
                        it.next();
                    }
                },
            }
        }
        (push, want)
    }

    /// `p` was seen on the network: remember it when it is a member of the own zone that the
    /// table lacks (at most [`MATES_CAP`], the newest kept).
    pub fn learn(&mut self, p: &P) {
        self.seen |= 1 << (p.stable_hash() & 63);
        let zone = self.zone_of(p);
        if zone != self.my_zone {
            // With groups, a member of the own group (of another zone) is a partner for the
            // group's zone rows. (This runs for every peer id seen: the group state, a pointer
            // away, is touched only for those.)
            if self.group_bits > 0 && self.group_of_zone(zone) == self.my_group() {
                if let Some(g) = self.grp.as_mut().filter(|g| !g.mates.contains(p)) {
                    if g.mates.len() >= MATES_CAP {
                        // One of them in place of another, drawn by the newcomer's hash.
                        let i = (p.stable_hash() % MATES_CAP as u64) as usize;
                        g.mates[i] = p.clone();
                    } else {
                        g.mates.push(p.clone());
                    }
                }
            }
            return;
        }
        if *p == self.me || self.zone.contains_key(p) || self.mates.contains(p) {
            return;
        }
        if self.mates.len() >= MATES_CAP {
            self.mates.remove(0);
        }
        self.mates.push(p.clone());
    }

    /// Members to sync with besides the zone table: the contacts of the own zone's row, the
    /// zone mates seen on the network, and those of `neighbours` (the membership views) that
    /// fall in the own zone.
    pub fn zone_contacts<'a>(&self, neighbours: impl Iterator<Item = &'a P>) -> Vec<P> {
        let mut v: Vec<P> = self.mates.clone();
        for p in neighbours {
            if *p != self.me && self.zone_of(p) == self.my_zone && !v.contains(p) {
                v.push(p.clone());
            }
        }
        if let Some(row) = self.rows.get(&self.my_zone) {
            for c in &row.contacts {
                if *c != self.me && !v.contains(c) {
                    v.push(c.clone());
                }
            }
        }
        v
    }

    /// Peers of zone `z` this node knows of: the contacts of its row, and those of `known`
    /// (the membership views) in it. For a node of that zone that asks (a zone sync sent to
    /// a node of another zone).
    pub fn contacts_in<'a>(&self, z: u32, known: impl Iterator<Item = &'a P>) -> Vec<P>
    where
        P: 'a,
    {
        let mut v: Vec<P> = Vec::new();
        if let Some(row) = self.rows.get(&z) {
            v.extend(row.contacts.iter().cloned());
        }
        for p in known {
            if v.len() >= MATES_CAP {
                break;
            }
            if self.zone_of(p) == z && !v.contains(p) {
                v.push(p.clone());
            }
        }
        v.truncate(MATES_CAP);
        v
    }

    /// One random zone mate seen on the network whose status the table lacks.
    pub fn random_mate(&self, rng: &mut dyn rand_core::RngCore) -> Option<P> {
        (!self.mates.is_empty()).then(|| self.mates[super::below(rng, self.mates.len())].clone())
    }

    pub fn zone_bits(&self) -> u8 {
        self.zone_bits
    }

    /// A member of the own group outside the own zone, to exchange the group's zone rows with
    /// (None without groups): half the time one seen on the network, else a contact of the
    /// row of a random zone of the group; at worst a member of the own zone.
    pub fn random_group_mate(&self, rng: &mut dyn rand_core::RngCore) -> Option<P> {
        let mates = &self.grp.as_ref()?.mates;
        if !mates.is_empty() && super::below(rng, 2) == 0 {
            return Some(mates[super::below(rng, mates.len())].clone());
        }
        let zones = self.zones_of_group(self.my_group());
        let z = zones.start + super::below(rng, zones.len()) as u32;
        if z != self.my_zone {
            if let Some(r) = self.rows.get(&z) {
                let n = r.contacts.len() + 1;
                let i = super::below(rng, n);
                let p = r.contacts.get(i).unwrap_or(&r.issuer);
                if *p != self.me {
                    return Some(p.clone());
                }
            }
        }
        if !mates.is_empty() {
            return Some(mates[super::below(rng, mates.len())].clone());
        }
        self.random_member(rng)
    }

    /// One random member of the own zone other than self, without building a list.
    pub fn random_member(&self, rng: &mut dyn rand_core::RngCore) -> Option<P> {
        (!self.zone_ids.is_empty())
            .then(|| self.zone_ids[super::below(rng, self.zone_ids.len())].clone())
    }

    /// Drop statuses whose node has been silent longer than the status TTL.
    pub fn expire(&mut self, cfg: &Config, wall_ms: u64) {
        let cutoff = wall_ms.saturating_sub(cfg.status_ttl_ms);
        let me = self.me.clone();
        let stale: Vec<(P, u64)> = self
            .zone
            .iter()
            .filter(|(p, (t, _))| *t < cutoff && **p != me)
            .map(|(p, (t, _))| (p.clone(), *t))
            .collect();
        for (p, issued) in stale {
            self.fingerprint ^= entry_print(&p, issued);
            self.zone.remove(&p);
            self.zone_ids.retain(|q| q != &p);
        }
        self.min_hash = self
            .zone
            .keys()
            .map(|p| p.stable_hash())
            .min()
            .unwrap_or(u64::MAX);
        self.notable.retain(|_, s| s.body.issued_ms >= cutoff);
        self.evidence.retain(|_, s| s.body.issued_ms >= cutoff);
        let stale: Vec<u32> = self
            .rows
            .values()
            .filter(|r| r.issued_ms < cutoff)
            .map(|r| r.zone)
            .collect();
        for z in stale {
            if let Some(r) = self.rows.remove(&z) {
                self.toggle_print(r.zone, row_rank(&r));
                let i = self.rank_index(z);
                if let Some(k) = self.ranks.get_mut(i) {
                    *k = 0;
                }
            }
        }
        self.recompute_leader();
    }

    /// This zone's counts, computed from the zone table.
    pub fn own_counts(&self) -> Vec<Count> {
        // Keyed by the channel's name borrowed (the same order as the owned string): one
        // string is cloned per count, not per status (this runs every round while a
        // rollout is judged, over the whole zone table).
        type Key<'a> = (&'a str, u64, ApplyState, bool, u64, u8);
        let mut m: BTreeMap<Key, u32> = BTreeMap::new();
        for (_, s) in self.zone.values() {
            for c in &s.body.channels {
                *m.entry((
                    c.channel.as_str(),
                    c.version,
                    c.state,
                    s.body.healthy,
                    c.target,
                    c.wave,
                ))
                .or_default() += 1;
            }
        }
        m.into_iter()
            .map(
                |((channel, version, state, healthy, target, wave), n)| Count {
                    channel: channel.to_string(),
                    version,
                    state,
                    healthy,
                    target,
                    wave,
                    n,
                },
            )
            .collect()
    }

    fn is_leader(&self) -> bool {
        self.min_hash >= self.me.stable_hash()
    }

    /// Once per round: the zone leader re-issues its zone's row when it changed or aged,
    /// signed with `key` (this node's key), with `cert` (its certificate, admitted fleets).
    /// Returns the row issued, if any.
    pub fn maybe_issue_row(
        &mut self,
        cfg: &Config,
        wall_ms: u64,
        contacts: Vec<P>,
        key: &ed25519_dalek::SigningKey,
        cert: Option<Arc<Vec<u8>>>,
    ) -> Option<Arc<ZoneRow<P>>> {
        if self.zone_bits == 0 {
            return None;
        }
        if self.zone.len() > self.table_len as usize {
            self.quiet_rounds = 0;
        } else {
            self.quiet_rounds = self.quiet_rounds.saturating_add(1);
        }
        self.table_len = self.zone.len() as u32;
        if !self.is_leader() {
            return None;
        }
        let counts = self.own_counts();
        if counts != self.last_counts {
            self.counts_quiet = 0;
            self.last_counts = counts.clone();
        } else {
            self.counts_quiet = self.counts_quiet.saturating_add(1);
        }
        if let Some(old) = self.rows.get(&self.my_zone) {
            if wall_ms.saturating_sub(old.issued_ms) < cfg.row_min_ms {
                return None;
            }
        }
        let members = self.zone.len() as u32;
        let many_seen = self.seen.count_ones() as usize >= FEW_MEMBERS;
        if self.zone.len() < FEW_MEMBERS && many_seen && self.quiet_rounds < ROW_SETTLE_MAX {
            return None;
        }
        let row = ZoneRow {
            zone: self.my_zone,
            issued_ms: wall_ms,
            issuer: self.me.clone(),
            members,
            counts,
            contacts,
            sig: Vec::new(),
            cert,
        };
        if let Some(old) = self.rows.get(&self.my_zone) {
            let fresh = wall_ms.saturating_sub(old.issued_ms) < cfg.row_refresh_ms;
            if fresh && old.counts == row.counts && old.members == members {
                return None;
            }
            if old.issued_ms >= wall_ms {
                return None;
            }
            // A row that would not outrank the one held (a fuller one, from the real leader
            // or from this node before a restart) says less than it: this table is partial.
            // Wait until it fills, or until the held row is old enough to be outranked.
            if row_rank(&row) <= row_rank(old) {
                return None;
            }
        }
        let resized = self
            .rows
            .get(&self.my_zone)
            .is_none_or(|old| old.members != members);
        if resized && self.quiet_rounds < ROW_SETTLE_ROUNDS && self.settle_waits < ROW_SETTLE_MAX {
            self.settle_waits += 1;
            return None;
        }
        self.settle_waits = 0;
        // (A resized row waited above; the counts change with the members anyway.)
        let recounted = self
            .rows
            .get(&self.my_zone)
            .is_some_and(|old| old.members == members && old.counts != row.counts);
        if recounted
            && self.counts_quiet < ROW_COUNTS_SETTLE_ROUNDS
            && self.count_waits < ROW_COUNTS_SETTLE_MAX
        {
            self.count_waits += 1;
            return None;
        }
        self.count_waits = 0;
        Some(self.sign_and_hold(row, key, cfg))
    }

    /// A row this node issues (of its zone or its group): signed, held, and named in the
    /// next digests.
    fn sign_and_hold(
        &mut self,
        row: ZoneRow<P>,
        key: &ed25519_dalek::SigningKey,
        cfg: &Config,
    ) -> Arc<ZoneRow<P>> {
        let row = Arc::new(row.sign(key));
        self.put_row(row.clone());
        self.make_hot(row.zone, row_rank(&row), cfg);
        row
    }

    /// The leader of the own group, as this node sees it: the issuer with the lowest id hash
    /// among the zone rows held for the group (every member agrees once its rows converged).
    pub fn group_leader(&self) -> Option<&P> {
        self.grp.as_ref()?.leader.as_ref()
    }

    /// Find the group's leader again (a zone row of the group came or went).
    fn recompute_leader(&mut self) {
        if self.grp.is_none() {
            return;
        }
        let leader = self
            .rows
            .range(self.zones_of_group(self.my_group()))
            .map(|(_, r)| &r.issuer)
            .min_by_key(|p| p.stable_hash())
            .cloned();
        if let Some(g) = self.grp.as_mut() {
            g.leader = leader;
        }
    }

    /// The own group's aggregate: members and counts summed over the zone rows held for it.
    fn group_aggregate(&self) -> (u32, Vec<Count>, usize) {
        type Key = (String, u64, ApplyState, bool, u64, u8);
        let mut m: BTreeMap<Key, u32> = BTreeMap::new();
        let mut members = 0u32;
        let mut zones = 0;
        for (_, r) in self.rows.range(self.zones_of_group(self.my_group())) {
            zones += 1;
            members = members.saturating_add(r.members);
            for c in &r.counts {
                let k = (
                    c.channel.clone(),
                    c.version,
                    c.state,
                    c.healthy,
                    c.target,
                    c.wave,
                );
                let e = m.entry(k).or_default();
                *e = e.saturating_add(c.n);
            }
        }
        let counts = m
            .into_iter()
            .map(
                |((channel, version, state, healthy, target, wave), n)| Count {
                    channel,
                    version,
                    state,
                    healthy,
                    target,
                    wave,
                    n,
                },
            )
            .collect();
        (members, counts, zones)
    }

    /// Once per round, with groups: the group's leader ([`FleetView::group_leader`], who
    /// issued its own zone's row) re-issues the group's row when the aggregate of its zone
    /// rows changed or aged, under the zone rows' rules: at most every `row_min_ms`, only
    /// once the aggregate held still for a round and every zone of the group has a row (at
    /// most [`ROW_SETTLE_MAX`] rounds of waiting), and only a row that outranks the one held.
    /// Returns the row issued, if any.
    pub fn maybe_issue_group_row(
        &mut self,
        cfg: &Config,
        wall_ms: u64,
        key: &ed25519_dalek::SigningKey,
        cert: Option<Arc<Vec<u8>>>,
    ) -> Option<Arc<ZoneRow<P>>> {
        // Only the leader sums the rows (every round: the sum's rounds of quiet count).
        if self.group_leader() != Some(&self.me) {
            return None;
        }
        let (members, counts, zones) = self.group_aggregate();
        let g = self.grp.as_mut()?;
        if (members, &counts) != (g.last.0, &g.last.1) {
            g.quiet = 0;
            g.last = (members, counts.clone());
        } else {
            g.quiet = g.quiet.saturating_add(1);
        }
        let gk = self.my_group_key();
        // A sum of many other members (zone rows re-issued as a booting fleet's tables fill)
        // waits as a zone's row of other members does; a sum of other counts alone (a release)
        // follows the last row sooner (see GROUP_ROW_MIN_DIVISOR).
        // (By more than 1/32: one status more or less in the group is a count, not a boot.)
        let resized = self
            .rows
            .get(&gk)
            .is_none_or(|old| old.members.abs_diff(members) * 32 > old.members);
        if let Some(old) = self.rows.get(&gk) {
            let min = if resized {
                cfg.row_min_ms
            } else {
                cfg.row_min_ms / GROUP_ROW_MIN_DIVISOR
            };
            if wall_ms.saturating_sub(old.issued_ms) < min || old.issued_ms >= wall_ms {
                return None;
            }
            let fresh = wall_ms.saturating_sub(old.issued_ms) < cfg.row_refresh_ms;
            if fresh && old.counts == counts && old.members == members {
                return None;
            }
        }
        // A few members of the group: this node and the issuers of two other zone rows.
        let mut contacts = vec![self.me.clone()];
        contacts.extend(
            self.rows
                .range(self.zones_of_group(self.my_group()))
                .map(|(_, r)| r.issuer.clone())
                .filter(|p| *p != self.me)
                .take(2),
        );
        let row = ZoneRow {
            zone: gk,
            issued_ms: wall_ms,
            issuer: self.me.clone(),
            members,
            counts,
            contacts,
            sig: Vec::new(),
            cert,
        };
        if self
            .rows
            .get(&gk)
            .is_some_and(|old| row_rank(&row) <= row_rank(old))
        {
            return None;
        }
        let complete = zones == self.zones_of_group(self.my_group()).len();
        let g = self.grp.as_mut()?;
        // Zone rows reach the leader over a few rounds after a release (each zone's statuses
        // reach its leader over 2-5 rounds, and its row waits for them): a sum that has not
        // held still for a round waits, as a zone's counts do, at most as long; one that
        // lacks a zone of the group waits longer (a booting fleet).
        let (quiet, most) = if !complete || resized {
            (ROW_SETTLE_ROUNDS, ROW_SETTLE_MAX)
        } else {
            (ROW_COUNTS_SETTLE_ROUNDS, ROW_COUNTS_SETTLE_MAX)
        };
        if (g.quiet < quiet || !complete) && g.waits < most {
            g.waits += 1;
            return None;
        }
        g.waits = 0;
        Some(self.sign_and_hold(row, key, cfg))
    }

    /// Whether `row` would replace the row held for its zone (it is of a zone that exists
    /// and outranks it, [`row_rank`]): only then is its signature worth checking.
    pub fn wants_row(&self, row: &ZoneRow<P>) -> bool {
        if !self.holds_key(row.zone) {
            return false; // no such zone, or of another group
        }
        self.held_rank(row.zone).is_none_or(|r| r < row_rank(row))
    }

    /// Whether a row of `zone` with rank `rank` (named in a digest) would replace the one
    /// held: worth asking for.
    pub fn wants_rank(&self, zone: u32, rank: u64) -> bool {
        self.holds_key(zone) && self.held_rank(zone).is_none_or(|r| r < rank)
    }

    /// The rank of the row held for zone `z`.
    fn held_rank(&self, z: u32) -> Option<u64> {
        if self.zone_bits <= 16 {
            self.ranks
                .get(self.rank_index(z))
                .and_then(|r| r.checked_sub(1))
        } else {
            self.rows.get(&z).map(|r| row_rank(r))
        }
    }

    /// A row from a peer, already verified (`Node` checks its signature and issuer); true
    /// when it outranked the one held ([`row_rank`]).
    pub fn receive_row(&mut self, cfg: &Config, row: &Arc<ZoneRow<P>>) -> bool {
        if !self.wants_row(row) {
            return false;
        }
        self.put_row(row.clone());
        self.make_hot(row.zone, row_rank(row), cfg);
        true
    }

    fn put_row(&mut self, row: Arc<ZoneRow<P>>) {
        let rank = row_rank(&row);
        if self.zone_bits <= 16 {
            if self.ranks.is_empty() {
                let groups = if self.group_bits > 0 {
                    1 << self.group_bits
                } else {
                    0
                };
                self.ranks = vec![0; self.zone_slots() + groups];
            }
            // Kept as rank + 1, so that 0 means "none".
            let i = self.rank_index(row.zone);
            self.ranks[i] = rank.saturating_add(1);
        }
        self.toggle_print(row.zone, rank);
        let leaf = self.grp.is_some() && !self.is_group_key(row.zone);
        let issuer = leaf.then(|| row.issuer.clone());
        let old = self.rows.insert(row.zone, row);
        if let Some(old) = &old {
            self.toggle_print(old.zone, row_rank(old));
        }
        if let Some(issuer) = issuer {
            self.leader_after(issuer, old.map(|o| o.issuer.clone()));
        }
    }

    /// The group's leader once a zone row of the group from `issuer` replaced one from `was`:
    /// the new issuer if it ranks lower, the old leader if it stays, else found again among
    /// every zone row of the group ([`FleetView::recompute_leader`], which was ~2% of a 100k
    /// run when done for every row taken).
    fn leader_after(&mut self, issuer: P, was: Option<P>) {
        let Some(g) = self.grp.as_mut() else {
            return;
        };
        match &g.leader {
            Some(l) if was.as_ref() == Some(l) && *l != issuer => self.recompute_leader(),
            Some(l) if l.stable_hash() <= issuer.stable_hash() => {}
            _ => g.leader = Some(issuer),
        }
    }

    pub fn rows_print(&self) -> u64 {
        self.rows_print
    }

    /// (zone, rank) of every row held, in zone order, for a row sync.
    pub fn row_versions(&self) -> Vec<(u32, u64)> {
        self.row_versions_for(true)
    }

    /// (key, rank) of the rows a peer holds too, in key order: every row for a peer of the
    /// own group (`same_group`), the group rows alone for another.
    pub fn row_versions_for(&self, same_group: bool) -> Vec<(u32, u64)> {
        if self.zone_bits <= 16 {
            let (zones, first) = (self.zone_slots(), self.first_zone());
            let from = if same_group { 0 } else { zones };
            let mut out = Vec::with_capacity(self.rows.len());
            for (i, r) in self.ranks.iter().enumerate().skip(from) {
                if *r != 0 {
                    let key = if i >= zones {
                        GROUP_FLAG | (i - zones) as u32
                    } else {
                        first + i as u32
                    };
                    out.push((key, *r - 1));
                }
            }
            return out;
        }
        self.rows
            .values()
            .filter(|r| same_group || self.is_group_key(r.zone))
            .map(|r| (r.zone, row_rank(r)))
            .collect()
    }

    /// Rows held that outrank, or are missing from, `theirs` (zone, rank).
    pub fn rows_newer_than(&self, theirs: &[(u32, u64)]) -> Vec<Arc<ZoneRow<P>>> {
        self.rows_newer_for(theirs, true)
    }

    /// [`FleetView::rows_newer_than`] for a peer of the own group (`same_group`) or of
    /// another, which holds the group rows alone.
    pub fn rows_newer_for(&self, theirs: &[(u32, u64)], same_group: bool) -> Vec<Arc<ZoneRow<P>>> {
        if !theirs.windows(2).all(|w| w[0].0 < w[1].0) {
            // Not in zone order (ours always are): look each one up.
            let theirs: BTreeMap<u32, u64> = theirs.iter().copied().collect();
            return self
                .rows
                .values()
                .filter(|r| same_group || self.is_group_key(r.zone))
                .filter(|r| theirs.get(&r.zone).is_none_or(|t| *t < row_rank(r)))
                .cloned()
                .collect();
        }
        // Both lists in zone order: one merge walk over (zone, rank), and the rows themselves
        // only for those that are newer.
        let mine = self.row_versions_for(same_group);
        let mut out = Vec::new();
        let mut j = 0;
        for (zone, rank) in mine {
            while j < theirs.len() && theirs[j].0 < zone {
                j += 1;
            }
            let newer = match theirs.get(j) {
                Some((z, t)) if *z == zone => *t < rank,
                _ => true,
            };
            if newer {
                if let Some(r) = self.rows.get(&zone) {
                    out.push(r.clone());
                }
            }
        }
        out
    }

    /// No row rumor is being spread.
    pub fn hot_is_empty(&self) -> bool {
        self.hot.is_empty()
    }

    /// (zone, rank) of the rows to name in this digest (each hot row in `row_hot_rounds`).
    pub fn take_hot(&mut self, cfg: &Config) -> Vec<(u32, u64)> {
        self.take_hot_for(cfg, true)
    }

    /// [`FleetView::take_hot`] for a digest to a peer of the own group (`same_group`), or of
    /// another: that one is named only the group rows (it holds no zone rows of this group),
    /// and the zone rows stay hot for the next peer of the group.
    pub fn take_hot_for(&mut self, cfg: &Config, same_group: bool) -> Vec<(u32, u64)> {
        let grouped = self.group_bits > 0;
        let mut out = Vec::with_capacity(self.hot.len().min(cfg.rows_per_message));
        let mut spent = false;
        for h in &mut self.hot {
            if out.len() >= cfg.rows_per_message {
                break;
            }
            if !(same_group || grouped && h.0 & GROUP_FLAG != 0) {
                continue;
            }
            out.push((h.0, h.1));
            h.2 = h.2.saturating_sub(1);
            spent |= h.2 == 0;
        }
        if spent {
            self.hot.retain(|h| h.2 > 0);
        }
        out
    }

    /// Name the row of `zone` (rank `rank`) in the next `row_hot_rounds` digests.
    fn make_hot(&mut self, zone: u32, rank: u64, cfg: &Config) {
        match self.hot.iter_mut().find(|h| h.0 == zone) {
            Some(h) => *h = (zone, rank, cfg.row_hot_rounds),
            None => self.hot.push((zone, rank, cfg.row_hot_rounds)),
        }
    }

    /// Exact counts once converged: the own zone from its table, other zones from rows.
    pub fn counts(&self) -> ChannelCounts {
        let mut out = ChannelCounts::default();
        let mut add = |counts: &[Count], members: u32| {
            out.nodes += members as u64;
            for c in counts {
                *out.by_channel
                    .entry(c.channel.clone())
                    .or_default()
                    .entry((c.version, c.state, c.healthy))
                    .or_default() += c.n as u64;
                let w = out
                    .by_wave
                    .entry((c.channel.clone(), c.target))
                    .or_default()
                    .entry(c.wave)
                    .or_default();
                let n = c.n as u64;
                w.0 += n;
                if c.done() {
                    w.1 += n;
                    if c.healthy {
                        w.2 += n;
                    }
                }
            }
        };
        add(&self.own_counts(), self.zone.len() as u32);
        // The own group's other zones from their rows, other groups from theirs (with groups,
        // the zone rows held are the own group's).
        let own_group = self.is_group_key(GROUP_FLAG).then(|| self.my_group_key());
        for (z, row) in &self.rows {
            if *z != self.my_zone && Some(*z) != own_group {
                add(&row.counts, row.members);
            }
        }
        out
    }

    /// Whether this view may be missing part of the fleet, and why (None: it looks whole).
    /// Rollouts advance only on a whole-looking view (`node.rs`, `consider_rollout`): a node
    /// that just restarted, or whose zone sync or rows lag, sees too few nodes and could
    /// take waves it cannot see for complete or empty. `active` are the connected
    /// neighbours, `known` every peer of the membership views (active and passive). A view
    /// is partial when:
    /// - some zone has no row (zones are sized to hold ~128 nodes or more: none is empty);
    /// - a connected neighbour of the own zone is not in the zone table (alive, so its
    ///   status is on its way);
    /// - the zone table counts under 15/16 of the members of the own zone's row as another
    ///   node issued it (that node saw more of the zone than this one does);
    /// - a zone counts under a third of the typical zone (the upper median of the own table
    ///   and the rows' members; zones are drawn by hash, so their sizes differ little), or a
    ///   row counts fewer members than the peers this node knows in that zone.
    ///
    /// None of these proves a view whole; they catch the partial views seen in practice, and
    /// a rollout's bake also restarts when the view grows (`node.rs`).
    pub fn partial<'a>(
        &self,
        active: impl Iterator<Item = &'a P>,
        known: impl Iterator<Item = &'a P>,
    ) -> Option<Partial>
    where
        P: 'a,
    {
        self.partial_given(active, known, &BTreeMap::new())
    }

    /// [`FleetView::partial`], with the rows of the zones in `seen` set aside for their size:
    /// zone → how many members that zone's members' tables hold (the largest of at least two
    /// answers, and this node's table for its own zone), where that is well under what the
    /// zone's row claims (`Node::probe_sizes`). A row can claim any size its issuer likes (an
    /// admitted liar inflates its own zone's row to make every view look partial); its zone
    /// mates' tables, made of signed statuses, say how many there are.
    pub fn partial_given<'a>(
        &self,
        active: impl Iterator<Item = &'a P>,
        known: impl Iterator<Item = &'a P>,
        seen: &BTreeMap<u32, u32>,
    ) -> Option<Partial>
    where
        P: 'a,
    {
        let members = |r: &ZoneRow<P>| seen.get(&r.zone).copied().unwrap_or(r.members) as u64;
        for p in active {
            if self.zone_of(p) == self.my_zone && !self.zone.contains_key(p) {
                return Some(Partial::NeighbourMissing);
            }
        }
        if self.zone_bits == 0 {
            return None;
        }
        if self.group_bits > 0 {
            // Every zone of the own group and every other group has a row.
            let zones = self.zones_of_group(self.my_group());
            let (leaf, groups) = (zones.len(), 1usize << self.group_bits);
            let mine = self.my_group_key();
            let leaves = self.rows.range(zones).filter(|(z, _)| **z != self.my_zone);
            let others = self.rows.range(GROUP_FLAG..).filter(|(k, _)| **k != mine);
            if leaves.count() + 1 < leaf || others.count() + 1 < groups {
                return Some(Partial::RowsMissing);
            }
        }
        let zones = 1u64 << self.zone_bits.min(32);
        let others = self.rows.keys().filter(|z| **z != self.my_zone).count() as u64;
        if self.group_bits == 0 && others + 1 < zones {
            return Some(Partial::RowsMissing);
        }
        let table = self.zone.len() as u64;
        if let Some(own) = self.rows.get(&self.my_zone) {
            if own.issuer != self.me && table * 16 < members(own) * 15 {
                return Some(Partial::ZoneTableShort);
            }
        }
        if self.zones_sparse(seen) || self.group_bits > 0 && self.groups_sparse(seen) {
            return Some(Partial::ZoneSparse);
        }
        let mut known_in: BTreeMap<u32, u64> = BTreeMap::new();
        for p in known {
            let z = self.zone_of(p);
            if z == self.my_zone {
                continue;
            }
            // A peer of another group counts toward its group's row.
            let key = if self.same_group(p) {
                z
            } else {
                GROUP_FLAG | self.group_of(p)
            };
            *known_in.entry(key).or_default() += 1;
        }
        for (z, n) in known_in {
            if self.rows.get(&z).is_some_and(|r| (r.members as u64) < n) {
                return Some(Partial::ZoneSparse);
            }
        }
        None
    }

    /// Whether a zone (the own table or a zone row held, sizes in `seen` set aside) counts
    /// under a third of the typical zone, the upper median (`partial_given`).
    fn zones_sparse(&self, seen: &BTreeMap<u32, u32>) -> bool {
        let members = |r: &ZoneRow<P>| seen.get(&r.zone).copied().unwrap_or(r.members) as u64;
        let mut sizes: Vec<u64> = self
            .rows
            .values()
            .filter(|r| r.zone != self.my_zone && !self.is_group_key(r.zone))
            .map(|r| members(r))
            .chain([self.zone.len() as u64])
            .collect();
        sizes.sort_unstable();
        let typical = sizes[sizes.len() / 2];
        sizes[0] * 3 < typical
    }

    /// The own group's size as this node sees it: its zone table and the zone rows of the
    /// group's other zones (sizes in `seen` set aside). What a member answers when asked the
    /// size of its group (`Node::probe_sizes`).
    pub fn own_group_members(&self, seen: &BTreeMap<u32, u32>) -> u64 {
        let members = |r: &ZoneRow<P>| seen.get(&r.zone).copied().unwrap_or(r.members) as u64;
        self.zone.len() as u64
            + self
                .rows
                .range(self.zones_of_group(self.my_group()))
                .filter(|(z, _)| **z != self.my_zone)
                .map(|(_, r)| members(r))
                .sum::<u64>()
    }

    /// The same for groups: whether a group (the own one as its table and zone rows add up,
    /// the others as their rows say, sizes in `seen` set aside) counts under a third of the
    /// typical group.
    fn groups_sparse(&self, seen: &BTreeMap<u32, u32>) -> bool {
        let members = |r: &ZoneRow<P>| seen.get(&r.zone).copied().unwrap_or(r.members) as u64;
        let mine = self.my_group_key();
        let mut sizes: Vec<u64> = self
            .rows
            .range(GROUP_FLAG..)
            .filter(|(k, _)| **k != mine)
            .map(|(_, r)| members(r))
            .chain([self.own_group_members(seen)])
            .collect();
        sizes.sort_unstable();
        let typical = sizes[sizes.len() / 2];
        sizes[0] * 3 < typical
    }

    /// The zone (or group, `GROUP_FLAG | g`) whose row to check with its members when the
    /// view is partial for `why` ([`FleetView::partial_given`]): the own zone when its row
    /// (issued by another) claims more than the table holds; for a sparse zone, the zone
    /// whose row claims the most members, if that is more than the own table holds (it may
    /// be inflated, and it sets the typical size the others are measured by). When the zones
    /// look whole and the groups sparse: the group whose row claims the most members, if that
    /// is more than the own group holds (with two groups an inflated group row is the typical
    /// group, and the other looks sparse against it); or, when the own group is the largest,
    /// the own group's zone row that claims the most (an inflated zone row of the own group
    /// inflates the own group's sum, and the other groups look sparse against that). None
    /// for other reasons.
    pub fn size_suspect(&self, why: Partial, seen: &BTreeMap<u32, u32>) -> Option<u32> {
        let table = self.zone.len() as u64;
        let members = |r: &ZoneRow<P>| seen.get(&r.zone).copied().unwrap_or(r.members) as u64;
        let largest_zone = || {
            self.rows
                .values()
                .filter(|r| r.zone != self.my_zone && r.issuer != self.me)
                .filter(|r| !self.is_group_key(r.zone))
                .max_by_key(|r| members(r))
                .filter(|r| table * 16 < members(r) * 15)
                .map(|r| r.zone)
        };
        let of_groups = self.group_bits > 0 && !self.zones_sparse(seen);
        match why {
            Partial::ZoneTableShort => Some(self.my_zone),
            Partial::ZoneSparse if of_groups => {
                let own = self.own_group_members(seen);
                let mine = self.my_group_key();
                let largest = self
                    .rows
                    .range(GROUP_FLAG..)
                    .filter(|(k, _)| **k != mine)
                    .map(|(_, r)| r)
                    .max_by_key(|r| members(r));
                match largest {
                    Some(r) if members(r) > own => Some(r)
                        .filter(|r| r.issuer != self.me && own * 16 < members(r) * 15)
                        .map(|r| r.zone),
                    _ => largest_zone(),
                }
            }
            Partial::ZoneSparse => largest_zone(),
            _ => None,
        }
    }

    /// Rough bytes held, for the simulator's memory figures.
    pub fn approx_bytes(&self) -> usize {
        (self.zone.len() + self.notable.len()) * 48
            + self.rows.len() * 40
            + self.hot.len() * 16
            + self.ranks.len() * 8
    }
}

fn row_print(zone: u32, issued: u64) -> u64 {
    splitmix64(((zone as u64) << 40) ^ issued)
}

/// The group of node `p`: the top `group_bits` bits of its id hash, as its zone is the top
/// `zone_bits` (so a zone's group is the top bits of the zone number).
pub fn group_of<P: PeerId>(group_bits: u8, p: &P) -> u32 {
    zone_of(group_bits, p)
}

pub fn zone_of<P: PeerId>(zone_bits: u8, p: &P) -> u32 {
    if zone_bits == 0 {
        0
    } else {
        (p.stable_hash() >> (64 - zone_bits as u32)) as u32
    }
}

/// Unhealthy while running the version it targets on some channel: what a halt rests on.
pub fn is_evidence<P>(s: &SignedStatus<P>) -> bool {
    !s.body.healthy
        && s.body
            .channels
            .iter()
            .any(|c| c.version == c.target && c.target > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(zone: u32, issued_ms: u64, issuer: u32, members: u32) -> Arc<ZoneRow<u32>> {
        Arc::new(ZoneRow {
            zone,
            issued_ms,
            issuer,
            members,
            counts: Vec::new(),
            contacts: Vec::new(),
            sig: Vec::new(),
            cert: None,
        })
    }

    fn key0() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[3; 32])
    }

    /// Node 0's own signed status.
    fn own_status(issued: u64) -> Arc<SignedStatus<u32>> {
        let key = key0();
        Arc::new(super::super::status::StatusBody::idle(0u32, issued).sign(&key))
    }

    fn view() -> (Config, FleetView<u32>) {
        let cfg = Config {
            zone_bits: 1,
            ..Config::default()
        };
        let v = FleetView::new(&cfg, 0);
        (cfg, v)
    }

    #[test]
    fn fullness_steps_grow_with_members() {
        let steps: Vec<u64> = (0..5000).map(fullness_steps).collect();
        assert!(steps.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(fullness_steps(1), 0);
        assert_eq!(fullness_steps(2), 16);
        assert_eq!(fullness_steps(256), 128);
        assert_eq!(fullness_steps(128) + 16, fullness_steps(256));
    }

    #[test]
    fn zone_mates_seen_on_the_network_are_contacts_until_their_status_arrives() {
        let cfg = Config {
            zone_bits: 3,
            ..Config::default()
        };
        let mut v = FleetView::new(&cfg, 0u32);
        let mates: Vec<u32> = (1..5000u32)
            .filter(|p| v.zone_of(p) == v.my_zone)
            .take(MATES_CAP + 2)
            .collect();
        let stranger = (1..5000u32).find(|p| v.zone_of(p) != v.my_zone).unwrap();
        v.learn(&0);
        v.learn(&stranger);
        assert!(v.zone_contacts(std::iter::empty()).is_empty());
        for p in &mates {
            v.learn(p);
        }
        let c = v.zone_contacts(std::iter::empty());
        assert_eq!(c, mates[2..].to_vec(), "the newest {MATES_CAP} kept");
        // Once its status is in the table, a mate is a member, no longer a contact.
        v.insert(&cfg, sick_status(mates[2], 1_000, true, 3));
        assert!(!v.zone_contacts(std::iter::empty()).contains(&mates[2]));
        // Asked by a node of another zone, a node names the peers it knows there.
        let z = v.zone_of(&stranger);
        let known = [stranger, mates[0], 0];
        assert_eq!(v.contacts_in(z, known.iter()), vec![stranger]);
    }

    #[test]
    fn a_sparse_row_does_not_replace_a_fuller_recent_one() {
        let (cfg, mut v) = view();
        let t = 1_000_000;
        assert!(v.receive_row(&cfg, &row(1, t, 7, 139)));
        // A node that restarted or lost its zone sees itself alone, and leads that table.
        assert!(!v.receive_row(&cfg, &row(1, t + 5_000, 9, 1)));
        // Nor a half-full one within the leader's re-issue interval (and more).
        assert!(!v.receive_row(&cfg, &row(1, t + cfg.row_refresh_ms + 30_000, 9, 70)));
        assert_eq!(v.rows[&1].members, 139);
        // The leader's next row wins, also after a few members aged out of its table.
        assert!(v.receive_row(&cfg, &row(1, t + 5_000, 7, 139)));
        assert!(v.receive_row(&cfg, &row(1, t + 20_000, 7, 131)));
        // A fuller row wins at once, older or not: it saw more of the zone.
        assert!(v.receive_row(&cfg, &row(1, t + 19_000, 3, 160)));
        // A sparse row wins only once the fuller one is far older than the leader's
        // refresh interval (it is gone; its row would soon age out anyway).
        assert!(v.receive_row(&cfg, &row(1, t + 1_500_000, 9, 1)));
    }

    #[test]
    fn a_partial_table_issues_no_row_over_a_fuller_one() {
        let (cfg, mut v) = view();
        let t = 1_000_000;
        // Node 0's table holds only itself: it leads it. Its zone's real row is fuller.
        v.insert(&cfg, own_status(t));
        let my = v.my_zone;
        v.receive_row(&cfg, &row(my, t, 5, 150));
        v.maybe_issue_row(&cfg, t + 10_000, vec![0], &key0(), None);
        assert_eq!(v.rows[&my].issuer, 5, "a one-member table issued over 150");
        // With no row held, it does issue (nothing better is known here), once its table
        // has not grown for a while (a table of few members waits ROW_SETTLE_MAX rounds).
        let (cfg, mut w) = view();
        w.insert(&cfg, own_status(t));
        for i in 0..=ROW_SETTLE_MAX as u64 {
            w.maybe_issue_row(&cfg, t + 10_000 + i * 1_000, vec![0], &key0(), None);
        }
        assert_eq!(w.rows[&my].issuer, 0);
    }

    #[test]
    fn a_table_of_few_members_waits_longer_for_its_row() {
        // A booting fleet's tables fill over seconds; one that knows few members of its zone
        // is most likely still filling, and its row would spread before a fuller one
        // outranks it. It waits ROW_SETTLE_MAX still rounds, where a fuller one waits two.
        let t = 1_000_000;
        for few in [true, false] {
            let (cfg, mut v) = view();
            v.insert(&cfg, own_status(t));
            // It has seen many other nodes (of the other zone).
            let others: Vec<u32> = (1..1_000u32)
                .filter(|p| v.zone_of(p) != v.my_zone)
                .collect();
            others.iter().for_each(|p| v.learn(p));
            let my = v.my_zone;
            let n = if few { FEW_MEMBERS - 1 } else { FEW_MEMBERS };
            let mates: Vec<u32> = (1..100_000u32)
                .filter(|p| v.zone_of(p) == my && p.stable_hash() > 0u32.stable_hash())
                .take(n - 1)
                .collect();
            for p in &mates {
                v.insert(&cfg, sick_status(*p, t, true, 1));
            }
            assert_eq!(v.zone.len(), n);
            let mut rounds = 0;
            while !v.rows.contains_key(&my) && rounds < 2 * ROW_SETTLE_MAX {
                v.maybe_issue_row(&cfg, t + rounds as u64 * 1_000, vec![0], &key0(), None);
                rounds += 1;
            }
            let want = if few {
                ROW_SETTLE_MAX
            } else {
                ROW_SETTLE_ROUNDS
            } + 1;
            assert_eq!(rounds, want, "{n} members: a row after {rounds} rounds");
            assert_eq!(v.rows[&my].members, n as u32);
        }
        // A node that has seen fewer other nodes than that is in a small fleet, where a
        // small table may be the whole zone: it waits as any other.
        let (cfg, mut v) = view();
        v.insert(&cfg, own_status(t));
        let few: Vec<u32> = (1..1_000u32)
            .filter(|p| v.zone_of(p) != v.my_zone)
            .take(FEW_MEMBERS - 1)
            .collect();
        few.iter().for_each(|p| v.learn(p));
        for r in 0..=ROW_SETTLE_ROUNDS as u64 {
            v.maybe_issue_row(&cfg, t + r * 1_000, vec![0], &key0(), None);
        }
        assert_eq!(v.rows[&v.my_zone].members, 1);
    }

    #[test]
    fn a_row_waits_until_the_table_stops_growing_but_not_forever() {
        let (cfg, mut v) = view();
        let t = 1_000_000;
        v.insert(&cfg, own_status(t));
        let my = v.my_zone;
        // Mates that hash above node 0, so that it stays the leader; a table of enough
        // members from the start (a table of few waits longer: the test above).
        let all: Vec<u32> = (1..100_000u32)
            .filter(|p| v.zone_of(p) == my && p.stable_hash() > 0u32.stable_hash())
            .take(FEW_MEMBERS + 2 * ROW_SETTLE_MAX as usize)
            .collect();
        let (first_few, mates) = all.split_at(FEW_MEMBERS);
        for p in first_few {
            v.insert(&cfg, sick_status(*p, t, true, 1));
        }
        let base = v.zone.len() as u32;
        let mut round = 0u64;
        let mut tick = |v: &mut FleetView<u32>| {
            round += 1;
            v.maybe_issue_row(&cfg, t + round * 1_000, vec![0], &key0(), None);
        };
        // A table that grows every round issues nothing for a while…
        for p in &mates[..5] {
            v.insert(&cfg, sick_status(*p, t, true, 1));
            tick(&mut v);
        }
        assert!(!v.rows.contains_key(&my));
        // … and once it has not grown for two rounds, one row of the settled table.
        tick(&mut v);
        assert!(!v.rows.contains_key(&my));
        tick(&mut v);
        assert_eq!(v.rows[&my].members, base + 5);
        // A table that keeps growing gets a row after at most ROW_SETTLE_MAX rounds of
        // waiting (beyond the rate limit).
        let first = v.rows[&my].issued_ms;
        let mut waited = 0;
        for p in &mates[5..] {
            v.insert(&cfg, sick_status(*p, t, true, 1));
            tick(&mut v);
            if v.rows[&my].issued_ms != first {
                break;
            }
            waited += 1;
        }
        assert!(v.rows[&my].issued_ms > first, "never issued while growing");
        let limit = cfg.row_min_ms / 1_000 + ROW_SETTLE_MAX as u64;
        assert!(waited <= limit, "waited {waited} rounds");
        // A change of counts alone (members unchanged) waits one round for the counts to
        // hold still…
        let before = v.rows[&my].issued_ms;
        for _ in 0..cfg.row_min_ms / 1_000 {
            tick(&mut v);
        }
        v.insert(&cfg, sick_status(mates[0], t + 1, false, 1));
        tick(&mut v);
        assert_eq!(v.rows[&my].issued_ms, before);
        tick(&mut v);
        assert!(v.rows[&my].issued_ms > before);
        // … and counts that change every round get a row after ROW_COUNTS_SETTLE_MAX rounds.
        let before = v.rows[&my].issued_ms;
        for _ in 0..cfg.row_min_ms / 1_000 {
            tick(&mut v);
        }
        let mut waited = 0;
        // (Members already in the table, turning unhealthy one per round, then healthy.)
        for i in 0..4 * ROW_COUNTS_SETTLE_MAX as usize {
            let (p, healthy) = (mates[1 + i % 4], (i / 4) % 2 == 1);
            v.insert(&cfg, sick_status(p, t + 2 + i as u64, healthy, 1));
            tick(&mut v);
            if v.rows[&my].issued_ms != before {
                break;
            }
            waited += 1;
        }
        assert!(
            v.rows[&my].issued_ms > before,
            "never issued while counting"
        );
        assert!(waited <= ROW_COUNTS_SETTLE_MAX, "waited {waited} rounds");
    }

    #[test]
    fn a_view_missing_rows_or_much_of_a_zone_is_partial() {
        let (cfg, mut v) = view();
        let none: Vec<u32> = Vec::new();
        assert_eq!(
            v.partial(none.iter(), none.iter()),
            Some(Partial::RowsMissing)
        );
        let other = 1 - v.my_zone;
        v.receive_row(&cfg, &row(other, 1_000, 5, 150));
        // Own table of 0 against a zone of 150.
        assert_eq!(
            v.partial(none.iter(), none.iter()),
            Some(Partial::ZoneSparse)
        );
        // A neighbour of the own zone that the table lacks.
        let mate = (1..1000u32).find(|p| v.zone_of(p) == v.my_zone).unwrap();
        assert_eq!(
            v.partial([mate].iter(), none.iter()),
            Some(Partial::NeighbourMissing)
        );
        // The own zone's row from another issuer counts more members than the table.
        v.receive_row(&cfg, &row(v.my_zone, 1_000, mate, 140));
        assert_eq!(
            v.partial(none.iter(), none.iter()),
            Some(Partial::ZoneTableShort)
        );
        // Peers known in a zone whose row counts fewer.
        let (cfg, mut v) = view();
        v.insert(&cfg, own_status(1_000));
        v.receive_row(&cfg, &row(other, 1_000, 5, 1));
        assert_eq!(v.partial(none.iter(), none.iter()), None);
        let there: Vec<u32> = (1..1000u32)
            .filter(|p| v.zone_of(p) == other)
            .take(2)
            .collect();
        assert_eq!(
            v.partial(none.iter(), there.iter()),
            Some(Partial::ZoneSparse)
        );
    }

    #[test]
    fn a_row_verifies_only_as_its_issuer_signed_it_and_only_for_the_issuers_zone() {
        use crate::trust::Ed25519Check;
        let (cfg, mut v) = view();
        v.insert(&cfg, own_status(1_000));
        for i in 0..=ROW_SETTLE_MAX as u64 {
            v.maybe_issue_row(&cfg, 10_000 + i * 1_000, vec![0], &key0(), None);
        }
        let mine = v.rows[&v.my_zone].clone();
        let k = key0().verifying_key();
        assert_eq!(mine.precheck(cfg.zone_bits), Ok(()));
        assert!(
            mine.verify(&k, &Ed25519Check),
            "a row its issuer signed verifies"
        );
        // Any change to what was signed, or another key, fails.
        let mut bent = (*mine).clone();
        bent.counts.push(Count {
            channel: "app".into(),
            version: 3,
            state: ApplyState::Applied,
            healthy: true,
            target: 3,
            wave: 3,
            n: 1,
        });
        assert!(!bent.verify(&k, &Ed25519Check));
        let other = ed25519_dalek::SigningKey::from_bytes(&[4; 32]).verifying_key();
        assert!(!mine.verify(&other, &Ed25519Check));
        // Node 0 signing a row of the other zone: well signed, but not its zone to speak for.
        let forged = ZoneRow {
            zone: 1 - v.my_zone,
            ..(*mine).clone()
        }
        .sign(&key0());
        assert!(forged.verify(&k, &Ed25519Check));
        assert_eq!(
            forged.precheck(cfg.zone_bits),
            Err(RowRefusal::IssuerOutsideZone)
        );
        // A row from an older message format carries no signature.
        let old: ZoneRow<u32> = UnsignedZoneRow {
            zone: mine.zone,
            issued_ms: mine.issued_ms,
            issuer: 0,
            members: 1,
            counts: vec![],
            contacts: vec![],
        }
        .into();
        assert_eq!(old.precheck(cfg.zone_bits), Err(RowRefusal::Unsigned));
        assert!(!old.verify(&k, &Ed25519Check));
        // A signature costs 64 bytes (65 on the wire with its length).
        let unsigned = ZoneRow {
            sig: Vec::new(),
            ..(*mine).clone()
        };
        assert_eq!(
            postcard::to_allocvec(&*mine).unwrap().len(),
            postcard::to_allocvec(&unsigned).unwrap().len() + 64
        );
        // The certificate rides outside the signature (the door checks it), within its cap.
        let with_cert = ZoneRow {
            cert: Some(Arc::new(vec![1; 200])),
            ..(*mine).clone()
        };
        assert!(with_cert.verify(&k, &Ed25519Check));
        let big = ZoneRow {
            cert: Some(Arc::new(vec![1; MAX_CERT_BYTES + 1])),
            ..(*mine).clone()
        };
        assert!(!big.verify(&k, &Ed25519Check));
    }

    fn sick_status(node: u32, issued: u64, healthy: bool, version: u64) -> Arc<SignedStatus<u32>> {
        let key = ed25519_dalek::SigningKey::from_bytes(&[node as u8 + 1; 32]);
        Arc::new(
            super::super::status::StatusBody {
                node,
                issued_ms: issued,
                labels: Default::default(),
                channels: vec![super::super::status::ChannelStatus {
                    channel: "app".into(),
                    version,
                    state: if version == 3 {
                        ApplyState::Applied
                    } else {
                        ApplyState::Held
                    },
                    target: 3,
                    wave: 0,
                }],
                last_apply: None,
                drift_detected: 0,
                drift_corrected: 0,
                healthy,
                failing_checks: Vec::new(),
            }
            .sign(&key),
        )
    }

    #[test]
    fn a_sick_status_stays_evidence_after_its_node_recovers() {
        let cfg = Config::default();
        let mut v = FleetView::new(&cfg, 0u32);
        let sick = sick_status(5, 1_000, false, 3);
        let back = sick_status(5, 2_000, true, 2);
        v.insert(&cfg, sick.clone());
        v.insert(&cfg, back.clone());
        assert_eq!(v.status(&5).map(|s| s.body.issued_ms), Some(2_000));
        assert_eq!(v.evidence.get(&5), Some(&sick), "evidence kept");
        // A node that only ever saw the recovered status still takes the older sick one in.
        let mut w = FleetView::new(&cfg, 0u32);
        w.insert(&cfg, back);
        assert!(w.wants_evidence(&sick));
        assert!(w.add_evidence(&cfg, &sick));
        assert!(!w.wants_evidence(&sick), "once is enough");
        // Healthy, or not running its target: no evidence.
        assert!(!is_evidence(&sick_status(6, 1_000, true, 3)));
        assert!(!is_evidence(&sick_status(6, 1_000, false, 2)));
        // Aged out with the statuses.
        w.expire(&cfg, 1_000 + cfg.status_ttl_ms + 1);
        assert!(w.evidence.is_empty());
    }
}
