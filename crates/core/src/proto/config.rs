//! Every default and limit of the protocol in one place, each with the reason for its value.

/// Protocol parameters. [`Config::default`] suits a LAN fleet of any size; the simulator and
/// the agent override single fields from their config files.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// One gossip round: each round a node sends one digest to one random active peer
    /// (push-pull anti-entropy) and one zone sync to one member of its zone. 1 s keeps idle
    /// traffic to a few hundred bytes per second while a missed announcement is repaired
    /// within a round or two.
    pub round_ms: u64,
    /// HyParView active view: peers kept connected and flooded with announcements. 6 gives a
    /// connected overlay w.h.p. up to millions of nodes (the paper uses log10(N)+1 ≈ 5–6).
    pub active_size: usize,
    /// HyParView passive view: addresses kept to repair the active view (the paper: 30).
    pub passive_size: usize,
    /// Random-walk length of a ForwardJoin before the joiner enters an active view.
    pub active_walk: u8,
    /// Hop at which a ForwardJoin also leaves the joiner in a passive view.
    pub passive_walk: u8,
    /// Shuffle the passive view with a random walk every this many rounds.
    pub shuffle_rounds: u32,
    /// Peers carried by one shuffle (active + passive sample).
    pub shuffle_size: usize,
    /// A Neighbor request unanswered for this long has failed; try another passive peer.
    pub neighbor_timeout_ms: u64,
    /// A peer heard nothing from for this long is gone (SPEC: 10 s).
    pub peer_timeout_ms: u64,
    /// Send a Ping to an active peer we have sent nothing to for this long, so that silence
    /// means absence. A third of the peer timeout survives two lost pings.
    pub keepalive_ms: u64,
    /// A fetch unanswered for this long is retried from another peer that announced it
    /// (a LAN round trip is well under 100 ms; a 16 KiB bundle takes no longer than that).
    pub fetch_timeout_ms: u64,
    /// With a parent on the push tree, an announcement from another peer waits this long for
    /// the parent's push before fetching (a little over the worst LAN latency), so a bundle
    /// still crosses each node about once.
    pub push_grace_ms: u64,
    /// A node sends its push-tree advert at most once per this long; a change within it
    /// waits and goes out as it stands then. At start-up better roots flood in one after
    /// another and each changed a node's position: 70 adverts per node at 10,000 nodes and
    /// ~95 at 100,000 in the first two seconds (60% of their messages). A few LAN
    /// latencies: the tree settles a little later, long before any release.
    pub tree_hold_ms: u64,
    /// Zones of the fleet view: nodes whose id hashes share the top `zone_bits` bits form a
    /// zone and hold each other's full status. 0: one zone, everyone sees everyone (small
    /// fleets). Choose so that zones hold about 100–200 nodes: [`Config::zone_bits_for`].
    pub zone_bits: u8,
    /// Groups of zones, the fleet view's second level: zones whose numbers share their top
    /// `group_bits` bits (node ids whose hashes share their top `group_bits` bits) form a
    /// group. A node holds the rows of its own group's zones and one row per group (the sum
    /// of that group's zone rows, signed by a member of the group), so rows per node are
    /// `2^(zone_bits - group_bits) + 2^group_bits` instead of `2^zone_bits`. 0: no groups
    /// (every node holds every zone's row). At most `zone_bits`. [`Config::group_bits_for`].
    pub group_bits: u8,
    /// A new own status is pushed at once to this many random zone members; the zone sync of
    /// every round repairs the rest.
    pub status_fanout: usize,
    /// Full statuses of failing, drifting or unhealthy nodes outside the own zone, at most.
    pub notable_cap: usize,
    /// Notable statuses carried by one round's digest, at most.
    pub notable_per_round: usize,
    /// A status not refreshed for this long is dropped: its node is gone.
    pub status_ttl_ms: u64,
    /// A node re-signs its status at least this often, so it does not age out.
    pub status_refresh_ms: u64,
    /// A zone leader re-issues its zone's summary at least this often, even unchanged.
    pub row_refresh_ms: u64,
    /// A zone's summary is re-issued at most this often, so that a rollout sweeping through a
    /// zone costs one row update per interval, not one per node.
    pub row_min_ms: u64,
    /// A newly learned zone summary is named in this many digests (sent or answering:
    /// rumor mongering). Names are ~8 bytes and each row is fetched once, so a longer rumor
    /// costs little and leaves fewer nodes to the slower row sync: at 10,000 nodes, 6 in
    /// place of 4 made rows reach every node ~1 s sooner for +2.4% bytes.
    pub row_hot_rounds: u8,
    /// Zone summaries carried by one message, at most.
    pub rows_per_message: usize,
    /// Re-apply the current bundles this often (with ±10% jitter), to undo drift that no
    /// watch saw. `None`: never (the simulator's models set it).
    pub reapply_ms: Option<u64>,
    /// A peer that sent this many refused messages is disconnected.
    pub bad_peer_limit: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            round_ms: 1000,
            active_size: 6,
            passive_size: 30,
            active_walk: 6,
            passive_walk: 3,
            shuffle_rounds: 20,
            shuffle_size: 8,
            neighbor_timeout_ms: 1000,
            peer_timeout_ms: 10_000,
            keepalive_ms: 3_000,
            fetch_timeout_ms: 500,
            push_grace_ms: 80,
            tree_hold_ms: 100,
            zone_bits: 0,
            group_bits: 0,
            status_fanout: 3,
            notable_cap: 64,
            notable_per_round: 2,
            status_ttl_ms: 600_000,
            status_refresh_ms: 120_000,
            row_refresh_ms: 120_000,
            row_min_ms: 5_000,
            row_hot_rounds: 6,
            rows_per_message: 256,
            reapply_ms: Some(1_800_000),
            bad_peer_limit: 16,
        }
    }
}

impl Config {
    /// Zone bits for a fleet of about `nodes`: one zone up to 256 nodes, then zones of
    /// 128–256 nodes, but never more zones than about √N (at most half the bits of N), so
    /// that the rows (N/Z per node) do not outgrow the zone table (Z per node): 10,000 nodes
    /// in 64 zones of ~156. From [`GROUPS_FROM`] nodes, zones of 64–128 in groups
    /// ([`Config::group_bits_for`]): 100,000 nodes in 1,024 zones of ~98.
    pub fn zone_bits_for(nodes: usize) -> u8 {
        if nodes >= GROUPS_FROM {
            // With groups, zones of 64–128 nodes: rows grow as the root of the zone count,
            // not of N (see `group_bits_for`).
            let mut bits = 0u8;
            while bits < 24 && (nodes >> bits) > 128 {
                bits += 1;
            }
            return bits;
        }
        let mut bits = 0u8;
        while bits < 24 && (nodes >> bits) > 256 {
            bits += 1;
        }
        let half = (usize::BITS - nodes.max(1).leading_zeros() - 1) / 2;
        bits.min(half as u8)
    }
}

/// Fleets of at least this many nodes get groups ([`Config::group_bits_for`]): below it,
/// zones of √N-capped size and N/Z rows cost less than a second level (10,000 nodes: 64
/// rows, zones of 156).
pub const GROUPS_FROM: usize = 20_000;

impl Config {
    /// Group bits for a fleet of about `nodes`: none below [`GROUPS_FROM`], then half the zone
    /// bits (rounded down), so that the zone rows of one group (`2^(zone_bits-group_bits)`) and
    /// the group rows (`2^group_bits`) are about as many: at 100,000 nodes 1,024 zones of ~98
    /// in 32 groups, 32 + 32 rows per node (without groups: 256 rows, zones of ~390).
    pub fn group_bits_for(nodes: usize) -> u8 {
        if nodes < GROUPS_FROM {
            return 0;
        }
        Config::zone_bits_for(nodes) / 2
    }
}

/// Limits on what a peer may send, checked while decoding.
pub mod limits {
    /// A wire message other than a bundle is small; this bounds what one peer can make us
    /// allocate for it.
    pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
    /// Peers in one Shuffle or ShuffleReply.
    pub const MAX_PEERS_PER_MESSAGE: usize = 64;
    /// Announcements (channels) in one message.
    pub const MAX_CHANNELS: usize = 64;
    /// Statuses in one message.
    pub const MAX_STATUSES: usize = 256;
    /// Entries of a zone digest: zones are built to hold up to a few hundred nodes.
    pub const MAX_ZONE_ENTRIES: usize = 4096;
    /// Zone summary rows in one message.
    pub const MAX_ROWS: usize = 1024;
    /// Labels, channels and failing checks in one status.
    pub const MAX_STATUS_ITEMS: usize = 64;
    /// Counts in one zone summary row.
    pub const MAX_ROW_COUNTS: usize = 256;
}
