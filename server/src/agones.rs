//! Agones integration (cargo feature `agones`, runtime flag `serve --agones`).
//!
//! Through the SDK sidecar (gRPC on localhost, `AGONES_SDK_GRPC_PORT`):
//! - at start, the GameServer's `dualplane.dev/*` annotations override the
//!   scenario, seed and client cap (the Fleet template or the allocation
//!   sets them);
//! - `Ready` once the world is loaded and both listeners are bound;
//! - a health ping every 2 s *only while the tick loop is alive* (the same
//!   rule as `/healthz`): a stalled simulation stops pinging and Agones marks
//!   the GameServer Unhealthy;
//! - allocation is watched and its metadata logged and exported;
//! - `Shutdown` after the SIGTERM drain has flushed the replay.

use crate::admin::{Health, Metrics};
use crate::agones_meta::{Overrides, SESSION};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn annotations(gs: &agones::GameServer) -> BTreeMap<String, String> {
    gs.object_meta.as_ref().map(|m| m.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

/// A connected SDK.
pub struct Agones {
    sdk: agones::Sdk,
    pub name: String,
}

impl std::fmt::Debug for Agones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agones").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Agones {
    /// Connects to the sidecar and reads the GameServer.
    pub async fn connect(timeout: Duration) -> anyhow::Result<(Agones, Overrides)> {
        let mut sdk = tokio::time::timeout(timeout, agones::Sdk::new(None, Some(Duration::from_secs(30))))
            .await
            .map_err(|_| anyhow::anyhow!("agones: no SDK sidecar answered within {timeout:?} (AGONES_SDK_GRPC_PORT)"))?
            .map_err(|e| anyhow::anyhow!("agones: cannot connect to the SDK sidecar: {e}"))?;
        let gs = sdk.get_gameserver().await.map_err(|e| anyhow::anyhow!("agones: GetGameServer: {e}"))?;
        let name = gs.object_meta.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        Ok((Agones { sdk, name }, Overrides::from_annotations(&annotations(&gs))))
    }

    pub async fn ready(&mut self) -> anyhow::Result<()> {
        self.sdk.ready().await.map_err(|e| anyhow::anyhow!("agones: Ready: {e}"))
    }

    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        self.sdk.shutdown().await.map_err(|e| anyhow::anyhow!("agones: Shutdown: {e}"))
    }

    /// Pings health every `every` while the tick loop is alive.
    pub fn spawn_health(&self, health: Arc<Health>, now_ms: fn() -> u64, every: Duration, metrics: Metrics) -> tokio::task::JoinHandle<()> {
        let tx = self.sdk.health_check();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            loop {
                t.tick().await;
                if health.alive(now_ms()) {
                    if tx.send(()).await.is_err() {
                        break;
                    }
                    metrics.agones_health_pings.inc();
                }
            }
        })
    }

    /// Watches the GameServer; logs and exports allocation (once), and
    /// hands every new `dualplane.dev/session` value to `on_match` (the
    /// allocation's match: tokens for the previous one stop working).
    pub fn spawn_watch(&self, metrics: Metrics, on_match: Box<dyn Fn(&str) + Send + Sync>) -> tokio::task::JoinHandle<()> {
        let mut sdk = self.sdk.clone();
        tokio::spawn(async move {
            let Ok(mut stream) = sdk.watch_gameserver().await else { return };
            let mut allocated = false;
            let mut session: Option<String> = None;
            while let Ok(Some(gs)) = stream.message().await {
                let now = Overrides::from_annotations(&annotations(&gs)).session;
                if now.is_some() && now != session {
                    if let Some(m) = &now {
                        on_match(m);
                        crate::serve::say(&format!("agones: match is now {m:?}"));
                    }
                    session = now;
                }
                let state = gs.status.as_ref().map(|s| s.state.clone()).unwrap_or_default();
                if state == "Allocated" && !allocated {
                    allocated = true;
                    metrics.agones_allocated.set(1);
                    let a = annotations(&gs);
                    let mine: BTreeMap<&String, &String> = a.iter().filter(|(k, _)| k.starts_with("dualplane.dev/")).collect();
                    crate::serve::say(&format!("agones: allocated, session {:?}, metadata {mine:?}", a.get(SESSION).map_or("", String::as_str)));
                }
            }
        })
    }
}
