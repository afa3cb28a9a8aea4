//! The server's sans-IO hub: admits clients, owns their sessions, turns
//! joins and departures into world plans (so every world change goes
//! through plans and is replayable), and expires silent clients.

use crate::proto::Frame;
use crate::proto::PROTOCOL_VERSION;
use crate::session::{AvatarState, CoreConfig, Reject, ServerSession};
use crate::token::{Claims, Role, TokenGate};
use sim_core::{Archetype, ColumnId, Handle, MicroPlan, Op, PlanBuilder, SourceId, Tick, World};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A session shared by its connection (inputs, acks) and the replication
/// workers (snapshots), each holding only this session's lock: no lock
/// that every connection takes is held while a snapshot is encoded.
pub type SharedSession = Arc<Mutex<ServerSession>>;

/// Locks a session. A panic while it was held (a bug) leaves it usable:
/// its state is plain data, and one client must not take the server down.
pub fn lock(s: &SharedSession) -> MutexGuard<'_, ServerSession> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// NPCs granted to each policy worker on join.
pub const NPCS_PER_POLICY: usize = 4;

/// A session that ended, with what it controlled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departed {
    pub client_id: u32,
    pub source: u32,
    pub role: Role,
    pub controlled: Vec<u64>,
}

/// The source id a client's plans carry.
#[must_use]
pub fn source_of(client_id: u32) -> u32 {
    client_id.saturating_add(1)
}

/// The plan that brings a client into the world at `tick`: a player's
/// avatar (spawned by a plan from the player's own source, so the player
/// owns it) or NPCs granted by the authority to a policy worker.
#[must_use]
pub fn join_plan(world: &World, claims: &Claims, tick: Tick, taken: &[u64]) -> Option<MicroPlan> {
    let source = source_of(claims.client_id);
    let bytes = match claims.role {
        Role::Player => {
            // The scenario's spawn points, by client id (a snapshot's rules
            // always have at least one).
            let rules = &world.config().players;
            let n = rules.spawn_points.len().max(1);
            let p = rules.spawn_points.get(claims.client_id as usize % n).copied().unwrap_or([0.0, 2.0, 0.0]);
            let mut b = PlanBuilder::new(tick, SourceId(source), 0);
            b.push(Op::spawn(Archetype::Avatar, rules.shape, p));
            b.build()
        }
        Role::Policy => {
            let t = world.table(Archetype::Npc);
            let owners = t.u32(ColumnId::Owner);
            let free: Vec<u64> = t.handles().iter().zip(owners).filter(|(h, o)| **o == 0 && !taken.contains(h)).map(|(h, _)| *h).take(NPCS_PER_POLICY).collect();
            let mut b = PlanBuilder::new(tick, SourceId::SERVER, 1_000_000 + claims.client_id);
            for h in free {
                b.push(Op::Grant { handle: Handle::from_bits(h), owner: source });
            }
            b.build()
        }
        Role::Observer => return None,
    };
    MicroPlan::decode(bytes).ok()
}

/// What a join plan gave the client, read from its plan journal after the
/// tick that applied it.
#[must_use]
pub fn joined_handles(plan: &MicroPlan, journal: &sim_core::PlanJournal) -> Vec<u64> {
    if journal.status != sim_core::Status::Ok {
        return Vec::new();
    }
    if !journal.spawned.is_empty() {
        return journal.spawned.iter().map(|h| h.to_bits()).collect();
    }
    plan.ops().iter().filter_map(|o| if let Op::Grant { handle, .. } = o { Some(handle.to_bits()) } else { None }).collect()
}

/// The authority's plans for a departure: despawn a player's avatar, return
/// a policy worker's NPCs to the server. One plan per entity, and only for
/// entities still live, so one entity lost meanwhile (despawned out of
/// bounds) cannot make the others' atomic plan fail.
#[must_use]
pub fn leave_plans(world: &World, d: &Departed, tick: Tick, seq: &mut u32) -> Vec<MicroPlan> {
    let mut out = Vec::new();
    // A policy gives back whatever it owns in the world, including grants
    // that took effect after its session last heard of them.
    let mut controlled = d.controlled.clone();
    if d.role == Role::Policy {
        controlled.extend(crate::control::owned_by(world, d.source));
        controlled.sort_unstable();
        controlled.dedup();
    }
    for &h in &controlled {
        let handle = Handle::from_bits(h);
        if world.locate(handle).is_none() {
            continue;
        }
        *seq = seq.wrapping_add(1);
        let mut b = PlanBuilder::new(tick, SourceId::SERVER, *seq);
        b.push(match d.role {
            Role::Player => Op::Despawn { handle },
            _ => Op::Grant { handle, owner: 0 },
        });
        if let Ok(p) = MicroPlan::decode(b.build()) {
            out.push(p);
        }
    }
    out
}

/// Avatars of players who left, kept (stopped) for a grace period so that a
/// reconnect with a fresh token for the same client id gets the same avatar
/// back. Every change it makes to the world is a plan (replayable).
#[derive(Debug, Default)]
pub struct Parking {
    /// client id -> (avatar, tick after which it is despawned)
    parked: BTreeMap<u32, (u64, u64)>,
}

impl Parking {
    /// A player's departure: its avatar stays until `tick + grace_ticks`;
    /// returns the authority's plans: the one that stops it (a command with
    /// no input, sequence 0), after removing an avatar parked earlier for
    /// the same client. Departures of other roles, or with no live avatar,
    /// are not parked: empty, and the caller removes them as usual.
    pub fn park(&mut self, world: &World, d: &Departed, tick: Tick, grace_ticks: u64, seq: &mut u32) -> Vec<MicroPlan> {
        let mut out = Vec::new();
        let Some(&avatar) = d.controlled.first() else { return out };
        if d.role != Role::Player || grace_ticks == 0 || world.locate(Handle::from_bits(avatar)).is_none() {
            return out;
        }
        // A client already parked with another avatar (a reconnect that
        // raced its own departure): that one is removed, not leaked.
        if let Some((old, _)) = self.parked.insert(d.client_id, (avatar, tick.0.saturating_add(grace_ticks)))
            && old != avatar {
                let gone = Departed { client_id: d.client_id, source: d.source, role: Role::Player, controlled: vec![old] };
                out.extend(leave_plans(world, &gone, tick, seq));
            }
        *seq = seq.wrapping_add(1);
        let mut b = PlanBuilder::new(tick, SourceId::SERVER, *seq);
        b.push(Op::Command { handle: Handle::from_bits(avatar), sequence: 0, buttons: 0, movement: [0.0; 3], yaw: 0.0, pitch: 0.0, rewind: 0 });
        out.extend(MicroPlan::decode(b.build()).ok());
        out
    }

    /// A player joining: its parked avatar, if it has one still live.
    pub fn claim(&mut self, world: &World, client_id: u32) -> Option<u64> {
        let (avatar, _) = self.parked.remove(&client_id)?;
        world.locate(Handle::from_bits(avatar)).is_some().then_some(avatar)
    }

    /// Parked players whose grace ran out by `tick`, as departures.
    pub fn expired(&mut self, tick: u64) -> Vec<Departed> {
        let gone: Vec<u32> = self.parked.iter().filter(|(_, (_, until))| *until <= tick).map(|(c, _)| *c).collect();
        gone.into_iter()
            .filter_map(|c| self.parked.remove(&c).map(|(h, _)| Departed { client_id: c, source: source_of(c), role: Role::Player, controlled: vec![h] }))
            .collect()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }
}

/// Counters of the hub (labels are bounded: reject reasons and outcomes).
#[derive(Debug, Default, Clone)]
pub struct HubCounters {
    pub handshakes: BTreeMap<&'static str, u64>,
    pub departures: u64,
    pub expired: u64,
    /// Input/datagram rejects of sessions that have ended (live sessions
    /// keep their own until they leave).
    pub session_rejects: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
pub struct Hub {
    pub config: CoreConfig,
    gate: TokenGate,
    pub sessions: BTreeMap<u32, SharedSession>,
    /// Client ids admitted but not joined yet (their join plan is pending).
    pending: std::collections::BTreeSet<u32>,
    /// Sessions ended by a reconnect, for the caller to depart.
    evicted: Vec<Departed>,
    /// Each session's epoch: a connection leaves only its own session.
    epochs: BTreeMap<u32, u64>,
    next_epoch: u64,
    pub counters: HubCounters,
}

impl Hub {
    /// A hub admitting tokens through `gate` (its keys, server id and match).
    #[must_use]
    pub fn new(config: CoreConfig, gate: TokenGate) -> Hub {
        Hub { config, gate, sessions: BTreeMap::new(), pending: Default::default(), evicted: Vec::new(), epochs: BTreeMap::new(), next_epoch: 0, counters: HubCounters::default() }
    }

    /// Rotates the token keys; sessions and used nonces are kept.
    pub fn set_keys(&mut self, ring: crate::token::KeyRing) {
        self.gate.set_keys(ring);
    }

    /// Moves the server to another match: later hellos need tokens for it;
    /// sessions already admitted continue.
    pub fn set_match(&mut self, match_id: &str) {
        self.gate.set_match(match_id);
    }

    #[must_use]
    pub fn gate(&self) -> &TokenGate {
        &self.gate
    }

    fn count(&mut self, label: &'static str) {
        *self.counters.handshakes.entry(label).or_default() += 1;
    }

    /// Admits a Hello (token single use, schema, capacity). Counted either way.
    pub fn hello(&mut self, frame: &Frame, now_unix: u64) -> Result<Claims, Reject> {
        let live = self.sessions.len() + self.pending.len();
        match admit(&mut self.gate, &self.config, live, frame, now_unix) {
            Ok(c) if self.pending.contains(&c.client_id) => {
                self.count("duplicate_client");
                Err(Reject::Protocol)
            }
            Ok(c) if self.sessions.contains_key(&c.client_id) => {
                // A reconnect (a fresh token for a client id still in
                // session: its old connection died quietly): the old session
                // ends now, and its avatar is parked for the new one.
                self.count("reconnected");
                if let Some(d) = self.leave(c.client_id) {
                    self.evicted.push(d);
                }
                self.pending.insert(c.client_id);
                Ok(c)
            }
            Ok(c) => {
                self.count("accepted");
                self.pending.insert(c.client_id);
                Ok(c)
            }
            Err(r) => {
                self.count(r.label());
                Err(r)
            }
        }
    }

    /// Starts the session once the join plan has been applied; returns the
    /// session's epoch (for [`Hub::leave_epoch`]).
    pub fn join(&mut self, claims: &Claims, controlled: Vec<u64>, now_ms: u64) -> u64 {
        self.pending.remove(&claims.client_id);
        let s = ServerSession::new(claims.client_id, source_of(claims.client_id), claims.role, controlled, &self.config, now_ms);
        self.sessions.insert(claims.client_id, Arc::new(Mutex::new(s)));
        self.next_epoch += 1;
        self.epochs.insert(claims.client_id, self.next_epoch);
        self.next_epoch
    }

    /// A live session, to hold outside the hub's lock.
    #[must_use]
    pub fn session(&self, client_id: u32) -> Option<SharedSession> {
        self.sessions.get(&client_id).cloned()
    }

    /// Ends a session if it is still the one of `epoch` (a connection that
    /// was replaced by a reconnect must not end its successor).
    pub fn leave_epoch(&mut self, client_id: u32, epoch: u64) -> Option<Departed> {
        if self.epochs.get(&client_id) != Some(&epoch) {
            return None;
        }
        self.leave(client_id)
    }

    /// Sessions ended by reconnects since the last call.
    pub fn take_evicted(&mut self) -> Vec<Departed> {
        std::mem::take(&mut self.evicted)
    }

    /// Forgets an admitted client whose join did not complete.
    pub fn cancel_pending(&mut self, client_id: u32) {
        self.pending.remove(&client_id);
    }

    /// Ends a session (disconnect).
    pub fn leave(&mut self, client_id: u32) -> Option<Departed> {
        let s = self.sessions.remove(&client_id)?;
        let mut s = lock(&s);
        s.mark_departed();
        self.epochs.remove(&client_id);
        self.counters.departures += 1;
        for (k, v) in &s.stats.rejects {
            *self.counters.session_rejects.entry(k.label()).or_default() += v;
        }
        Some(Departed { client_id, source: s.source, role: s.role, controlled: s.controlled.clone() })
    }

    /// Drops sessions silent for longer than the idle timeout.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Departed> {
        let dead: Vec<u32> = self.sessions.iter().filter(|(_, s)| lock(s).timed_out(now_ms, &self.config)).map(|(k, _)| *k).collect();
        self.counters.expired += dead.len() as u64;
        dead.into_iter().filter_map(|c| self.leave(c)).collect()
    }

    /// Session rejects so far, ended and live sessions together.
    #[must_use]
    pub fn session_rejects(&self) -> BTreeMap<&'static str, u64> {
        let mut out = self.counters.session_rejects.clone();
        for s in self.sessions.values() {
            for (k, v) in &lock(s).stats.rejects {
                *out.entry(k.label()).or_default() += v;
            }
        }
        out
    }

    /// Snapshot datagrams for every session, one after another (a server
    /// encodes them in parallel from [`Hub::session`] handles instead).
    pub fn snapshots(&mut self, now_ms: u64, tick: u64, world: &[crate::quant::QEntity], avatars: &[AvatarState]) -> Vec<(u32, Vec<u8>)> {
        let config = self.config.clone();
        let grid = config.interest.map(|r| crate::interest::InterestGrid::build(world, r));
        let hashes = crate::quant::entity_hashes(world);
        self.sessions.iter().map(|(id, s)| (*id, lock(s).snapshot(now_ms, tick, (world, &hashes), avatars, grid.as_ref(), &config))).collect()
    }
}

/// Every avatar's exact controller state, sorted by handle (for the
/// player blocks of the next snapshots).
#[must_use]
pub fn avatar_states(world: &World) -> Vec<AvatarState> {
    let t = world.table(Archetype::Avatar);
    let f = |c: ColumnId| t.f32(c);
    let (px, py, pz, vx, vy, vz) = (f(ColumnId::PosX), f(ColumnId::PosY), f(ColumnId::PosZ), f(ColumnId::LinvelX), f(ColumnId::LinvelY), f(ColumnId::LinvelZ));
    let (last, health, respawn) = (t.u32(ColumnId::LastCommand), t.i32(ColumnId::Health), t.u64(ColumnId::RespawnTick));
    let mut out: Vec<AvatarState> = t
        .handles()
        .iter()
        .enumerate()
        .map(|(i, &handle)| AvatarState { handle, alive: health[i] > 0 && respawn[i] == 0, last_command: last[i], pos: [px[i], py[i], pz[i]], vel: [vx[i], vy[i], vz[i]] })
        .collect();
    out.sort_unstable_by_key(|a| a.handle);
    out
}

/// Checks a Hello: protocol, schema, token (single use), capacity.
pub fn admit(gate: &mut TokenGate, config: &CoreConfig, sessions: usize, hello: &Frame, now_unix: u64) -> Result<Claims, Reject> {
    let Frame::Hello { version, schema_hash, role, token } = hello else { return Err(Reject::Protocol) };
    if *version != PROTOCOL_VERSION {
        return Err(Reject::ProtocolVersion);
    }
    if *schema_hash != config.schema_hash {
        return Err(Reject::SchemaMismatch);
    }
    if token.is_empty() {
        return Err(Reject::NoToken);
    }
    let claims = gate.admit(token, *role, now_unix).map_err(Reject::Token)?;
    if sessions >= config.max_clients {
        return Err(Reject::ServerFull);
    }
    Ok(claims)
}
