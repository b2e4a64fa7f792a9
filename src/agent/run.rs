//! The agent's main loop: one tokio task that owns the protocol core and feeds it events from
//! the network, the apply worker, the drift watch, health checks, the control socket and its
//! timers, and carries out the actions the core returns. Persist actions are written before
//! any later action is carried out, but for the messages of the same batch (see `carry_out`).

use super::admission::{self, Admission, AgentDoor, OwnCert, TrustDoc};
use super::config::{AgentConfig, POLL_INTERVAL};
use super::control::{ControlRequest, Pending};
use super::health::{CheckResult, Health};
use super::metrics::{ChannelLabel, Metrics, ResultLabel, ViewLabel};
use super::peer::{key_of, AgentPeer};
use super::transport::{self, Frame, Hello, Request, Response};
use super::worker::{drift_of, Done, Watch, Why, Worker};
use crate::state::StateDir;
use driftless_core::bundle::Bundle;
use driftless_core::proto::{Action, ApplyReason, Config as CoreConfig, Event, Message, Node, Now};
use driftless_core::VerifiedBundle;
use futures::StreamExt;
use libp2p::request_response::{self as rr, OutboundFailure};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use rand::SeedableRng;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Listen addresses remembered for peers we talk to (the views are far smaller).
const MAX_ADDRS: usize = 4096;

/// Listening on 0.0.0.0 or ::, how long to wait for a non-loopback address to be reported.
const ROUTABLE_ADDR_WAIT: Duration = Duration::from_secs(2);

/// `/ip4/0.0.0.0/...` or `/ip6/::/...`: every address of the host.
fn listens_everywhere(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    match addr.iter().next() {
        Some(Protocol::Ip4(a)) => a.is_unspecified(),
        Some(Protocol::Ip6(a)) => a.is_unspecified(),
        _ => false,
    }
}

fn is_loopback(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    match addr.iter().next() {
        Some(Protocol::Ip4(a)) => a.is_loopback(),
        Some(Protocol::Ip6(a)) => a.is_loopback(),
        _ => false,
    }
}

/// How often the certificate file is looked at for a new or renewed certificate.
const CERT_CHECK: Duration = Duration::from_secs(2);

fn fmt_labels(l: &driftless_core::Labels) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// This node's certificate, if the file exists: it must verify and name this node.
fn read_own_cert(
    door: &AgentDoor,
    path: &std::path::Path,
    me: &[u8; 32],
) -> anyhow::Result<Option<OwnCert>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("{}: cannot read: {e}", path.display()),
    };
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let grant = door.check_cert(&bytes).map_err(|(reason, detail)| {
        anyhow::anyhow!("{}: refused ({reason}): {detail}", path.display())
    })?;
    if grant.node_key != *me {
        anyhow::bail!(
            "{}: the certificate is for node {}, this node is {}",
            path.display(),
            admission::node_name(&grant.node_key),
            admission::node_name(me)
        );
    }
    Ok(Some(OwnCert {
        bytes: Arc::new(bytes),
        grant,
        mtime: meta.modified().ok(),
    }))
}

/// The trust root in force: the trust directory's, rotated by every signed root stored in
/// the state directory that verifies in turn; and the stored revocation list, if it verifies.
fn restore_trust(
    state: &StateDir,
    mut root: driftless_core::trust::TrustRoot,
    adm: &mut Admission,
    warnings: &mut Vec<String>,
) -> AgentDoor {
    let now = now_ms(Instant::now()).wall();
    let check = driftless_core::trust::Ed25519Check;
    let mut roots: Vec<(u64, PathBuf)> = std::fs::read_dir(state.path().join("trust"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix("root-")?
                .strip_suffix(".signed")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    roots.sort();
    for (n, path) in roots {
        if n <= root.version {
            continue;
        }
        let step = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                let signed =
                    driftless_core::root::SignedRoot::decode(&b).map_err(|e| e.to_string())?;
                let next = root
                    .verify_next_root(&signed, now, &check)
                    .map_err(|e| e.to_string())?;
                Ok((next, b))
            });
        match step {
            Ok((next, bytes)) => {
                root = next;
                adm.roots.push((n, Arc::new(bytes)));
            }
            Err(e) => {
                warnings.push(format!("{}: not taken on: {e}", path.display()));
                break;
            }
        }
    }
    let mut revoked = BTreeSet::new();
    if let Some(bytes) = admission::load(state, admission::REVOKED_FILE) {
        let list = driftless_core::admission::SignedRevocationList::decode(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|l| {
                root.verify_revocations(&l, now, &check)
                    .map_err(|e| e.to_string())
            });
        match list {
            Ok(v) => {
                revoked = v.list().revoked.clone();
                adm.revocations = Some((v.version(), Arc::new(bytes)));
            }
            Err(e) => warnings.push(format!(
                "{}: not taken on: {e}",
                state.path().join(admission::REVOKED_FILE).display()
            )),
        }
    }
    AgentDoor::new(root, revoked)
}

/// Bootstrap peers are re-dialled with back-off from this…
const DIAL_BACKOFF_MIN: Duration = Duration::from_millis(500);
/// …up to this (SPEC: re-dialled with back-off up to 30 s).
const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(30);

struct Applied {
    bundle: Arc<VerifiedBundle>,
    at: Option<SystemTime>,
}

pub struct Agent {
    cfg: AgentConfig,
    node: Node<AgentPeer>,
    door: AgentDoor,
    admission: Admission,
    /// Peers we said hello to on their current connection.
    hello_sent: std::collections::HashSet<PeerId>,
    /// `fleet --node` requests waiting for a status: (node, deadline, issue time of the
    /// status held when asked, where to answer).
    wanted: Vec<(
        AgentPeer,
        Instant,
        Option<u64>,
        oneshot::Sender<serde_json::Value>,
    )>,
    /// When to look at the certificate file again.
    cert_check_at: Instant,
    swarm: Swarm<transport::Behaviour>,
    rng: rand::rngs::StdRng,
    start: Instant,
    state: Arc<StateDir>,
    /// The writes of Persist actions in progress on a blocking thread, and the actions that
    /// wait for them (see [`Agent::carry_out`]).
    persisting: Option<tokio::task::JoinHandle<()>>,
    deferred: VecDeque<Action<AgentPeer>>,
    me: AgentPeer,
    worker: Worker,
    watch: Watch,
    health: Health,
    metrics: Metrics,
    applied: BTreeMap<String, Applied>,
    addrs: std::collections::HashMap<PeerId, String>,
    audit_seen: BTreeSet<String>,
    drift_last: Option<(SystemTime, String)>,
    wake: Option<u64>,
    dial_at: Instant,
    dial_backoff: Duration,
    /// This run joined the fleet through one of its bootstrap peers. Until it has, it keeps
    /// dialling them even when it has neighbours: nodes that bootstrap through this one may
    /// have connected first, and joining only through them would make an island.
    joined: bool,
    next_poll: Instant,
    warnings: Vec<String>,
}

/// Carry out a run of Persist actions, in order. A new version's marks and bundle are written
/// side by side: their fsyncs overlap (the file system commits them together).
fn persist(state: &StateDir, writes: Vec<Action<AgentPeer>>) {
    let mut writes = writes.into_iter().peekable();
    while let Some(w) = writes.next() {
        match w {
            Action::PersistMarks(m) => {
                let bundle = match writes.peek() {
                    Some(Action::PersistBundle(b)) => Some(Arc::clone(b)),
                    _ => None,
                };
                let (marks, stored) = std::thread::scope(|sc| {
                    let marks = sc.spawn(|| state.save_marks(&m));
                    let stored = bundle
                        .as_ref()
                        .map(|b| state.store_bundle(&b.header().channel, &b.encode()));
                    (
                        marks.join().expect("the marks writer does not panic"),
                        stored,
                    )
                });
                if let Err(e) = marks {
                    tracing::error!("persisting marks: {e:#}");
                }
                if let Some(stored) = stored {
                    writes.next();
                    if let Err(e) = stored {
                        tracing::error!("persisting bundle: {e:#}");
                    }
                }
            }
            Action::PersistBundle(b) => {
                if let Err(e) = state.store_bundle(&b.header().channel, &b.encode()) {
                    tracing::error!("persisting bundle: {e:#}");
                }
            }
            Action::PersistStatus(s) => {
                if let Err(e) = super::files::save_status(state, &s) {
                    tracing::error!("persisting status: {e:#}");
                }
            }
            _ => {}
        }
    }
}

fn now_ms(start: Instant) -> Now {
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Now {
        mono_ms: start.elapsed().as_millis() as u64,
        wall_ms,
    }
}

fn time_str(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn ms_str(ms: u64) -> String {
    time_str(UNIX_EPOCH + Duration::from_millis(ms))
}

/// Run the agent until SIGTERM or SIGINT. `notifier` tells systemd when the agent is ready,
/// that its loop is alive (watchdog) and what it holds (see `sdnotify`).
pub async fn run(cfg: AgentConfig, notifier: super::sdnotify::Notifier) -> anyhow::Result<()> {
    let state = StateDir::open(&cfg.state_dir, "driftless agent")?;
    let trust = crate::trustdir::load(&cfg.trust)?;
    let key = super::files::node_key(&state)?;
    let (persisted, mut warnings) = super::files::load(&state)?;
    let mut adm = Admission::default();
    let door = restore_trust(&state, trust.root.clone(), &mut adm, &mut warnings);
    let cert_path = cfg
        .cert
        .clone()
        .unwrap_or_else(|| state.path().join("node.cert"));
    door.now.set(now_ms(Instant::now()).wall());
    let own = if door.is_open() {
        None
    } else {
        // A certificate that does not verify (expired, revoked, another node's) leaves the
        // node waiting for a good one, as if there were none: said in the log and status.
        match read_own_cert(&door, &cert_path, &key.verifying_key().to_bytes()) {
            Ok(c) => c,
            Err(e) => {
                let w = format!("{e:#}");
                tracing::error!("{w}");
                warnings.push(w);
                None
            }
        }
    };
    if let Some(c) = &own {
        if admission::labels_disagree(&cfg.labels, &c.grant.labels) {
            anyhow::bail!(
                "--labels {} disagree with the labels of the certificate {} ({}): in an admitted fleet the certificate says what a node is",
                fmt_labels(&cfg.labels),
                cert_path.display(),
                fmt_labels(&c.grant.labels)
            );
        }
    }
    let mut cfg = cfg;
    if let Some(c) = &own {
        cfg.labels = c.grant.labels.clone();
    }
    adm.cert_mtime = own.as_ref().and_then(|c| c.mtime);
    if let Some(c) = &own {
        let now = now_ms(Instant::now()).wall();
        if c.grant.near_expiry(now) {
            tracing::warn!(
                "the node certificate {} expires in {} days: ask for a new one (`driftless admit`)",
                cert_path.display(),
                c.grant.expires.0.saturating_sub(now.0) / 86_400
            );
        }
    }
    adm.own = own;
    let libp2p_key = libp2p::identity::Keypair::ed25519_from_bytes(key.to_bytes())?;
    let mut swarm = transport::swarm(libp2p_key, &trust.root.fleet)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.trust.join("trust.toml").display()))?;
    swarm
        .listen_on(cfg.listen.clone())
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", cfg.listen))?;
    // Learn the address we really listen on (the port may have been 0) before the core
    // needs it: peers dial us back through it. Listening on every address (0.0.0.0 or ::),
    // libp2p reports one address per interface, loopback first: peers on other hosts need
    // a routable one, so a non-loopback address is preferred (waiting a moment for the
    // interfaces to be reported), and loopback is taken only when there is nothing else.
    let wildcard = listens_everywhere(&cfg.listen);
    let mut fallback: Option<Multiaddr> = None;
    let mut wait_until: Option<Instant> = None;
    let listen_addr = loop {
        let ev = match wait_until {
            None => swarm.select_next_some().await,
            Some(t) => match tokio::time::timeout_at(t, swarm.select_next_some()).await {
                Ok(ev) => ev,
                Err(_) => break fallback.take().expect("set with the deadline"),
            },
        };
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                if !wildcard || !is_loopback(&address) {
                    break address;
                }
                fallback.get_or_insert(address);
                wait_until.get_or_insert(Instant::now() + ROUTABLE_ADDR_WAIT);
            }
            SwarmEvent::ListenerError { error, .. }
            | SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => {
                anyhow::bail!("--listen {}: {error}", cfg.listen)
            }
            _ => {}
        }
    };
    if wildcard && is_loopback(&listen_addr) {
        tracing::warn!(
            "listening on {} but this host has no address but loopback yet, so peers on other hosts cannot dial back: set `listen` to this host's address",
            cfg.listen
        );
    }
    let me = AgentPeer {
        key: key.verifying_key().to_bytes(),
        addr: Some(listen_addr.to_string()),
    };
    let peer_id = me.peer_id();
    tracing::info!(%peer_id, listen = %listen_addr, fleet = %trust.root.fleet, "driftless agent starting");
    if door.is_open() {
        tracing::warn!("open fleet: no admission keys in the trust root, so any node that knows the fleet name may join");
    } else if adm.own.is_none() {
        tracing::warn!(
            "admitted fleet and no certificate at {} yet: give the operator {} (peer id {peer_id}) to run `driftless admit`; the agent talks to no one until the certificate is there, and picks it up without a restart",
            cert_path.display(),
            state.path().join("node.pub").display()
        );
    }

    let core_cfg = CoreConfig {
        round_ms: cfg.round.as_millis() as u64,
        reapply_ms: Some(cfg.reapply.as_millis() as u64),
        zone_bits: cfg.zone_bits,
        group_bits: cfg.group_bits,
        ..CoreConfig::default()
    };
    let start = Instant::now();
    let mut node = Node::restore(
        core_cfg,
        me.clone(),
        key,
        cfg.labels.clone(),
        &persisted,
        now_ms(start),
        &door,
    );
    // What the core runs with, so that an operator can compare it across the fleet (every
    // node must use the same zone_bits and group_bits).
    let view = node.fleet();
    let (zb, gb) = (view.zone_bits(), view.group_bits());
    if zb == 0 {
        tracing::info!("fleet view in one zone: every node holds every node's status");
    } else if gb == 0 {
        tracing::info!(
            "fleet view in {} zones (zone_bits {zb}, no groups); this node is in zone {}",
            1u32 << zb,
            view.my_zone
        );
    } else {
        tracing::info!(
            "fleet view in {} zones in {} groups (zone_bits {zb}, group_bits {gb}); this node is in zone {}, group {}",
            1u32 << zb,
            1u32 << gb,
            view.my_zone,
            view.my_group()
        );
    }

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let (path_tx, mut path_rx) = mpsc::unbounded_channel::<PathBuf>();
    let (check_tx, mut check_rx) = mpsc::unbounded_channel::<CheckResult>();
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<Pending>();
    super::control::listen(&cfg.control, ctl_tx)?;
    let metrics = Metrics::new();
    if let Some(addr) = cfg.metrics {
        metrics.serve(addr)?;
    }
    let facts = crate::facts::Facts::gather(&cfg.root, cfg.labels.clone());
    let watch = Watch::new(path_tx);
    if let Some(w) = &watch.polling {
        warnings.push(w.clone());
        tracing::warn!("{w}");
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut out = Vec::new();
    door.now.set(now_ms(start).wall());
    if let Some(c) = &adm.own {
        node.handle(
            Event::Credential {
                cert: Some(c.bytes.clone()),
                labels: c.grant.labels.clone(),
            },
            now_ms(start),
            &mut rng,
            &door,
            &mut out,
        );
    }
    let bootstrap: Vec<AgentPeer> = persisted.peers.clone();
    node.handle(
        Event::Start { bootstrap },
        now_ms(start),
        &mut rng,
        &door,
        &mut out,
    );
    let mut agent = Agent {
        worker: Worker::new(cfg.root.clone(), facts, done_tx),
        health: Health::new(cfg.root.clone(), check_tx),
        cfg,
        node,
        door,
        admission: adm,
        hello_sent: Default::default(),
        wanted: Vec::new(),
        cert_check_at: Instant::now() + CERT_CHECK,
        swarm,
        rng,
        start,
        state: Arc::new(state),
        persisting: None,
        deferred: VecDeque::new(),
        me,
        watch,
        metrics,
        applied: BTreeMap::new(),
        addrs: std::collections::HashMap::new(),
        audit_seen: BTreeSet::new(),
        drift_last: None,
        wake: None,
        dial_at: Instant::now(),
        dial_backoff: DIAL_BACKOFF_MIN,
        joined: false,
        next_poll: Instant::now() + POLL_INTERVAL,
        warnings,
    };
    agent.carry_out(out);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // Listening, control socket bound, state loaded: `systemctl start` may return now.
    notifier.notify(&format!("READY=1\nSTATUS={}", agent.summary_line()));
    let mut alive = tokio::time::interval(notifier.watchdog.unwrap_or(Duration::from_secs(5)));
    alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake_in = agent
            .wake
            .map(|w| {
                Duration::from_millis(w.saturating_sub(agent.start.elapsed().as_millis() as u64))
            })
            .unwrap_or(Duration::from_secs(3600));
        let mut deadline = Instant::now() + wake_in;
        deadline = deadline.min(agent.dial_at);
        if !agent.door.is_open() {
            deadline = deadline.min(agent.cert_check_at);
        }
        if let Some(h) = agent.health.next_due() {
            deadline = deadline.min(h);
        }
        if agent.watch.polling.is_some() {
            deadline = deadline.min(agent.next_poll);
        }
        agent.answer_wanted();
        if let Some(w) = agent.wanted.iter().map(|w| w.1).min() {
            deadline = deadline.min(w);
        }
        tokio::select! {
            ev = agent.swarm.select_next_some() => agent.on_swarm(ev),
            r = async { agent.persisting.as_mut().expect("guarded").await }, if agent.persisting.is_some() => {
                agent.on_persisted(r)
            }
            Some(done) = done_rx.recv() => {
                agent.on_done(done);
                notifier.notify(&format!("STATUS={}", agent.summary_line()));
            }
            Some(path) = path_rx.recv() => agent.on_path(path),
            Some(r) = check_rx.recv() => {
                if agent.health.record(r) {
                    let (healthy, failing) = agent.health.healthy();
                    agent.event(Event::Health { healthy, failing });
                }
            }
            Some((req, reply)) = ctl_rx.recv() => match req {
                ControlRequest::Node { node } => agent.want_node(&node, reply),
                req => {
                    let answer = agent.on_control(req);
                    let _ = reply.send(answer);
                }
            },
            _ = tokio::time::sleep_until(deadline) => agent.on_timer(),
            // The watchdog is fed from this loop, so a loop that stops turning is restarted.
            _ = alive.tick(), if notifier.active() => {
                let wd = if notifier.watchdog.is_some() { "WATCHDOG=1\n" } else { "" };
                notifier.notify(&format!("{wd}STATUS={}", agent.summary_line()));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping");
    notifier.notify("STOPPING=1");
    agent.flush_writes().await;
    let _ = super::files::save_peers(&agent.state, &agent.node.active_peers());
    Ok(())
}

impl Agent {
    fn event(&mut self, ev: Event<AgentPeer>) -> Vec<Action<AgentPeer>> {
        let mut out = Vec::new();
        self.door.now.set(now_ms(self.start).wall());
        self.node
            .handle(ev, now_ms(self.start), &mut self.rng, &self.door, &mut out);
        let summary: Vec<Action<AgentPeer>> = out
            .iter()
            .filter_map(|a| match a {
                Action::Accepted {
                    channel,
                    version,
                    hash,
                    hops,
                } => Some(Action::Accepted {
                    channel: channel.clone(),
                    version: *version,
                    hash: *hash,
                    hops: *hops,
                }),
                Action::Refused {
                    from,
                    reason,
                    detail,
                } => Some(Action::Refused {
                    from: from.clone(),
                    reason,
                    detail: detail.clone(),
                }),
                _ => None,
            })
            .collect();
        self.carry_out(out);
        summary
    }

    /// Carry out the core's actions. Messages, disconnects, wake-ups and log lines take
    /// effect at once; the Persist actions are written on a blocking thread, and the actions
    /// after a write (an apply, a later write) wait for it, in order, as the core requires.
    ///
    /// So the event loop never waits for an fsync: a new version is forwarded (pushed,
    /// announced) and the swarm keeps answering fetches while its marks and bundle are made
    /// durable. With a write inline, each hop of a spread waited for that hop's fsync before
    /// its messages left the swarm, and on a busy file system an fsync takes tens to hundreds
    /// of milliseconds. Sending before the write is safe: a peer verifies what it receives
    /// itself, and a crash before the write only means this node fetches the version again.
    fn carry_out(&mut self, actions: Vec<Action<AgentPeer>>) {
        for a in actions {
            match a {
                Action::Apply { .. }
                | Action::PersistMarks(_)
                | Action::PersistBundle(_)
                | Action::PersistStatus(_) => self.deferred.push_back(a),
                a => self.act(a),
            }
        }
        self.run_deferred();
        self.update_peer_gauges();
    }

    /// Run the waiting actions up to the next write, and start that write.
    fn run_deferred(&mut self) {
        while self.persisting.is_none() {
            let Some(a) = self.deferred.pop_front() else {
                return;
            };
            let mut writes = Vec::new();
            match a {
                Action::PersistMarks(_) | Action::PersistBundle(_) | Action::PersistStatus(_) => {
                    writes.push(a);
                    while matches!(
                        self.deferred.front(),
                        Some(
                            Action::PersistMarks(_)
                                | Action::PersistBundle(_)
                                | Action::PersistStatus(_)
                        )
                    ) {
                        writes.extend(self.deferred.pop_front());
                    }
                }
                a => {
                    self.act(a);
                    continue;
                }
            }
            let state = Arc::clone(&self.state);
            self.persisting = Some(tokio::task::spawn_blocking(move || persist(&state, writes)));
        }
    }

    /// The writes are done: go on with what waited for them.
    fn on_persisted(&mut self, r: Result<(), tokio::task::JoinError>) {
        self.persisting = None;
        if let Err(e) = r {
            tracing::error!("the state writer failed: {e}");
        }
        self.run_deferred();
    }

    /// Finish every write (at shutdown), without starting applies.
    async fn flush_writes(&mut self) {
        if let Some(h) = self.persisting.take() {
            let _ = h.await;
        }
        let writes: Vec<_> = std::mem::take(&mut self.deferred)
            .into_iter()
            .filter(|a| !matches!(a, Action::Apply { .. }))
            .collect();
        let state = Arc::clone(&self.state);
        let _ = tokio::task::spawn_blocking(move || persist(&state, writes)).await;
    }

    fn act(&mut self, a: Action<AgentPeer>) {
        match a {
            Action::Send { to, msg } => self.send(to, msg),
            Action::Disconnect(p) => {
                // The core gave up on a peer that kept sending what it refuses (or that
                // was revoked): keep it out for a while.
                self.admission.ban(p.peer_id(), Instant::now());
                let _ = self.swarm.disconnect_peer_id(p.peer_id());
                self.metrics.count_refused("bad_peer");
                tracing::warn!(peer = %p.peer_id(), "disconnected and kept out for {} s", admission::BAN.as_secs());
            }
            Action::Apply { bundle, reason } => {
                let why = match reason {
                    ApplyReason::NewVersion | ApplyReason::Rollback => Why::NewVersion,
                    ApplyReason::Reapply => Why::Recheck,
                };
                self.worker.request(bundle, why);
            }
            Action::PersistMarks(_) | Action::PersistBundle(_) | Action::PersistStatus(_) => {
                unreachable!("writes go through run_deferred")
            }
            Action::WakeAt(t) => self.wake = Some(t),
            Action::Refused {
                from,
                reason,
                detail,
            } => {
                self.metrics.count_refused(reason);
                // Honest peers never pass on a bundle whose trusted signature fails, or
                // one over the fleet's size limit (they verify before forwarding): whoever
                // does is kept out for a while.
                if let (Some(p), "bad_signature" | "malformed" | "oversized") = (&from, reason) {
                    self.admission.ban(p.peer_id(), Instant::now());
                    let _ = self.swarm.disconnect_peer_id(p.peer_id());
                }
                let from = from
                    .map(|p| p.peer_id().to_string())
                    .unwrap_or_else(|| "local".into());
                tracing::warn!(%from, reason, "refused: {detail}");
            }
            Action::Accepted {
                channel,
                version,
                hash,
                hops,
            } => {
                tracing::info!(%channel, version, bundle = %hash.short(), hops, "accepted a new version");
            }
        }
    }

    fn update_peer_gauges(&mut self) {
        self.metrics
            .peers
            .get_or_create(&ViewLabel {
                view: "active".into(),
            })
            .set(self.node.active_peers().len() as i64);
        self.metrics
            .peers
            .get_or_create(&ViewLabel {
                view: "passive".into(),
            })
            .set(self.node.passive_peers().len() as i64);
    }

    fn send(&mut self, to: AgentPeer, msg: Message<AgentPeer>) {
        if to == self.me {
            return;
        }
        if let Some(a) = &to.addr {
            if self.addrs.get(&to.peer_id()) != Some(a) {
                self.remember_addr(to.peer_id(), a.clone());
            }
        }
        tracing::trace!(to = %to.peer_id(), kind = msg.kind(), "send");
        if !self.swarm.is_connected(&to.peer_id()) {
            // A new connection costs a Noise handshake: worth seeing what causes them.
            tracing::debug!(to = %to.peer_id(), kind = msg.kind(), "send opens a connection");
        }
        let frame = Request::Core {
            listen: self.me.addr.clone(),
            msg: msg.encode(),
        }
        .encode();
        let id = to.peer_id();
        if !self.door.is_open() && !self.admission.is_admitted(&id) {
            // No conversation before both sides showed a certificate: the frame waits for
            // the peer's hello (ours goes out now, dialling if need be).
            if self.admission.own.is_none() || self.admission.is_banned(&id, Instant::now()) {
                return;
            }
            self.admission.hold(id, frame, Instant::now());
            if !self.hello_sent.contains(&id) {
                self.say_hello(id, to.multiaddr().into_iter().collect());
            }
            return;
        }
        self.send_frame(id, frame, to.multiaddr().into_iter().collect());
    }

    fn send_frame(&mut self, to: PeerId, frame: Vec<u8>, addrs: Vec<Multiaddr>) {
        self.metrics.bytes_sent.inc_by(frame.len() as u64);
        self.swarm
            .behaviour_mut()
            .rr
            .send_request_with_addresses(&to, Frame::out(frame), addrs);
    }

    fn hello(&self) -> Hello {
        Hello {
            cert: self.admission.own.as_ref().map(|c| c.bytes.to_vec()),
            root: self.door.trust.version,
            revocations: self.admission.revocations_version(),
        }
    }

    fn say_hello(&mut self, to: PeerId, addrs: Vec<Multiaddr>) {
        if self.admission.own.is_none() {
            return;
        }
        self.hello_sent.insert(to);
        let frame = Request::Hello(self.hello()).encode();
        self.send_frame(to, frame, addrs);
    }

    /// A peer's hello (as a request or as the answer to ours): admit it or shut it out.
    fn on_hello(&mut self, peer: PeerId, h: Hello) -> bool {
        self.door.now.set(now_ms(self.start).wall());
        let verdict = match &h.cert {
            None => Err((
                "no_certificate",
                "the peer shows no certificate".to_string(),
            )),
            Some(bytes) => self.door.check_cert(bytes).and_then(|g| {
                if super::peer::peer_id_of(&g.node_key) == peer {
                    Ok(g)
                } else {
                    Err((
                        "certificate_of_another_node",
                        format!(
                            "the certificate is for node {}",
                            admission::node_name(&g.node_key)
                        ),
                    ))
                }
            }),
        };
        match verdict {
            Ok(grant) => {
                let held = self.admission.admit(peer, grant);
                for frame in held {
                    self.send_frame(peer, frame, Vec::new());
                }
                self.catch_up(peer, &h);
                true
            }
            Err((reason, detail)) => {
                self.shut_out(peer, reason, &detail);
                false
            }
        }
    }

    /// Refuse a peer: count it, close its connections, keep it out for a while.
    fn shut_out(&mut self, peer: PeerId, reason: &str, detail: &str) {
        self.refused(&peer, reason, detail);
        self.admission.ban(peer, Instant::now());
        self.hello_sent.remove(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
        if let Some(key) = key_of(&peer) {
            self.event(Event::PeerDown(AgentPeer { key, addr: None }));
        }
    }

    /// Send a peer the signed roots and revocation list it lacks.
    fn catch_up(&mut self, peer: PeerId, h: &Hello) {
        let mut docs: Vec<Vec<u8>> = self
            .admission
            .roots
            .iter()
            .filter(|(v, _)| *v > h.root)
            .map(|(_, b)| b.to_vec())
            .collect();
        if let Some((v, b)) = &self.admission.revocations {
            if *v > h.revocations {
                docs.push(b.to_vec());
            }
        }
        for d in docs {
            let frame = Request::Trust(d).encode();
            self.send_frame(peer, frame, Vec::new());
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<transport::BehaviourEvent>) {
        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = &ev {
            if self.admission.is_banned(peer_id, Instant::now()) {
                let _ = self.swarm.disconnect_peer_id(*peer_id);
                self.metrics.count_refused("kept_out");
                tracing::debug!(peer = %peer_id, "connection from a peer kept out: closed");
                return;
            }
        }
        if !self.door.is_open() {
            match &ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    let now = Instant::now();
                    if !self.admission.is_admitted(peer_id) {
                        self.admission.peers.entry(*peer_id).or_insert(
                            admission::PeerState::Waiting {
                                since: now,
                                queue: Vec::new(),
                            },
                        );
                    }
                    if !self.hello_sent.contains(peer_id) {
                        self.say_hello(*peer_id, Vec::new());
                    }
                }
                SwarmEvent::ConnectionClosed {
                    peer_id,
                    num_established: 0,
                    ..
                } => {
                    self.admission.peers.remove(peer_id);
                    self.hello_sent.remove(peer_id);
                }
                _ => {}
            }
        }
        match ev {
            SwarmEvent::Behaviour(transport::BehaviourEvent::Rr(e)) => self.on_rr(e),
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if endpoint.is_dialer() => {
                let addr = transport::split_peer_addr(endpoint.get_remote_address()).0;
                let is_bootstrap = self
                    .cfg
                    .peers
                    .iter()
                    .any(|b| transport::split_peer_addr(b).0 == addr);
                if is_bootstrap && (!self.joined || self.node.active_peers().is_empty()) {
                    if let Some(key) = key_of(&peer_id) {
                        let p = AgentPeer {
                            key,
                            addr: Some(addr.to_string()),
                        };
                        tracing::info!(peer = %peer_id, %addr, "joining the fleet through a bootstrap peer");
                        self.joined = true;
                        self.dial_backoff = DIAL_BACKOFF_MIN;
                        self.event(Event::Start { bootstrap: vec![p] });
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, "dial failed: {error}");
            }
            _ => {}
        }
    }

    fn on_rr(&mut self, e: rr::Event<Frame, Frame>) {
        match e {
            rr::Event::Message {
                peer,
                message:
                    rr::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                self.metrics
                    .bytes_received
                    .inc_by(request.bytes.len() as u64);
                let answer = self.on_request(peer, request);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .rr
                    .send_response(channel, Frame::out(answer.encode()));
            }
            rr::Event::Message {
                peer,
                message: rr::Message::Response { response, .. },
                ..
            } => {
                self.metrics
                    .bytes_received
                    .inc_by(response.bytes.len() as u64);
                self.on_response(peer, response);
            }
            rr::Event::OutboundFailure { peer, error, .. } => {
                if matches!(
                    error,
                    OutboundFailure::DialFailure
                        | OutboundFailure::ConnectionClosed
                        | OutboundFailure::UnsupportedProtocols
                ) {
                    if let Some(key) = key_of(&peer) {
                        self.event(Event::PeerDown(AgentPeer { key, addr: None }));
                    }
                }
            }
            _ => {}
        }
    }

    /// Messages a peer sent back on the stream of our request.
    fn on_response(&mut self, peer: PeerId, response: Frame) {
        let msgs = match Response::decode(&response.bytes) {
            Ok(Response::Core(msgs)) => msgs,
            Ok(Response::Hello(h)) => {
                self.on_hello(peer, h);
                return;
            }
            Ok(Response::Refused { reason, hello }) => {
                if hello && self.admission.own.is_some() {
                    // The peer does not know us (it restarted, or our hello crossed a
                    // message): say hello again; what we sent is repaired by gossip.
                    self.admission.peers.remove(&peer);
                    self.say_hello(peer, Vec::new());
                } else {
                    tracing::warn!(%peer, %reason, "the peer refuses to talk to this node");
                }
                return;
            }
            Ok(_) => return,
            Err(e) => {
                self.shut_out(peer, "malformed", &e.to_string());
                return;
            }
        };
        if !self.door.is_open() && !self.admission.is_admitted(&peer) {
            return;
        }
        let Some(key) = key_of(&peer) else { return };
        let from = AgentPeer {
            key,
            addr: self.addrs.get(&peer).cloned(),
        };
        let all: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        if let Some(f) = response.newer_than_stream(&all) {
            self.refused_newer_format(peer, f, response.format);
            return;
        }
        for bytes in &msgs {
            match Message::<AgentPeer>::decode(bytes) {
                Ok(m) => {
                    tracing::trace!(from = %peer, kind = m.kind(), "received reply");
                    self.event(Event::Message {
                        from: from.clone(),
                        msg: m,
                    });
                }
                Err(e) => {
                    self.shut_out(peer, "malformed", &e.to_string());
                    return;
                }
            }
        }
    }

    /// Remember where a peer listens, so replies from it keep a dialable address.
    fn remember_addr(&mut self, peer: PeerId, addr: String) {
        if self.addrs.len() >= MAX_ADDRS && !self.addrs.contains_key(&peer) {
            self.addrs.clear();
        }
        self.addrs.insert(peer, addr);
    }

    /// A peer wrote a message in a newer format than the stream it chose carries (an older
    /// agent could not read it): a broken or hostile peer.
    fn refused_newer_format(&mut self, peer: PeerId, format: u16, stream: u16) {
        self.shut_out(
            peer,
            "format_newer_than_stream",
            &format!("message format {format} on a stream of format {stream}"),
        );
    }

    fn on_request(&mut self, peer: PeerId, request: Frame) -> Response {
        if self.admission.is_banned(&peer, Instant::now()) {
            let _ = self.swarm.disconnect_peer_id(peer);
            return Response::Refused {
                reason: "kept out for a while".into(),
                hello: false,
            };
        }
        let req = match Request::decode(&request.bytes) {
            Ok(r) => r,
            Err(e) => {
                self.shut_out(peer, "malformed", &e.to_string());
                return Response::Ack;
            }
        };
        let open = self.door.is_open();
        match req {
            Request::Hello(h) => {
                if open {
                    return Response::Ack;
                }
                if self.admission.own.is_none() {
                    return Response::Refused {
                        reason: "this node has no certificate yet".into(),
                        hello: false,
                    };
                }
                if self.on_hello(peer, h) {
                    self.hello_sent.insert(peer);
                    Response::Hello(self.hello())
                } else {
                    Response::Refused {
                        reason: "certificate refused".into(),
                        hello: false,
                    }
                }
            }
            Request::Trust(bytes) => {
                if !open && !self.admission.is_admitted(&peer) {
                    self.refused(
                        &peer,
                        "not_admitted",
                        "trust document from a peer that showed no certificate",
                    );
                    return Response::Refused {
                        reason: "say hello first".into(),
                        hello: true,
                    };
                }
                let (ok, message) = self.take_trust_doc(&bytes, Some(peer));
                if !ok {
                    tracing::debug!(%peer, "trust document: {message}");
                }
                Response::Ack
            }
            Request::Core { .. } if !open && !self.admission.is_admitted(&peer) => {
                self.refused(
                    &peer,
                    "not_admitted",
                    "message from a peer that showed no valid certificate",
                );
                Response::Refused {
                    reason: "say hello first".into(),
                    hello: true,
                }
            }
            Request::Core { listen, msg } => {
                if let Some(f) = request.newer_than_stream(&[&msg]) {
                    self.refused_newer_format(peer, f, request.format);
                    return Response::Ack;
                }
                let Some(key) = key_of(&peer) else {
                    self.refused(&peer, "unknown_key", "peer id carries no ed25519 key");
                    return Response::Ack;
                };
                match Message::<AgentPeer>::decode(&msg) {
                    Ok(m) => {
                        tracing::trace!(from = %peer, kind = m.kind(), "received");
                        let from = AgentPeer {
                            key,
                            addr: listen.filter(|a| a.len() <= super::peer::MAX_ADDR_LEN),
                        };
                        if let Some(a) = &from.addr {
                            self.remember_addr(peer, a.clone());
                        }
                        let mut out = Vec::new();
                        self.door.now.set(now_ms(self.start).wall());
                        self.node.handle(
                            Event::Message {
                                from: from.clone(),
                                msg: m,
                            },
                            now_ms(self.start),
                            &mut self.rng,
                            &self.door,
                            &mut out,
                        );
                        // Answers to the sender ride back on this request's stream; they are
                        // sent after every action before them was carried out (persists
                        // included), as the core requires.
                        let mut replies = Vec::new();
                        out.retain(|a| match a {
                            Action::Send { to, msg } if *to == from => {
                                tracing::trace!(to = %peer, kind = msg.kind(), "reply");
                                replies.push(msg.encode());
                                false
                            }
                            _ => true,
                        });
                        self.carry_out(out);
                        let bytes: usize = replies.iter().map(Vec::len).sum();
                        self.metrics.bytes_sent.inc_by(bytes as u64);
                        return Response::Core(replies);
                    }
                    Err(e) => self.shut_out(peer, "malformed", &e.to_string()),
                }
                Response::Ack
            }
            Request::Publish(bytes) => {
                let (ok, message) = self.publish(&bytes);
                Response::Published { ok, message }
            }
        }
    }

    fn refused(&mut self, peer: &PeerId, reason: &str, detail: &str) {
        self.metrics.count_refused(reason);
        tracing::warn!(from = %peer, reason, "refused: {detail}");
    }

    /// Hand a bundle to the core, as if a peer had announced it; say what became of it.
    fn publish(&mut self, bytes: &[u8]) -> (bool, String) {
        if admission::decode_trust_doc(bytes).is_some() {
            return self.take_trust_doc(bytes, None);
        }
        let bundle = match Bundle::decode(bytes, self.door.trust.max_bundle_bytes) {
            Ok(b) => b,
            Err(e) => {
                let reason = driftless_core::Refusal::Malformed(e.clone()).reason();
                self.metrics.count_refused(reason);
                return (false, format!("refused ({reason}): {e}"));
            }
        };
        let (channel, version) = (bundle.header().channel.clone(), bundle.header().version);
        let summary = self.event(Event::Publish(Arc::new(bundle)));
        for a in summary {
            match a {
                Action::Accepted { .. } => {
                    return (
                        true,
                        format!("accepted {channel} v{version}; spreading to the fleet"),
                    )
                }
                Action::Refused { reason, detail, .. } => {
                    return (false, format!("refused ({reason}): {detail}"))
                }
                _ => {}
            }
        }
        (true, format!("{channel} v{version} is already held here"))
    }

    /// A signed trust root or revocation list, published here or pushed by a peer: verified
    /// against the trust root in force, taken on when newer, stored, and passed on.
    fn take_trust_doc(&mut self, bytes: &[u8], from: Option<PeerId>) -> (bool, String) {
        let now = now_ms(self.start).wall();
        let check = driftless_core::trust::Ed25519Check;
        let refuse = |this: &mut Self, reason: &str, detail: String| {
            match from {
                Some(p) => this.refused(&p, reason, &detail),
                None => {
                    this.metrics.count_refused(reason);
                    tracing::warn!(from = "local", reason, "refused: {detail}");
                }
            }
            (false, format!("refused ({reason}): {detail}"))
        };
        let doc = match admission::decode_trust_doc(bytes) {
            Some(Ok(d)) => d,
            Some(Err(e)) => return refuse(self, "malformed", e),
            None => {
                return refuse(
                    self,
                    "malformed",
                    "not a signed root or revocation list".into(),
                )
            }
        };
        match doc {
            TrustDoc::Root(signed) => {
                let version = signed.doc().version;
                let current = self.door.trust.version;
                if version < current {
                    return refuse(
                        self,
                        "rolled_back",
                        format!("trust root v{version} is older than v{current}, the one in force"),
                    );
                }
                if version == current {
                    let same = self
                        .admission
                        .roots
                        .iter()
                        .any(|(v, b)| *v == version && b.as_slice() == bytes);
                    if same {
                        return (
                            true,
                            format!("trust root v{version} is already in force here"),
                        );
                    }
                    return refuse(
                        self,
                        "conflicting_content",
                        format!("trust root v{version} differs from the v{current} in force: a signing mistake or a stolen key"),
                    );
                }
                let next = match self.door.trust.verify_next_root(&signed, now, &check) {
                    Ok(n) => n,
                    Err(e) => return refuse(self, e.reason(), e.to_string()),
                };
                if let Err(e) = admission::save(&self.state, &admission::root_file(version), bytes)
                {
                    tracing::error!("persisting the trust root: {e:#}");
                    return (
                        false,
                        format!("could not store trust root v{version}: {e:#}"),
                    );
                }
                tracing::info!(version, "took on a new trust root");
                self.door.set_trust(next);
                let bytes = Arc::new(bytes.to_vec());
                self.admission.roots.push((version, bytes.clone()));
                self.spread_trust_doc(&bytes, from);
                (
                    true,
                    format!("took on trust root v{version}; spreading to the fleet"),
                )
            }
            TrustDoc::Revocations(list) => {
                let v = match self.door.trust.verify_revocations(&list, now, &check) {
                    Ok(v) => v,
                    Err(e) => return refuse(self, e.reason(), e.to_string()),
                };
                let version = v.version();
                // The list's own high-water mark, with the channels' rule: the very same list
                // again is a repeat; an older one, or another list under the same version, is
                // refused (a replay, or a signing mistake or stolen key).
                let mark = self.admission.revocations.as_ref().and_then(|(have, b)| {
                    driftless_core::admission::SignedRevocationList::decode(b)
                        .ok()
                        .map(|l| driftless_core::marks::Mark {
                            version: *have,
                            hash: l.hash(),
                        })
                });
                match v.decide(mark) {
                    Err(e) => return refuse(self, e.reason(), e.to_string()),
                    Ok(driftless_core::MarkDecision::Same) => {
                        return (
                            true,
                            format!("revocation list v{version} is already held here"),
                        )
                    }
                    Ok(driftless_core::MarkDecision::New) => {}
                }
                if let Err(e) = admission::save(&self.state, admission::REVOKED_FILE, bytes) {
                    tracing::error!("persisting the revocation list: {e:#}");
                    return (
                        false,
                        format!("could not store revocation list v{version}: {e:#}"),
                    );
                }
                let revoked = v.list().revoked.clone();
                tracing::info!(
                    version,
                    nodes = revoked.len(),
                    "took on a new revocation list"
                );
                if revoked.contains(&self.me.key) {
                    tracing::error!("this node is on the revocation list: peers will refuse it");
                }
                let bytes = Arc::new(bytes.to_vec());
                self.admission.revocations = Some((version, bytes.clone()));
                self.door.set_revoked(revoked.clone());
                self.spread_trust_doc(&bytes, from);
                let gone: Vec<AgentPeer> = revoked
                    .iter()
                    .filter(|k| **k != self.me.key)
                    .map(|k| AgentPeer {
                        key: *k,
                        addr: None,
                    })
                    .collect();
                for p in &gone {
                    let id = p.peer_id();
                    self.admission.peers.remove(&id);
                    let _ = self.swarm.disconnect_peer_id(id);
                }
                self.event(Event::Forget(gone));
                (
                    true,
                    format!("took on revocation list v{version}; spreading to the fleet"),
                )
            }
        }
    }

    /// Push a trust document to every admitted peer but the one it came from.
    fn spread_trust_doc(&mut self, bytes: &Arc<Vec<u8>>, from: Option<PeerId>) {
        let peers: Vec<PeerId> = if self.door.is_open() {
            self.node
                .active_peers()
                .iter()
                .map(|p| p.peer_id())
                .collect()
        } else {
            self.admission
                .peers
                .iter()
                .filter(|(_, s)| matches!(s, admission::PeerState::Admitted(_)))
                .map(|(p, _)| *p)
                .collect()
        };
        for p in peers.into_iter().filter(|p| Some(*p) != from) {
            let frame = Request::Trust(bytes.to_vec()).encode();
            self.send_frame(p, frame, Vec::new());
        }
    }

    /// Admitted fleets: close connections that never said hello; pick up a new certificate.
    fn admission_timer(&mut self, now: Instant) {
        if self.door.is_open() {
            return;
        }
        for p in self.admission.overdue(now) {
            self.shut_out(p, "no_hello", "no valid hello within the time allowed");
        }
        if self.cert_check_at > now {
            return;
        }
        self.cert_check_at = now + CERT_CHECK;
        let path = self
            .cfg
            .cert
            .clone()
            .unwrap_or_else(|| self.state.path().join("node.cert"));
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if mtime.is_none() || mtime == self.admission.cert_mtime {
            return;
        }
        // Each change of the file is looked at once.
        self.admission.cert_mtime = mtime;
        self.door.now.set(now_ms(self.start).wall());
        match read_own_cert(&self.door, &path, &self.me.key) {
            Ok(Some(c)) => {
                if self.admission.own.as_ref().map(|o| &o.bytes) == Some(&c.bytes) {
                    return;
                }
                tracing::info!(expires = %c.grant.expires.0, "took on the node certificate {}", path.display());
                self.cfg.labels = c.grant.labels.clone();
                self.worker.set_labels(c.grant.labels.clone());
                let ev = Event::Credential {
                    cert: Some(c.bytes.clone()),
                    labels: c.grant.labels.clone(),
                };
                self.admission.own = Some(c);
                self.event(ev);
                // Peers that refused us before may take us now.
                self.dial_at = now;
                self.dial_backoff = DIAL_BACKOFF_MIN;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("{e:#}"),
        }
    }

    fn on_done(&mut self, done: Done) {
        self.worker.finished(&done.channel);
        let ok = !done.report.failed();
        self.metrics
            .applies
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "failed" }.into(),
            })
            .inc();
        let (detected, corrected, last) = drift_of(&done, &mut self.audit_seen);
        if detected > 0 {
            self.metrics.drift_detected.inc_by(detected);
            self.metrics.drift_corrected.inc_by(corrected);
            if let Some(path) = last {
                tracing::warn!(channel = %done.channel, resource = %path, detected, corrected, "drift found");
                self.drift_last = Some((SystemTime::now(), path));
            }
        }
        let s = &done.report.summary;
        tracing::info!(
            channel = %done.channel, version = done.version, why = ?done.why,
            changed = s.changed, unchanged = s.unchanged, failed = s.failed,
            ms = done.elapsed.as_millis() as u64, "converged"
        );
        for r in done.report.resources.iter().filter(|r| r.error.is_some()) {
            tracing::warn!(channel = %done.channel, resource = %r.resource, "{}", r.error.as_deref().unwrap_or(""));
        }
        self.metrics
            .version
            .get_or_create(&ChannelLabel {
                channel: done.channel.clone(),
            })
            .set(done.version as i64);
        self.watch
            .set_channel(&self.cfg.root, &done.channel, &done.bundle);
        self.health
            .set_channel(&done.channel, &done.bundle.definition().checks);
        let at = (done.why == Why::NewVersion || ok).then(SystemTime::now);
        let prev_at = self.applied.get(&done.channel).and_then(|a| a.at);
        let at = if done.why == Why::Recheck
            && self
                .applied
                .get(&done.channel)
                .is_some_and(|a| a.bundle.hash() == done.bundle.hash())
        {
            prev_at.or(at)
        } else {
            at
        };
        self.applied.insert(
            done.channel.clone(),
            Applied {
                bundle: done.bundle.clone(),
                at,
            },
        );
        if detected + corrected > 0 {
            self.event(Event::Drift {
                detected,
                corrected,
            });
        }
        self.event(Event::ApplyFinished {
            channel: done.channel,
            version: done.version,
            ok,
        });
    }

    fn on_path(&mut self, path: PathBuf) {
        let Some(channel) = self.watch.channel_of(&path).map(str::to_string) else {
            return;
        };
        if let Some(a) = self.applied.get(&channel) {
            let b = a.bundle.clone();
            self.worker.request(b, Why::Recheck);
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        self.admission_timer(now);
        if self
            .wake
            .is_some_and(|w| w <= self.start.elapsed().as_millis() as u64)
        {
            self.wake = None;
            self.event(Event::Tick);
        }
        if self.dial_at <= now {
            if (!self.joined || self.node.active_peers().is_empty()) && !self.cfg.peers.is_empty() {
                for addr in self.cfg.peers.clone() {
                    if let Err(e) = self.swarm.dial(addr.clone()) {
                        tracing::debug!(%addr, "dial: {e}");
                    }
                }
                self.dial_at = now + self.dial_backoff;
                self.dial_backoff = (self.dial_backoff * 2).min(DIAL_BACKOFF_MAX);
            } else {
                self.dial_at = now + DIAL_BACKOFF_MAX;
            }
        }
        if self.health.next_due().is_some_and(|d| d <= now) {
            self.health.run_due();
        }
        if self.watch.polling.is_some() && self.next_poll <= now {
            self.next_poll = now + POLL_INTERVAL;
            for a in self.applied.values() {
                let b = a.bundle.clone();
                self.worker.request(b, Why::Recheck);
            }
        } else {
            self.watch.rewatch();
        }
    }

    fn on_control(&mut self, req: ControlRequest) -> serde_json::Value {
        match req {
            ControlRequest::Status => self.status_json(),
            ControlRequest::Fleet => self.fleet_json(),
            ControlRequest::Publish { bundle } => match hex::decode(bundle.trim()) {
                Ok(bytes) => {
                    let (ok, message) = self.publish(&bytes);
                    json!({"ok": ok, "message": message})
                }
                Err(e) => json!({"error": format!("bundle is not hex: {e}")}),
            },
            ControlRequest::Node { .. } => json!({"error": "answered by want_node"}),
        }
    }

    /// `fleet --node ID`: answer from the fleet view when it holds the node's status (its own
    /// zone, or a notable one), else ask the node's zone (of another group, where no member
    /// of that zone is known, after fetching the zone's row from a member of the group: two
    /// round trips) and answer when the status comes (`answer_wanted`), or after
    /// [`WANT_TIMEOUT`].
    fn want_node(&mut self, id: &str, reply: oneshot::Sender<serde_json::Value>) {
        let Some(key) = id.parse::<PeerId>().ok().and_then(|p| key_of(&p)) else {
            let _ = reply.send(json!({
                "error": format!("`{id}` is not a node's peer id (12D3KooW…, as `fleet` lists them)")
            }));
            return;
        };
        let node = AgentPeer { key, addr: None };
        if node == self.me || self.node.fleet().zone_of(&node) == self.node.fleet().my_zone {
            let answer = match self.node.status_of(&node) {
                Some(s) => json!({"node": status_row(s), "from": "own zone"}),
                None if node == self.me => json!({"node": self.status_json(), "from": "this node"}),
                None => {
                    json!({"error": format!("no status of {id} here: it is not (or no longer) in this node's zone table")})
                }
            };
            let _ = reply.send(answer);
            return;
        }
        let since = self.node.status_of(&node).map(|s| s.body.issued_ms);
        self.event(Event::WantStatus(node.clone()));
        self.wanted
            .push((node, Instant::now() + WANT_TIMEOUT, since, reply));
    }

    /// Answer the `fleet --node` requests whose status came (newer than what was held when
    /// asked) or whose time is up.
    fn answer_wanted(&mut self) {
        if self.wanted.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut i = 0;
        while i < self.wanted.len() {
            let (node, deadline, since, _) = &self.wanted[i];
            let held = self.node.status_of(node);
            let fresh = held.filter(|s| Some(s.body.issued_ms) > *since);
            let answer = match (fresh, held) {
                (Some(s), _) => Some(json!({"node": status_row(s), "from": "its zone, on demand"})),
                (None, Some(s)) if now >= *deadline => Some(json!({
                    "node": status_row(s),
                    "from": "this node's fleet view (nothing newer came)"
                })),
                (None, None) if now >= *deadline => Some(json!({
                    "error": format!(
                        "no answer about {} within {} s: no member of its zone (or of its group) known here answered with its status",
                        node.peer_id(),
                        WANT_TIMEOUT.as_secs()
                    )
                })),
                _ => None,
            };
            match answer {
                Some(a) => {
                    let (_, _, _, reply) = self.wanted.swap_remove(i);
                    let _ = reply.send(a);
                }
                None => i += 1,
            }
        }
    }

    /// One line for `systemctl status`: versions per channel and peers.
    fn summary_line(&self) -> String {
        let mut parts: Vec<String> = self
            .node
            .marks()
            .channels
            .keys()
            .map(|ch| match self.node.applied(ch) {
                Some((v, s)) => format!("{ch} v{v} {}", s.as_str()),
                None => format!("{ch} pending"),
            })
            .collect();
        if parts.is_empty() {
            parts.push("no definition yet".into());
        }
        format!(
            "{}; {} peers",
            parts.join(", "),
            self.node.active_peers().len()
        )
    }

    fn status_json(&self) -> serde_json::Value {
        let now = now_ms(self.start);
        let mut channels = serde_json::Map::new();
        let mut names: BTreeSet<String> = self.applied.keys().cloned().collect();
        names.extend(self.node.marks().channels.keys().cloned());
        for ch in names {
            let (version, state) = match self.node.applied(&ch) {
                Some((v, s)) => (v, s.as_str().to_string()),
                None => (0, "pending".to_string()),
            };
            let a = self.applied.get(&ch);
            let stale = a.is_some_and(|a| {
                a.bundle
                    .header()
                    .expires
                    .plus(self.door.trust.clock_skew_secs)
                    < now.wall()
            });
            let held = self
                .node
                .held(&ch)
                .map(|(v, h, _)| json!({"version": v, "bundle": h.to_string()}));
            channels.insert(
                ch.clone(),
                json!({
                    "version": version,
                    "state": state,
                    "applied_at": a.and_then(|a| a.at).map(time_str),
                    "stale": stale,
                    "held": held,
                    "rollout": self.rollout_json(&ch),
                }),
            );
        }
        let (ok, _) = self.health.healthy();
        let checks: Vec<serde_json::Value> = self
            .health
            .results
            .iter()
            .map(|(n, (ok, detail))| json!({"name": n, "ok": ok, "detail": detail}))
            .collect();
        let own = self.node.own_status();
        json!({
            "node": self.me.peer_id().to_string(),
            "labels": self.cfg.labels,
            "admission": self.admission_mode(),
            "fleet": self.door.trust.fleet,
            "listen": self.me.addr,
            "channels": channels,
            "drift": {
                "detected": own.map(|s| s.body.drift_detected).unwrap_or(0),
                "corrected": own.map(|s| s.body.drift_corrected).unwrap_or(0),
                "last": self.drift_last.as_ref().map(|(t, p)| json!({"time": time_str(*t), "path": p})),
            },
            "health": {"ok": ok, "checks": checks},
            "peers": {"active": self.node.active_peers().len(), "passive": self.node.passive_peers().len()},
            "watch": match &self.watch.polling {
                Some(why) => json!({"mode": "polling", "why": why}),
                None => json!({"mode": "inotify", "directories": self.watch.watched_dirs()}),
            },
            "certificate": self.certificate_json(),
            "trust": {
                "root_version": self.door.trust.version,
                "revocations_version": self.admission.revocations_version(),
                "revoked": self.door.revoked.len(),
            },
            "warnings": self.warnings,
        })
    }

    /// `open`, `admitted`, or `pending` (an admitted fleet, no certificate here yet).
    fn admission_mode(&self) -> &'static str {
        if self.door.is_open() {
            "open"
        } else if self.admission.own.is_some() {
            "admitted"
        } else {
            "pending"
        }
    }

    fn certificate_json(&self) -> serde_json::Value {
        let Some(c) = &self.admission.own else {
            return serde_json::Value::Null;
        };
        json!({
            "expires": ms_str(c.grant.expires.0 * 1000),
            "near_expiry": c.grant.near_expiry(now_ms(self.start).wall()),
            "labels": c.grant.labels,
        })
    }

    fn fleet_json(&self) -> serde_json::Value {
        let fleet = self.node.fleet();
        let mut nodes = Vec::new();
        // A node of the own zone can also be among the notable ones: list each node once,
        // with its newest status.
        let mut newest: BTreeMap<&AgentPeer, &Arc<driftless_core::proto::SignedStatus<AgentPeer>>> =
            BTreeMap::new();
        let zone = fleet.zone.iter().map(|(p, (_, s))| (p, s));
        for (p, s) in zone.chain(fleet.notable.iter()) {
            let e = newest.entry(p).or_insert(s);
            if s.body.issued_ms > e.body.issued_ms {
                *e = s;
            }
        }
        for s in newest.values() {
            nodes.push(status_row(s));
        }
        let counts = fleet.counts();
        let mut by_channel = serde_json::Map::new();
        for (ch, m) in &counts.by_channel {
            let rows: Vec<serde_json::Value> = m
                .iter()
                .map(|((v, s, h), n)| json!({"version": v, "state": s.as_str(), "healthy": h, "nodes": n}))
                .collect();
            by_channel.insert(ch.clone(), json!(rows));
        }
        json!({
            "seen_from": self.me.peer_id().to_string(),
            "nodes": nodes,
            "counts": {"nodes": counts.nodes, "channels": by_channel},
            "rollouts": self.node.marks().channels.keys()
                .filter_map(|ch| self.rollout_json(ch).map(|r| (ch.clone(), r)))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
        })
    }

    /// A channel's rollout as this node judges it: its wave, what holds it back, per-wave
    /// tallies, and whether (and why) the rollout halted.
    fn rollout_json(&self, channel: &str) -> Option<serde_json::Value> {
        let r = self.node.rollout(channel)?;
        let waves: Vec<serde_json::Value> = r
            .tallies
            .iter()
            .enumerate()
            .map(|(k, t)| {
                json!({"wave": k, "nodes": t.nodes, "applied": t.applied, "healthy": t.healthy,
                       "unhealthy": t.unhealthy_evidence})
            })
            .collect();
        Some(json!({
            "version": r.version,
            "wave": r.wave,
            "waiting": r.waiting.map(|(w, why)| json!({"wave": w, "why": why.as_str()})),
            "halted": r.halted.map(|(w, bad, of)| json!({
                "wave": w, "unhealthy": bad, "of": of,
                "why": format!("{bad} of {of} nodes of wave {w} unhealthy"),
            })),
            "waves": waves,
        }))
    }
}

/// `fleet --node` waits this long for a node's zone to answer.
const WANT_TIMEOUT: Duration = Duration::from_secs(5);

/// A node's signed status as `fleet --json` lists it (SPEC's status keys, plus `last_seen`).
fn status_row(s: &driftless_core::proto::SignedStatus<AgentPeer>) -> serde_json::Value {
    let b = &s.body;
    let mut channels = serde_json::Map::new();
    for c in &b.channels {
        channels.insert(
            c.channel.clone(),
            json!({"version": c.version, "state": c.state.as_str(), "target": c.target, "wave": c.wave}),
        );
    }
    let checks: Vec<serde_json::Value> = b
        .failing_checks
        .iter()
        .map(|n| json!({"name": n, "ok": false}))
        .collect();
    json!({
        "node": b.node.peer_id().to_string(),
        "labels": b.labels,
        "channels": channels,
        "drift": {"detected": b.drift_detected, "corrected": b.drift_corrected},
        "health": {"ok": b.healthy, "checks": checks},
        "last_apply": b.last_apply.as_ref().map(|l| json!({"channel": l.channel, "version": l.version, "ok": l.ok, "at": ms_str(l.at_ms)})),
        "last_seen": ms_str(b.issued_ms),
        "addr": b.node.addr,
    })
}
