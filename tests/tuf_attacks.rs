//! The attacks of The Update Framework (TUF), one test each, named after the attack, against
//! the real binary: `verify`/`apply` on a node's files (snapshots show that nothing changed),
//! real `driftless agent` processes on loopback (refusals counted by reason in their
//! metrics), and, where the attack comes over the network, a hostile peer written here: a bare
//! libp2p swarm that speaks the fleet's protocol and lies in it.
//!
//! ARCHITECTURE.md ("Trust: the attacks of TUF, and where each is met") maps each test to the
//! defence it exercises and the code that holds it.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use common::{path_str, read, Fleet, Key};
use driftless::agent::peer::AgentPeer;
use driftless::agent::transport::{self, Hello, Request, Response};
use driftless_core::bundle::{Bundle, BundleHash, BundleSignature, Header};
use driftless_core::bundle::{BUNDLE_FORMAT, BUNDLE_MAGIC, SIGNED_FORMAT, SIGNED_MAGIC};
use driftless_core::encoding;
use driftless_core::proto::{Announcement, Message, WireBundle};
use fleet::*;
use futures::StreamExt;
use libp2p::request_response as rr;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);
const MOTD: &str = "/etc/motd";

fn web(text: &str) -> String {
    format!(
        "name = \"web\"\n[[resource]]\ntype = \"file\"\npath = \"{MOTD}\"\ncontent = \"{text}\\n\"\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Bundles taken apart and put together again, as an attacker with the bytes would.

/// The outer envelope of a bundle file (what `driftless_core::bundle` writes).
#[derive(Serialize, Deserialize, Clone)]
struct FileParts {
    signed: Vec<u8>,
    signatures: Vec<BundleSignature>,
}

/// The signed part: header and encoded definition.
#[derive(Serialize, Deserialize, Clone)]
struct SignedParts {
    header: Header,
    definition: Vec<u8>,
}

fn parts(path: &Path) -> (FileParts, SignedParts) {
    let bytes = std::fs::read(path).unwrap();
    let (_, body) = encoding::open("bundle", BUNDLE_MAGIC, BUNDLE_FORMAT, &bytes).unwrap();
    let file: FileParts = encoding::body("bundle", body).unwrap();
    let (_, sbody) = encoding::open("signed", SIGNED_MAGIC, SIGNED_FORMAT, &file.signed).unwrap();
    let signed: SignedParts = encoding::body("signed", sbody).unwrap();
    (file, signed)
}

fn assemble(signed: &SignedParts, signatures: &[BundleSignature]) -> Vec<u8> {
    let file = FileParts {
        signed: encoding::encode(SIGNED_MAGIC, SIGNED_FORMAT, signed),
        signatures: signatures.to_vec(),
    };
    encoding::encode(BUNDLE_MAGIC, BUNDLE_FORMAT, &file)
}

fn bundle_of(path: &Path) -> Bundle {
    Bundle::decode(&std::fs::read(path).unwrap(), usize::MAX).unwrap()
}

/// A copy of `path` with one bit of byte `pos` flipped.
fn flipped(path: &Path, pos: usize, out: &Path) -> PathBuf {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[pos] ^= 0x01;
    std::fs::write(out, bytes).unwrap();
    out.to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// The command line on one node.

/// `verify` and `apply` both refuse `bundle` against `trust` with exit `code`, naming the
/// file and every one of `needles`, and neither the root nor the state directory changes.
#[track_caller]
fn refused_by_cli(node: &Fleet, bundle: &Path, trust: &Path, code: i32, needles: &[&str]) {
    let before = node.snapshot();
    let name = bundle.file_name().unwrap().to_str().unwrap();
    let mut want = vec![name];
    want.extend_from_slice(needles);
    node.verify_with(bundle, trust).code(code).stderr_has(&want);
    node.assert_unchanged(&before, "verify");
    node.apply_with(bundle, trust, &[])
        .code(code)
        .stderr_has(&want);
    node.assert_unchanged(&before, "apply");
}

// ---------------------------------------------------------------------------------------------
// Agents.

/// Start agent `i` with metrics, after the ones before it (each joins through node0).
fn start(f: &mut LocalFleet, peer_node0: bool) -> usize {
    let i = f.add();
    if peer_node0 && i > 0 {
        let door = f.agents[0].multiaddr(false);
        f.agents[i].peers.push(door);
    }
    f.agents[i].metrics = Some(free_port());
    f.agents[i].spawn();
    f.agents[i].wait_ready(DEADLINE);
    i
}

/// Sign `text` as `web` version `v` for fleet `f` with `keys`, plus `extra` flags.
fn sign_with(
    f: &LocalFleet,
    tag: &str,
    text: &str,
    v: u64,
    keys: &[&Key],
    extra: &[&str],
) -> PathBuf {
    let def = f.ws.write(&format!("defs/{tag}.toml"), &web(text));
    let mut args = vec!["--fleet", f.fleet_name.as_str()];
    args.extend_from_slice(extra);
    f.ws.sign(&def, keys, v, &format!("bundles/{tag}.bundle"), &args)
}

fn control(a: &Agent) -> String {
    path_str(&a.control)
}

/// No channel in the agent's status and no managed file in its root.
#[track_caller]
fn holds_nothing(a: &Agent) {
    let s = a.status();
    assert!(
        s["channels"].as_object().is_some_and(|c| c.is_empty()),
        "{} holds a channel: {s:#}",
        a.name
    );
    assert!(a.read(MOTD).is_none(), "{} wrote {MOTD}", a.name);
    assert!(
        !a.state.join("bundles").join("web.bundle").exists(),
        "{} stored a bundle",
        a.name
    );
}

/// Wait until `a` counts at least `n` refusals for `reason`.
#[track_caller]
fn wait_refused(f: &LocalFleet, a: usize, reason: &str, n: u64) {
    f.wait(
        &format!("node{a} to count {n} refusal(s) `{reason}`"),
        DEADLINE,
        || (f.agents[a].refused(reason) >= n).then_some(()),
    );
}

/// Give agent `i` (not started) its node key and a certificate before its first start.
fn pre_admit(f: &mut LocalFleet, i: usize, admission: &Key) {
    let state = f.agents[i].state.clone();
    f.ws.run([
        "keygen".to_string(),
        "--out".into(),
        path_str(&state.join("node")),
    ])
    .ok();
    f.admit(
        &path_str(&state.join("node.pub")),
        admission,
        "role=web",
        &state.join("node.cert"),
    )
    .ok();
}

// ---------------------------------------------------------------------------------------------
// A hostile peer: a bare libp2p swarm on the fleet's protocol, driven by the test. It never
// answers what it is asked (the response channels are kept until it stops).

enum Cmd {
    Dial(Multiaddr),
    Send(PeerId, Vec<u8>),
    /// Send this frame every 250 ms.
    Repeat(PeerId, Vec<u8>),
    /// Answer every fetch with this response frame (written as a trickle, see [`HostileCodec`]).
    AnswerFetches(Vec<u8>),
    Stop,
}

#[derive(Debug, Clone)]
enum Seen {
    Connected(PeerId),
    Closed(PeerId),
    /// A request the peer was sent (and will never answer).
    Request(Vec<u8>),
    Response(Vec<u8>),
    /// This peer began to answer a fetch (a trickle).
    Answering,
}

/// The hostile peer's framing is the agent's (a 4-byte big-endian length, then the frame),
/// except that some of what it writes trickles out, [`TRICKLE_BYTES`] bytes every
/// [`TRICKLE_EVERY`]: every response, and the requests the hostile marked with a first byte
/// [`TRICKLED`] (stripped before writing; unmarked requests start with [`AT_ONCE`]).
#[derive(Debug, Clone, Default)]
struct HostileCodec;

const TRICKLE_BYTES: usize = 4;
const TRICKLE_EVERY: Duration = Duration::from_millis(100);
const AT_ONCE: u8 = 0;
const TRICKLED: u8 = 1;

async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    frame: &[u8],
    trickle: bool,
) -> std::io::Result<()> {
    use futures::AsyncWriteExt;
    let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(frame);
    if trickle {
        for piece in bytes.chunks(TRICKLE_BYTES) {
            io.write_all(piece).await?;
            io.flush().await?;
            tokio::time::sleep(TRICKLE_EVERY).await;
        }
    } else {
        io.write_all(&bytes).await?;
    }
    io.close().await
}

#[async_trait::async_trait]
impl rr::Codec for HostileCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        transport::read_frame(io).await
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        transport::read_frame(io).await
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()> {
        write_frame(io, &req[1..], req[0] == TRICKLED).await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()> {
        write_frame(io, &res, true).await
    }
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct HostileBehaviour {
    rr: rr::Behaviour<HostileCodec>,
}

/// A swarm set up as the agent's (`transport::swarm`), with the hostile codec.
fn hostile_swarm(key: libp2p::identity::Keypair, fleet: &str) -> libp2p::Swarm<HostileBehaviour> {
    let proto = transport::protocol(fleet).unwrap();
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| HostileBehaviour {
            rr: rr::Behaviour::with_codec(
                HostileCodec,
                [(proto, rr::ProtocolSupport::Full)],
                rr::Config::default().with_request_timeout(Duration::from_secs(30)),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn at_once(frame: Vec<u8>) -> Vec<u8> {
    let mut marked = vec![AT_ONCE];
    marked.extend(frame);
    marked
}

fn holds_fetch(response: &[u8]) -> bool {
    matches!(Response::decode(response), Ok(Response::Core(msgs))
        if msgs.iter().any(|m| matches!(Message::<AgentPeer>::decode(m), Ok(Message::Fetch(_)))))
}

fn is_fetch(request: &[u8]) -> bool {
    matches!(Request::decode(request), Ok(Request::Core { msg, .. })
        if matches!(Message::<AgentPeer>::decode(&msg), Ok(Message::Fetch(_))))
}

struct Hostile {
    id: PeerId,
    cmds: tokio::sync::mpsc::UnboundedSender<Cmd>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hostile {
    fn start(fleet: &str) -> Hostile {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let id = key.public().to_peer_id();
        let (cmds, mut rx) = tokio::sync::mpsc::unbounded_channel::<Cmd>();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let fleet = fleet.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut swarm = hostile_swarm(key, &fleet);
                let mut unanswered = Vec::new();
                let mut answer: Option<Vec<u8>> = None;
                let mut repeat: Vec<(PeerId, Vec<u8>)> = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tokio::select! {
                        cmd = rx.recv() => match cmd {
                            None | Some(Cmd::Stop) => break,
                            Some(Cmd::Dial(a)) => { let _ = swarm.dial(a); }
                            Some(Cmd::Send(p, frame)) => {
                                swarm.behaviour_mut().rr.send_request(&p, at_once(frame));
                            }
                            Some(Cmd::Repeat(p, frame)) => repeat.push((p, frame)),
                            Some(Cmd::AnswerFetches(frame)) => answer = Some(frame),
                        },
                        _ = tick.tick() => {
                            for (p, frame) in &repeat {
                                swarm.behaviour_mut().rr.send_request(p, at_once(frame.clone()));
                            }
                        }
                        ev = swarm.select_next_some() => {
                            let s = match ev {
                                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                                    Some(Seen::Connected(peer_id))
                                }
                                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                                    Some(Seen::Closed(peer_id))
                                }
                                SwarmEvent::Behaviour(HostileBehaviourEvent::Rr(e)) => match e {
                                    rr::Event::Message {
                                        message: rr::Message::Request { request, channel, .. },
                                        ..
                                    } => {
                                        match &answer {
                                            Some(frame) if is_fetch(&request) => {
                                                let _ = swarm
                                                    .behaviour_mut()
                                                    .rr
                                                    .send_response(channel, frame.clone());
                                                log.lock().unwrap().push(Seen::Answering);
                                            }
                                            _ => unanswered.push(channel),
                                        }
                                        Some(Seen::Request(request))
                                    }
                                    rr::Event::Message {
                                        peer,
                                        message: rr::Message::Response { response, .. },
                                        ..
                                    } => {
                                        // A fetch may come back on the announce's own stream:
                                        // the bundle then goes out as a request, trickled.
                                        if let (Some(frame), true) = (&answer, holds_fetch(&response)) {
                                            let Ok(Response::Core(msgs)) = Response::decode(frame) else {
                                                unreachable!("the hostile's own answer")
                                            };
                                            let req = Request::Core { listen: None, msg: msgs[0].clone() };
                                            let mut marked = vec![TRICKLED];
                                            marked.extend(req.encode());
                                            swarm.behaviour_mut().rr.send_request(&peer, marked);
                                            log.lock().unwrap().push(Seen::Answering);
                                        }
                                        Some(Seen::Response(response))
                                    }
                                    _ => None,
                                },
                                _ => None,
                            };
                            if let Some(s) = s {
                                log.lock().unwrap().push(s);
                            }
                        }
                    }
                }
            });
        });
        Hostile {
            id,
            cmds,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Dial the agent and wait for the connection.
    #[track_caller]
    fn connect(&self, f: &LocalFleet, a: &Agent) -> PeerId {
        let id: PeerId = a.id.as_deref().unwrap().parse().unwrap();
        self.cmds
            .send(Cmd::Dial(a.multiaddr(true).parse().unwrap()))
            .unwrap();
        f.wait(
            &format!("the hostile peer to reach {}", a.name),
            DEADLINE,
            || {
                self.seen()
                    .iter()
                    .any(|s| matches!(s, Seen::Connected(p) if *p == id))
                    .then_some(())
            },
        );
        id
    }

    fn send(&self, to: PeerId, req: Request) {
        self.cmds.send(Cmd::Send(to, req.encode())).unwrap();
    }

    fn repeat(&self, to: PeerId, req: Request) {
        self.cmds.send(Cmd::Repeat(to, req.encode())).unwrap();
    }

    /// From now on, answer fetches with this bundle, a trickle of bytes.
    fn trickle(&self, bundle: &Bundle) {
        let msg = Message::<AgentPeer>::Bundle(WireBundle(Arc::new(bundle.clone())));
        let frame = Response::Core(vec![msg.encode()]).encode();
        self.cmds.send(Cmd::AnswerFetches(frame)).unwrap();
    }

    fn closed_by(&self, peer: PeerId) -> bool {
        self.seen()
            .iter()
            .any(|s| matches!(s, Seen::Closed(p) if *p == peer))
    }

    /// Every core message the agent sent this peer: answers on its own streams and requests.
    fn messages(&self) -> Vec<Message<AgentPeer>> {
        let mut out = Vec::new();
        for s in self.seen() {
            match s {
                Seen::Response(bytes) => {
                    if let Ok(Response::Core(msgs)) = Response::decode(&bytes) {
                        out.extend(msgs.iter().filter_map(|m| Message::decode(m).ok()));
                    }
                }
                Seen::Request(bytes) => {
                    if let Ok(Request::Core { msg, .. }) = Request::decode(&bytes) {
                        out.extend(Message::decode(&msg).ok());
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn fetches_of(&self, hash: BundleHash) -> usize {
        self.messages()
            .iter()
            .filter(|m| matches!(m, Message::Fetch(h) if *h == hash))
            .count()
    }

    /// Did the agent answer a hello with its own (that is, admit this peer)?
    fn was_admitted(&self) -> bool {
        self.seen().iter().any(|s| {
            matches!(s, Seen::Response(b) if matches!(Response::decode(b), Ok(Response::Hello(_))))
        })
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn core(msg: Message<AgentPeer>) -> Request {
    Request::Core {
        listen: None,
        msg: msg.encode(),
    }
}

fn announce(bundle: &Bundle) -> Request {
    core(Message::Announce(vec![Announcement {
        channel: bundle.header().channel.clone(),
        version: bundle.header().version,
        hash: bundle.hash(),
        hops: 0,
    }]))
}

fn hello(cert: &Path) -> Request {
    Request::Hello(Hello {
        cert: Some(std::fs::read(cert).unwrap()),
        root: 1,
        revocations: 0,
    })
}

// =============================================================================================

/// Arbitrary installation: a bundle signed by a key the node does not trust, and a trusted
/// bundle with one byte changed, are refused by `verify` and `apply` (nothing changes on disk)
/// and by running agents, wherever they are handed in; the fleet still takes a genuine one.
#[test]
fn arbitrary_installation() {
    let node = Fleet::new();
    let stranger = node.ws.keygen("stranger");
    let d = node.write("defs/web.toml", &web("genuine"));
    let genuine = node.sign(&d, 1, "genuine.bundle");
    node.apply(&genuine, &[]).ok();
    let e = node.write("defs/evil/web.toml", &web("evil"));
    let evil = node.ws.sign(&e, &[&stranger], 2, "evil.bundle", &[]);
    refused_by_cli(&node, &evil, &node.trust, 1, &["untrusted"]);
    let d2 = node.write("defs/v2/web.toml", &web("second"));
    let second = node.sign(&d2, 2, "second.bundle");
    let len = std::fs::metadata(&second).unwrap().len() as usize;
    for pos in [len / 2, len - 1] {
        let bad = flipped(&second, pos, &node.path("flipped.bundle"));
        refused_by_cli(&node, &bad, &node.trust, 1, &["refused", "altered"]);
    }
    assert_eq!(read(&node.in_root(MOTD)), "genuine\n");

    // Three agents; the forgeries are handed to node0's control socket and to node1 over
    // libp2p.
    let mut f = LocalFleet::new("tuf-arb");
    for _ in 0..3 {
        start(&mut f, true);
    }
    let stranger = f.ws.keygen("stranger");
    let evil = sign_with(&f, "evil", "evil", 1, &[&stranger], &[]);
    let good = f.sign("web", &web("v1"), 1);
    let glen = std::fs::metadata(&good).unwrap().len() as usize;
    let bad = flipped(&good, glen / 2, &f.path("bundles/flipped.bundle"));
    let out = f.publish(&evil, &control(&f.agents[0]));
    assert_eq!(out.code, 1, "an untrusted bundle was taken: {out:?}");
    assert!(out.stderr.contains("untrusted"), "{out:?}");
    let out = f.publish(&bad, &f.agents[1].multiaddr(true));
    assert_eq!(out.code, 1, "an altered bundle was taken: {out:?}");
    assert_eq!(f.agents[0].refused("untrusted"), 1);
    assert_eq!(f.agents[1].refused("bad_signature"), 1);
    for a in &f.agents {
        holds_nothing(a);
    }
    // The fleet works: the genuine bundle reaches every node.
    f.publish(&good, &control(&f.agents[2])).ok();
    f.wait_applied(&[0, 1, 2], "web", 1, (MOTD, "v1\n"), DEADLINE);
}

/// Rollback: a lower version after a higher one is refused by `apply` and by an agent, also
/// after the agent restarts (the high-water mark is on disk); so is a lower revocation list.
#[test]
fn rollback() {
    let node = Fleet::new();
    let d1 = node.write("defs/v1/web.toml", &web("one"));
    let d2 = node.write("defs/v2/web.toml", &web("two"));
    let b1 = node.sign(&d1, 1, "v1.bundle");
    let b2 = node.sign(&d2, 2, "v2.bundle");
    node.apply(&b2, &[]).ok();
    let before = node.snapshot();
    node.apply(&b1, &[])
        .code(1)
        .stderr_has(&["v1.bundle", "refused"]);
    node.assert_unchanged(&before, "apply of an older version");
    // A new process holds the same mark.
    node.apply(&b2, &[]).ok();
    assert_eq!(read(&node.in_root(MOTD)), "two\n");

    let mut f = LocalFleet::new("tuf-rollback");
    let admission = f.ws.keygen("admission");
    let root = f.ws.keygen("root");
    let release = f.release.clone();
    f.trust = f.roles_dir("trust-roles", 1, &[&release], 1, &admission, &root);
    let a = start(&mut f, false);
    let v1 = f.sign("web", &web("one"), 1);
    let v2 = f.sign("web", &web("two"), 2);
    f.publish(&v2, &control(&f.agents[a])).ok();
    f.wait_applied(&[a], "web", 2, (MOTD, "two\n"), DEADLINE);
    let stored = std::fs::read(f.agents[a].state.join("bundles/web.bundle")).unwrap();
    let out = f.publish(&v1, &control(&f.agents[a]));
    assert_eq!(out.code, 1, "an older version was taken: {out:?}");
    assert_eq!(f.agents[a].refused("rolled_back"), 1);

    // Revocation lists have a high-water mark of their own.
    let revoke = |v: u64| {
        let out = f.path(&format!("revoked-{v}.bundle"));
        let someone = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
            .to_string();
        f.ws.run([
            "revoke".to_string(),
            someone,
            "--key".into(),
            path_str(&admission.private),
            "--version".into(),
            v.to_string(),
            "--trust".into(),
            path_str(&f.trust),
            "--out".into(),
            path_str(&out),
        ])
        .ok();
        out
    };
    let (r1, r2) = (revoke(1), revoke(2));
    f.publish(&r2, &control(&f.agents[a]))
        .ok()
        .stdout_has(&["revocation list v2"]);
    let out = f.publish(&r1, &control(&f.agents[a]));
    assert_eq!(out.code, 1, "an older revocation list was taken: {out:?}");
    assert_eq!(f.agents[a].refused("rolled_back"), 2);

    // After a restart: the same refusals, from the marks on disk.
    f.agents[a].kill9();
    f.agents[a].spawn();
    f.agents[a].wait_ready(DEADLINE);
    for old in [&v1, &r1] {
        let out = f.publish(old, &control(&f.agents[a]));
        assert_eq!(out.code, 1, "taken after a restart: {out:?}");
    }
    assert_eq!(f.agents[a].refused("rolled_back"), 2);
    let s = f.agents[a].status();
    assert_eq!(s["channels"]["web"]["version"], 2, "{s:#}");
    assert_eq!(s["trust"]["revocations_version"], 2, "{s:#}");
    assert_eq!(f.agents[a].read(MOTD).as_deref(), Some("two\n"));
    assert_eq!(
        std::fs::read(f.agents[a].state.join("bundles/web.bundle")).unwrap(),
        stored,
        "the stored bundle changed"
    );
}

/// Indefinite freeze: every bundle expires. An expired bundle is refused by `verify`, `apply`
/// and an agent; the bundle a node applied keeps being enforced after it expires, and its
/// channel says `"stale": true`.
#[test]
fn indefinite_freeze() {
    let node = Fleet::new();
    let strict = node.ws.trust_dir(
        "trust-strict",
        &[&node.release],
        Some("clock_skew = \"0s\"\n"),
    );
    let d1 = node.write("defs/v1/web.toml", &web("one"));
    node.apply(&node.sign(&d1, 1, "v1.bundle"), &[]).ok();
    let d2 = node.write("defs/v2/web.toml", &web("two"));
    let old = node.ws.sign(
        &d2,
        &[&node.release],
        2,
        "v2-expired.bundle",
        &["--expires", "0s"],
    );
    // Expiry is in whole seconds: wait (at most a second) until it has passed.
    wait_for(
        "the bundle to expire",
        Duration::from_secs(5),
        || (node.verify_with(&old, &strict).code == 1).then_some(()),
        String::new,
    );
    refused_by_cli(&node, &old, &strict, 1, &["refused", "expired"]);
    assert_eq!(read(&node.in_root(MOTD)), "one\n");

    let mut f = LocalFleet::new("tuf-freeze");
    f.trust = f.ws.trust_dir(
        "trust-strict",
        &[&f.release],
        Some(&format!(
            "fleet = \"{}\"\nclock_skew = \"0s\"\n",
            f.fleet_name
        )),
    );
    let a = start(&mut f, false);
    let short = sign_with(&f, "web-v1", "one", 1, &[&f.release], &["--expires", "2s"]);
    f.publish(&short, &control(&f.agents[a])).ok();
    f.wait_applied(&[a], "web", 1, (MOTD, "one\n"), DEADLINE);
    f.wait("the applied bundle to turn stale", DEADLINE, || {
        (f.agents[a].try_status()?["channels"]["web"]["stale"] == true).then_some(())
    });
    // Still enforced: drift is undone.
    std::fs::write(f.agents[a].in_root(MOTD), "changed\n").unwrap();
    f.wait("the stale bundle to undo drift", DEADLINE, || {
        (f.agents[a].read(MOTD)? == "one\n").then_some(())
    });
    let expired = sign_with(&f, "web-v2", "two", 2, &[&f.release], &["--expires", "0s"]);
    f.wait("v2 to expire", Duration::from_secs(5), || {
        let out = f.ws.run([
            "verify".to_string(),
            path_str(&expired),
            "--trust".into(),
            path_str(&f.trust),
        ]);
        (out.code == 1).then_some(())
    });
    let out = f.publish(&expired, &control(&f.agents[a]));
    assert_eq!(out.code, 1, "an expired bundle was taken: {out:?}");
    assert!(f.agents[a].refused("expired") >= 1);
    let s = f.agents[a].status();
    assert_eq!(s["channels"]["web"]["version"], 1, "{s:#}");
    assert_eq!(s["channels"]["web"]["stale"], true, "{s:#}");
    assert_eq!(f.agents[a].read(MOTD).as_deref(), Some("one\n"));
}

/// Endless data: a bundle over `max_bundle_bytes` is refused before it is read or decoded,
/// by `verify`/`apply`, by an agent it is published to (control socket or libp2p), and when a
/// peer answers a fetch with a padded copy of a genuine bundle (then that peer is cut off).
#[test]
fn endless_data() {
    let node = Fleet::new();
    let small = node.ws.trust_dir(
        "trust-small",
        &[&node.release],
        Some("max_bundle_bytes = 1024\n"),
    );
    let big_text = "x".repeat(4000);
    let d = node.write("defs/big/web.toml", &web(&big_text));
    let big = node.sign(&d, 1, "big.bundle");
    refused_by_cli(
        &node,
        &big,
        &small,
        2,
        &["over the bundle size limit of 1024 bytes"],
    );
    // A sparse file of 4 GiB against the default limit of 64 MiB: refused unread, at once.
    let huge = node.path("huge.bundle");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let t = Instant::now();
    refused_by_cli(
        &node,
        &huge,
        &node.trust,
        2,
        &["over the bundle size limit"],
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let mut f = LocalFleet::new("tuf-endless");
    f.trust = f.ws.trust_dir(
        "trust-small",
        &[&f.release],
        Some(&format!(
            "fleet = \"{}\"\nmax_bundle_bytes = 2048\n",
            f.fleet_name
        )),
    );
    let a = start(&mut f, false);
    let big = sign_with(&f, "big", &big_text, 1, &[&f.release], &[]);
    let out = f.publish(&big, &control(&f.agents[a]));
    assert_eq!(out.code, 1, "{out:?}");
    let out = f.publish(&big, &f.agents[a].multiaddr(true));
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(f.agents[a].refused("oversized"), 2);
    holds_nothing(&f.agents[a]);

    // Over the network: a peer announces a bundle over the limit and hands it over when
    // asked (it came off the wire under the wire's own, larger limit); another announces a
    // genuine small bundle and answers the fetch with a copy padded past the limit (same
    // signed bytes, same hash; a signature of 100 KB). Both are refused and cut off.
    let genuine = f.sign("web", &web("v1"), 1);
    let (file, signed) = parts(&genuine);
    let mut sigs = file.signatures.clone();
    sigs[0].sig.extend(vec![0u8; 100_000]);
    let padded = Bundle::decode(&assemble(&signed, &sigs), usize::MAX).unwrap();
    assert_eq!(padded.hash(), bundle_of(&genuine).hash());
    for (n, offered) in [bundle_of(&big), padded].into_iter().enumerate() {
        let h = Hostile::start(&f.fleet_name);
        let to = h.connect(&f, &f.agents[a]);
        h.send(to, announce(&offered));
        f.wait("the agent to fetch from the hostile peer", DEADLINE, || {
            (h.fetches_of(offered.hash()) >= 1).then_some(())
        });
        h.send(to, core(Message::Bundle(WireBundle(Arc::new(offered)))));
        wait_refused(&f, a, "oversized", 3 + n as u64);
        f.wait("the agent to cut the hostile peer off", DEADLINE, || {
            h.closed_by(to).then_some(())
        });
    }
    holds_nothing(&f.agents[a]);
    // The genuine bundle is still taken.
    f.publish(&genuine, &control(&f.agents[a])).ok();
    f.wait_applied(&[a], "web", 1, (MOTD, "v1\n"), DEADLINE);
}

/// Mix-and-match: parts of different bundles put together (a header with another bundle's
/// definition, one bundle's signatures on another's content, a header whose content hash was
/// made to fit) are refused, and change nothing.
#[test]
fn mix_and_match() {
    let node = Fleet::new();
    let d1 = node.write("defs/v1/web.toml", &web("one"));
    let d2 = node.write("defs/v2/web.toml", &web("two"));
    let b1 = node.sign(&d1, 1, "v1.bundle");
    let b2 = node.sign(&d2, 2, "v2.bundle");
    node.apply(&b1, &[]).ok();
    let (f1, s1) = parts(&b1);
    let (f2, s2) = parts(&b2);
    let write = |name: &str, bytes: Vec<u8>| {
        let p = node.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // v2's header over v1's definition, v2's signature: the signature covers both together.
    let mixed = SignedParts {
        header: s2.header.clone(),
        definition: s1.definition.clone(),
    };
    let a = write("header2-def1.bundle", assemble(&mixed, &f2.signatures));
    refused_by_cli(&node, &a, &node.trust, 1, &["refused", "altered"]);
    // The same, with the content hash in the header made to fit the definition.
    let mut fitted = mixed.clone();
    fitted.header.content_hash = s1.header.content_hash;
    let b = write("fitted.bundle", assemble(&fitted, &f2.signatures));
    refused_by_cli(&node, &b, &node.trust, 1, &["refused", "altered"]);
    // v2's content under v1's signature, and v1's content (v1 already applied) with its
    // version raised.
    let c = write("content2-sig1.bundle", assemble(&s2, &f1.signatures));
    refused_by_cli(&node, &c, &node.trust, 1, &["refused", "altered"]);
    let mut raised = s1.clone();
    raised.header.version = 3;
    let d = write("raised.bundle", assemble(&raised, &f1.signatures));
    refused_by_cli(&node, &d, &node.trust, 1, &["refused", "altered"]);
    // Two of two keys must sign: one signature over this content and one taken from another
    // bundle, by the other key, make one signature, not two.
    let second = node.ws.keygen("second");
    let two_of_two = node.ws.trust_dir(
        "trust-two-of-two",
        &[&node.release, &second],
        Some("threshold = 2\n"),
    );
    let d3 = node.write("defs/v3/web.toml", &web("three"));
    let b3 = node.ws.sign(&d3, &[&second], 3, "v3-second.bundle", &[]);
    let (f3, _) = parts(&b3);
    let mut both = f2.signatures.clone();
    both.extend(f3.signatures.clone());
    let e = write("two-bundles-sigs.bundle", assemble(&s2, &both));
    refused_by_cli(&node, &e, &two_of_two, 1, &["refused"]);
    assert_eq!(read(&node.in_root(MOTD)), "one\n");
    // The genuine v2 applies.
    node.apply(&b2, &[]).ok();
    assert_eq!(read(&node.in_root(MOTD)), "two\n");
}

/// Malicious peers, in an admitted fleet: a peer with a self-made certificate gets no
/// conversation; an admitted peer that sends garbage is cut off and kept out; an admitted
/// peer that answers a fetch with a forged copy of a genuine bundle is cut off, the copy is
/// refused, and the genuine bundle still arrives from an honest peer.
#[test]
fn malicious_peers() {
    let mut f = LocalFleet::new("tuf-peers");
    let admission = f.ws.keygen("admission");
    let root = f.ws.keygen("root");
    let release = f.release.clone();
    f.trust = f.roles_dir("trust-roles", 1, &[&release], 1, &admission, &root);
    for i in 0..2 {
        let a = f.add();
        pre_admit(&mut f, a, &admission);
        f.agents[a].metrics = Some(free_port());
        if i > 0 {
            let door = f.agents[0].multiaddr(false);
            f.agents[a].peers.push(door);
        }
        f.agents[a].spawn();
        f.agents[a].wait_ready(DEADLINE);
    }
    f.wait("the two nodes to admit each other", DEADLINE, || {
        (f.agents[0].try_status()?["peers"]["active"] == 1
            && f.agents[1].try_status()?["peers"]["active"] == 1)
            .then_some(())
    });

    // 1. A certificate signed by the rogue's own "admission" key.
    let rogue_admission = f.ws.keygen("rogue-admission");
    let forger = Hostile::start(&f.fleet_name);
    let cert = f.path("forger.cert");
    f.admit(&forger.id.to_string(), &rogue_admission, "role=web", &cert)
        .ok();
    let n0 = forger.connect(&f, &f.agents[0]);
    forger.send(n0, hello(&cert));
    wait_refused(&f, 0, "untrusted_certificate", 1);
    f.wait("node0 to close the forger's connection", DEADLINE, || {
        forger.closed_by(n0).then_some(())
    });
    assert!(!forger.was_admitted());

    // 2. An admitted peer that sends a message that does not decode.
    let noisy = Hostile::start(&f.fleet_name);
    let cert = f.path("noisy.cert");
    f.admit(&noisy.id.to_string(), &admission, "role=web", &cert)
        .ok();
    noisy.connect(&f, &f.agents[0]);
    noisy.send(n0, hello(&cert));
    f.wait("node0 to admit the noisy peer", DEADLINE, || {
        noisy.was_admitted().then_some(())
    });
    noisy.send(
        n0,
        Request::Core {
            listen: None,
            msg: b"DLWM\x02\x00 this is not a message".to_vec(),
        },
    );
    wait_refused(&f, 0, "malformed", 1);
    f.wait("node0 to cut the noisy peer off", DEADLINE, || {
        noisy.closed_by(n0).then_some(())
    });
    // It comes back at once: kept out.
    let kept_out = f.agents[0].refused("kept_out");
    noisy.clear();
    noisy.connect(&f, &f.agents[0]);
    wait_refused(&f, 0, "kept_out", kept_out + 1);
    f.wait("node0 to close the returning noisy peer", DEADLINE, || {
        noisy.closed_by(n0).then_some(())
    });

    // 3. An admitted peer announces a genuine bundle and serves a copy with a forged
    //    signature: same signed bytes, so the same hash.
    let genuine = f.sign("web", &web("v1"), 1);
    let (file, signed) = parts(&genuine);
    let mut sigs = file.signatures.clone();
    sigs[0].sig[0] ^= 0x01;
    let forged = Bundle::decode(&assemble(&signed, &sigs), usize::MAX).unwrap();
    assert_eq!(forged.hash(), bundle_of(&genuine).hash());
    let liar = Hostile::start(&f.fleet_name);
    let cert = f.path("liar.cert");
    f.admit(&liar.id.to_string(), &admission, "role=web", &cert)
        .ok();
    liar.connect(&f, &f.agents[0]);
    liar.send(n0, hello(&cert));
    f.wait("node0 to admit the liar", DEADLINE, || {
        liar.was_admitted().then_some(())
    });
    liar.send(n0, announce(&forged));
    f.wait("node0 to fetch from the liar", DEADLINE, || {
        (liar.fetches_of(forged.hash()) >= 1).then_some(())
    });
    liar.send(n0, core(Message::Bundle(WireBundle(Arc::new(forged)))));
    wait_refused(&f, 0, "bad_signature", 1);
    f.wait("node0 to cut the liar off", DEADLINE, || {
        liar.closed_by(n0).then_some(())
    });
    holds_nothing(&f.agents[0]);
    // The genuine bundle, published on node1, still reaches node0.
    f.publish(&genuine, &control(&f.agents[1])).ok();
    f.wait_applied(&[0, 1], "web", 1, (MOTD, "v1\n"), DEADLINE);
    f.ws.run([
        "verify".to_string(),
        path_str(&f.agents[0].state.join("bundles/web.bundle")),
        "--trust".into(),
        path_str(&f.trust),
    ])
    .ok();
    // None of them is in anyone's fleet view.
    for a in &f.agents {
        let v = a.fleet();
        for h in [&forger, &noisy, &liar] {
            let id = h.id.to_string();
            assert!(
                !v["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n["node"] == id.as_str()),
                "{} lists a hostile peer: {v:#}",
                a.name
            );
        }
    }
}

/// Slow retrieval: a peer that announces a version and then never hands it over, or hands
/// it over as a trickle of bytes, does not hold a node back; the node asks another peer that
/// announced it, well before the transport's own 10 s request timeout.
#[test]
fn slow_retrieval() {
    for trickle in [false, true] {
        slow_retrieval_by(trickle);
    }
}

fn slow_retrieval_by(trickle: bool) {
    let how = if trickle { "trickling" } else { "withholding" };
    let mut f = LocalFleet::new(&format!("tuf-slow-{how}"));
    let a = start(&mut f, false);
    let b = start(&mut f, true);
    f.wait("the two nodes to meet", DEADLINE, || {
        (f.agents[a].try_status()?["peers"]["active"] == 1).then_some(())
    });
    let v1 = f.sign("web", &web("v1"), 1);
    let bundle = bundle_of(&v1);
    let h = Hostile::start(&f.fleet_name);
    if trickle {
        // The whole answer would take this long to arrive:
        let frame = Response::Core(vec![Message::<AgentPeer>::Bundle(WireBundle(Arc::new(
            bundle.clone(),
        )))
        .encode()])
        .encode();
        let secs = (frame.len() + 4).div_ceil(TRICKLE_BYTES) as f64 * TRICKLE_EVERY.as_secs_f64();
        assert!(
            secs > 5.0,
            "the trickle must outlast the test's bound ({secs} s)"
        );
        h.trickle(&bundle);
    }
    let to = h.connect(&f, &f.agents[a]);
    h.repeat(to, announce(&bundle));
    f.wait(&format!("node0 to ask the {how} peer"), DEADLINE, || {
        (h.fetches_of(bundle.hash()) >= 1).then_some(())
    });
    let t = Instant::now();
    f.publish(&v1, &control(&f.agents[b])).ok();
    f.wait_applied(&[a, b], "web", 1, (MOTD, "v1\n"), DEADLINE);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "node0 took {took:?} to get the bundle past the {how} peer"
    );
    assert!(h.fetches_of(bundle.hash()) >= 1);
    if trickle {
        assert!(
            h.seen().iter().any(|s| matches!(s, Seen::Answering)),
            "the trickling peer never began an answer"
        );
    }
}

/// Key compromise: one stolen key of a 2-of-n release role cannot publish; after a root
/// rotation, keys rotated out sign nothing (on a running agent, and after its restart).
#[test]
fn key_compromise() {
    let mut f = LocalFleet::new("tuf-keys");
    let admission = f.ws.keygen("admission");
    let root = f.ws.keygen("root");
    let release = f.release.clone();
    let release_b = f.ws.keygen("release-b");
    f.trust = f.roles_dir("trust-v1", 1, &[&release, &release_b], 2, &admission, &root);
    let a = start(&mut f, false);
    let one = sign_with(&f, "v1-one-key", "one", 1, &[&release], &[]);
    let out = f.publish(&one, &control(&f.agents[a]));
    assert_eq!(out.code, 1, "one key of two was enough: {out:?}");
    assert_eq!(f.agents[a].refused("untrusted"), 1);
    holds_nothing(&f.agents[a]);
    let both = sign_with(&f, "v1-two-keys", "one", 1, &[&release, &release_b], &[]);
    f.publish(&both, &control(&f.agents[a])).ok();
    f.wait_applied(&[a], "web", 1, (MOTD, "one\n"), DEADLINE);

    // A stolen key cannot sign a new root, however many release keys it has with it.
    let next_bad = f.roles_dir("trust-stolen", 2, &[&release], 1, &admission, &release);
    let out = f.sign_root(
        &next_bad,
        &[&release, &release_b],
        &f.path("root-stolen.signed"),
    );
    assert_ne!(out.code, 0, "release keys signed a root: {out:?}");

    // Rotate both release keys out for a new one.
    let release_c = f.ws.keygen("release-c");
    let next = f.roles_dir("trust-v2", 2, &[&release_c], 1, &admission, &root);
    let signed_root = f.path("root-2.signed");
    f.sign_root(&next, &[&root], &signed_root).ok();
    f.publish(&signed_root, &control(&f.agents[a]))
        .ok()
        .stdout_has(&["trust root v2"]);
    let old = sign_with(&f, "v2-old-keys", "stolen", 2, &[&release, &release_b], &[]);
    for round in 0..2 {
        let out = f.publish(&old, &control(&f.agents[a]));
        assert_eq!(
            out.code, 1,
            "rotated-out keys published (round {round}): {out:?}"
        );
        assert!(f.agents[a].refused("untrusted") >= 1);
        if round == 0 {
            f.agents[a].kill9();
            f.agents[a].spawn();
            f.agents[a].wait_ready(DEADLINE);
            assert_eq!(f.agents[a].status()["trust"]["root_version"], 2);
        }
    }
    assert_eq!(f.agents[a].read(MOTD).as_deref(), Some("one\n"));
    let new = sign_with(&f, "v2-new-key", "two", 2, &[&release_c], &[]);
    f.publish(&new, &control(&f.agents[a])).ok();
    f.wait_applied(&[a], "web", 2, (MOTD, "two\n"), DEADLINE);
}
