//! One task per QUIC connection: hello, join, then datagrams and control
//! frames until it leaves.

use net::driver::{read_frame, write_frame};
use net::hub::{Departed, Hub};
use net::proto::{bye, Frame};
use sim_core::MicroPlan;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use super::*;
use super::stats::Fault;

pub(crate) struct ConnCtx {
    pub(crate) tick_rate: u32,
    /// The character controller's parameters for players' avatars.
    pub(crate) character: Option<sim_core::character::CharacterParams>,
    pub(crate) metrics: crate::admin::Metrics,
    pub(crate) health: Arc<crate::admin::Health>,
    pub(crate) hub: Arc<Mutex<Hub>>,
    pub(crate) conns: Arc<Mutex<BTreeMap<u32, quinn::Connection>>>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) join_tx: SyncSender<JoinReq>,
    pub(crate) leave_tx: SyncSender<Departed>,
    pub(crate) input_tx: SyncSender<MicroPlan>,
    pub(crate) control_tx: SyncSender<super::tick::ControlReq>,
    pub(crate) outboxes: Outboxes,
    pub(crate) published: Published,
}

/// Frames the tick thread sends to sessions (plan statuses and ray results),
/// by source id, with whether the session wants every plan's status (a
/// policy) or only ray results (a player's fire). Bounded: a session that
/// does not keep up loses frames, the tick thread never waits.
pub(crate) type Outboxes = Arc<Mutex<BTreeMap<u32, Outbox>>>;

/// One session's outbox: where its frames go, whether it wants every
/// plan's status (a policy) or only refusals and ray results (a player),
/// and what it asked to observe (policies).
pub(crate) struct Outbox {
    pub(crate) tx: tokio::sync::mpsc::Sender<Frame>,
    pub(crate) statuses: bool,
    pub(crate) observe: Option<net::observe::ObserveRequest>,
}

/// When each recent tick's state was published (tick, now_ms), for the
/// policy plan latency metric.
pub(crate) type Published = Arc<Mutex<std::collections::VecDeque<(u64, u64)>>>;

/// Milliseconds since the state of `tick` was published, if it is recent.
pub(crate) fn since_published(published: &Published, tick: u64) -> Option<u64> {
    let p = published.lock().ok()?;
    let (first, _) = *p.front()?;
    let (t, at) = *p.get(usize::try_from(tick.checked_sub(first)?).ok()?)?;
    (t == tick).then(|| now_ms().saturating_sub(at))
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) async fn handle(conn: quinn::Connection, ctx: ConnCtx) {
    let Ok(Ok((mut send, mut recv))) = tokio::time::timeout(Duration::from_secs(5), conn.accept_bi()).await else {
        ctx.stats.fault(Fault::NoHello);
        conn.close(quinn::VarInt::from_u32(u32::from(bye::PROTOCOL)), b"no control stream");
        return;
    };
    let hello = match tokio::time::timeout(Duration::from_secs(5), read_frame(&mut recv)).await {
        Ok(Ok(Some(f))) => f,
        Ok(Err(net::driver::DriverError::Proto(net::proto::ProtoError::TooLarge(_)))) => {
            ctx.stats.fault(Fault::OversizedFrame);
            refuse(&conn, &mut send, bye::PROTOCOL, "frame too large").await;
            return;
        }
        // Nothing within 5 s (or the stream ended first).
        Err(_) | Ok(Ok(None)) => {
            ctx.stats.fault(Fault::NoHello);
            refuse(&conn, &mut send, bye::PROTOCOL, "expected Hello within 5 s").await;
            return;
        }
        Ok(Err(net::driver::DriverError::Proto(_))) => {
            ctx.stats.fault(Fault::BadHello);
            refuse(&conn, &mut send, bye::PROTOCOL, "expected Hello").await;
            return;
        }
        // The stream or connection failed (the client went away): no fault.
        Ok(Err(_)) => return,
    };
    if ctx.health.draining.load(Ordering::Relaxed) {
        refuse(&conn, &mut send, bye::SHUTDOWN, "server draining").await;
        return;
    }
    let (admitted, evicted) = match ctx.hub.lock() {
        Ok(mut h) => (h.hello(&hello, unix_now()), h.take_evicted()),
        Err(_) => return,
    };
    // A reconnect replaced a session whose connection died quietly: close
    // that connection; its avatar is parked for this one.
    for d in evicted {
        if let Some(c) = ctx.conns.lock().ok().and_then(|mut c| c.remove(&d.client_id)) {
            c.close(quinn::VarInt::from_u32(u32::from(bye::NORMAL)), b"replaced by a reconnect");
        }
        let _ = ctx.leave_tx.try_send(d);
    }
    let claims = match admitted {
        Ok(c) => c,
        Err(r) => {
            refuse(&conn, &mut send, r.bye_code(), &r.reason()).await;
            return;
        }
    };
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    let (id, role) = (claims.client_id, claims.role);
    if ctx.join_tx.try_send(JoinReq { claims: claims.clone(), reply: reply_tx }).is_err() {
        cancel_pending(&ctx, claims.client_id);
        refuse(&conn, &mut send, bye::FULL, "server busy").await;
        return;
    }
    let Ok(Ok(controlled)) = tokio::time::timeout(Duration::from_secs(5), reply_rx).await else {
        cancel_pending(&ctx, claims.client_id);
        refuse(&conn, &mut send, bye::PROTOCOL, "join failed").await;
        return;
    };
    // The connection holds its session itself: datagrams and plans lock
    // only it, never the hub.
    let Some((epoch, session)) = ctx.hub.lock().ok().and_then(|mut h| {
        let epoch = h.join(&claims, controlled.clone(), now_ms());
        h.session(id).map(|s| (epoch, s))
    }) else {
        return;
    };
    let leave = |ctx: &ConnCtx, id: u32| leave(ctx, id, epoch, conn.stable_id());
    let (tick_rate, source, tick) = (ctx.tick_rate, net::hub::source_of(id), ctx.stats.world_tick.load(Ordering::Relaxed));
    if let Ok(mut c) = ctx.conns.lock() {
        c.insert(id, conn.clone());
    }
    let welcome = Frame::Welcome { client_id: id, source_id: source, role, tick_rate, tick, schema_hash: sim_core::PORTS_SCHEMA_HASH, controlled };
    if write_frame(&mut send, &welcome).await.is_err() {
        leave(&ctx, id);
        return;
    }
    if role == net::token::Role::Player
        && let Some(params) = ctx.character
        && write_frame(&mut send, &Frame::Character(params)).await.is_err() {
            leave(&ctx, id);
            return;
        }
    // Frames to the client go through a bounded outbox drained by its own
    // writer task: a client that never reads its control stream loses
    // frames (and stalls only its writer), never this task or the tick.
    // Policies get every plan's status; players only refusals and the
    // results of their fire commands.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Frame>(256);
    let is_policy = role == net::token::Role::Policy;
    if role != net::token::Role::Observer
        && let Ok(mut o) = ctx.outboxes.lock() {
            o.insert(source, Outbox { tx: out_tx.clone(), statuses: is_policy, observe: None });
        }
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if write_frame(&mut send, &f).await.is_err() {
                break;
            }
        }
        send
    });
    let (reader, mut frame_rx) = net::driver::spawn_frame_reader(recv);
    // A policy's control request in flight, and the task that applies its reply.
    let control_pending = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut waiter: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            d = conn.read_datagram() => {
                let Ok(d) = d else { break };
                ctx.metrics.datagrams_in.inc();
                ctx.metrics.bytes_in.inc_by(d.len() as u64);
                let server_tick = ctx.stats.world_tick.load(Ordering::Relaxed);
                let inputs = net::hub::lock(&session).on_datagram(now_ms(), server_tick, &d);
                if let Ok(inputs) = inputs {
                    for p in inputs {
                        if ctx.input_tx.try_send(p).is_err() {
                            ctx.stats.inputs_queue_full.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            f = frame_rx.recv() => {
                let Some(f) = f else { break };
                match f {
                    Ok(Some(Frame::Plan(bytes))) => {
                        // Dedupe and rate limit under the session's lock;
                        // decode and role checks outside it (a flood of big
                        // plans must not hold up its snapshots); then the
                        // budget.
                        let fresh = net::hub::lock(&session).gate_input(now_ms(), &bytes);
                        let r = match fresh {
                            Ok(true) => {
                                let screened = net::session::screen_input(role, source, bytes);
                                let mut s = net::hub::lock(&session);
                                match screened {
                                    Ok((plan, cost)) => s.accept_input(plan, cost, ctx.stats.world_tick.load(Ordering::Relaxed)),
                                    Err(r) => Err(s.refused(r)),
                                }
                            }
                            Ok(false) => Ok(None),
                            Err(r) => Err(r),
                        };
                        // A refused plan's sender is told why (bounded: a
                        // client that does not read loses statuses).
                        if let Err(net::session::Refusal { reject, sequence: Some(sequence) }) = r
                            && let Some(status) = reject.status() {
                                ctx.stats.outbox(out_tx.try_send(Frame::PlanStatus { sequence, tick: ctx.stats.world_tick.load(Ordering::Relaxed), status: status as u16 }));
                            }
                        if let Ok(Some(p)) = r {
                            // The correlation id of an accepted policy plan is
                            // the tick it was decided on.
                            if is_policy
                                && let Some(ms) = since_published(&ctx.published, p.header().correlation) {
                                    ctx.metrics.policy_latency.observe(ms as f64 / 1000.0);
                                }
                            if ctx.input_tx.try_send(p).is_err() {
                                ctx.stats.inputs_queue_full.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(Some(Frame::Control { want })) if is_policy => {
                        if let Some(w) = request_control(&ctx, &session, &out_tx, &control_pending, source, want) {
                            waiter = Some(w);
                        }
                    }
                    Ok(Some(Frame::Observe(r))) => {
                        // Past the caps, or not a policy: counted, ignored
                        // (the client library refuses such requests itself).
                        let mine = ctx.outboxes.lock().ok().and_then(|mut o| {
                            o.get_mut(&source).filter(|b| is_policy && r.invalid().is_none() && b.tx.same_channel(&out_tx)).map(|b| b.observe = (r.every > 0).then_some(r))
                        });
                        if mine.is_none() {
                            ctx.stats.fault(Fault::BadObserve);
                        }
                    }
                    Ok(Some(Frame::Bye { .. })) | Ok(None) => break,
                    Ok(Some(_)) => ctx.stats.fault(Fault::UnexpectedFrame),
                    Err(net::driver::DriverError::Proto(net::proto::ProtoError::TooLarge(_))) => {
                        ctx.stats.fault(Fault::OversizedFrame);
                        close_for(&conn, &out_tx, "frame too large").await;
                        break;
                    }
                    // Bytes that are no frame: the stream cannot be
                    // resynchronised, so the connection ends (told why).
                    Err(net::driver::DriverError::Proto(e)) => {
                        ctx.stats.fault(Fault::MalformedFrame);
                        close_for(&conn, &out_tx, &format!("malformed frame: {e}")).await;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
    if let Ok(mut o) = ctx.outboxes.lock() {
        // A reconnect under the same id may have registered a new outbox.
        if o.get(&source).is_some_and(|b| b.tx.same_channel(&out_tx)) {
            o.remove(&source);
        }
    }
    // No reply may change the session once it leaves (the tick thread
    // drops a request whose waiter is gone; what was granted is released
    // with the rest of what the source owns).
    if let Some(w) = waiter {
        w.abort();
    }
    reader.abort();
    writer.abort();
    leave(&ctx, id);
}

/// Sends a policy's control request to the tick thread (one in flight;
/// another is counted and ignored) and spawns the task that applies the
/// reply: the session's controlled set, and a Controlled frame to the client.
fn request_control(ctx: &ConnCtx, session: &net::hub::SharedSession, out_tx: &tokio::sync::mpsc::Sender<Frame>, pending: &Arc<std::sync::atomic::AtomicBool>, source: u32, want: u32) -> Option<tokio::task::JoinHandle<()>> {
    if pending.swap(true, Ordering::AcqRel) {
        ctx.stats.fault(Fault::ControlBusy);
        return None;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if ctx.control_tx.try_send(super::tick::ControlReq { req: net::control::Request { source, want }, reply: tx }).is_err() {
        pending.store(false, Ordering::Release);
        ctx.stats.fault(Fault::ControlBusy);
        return None;
    }
    let (session, out, pending, stats) = (Arc::clone(session), out_tx.clone(), Arc::clone(pending), Arc::clone(&ctx.stats));
    Some(tokio::spawn(async move {
        if let Ok((tick, handles)) = rx.await {
            net::hub::lock(&session).set_controlled(handles.clone());
            stats.outbox(out.try_send(Frame::Controlled { tick, handles }));
        }
        pending.store(false, Ordering::Release);
    }))
}

pub(crate) fn cancel_pending(ctx: &ConnCtx, id: u32) {
    if let Ok(mut h) = ctx.hub.lock() {
        h.cancel_pending(id);
    }
}

/// Ends this connection's session (of `epoch`), unless a reconnect has
/// replaced it: then the new connection and session stay.
pub(crate) fn leave(ctx: &ConnCtx, id: u32, epoch: u64, conn_id: usize) {
    if let Ok(mut c) = ctx.conns.lock()
        && c.get(&id).is_some_and(|k| k.stable_id() == conn_id) {
            c.remove(&id);
        }
    if let Some(d) = ctx.hub.lock().ok().and_then(|mut h| h.leave_epoch(id, epoch)) {
        let _ = ctx.leave_tx.try_send(d);
    }
}

/// Tells a joined client why it is being disconnected (through its
/// outbox, in order after what it was already sent), then closes.
async fn close_for(conn: &quinn::Connection, out_tx: &tokio::sync::mpsc::Sender<Frame>, reason: &str) {
    let _ = out_tx.try_send(Frame::Bye { code: bye::PROTOCOL, reason: reason.to_string() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.close(quinn::VarInt::from_u32(u32::from(bye::PROTOCOL)), reason.as_bytes());
}

pub(crate) async fn refuse(conn: &quinn::Connection, send: &mut quinn::SendStream, code: u16, reason: &str) {
    // Bounded: a peer that grants no stream credit cannot hold this task.
    let _ = tokio::time::timeout(Duration::from_secs(2), write_frame(send, &Frame::Bye { code, reason: reason.to_string() })).await;
    let _ = send.finish();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.close(quinn::VarInt::from_u32(u32::from(code)), reason.as_bytes());
}
