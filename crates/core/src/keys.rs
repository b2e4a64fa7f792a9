//! Text forms of ed25519 keys, so key files are readable and diffable.
//!
//! A public key file holds one line `ed25519-public:<64 hex digits>`; a private key file one
//! line `ed25519-secret:<64 hex digits>` (the 32-byte seed). Lines starting with `#` are
//! comments. Reading and writing files (and checking their modes) is the caller's job.

use ed25519_dalek::{SigningKey, VerifyingKey};

const PUBLIC_PREFIX: &str = "ed25519-public:";
const SECRET_PREFIX: &str = "ed25519-secret:";

pub fn format_public(key: &VerifyingKey, comment: &str) -> String {
    format!(
        "# {comment}\n{PUBLIC_PREFIX}{}\n",
        hex::encode(key.as_bytes())
    )
}

pub fn format_secret(key: &SigningKey, comment: &str) -> String {
    format!(
        "# {comment}\n# keep this file private (mode 0600); never commit it\n{SECRET_PREFIX}{}\n",
        hex::encode(key.to_bytes())
    )
}

fn key_line<'a>(text: &'a str, prefix: &str) -> Result<&'a str, String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let Some(line) = lines.next() else {
        return Err("holds no key".into());
    };
    if lines.next().is_some() {
        return Err("holds more than one key line".into());
    }
    line.strip_prefix(prefix)
        .ok_or_else(|| format!("expected a line starting with `{prefix}`"))
}

fn bytes32(hexstr: &str) -> Result<[u8; 32], String> {
    let raw = hex::decode(hexstr.trim()).map_err(|e| format!("key is not hex: {e}"))?;
    raw.try_into()
        .map_err(|v: Vec<u8>| format!("key is {} bytes, expected 32", v.len()))
}

pub fn parse_public(text: &str) -> Result<VerifyingKey, String> {
    let raw = bytes32(key_line(text, PUBLIC_PREFIX)?)?;
    VerifyingKey::from_bytes(&raw).map_err(|e| format!("not a valid ed25519 public key: {e}"))
}

pub fn parse_secret(text: &str) -> Result<SigningKey, String> {
    let raw = bytes32(key_line(text, SECRET_PREFIX)?)?;
    Ok(SigningKey::from_bytes(&raw))
}

/// A short printable id of a key: the first 8 bytes in hex.
pub fn key_id(key: &[u8; 32]) -> String {
    hex::encode(&key[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_text() {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let text = format_secret(&sk, "test");
        assert_eq!(parse_secret(&text).unwrap().to_bytes(), sk.to_bytes());
        let pk = sk.verifying_key();
        assert_eq!(parse_public(&format_public(&pk, "t")).unwrap(), pk);
    }

    #[test]
    fn a_secret_is_not_a_public_key() {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let err = parse_public(&format_secret(&sk, "t")).unwrap_err();
        assert!(err.contains("ed25519-public:"), "{err}");
        assert!(parse_public("ed25519-public:abcd")
            .unwrap_err()
            .contains("2 bytes"));
        assert!(parse_public("").unwrap_err().contains("no key"));
    }
}
