//! Versioned postcard envelopes: every encoded structure starts with a magic and a format version.
//!
//! postcard is not self-describing, so a decoder must know which layout it reads. Each structure
//! is written as `MAGIC (4 bytes) | format version (u16, little endian) | postcard body`. A
//! decoder dispatches on the version and keeps reading every older version it ever wrote, so a
//! fleet can mix agent versions during an upgrade. postcard's wire format is specified and
//! stable since 1.0 (<https://postcard.jamesmunns.com/wire-format>).

use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("too short to be a {what} ({len} bytes)")]
    TooShort { what: &'static str, len: usize },
    #[error("not a {what} (wrong magic bytes)")]
    BadMagic { what: &'static str },
    #[error("{what} format version {found} is not supported (this build reads up to {max})")]
    UnsupportedVersion {
        what: &'static str,
        found: u16,
        max: u16,
    },
    #[error("{what} is {len} bytes, over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("malformed {what}: {extra} trailing bytes")]
    Trailing { what: &'static str, extra: usize },
}

/// Encode `value` behind `magic` and `version`.
pub fn encode<T: Serialize>(magic: &[u8; 4], version: u16, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    // Serializing our own in-memory structures into a Vec cannot fail.
    postcard::to_extend(value, out).expect("postcard encoding into a Vec cannot fail")
}

/// Split off magic and version after checking both; returns (version, body).
pub fn open<'a>(
    what: &'static str,
    magic: &[u8; 4],
    max_version: u16,
    bytes: &'a [u8],
) -> Result<(u16, &'a [u8]), DecodeError> {
    if bytes.len() < 6 {
        return Err(DecodeError::TooShort {
            what,
            len: bytes.len(),
        });
    }
    if &bytes[..4] != magic {
        return Err(DecodeError::BadMagic { what });
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version == 0 || version > max_version {
        return Err(DecodeError::UnsupportedVersion {
            what,
            found: version,
            max: max_version,
        });
    }
    Ok((version, &bytes[6..]))
}

/// Decode a postcard body that must use every byte.
pub fn body<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| DecodeError::Malformed {
            what,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing {
            what,
            extra: rest.len(),
        });
    }
    Ok(value)
}
