//! Bounded partial membership after HyParView (Leitão, Pereira, Rodrigues 2007).
//!
//! A node keeps a small *active* view (peers it talks to and floods announcements to) and a
//! larger *passive* view (addresses to repair the active view with). Joiners are spread by a
//! random walk; passive views are refreshed by shuffles; a silent peer is dropped after the
//! peer timeout and replaced from the passive view. Peers that failed are kept *dormant* and
//! re-tried with back-off up to 30 s, so a healed partition reconnects by itself.

use super::config::Config;
use super::message::Message;
use super::node::Action;
use super::{below, sample, PeerId};
use rand_core::RngCore;

/// Back-off bounds for re-trying a failed peer (SPEC: up to 30 s).
const DORMANT_FIRST_RETRY_MS: u64 = 1_000;
const DORMANT_MAX_RETRY_MS: u64 = 30_000;
/// Failed peers remembered for re-trying.
const DORMANT_CAP: usize = 8;
/// A node with fewer active peers than this is one failure from being cut off.
const LONELY: usize = 2;

#[derive(Debug, Clone)]
pub struct ActivePeer<P> {
    pub id: P,
    pub last_heard: u64,
    pub last_sent: u64,
}

#[derive(Debug, Clone)]
pub struct Membership<P> {
    pub me: P,
    pub active: Vec<ActivePeer<P>>,
    pub passive: Vec<P>,
    /// Neighbor requests (and our Join) sent and not yet answered: (peer, deadline).
    pending: Vec<(P, u64)>,
    /// Failed peers to re-try: (peer, next try, current back-off).
    dormant: Vec<(P, u64, u64)>,
    /// Peers that entered / left the active view since the node last looked.
    pub ups: Vec<P>,
    pub downs: Vec<P>,
    /// A full peer refused a request of ours while we had fewer than [`LONELY`] active
    /// peers: the next requests go with high priority, which a full peer does not refuse.
    /// HyParView asks with high priority only when the active view is empty, so two nodes
    /// that hold only each other, in a fleet whose other views are full, are refused by
    /// everyone for good (an island of two the simulator found at 10k nodes: each release
    /// reached it ~0.5 s after the rest). Only after a refusal: at start-up most views are
    /// not full, and a high request evicts one of the receiver's peers.
    refused: bool,
}

impl<P: PeerId> Membership<P> {
    pub fn new(me: P) -> Self {
        Membership {
            me,
            active: Vec::new(),
            passive: Vec::new(),
            pending: Vec::new(),
            dormant: Vec::new(),
            ups: Vec::new(),
            downs: Vec::new(),
            refused: false,
        }
    }

    /// Whether a request for a neighbour goes with high priority (see `refused`).
    fn high_priority(&self) -> bool {
        self.active.is_empty() || (self.refused && self.active.len() < LONELY)
    }

    pub fn is_active(&self, p: &P) -> bool {
        self.active.iter().any(|a| &a.id == p)
    }

    pub fn active_ids(&self) -> impl Iterator<Item = &P> {
        self.active.iter().map(|a| &a.id)
    }

    pub fn random_active(&self, rng: &mut dyn RngCore) -> Option<P> {
        (!self.active.is_empty()).then(|| self.active[below(rng, self.active.len())].id.clone())
    }

    pub fn random_passive(&self, rng: &mut dyn RngCore) -> Option<P> {
        (!self.passive.is_empty()).then(|| self.passive[below(rng, self.passive.len())].clone())
    }

    /// Earliest deadline of a pending request or dormant re-try.
    pub fn next_deadline(&self) -> Option<u64> {
        let p = self.pending.iter().map(|(_, d)| *d);
        let d = self.dormant.iter().map(|(_, t, _)| *t);
        p.chain(d).min()
    }

    fn send(&mut self, to: P, msg: Message<P>, now: u64, out: &mut Vec<Action<P>>) {
        if let Some(a) = self.active.iter_mut().find(|a| a.id == to) {
            a.last_sent = now;
        }
        out.push(Action::Send { to, msg });
    }

    /// Record that a message went to `to` (sent by the node itself).
    pub fn note_sent(&mut self, to: &P, now: u64) {
        if let Some(a) = self.active.iter_mut().find(|a| &a.id == to) {
            a.last_sent = now;
        }
    }

    /// Any message from `from` is a sign of life.
    pub fn heard(&mut self, from: &P, now: u64) {
        if let Some(a) = self.active.iter_mut().find(|a| &a.id == from) {
            a.last_heard = now;
        }
        if let Some(i) = self.dormant.iter().position(|(p, _, _)| p == from) {
            let (p, _, _) = self.dormant.swap_remove(i);
            self.add_passive(p);
        }
    }

    /// Join the overlay through bootstrap peers (also after a restart).
    pub fn join(&mut self, cfg: &Config, bootstrap: &[P], now: u64, out: &mut Vec<Action<P>>) {
        for p in bootstrap {
            self.add_passive(p.clone());
        }
        if let Some(first) = bootstrap.iter().find(|p| **p != self.me) {
            self.pending
                .push((first.clone(), now + cfg.neighbor_timeout_ms));
            self.send(first.clone(), Message::Join, now, out);
        }
    }

    fn add_passive(&mut self, p: P) {
        if p == self.me || self.is_active(&p) || self.passive.contains(&p) {
            return;
        }
        self.passive.push(p);
    }

    fn trim_passive(&mut self, cfg: &Config, rng: &mut dyn RngCore) {
        while self.passive.len() > cfg.passive_size {
            let i = below(rng, self.passive.len());
            self.passive.swap_remove(i);
        }
    }

    /// Put `p` into the active view, evicting a random peer when full.
    fn add_active(
        &mut self,
        cfg: &Config,
        p: P,
        now: u64,
        rng: &mut dyn RngCore,
        out: &mut Vec<Action<P>>,
    ) {
        if p == self.me || self.is_active(&p) {
            return;
        }
        if self.active.len() >= cfg.active_size {
            let i = below(rng, self.active.len());
            let evicted = self.active.swap_remove(i).id;
            self.send(
                evicted.clone(),
                Message::Disconnect { alive: true },
                now,
                out,
            );
            self.downs.push(evicted.clone());
            self.add_passive(evicted);
        }
        self.passive.retain(|q| q != &p);
        self.pending.retain(|(q, _)| q != &p);
        self.dormant.retain(|(q, _, _)| q != &p);
        self.active.push(ActivePeer {
            id: p.clone(),
            last_heard: now,
            last_sent: now,
        });
        self.ups.push(p);
        if self.active.len() >= LONELY {
            self.refused = false;
        }
        self.trim_passive(cfg, rng);
    }

    fn remove_active(&mut self, p: &P) -> bool {
        let before = self.active.len();
        self.active.retain(|a| &a.id != p);
        let removed = self.active.len() != before;
        if removed {
            self.downs.push(p.clone());
        }
        removed
    }

    fn make_dormant(&mut self, p: P, now: u64) {
        self.passive.retain(|q| q != &p);
        if let Some(d) = self.dormant.iter_mut().find(|(q, _, _)| q == &p) {
            d.2 = (d.2 * 2).min(DORMANT_MAX_RETRY_MS);
            d.1 = now + d.2;
            return;
        }
        if self.dormant.len() >= DORMANT_CAP {
            self.dormant.remove(0);
        }
        self.dormant
            .push((p, now + DORMANT_FIRST_RETRY_MS, DORMANT_FIRST_RETRY_MS));
    }

    /// Drop `p` from every view and never re-try it (its admission was revoked).
    pub fn forget(&mut self, p: &P) {
        self.remove_active(p);
        self.pending.retain(|(q, _)| q != p);
        self.dormant.retain(|(q, _, _)| q != p);
        self.passive.retain(|q| q != p);
    }

    /// The transport says the connection to `p` is gone.
    pub fn peer_down(&mut self, p: &P, now: u64) {
        self.remove_active(p);
        self.pending.retain(|(q, _)| q != p);
        self.make_dormant(p.clone(), now);
    }

    /// Handle a membership message; returns false when `msg` is not one.
    pub fn handle(
        &mut self,
        cfg: &Config,
        from: &P,
        msg: &Message<P>,
        now: u64,
        rng: &mut dyn RngCore,
        out: &mut Vec<Action<P>>,
    ) -> bool {
        match msg {
            Message::Join => {
                self.add_active(cfg, from.clone(), now, rng, out);
                self.send(from.clone(), Message::NeighborAccept, now, out);
                let others: Vec<P> = self.active_ids().filter(|p| *p != from).cloned().collect();
                for p in others {
                    let fj = Message::ForwardJoin {
                        joiner: from.clone(),
                        ttl: cfg.active_walk,
                    };
                    self.send(p, fj, now, out);
                }
            }
            Message::ForwardJoin { joiner, ttl } => {
                if *joiner == self.me {
                    return true;
                }
                let next: Vec<P> = self
                    .active_ids()
                    .filter(|p| *p != from && *p != joiner)
                    .cloned()
                    .collect();
                if *ttl == 0 || next.is_empty() || self.active.len() <= 1 {
                    if !self.is_active(joiner) && !self.pending.iter().any(|(p, _)| p == joiner) {
                        self.pending
                            .push((joiner.clone(), now + cfg.neighbor_timeout_ms));
                        self.send(joiner.clone(), Message::Neighbor { high: true }, now, out);
                    }
                } else {
                    if *ttl == cfg.passive_walk {
                        self.add_passive(joiner.clone());
                        self.trim_passive(cfg, rng);
                    }
                    let to = next[below(rng, next.len())].clone();
                    let fj = Message::ForwardJoin {
                        joiner: joiner.clone(),
                        ttl: ttl - 1,
                    };
                    self.send(to, fj, now, out);
                }
            }
            Message::Neighbor { high } => {
                if self.is_active(from) || *high || self.active.len() < cfg.active_size {
                    self.add_active(cfg, from.clone(), now, rng, out);
                    self.send(from.clone(), Message::NeighborAccept, now, out);
                } else {
                    self.add_passive(from.clone());
                    self.trim_passive(cfg, rng);
                    self.send(from.clone(), Message::Disconnect { alive: true }, now, out);
                }
            }
            Message::NeighborAccept => {
                self.pending.retain(|(q, _)| q != from);
                self.add_active(cfg, from.clone(), now, rng, out);
            }
            Message::Disconnect { alive } => {
                let asked = self.pending.iter().any(|(q, _)| q == from);
                if asked && *alive && self.active.len() < LONELY {
                    self.refused = true;
                }
                self.pending.retain(|(q, _)| q != from);
                self.remove_active(from);
                if *alive {
                    self.add_passive(from.clone());
                    self.trim_passive(cfg, rng);
                } else {
                    self.passive.retain(|q| q != from);
                }
            }
            Message::Shuffle { origin, peers, ttl } => {
                let next: Vec<P> = self
                    .active_ids()
                    .filter(|p| *p != from && *p != origin)
                    .cloned()
                    .collect();
                if *ttl > 0 && !next.is_empty() {
                    let to = next[below(rng, next.len())].clone();
                    let sh = Message::Shuffle {
                        origin: origin.clone(),
                        peers: peers.clone(),
                        ttl: ttl - 1,
                    };
                    self.send(to, sh, now, out);
                } else if *origin != self.me {
                    let reply = sample(rng, &self.passive, peers.len());
                    self.send(
                        origin.clone(),
                        Message::ShuffleReply { peers: reply },
                        now,
                        out,
                    );
                    for p in peers.iter().chain(std::iter::once(origin)) {
                        self.add_passive(p.clone());
                    }
                    self.trim_passive(cfg, rng);
                }
            }
            Message::ShuffleReply { peers } => {
                for p in peers {
                    self.add_passive(p.clone());
                }
                self.trim_passive(cfg, rng);
            }
            Message::Ping => {}
            _ => return false,
        }
        true
    }

    /// Once per round: drop silent peers, expire requests, repair, keep alive, shuffle.
    pub fn tick(
        &mut self,
        cfg: &Config,
        round: u64,
        now: u64,
        rng: &mut dyn RngCore,
        out: &mut Vec<Action<P>>,
    ) {
        let silent: Vec<P> = self
            .active
            .iter()
            .filter(|a| now.saturating_sub(a.last_heard) > cfg.peer_timeout_ms)
            .map(|a| a.id.clone())
            .collect();
        for p in silent {
            self.remove_active(&p);
            self.make_dormant(p, now);
        }
        self.expire(now);
        // Re-try dormant peers whose back-off ran out.
        let due: Vec<P> = self
            .dormant
            .iter()
            .filter(|(_, t, _)| *t <= now)
            .map(|(p, _, _)| p.clone())
            .collect();
        for p in due {
            self.make_dormant(p.clone(), now); // doubles the back-off for the next try
            if !self.pending.iter().any(|(q, _)| q == &p) {
                self.pending
                    .push((p.clone(), now + cfg.neighbor_timeout_ms));
                let high = self.high_priority();
                self.send(p, Message::Neighbor { high }, now, out);
            }
        }
        // Repair the active view from the passive view.
        let mut tries = cfg
            .active_size
            .saturating_sub(self.active.len() + self.pending.len());
        while tries > 0 {
            let candidates: Vec<P> = self
                .passive
                .iter()
                .filter(|p| !self.pending.iter().any(|(q, _)| q == *p))
                .cloned()
                .collect();
            if candidates.is_empty() {
                break;
            }
            let p = candidates[below(rng, candidates.len())].clone();
            self.pending
                .push((p.clone(), now + cfg.neighbor_timeout_ms));
            let high = self.high_priority();
            self.send(p, Message::Neighbor { high }, now, out);
            tries -= 1;
        }
        // Keep-alives.
        let quiet: Vec<P> = self
            .active
            .iter()
            .filter(|a| now.saturating_sub(a.last_sent) >= cfg.keepalive_ms)
            .map(|a| a.id.clone())
            .collect();
        for p in quiet {
            self.send(p, Message::Ping, now, out);
        }
        // Shuffle.
        if cfg.shuffle_rounds > 0 && round.is_multiple_of(cfg.shuffle_rounds as u64) {
            if let Some(to) = self.random_active(rng) {
                let ids: Vec<P> = self.active_ids().cloned().collect();
                let mut peers = sample(rng, &ids, cfg.shuffle_size / 2);
                peers.extend(sample(rng, &self.passive, cfg.shuffle_size - peers.len()));
                peers.push(self.me.clone());
                let sh = Message::Shuffle {
                    origin: self.me.clone(),
                    peers,
                    ttl: cfg.active_walk,
                };
                self.send(to, sh, now, out);
            }
        }
    }

    /// Requests whose deadline passed have failed: the peer becomes dormant.
    pub fn expire(&mut self, now: u64) {
        let failed: Vec<P> = self
            .pending
            .iter()
            .filter(|(_, d)| *d <= now)
            .map(|(p, _)| p.clone())
            .collect();
        self.pending.retain(|(_, d)| *d > now);
        for p in failed {
            self.make_dormant(p, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn requests(out: &[Action<u32>]) -> Vec<(u32, bool)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Send {
                    to,
                    msg: Message::Neighbor { high },
                } => Some((*to, *high)),
                _ => None,
            })
            .collect()
    }

    /// `m` handles `msg` from `from` at `at` (ms); what it sends in answer.
    fn deliver(
        m: &mut Membership<u32>,
        from: u32,
        msg: Message<u32>,
        at: u64,
        rng: &mut StdRng,
    ) -> Vec<Action<u32>> {
        let mut out = Vec::new();
        m.handle(&Config::default(), &from, &msg, at, rng, &mut out);
        out
    }

    fn peer(id: u32) -> ActivePeer<u32> {
        ActivePeer {
            id,
            last_heard: 0,
            last_sent: 0,
        }
    }

    /// Two nodes that hold only each other, among nodes whose active views are full: low
    /// requests are refused for ever, so once refused a lonely node asks with high
    /// priority, which a full node accepts (evicting one of its own).
    #[test]
    fn a_lonely_node_refused_by_full_peers_asks_again_with_high_priority() {
        let cfg = Config::default();
        let mut rng = StdRng::seed_from_u64(7);
        let mut a = Membership::new(0u32);
        a.active.push(peer(1));
        a.passive = (10..20).collect();

        let mut out = Vec::new();
        a.tick(&cfg, 1, 1_000, &mut rng, &mut out);
        let first = requests(&out);
        assert_eq!(first.len(), cfg.active_size - 1, "{first:?}");
        assert!(
            first.iter().all(|(_, high)| !high),
            "one peer left is not empty"
        );

        // A full peer refuses the request (it keeps the requester as a passive peer).
        let mut full = Membership::new(first[0].0);
        full.active = (100..100 + cfg.active_size as u32).map(peer).collect();
        let reply = deliver(
            &mut full,
            0,
            Message::Neighbor { high: false },
            1_010,
            &mut rng,
        );
        assert!(!full.is_active(&0));
        assert!(matches!(
            reply.as_slice(),
            [Action::Send {
                msg: Message::Disconnect { alive: true },
                ..
            }]
        ));
        deliver(
            &mut a,
            full.me,
            Message::Disconnect { alive: true },
            1_020,
            &mut rng,
        );

        // Every request of the next round goes high, and a full peer takes it.
        let mut out = Vec::new();
        a.tick(&cfg, 2, 2_000, &mut rng, &mut out);
        let second = requests(&out);
        assert!(!second.is_empty());
        assert!(second.iter().all(|(_, high)| *high), "{second:?}");
        deliver(
            &mut full,
            0,
            Message::Neighbor { high: true },
            2_010,
            &mut rng,
        );
        assert!(full.is_active(&0));
        assert_eq!(full.active.len(), cfg.active_size);

        // With two active peers it is no longer lonely: requests go low again.
        deliver(&mut a, full.me, Message::NeighborAccept, 2_020, &mut rng);
        assert_eq!(a.active.len(), 2);
        let mut out = Vec::new();
        a.tick(&cfg, 3, 3_000, &mut rng, &mut out);
        assert!(requests(&out).iter().all(|(_, high)| !high));
    }

    /// A refusal while the node still has peers enough does not raise its priority.
    #[test]
    fn a_refusal_with_peers_enough_keeps_requests_low() {
        let cfg = Config::default();
        let mut rng = StdRng::seed_from_u64(7);
        let mut a = Membership::new(0u32);
        a.active.extend([peer(1), peer(2)]);
        a.passive = (10..20).collect();
        let mut out = Vec::new();
        a.tick(&cfg, 1, 1_000, &mut rng, &mut out);
        let first = requests(&out);
        deliver(
            &mut a,
            first[0].0,
            Message::Disconnect { alive: true },
            1_020,
            &mut rng,
        );
        let mut out = Vec::new();
        a.tick(&cfg, 2, 2_000, &mut rng, &mut out);
        let second = requests(&out);
        assert!(!second.is_empty());
        assert!(second.iter().all(|(_, high)| !high), "{second:?}");
    }
}
