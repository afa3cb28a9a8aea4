//! Connect tokens (version 2): short-lived, signed (HMAC-SHA256) with one
//! key of the server's key ring, bound to a client id, a role, a server id
//! and a match id, single use (by nonce, per server).
//!
//! Wire form: hex of, all little-endian,
//! `version = 2 (1) | key_id (4) | client_id (4) | role (1) | expires_at
//! unix seconds (8) | nonce (8) | server_id length (1) | server_id |
//! match_id length (1) | match_id | mac (32)`, the MAC over everything
//! before it. Ids are UTF-8, at most [`MAX_ID`] bytes; the whole token is at
//! most [`MAX_TOKEN_CHARS`] hex characters, checked before decoding.
//!
//! A matchmaker mints one with [`mint`] (or `dualplane token`):
//!
//! ```
//! use net::token::{mint, KeyRing, TokenGate, TokenSpec, Role};
//! let key = [7u8; 32];
//! let spec = TokenSpec { key_id: 3, client_id: 42, role: Role::Player, expires_at: 2_000_000_000,
//!                        nonce: 99, server_id: "gs-eu-1", match_id: "m-001" };
//! let token = mint(&key, &spec);
//! let mut gate = TokenGate::new(KeyRing::single(3, key.to_vec()), "gs-eu-1", "m-001");
//! assert_eq!(gate.admit(&token, Role::Player, 1_900_000_000).map(|c| c.client_id), Ok(42));
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::Path;

/// The token version this build mints and accepts.
pub const VERSION: u8 = 2;
/// Longest server or match id, in bytes.
pub const MAX_ID: usize = 64;
const FIXED: usize = 1 + 4 + 4 + 1 + 8 + 8;
const MAC: usize = 32;
/// Longest token, in hex characters.
pub const MAX_TOKEN_CHARS: usize = 2 * (FIXED + 1 + MAX_ID + 1 + MAX_ID + MAC);

/// What a connection may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Role {
    /// Commands only its own avatar (spawned on connect).
    Player = 1,
    /// Commands only the NPCs granted to it.
    Policy = 2,
    /// Commands nothing.
    Observer = 3,
}

impl Role {
    #[must_use]
    pub fn from_u8(v: u8) -> Option<Role> {
        match v {
            1 => Some(Role::Player),
            2 => Some(Role::Policy),
            3 => Some(Role::Observer),
            _ => None,
        }
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Role::Player => "player",
            Role::Policy => "policy",
            Role::Observer => "observer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "player" => Ok(Role::Player),
            "policy" => Ok(Role::Policy),
            "observer" => Ok(Role::Observer),
            o => Err(format!("expected player|policy|observer, found {o:?}")),
        }
    }
}

/// The server id of a server that was given none (dev), and so of the
/// tokens minted for it by default.
pub const DEV_SERVER_ID: &str = "dev";

/// What to put in a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenSpec<'a> {
    pub key_id: u32,
    pub client_id: u32,
    pub role: Role,
    pub expires_at: u64,
    pub nonce: u64,
    pub server_id: &'a str,
    pub match_id: &'a str,
}

impl TokenSpec<'static> {
    /// A token for a dev server: key id 0, server [`DEV_SERVER_ID`], no match.
    #[must_use]
    pub fn dev(client_id: u32, role: Role, expires_at: u64, nonce: u64) -> TokenSpec<'static> {
        TokenSpec { key_id: 0, client_id, role, expires_at, nonce, server_id: DEV_SERVER_ID, match_id: "" }
    }
}

/// A decoded token's claims (verified only once [`verify`] says so).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub key_id: u32,
    pub client_id: u32,
    pub role: Role,
    pub expires_at: u64,
    pub nonce: u64,
    pub server_id: String,
    pub match_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token version is not supported (this server accepts version {VERSION})")]
    Version,
    #[error("token is signed with a key id this server does not have")]
    UnknownKey,
    #[error("token signature is invalid")]
    Forged,
    #[error("token expired")]
    Expired,
    #[error("token was already used")]
    Reused,
    #[error("token is not for this server")]
    WrongServer,
    #[error("token is not for this match")]
    WrongMatch,
    #[error("token was minted for another role than the hello asks for")]
    WrongRole,
}

impl TokenError {
    /// The bounded metrics label of this refusal.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Version => "token_version",
            TokenError::UnknownKey => "unknown_key",
            TokenError::Forged => "forged",
            TokenError::Expired => "expired",
            TokenError::Reused => "reused",
            TokenError::WrongServer => "wrong_server",
            TokenError::WrongMatch => "wrong_match",
            TokenError::WrongRole => "wrong_role",
        }
    }

    pub const ALL: [TokenError; 9] = [
        TokenError::Malformed,
        TokenError::Version,
        TokenError::UnknownKey,
        TokenError::Forged,
        TokenError::Expired,
        TokenError::Reused,
        TokenError::WrongServer,
        TokenError::WrongMatch,
        TokenError::WrongRole,
    ];
}

fn mac(key: &[u8], body: &[u8]) -> [u8; 32] {
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    m.update(body);
    m.finalize().into_bytes().into()
}

fn put_id(b: &mut Vec<u8>, id: &str) {
    // Ids longer than MAX_ID are cut at a char boundary: a minted token
    // always decodes (and then simply does not match a longer server id).
    let mut end = id.len().min(MAX_ID);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    b.push(end as u8);
    b.extend_from_slice(&id.as_bytes()[..end]);
}

/// Mints a token string with `key` (the key of `spec.key_id`).
#[must_use]
pub fn mint(key: &[u8], spec: &TokenSpec<'_>) -> String {
    let mut b = Vec::with_capacity(FIXED + 2 + spec.server_id.len() + spec.match_id.len() + MAC);
    b.push(VERSION);
    b.extend_from_slice(&spec.key_id.to_le_bytes());
    b.extend_from_slice(&spec.client_id.to_le_bytes());
    b.push(spec.role as u8);
    b.extend_from_slice(&spec.expires_at.to_le_bytes());
    b.extend_from_slice(&spec.nonce.to_le_bytes());
    put_id(&mut b, spec.server_id);
    put_id(&mut b, spec.match_id);
    let m = mac(key, &b);
    b.extend_from_slice(&m);
    hex::encode(b)
}

/// A structurally valid token whose signature is not checked yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unverified {
    pub claims: Claims,
    body: Vec<u8>,
    mac: [u8; 32],
}

/// Decodes a token's structure (length caps, version, ids) without any key.
pub fn decode(token: &str) -> Result<Unverified, TokenError> {
    if token.len() > MAX_TOKEN_CHARS || token.len() < 2 * (FIXED + 2 + MAC) {
        return Err(TokenError::Malformed);
    }
    let b = hex::decode(token).map_err(|_| TokenError::Malformed)?;
    if b[0] != VERSION {
        return Err(TokenError::Version);
    }
    let le4 = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let le8 = |s: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&s[..8]);
        u64::from_le_bytes(a)
    };
    let role = Role::from_u8(b[9]).ok_or(TokenError::Malformed)?;
    let mut at = FIXED;
    let mut id = || -> Result<String, TokenError> {
        let n = usize::from(*b.get(at).ok_or(TokenError::Malformed)?);
        let s = b.get(at + 1..at + 1 + n).filter(|_| n <= MAX_ID).ok_or(TokenError::Malformed)?;
        at += 1 + n;
        String::from_utf8(s.to_vec()).map_err(|_| TokenError::Malformed)
    };
    let server_id = id()?;
    let match_id = id()?;
    if b.len() != at + MAC {
        return Err(TokenError::Malformed);
    }
    let mut m = [0u8; 32];
    m.copy_from_slice(&b[at..]);
    let claims = Claims { key_id: le4(&b[1..5]), client_id: le4(&b[5..9]), role, expires_at: le8(&b[10..18]), nonce: le8(&b[18..26]), server_id, match_id };
    Ok(Unverified { claims, body: b[..at].to_vec(), mac: m })
}

/// The keys a server accepts, by key id: its current key and the previous
/// one(s) while tokens they signed may still be alive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: BTreeMap<u32, Vec<u8>>,
}

/// Why a key ring could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{path}: {why}")]
    Bad { path: String, why: String },
}

/// Shortest key accepted, in bytes.
pub const MIN_KEY: usize = 16;

impl KeyRing {
    #[must_use]
    pub fn single(key_id: u32, key: Vec<u8>) -> KeyRing {
        KeyRing { keys: BTreeMap::from([(key_id, key)]) }
    }

    #[must_use]
    pub fn from_keys(keys: impl IntoIterator<Item = (u32, Vec<u8>)>) -> KeyRing {
        KeyRing { keys: keys.into_iter().collect() }
    }

    /// Reads a directory of `<key_id>.key` files, each the key in hex (the
    /// shape of a Kubernetes Secret mounted as a volume). Other files are
    /// ignored (Secret volumes hold `..data` links); a malformed key file is
    /// an error naming it.
    pub fn load_dir(dir: &Path) -> Result<KeyRing, KeyRingError> {
        let io = |e| KeyRingError::Io(dir.display().to_string(), e);
        let mut keys = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(stem) = name.strip_suffix(".key") else { continue };
            let bad = |why: String| KeyRingError::Bad { path: path.display().to_string(), why };
            let id: u32 = stem.parse().map_err(|_| bad(format!("expected <key id>.key with a numeric key id, found {name:?}")))?;
            let text = std::fs::read_to_string(&path).map_err(|e| KeyRingError::Io(path.display().to_string(), e))?;
            let key = hex::decode(text.trim()).map_err(|e| bad(format!("expected the key in hex: {e}")))?;
            if key.len() < MIN_KEY {
                return Err(bad(format!("key of {} bytes; expected at least {MIN_KEY}", key.len())));
            }
            keys.insert(id, key);
        }
        if keys.is_empty() {
            return Err(KeyRingError::Bad { path: dir.display().to_string(), why: "no <key id>.key files".into() });
        }
        Ok(KeyRing { keys })
    }

    #[must_use]
    pub fn get(&self, key_id: u32) -> Option<&[u8]> {
        self.keys.get(&key_id).map(Vec::as_slice)
    }

    /// The key to mint with: the highest key id.
    #[must_use]
    pub fn current(&self) -> Option<(u32, &[u8])> {
        self.keys.iter().next_back().map(|(k, v)| (*k, v.as_slice()))
    }

    #[must_use]
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }
}

/// Checks structure, key id, signature and expiry (not where the token may
/// be used, nor single use: see [`TokenGate`]).
pub fn verify(ring: &KeyRing, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
    let u = decode(token)?;
    let key = ring.get(u.claims.key_id).ok_or(TokenError::UnknownKey)?;
    let want = mac(key, &u.body);
    // Constant-time comparison.
    let diff = want.iter().zip(&u.mac).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    if diff != 0 {
        return Err(TokenError::Forged);
    }
    if now_unix >= u.claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(u.claims)
}

/// Admits tokens for one server and its current match, once each.
#[derive(Debug)]
pub struct TokenGate {
    ring: KeyRing,
    server_id: String,
    match_id: String,
    used: BTreeMap<u64, u64>,
    /// The latest clock reading seen: nonces are forgotten only once this
    /// passes their expiry, so a clock stepping back cannot revive one.
    latest: u64,
}

impl TokenGate {
    #[must_use]
    pub fn new(ring: KeyRing, server_id: &str, match_id: &str) -> TokenGate {
        TokenGate { ring, server_id: server_id.to_string(), match_id: match_id.to_string(), used: BTreeMap::new(), latest: 0 }
    }

    /// Replaces the key ring (rotation); used nonces are kept.
    pub fn set_keys(&mut self, ring: KeyRing) {
        self.ring = ring;
    }

    /// Moves the server to another match: tokens for the old one are refused.
    pub fn set_match(&mut self, match_id: &str) {
        self.match_id = match_id.to_string();
    }

    #[must_use]
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    #[must_use]
    pub fn match_id(&self) -> &str {
        &self.match_id
    }

    /// Admits a token once, for a connection that asks for `role`.
    pub fn admit(&mut self, token: &str, role: Role, now_unix: u64) -> Result<Claims, TokenError> {
        let c = verify(&self.ring, token, now_unix)?;
        if c.role != role {
            return Err(TokenError::WrongRole);
        }
        if c.server_id != self.server_id {
            return Err(TokenError::WrongServer);
        }
        if c.match_id != self.match_id {
            return Err(TokenError::WrongMatch);
        }
        self.latest = self.latest.max(now_unix);
        let latest = self.latest;
        self.used.retain(|_, exp| *exp > latest);
        if self.used.contains_key(&c.nonce) {
            return Err(TokenError::Reused);
        }
        self.used.insert(c.nonce, c.expires_at);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key_id: u32, expires_at: u64, nonce: u64) -> TokenSpec<'static> {
        TokenSpec { key_id, client_id: 7, role: Role::Player, expires_at, nonce, server_id: "a", match_id: "m1" }
    }

    #[test]
    fn golden_bytes() {
        let t = mint(&[1u8; 16], &TokenSpec { key_id: 2, client_id: 3, role: Role::Policy, expires_at: 4, nonce: 5, server_id: "s", match_id: "" });
        // version 2 | kid 2 | client 3 | role 2 | expires 4 | nonce 5 | "s" | "" | mac
        assert_eq!(&t[..2 * (FIXED + 3)], "0202000000030000000204000000000000000500000000000000017300");
        assert_eq!(t.len(), 2 * (FIXED + 3 + MAC));
    }

    #[test]
    fn tokens_are_checked_for_key_signature_expiry_binding_and_reuse() {
        let key = b"k".repeat(32);
        let mut ring = KeyRing::single(1, key.clone());
        let t = mint(&key, &spec(1, 1000, 42));
        let mut gate = TokenGate::new(ring.clone(), "a", "m1");
        assert_eq!(gate.admit(&t, Role::Player, 999).map(|c| (c.client_id, c.role)), Ok((7, Role::Player)));
        assert_eq!(gate.admit(&t, Role::Player, 999), Err(TokenError::Reused));
        assert_eq!(gate.admit(&mint(&key, &spec(1, 1000, 41)), Role::Observer, 999), Err(TokenError::WrongRole));
        assert_eq!(verify(&ring, &t, 1000), Err(TokenError::Expired));
        assert_eq!(verify(&KeyRing::single(1, b"other key".to_vec()), &t, 10), Err(TokenError::Forged));
        assert_eq!(verify(&KeyRing::single(9, key.clone()), &t, 10), Err(TokenError::UnknownKey));
        let mut forged = t.clone().into_bytes();
        forged[12] = if forged[12] == b'0' { b'1' } else { b'0' };
        assert_eq!(verify(&ring, std::str::from_utf8(&forged).unwrap_or(""), 10), Err(TokenError::Forged));
        assert_eq!(verify(&ring, "zz", 10), Err(TokenError::Malformed));
        assert_eq!(verify(&ring, &"g".repeat(t.len()), 10), Err(TokenError::Malformed));
        assert_eq!(verify(&ring, &"0".repeat(MAX_TOKEN_CHARS + 2), 10), Err(TokenError::Malformed));
        // A version-1 token (the old layout) is refused by version.
        let mut v1 = t.clone().into_bytes();
        v1[1] = b'1';
        assert_eq!(verify(&ring, std::str::from_utf8(&v1).unwrap_or(""), 10), Err(TokenError::Version));
        // Bound to a server and a match.
        let other = TokenSpec { server_id: "b", ..spec(1, 1000, 43) };
        assert_eq!(gate.admit(&mint(&key, &other), Role::Player, 10), Err(TokenError::WrongServer));
        let t44 = mint(&key, &spec(1, 1000, 44));
        gate.set_match("m2");
        assert_eq!(gate.admit(&t44, Role::Player, 10), Err(TokenError::WrongMatch));
        gate.set_match("m1");
        assert!(gate.admit(&t44, Role::Player, 10).is_ok());
        // Rotation: the previous key id still admits, an unknown one does not.
        ring.keys.insert(2, b"new key new key new key".to_vec());
        gate.set_keys(ring.clone());
        assert_eq!(ring.current().map(|(k, _)| k), Some(2));
        assert!(gate.admit(&mint(&key, &spec(1, 1000, 45)), Role::Player, 10).is_ok());
        assert!(gate.admit(&mint(b"new key new key new key", &spec(2, 1000, 46)), Role::Player, 10).is_ok());
        assert_eq!(gate.admit(&mint(&key, &spec(3, 1000, 47)), Role::Player, 10), Err(TokenError::UnknownKey));
    }

    #[test]
    fn long_ids_are_cut_and_every_truncation_is_malformed() {
        let long = "é".repeat(40);
        let t = mint(&[1u8; 16], &TokenSpec { server_id: &long, ..spec(1, 9, 1) });
        let u = decode(&t).expect("decodes");
        assert!(u.claims.server_id.len() <= MAX_ID && long.starts_with(&u.claims.server_id));
        for cut in (2..t.len()).step_by(2) {
            assert!(decode(&t[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn key_dirs_load_and_name_bad_files() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("1.key"), hex::encode([1u8; 32])).expect("w");
        std::fs::write(d.path().join("2.key"), format!("{}\n", hex::encode([2u8; 32]))).expect("w");
        std::fs::write(d.path().join("README"), "ignored").expect("w");
        let r = KeyRing::load_dir(d.path()).expect("ring");
        assert_eq!(r.key_ids(), vec![1, 2]);
        assert_eq!(r.current().map(|(k, v)| (k, v[0])), Some((2, 2)));
        std::fs::write(d.path().join("x.key"), "00").expect("w");
        let e = KeyRing::load_dir(d.path()).expect_err("bad name").to_string();
        assert!(e.contains("x.key") && e.contains("numeric key id"), "{e}");
        std::fs::remove_file(d.path().join("x.key")).expect("rm");
        std::fs::write(d.path().join("3.key"), "abcd").expect("w");
        let e = KeyRing::load_dir(d.path()).expect_err("short").to_string();
        assert!(e.contains("3.key") && e.contains("at least"), "{e}");
    }
}
