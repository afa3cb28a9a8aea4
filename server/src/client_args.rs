//! The flags every command-line client shares: which server certificate to
//! trust (and by what name), and how to mint the connect tokens it uses.

use anyhow::Context;
use net::driver::{ClientOptions, DevCredentials};
use net::tls::Trust;
use net::token::{mint, KeyRing, Role, TokenSpec};
use std::path::PathBuf;
use std::time::Duration;

/// How a client checks the server. Default: pin the dev dir's cert.der.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// Trust the CA certificate(s) in this file (PEM or DER) and check the
    /// server's name.
    #[arg(long, conflicts_with_all = ["pin", "system_roots"])]
    pub ca: Option<PathBuf>,
    /// Trust exactly one certificate: `sha256:<hex>` or a certificate file.
    #[arg(long, conflicts_with = "system_roots")]
    pub pin: Option<String>,
    /// Trust the operating system's root certificates and check the name.
    #[arg(long)]
    pub system_roots: bool,
    /// The name the server's certificate must carry (default: the host in
    /// --server).
    #[arg(long)]
    pub server_name: Option<String>,
}

impl TrustArgs {
    /// The connect options these flags choose (`dev_cert`: the dev dir's
    /// certificate, pinned when no other trust is given).
    pub fn options(&self, dev_cert: &[u8]) -> anyhow::Result<ClientOptions> {
        let trust = if let Some(ca) = &self.ca {
            Trust::Ca(ca.clone())
        } else if let Some(p) = &self.pin {
            Trust::pin(p)?
        } else if self.system_roots {
            Trust::System
        } else {
            Trust::pin_der(dev_cert)
        };
        Ok(ClientOptions { server_name: self.server_name.clone(), ..ClientOptions::trusting(trust) })
    }
}

/// Where a minted token may be used, and the key that signs it.
#[derive(clap::Args, Debug, Clone)]
pub struct MintArgs {
    /// The server id the token is for (the server's --server-id).
    #[arg(long, default_value = crate::serve::DEFAULT_SERVER_ID)]
    pub server_id: String,
    /// The match the token is for (the server's --match-id).
    #[arg(long = "match", default_value = "")]
    pub match_id: String,
    /// Directory of `<key id>.key` files (as `serve --token-keys`); default:
    /// the dev dir's token.key, key id 0.
    #[arg(long, env = "DUALPLANE_TOKEN_KEYS")]
    pub token_keys: Option<PathBuf>,
    /// Key id to sign with (default: the highest in --token-keys).
    #[arg(long)]
    pub key_id: Option<u32>,
}

/// A token signer: one key of a ring, and where its tokens are valid.
#[derive(Debug, Clone)]
pub struct Minter {
    key_id: u32,
    key: Vec<u8>,
    server_id: String,
    match_id: String,
}

impl MintArgs {
    pub fn minter(&self, creds: &DevCredentials) -> anyhow::Result<Minter> {
        let ring = match &self.token_keys {
            Some(d) => KeyRing::load_dir(d)?,
            None => KeyRing::single(0, creds.key.clone()),
        };
        let (key_id, key) = match self.key_id {
            Some(k) => (k, ring.get(k).with_context(|| format!("key id {k} is not in the key ring (it has {:?})", ring.key_ids()))?.to_vec()),
            None => ring.current().map(|(k, v)| (k, v.to_vec())).context("empty key ring")?,
        };
        for (what, id) in [("--server-id", &self.server_id), ("--match", &self.match_id)] {
            if id.len() > net::token::MAX_ID {
                anyhow::bail!("{what} {id:?}: {} bytes; a token carries at most {}", id.len(), net::token::MAX_ID);
            }
        }
        Ok(Minter { key_id, key, server_id: self.server_id.clone(), match_id: self.match_id.clone() })
    }
}

impl Minter {
    #[must_use]
    pub fn mint(&self, client_id: u32, role: Role, ttl: Duration) -> String {
        let spec = TokenSpec { key_id: self.key_id, client_id, role, expires_at: unix_now().saturating_add(ttl.as_secs().max(1)), nonce: nonce(), server_id: &self.server_id, match_id: &self.match_id };
        mint(&self.key, &spec)
    }
}

/// The flags the fault lab's clients (`churn`, `hostile`) share.
#[derive(clap::Args, Debug)]
pub struct LabClientArgs {
    /// host:port of the server.
    #[arg(long, default_value = "127.0.0.1:4433")]
    pub server: String,
    /// Dev dir with cert.der and token.key (clients mint their own tokens).
    #[arg(long, env = "DUALPLANE_DEV_DIR")]
    pub dev_dir: Option<PathBuf>,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub mint: MintArgs,
}

/// The dev credentials, connect options and token minter a client's flags
/// choose (the dev dir: `dev_dir`, else the default one).
pub fn client_setup(dev_dir: Option<&std::path::Path>, trust: &TrustArgs, mint: &MintArgs) -> anyhow::Result<(DevCredentials, ClientOptions, Minter)> {
    let creds = DevCredentials::load_or_create(&dev_dir.map_or_else(net::driver::default_dev_dir, std::path::Path::to_path_buf))?;
    let opts = trust.options(&creds.cert_der)?;
    let minter = mint.minter(&creds)?;
    Ok((creds, opts, minter))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn nonce() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// A duration flag: a number with a unit (`500ms`, `15s`, `5m`, `1h`); a
/// bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("{s:?}: expected a number with a unit: ms, s, m or h (e.g. 15s)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("{s:?}: unknown unit {u:?}; expected ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?}: not a valid duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5 fortnights").err().unwrap_or_default().contains("expected ms, s, m or h"));
        assert!(parse_duration("-1s").is_err());
    }
}
