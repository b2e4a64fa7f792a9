//! `driftless publish`: hand a bundle (or a signed trust root, or a revocation list) to one
//! node; gossip does the rest.

use super::{CliError, CliResult};
use crate::agent::control::{self, ControlRequest};
use crate::agent::transport::{self, Request, Response};
use anyhow::anyhow;
use futures::StreamExt;
use libp2p::request_response as rr;
use libp2p::swarm::SwarmEvent;
use std::path::PathBuf;
use std::time::Duration;

/// How long to wait for the node to answer before giving up.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(20);

/// Hand a signed bundle to any one node of the fleet: to its control socket (a path), or to
/// its libp2p address (a multiaddr, as a short client connection that needs no certificate).
/// The node verifies it like any other bundle; exit 1 when it refuses it. A signed trust root
/// (`driftless root`) or revocation list (`driftless revoke`) is handed over the same way and
/// spreads to every node like a bundle.
#[derive(clap::Args, Debug)]
pub struct Args {
    pub bundle: PathBuf,
    /// A node's multiaddr (/ip4/127.0.0.1/tcp/7400[/p2p/ID]) or control socket path
    #[arg(long, value_name = "ADDR|SOCKET")]
    pub to: String,
}

pub fn run(a: Args) -> CliResult {
    let bytes =
        super::read_bundle_file(&a.bundle, driftless_core::trust::DEFAULT_MAX_BUNDLE_BYTES)?;
    let (ok, message) = if a.to.starts_with('/') && a.to.contains("/tcp/") {
        let addr: libp2p::Multiaddr =
            a.to.parse()
                .map_err(|e| CliError::bad(anyhow!("--to {}: {e}", a.to)))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CliError::failed)?;
        rt.block_on(over_libp2p(addr, bytes))
            .map_err(CliError::failed)?
    } else {
        let v = control::request(
            std::path::Path::new(&a.to),
            &ControlRequest::Publish {
                bundle: hex::encode(&bytes),
            },
        )
        .map_err(CliError::failed)?;
        (
            v["ok"].as_bool().unwrap_or(false),
            v["message"].as_str().unwrap_or("").to_string(),
        )
    };
    if ok {
        println!("{message}");
        Ok(0)
    } else {
        Err(CliError::failed(anyhow!(
            "{}: {message}",
            a.bundle.display()
        )))
    }
}

async fn over_libp2p(addr: libp2p::Multiaddr, bundle: Vec<u8>) -> anyhow::Result<(bool, String)> {
    // The node speaks the protocol of its fleet only; what is published names the fleet.
    let fleet = fleet_of(&bundle)?;
    let mut swarm = transport::swarm(libp2p::identity::Keypair::generate_ed25519(), &fleet)?;
    let (dial, peer) = transport::split_peer_addr(&addr);
    let frame = Request::Publish(bundle).encode();
    let peer = match peer {
        Some(p) => p,
        None => {
            // Learn the node's peer id by connecting first.
            swarm.dial(dial.clone())?;
            let fut = async {
                loop {
                    match swarm.select_next_some().await {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => return Ok(peer_id),
                        SwarmEvent::OutgoingConnectionError { error, .. } => {
                            return Err(anyhow!("cannot connect to {addr}: {error}"))
                        }
                        _ => {}
                    }
                }
            };
            tokio::time::timeout(PUBLISH_TIMEOUT, fut)
                .await
                .map_err(|_| anyhow!("no answer from {addr}"))??
        }
    };
    swarm.behaviour_mut().rr.send_request_with_addresses(
        &peer,
        transport::Frame::out(frame),
        vec![dial],
    );
    let fut = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(transport::BehaviourEvent::Rr(rr::Event::Message {
                    message: rr::Message::Response { response, .. },
                    ..
                })) => {
                    return match Response::decode(&response.bytes) {
                        Ok(Response::Published { ok, message }) => Ok((ok, message)),
                        Ok(Response::Ack) | Ok(Response::Core(_)) => {
                            Ok((true, "handed over".to_string()))
                        }
                        Ok(Response::Refused { reason, .. }) => {
                            Ok((false, format!("refused: {reason}")))
                        }
                        Ok(Response::Hello(_)) => {
                            Err(anyhow!("bad answer from {addr}: a hello to a publish"))
                        }
                        Err(e) => Err(anyhow!("bad answer from {addr}: {e}")),
                    }
                }
                SwarmEvent::Behaviour(transport::BehaviourEvent::Rr(
                    rr::Event::OutboundFailure { error, .. },
                )) => return Err(anyhow!("publishing to {addr}: {error}")),
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(anyhow!("cannot connect to {addr}: {error}"))
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(PUBLISH_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("no answer from {addr}"))?
}

/// The fleet a bundle, signed root or revocation list names.
fn fleet_of(bytes: &[u8]) -> anyhow::Result<String> {
    use driftless_core::admission::{SignedRevocationList, CERTIFICATE_MAGIC, REVOCATIONS_MAGIC};
    use driftless_core::root::{SignedRoot, ROOT_MAGIC};
    if bytes.starts_with(ROOT_MAGIC) {
        return SignedRoot::decode(bytes)
            .map(|r| r.doc().fleet.clone())
            .map_err(|e| anyhow!("not a signed root: {e}"));
    }
    if bytes.starts_with(REVOCATIONS_MAGIC) {
        return SignedRevocationList::decode(bytes)
            .map(|l| l.list().fleet.clone())
            .map_err(|e| anyhow!("not a revocation list: {e}"));
    }
    if bytes.starts_with(CERTIFICATE_MAGIC) {
        anyhow::bail!(
            "a node certificate is not published: put it in that node's state directory as node.cert"
        );
    }
    driftless_core::bundle::Bundle::decode(bytes, usize::MAX)
        .map(|b| b.header().fleet.clone())
        .map_err(|e| anyhow!("not a bundle: {e}"))
}
