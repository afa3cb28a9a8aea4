//! Sans-IO session state machines: fed bytes and time (milliseconds on any
//! monotonic clock the caller owns), polled for output. No sockets, no
//! threads, no sleeping: the quinn driver (`driver`) and the virtual-time
//! tests feed the same code.

use crate::command::{InputDatagram, PlayerBlock, INPUT_TYPE, PLAYER_BLOCK_LEN};
use crate::delta::{self, Priorities, Scratch};
use crate::rate::SendRate;
use crate::proto::{bye, Ack, PROTOCOL_VERSION};
use crate::interest::{ClientInterest, InterestGrid, InterestRadii};
use crate::quant::{QEntity, QView};
use crate::token::{Role, TokenError};
use sim_core::{Handle, MicroPlan, Op, PlanBuilder, SourceId, Status, Tick};
use std::collections::{BTreeMap, VecDeque};

/// Snapshots kept per client for baselines (Quake 3 kept 32).
pub const RING: usize = 32;
/// Send times kept for round trips (4 s at 60 Hz: a queue deeper than
/// the baseline ring still yields round trips).
const SENT_TIMES: usize = 256;
/// View buffers kept for reuse beyond the ring: an ack that frees many at
/// once (a client that went quiet for a while, then acked) would otherwise
/// keep the deepest ring it ever had (up to `RING + 1` views, 1.4 MB at
/// 1k bodies) for good. Acks free about one per encode in steady state,
/// so a few cover the jitter.
const SPARE_VIEWS: usize = 4;

#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Bytes per snapshot datagram (within QUIC's max datagram size).
    pub budget: usize,
    /// A session silent for this long is dropped.
    pub idle_timeout_ms: u64,
    pub max_clients: usize,
    /// Input plans accepted per client per second (token bucket, burst = 1 s).
    pub inputs_per_sec: u32,
    /// Datagrams accepted per client per second (floods beyond are dropped).
    pub datagrams_per_sec: u32,
    /// Replicate only entities near the client's first controlled entity,
    /// with hysteresis (see [`crate::interest`]; None: everything).
    pub interest: Option<InterestRadii>,
    pub schema_hash: u64,
    /// A player who leaves keeps its avatar this long for a reconnect with a
    /// fresh token for the same client id (0: despawned at once).
    pub reconnect_grace_ms: u64,
    /// A client whose link is congested gets a snapshot only every 2nd,
    /// then 3rd tick, down to one every this many ticks (default 3; 1:
    /// every tick, always; see [`crate::rate`]).
    pub max_send_divisor: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            budget: 1100,
            idle_timeout_ms: 10_000,
            max_clients: 256,
            inputs_per_sec: 240,
            datagrams_per_sec: 600,
            interest: None,
            schema_hash: sim_core::PORTS_SCHEMA_HASH,
            reconnect_grace_ms: 10_000,
            max_send_divisor: 3,
        }
    }
}

/// Why the server refused or dropped something. Each has a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reject {
    NoToken,
    Token(TokenError),
    SchemaMismatch,
    ProtocolVersion,
    ServerFull,
    /// A frame other than Hello before the handshake, or garbage.
    Protocol,
    RateLimited,
    /// A plan that does not decode.
    MalformedInput,
    /// A plan whose source id is not the session's.
    SpoofedSource,
    /// A plan with ops the role may not issue, or for entities it does not control.
    NotPermitted,
    /// A plan with more ops than the role's per-plan cap.
    TooManyOps,
    /// A plan over what is left of the role's cost budget for its tick.
    OverBudget,
    /// A command for a tick the server has already simulated (dropped).
    LateCommand,
    /// A command for a tick further ahead than the server accepts.
    FarFutureCommand,
    /// An input datagram that does not decode.
    MalformedCommand,
    /// A second command for a tick already commanded (or an earlier tick).
    DuplicateCommandTick,
    /// A plan for a tick further ahead than the server accepts.
    TooFarAhead,
}

impl Reject {
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Reject::NoToken => "no_token",
            Reject::Token(e) => e.label(),
            Reject::SchemaMismatch => "schema_mismatch",
            Reject::ProtocolVersion => "protocol_version",
            Reject::ServerFull => "server_full",
            Reject::Protocol => "protocol",
            Reject::RateLimited => "rate_limited",
            Reject::MalformedInput => "malformed_input",
            Reject::SpoofedSource => "spoofed_source",
            Reject::NotPermitted => "not_permitted",
            Reject::TooManyOps => "too_many_ops",
            Reject::OverBudget => "over_budget",
            Reject::LateCommand => "late_command",
            Reject::FarFutureCommand => "far_future_command",
            Reject::MalformedCommand => "malformed_command",
            Reject::DuplicateCommandTick => "duplicate_command_tick",
            Reject::TooFarAhead => "too_far_ahead",
        }
    }

    /// The plan status a refused plan's sender is told, if any.
    #[must_use]
    pub fn status(self) -> Option<Status> {
        match self {
            Reject::NotPermitted | Reject::SpoofedSource => Some(Status::OpNotPermitted),
            Reject::TooManyOps => Some(Status::TooManyOps),
            Reject::OverBudget => Some(Status::OverBudget),
            Reject::TooFarAhead => Some(Status::TickTooFarAhead),
            _ => None,
        }
    }

    /// The Bye reason a refused client reads: `label: what went wrong`.
    #[must_use]
    pub fn reason(self) -> String {
        let why = match self {
            Reject::NoToken => "the hello carries no token".to_string(),
            Reject::Token(e) => e.to_string(),
            Reject::SchemaMismatch => "the client's ports schema hash differs from the server's".to_string(),
            Reject::ProtocolVersion => format!("the server speaks protocol version {PROTOCOL_VERSION}"),
            Reject::ServerFull => "the server is at its client cap".to_string(),
            Reject::Protocol => "expected a Hello first (or this client id is already connected)".to_string(),
            Reject::RateLimited => "too many messages".to_string(),
            Reject::MalformedInput => "an input plan did not decode".to_string(),
            Reject::SpoofedSource => "a plan carried another source id".to_string(),
            Reject::NotPermitted => "a plan used ops or entities this role may not".to_string(),
            Reject::TooManyOps => "a plan had more ops than the role allows per plan".to_string(),
            Reject::OverBudget => "a plan cost more than is left of the role's budget for its tick".to_string(),
            Reject::LateCommand => "a command arrived after its tick was simulated".to_string(),
            Reject::FarFutureCommand => format!("a command was for a tick more than {} ticks ahead", sim_core::ports::MAX_TICK_LEAD),
            Reject::MalformedCommand => "an input datagram did not decode".to_string(),
            Reject::DuplicateCommandTick => "a command was for a tick already commanded".to_string(),
            Reject::TooFarAhead => format!("a plan was for a tick more than {} ticks ahead", sim_core::ports::MAX_TICK_LEAD),
        };
        format!("{}: {why}", self.label())
    }

    #[must_use]
    pub fn bye_code(self) -> u16 {
        match self {
            Reject::NoToken | Reject::Token(_) => bye::BAD_TOKEN,
            Reject::SchemaMismatch | Reject::ProtocolVersion => bye::SCHEMA_MISMATCH,
            Reject::ServerFull => bye::FULL,
            Reject::RateLimited => bye::RATE_LIMIT,
            _ => bye::PROTOCOL,
        }
    }
}

/// A token bucket in milli-tokens.
#[derive(Clone, Debug)]
struct Bucket {
    rate: u64,
    level: u64,
    last_ms: u64,
}

impl Bucket {
    fn new(per_sec: u32, now: u64) -> Bucket {
        Bucket { rate: u64::from(per_sec), level: u64::from(per_sec) * 1000, last_ms: now }
    }

    fn take(&mut self, now: u64) -> bool {
        let dt = now.saturating_sub(self.last_ms);
        self.last_ms = now;
        self.level = (self.level + dt * self.rate).min(self.rate * 1000);
        if self.level >= 1000 {
            self.level -= 1000;
            true
        } else {
            false
        }
    }
}

/// Server-side replication statistics of one session.
#[derive(Clone, Debug, Default)]
pub struct SessionStats {
    pub snapshots_sent: u64,
    pub bytes_sent: u64,
    pub resyncs: u64,
    pub acks: u64,
    /// Hash failures the client reported (cumulative, as it last said).
    pub client_hash_failures: u32,
    pub inputs_accepted: u64,
    pub rejects: BTreeMap<Reject, u64>,
    pub rtt_ms: Option<u64>,
    pub deferred_last: u32,
    pub commands_accepted: u64,
    pub commands_late: u32,
    /// Cost units spent by accepted plans (all ticks).
    pub cost_spent: u64,
}

/// A refused input: why, and the plan's sequence when it had one (so the
/// sender can be told which plan, with [`Reject::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reject: Reject,
    pub sequence: Option<u32>,
}

/// An avatar's exact controller state at a tick, published by the tick
/// thread for the player blocks.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct AvatarState {
    pub handle: u64,
    /// Not dead and waiting to respawn.
    pub alive: bool,
    pub last_command: u32,
    pub pos: [f32; 3],
    pub vel: [f32; 3],
}

/// The server's side of one client.
#[derive(Debug)]
pub struct ServerSession {
    pub client_id: u32,
    pub source: u32,
    pub role: Role,
    /// Entities this session may command (avatar first, granted NPCs).
    /// Change it with [`ServerSession::set_controlled`].
    pub controlled: Vec<u64>,
    /// The same handles, sorted: what plans are checked against.
    controlled_sorted: Vec<u64>,
    seq: u32,
    /// (seq, tick, the view the client holds once it applied it, its hash).
    ring: VecDeque<(u32, u64, QView, u64)>,
    sent_at: VecDeque<(u32, u64)>,
    acked: Option<u32>,
    last_input_seq: Option<u32>,
    last_command_seq: Option<u32>,
    /// The tick of the newest command taken (commands' ticks only increase:
    /// one command per tick and avatar).
    last_command_tick: Option<u64>,
    /// Ticks the newest command arrived before its tick (negative: late),
    /// reported once, in the next player block.
    lead: Option<i8>,
    /// Cost spent per target tick (ascending ticks, bounded).
    spent: VecDeque<(u64, u64)>,
    prio: Priorities,
    /// The encoder's reusable buffers.
    scratch: Scratch,
    /// How often this client gets a snapshot.
    rate: SendRate,
    /// The last interest selection (what the leave radius keeps) and its
    /// buffers.
    interest: ClientInterest,
    /// View buffers of snapshots that can no longer be baselines (older
    /// than the acked one, or evicted from the ring), reused by the next
    /// encodes: the most recently freed first, as it is the likeliest to
    /// still be in cache (a baseline read a tick or two ago). Buffers only
    /// move between here and the ring; each encode frees all but
    /// `SPARE_VIEWS` of them (on the replication thread, which allocates
    /// them too: not on the connection tasks that take acks).
    free_views: Vec<QView>,
    last_heard_ms: u64,
    inputs: Bucket,
    datagrams: Bucket,
    /// Ended (left, expired or replaced by a reconnect): whoever still
    /// holds it gets nothing more through it.
    departed: bool,
    pub stats: SessionStats,
}

fn sorted(h: &[u64]) -> Vec<u64> {
    let mut v = h.to_vec();
    v.sort_unstable();
    v
}

impl ServerSession {
    #[must_use]
    pub fn new(client_id: u32, source: u32, role: Role, controlled: Vec<u64>, config: &CoreConfig, now_ms: u64) -> ServerSession {
        ServerSession {
            client_id,
            source,
            role,
            controlled_sorted: sorted(&controlled),
            controlled,
            seq: 0,
            ring: VecDeque::with_capacity(RING),
            sent_at: VecDeque::with_capacity(SENT_TIMES),
            acked: None,
            last_input_seq: None,
            last_command_seq: None,
            last_command_tick: None,
            lead: None,
            spent: VecDeque::new(),
            prio: Priorities::default(),
            scratch: Scratch::default(),
            rate: SendRate::new(config.max_send_divisor),
            interest: ClientInterest::default(),
            free_views: Vec::new(),
            last_heard_ms: now_ms,
            inputs: Bucket::new(config.inputs_per_sec, now_ms),
            datagrams: Bucket::new(config.datagrams_per_sec, now_ms),
            departed: false,
            stats: SessionStats::default(),
        }
    }

    /// Ends the session ([`crate::hub::Hub`] does, under its lock): later
    /// datagrams and plans through it are ignored, and it is not encoded.
    pub fn mark_departed(&mut self) {
        self.departed = true;
    }

    #[must_use]
    pub fn is_departed(&self) -> bool {
        self.departed
    }

    /// Whether this client gets a snapshot of `tick` (its send rate; see
    /// [`crate::rate`]).
    #[must_use]
    pub fn send_due(&self, tick: u64) -> bool {
        self.rate.due(tick)
    }

    /// Ticks between this client's snapshots now.
    #[must_use]
    pub fn send_divisor(&self) -> u64 {
        self.rate.divisor()
    }

    /// Adapts the send rate once a window; returns the (slow-downs,
    /// speed-ups) since the last call.
    pub fn adapt_rate(&mut self, now_ms: u64) -> (u64, u64) {
        self.rate.decide(now_ms)
    }

    fn reject(&mut self, r: Reject) -> Reject {
        *self.stats.rejects.entry(r).or_default() += 1;
        r
    }

    /// Builds the next snapshot datagram for `world` (all entities, sorted;
    /// `hashes`: their [`crate::quant::entity_hashes`], computed once per
    /// tick for all sessions); a player's is wrapped in its player block
    /// (`avatars` sorted by handle).
    /// With interest on, `grid` is this tick's [`InterestGrid`] over `world`
    /// (built once for all sessions; None scans every entity).
    pub fn snapshot(&mut self, now_ms: u64, tick: u64, (world, hashes): (&[QEntity], &[u64]), avatars: &[AvatarState], grid: Option<&InterestGrid>, config: &CoreConfig) -> Vec<u8> {
        let (view, hashes, boost): (&[QEntity], &[u64], &[u8]) = match (config.interest, self.controlled.first()) {
            (Some(radii), Some(&me)) => {
                let center = world.binary_search_by_key(&me, |e| e.handle).map_or([0; 3], |i| world[i].pos);
                let selected = self.interest.select(world, hashes, grid, center, radii, &self.controlled);
                (&selected.view, &selected.hashes, &selected.boost)
            }
            _ => (world, hashes, &[]),
        };
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        // Baseline: the client's latest acked snapshot, if still in the ring
        // and young enough to name; else resync from nothing.
        let baseline = self.acked.and_then(|a| {
            let age = seq.wrapping_sub(a);
            if age == 0 || age > delta::MAX_BASELINE_AGE {
                return None;
            }
            self.ring.iter().find(|(s, _, _, _)| *s == a).map(|(s, _, v, h)| (*s, v.as_slice(), *h))
        });
        if baseline.is_none() {
            self.stats.resyncs += 1;
        }
        let player = self.role == Role::Player;
        let budget = if player { config.budget.saturating_sub(PLAYER_BLOCK_LEN) } else { config.budget };
        let spare = self.free_views.pop().unwrap_or_default();
        // The most recently freed stay (the end of the list).
        if self.free_views.len() > SPARE_VIEWS {
            self.free_views.drain(..self.free_views.len() - SPARE_VIEWS);
        }
        let enc = delta::encode(seq, tick, baseline, (view, hashes), &mut self.prio, budget, boost, spare, &mut self.scratch);
        self.prio.retain(view);
        if self.ring.len() == RING
            && let Some((_, _, old, _)) = self.ring.pop_front()
        {
            // Buffers are recycled, never freed on acks: freeing on
            // connection tasks while encodes allocate (replication pool) grew
            // RSS in the fault lab's churn by 7-8 MiB against 5.
            self.free_views.push(old);
        }
        self.ring.push_back((seq, tick, enc.view, enc.hash));
        if self.sent_at.len() == SENT_TIMES {
            self.sent_at.pop_front();
        }
        self.sent_at.push_back((seq, now_ms));
        self.stats.snapshots_sent += 1;
        self.rate.on_sent(tick);
        self.stats.bytes_sent += enc.bytes.len() as u64;
        self.stats.deferred_last = enc.deferred;
        if !player {
            return enc.bytes;
        }
        let me = self.controlled.first().and_then(|h| avatars.binary_search_by_key(h, |a| a.handle).ok()).map(|i| avatars[i]);
        let block = PlayerBlock {
            last_command: me.map_or(0, |a| a.last_command),
            lead: self.lead.take().unwrap_or(crate::command::NO_LEAD),
            commands_late: self.stats.commands_late,
            alive: me.is_some_and(|a| a.alive),
            pos: me.map_or([0.0; 3], |a| a.pos),
            vel: me.map_or([0.0; 3], |a| a.vel),
        };
        let out = block.wrap(&enc.bytes);
        self.stats.bytes_sent += PLAYER_BLOCK_LEN as u64;
        out
    }

    /// Handles a client datagram: an ack with redundant plans (type 2) or a
    /// player's input datagram (type 3); returns the new, permitted plans.
    /// `server_tick` is the last tick the world has simulated.
    pub fn on_datagram(&mut self, now_ms: u64, server_tick: u64, bytes: &[u8]) -> Result<Vec<MicroPlan>, Reject> {
        if self.departed {
            return Ok(Vec::new());
        }
        if !self.datagrams.take(now_ms) {
            return Err(self.reject(Reject::RateLimited));
        }
        if bytes.first() == Some(&INPUT_TYPE) {
            return self.on_commands(now_ms, server_tick, bytes);
        }
        let ack = Ack::decode(bytes).map_err(|_| self.reject(Reject::Protocol))?;
        self.last_heard_ms = now_ms;
        self.on_ack(now_ms, ack.latest, ack.hash_failures, ack.received);
        let mut out = Vec::new();
        for p in ack.inputs {
            if let Ok(Some(plan)) = self.input(now_ms, server_tick, p) {
                out.push(plan);
            }
        }
        Ok(out)
    }

    fn on_ack(&mut self, now_ms: u64, latest: Option<u32>, hash_failures: u32, received: u32) {
        self.stats.acks += 1;
        self.stats.client_hash_failures = hash_failures;
        self.rate.on_report(now_ms, received);
        if let Some(s) = latest {
            // Only ever move forward (acks arrive reordered and duplicated).
            if self.acked.is_none_or(|a| (s.wrapping_sub(a) as i32) > 0) {
                // A round trip from the send times, which reach further
                // back than the baseline ring: a queue deeper than the ring
                // still yields them. Sequences are consecutive: the newest
                // is at the back.
                let back = self.sent_at.back().map_or(0, |b| b.0.wrapping_sub(s) as usize);
                if let Some(&(q, t)) = self.sent_at.len().checked_sub(1 + back).and_then(|i| self.sent_at.get(i))
                    && q == s
                {
                    let rtt = now_ms.saturating_sub(t);
                    self.stats.rtt_ms = Some(rtt);
                    self.rate.on_rtt(t, rtt);
                }
                if self.ring.iter().any(|(q, _, _, _)| *q == s) {
                    self.acked = Some(s);
                    // Older snapshots can never be baselines again (acks
                    // only move forward): their buffers go to the next
                    // encodes, still warm.
                    while self.ring.front().is_some_and(|(q, _, _, _)| (s.wrapping_sub(*q) as i32) > 0) {
                        if let Some((_, _, old, _)) = self.ring.pop_front() {
                            self.free_views.push(old);
                        }
                    }
                }
            }
        }
    }

    /// A player's commands become one plan each (a `command` op for its
    /// avatar, for the command's tick, sequence = the command's), so they
    /// take the plan path into the world and into replays. Copies already
    /// taken are skipped; commands for ticks already simulated are dropped
    /// and counted (never retargeted).
    fn on_commands(&mut self, now_ms: u64, server_tick: u64, bytes: &[u8]) -> Result<Vec<MicroPlan>, Reject> {
        if self.role != Role::Player {
            return Err(self.reject(Reject::NotPermitted));
        }
        let d = InputDatagram::decode(bytes).map_err(|_| self.reject(Reject::MalformedCommand))?;
        self.last_heard_ms = now_ms;
        self.on_ack(now_ms, d.ack, d.hash_failures, d.received);
        let Some(&avatar) = self.controlled.first() else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for c in &d.commands {
            if self.last_command_seq.is_some_and(|last| (c.sequence.wrapping_sub(last) as i32) <= 0) {
                continue;
            }
            self.last_command_seq = Some(c.sequence);
            // i128: a hostile tick near u64::MAX must not overflow.
            let lead = i128::from(c.tick) - (i128::from(server_tick) + 1);
            self.lead = Some(lead.clamp(-127, 127) as i8);
            if c.tick <= server_tick {
                self.stats.commands_late += 1;
                self.reject(Reject::LateCommand);
                continue;
            }
            if c.tick > server_tick.saturating_add(sim_core::ports::MAX_TICK_LEAD) {
                self.reject(Reject::FarFutureCommand);
                continue;
            }
            // One command per tick: a later sequence for a tick already
            // commanded (or an earlier one) is refused.
            if self.last_command_tick.is_some_and(|t| c.tick <= t) {
                self.reject(Reject::DuplicateCommandTick);
                continue;
            }
            self.last_command_tick = Some(c.tick);
            let [mx, mz] = c.movement();
            let mut b = PlanBuilder::new(Tick(c.tick), SourceId(self.source), c.sequence);
            b.push(Op::Command { handle: Handle::from_bits(avatar), sequence: c.sequence, buttons: u32::from(c.buttons), movement: [mx, 0.0, mz], yaw: c.yaw(), pitch: c.pitch(), rewind: u32::from(c.rewind) });
            if let Ok(p) = MicroPlan::decode(b.build()) {
                self.stats.commands_accepted += 1;
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Checks one input plan (from a datagram or the reliable stream):
    /// [`ServerSession::gate_input`], [`screen_input`] and
    /// [`ServerSession::accept_input`] in one call. A server that shares
    /// sessions behind a lock runs the middle step (the decode) outside it.
    pub fn input(&mut self, now_ms: u64, server_tick: u64, bytes: Vec<u8>) -> Result<Option<MicroPlan>, Refusal> {
        if !self.gate_input(now_ms, &bytes)? {
            return Ok(None);
        }
        match screen_input(self.role, self.source, bytes) {
            Ok((plan, cost)) => self.accept_input(plan, cost, server_tick),
            Err(r) => Err(self.refused(r)),
        }
    }

    /// Step 1, cheap: a redundant copy (recognised by the header's sequence,
    /// bytes 20..24, before anything is decoded) is `Ok(false)`; then the
    /// rate limit, so a flood costs one bucket check per plan beyond the
    /// rate, not a decode.
    pub fn gate_input(&mut self, now_ms: u64, bytes: &[u8]) -> Result<bool, Refusal> {
        if self.departed {
            return Ok(false);
        }
        self.last_heard_ms = now_ms;
        let seq = bytes.get(20..24).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
        if let (Some(seq), Some(last)) = (seq, self.last_input_seq)
            && (seq.wrapping_sub(last) as i32) <= 0 {
                return Ok(false);
            }
        if !self.inputs.take(now_ms) {
            return Err(Refusal { reject: self.reject(Reject::RateLimited), sequence: None });
        }
        Ok(true)
    }

    /// Counts a refusal from [`screen_input`].
    pub fn refused(&mut self, r: Refusal) -> Refusal {
        self.reject(r.reject);
        if let Some(seq) = r.sequence
            && self.last_input_seq.is_none_or(|last| (seq.wrapping_sub(last) as i32) > 0) {
                self.last_input_seq = Some(seq);
            }
        r
    }

    /// Step 3: sequence order, entities this session controls, and what is
    /// left of the role's cost budget for the tick the plan will run at
    /// (a late plan runs at the next tick, so it is charged there; no tick
    /// more than `MAX_TICK_LEAD` ahead). `server_tick`: the last tick
    /// simulated (or being simulated).
    pub fn accept_input(&mut self, plan: MicroPlan, cost: u64, server_tick: u64) -> Result<Option<MicroPlan>, Refusal> {
        if self.departed {
            return Ok(None);
        }
        let h = *plan.header();
        let refuse = |s: &mut Self, r: Reject| Refusal { reject: s.reject(r), sequence: Some(h.sequence) };
        // Serial-number comparison: sequences may wrap like snapshot seqs.
        if self.last_input_seq.is_some_and(|last| (h.sequence.wrapping_sub(last) as i32) <= 0) {
            return Ok(None); // a redundant copy of something already taken
        }
        self.last_input_seq = Some(h.sequence);
        if !self.controls_its_targets(&plan) {
            return Err(refuse(self, Reject::NotPermitted));
        }
        // Command plans share the one-command-per-tick rule of the input
        // datagrams.
        if plan.sections().any(|s| s.kind == sim_core::OpKind::Command) {
            if self.last_command_tick.is_some_and(|t| h.target_tick.0 <= t) {
                return Err(refuse(self, Reject::DuplicateCommandTick));
            }
            self.last_command_tick = Some(h.target_tick.0);
        }
        if h.target_tick.0 > server_tick.saturating_add(sim_core::ports::MAX_TICK_LEAD) {
            return Err(refuse(self, Reject::TooFarAhead));
        }
        let budget = sim_core::cost::role(self.role as u8).map_or(0, |r| r.budget_per_tick);
        let tick = h.target_tick.0.max(server_tick + 1);
        // Ticks already run no longer need accounts.
        while self.spent.front().is_some_and(|(t, _)| *t <= server_tick) {
            self.spent.pop_front();
        }
        let spent = self.spent.iter().find(|(t, _)| *t == tick).map_or(0, |(_, c)| *c);
        if spent.saturating_add(cost) > budget {
            return Err(refuse(self, Reject::OverBudget));
        }
        match self.spent.iter_mut().find(|(t, _)| *t == tick) {
            Some(e) => e.1 += cost,
            None => {
                let at = self.spent.partition_point(|(t, _)| *t < tick);
                self.spent.insert(at, (tick, cost));
            }
        }
        self.stats.cost_spent += cost;
        self.stats.inputs_accepted += 1;
        Ok(Some(plan))
    }

    /// What this session controls from now on (a policy's grants and
    /// releases).
    pub fn set_controlled(&mut self, handles: Vec<u64>) {
        self.controlled_sorted = sorted(&handles);
        self.controlled = handles;
    }

    /// Entity ops only name entities this session controls.
    fn controls_its_targets(&self, plan: &MicroPlan) -> bool {
        plan.sections().all(|s| match s.kind {
            sim_core::OpKind::Raycast | sim_core::OpKind::Overlap | sim_core::OpKind::GraphUpload => true,
            _ => (0..s.count).all(|i| self.controlled_sorted.binary_search(&s.u64(0, i)).is_ok()),
        })
    }

    #[must_use]
    pub fn timed_out(&self, now_ms: u64, config: &CoreConfig) -> bool {
        now_ms.saturating_sub(self.last_heard_ms) > config.idle_timeout_ms
    }

    #[must_use]
    pub fn acked(&self) -> Option<u32> {
        self.acked
    }
}

/// Step 2 of taking a plan, needing no session state (run it outside any
/// lock): decode, the session's source id, the role's op kinds and per-plan
/// op cap (the IDL's `[[roles]]`). Returns the plan and its cost. The
/// refusal is not counted yet: hand it to [`ServerSession::refused`].
pub fn screen_input(role: Role, source: u32, bytes: Vec<u8>) -> Result<(MicroPlan, u64), Refusal> {
    let plan = MicroPlan::decode(bytes).map_err(|_| Refusal { reject: Reject::MalformedInput, sequence: None })?;
    let h = *plan.header();
    let no = |reject: Reject| Refusal { reject, sequence: Some(h.sequence) };
    if h.source.0 != source {
        return Err(no(Reject::SpoofedSource));
    }
    let Some(desc) = sim_core::cost::role(role as u8) else { return Err(no(Reject::NotPermitted)) };
    match desc.admit(&plan) {
        Ok(cost) => Ok((plan, cost)),
        Err(Status::TooManyOps) => Err(no(Reject::TooManyOps)),
        Err(_) => Err(no(Reject::NotPermitted)),
    }
}

pub use crate::client::{slerp, ClientSession, ClientStats, ReplicatedColumns, INPUT_REDUNDANCY, MAX_EXTRAPOLATION_TICKS};

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
