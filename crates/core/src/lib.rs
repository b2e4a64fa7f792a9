//! The driftless protocol core: bundle format, trust roots and verification, high-water marks.
//!
//! Architecture invariant: nothing in this crate does IO, reads a clock, spawns a thread or
//! takes a lock. Time comes in as a [`Timestamp`] argument, randomness as an RNG argument, and
//! bytes as slices. The agent, the CLI and the simulator are the only drivers.

pub mod admission;
pub mod bundle;
pub mod definition;
pub mod encoding;
pub mod keys;
pub mod labels;
pub mod marks;
pub mod proto;
pub mod root;
pub mod signed;
pub mod time;
pub mod trust;
pub mod value;

pub use admission::{
    Certificate, RevocationList, SignedCertificate, SignedRevocationList, VerifiedCertificate,
    VerifiedRevocationList,
};
pub use bundle::{Bundle, BundleHash, Header, VerifiedBundle};
pub use definition::{CompiledDefinition, Resource, ResourceKind, ResourceRef};
pub use labels::{Labels, Targets};
pub use marks::{MarkDecision, Marks};
pub use root::{RootDoc, SignedRoot};
pub use signed::Rejection;
pub use time::Timestamp;
pub use trust::{Refusal, Role, TrustRoot};
