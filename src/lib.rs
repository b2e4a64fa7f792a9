//! driftless: signed configuration definitions, converged on every server, drift undone.
//!
//! The binary is a thin layer over these modules; the protocol core lives in the
//! `driftless-core` crate and does no IO.

pub mod agent;
pub mod cli;
pub mod converge;
pub mod definition;
pub mod facts;
pub mod fsutil;
pub mod keyfile;
pub mod state;
pub mod template;
pub mod trustdir;
