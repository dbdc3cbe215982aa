//! Agent credentials: token format, hashing and constant-time verification. Pure.
//!
//! A token is `<agent id>.<64 hex digits>`. The collector stores only the SHA-256 of the secret
//! part; secrets are 256 random bits, so a fast hash is enough (no password stretching needed).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a token secret.
pub type SecretHash = [u8; 32];

/// Whether `id` is acceptable as an agent id (it becomes the `host` label).
pub fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A new token for `agent_id`, and the hash to store.
///
/// # Errors
/// When the operating system's random source fails.
pub fn generate(agent_id: &str) -> Result<(String, SecretHash), getrandom::Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let hash = hash_secret(&hex);
    Ok((format!("{agent_id}.{hex}"), hash))
}

/// Splits a token into agent id and secret; `None` when it is not shaped like one.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.rsplit_once('.')?;
    (valid_agent_id(id) && secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit())).then_some((id, secret))
}

/// Hash of a secret as stored.
pub fn hash_secret(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares a presented secret with a stored hash in constant time.
pub fn verify(secret: &str, stored: &[u8]) -> bool {
    let presented = hash_secret(secret);
    stored.len() == presented.len() && bool::from(presented.ct_eq(stored))
}

/// Extracts the token from an `authorization` header value (`Bearer <token>`).
pub fn bearer(header: &str) -> Option<&str> {
    header.strip_prefix("Bearer ").map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_parses_and_verifies() {
        let (token, hash) = generate("bitrix-01.example.com").expect("random");
        let (id, secret) = parse(&token).expect("well formed");
        assert_eq!(id, "bitrix-01.example.com");
        assert!(verify(secret, &hash));
    }

    #[test]
    fn a_different_secret_does_not_verify() {
        let (_, hash) = generate("web").expect("random");
        let (other, _) = generate("web").expect("random");
        let (_, secret) = parse(&other).expect("well formed");
        assert!(!verify(secret, &hash));
        assert!(!verify(secret, &hash[..31]));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for token in ["", "web", "web.abc", "bad id.".to_owned().as_str(), &format!("web.{}", "g".repeat(64))] {
            assert_eq!(parse(token), None, "{token:?}");
        }
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}
