//! Who a `serve` is to its clients: the certificate it presents (files or
//! the dev one), the token key ring it admits with, and the thread that
//! re-reads the key directory for rotation.

use crate::admin::Metrics;
use crate::serve::say;
use anyhow::Context;
use net::driver::DevCredentials;
use net::hub::Hub;
use net::tls::ServerIdentity;
use net::token::KeyRing;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server's certificate and token keys, with how to describe them.
#[derive(Debug)]
pub struct ServerTrust {
    pub identity: ServerIdentity,
    pub ring: KeyRing,
    pub token_keys: Option<PathBuf>,
    pub tls_desc: String,
    pub keys_desc: String,
}

impl ServerTrust {
    /// Certificate files (both or neither) and a key directory; whatever is
    /// missing comes from the dev dir, which is read (and made) only then: a
    /// production server may run on a read-only filesystem.
    /// The dev dir's secrets (token.key, key.der) must be readable by their
    /// owner only, unless `allow_readable_keys`.
    pub fn load(tls_cert: Option<PathBuf>, tls_key: Option<PathBuf>, token_keys: Option<PathBuf>, dev_dir: &Path, allow_readable_keys: bool) -> anyhow::Result<ServerTrust> {
        let creds = if tls_cert.is_some() && tls_key.is_some() && token_keys.is_some() { None } else { Some(DevCredentials::load_or_create(dev_dir)?) };
        if creds.is_some() && !allow_readable_keys {
            for name in ["token.key", "key.der"] {
                refuse_readable(&dev_dir.join(name))?;
            }
        }
        let dev = |what: &str| creds.as_ref().with_context(|| format!("{what}: no dev credentials loaded"));
        let identity = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => ServerIdentity::Files { cert, key },
            (None, None) => {
                let c = dev("dev certificate")?;
                ServerIdentity::Dev { cert_der: c.cert_der.clone(), key_der: c.key_der.clone() }
            }
            _ => anyhow::bail!("tls_cert and tls_key go together: set both (a PEM chain and its key) or neither (dev mode)"),
        };
        let (ring, keys_desc) = match &token_keys {
            Some(d) => (KeyRing::load_dir(d)?, d.display().to_string()),
            None => {
                let c = dev("dev token key")?;
                (KeyRing::single(0, c.key.clone()), format!("{}/token.key (dev, key id 0)", c.dir.display()))
            }
        };
        let tls_desc = match &identity {
            ServerIdentity::Dev { .. } => format!("TLS dev mode: self-signed certificate in {} (cert.der; clients pin it; --tls-cert/--tls-key in production)", dev_dir.display()),
            ServerIdentity::Files { cert, .. } => format!("TLS certificate {} (re-read when it changes)", cert.display()),
        };
        Ok(ServerTrust { identity, ring, token_keys, tls_desc, keys_desc })
    }
}

/// A secret that others than its owner can read is refused (the server
/// writes its dev secrets 0600; a copy or an umask may not have).
fn refuse_readable(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).with_context(|| format!("{}: cannot stat", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{}: a secret key readable by others (mode {:o}, expected 600): run `chmod 600 {}`, or start with --allow-readable-keys",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    Ok(())
}

/// Re-reads the token key directory every 2 s; a changed, valid ring
/// replaces the hub's (sessions and used nonces stay). A broken directory
/// keeps the old ring and is counted.
pub fn spawn_key_watch(dir: PathBuf, mut ring: KeyRing, hub: Arc<Mutex<Hub>>, metrics: Metrics, shutdown: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new().name("token-keys".into()).spawn(move || {
        let mut last_error = String::new();
        while !shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(2));
            match KeyRing::load_dir(&dir) {
                Ok(r) if r != ring => {
                    say(&format!("token keys reloaded from {}: key ids {:?}", dir.display(), r.key_ids()));
                    if let Ok(mut h) = hub.lock() {
                        h.set_keys(r.clone());
                    }
                    ring = r;
                    last_error.clear();
                    metrics.key_reloads.with_label_values(&["ok"]).inc();
                }
                Ok(_) => last_error.clear(),
                Err(e) => {
                    // Counted and logged once per distinct failure.
                    let e = e.to_string();
                    if e != last_error {
                        metrics.key_reloads.with_label_values(&["failed"]).inc();
                        say(&format!("token keys: keeping the previous keys: {e}"));
                        last_error = e;
                    }
                }
            }
        }
    });
}
