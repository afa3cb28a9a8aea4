//! `dualplane.connect(...)`: a remote policy session. The Rust client
//! (quinn + the sans-IO `ClientSession`) runs on its own thread with a
//! single-threaded tokio runtime; Python talks to it through a mutex, a
//! condition variable and a channel, and every blocking call releases the
//! GIL. Plans travel on the reliable control stream; the server answers each
//! with a `PlanStatus` frame.

use crate::sim::status_enum;
use crate::{ffi, value_error};
use net::driver::{connect_to, write_frame, ClientOptions};
use net::tls::Trust;
use net::proto::Frame;
use net::session::{ClientSession, ReplicatedColumns};
use net::token::Role;
use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyConnectionError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Plan outcomes kept for `journals()`; older ones are dropped (counted).
const MAX_STATUSES: usize = 65_536;

#[derive(Debug, Default)]
struct State {
    latest: Option<ReplicatedColumns>,
    /// Snapshots applied so far (observe waits for this to move).
    applied: u64,
    statuses: Vec<(u32, u64, u16)>,
    closed: Option<String>,
    received: u64,
    hash_failures: u32,
    lost: u64,
    bytes: u64,
    plans_sent: u64,
    statuses_dropped: u64,
    /// The latest raycast results: (sequence, tick, hit, handle, distance).
    rays: Option<Rays>,
    /// The latest overlap results: (sequence, tick, CSR offsets, handles).
    overlaps: Option<(u32, u64, Vec<u32>, Vec<u64>)>,
    avatar: Avatar,
    /// A player's held input (move x, z, yaw, pitch; buttons), read every tick.
    held: ([f32; 4], u8),
    /// A policy's controlled set as the server last told it (tick, handles);
    /// None until its first control request is answered.
    controlled: Option<(u64, Vec<u64>)>,
    /// The latest policy observation, how many arrived, and how many
    /// failed their hash (dropped).
    observation: Option<net::observe::Observed>,
    observations: u64,
    observation_hash_failures: u64,
}

/// Raycast results of one plan: (sequence, tick, hit, handle, distance).
type Rays = (u32, u64, Vec<u32>, Vec<u64>, Vec<f32>);

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut State)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
        self.changed.notify_all();
    }

    /// Waits until `pick` finds something (Some), the session ends (Err:
    /// why) or `deadline` passes (None).
    fn wait_for<T>(&self, deadline: Option<Instant>, pick: impl Fn(&State) -> Option<T>) -> Result<Option<T>, String> {
        let mut s = self.state.lock().map_err(|_| "session state poisoned".to_string())?;
        loop {
            if let Some(t) = pick(&s) {
                return Ok(Some(t));
            }
            if let Some(r) = &s.closed {
                return Err(r.clone());
            }
            s = match deadline {
                None => self.changed.wait(s).map_err(|_| "session state poisoned".to_string())?,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    self.changed.wait_timeout(s, d - now).map_err(|_| "session state poisoned".to_string())?.0
                }
            };
        }
    }
}

#[derive(Debug)]
enum Cmd {
    Plan(Vec<u8>),
    /// Ask to control this many NPCs in all.
    Control(u32),
    /// Ask for observations.
    Observe(net::observe::ObserveRequest),
}

/// A player's avatar as its session sees it: the prediction and the
/// server's latest state.
#[derive(Debug, Default, Clone)]
struct Avatar {
    predicted: Option<sim_core::character::CharacterState>,
    server: Option<(u64, sim_core::character::CharacterState)>,
    alive: bool,
    commands_sent: u64,
    commands_late: u32,
    corrections: u64,
    compared: u64,
    error_max_m: f32,
    lead: f64,
}

#[derive(Debug, Clone)]
struct Welcome {
    client_id: u32,
    source_id: u32,
    tick_rate: u32,
    tick: u64,
    controlled: Vec<u64>,
}

#[allow(clippy::too_many_arguments)]
async fn run(addr: String, opts: ClientOptions, role: Role, token: String, shared: Arc<Shared>, mut cmds: tokio::sync::mpsc::Receiver<Cmd>, stop: Arc<tokio::sync::Notify>, ready: std::sync::mpsc::Sender<Result<Welcome, String>>) {
    let c = match connect_to(&addr, &opts, role, &token).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let w = match &c.welcome {
        Frame::Welcome { client_id, source_id, tick_rate, tick, controlled, .. } => Welcome { client_id: *client_id, source_id: *source_id, tick_rate: *tick_rate, tick: *tick, controlled: controlled.clone() },
        other => {
            let _ = ready.send(Err(format!("expected a welcome, got {other:?}")));
            return;
        }
    };
    let c_welcome_rate = w.tick_rate;
    let _ = ready.send(Ok(w));
    let net::driver::Connected { endpoint, conn, mut send, recv, .. } = c;
    let (reader, mut frames) = net::driver::spawn_frame_reader(recv);
    let mut client = ClientSession::new();
    // Players: one command per tick of the input timeline, with the input
    // Python last set, predicted by the server's own controller.
    let player = role == Role::Player;
    let tick_rate = c_welcome_rate;
    let mut clock = net::timeline::TickClock::new(tick_rate);
    let mut predictor: Option<net::predict::Predictor> = None;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(tick_rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut interp = net::timeline::InterpDelay::new(tick_rate);
    client.set_tick_rate(tick_rate);
    let (mut seq, mut last_tick) = (0u32, 0u64);
    let start = Instant::now();
    let ms = move || start.elapsed().as_millis() as u64;
    let reason = loop {
        tokio::select! {
            d = conn.read_datagram() => {
                let d = match d {
                    Ok(d) => d,
                    Err(e) => break format!("connection closed: {e}"),
                };
                let before = client.stats.snapshots_applied;
                let block = client.on_datagram(&d);
                if let Some((tick, b)) = block {
                    interp.on_snapshot(ms(), tick);
                    clock.on_snapshot(ms(), tick, conn.rtt().as_secs_f64() * 1000.0);
                    clock.on_lead(b.lead);
                    let state = sim_core::character::CharacterState { pos: b.pos, vel: b.vel };
                    let err = if b.alive { predictor.as_mut().and_then(|p| p.on_server(tick, state)) } else { None };
                    let (pred, corr, cmp) = predictor.as_ref().map_or((None, 0, 0), |p| (p.current(), p.corrections, p.compared));
                    let lead = clock.smoothed_lead();
                    shared.update(|s| {
                        let a = &mut s.avatar;
                        (a.server, a.alive, a.commands_late, a.predicted, a.corrections, a.compared, a.lead) = (Some((tick, state)), b.alive, b.commands_late, pred, corr, cmp, lead);
                        if let Some(e) = err {
                            a.error_max_m = a.error_max_m.max(e);
                        }
                    });
                }
                // A player's ack rides on its next command datagram.
                if (!player || last_tick == 0)
                    && let Some(ack) = client.poll_ack() {
                        let _ = conn.send_datagram(ack.into());
                    }
                let st = client.stats.clone();
                let cols = (st.snapshots_applied != before).then(|| client.columns()).flatten();
                shared.update(|s| {
                    if let Some(c) = cols {
                        s.latest = Some(c);
                        s.applied = st.snapshots_applied;
                    }
                    s.received = st.snapshots_received;
                    s.hash_failures = st.hash_failures;
                    s.lost = st.lost;
                    s.bytes = st.bytes_received;
                });
            }
            f = frames.recv() => match f {
                Some(Ok(Some(Frame::PlanStatus { sequence, tick, status }))) => shared.update(|s| {
                    if s.statuses.len() == MAX_STATUSES {
                        s.statuses.remove(0);
                        s.statuses_dropped += 1;
                    }
                    s.statuses.push((sequence, tick, status));
                }),
                Some(Ok(Some(Frame::PlanRays { sequence, tick, hit, handle, distance_bits }))) => {
                    let distance = distance_bits.into_iter().map(f32::from_bits).collect();
                    shared.update(|s| s.rays = Some((sequence, tick, hit, handle, distance)));
                }
                Some(Ok(Some(Frame::PlanOverlaps { sequence, tick, offsets, handles }))) => shared.update(|s| s.overlaps = Some((sequence, tick, offsets, handles))),
                Some(Ok(Some(Frame::Character(p)))) => predictor = Some(net::predict::Predictor::new(p)),
                Some(Ok(Some(Frame::Controlled { tick, handles }))) => shared.update(|s| s.controlled = Some((tick, handles))),
                Some(Ok(Some(Frame::Observation { hash, observed }))) => {
                    let ok = observed.hash() == hash;
                    shared.update(|s| {
                        if ok {
                            s.observation = Some(observed);
                            s.observations += 1;
                        } else {
                            s.observation_hash_failures += 1;
                        }
                    });
                }
                Some(Ok(Some(Frame::Bye { code, reason }))) => break format!("server said bye ({code}): {reason}"),
                Some(Ok(Some(_))) => {}
                Some(Ok(None)) | None => break "server closed the control stream".to_string(),
                Some(Err(e)) => break format!("control stream: {e}"),
            },
            () = stop.notified() => {
                // Flush plans already submitted, then say bye: bounded, so a
                // server that stopped reading cannot hold `close()`.
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while let Ok(Cmd::Plan(b)) = cmds.try_recv() {
                        if write_frame(&mut send, &Frame::Plan(b)).await.is_err() {
                            return;
                        }
                        shared.update(|s| s.plans_sent += 1);
                    }
                    let _ = write_frame(&mut send, &Frame::Bye { code: net::proto::bye::NORMAL, reason: "client closed".into() }).await;
                })
                .await;
                let _ = send.finish();
                break "closed by this client".to_string();
            }
            _ = ticker.tick(), if player && predictor.is_some() => {
                let Some(t) = clock.command_tick(ms()) else { continue };
                if t <= last_tick {
                    continue;
                }
                // What this player sees: others at the render tick.
                let seen = interp.render_tick(ms()).map_or(0, |t| t.max(0.0) as u64);
                let (held, buttons) = shared.state.lock().map(|s| s.held).unwrap_or_default();
                let mut sent = 0u64;
                for k in (last_tick + 1).max(t.saturating_sub(2))..=t {
                    seq += 1;
                    let cmd = net::command::Command::new(seq, k, [held[0], held[1]], held[2], held[3], buttons).seen(k.saturating_sub(seen));
                    client.command(cmd);
                    if let Some(p) = predictor.as_mut() {
                        p.command(k, sim_core::character::CharacterInput { movement: cmd.movement(), buttons: u32::from(cmd.buttons) });
                    }
                    sent += 1;
                }
                last_tick = t;
                if let Some(d) = client.poll_ack() {
                    let _ = conn.send_datagram(d.into());
                }
                let pred = predictor.as_ref().and_then(net::predict::Predictor::current);
                shared.update(|s| {
                    s.avatar.commands_sent += sent;
                    s.avatar.predicted = pred;
                });
            }
            c = cmds.recv() => match c {
                Some(Cmd::Plan(b)) => {
                    if let Err(e) = write_frame(&mut send, &Frame::Plan(b)).await {
                        break format!("cannot send a plan: {e}");
                    }
                    shared.update(|s| s.plans_sent += 1);
                }
                Some(Cmd::Control(want)) => {
                    if let Err(e) = write_frame(&mut send, &Frame::Control { want }).await {
                        break format!("cannot send a control request: {e}");
                    }
                }
                Some(Cmd::Observe(r)) => {
                    if let Err(e) = write_frame(&mut send, &Frame::Observe(r)).await {
                        break format!("cannot send an observation request: {e}");
                    }
                }
                None => break "closed by this client".to_string(),
            },
        }
    };
    let said_bye = reason == "closed by this client";
    shared.update(|s| s.closed = Some(reason));
    if said_bye {
        // Let the server read everything up to our bye and close first, so
        // no plan still in flight is cut off by our close.
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
    }
    reader.abort();
    conn.close(quinn::VarInt::from_u32(0), b"bye");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

/// A remote policy (or observer) session. Frozen: every method takes
/// `&self`, so a thread blocked in `observe` never locks out `submit`,
/// `journals` or `close` from another thread (asyncio's `to_thread`).
#[pyclass(module = "dualplane._native", frozen)]
#[derive(Debug)]
pub struct Session {
    shared: Arc<Shared>,
    cmds: tokio::sync::mpsc::Sender<Cmd>,
    stop: Arc<tokio::sync::Notify>,
    welcome: Welcome,
    role: Role,
    seen: std::sync::atomic::AtomicU64,
    seen_observations: std::sync::atomic::AtomicU64,
    /// Signalled when the session thread ends.
    done: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// A timeout in seconds from Python: None, inf or NaN = wait forever.
fn timeout_duration(what: &str, t: Option<f64>) -> PyResult<Option<Duration>> {
    match t {
        None => Ok(None),
        Some(t) if !t.is_finite() => Ok(None),
        Some(t) if t < 0.0 => Err(value_error(format!("{what}: timeout must be >= 0, got {t}"))),
        Some(t) => Ok(Some(Duration::try_from_secs_f64(t).map_err(|e| value_error(format!("{what}: timeout {t}: {e}")))?)),
    }
}

fn read_cert(c: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = c.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    let path = c.extract::<std::path::PathBuf>()?;
    let certs = net::tls::load_certs(&path).map_err(|e| value_error(format!("cert: cannot read the server certificate: {e}")))?;
    Ok(certs[0].to_vec())
}

/// The trust `connect` uses: `ca` (a CA file; the name is checked), `pin`
/// (`sha256:<hex>` or a certificate file), `cert` (a certificate to pin, as
/// bytes or a path); with none of them, the dev dir's cert.der pinned when
/// it exists, else the system roots.
fn trust(cert: Option<&Bound<'_, PyAny>>, ca: Option<std::path::PathBuf>, pin: Option<&str>) -> PyResult<Trust> {
    match (cert, ca, pin) {
        (None, None, None) => {
            let dev = net::driver::default_dev_dir().join("cert.der");
            match std::fs::read(&dev) {
                Ok(der) => Ok(Trust::pin_der(&der)),
                Err(_) => Ok(Trust::System),
            }
        }
        (Some(c), None, None) => Ok(Trust::pin_der(&read_cert(c)?)),
        (None, Some(ca), None) => Ok(Trust::Ca(ca)),
        (None, None, Some(p)) => Trust::pin(p).map_err(|e| value_error(format!("pin: {e}"))),
        _ => Err(value_error("give at most one of cert, ca and pin")),
    }
}

/// `connect(addr, token, cert=None, role="policy", timeout=5.0, *,
/// server_name=None, ca=None, pin=None)`: opens a session and waits (GIL
/// released) for the server's welcome. `addr` is `host:port` (a name or an
/// IP address). Trust: `ca` (a CA file, the server's name checked against
/// `server_name` or the host), `pin` (`sha256:<hex>` or a certificate
/// file), `cert` (the certificate to pin, bytes or a path); by default the
/// dev dir's cert.der ($DUALPLANE_DEV_DIR or ~/.dualplane/dev) when it
/// exists, else the system roots.
#[pyfunction]
#[pyo3(signature = (addr, token, cert = None, role = "policy", timeout = 5.0, *, server_name = None, ca = None, pin = None))]
#[allow(clippy::too_many_arguments)]
pub fn connect(py: Python<'_>, addr: &str, token: &str, cert: Option<&Bound<'_, PyAny>>, role: &str, timeout: f64, server_name: Option<String>, ca: Option<std::path::PathBuf>, pin: Option<&str>) -> PyResult<Session> {
    ffi();
    let port_ok = addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !port_ok {
        return Err(value_error(format!("addr {addr:?}: expected host:port (a host name or an IP address, and a port)")));
    }
    let role: Role = role.parse().map_err(|_| value_error(format!("role {role:?}: expected player, policy or observer")))?;
    let opts = ClientOptions { server_name, ..ClientOptions::trusting(trust(cert, ca, pin)?) };
    let target = addr.to_string();
    let shared = Arc::new(Shared::default());
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let wait = timeout_duration("connect", Some(timeout))?.unwrap_or(Duration::from_secs(3600));
    let (sh, token) = (Arc::clone(&shared), token.to_string());
    let stop = Arc::new(tokio::sync::Notify::new());
    let (st, (done_tx, done_rx)) = (Arc::clone(&stop), std::sync::mpsc::channel::<()>());
    std::thread::Builder::new()
        .name("dualplane-session".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(run(target, opts, role, token, sh, rx, st, ready_tx)),
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("tokio runtime: {e}")));
                }
            }
            let _ = done_tx.send(());
        })
        .map_err(|e| PyConnectionError::new_err(format!("cannot start the session thread: {e}")))?;
    match py.detach(move || ready_rx.recv_timeout(wait)) {
        Ok(Ok(welcome)) => Ok(Session { shared, cmds: tx, stop, welcome, role, seen: std::sync::atomic::AtomicU64::new(0), seen_observations: std::sync::atomic::AtomicU64::new(0), done: std::sync::Mutex::new(Some(done_rx)) }),
        Ok(Err(e)) => Err(PyConnectionError::new_err(format!("connect to {addr}: {e}"))),
        Err(_) => {
            stop.notify_one();
            Err(PyTimeoutError::new_err(format!("connect to {addr}: no welcome within {timeout} s")))
        }
    }
}

fn closed_error(reason: &str) -> PyErr {
    PyConnectionError::new_err(format!("session closed: {reason}"))
}

#[pymethods]
impl Session {
    #[getter]
    fn client_id(&self) -> u32 {
        ffi();
        self.welcome.client_id
    }
    /// The source id to put in this session's plans.
    #[getter]
    fn source_id(&self) -> u32 {
        ffi();
        self.welcome.source_id
    }
    #[getter]
    fn tick_rate(&self) -> u32 {
        ffi();
        self.welcome.tick_rate
    }
    /// Server tick when the session was admitted.
    #[getter]
    fn welcome_tick(&self) -> u64 {
        ffi();
        self.welcome.tick
    }
    /// Handles this session may command (NPCs granted to a policy worker):
    /// the server's latest answer to `request_npcs`, else the welcome's.
    #[getter]
    fn controlled<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        ffi();
        let now = self.shared.state.lock().ok().and_then(|s| s.controlled.as_ref().map(|(_, h)| h.clone()));
        PyArray1::from_vec(py, now.unwrap_or_else(|| self.welcome.controlled.clone()))
    }

    /// The tick of the server's latest answer to `request_npcs` (None
    /// before the first).
    #[getter]
    fn controlled_tick(&self) -> Option<u64> {
        ffi();
        self.shared.state.lock().ok().and_then(|s| s.controlled.as_ref().map(|(t, _)| *t))
    }

    /// Asks to control `n` NPCs in all (a policy): more are granted from
    /// the free ones, fewer releases the rest. The answer arrives a tick
    /// later: `controlled` and `controlled_tick` change. One request at a
    /// time: wait for `controlled_tick` to move before the next.
    fn request_npcs(&self, n: u32) -> PyResult<()> {
        ffi();
        if let Some(r) = self.shared.state.lock().ok().and_then(|s| s.closed.clone()) {
            return Err(closed_error(&r));
        }
        self.cmds.try_send(Cmd::Control(n)).map_err(|_| closed_error("the session's send queue is full or closed"))
    }
    /// Asks the server for an observation every `every` ticks (0 stops) of
    /// this policy's entities and everything within `radius` metres of
    /// them, full precision (`observation()`). Refused here, with the
    /// caps, past 600 ticks or 50 m.
    #[pyo3(signature = (every = 1, radius = 8.0))]
    fn request_observations(&self, every: u16, radius: f32) -> PyResult<()> {
        ffi();
        let r = crate::observation::request(every, radius)?;
        if let Some(c) = self.shared.state.lock().ok().and_then(|s| s.closed.clone()) {
            return Err(closed_error(&c));
        }
        self.cmds.try_send(Cmd::Observe(r)).map_err(|_| closed_error("the session's send queue is full or closed"))
    }

    /// Waits (GIL released) for an observation newer than the last one
    /// returned: the dict `Sim.observation` gives in process (`tick`,
    /// `handle`, `archetype`, `owner`, `health`, `pos`, `linvel`). None on
    /// timeout; ConnectionError once the session has ended.
    #[pyo3(signature = (timeout = None))]
    fn observation<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Option<Bound<'py, PyDict>>> {
        ffi();
        let shared = Arc::clone(&self.shared);
        let seen = self.seen_observations.load(std::sync::atomic::Ordering::Acquire);
        let deadline = timeout_duration("observation", timeout)?.and_then(|d| Instant::now().checked_add(d));
        let got = py.detach(move || shared.wait_for(deadline, |s| if s.observations > seen { s.observation.clone().map(|o| (s.observations, o)) } else { None }));
        let Some((count, o)) = got.map_err(|r| closed_error(&r))? else { return Ok(None) };
        self.seen_observations.fetch_max(count, std::sync::atomic::Ordering::AcqRel);
        Ok(Some(crate::observation::to_dict(py, o)?))
    }

    /// (observations received, observations that failed their hash).
    #[getter]
    fn observation_counts(&self) -> (u64, u64) {
        ffi();
        self.shared.state.lock().map(|s| (s.observations, s.observation_hash_failures)).unwrap_or_default()
    }

    /// Why the session ended, or None while it is open.
    #[getter]
    fn closed_reason(&self) -> Option<String> {
        ffi();
        self.shared.state.lock().ok().and_then(|s| s.closed.clone())
    }

    /// Waits (GIL released) for a snapshot newer than the last one observed
    /// and returns its replicated columns: `tick`, `handle` uint64[N],
    /// `archetype` uint8[N], `shape` uint32[N], `pos` float32[N, 3] (metres),
    /// `rot` float32[N, 4] (x, y, z, w). Returns None on timeout; raises
    /// ConnectionError once the session has ended.
    #[pyo3(signature = (timeout = None))]
    fn observe<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Option<Bound<'py, PyDict>>> {
        ffi();
        let shared = Arc::clone(&self.shared);
        let seen = self.seen.load(std::sync::atomic::Ordering::Acquire);
        let deadline = timeout_duration("observe", timeout)?.and_then(|d| Instant::now().checked_add(d));
        let got = py.detach(move || shared.wait_for(deadline, |s| if s.applied > seen { s.latest.clone().map(|c| (s.applied, c)) } else { None }));
        let Some((applied, c)) = got.map_err(|r| closed_error(&r))? else { return Ok(None) };
        self.seen.fetch_max(applied, std::sync::atomic::Ordering::AcqRel);
        let n = c.handle.len();
        let d = PyDict::new(py);
        d.set_item("tick", c.tick)?;
        let pos: Vec<f32> = (0..n).flat_map(|i| [c.pos_x[i], c.pos_y[i], c.pos_z[i]]).collect();
        let rot: Vec<f32> = c.rot.iter().flatten().copied().collect();
        d.set_item("handle", PyArray1::from_vec(py, c.handle))?;
        d.set_item("archetype", PyArray1::from_vec(py, c.archetype))?;
        d.set_item("shape", PyArray1::from_vec(py, c.shape))?;
        d.set_item("pos", PyArray1::from_vec(py, pos).reshape([n, 3])?)?;
        d.set_item("rot", PyArray1::from_vec(py, rot).reshape([n, 4])?)?;
        Ok(Some(d))
    }

    /// Sends a plan (bytes) on the reliable stream; never blocks. Returns
    /// False when the outgoing queue is full (the plan is dropped).
    fn submit(&self, plan: &Bound<'_, PyAny>) -> PyResult<bool> {
        ffi();
        let bytes = crate::sim::one_plan(plan).ok_or_else(|| crate::type_error("submit: plan must be bytes or a PlanBuilder"))?;
        if let Some(r) = self.shared.state.lock().ok().and_then(|s| s.closed.clone()) {
            return Err(closed_error(&r));
        }
        match self.cmds.try_send(Cmd::Plan(bytes)) {
            Ok(()) => Ok(true),
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Err(closed_error("session thread ended")),
        }
    }

    /// A player's input, held until the next call: move along x and z
    /// (-1..1, length <= 1), view yaw and pitch (radians), buttons (1 jump,
    /// 2 fire). The session sends one command per server tick with it,
    /// stamped for the tick it should arrive at, and predicts the avatar.
    #[pyo3(signature = (x = 0.0, z = 0.0, yaw = 0.0, pitch = 0.0, buttons = 0))]
    fn input(&self, x: f32, z: f32, yaw: f32, pitch: f32, buttons: u8) -> PyResult<()> {
        ffi();
        if self.role != Role::Player {
            return Err(value_error(format!("input: only a player session sends commands (this one is a {})", self.role.name())));
        }
        if ![x, z, yaw, pitch].iter().all(|v| v.is_finite()) || x.abs() > 1.0 || z.abs() > 1.0 {
            return Err(value_error(format!("input: x and z must be in -1..1 and every value finite, got x={x} z={z} yaw={yaw} pitch={pitch}")));
        }
        if let Some(r) = self.shared.state.lock().ok().and_then(|s| s.closed.clone()) {
            return Err(closed_error(&r));
        }
        self.shared.update(|s| s.held = ([x, z, yaw, pitch], buttons));
        Ok(())
    }

    /// A player's avatar: `predicted_pos`/`predicted_vel` (where this client
    /// predicts it after its newest command, or None before the first
    /// snapshot), `server_tick`, `server_pos`, `server_vel` (the server's
    /// exact state at that tick), `alive`, `commands_sent`, `commands_late`
    /// (dropped by the server for arriving after their tick), `corrections`,
    /// `compared`, `prediction_error_max_m`, `input_lead_ticks`.
    fn avatar<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        ffi();
        let a = self.shared.state.lock().map(|s| s.avatar.clone()).unwrap_or_default();
        let d = PyDict::new(py);
        d.set_item("predicted_pos", a.predicted.map(|p| p.pos.to_vec()))?;
        d.set_item("predicted_vel", a.predicted.map(|p| p.vel.to_vec()))?;
        d.set_item("server_tick", a.server.map(|s| s.0))?;
        d.set_item("server_pos", a.server.map(|s| s.1.pos.to_vec()))?;
        d.set_item("server_vel", a.server.map(|s| s.1.vel.to_vec()))?;
        d.set_item("alive", a.alive)?;
        d.set_item("commands_sent", a.commands_sent)?;
        d.set_item("commands_late", a.commands_late)?;
        d.set_item("corrections", a.corrections)?;
        d.set_item("compared", a.compared)?;
        d.set_item("prediction_error_max_m", a.error_max_m)?;
        d.set_item("input_lead_ticks", a.lead)?;
        Ok(d)
    }

    /// Plan outcomes received since the last call: (sequence, tick, Status).
    fn journals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        ffi();
        let drained: Vec<(u32, u64, u16)> = self.shared.state.lock().map(|mut s| std::mem::take(&mut s.statuses)).unwrap_or_default();
        let out = PyList::empty(py);
        for (seq, tick, code) in drained {
            let status = sim_core::Status::from_u16(code).map_or_else(|| Ok(code.into_pyobject(py)?.into_any()), |s| status_enum(py, s))?;
            out.append((seq, tick, status))?;
        }
        Ok(out)
    }

    /// The newest raycast results the server sent back (and forgets them):
    /// a dict with `sequence`, `tick` (the tick the plan was applied at),
    /// `hit` uint32[N] (0 none, 1 entity, 2 static), `handle` uint64[N],
    /// `distance` float32[N], in the plan's raycast order; None if nothing
    /// new arrived.
    fn rays<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        ffi();
        let Some((seq, tick, hit, handle, distance)) = self.shared.state.lock().ok().and_then(|mut s| s.rays.take()) else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("sequence", seq)?;
        d.set_item("tick", tick)?;
        d.set_item("hit", PyArray1::from_vec(py, hit))?;
        d.set_item("handle", PyArray1::from_vec(py, handle))?;
        d.set_item("distance", PyArray1::from_vec(py, distance))?;
        Ok(Some(d))
    }

    /// The newest overlap results the server sent back (None if none since
    /// the last call): `sequence`, `tick`, `offsets` uint32[Q+1] (CSR) and
    /// `handles` uint64[...], as `PlanJournal.overlaps()` gives in process.
    fn overlaps<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        ffi();
        let Some((seq, tick, offsets, handles)) = self.shared.state.lock().ok().and_then(|mut s| s.overlaps.take()) else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("sequence", seq)?;
        d.set_item("tick", tick)?;
        d.set_item("offsets", PyArray1::from_vec(py, offsets))?;
        d.set_item("handles", PyArray1::from_vec(py, handles))?;
        Ok(Some(d))
    }

    /// Client-side counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        ffi();
        let d = PyDict::new(py);
        if let Ok(s) = self.shared.state.lock() {
            d.set_item("snapshots_received", s.received)?;
            d.set_item("snapshots_applied", s.applied)?;
            d.set_item("hash_failures", s.hash_failures)?;
            d.set_item("lost", s.lost)?;
            d.set_item("bytes_received", s.bytes)?;
            d.set_item("plans_sent", s.plans_sent)?;
            d.set_item("statuses_dropped", s.statuses_dropped)?;
        }
        Ok(d)
    }

    /// Says bye and waits (GIL released, at most 2 s) for the session
    /// thread to end.
    fn close(&self, py: Python<'_>) {
        ffi();
        self.stop.notify_one();
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        if let Some(done) = done {
            py.detach(move || {
                let _ = done.recv_timeout(Duration::from_secs(2));
            });
        }
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(&self, py: Python<'_>, _a: Option<&Bound<'_, PyAny>>, _b: Option<&Bound<'_, PyAny>>, _c: Option<&Bound<'_, PyAny>>) {
        self.close(py);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}
