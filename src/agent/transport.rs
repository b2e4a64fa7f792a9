//! The libp2p side: TCP + Noise + Yamux, and one request-response protocol that carries
//! protocol-core messages (and bundles handed over by `driftless publish`) as frames.
//!
//! This is an adapter only: frames in, frames out. No protocol rules live here.

use super::peer::AgentPeer;
use driftless_core::encoding::{self, DecodeError};
use driftless_core::proto::message::{MESSAGE_FORMAT, OLDEST_WRITTEN_FORMAT};
use driftless_core::proto::Message;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identity, StreamProtocol, Swarm};
use serde::{Deserialize, Serialize};
use std::io;
use std::time::Duration;

/// The protocol name is `/driftless/F/FLEET`: nodes of different fleets cannot even agree on a
/// protocol, so a node that does not know the fleet name gets no conversation. `F` is the
/// message format the stream's core messages are written in (`/driftless/1/` is the name
/// agents of formats 1 and 2 used, and carries format 2).
pub const PROTOCOL_PREFIX: &str = "/driftless/";

/// The protocol this node prefers: core messages in today's format.
pub fn protocol(fleet: &str) -> anyhow::Result<StreamProtocol> {
    protocol_for(fleet, MESSAGE_FORMAT)
}

/// The protocol of the previous release's agents: core messages in format 2. Every agent also
/// speaks it, so that a fleet can be upgraded one node at a time: a stream to an older peer
/// negotiates this one, and what goes on it is written as format 2 (`Message::encode_as`).
pub fn legacy_protocol(fleet: &str) -> anyhow::Result<StreamProtocol> {
    protocol_for(fleet, OLDEST_WRITTEN_FORMAT)
}

/// The message format a stream of this protocol carries.
pub fn format_of(protocol: &StreamProtocol) -> u16 {
    protocol
        .as_ref()
        .strip_prefix(PROTOCOL_PREFIX)
        .and_then(|rest| rest.split('/').next())
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|v| *v >= MESSAGE_FORMAT)
        .unwrap_or(OLDEST_WRITTEN_FORMAT)
}

fn protocol_for(fleet: &str, format: u16) -> anyhow::Result<StreamProtocol> {
    if fleet.is_empty()
        || !fleet
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        anyhow::bail!("fleet name `{fleet}` may only hold letters, digits, `-`, `_` and `.`");
    }
    let version = if format >= MESSAGE_FORMAT { format } else { 1 };
    StreamProtocol::try_from_owned(format!("{PROTOCOL_PREFIX}{version}/{fleet}"))
        .map_err(|e| anyhow::anyhow!("fleet name `{fleet}`: {e}"))
}
const FRAME_MAGIC: &[u8; 4] = b"DLTF";
const FRAME_FORMAT: u16 = 1;
/// A frame holds at most one message of the core (1 MiB) or one bundle (the fleet's bundle
/// limit, 64 MiB by default), plus a little framing; checked before anything is allocated.
pub const MAX_FRAME_BYTES: usize = driftless_core::proto::config::limits::MAX_MESSAGE_BYTES
    + driftless_core::trust::DEFAULT_MAX_BUNDLE_BYTES
    + 4096;
/// An unanswered request fails after this long (slow retrieval is the core's fetch timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections with nothing to do are closed after this long; active peers ping far more often.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What one request carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// An encoded core message, and where the sender listens (so it can be dialled back).
    Core {
        listen: Option<String>,
        msg: Vec<u8>,
    },
    /// A bundle handed to this node by `driftless publish` (a short client connection), or a
    /// signed trust root or revocation list.
    Publish(Vec<u8>),
    /// The first request on a connection in an admitted fleet: the sender's certificate and
    /// the versions of the trust root and revocation list it holds.
    Hello(Hello),
    /// A signed trust root or revocation list, pushed to a peer that holds an older one.
    Trust(Vec<u8>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub cert: Option<Vec<u8>>,
    pub root: u64,
    pub revocations: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Ack,
    /// The receiver's answers to the sender (a bundle for a fetch, a digest for a digest…),
    /// carried on the request's own stream instead of new requests: one stream less per
    /// exchange. Decoding keeps the first [`MAX_REPLIES`].
    Core(#[serde(deserialize_with = "first_replies")] Vec<Vec<u8>>),
    Published {
        ok: bool,
        message: String,
    },
    /// The answer to a hello: the receiver's own.
    Hello(Hello),
    /// The receiver will not talk to the sender (its certificate was refused), or does not
    /// know it yet (`hello` true: say hello first).
    Refused {
        reason: String,
        hello: bool,
    },
}

/// Messages carried back in one response that are read, at most (the core answers one
/// message with a few).
pub const MAX_REPLIES: usize = 16;

/// The first [`MAX_REPLIES`] answers of a response; the rest are read and dropped one by one.
/// Collecting them all let a 64 MiB frame of empty answers take 24 bytes of memory per byte.
fn first_replies<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
    struct First;
    impl<'de> serde::de::Visitor<'de> for First {
        type Value = Vec<Vec<u8>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of encoded messages")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(m) = seq.next_element::<Vec<u8>>()? {
                if out.len() < MAX_REPLIES {
                    out.push(m);
                }
            }
            Ok(out)
        }
    }
    d.deserialize_seq(First)
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(FRAME_MAGIC, FRAME_FORMAT, self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (_v, body) = encoding::open("frame", FRAME_MAGIC, FRAME_FORMAT, bytes)?;
        encoding::body("frame", body)
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(FRAME_MAGIC, FRAME_FORMAT, self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (_v, body) = encoding::open("frame", FRAME_MAGIC, FRAME_FORMAT, bytes)?;
        encoding::body("frame", body)
    }
}

/// A frame as it crosses a stream: its bytes and the message format of the stream's protocol.
/// On the way out the format is ignored (the stream's protocol decides it); on the way in
/// it says what the peer may send: a core message newer than it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub format: u16,
}

impl Frame {
    /// A frame to send (the format it goes out in is the stream's).
    pub fn out(bytes: Vec<u8>) -> Frame {
        Frame {
            bytes,
            format: MESSAGE_FORMAT,
        }
    }

    /// The core message format of the first message this frame carries that is newer than
    /// the stream's, if any (the frame is then refused).
    pub fn newer_than_stream(&self, msgs: &[&[u8]]) -> Option<u16> {
        msgs.iter()
            .filter_map(|m| Message::<AgentPeer>::format_of(m))
            .find(|f| *f > self.format)
    }
}

/// Length-prefixed frames; decoding happens in the agent, where refusals are counted. On a
/// stream of an older protocol the core messages of a frame are written in that protocol's
/// format (decoded and encoded again: only while a fleet is being upgraded).
#[derive(Debug, Clone, Default)]
pub struct FrameCodec;

/// A core message rewritten for a stream of message format `format`; a message that format
/// does not have goes as a `Ping` (a request must carry something; any message is a sign of
/// life).
fn core_for(msg: Vec<u8>, format: u16) -> Vec<u8> {
    if Message::<AgentPeer>::format_of(&msg).is_none_or(|f| f <= format) {
        return msg;
    }
    match Message::<AgentPeer>::decode(&msg) {
        Ok(m) => m
            .encode_as(format)
            .or_else(|| Message::<AgentPeer>::Ping.encode_as(format))
            .unwrap_or(msg),
        Err(_) => msg,
    }
}

fn request_for(frame: Vec<u8>, format: u16) -> Vec<u8> {
    if format >= MESSAGE_FORMAT {
        return frame;
    }
    match Request::decode(&frame) {
        Ok(Request::Core { listen, msg }) => Request::Core {
            listen,
            msg: core_for(msg, format),
        }
        .encode(),
        _ => frame,
    }
}

fn response_for(frame: Vec<u8>, format: u16) -> Vec<u8> {
    if format >= MESSAGE_FORMAT {
        return frame;
    }
    match Response::decode(&frame) {
        Ok(Response::Core(msgs)) => Response::Core(
            msgs.into_iter()
                .filter_map(|m| {
                    let kept = core_for(m, format);
                    // In a response, a message the older format lacks is left out.
                    (Message::<AgentPeer>::format_of(&kept).is_none_or(|f| f <= format))
                        .then_some(kept)
                })
                .collect(),
        )
        .encode(),
        _ => frame,
    }
}

/// Read one length-prefixed frame, refusing one over [`MAX_FRAME_BYTES`] before allocating.
pub async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit of {MAX_FRAME_BYTES}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

#[async_trait::async_trait]
impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Frame;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Frame> {
        Ok(Frame {
            bytes: read_frame(io).await?,
            format: format_of(p),
        })
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Frame> {
        Ok(Frame {
            bytes: read_frame(io).await?,
            format: format_of(p),
        })
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()> {
        write_frame(io, &request_for(req.bytes, format_of(p))).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        res: Frame,
    ) -> io::Result<()> {
        write_frame(io, &response_for(res.bytes, format_of(p))).await
    }
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub rr: request_response::Behaviour<FrameCodec>,
}

/// Set (to anything) in an agent's environment, it speaks only the previous release's
/// protocol (message format 2) and refuses anything newer on it, as an agent of that release
/// would: for tests of a fleet in the middle of an upgrade.
pub const LEGACY_ONLY_ENV: &str = "DRIFTLESS_TEST_LEGACY_WIRE";

/// A swarm on the tokio runtime with this node's key, speaking today's protocol (preferred)
/// and the previous release's.
pub fn swarm(key: identity::Keypair, fleet: &str) -> anyhow::Result<Swarm<Behaviour>> {
    let mut protocols = vec![(protocol(fleet)?, ProtocolSupport::Full)];
    if std::env::var_os(LEGACY_ONLY_ENV).is_some() {
        tracing::warn!("{LEGACY_ONLY_ENV} is set: speaking message format 2 only");
        protocols.clear();
    }
    protocols.push((legacy_protocol(fleet)?, ProtocolSupport::Full));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )?
        .with_behaviour(|_| Behaviour {
            rr: request_response::Behaviour::with_codec(
                FrameCodec,
                protocols,
                request_response::Config::default()
                    .with_request_timeout(REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(256),
            ),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    Ok(swarm)
}

/// Split `/ip4/1.2.3.4/tcp/7400/p2p/12D3...` into the address and the peer id (if given).
pub fn split_peer_addr(addr: &libp2p::Multiaddr) -> (libp2p::Multiaddr, Option<libp2p::PeerId>) {
    let mut a = addr.clone();
    match a.pop() {
        Some(libp2p::multiaddr::Protocol::P2p(id)) => (a, Some(id)),
        Some(other) => {
            a.push(other);
            (a, None)
        }
        None => (a, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_keeps_its_first_replies_only() {
        let many = Response::Core((0..1000u32).map(|i| i.to_le_bytes().to_vec()).collect());
        let Ok(Response::Core(kept)) = Response::decode(&many.encode()) else {
            panic!("a response with many replies decodes");
        };
        assert_eq!(kept.len(), MAX_REPLIES);
        assert_eq!(kept[3], 3u32.to_le_bytes());
    }
}
