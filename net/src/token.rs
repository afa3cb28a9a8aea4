//! Connect tokens: short-lived, signed (HMAC-SHA256) with the server's key,
//! bound to a client id and a role, single use (by nonce).
//!
//! Wire form: hex of `version (1) | client_id (4) | role (1) | expires_at
//! unix seconds (8) | nonce (8) | mac (32)`, all little-endian.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;

const VERSION: u8 = 1;
const BODY: usize = 1 + 4 + 1 + 8 + 8;
const LEN: usize = BODY + 32;

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

/// A verified token's claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claims {
    pub client_id: u32,
    pub role: Role,
    pub expires_at: u64,
    pub nonce: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature is invalid")]
    Forged,
    #[error("token expired")]
    Expired,
    #[error("token was already used")]
    Reused,
}

impl TokenError {
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Forged => "forged",
            TokenError::Expired => "expired",
            TokenError::Reused => "reused",
        }
    }
}

fn mac(key: &[u8], body: &[u8]) -> [u8; 32] {
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    m.update(body);
    m.finalize().into_bytes().into()
}

/// Mints a token string.
#[must_use]
pub fn mint(key: &[u8], client_id: u32, role: Role, expires_at: u64, nonce: u64) -> String {
    let mut b = Vec::with_capacity(LEN);
    b.push(VERSION);
    b.extend_from_slice(&client_id.to_le_bytes());
    b.push(role as u8);
    b.extend_from_slice(&expires_at.to_le_bytes());
    b.extend_from_slice(&nonce.to_le_bytes());
    let m = mac(key, &b);
    b.extend_from_slice(&m);
    hex::encode(b)
}

/// Checks signature and expiry (not single use: see [`TokenGate`]).
pub fn verify(key: &[u8], token: &str, now_unix: u64) -> Result<Claims, TokenError> {
    if token.len() != LEN * 2 {
        return Err(TokenError::Malformed);
    }
    let b = hex::decode(token).map_err(|_| TokenError::Malformed)?;
    if b[0] != VERSION {
        return Err(TokenError::Malformed);
    }
    let want = mac(key, &b[..BODY]);
    // Constant-time comparison.
    let diff = want.iter().zip(&b[BODY..]).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    if diff != 0 {
        return Err(TokenError::Forged);
    }
    let le4 = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let le8 = |s: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&s[..8]);
        u64::from_le_bytes(a)
    };
    let role = Role::from_u8(b[5]).ok_or(TokenError::Malformed)?;
    let claims = Claims { client_id: le4(&b[1..5]), role, expires_at: le8(&b[6..14]), nonce: le8(&b[14..22]) };
    if now_unix >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Verifies tokens and remembers used nonces until they expire.
#[derive(Debug)]
pub struct TokenGate {
    key: Vec<u8>,
    used: BTreeMap<u64, u64>,
}

impl TokenGate {
    #[must_use]
    pub fn new(key: Vec<u8>) -> TokenGate {
        TokenGate { key, used: BTreeMap::new() }
    }

    /// Admits a token once.
    pub fn admit(&mut self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        let c = verify(&self.key, token, now_unix)?;
        self.used.retain(|_, exp| *exp > now_unix);
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

    #[test]
    fn tokens_are_checked_for_signature_expiry_and_reuse() {
        let key = b"k".repeat(32);
        let t = mint(&key, 7, Role::Player, 1000, 42);
        let mut gate = TokenGate::new(key.clone());
        assert_eq!(gate.admit(&t, 999).map(|c| (c.client_id, c.role)), Ok((7, Role::Player)));
        assert_eq!(gate.admit(&t, 999), Err(TokenError::Reused));
        assert_eq!(verify(&key, &t, 1000), Err(TokenError::Expired));
        assert_eq!(verify(b"other key", &t, 10), Err(TokenError::Forged));
        let mut forged = t.clone().into_bytes();
        forged[4] = if forged[4] == b'0' { b'1' } else { b'0' };
        assert_eq!(verify(&key, std::str::from_utf8(&forged).unwrap_or(""), 10), Err(TokenError::Forged));
        assert_eq!(verify(&key, "zz", 10), Err(TokenError::Malformed));
        assert_eq!(verify(&key, &"g".repeat(t.len()), 10), Err(TokenError::Malformed));
    }
}
