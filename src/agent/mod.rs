//! The agent: the protocol core driven by libp2p and tokio, plus the local work around it
//! (apply worker, drift watch, health checks, control socket, metrics).

pub mod admission;
pub mod config;
pub mod control;
pub mod files;
pub mod health;
pub mod metrics;
pub mod peer;
pub mod run;
pub mod sdnotify;
pub mod transport;
pub mod worker;
