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
//!   its content changes, and spread as a rumor for a few rounds.
//!
//! With `zone_bits = 0` there is one zone: a small fleet has the whole table. Per node this is
//! `Z` statuses + `N/Z` rows; with zones of about √N·c nodes both stay small (see
//! ARCHITECTURE.md for measured figures).

use super::config::Config;
use super::status::{ApplyState, SignedStatus};
use super::{splitmix64, PeerId};
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

/// A zone's summary as its leader computed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneRow<P> {
    pub zone: u32,
    pub issued_ms: u64,
    pub issuer: P,
    pub members: u32,
    pub counts: Vec<Count>,
    /// A few members, so nodes of this zone can find each other.
    pub contacts: Vec<P>,
}

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
    pub my_zone: u32,
    me: P,
    /// Full statuses of the own zone, the node itself included.
    pub zone: BTreeMap<P, Arc<SignedStatus<P>>>,
    /// Full statuses of failing/drifting/unhealthy nodes of other zones, at most `notable_cap`.
    pub notable: BTreeMap<P, Arc<SignedStatus<P>>>,
    /// One summary per zone (the own zone's too, as issued by its leader).
    pub rows: BTreeMap<u32, Arc<ZoneRow<P>>>,
    /// Rows learned recently, pushed along with each round's digest: (row, rounds left).
    hot: BTreeMap<u32, (Arc<ZoneRow<P>>, u8)>,
    fingerprint: u64,
    /// XOR of a hash of (zone, issued) over `rows`: equal prints, equal row sets.
    rows_print: u64,
    /// The keys of `zone` but self, for picking a random member in O(1).
    zone_ids: Vec<P>,
    /// The lowest id hash among the keys of `zone` (u64::MAX when empty): who leads it.
    min_hash: u64,
}

fn entry_print<P: PeerId>(p: &P, issued: u64) -> u64 {
    splitmix64(p.stable_hash() ^ issued.rotate_left(17))
}

impl<P: PeerId> FleetView<P> {
    pub fn new(cfg: &Config, me: P) -> Self {
        let zone_bits = cfg.zone_bits;
        FleetView {
            zone_bits,
            my_zone: zone_of(zone_bits, &me),
            me,
            zone: BTreeMap::new(),
            notable: BTreeMap::new(),
            rows: BTreeMap::new(),
            hot: BTreeMap::new(),
            fingerprint: 0,
            zone_ids: Vec::new(),
            rows_print: 0,
            min_hash: u64::MAX,
        }
    }

    pub fn zone_of(&self, p: &P) -> u32 {
        zone_of(self.zone_bits, p)
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The newest status known for `p` (own zone or notable).
    pub fn status(&self, p: &P) -> Option<&Arc<SignedStatus<P>>> {
        self.zone.get(p).or_else(|| self.notable.get(p))
    }

    /// Insert an already verified status; true when it was news.
    pub fn insert(&mut self, cfg: &Config, s: Arc<SignedStatus<P>>) -> bool {
        let node = s.body.node.clone();
        let issued = s.body.issued_ms;
        if self.zone_of(&node) == self.my_zone {
            match self.zone.get(&node) {
                Some(old) if old.body.issued_ms >= issued => return false,
                Some(old) => self.fingerprint ^= entry_print(&node, old.body.issued_ms),
                None => {}
            }
            self.fingerprint ^= entry_print(&node, issued);
            self.min_hash = self.min_hash.min(node.stable_hash());
            if self.zone.insert(node.clone(), s).is_none() && node != self.me {
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

    /// Drop everything held about `p` (its admission was revoked); true when something was.
    pub fn forget(&mut self, p: &P) -> bool {
        let mut found = self.notable.remove(p).is_some();
        if *p != self.me {
            if let Some(old) = self.zone.remove(p) {
                found = true;
                self.fingerprint ^= entry_print(p, old.body.issued_ms);
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
            .map(|(p, s)| (p.clone(), s.body.issued_ms))
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
                (Some((_, s)), None) => {
                    push.push((*s).clone());
                    mine.next();
                }
                (None, Some((q, _))) => {
                    want.push(q.clone());
                    it.next();
                }
                (Some((p, s)), Some((q, t))) => match (*p).cmp(q) {
                    Ordering::Less => {
                        push.push((*s).clone());
                        mine.next();
                    }
                    Ordering::Greater => {
                        want.push(q.clone());
                        it.next();
                    }
                    Ordering::Equal => {
                        if *t < s.body.issued_ms {
                            push.push((*s).clone());
                        } else if s.body.issued_ms < *t {
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

    /// Members to sync with besides the zone table: the contacts of the own zone's row, and
    /// those of `neighbours` (the membership views) that fall in the own zone.
    pub fn zone_contacts<'a>(&self, neighbours: impl Iterator<Item = &'a P>) -> Vec<P> {
        let mut v: Vec<P> = Vec::new();
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
            .filter(|(p, s)| s.body.issued_ms < cutoff && **p != me)
            .map(|(p, s)| (p.clone(), s.body.issued_ms))
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
        let stale: Vec<u32> = self
            .rows
            .values()
            .filter(|r| r.issued_ms < cutoff)
            .map(|r| r.zone)
            .collect();
        for z in stale {
            if let Some(r) = self.rows.remove(&z) {
                self.rows_print ^= row_print(r.zone, r.issued_ms);
            }
        }
    }

    /// This zone's counts, computed from the zone table.
    pub fn own_counts(&self) -> Vec<Count> {
        type Key = (String, u64, ApplyState, bool, u64, u8);
        let mut m: BTreeMap<Key, u32> = BTreeMap::new();
        for s in self.zone.values() {
            for c in &s.body.channels {
                *m.entry((
                    c.channel.clone(),
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
                    channel,
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

    /// Once per round: the zone leader re-issues its zone's row when it changed or aged.
    pub fn maybe_issue_row(&mut self, cfg: &Config, wall_ms: u64, contacts: Vec<P>) {
        if self.zone_bits == 0 {
            return;
        }
        if let Some(old) = self.rows.get(&self.my_zone) {
            if wall_ms.saturating_sub(old.issued_ms) < cfg.row_min_ms {
                return;
            }
        }
        if !self.is_leader() {
            return;
        }
        let counts = self.own_counts();
        let members = self.zone.len() as u32;
        if let Some(old) = self.rows.get(&self.my_zone) {
            let fresh = wall_ms.saturating_sub(old.issued_ms) < cfg.row_refresh_ms;
            if fresh && old.counts == counts && old.members == members {
                return;
            }
            if old.issued_ms >= wall_ms {
                return;
            }
        }
        let row = Arc::new(ZoneRow {
            zone: self.my_zone,
            issued_ms: wall_ms,
            issuer: self.me.clone(),
            members,
            counts,
            contacts,
        });
        self.put_row(row.clone());
        self.hot.insert(row.zone, (row, cfg.row_hot_rounds));
    }

    /// A row from a peer; true when it was newer than the one held.
    pub fn receive_row(&mut self, cfg: &Config, row: &Arc<ZoneRow<P>>) -> bool {
        if (row.zone as u64) >> self.zone_bits != 0 && self.zone_bits < 32 {
            return false; // no such zone
        }
        match self.rows.get(&row.zone) {
            Some(old) if old.issued_ms >= row.issued_ms => false,
            _ => {
                self.put_row(row.clone());
                self.hot.insert(row.zone, (row.clone(), cfg.row_hot_rounds));
                true
            }
        }
    }

    fn put_row(&mut self, row: Arc<ZoneRow<P>>) {
        self.rows_print ^= row_print(row.zone, row.issued_ms);
        if let Some(old) = self.rows.insert(row.zone, row) {
            self.rows_print ^= row_print(old.zone, old.issued_ms);
        }
    }

    pub fn rows_print(&self) -> u64 {
        self.rows_print
    }

    /// (zone, issued) of every row held, for a row sync.
    pub fn row_versions(&self) -> Vec<(u32, u64)> {
        self.rows.values().map(|r| (r.zone, r.issued_ms)).collect()
    }

    /// Rows held that are newer than, or missing from, `theirs`.
    pub fn rows_newer_than(&self, theirs: &[(u32, u64)]) -> Vec<Arc<ZoneRow<P>>> {
        if !theirs.windows(2).all(|w| w[0].0 < w[1].0) {
            // Not in zone order (ours always are): look each one up.
            let theirs: BTreeMap<u32, u64> = theirs.iter().copied().collect();
            return self
                .rows
                .values()
                .filter(|r| theirs.get(&r.zone).is_none_or(|t| *t < r.issued_ms))
                .cloned()
                .collect();
        }
        // Both lists in zone order: one merge walk.
        let mut out = Vec::new();
        let mut j = 0;
        for r in self.rows.values() {
            while j < theirs.len() && theirs[j].0 < r.zone {
                j += 1;
            }
            let newer = match theirs.get(j) {
                Some((z, t)) if *z == r.zone => *t < r.issued_ms,
                _ => true,
            };
            if newer {
                out.push(r.clone());
            }
        }
        out
    }

    /// Rows to push this round (each hot row for `row_hot_rounds` rounds).
    pub fn take_hot(&mut self, cfg: &Config) -> Vec<Arc<ZoneRow<P>>> {
        let n = self.hot.len().min(cfg.rows_per_message);
        let out: Vec<Arc<ZoneRow<P>>> = self.hot.values().take(n).map(|(r, _)| r.clone()).collect();
        for h in self.hot.values_mut().take(n) {
            h.1 = h.1.saturating_sub(1);
        }
        self.hot.retain(|_, (_, left)| *left > 0);
        out
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
                if c.version == c.target && c.state == ApplyState::Applied {
                    w.1 += n;
                    if c.healthy {
                        w.2 += n;
                    }
                }
            }
        };
        add(&self.own_counts(), self.zone.len() as u32);
        for (z, row) in &self.rows {
            if *z != self.my_zone {
                add(&row.counts, row.members);
            }
        }
        out
    }

    /// Rough bytes held, for the simulator's memory figures.
    pub fn approx_bytes(&self) -> usize {
        (self.zone.len() + self.notable.len()) * 48 + self.rows.len() * 40 + self.hot.len() * 16
    }
}

fn row_print(zone: u32, issued: u64) -> u64 {
    splitmix64(((zone as u64) << 40) ^ issued)
}

pub fn zone_of<P: PeerId>(zone_bits: u8, p: &P) -> u32 {
    if zone_bits == 0 {
        0
    } else {
        (p.stable_hash() >> (64 - zone_bits as u32)) as u32
    }
}
