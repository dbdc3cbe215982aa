//! Agent credentials: token format, hashing, constant-time verification, and the in-memory copy
//! of the stored credentials that stream authentication reads. No IO.
//!
//! A token is `<agent id>.<64 hex digits>`. The collector stores only the SHA-256 of the secret
//! part; secrets are 256 random bits, so a fast hash is enough (no password stretching needed).
//!
//! [`Credentials`] is refreshed from the database off the async workers (every
//! [`CREDENTIAL_REFRESH`]); open streams compare the hash they authenticated with against it, so a
//! rotated or revoked token stops working on streams that are already open too.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a token secret.
pub type SecretHash = [u8; 32];

/// The name of the user a request is judged as: the HTTP access guard puts it in the request's
/// extensions for the handlers that record who did something (a maintenance window's declarer).
#[derive(Debug, Clone)]
pub struct RequestUser(pub String);

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

/// How often the stored credentials are re-read into [`Credentials`].
pub const CREDENTIAL_REFRESH: Duration = Duration::from_secs(2);
/// How often an open stream re-checks its credential against [`Credentials`], besides every batch.
/// A rotated or revoked token is cut off within `CREDENTIAL_REFRESH + CREDENTIAL_RECHECK` (3 s),
/// well inside the 10 s `revoke --help` promises.
pub const CREDENTIAL_RECHECK: Duration = Duration::from_secs(1);

/// One stored credential: the hash of the current secret and whether it is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// SHA-256 of the current secret.
    pub hash: Vec<u8>,
    /// Revoked (`revoke`); `enroll --rotate` clears it.
    pub revoked: bool,
}

/// Whether an open stream's credential still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The stored hash is the one the stream authenticated with and it is not revoked.
    Valid,
    /// Revoked.
    Revoked,
    /// The token was replaced (`enroll --rotate`) or the agent is no longer enrolled.
    Replaced,
}

/// The stored credentials, by agent id, as of the last refresh.
#[derive(Debug, Default)]
pub struct Credentials {
    agents: RwLock<HashMap<String, Stored>>,
}

impl Credentials {
    /// Replaces the whole set (a refresh).
    pub fn replace(&self, rows: impl IntoIterator<Item = (String, Stored)>) {
        let agents = rows.into_iter().collect();
        *self.agents.write().unwrap_or_else(std::sync::PoisonError::into_inner) = agents;
    }

    /// Updates one agent (after a lookup on a miss); `None` forgets it.
    pub fn set(&self, agent_id: &str, stored: Option<Stored>) {
        let mut agents = self.agents.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match stored {
            Some(stored) => agents.insert(agent_id.to_owned(), stored),
            None => agents.remove(agent_id),
        };
    }

    /// Whether a stream that authenticated `agent_id` with `hash` may go on.
    pub fn standing(&self, agent_id: &str, hash: &[u8]) -> Standing {
        match self.agents.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(agent_id) {
            Some(stored) if stored.revoked => Standing::Revoked,
            Some(stored) if bool::from(stored.hash.as_slice().ct_eq(hash)) => Standing::Valid,
            _ => Standing::Replaced,
        }
    }
}

// HTTP users (roles and salted secrets; the HTTP guard is `access.rs`, storage `store/credential.rs`).

/// What a user may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Status page, reports, read API, `/metrics`.
    Viewer,
    /// Also maintenance windows and incident acknowledgements (every write).
    Operator,
    /// Also the audit log.
    Admin,
}

impl Role {
    /// Parses `viewer`, `operator` or `admin`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// SHA-256 of salt and secret.
pub fn salted_hash(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(secret.as_bytes());
    hasher.finalize().into()
}

/// A new HTTP user token `<name>.<64 hex digits>` for user `name`, with the salt and hash to store.
///
/// # Errors
/// When the operating system's random source fails.
pub fn generate_user(name: &str) -> Result<(String, [u8; 16], [u8; 32]), getrandom::Error> {
    let (token, _) = generate(name)?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)?;
    let secret = token.rsplit_once('.').map_or("", |(_, s)| s);
    let hash = salted_hash(&salt, secret);
    Ok((token, salt, hash))
}

/// Whether `secret` hashes with `salt` to `hash` (constant-time comparison of the hashes).
pub fn verify_salted(salt: &[u8], hash: &[u8], secret: &str) -> bool {
    let presented = salted_hash(salt, secret);
    hash.len() == presented.len() && bool::from(presented.ct_eq(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_or_revoked_credential_loses_its_standing() {
        let creds = Credentials::default();
        let (_, old) = generate("web").expect("random");
        let (_, new) = generate("web").expect("random");
        creds.replace([("web".to_owned(), Stored { hash: old.to_vec(), revoked: false })]);
        assert_eq!(creds.standing("web", &old), Standing::Valid);
        creds.set("web", Some(Stored { hash: new.to_vec(), revoked: false }));
        assert_eq!(creds.standing("web", &old), Standing::Replaced);
        assert_eq!(creds.standing("web", &new), Standing::Valid);
        creds.replace([("web".to_owned(), Stored { hash: new.to_vec(), revoked: true })]);
        assert_eq!(creds.standing("web", &new), Standing::Revoked);
        creds.set("web", None);
        assert_eq!(creds.standing("web", &new), Standing::Replaced);
    }

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
