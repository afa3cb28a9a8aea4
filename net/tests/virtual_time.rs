//! The protocol on virtual time (quinn-proto `Pair` style): a real World,
//! the server hub and N client sessions joined by links that drop,
//! duplicate, delay and reorder datagrams. Nothing sleeps.

use net::hub::{join_plan, joined_handles, leave_plans, Hub};
use net::proto::Frame;
use net::quant::{quantize_world, QEntity};
use net::command::Command;
use net::predict::Predictor;
use net::session::{AvatarState, ClientSession, CoreConfig, ServerSession};
use sim_core::character::{CharacterInput, CharacterState};
use sim_core::PlanQueue;
use net::token::{KeyRing, Role, TokenGate, TokenSpec};
use sim_core::rng::WorldRng;
use sim_core::{Handle, MicroPlan, NoClock, Op, PlanBuilder, Scenario, SourceId, Tick, World};
use std::path::PathBuf;

const KEY: &[u8] = b"virtual-time-test-key-0123456789";

/// A one-way lossy link.
struct Link {
    rng: WorldRng,
    loss: f32,
    dup: f32,
    delay: (u64, u64),
    queue: Vec<(u64, u64, Vec<u8>)>,
    order: u64,
    pub delivered: u64,
}

impl Link {
    fn new(seed: u64) -> Link {
        Link { rng: WorldRng::from_seed(seed), loss: 0.0, dup: 0.0, delay: (10, 10), queue: Vec::new(), order: 0, delivered: 0 }
    }
    fn send(&mut self, now: u64, bytes: Vec<u8>) {
        if self.rng.next_f32() < self.loss {
            return;
        }
        let copies = if self.rng.next_f32() < self.dup { 2 } else { 1 };
        for _ in 0..copies {
            let d = self.delay.0 + (self.rng.next_u64() % (self.delay.1 - self.delay.0 + 1));
            self.order += 1;
            self.queue.push((now + d, self.order, bytes.clone()));
        }
    }
    fn poll(&mut self, now: u64) -> Vec<Vec<u8>> {
        self.queue.sort_by_key(|(t, o, _)| (*t, *o));
        let n = self.queue.iter().take_while(|(t, _, _)| *t <= now).count();
        self.delivered += n as u64;
        self.queue.drain(..n).map(|(_, _, b)| b).collect()
    }
}

struct Client {
    id: u32,
    session: ClientSession,
    down: Link,
    up: Link,
    avatar: Option<u64>,
    seq: u32,
    alive: bool,
    predictor: Predictor,
    errors: Vec<f32>,
}

struct Net {
    world: World,
    hub: Hub,
    clients: Vec<Client>,
    pending_admin: Vec<MicroPlan>,
    admin_seq: u32,
    last_world: Vec<QEntity>,
    history: std::collections::BTreeMap<u64, Vec<QEntity>>,
    queue: PlanQueue,
    avatars: Vec<AvatarState>,
    /// Ticks ahead of the server that clients stamp their commands for.
    lead: u64,
    /// When set, every client sends this move input.
    input_override: Option<[f32; 2]>,
}

/// A dev token (key id 0, server "dev", no match) signed with `key`.
fn mint(key: &[u8], id: u32, role: Role, expires_at: u64, nonce: u64) -> String {
    net::token::mint(key, &TokenSpec::dev(id, role, expires_at, nonce))
}

fn gate() -> TokenGate {
    TokenGate::new(KeyRing::single(0, KEY.to_vec()), net::token::DEV_SERVER_ID, "")
}

fn ms(tick: u64) -> u64 {
    tick * 1000 / 60
}

impl Net {
    fn new(n: u32, config: CoreConfig) -> Net {
        let s = Scenario::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/small.toml")).expect("scenario");
        let mut world = World::from_scenario(&s, None);
        let mut hub = Hub::new(config, gate());
        let mut clients = Vec::new();
        // Handshake: admit each client and apply its join plan.
        let mut joins = Vec::new();
        for id in 1..=n {
            let token = mint(KEY, id, Role::Player, 10_000, u64::from(id));
            let hello = Frame::Hello { version: net::proto::PROTOCOL_VERSION, schema_hash: sim_core::PORTS_SCHEMA_HASH, role: Role::Player, token };
            let claims = hub.hello(&hello, 100).expect("admitted");
            let plan = join_plan(&world, &claims, Tick(world.tick().0 + 1), &[]).expect("join plan");
            joins.push((claims, plan));
        }
        let plans: Vec<MicroPlan> = joins.iter().map(|(_, p)| p.clone()).collect();
        let j = world.step(&plans, &mut NoClock).clone();
        for (k, (claims, plan)) in joins.iter().enumerate() {
            let pj = j.plans.iter().find(|p| p.source.0 == plan.header().source.0).expect("journal");
            let controlled = joined_handles(plan, pj);
            assert_eq!(controlled.len(), 1, "avatar spawned");
            hub.join(claims, controlled.clone(), ms(world.tick().0));
            let predictor = Predictor::new(world.character_params(world.config().players.shape));
            clients.push(Client { id: claims.client_id, session: ClientSession::new(), down: Link::new(10 + k as u64), up: Link::new(100 + k as u64), avatar: Some(controlled[0]), seq: 0, alive: true, predictor, errors: Vec::new() });
        }
        Net { world, hub, clients, pending_admin: Vec::new(), admin_seq: 0, last_world: Vec::new(), history: Default::default(), queue: PlanQueue::default(), avatars: Vec::new(), lead: 4, input_override: None }
    }

    /// One tick: inputs in, step, snapshots out, deliver both ways.
    fn tick(&mut self) {
        let now = ms(self.world.tick().0);
        let next = Tick(self.world.tick().0 + 1);
        // Clients: one command per tick for `lead` ticks ahead, predicted.
        for c in &mut self.clients {
            if !c.alive {
                continue;
            }
            if c.avatar.is_some() {
                c.seq += 1;
                let mut movement = [((c.seq / 20 % 3) as f32 - 1.0) * 0.8, ((c.seq / 30 % 3) as f32 - 1.0) * 0.8];
                // Stay inside the small arena: head back toward the middle.
                if let Some(p) = c.predictor.current() {
                    for (k, axis) in [(0, 0), (1, 2)] {
                        if p.pos[axis].abs() > 2.5 {
                            movement[k] = -p.pos[axis].signum() * 0.8;
                        }
                    }
                }
                if let Some(m) = self.input_override {
                    movement = m;
                }
                let tick = next.0 + self.lead;
                let cmd = Command::new(c.seq, tick, movement, 0.0, 0.0, u8::from(c.seq % 90 == 0));
                c.session.command(cmd);
                c.predictor.command(tick, CharacterInput { movement: cmd.movement(), buttons: u32::from(cmd.buttons) });
            }
            if let Some(ack) = c.session.poll_ack() {
                c.up.send(now, ack);
            }
        }
        // Server: receive.
        let mut plans = std::mem::take(&mut self.pending_admin);
        for c in &mut self.clients {
            for d in c.up.poll(now) {
                if let Some(s) = self.hub.sessions.get(&c.id)
                    && let Ok(inputs) = net::hub::lock(s).on_datagram(now, self.world.tick().0, &d) {
                        for p in inputs {
                            let _ = self.queue.submit(p, self.world.tick());
                        }
                    }
            }
        }
        for d in self.hub.expire(now) {
            plans.extend(leave_plans(&self.world, &d, next, &mut self.admin_seq));
        }
        plans.extend(self.queue.take(next));
        self.world.step(&plans, &mut NoClock);
        let q = quantize_world(&self.world);
        self.avatars = net::hub::avatar_states(&self.world);
        let tick = self.world.tick().0;
        for (id, bytes) in self.hub.snapshots(now, tick, &q, &self.avatars) {
            if let Some(c) = self.clients.iter_mut().find(|c| c.id == id) {
                c.down.send(now, bytes);
            }
        }
        for c in &mut self.clients {
            for d in c.down.poll(now) {
                if c.alive
                    && let Some((t, block)) = c.session.on_datagram(&d)
                    && block.alive
                    && let Some(e) = c.predictor.on_server(t, CharacterState { pos: block.pos, vel: block.vel }) {
                        c.errors.push(e);
                    }
            }
        }
        self.history.insert(tick, q.clone());
        if self.history.len() > 64 {
            self.history.pop_first();
        }
        self.last_world = q;
    }

    fn set_links(&mut self, loss: f32, dup: f32, delay: (u64, u64)) {
        for c in &mut self.clients {
            for l in [&mut c.down, &mut c.up] {
                (l.loss, l.dup, l.delay) = (loss, dup, delay);
            }
        }
    }
}

#[test]
fn clients_reconverge_after_loss_reordering_and_duplicates() {
    let mut n = Net::new(4, CoreConfig::default());
    n.set_links(0.2, 0.1, (5, 90));
    for _ in 0..240 {
        n.tick();
    }
    for c in &n.clients {
        assert!(c.session.stats.snapshots_applied > 50, "{:?}", c.session.stats);
        assert!(c.session.stats.lost > 0 && c.session.stats.stale_or_duplicate > 0, "the link really was lossy: {:?}", c.session.stats);
    }
    n.set_links(0.0, 0.0, (10, 10));
    // Within a few snapshots the clients hold exactly the server's quantized world.
    let mut converged_after = None;
    for k in 0..30 {
        n.tick();
        // Snapshots arrive one tick late on a 10 ms link: compare with the previous world.
        let all = n.clients.iter().all(|c| c.session.view().is_some_and(|(t, v)| t + 1 == n.world.tick().0 && n.history.get(&t).is_some_and(|w| w.as_slice() == v)));
        if all && k > 2 {
            converged_after = Some(k);
            break;
        }
    }
    assert!(converged_after.is_some_and(|k| k <= 10), "clients did not reconverge: {:?}", n.clients.iter().map(|c| c.session.stats.clone()).collect::<Vec<_>>());
    for c in &n.clients {
        assert_eq!(c.session.stats.hash_failures, 0, "every applied snapshot matched the server's hash");
        let s = net::hub::lock(&n.hub.sessions[&c.id]);
        assert!(s.stats.commands_accepted > 100, "commands got through the lossy link: {}", s.stats.commands_accepted);
    }
}

#[test]
fn aged_out_baseline_forces_a_resync_and_the_client_recovers() {
    let mut n = Net::new(2, CoreConfig::default());
    for _ in 0..30 {
        n.tick();
    }
    let before = net::hub::lock(&n.hub.sessions[&n.clients[0].id]).stats.resyncs;
    // Client 0's acks are lost for 100 ticks: its last ack ages out of the ring.
    n.clients[0].up.loss = 1.0;
    for _ in 0..100 {
        n.tick();
    }
    n.clients[0].up.loss = 0.0;
    for _ in 0..20 {
        n.tick();
    }
    let s = net::hub::lock(&n.hub.sessions[&n.clients[0].id]);
    assert!(s.stats.resyncs > before, "baseline aged out, server resynced");
    assert_eq!(n.clients[0].session.stats.hash_failures, 0);
    let (t, v) = n.clients[0].session.view().expect("view");
    assert_eq!(t + 1, n.world.tick().0);
    assert_eq!(Some(v), n.history.get(&t).map(Vec::as_slice), "client converged again after the resync");
    // The session kept at most RING snapshots throughout (bounded memory).
    assert!(n.clients[1].session.stats.resyncs <= 3, "only the first snapshots before any ack");
}

#[test]
fn a_vanished_client_loses_its_avatar_and_its_session() {
    let config = CoreConfig { idle_timeout_ms: 1000, ..CoreConfig::default() };
    let mut n = Net::new(3, config);
    for _ in 0..20 {
        n.tick();
    }
    let gone = n.clients[1].id;
    let avatar = Handle::from_bits(n.clients[1].avatar.expect("avatar"));
    assert!(n.world.locate(avatar).is_some());
    n.clients[1].alive = false;
    for _ in 0..90 {
        n.tick();
    }
    assert!(!n.hub.sessions.contains_key(&gone), "session freed");
    assert_eq!(n.hub.counters.expired, 1);
    assert!(n.world.locate(avatar).is_none(), "avatar removed from the world");
    // The others are unaffected.
    for c in n.clients.iter().filter(|c| c.alive) {
        assert!(n.hub.sessions.contains_key(&c.id));
        assert!(n.world.locate(Handle::from_bits(c.avatar.expect("avatar"))).is_some());
    }
}

#[test]
fn bad_hellos_and_inputs_are_rejected_and_counted() {
    let mut n = Net::new(1, CoreConfig::default());
    let hello = |token: String, role: Role| Frame::Hello { version: net::proto::PROTOCOL_VERSION, schema_hash: sim_core::PORTS_SCHEMA_HASH, role, token };
    let now = 100;
    assert!(n.hub.hello(&hello(String::new(), Role::Player), now).is_err());
    assert!(n.hub.hello(&hello(mint(b"wrong key", 5, Role::Player, 10_000, 5), Role::Player), now).is_err());
    assert!(n.hub.hello(&hello(mint(KEY, 6, Role::Player, 50, 6), Role::Player), now).is_err());
    assert!(n.hub.hello(&hello(mint(KEY, 1, Role::Player, 10_000, 1), Role::Player), now).is_err(), "reused");
    assert!(n.hub.hello(&Frame::Hello { version: net::proto::PROTOCOL_VERSION, schema_hash: 1, role: Role::Player, token: mint(KEY, 7, Role::Player, 10_000, 7) }, now).is_err());
    // Bound to a server, a match and a role; signed by a known key.
    let spec = TokenSpec::dev(8, Role::Player, 10_000, 8);
    assert!(n.hub.hello(&hello(net::token::mint(KEY, &TokenSpec { server_id: "other", ..spec }), Role::Player), now).is_err());
    assert!(n.hub.hello(&hello(net::token::mint(KEY, &TokenSpec { match_id: "m7", nonce: 9, ..spec }), Role::Player), now).is_err());
    assert!(n.hub.hello(&hello(net::token::mint(KEY, &TokenSpec { key_id: 4, nonce: 10, ..spec }), Role::Player), now).is_err());
    assert!(n.hub.hello(&hello(mint(KEY, 11, Role::Observer, 10_000, 11), Role::Player), now).is_err());
    let h = &n.hub.counters.handshakes;
    for label in ["no_token", "forged", "expired", "reused", "schema_mismatch", "wrong_server", "wrong_match", "unknown_key", "wrong_role"] {
        assert_eq!(h.get(label), Some(&1), "{label}: {h:?}");
    }
    // Inputs for entities the role does not control, spoofed sources, floods.
    let id = n.clients[0].id;
    let src = net::hub::source_of(id);
    let other = Handle::from_bits(n.world.table(sim_core::Archetype::Prop).handles()[0]);
    let shared = n.hub.session(id).expect("session");
    let mut s = net::hub::lock(&shared);
    let plan = |source: u32, seq: u32, op: Op| {
        let mut b = PlanBuilder::new(Tick(5), SourceId(source), seq);
        b.push(op);
        b.build()
    };
    let push = Op::ApplyImpulse { handle: other, impulse: [0.0, 1.0, 0.0] };
    let ray = Op::Raycast { origin: [0.0; 3], direction: [0.0, 1.0, 0.0], max_distance: 1.0 };
    use net::session::Reject;
    let refused = |r: Result<Option<MicroPlan>, net::session::Refusal>| r.err().map(|f| (f.reject, f.reject.status()));
    // Players send commands: any other plan is refused, with the status it is told.
    assert_eq!(refused(s.input(now, 0, plan(src, 1, push))), Some((Reject::NotPermitted, Some(sim_core::Status::OpNotPermitted))));
    assert_eq!(refused(s.input(now, 0, plan(src, 2, ray))), Some((Reject::NotPermitted, Some(sim_core::Status::OpNotPermitted))));
    // A command op for someone else's avatar, through the plan path.
    let theirs = Op::Command { handle: other, sequence: 1, buttons: 0, movement: [0.0; 3], yaw: 0.0, pitch: 0.0, rewind: 0 };
    assert_eq!(refused(s.input(now, 0, plan(src, 3, theirs))).map(|r| r.0), Some(Reject::NotPermitted));
    assert!(s.input(now, 0, plan(src + 1, 4, ray)).is_err());
    assert!(s.input(now, 0, vec![1, 2, 3]).is_err());
    // Input datagrams: garbage, commands from the far future.
    assert!(s.on_datagram(now, 10, &[3, 0xff, 0xff]).is_err());
    let far = net::command::InputDatagram { ack: None, hash_failures: 0, received: 0, commands: vec![Command::new(1, 10 + 500, [1.0, 0.0], 0.0, 0.0, 0)] };
    assert_eq!(s.on_datagram(now, 10, &far.encode()).map(|p| p.len()), Ok(0));
    let late = net::command::InputDatagram { ack: None, hash_failures: 0, received: 0, commands: vec![Command::new(2, 9, [1.0, 0.0], 0.0, 0.0, 0)] };
    assert_eq!(s.on_datagram(now, 10, &late.encode()).map(|p| p.len()), Ok(0));
    assert_eq!(s.stats.commands_late, 1);
    for (k, at_least) in [(Reject::MalformedCommand, 1), (Reject::FarFutureCommand, 1), (Reject::LateCommand, 1)] {
        assert!(s.stats.rejects.get(&k).copied().unwrap_or(0) >= at_least, "{k:?}: {:?}", s.stats.rejects);
    }
    // The session's lock is released before the next tick (expiry takes it).
    drop(s);
    // Policies: their ops within budget, rate-limited.
    let mut pol = ServerSession::new(50, src, Role::Policy, vec![], &CoreConfig::default(), now);
    let s = &mut pol;
    let cmd = net::command::InputDatagram { ack: None, hash_failures: 0, received: 0, commands: vec![Command::new(1, 20, [1.0, 0.0], 0.0, 0.0, 0)] };
    assert_eq!(s.on_datagram(now, 10, &cmd.encode()), Err(Reject::NotPermitted), "commands are for players");
    let mut accepted = 0;
    for k in 0..1000 {
        if let Ok(Some(_)) = s.input(now, 0, plan(src, 10 + k, Op::Raycast { origin: [0.0; 3], direction: [0.0, 1.0, 0.0], max_distance: 1.0 })) {
            accepted += 1;
        }
    }
    assert!(accepted <= 240 && accepted > 0, "burst capped by the rate limit: {accepted}");
    let r = &s.stats.rejects;
    for (k, at_least) in [(Reject::NotPermitted, 1), (Reject::RateLimited, 700)] {
        assert!(r.get(&k).copied().unwrap_or(0) >= at_least, "{k:?}: {r:?}");
    }
    // Other clients and the tick are undisturbed.
    n.tick();
    assert!(n.hub.sessions.contains_key(&id));
}

#[test]
fn a_server_moved_to_another_match_refuses_the_old_match_and_keeps_its_sessions() {
    let mut hub = Hub::new(CoreConfig::default(), TokenGate::new(KeyRing::single(0, KEY.to_vec()), "gs-1", "m1"));
    let hello = |t: TokenSpec<'_>| Frame::Hello { version: net::proto::PROTOCOL_VERSION, schema_hash: sim_core::PORTS_SCHEMA_HASH, role: Role::Player, token: net::token::mint(KEY, &t) };
    let base = TokenSpec { server_id: "gs-1", match_id: "m1", ..TokenSpec::dev(1, Role::Player, 10_000, 1) };
    let c = hub.hello(&hello(base), 100).expect("m1 admitted");
    hub.join(&c, vec![], 0);
    let later_m1 = TokenSpec { client_id: 2, nonce: 2, ..base };
    hub.set_match("m2");
    assert_eq!(hub.hello(&hello(later_m1), 100).map_err(|r| r.label()), Err("wrong_match"));
    assert!(hub.hello(&hello(TokenSpec { client_id: 3, nonce: 3, match_id: "m2", ..base }), 100).is_ok());
    assert!(hub.sessions.contains_key(&1), "the m1 session continues");
    // Rotation: the old key id keeps working beside the new one.
    hub.set_keys(KeyRing::from_keys([(0, KEY.to_vec()), (1, b"second key, 32 bytes long.......".to_vec())]));
    assert!(hub.hello(&hello(TokenSpec { client_id: 4, nonce: 4, match_id: "m2", ..base }), 100).is_ok());
    let new_key = TokenSpec { key_id: 1, client_id: 5, nonce: 5, match_id: "m2", ..base };
    assert!(hub.hello(&Frame::Hello { version: net::proto::PROTOCOL_VERSION, schema_hash: sim_core::PORTS_SCHEMA_HASH, role: Role::Player, token: net::token::mint(b"second key, 32 bytes long.......", &new_key) }, 100).is_ok());
}

#[test]
fn policy_workers_joining_in_one_tick_get_distinct_npcs_and_get_them_back_on_leave() {
    let s = Scenario::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/small.toml")).expect("scenario");
    let mut world = World::from_scenario(&s, None);
    let mut hub = Hub::new(CoreConfig::default(), gate());
    let mut plans = Vec::new();
    let mut taken: Vec<u64> = Vec::new();
    let mut claims = Vec::new();
    for id in [41u32, 42] {
        let hello = Frame::Hello { version: net::proto::PROTOCOL_VERSION, schema_hash: sim_core::PORTS_SCHEMA_HASH, role: Role::Policy, token: mint(KEY, id, Role::Policy, 10_000, u64::from(id)) };
        let c = hub.hello(&hello, 100).expect("admitted");
        let p = join_plan(&world, &c, Tick(1), &taken).expect("plan");
        taken.extend(p.ops().iter().filter_map(|o| if let Op::Grant { handle, .. } = o { Some(handle.to_bits()) } else { None }));
        claims.push((c, p.clone()));
        plans.push(p);
    }
    let j = world.step(&plans, &mut NoClock).clone();
    let mut granted: Vec<Vec<u64>> = Vec::new();
    for (c, p) in &claims {
        let pj = j.plans.iter().find(|x| x.sequence == p.header().sequence).expect("journal");
        let h = joined_handles(p, pj);
        hub.join(c, h.clone(), 0);
        granted.push(h);
    }
    assert!(!granted[0].is_empty());
    assert!(granted[0].iter().all(|h| !granted[1].contains(h)), "no NPC granted twice: {granted:?}");
    // Leaving returns the NPCs; a handle that died meanwhile does not block the others.
    let mut d = hub.leave(41).expect("session");
    d.controlled.push(Handle::new(9999, 0, 0).to_bits());
    let mut seq = 0;
    let leave = leave_plans(&world, &d, Tick(2), &mut seq);
    assert_eq!(leave.len(), granted[0].len(), "one plan per live entity");
    let j = world.step(&leave, &mut NoClock);
    assert!(j.plans.iter().all(|p| p.status == sim_core::Status::Ok));
    let npcs = world.table(sim_core::Archetype::Npc);
    for h in &granted[0] {
        let row = npcs.handles().iter().position(|x| x == h).expect("live");
        assert_eq!(npcs.u32(sim_core::ColumnId::Owner)[row], 0, "returned to the server");
    }
}

#[test]
fn input_sequences_may_wrap() {
    let n = Net::new(1, CoreConfig::default());
    let mut n = n;
    let id = n.clients[0].id;
    let src = net::hub::source_of(id);
    let mut pol = ServerSession::new(id, src, Role::Policy, vec![], &CoreConfig::default(), 100);
    let s = &mut pol;
    let plan = |seq: u32| {
        let mut b = PlanBuilder::new(Tick(5), SourceId(src), seq);
        b.push(Op::Raycast { origin: [0.0; 3], direction: [0.0, 1.0, 0.0], max_distance: 1.0 });
        b.build()
    };
    assert!(matches!(s.input(100, 0, plan(u32::MAX - 1)), Ok(Some(_))));
    assert!(matches!(s.input(101, 0, plan(u32::MAX - 1)), Ok(None)), "a redundant copy is dropped");
    assert!(matches!(s.input(102, 0, plan(1)), Ok(Some(_))), "after the wrap, seq 1 is newer");
    n.tick();
}

#[test]
fn players_predict_exactly_on_a_clean_link_and_reconcile_after_losses() {
    let mut n = Net::new(2, CoreConfig::default());
    n.set_links(0.0, 0.0, (30, 40));
    for _ in 0..180 {
        n.tick();
    }
    for c in &n.clients {
        assert!(c.errors.len() > 100, "player blocks compared: {}", c.errors.len());
        assert!(c.errors.iter().all(|e| *e == 0.0), "a clean link predicts exactly: max {:?}", c.errors.iter().copied().fold(0.0f32, f32::max));
        assert_eq!(c.predictor.corrections, 0);
    }
    // The uplinks go dark for 45 ticks: the server repeats the last input
    // it has while the players change theirs; when the link is back, the
    // newest commands arrive (redundantly), the rest are lost or late, and
    // the players' predictions are corrected.
    for c in &mut n.clients {
        c.up.loss = 1.0;
    }
    // Walk one way, then (unseen by the server) the other way.
    n.input_override = Some([0.8, 0.0]);
    for _ in 0..10 {
        n.tick();
    }
    n.input_override = Some([-0.8, 0.0]);
    for _ in 0..35 {
        n.tick();
    }
    n.input_override = None;
    for c in &mut n.clients {
        c.up.loss = 0.0;
    }
    for _ in 0..30 {
        n.tick();
    }
    for c in &mut n.clients {
        assert!(c.predictor.corrections > 0, "mispredictions were corrected");
        c.errors.clear();
    }
    let after: Vec<u64> = n.clients.iter().map(|c| c.predictor.corrections).collect();
    for _ in 0..120 {
        n.tick();
    }
    for (c, before) in n.clients.iter().zip(after) {
        assert_eq!(c.predictor.corrections, before, "no corrections once commands arrive in time again");
        assert!(c.errors.iter().all(|e| *e == 0.0), "replayed commands put the avatar where the server has it");
    }
}

#[test]
fn budgets_cannot_be_dodged_with_past_ticks_or_repeated_command_ticks() {
    use net::command::InputDatagram;
    use net::session::Reject;
    let config = CoreConfig { inputs_per_sec: 100_000, ..CoreConfig::default() };
    // A policy stamping each plan for a different past tick: every late plan
    // runs at the next tick, so that is where it is charged.
    let mut pol = ServerSession::new(1, 2, Role::Policy, vec![], &config, 0);
    let ray = Op::Raycast { origin: [0.0; 3], direction: [1.0, 0.0, 0.0], max_distance: 100.0 }; // 4 units
    let mut accepted = 0;
    for seq in 1..=40u32 {
        let mut b = PlanBuilder::new(Tick(u64::from(seq)), SourceId(2), seq);
        for _ in 0..200 {
            b.push(ray);
        }
        if let Ok(Some(_)) = pol.input(0, 100, b.build()) {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 5, "4,000 units per tick, 800 per plan");
    assert_eq!(pol.stats.rejects.get(&Reject::OverBudget), Some(&35));
    // Beyond the accepted lead: refused with a status the client is told.
    let mut b = PlanBuilder::new(Tick(100 + 500), SourceId(2), 99);
    b.push(ray);
    let r = pol.input(0, 100, b.build()).err().map(|r| (r.reject, r.reject.status()));
    assert_eq!(r, Some((Reject::TooFarAhead, Some(sim_core::Status::TickTooFarAhead))));
    // A player: one command per tick, however many datagrams repeat it with
    // new sequence numbers; a hostile tick near u64::MAX is refused, not a panic.
    let mut p = ServerSession::new(3, 4, Role::Player, vec![(1 << 32) | 7], &config, 0);
    let mut taken = 0;
    for seq in 1..=50u32 {
        let d = InputDatagram { ack: None, hash_failures: 0, received: 0, commands: vec![Command::new(seq, 105, [1.0, 0.0], 0.0, 0.0, 0)] };
        taken += p.on_datagram(0, 100, &d.encode()).map_or(0, |v| v.len());
    }
    assert_eq!(taken, 1);
    assert_eq!(p.stats.rejects.get(&Reject::DuplicateCommandTick), Some(&49));
    // The plan path shares the rule: a command plan for a tick already
    // commanded is refused, whatever its sequence.
    let cmd_plan = |seq: u32, tick: u64| {
        let mut b = PlanBuilder::new(Tick(tick), SourceId(4), seq);
        b.push(Op::Command { handle: Handle::from_bits((1 << 32) | 7), sequence: seq, buttons: 2, movement: [0.0; 3], yaw: 0.0, pitch: 0.0, rewind: 1 });
        b.build()
    };
    assert!(matches!(p.input(0, 100, cmd_plan(100, 105)), Err(r) if r.reject == Reject::DuplicateCommandTick));
    assert!(matches!(p.input(0, 100, cmd_plan(101, 106)), Ok(Some(_))));
    assert!(matches!(p.input(0, 100, cmd_plan(102, 106)), Err(r) if r.reject == Reject::DuplicateCommandTick));
    let d = InputDatagram { ack: None, hash_failures: 0, received: 0, commands: vec![Command::new(60, u64::MAX - 1, [1.0, 0.0], 0.0, 0.0, 0)] };
    assert_eq!(p.on_datagram(0, 100, &d.encode()).map(|v| v.len()), Ok(0));
    assert_eq!(p.stats.rejects.get(&Reject::FarFutureCommand), Some(&1));
}

#[test]
fn a_player_who_reconnects_within_the_grace_period_gets_its_avatar_back() {
    use net::hub::Parking;
    let mut n = Net::new(2, CoreConfig::default());
    for _ in 0..30 {
        n.tick();
    }
    let (id, avatar) = (n.clients[0].id, n.clients[0].avatar.expect("avatar"));
    // A reconnect with a fresh token while the old session still lives
    // (its connection died quietly): the old session ends, to be parked.
    let hello = Frame::Hello { version: net::proto::PROTOCOL_VERSION, schema_hash: sim_core::PORTS_SCHEMA_HASH, role: Role::Player, token: mint(KEY, id, Role::Player, 10_000, 777) };
    let claims = n.hub.hello(&hello, 100).expect("a reconnect is admitted");
    let evicted = n.hub.take_evicted();
    assert_eq!(evicted.len(), 1);
    assert_eq!(n.hub.counters.handshakes.get("reconnected"), Some(&1));
    let mut parking = Parking::default();
    let mut seq = 0;
    let next = Tick(n.world.tick().0 + 1);
    let stop = parking.park(&n.world, &evicted[0], next, 600, &mut seq);
    assert_eq!(stop.len(), 1, "parked, with a stop plan");
    assert_eq!(n.world.step(&stop, &mut NoClock).plans[0].status, sim_core::Status::Ok);
    assert_eq!(parking.claim(&n.world, claims.client_id), Some(avatar), "the same avatar");
    let epoch = n.hub.join(&claims, vec![avatar], 0);
    // The old connection's late leave cannot end the new session.
    assert!(n.hub.leave_epoch(id, epoch - 1).is_none());
    assert!(n.hub.sessions.contains_key(&id));
    // A departure parked past its grace comes back as a departure to remove.
    let d = n.hub.leave_epoch(id, epoch).expect("own session");
    let now = n.world.tick().0;
    assert_eq!(parking.park(&n.world, &d, Tick(now + 1), 60, &mut seq).len(), 1);
    assert!(parking.expired(now + 30).is_empty(), "still within grace");
    let gone = parking.expired(now + 61);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].controlled, vec![avatar]);
    assert!(parking.claim(&n.world, id).is_none(), "grace over: a new avatar");
    // Policies are never parked.
    let pol = net::hub::Departed { client_id: 9, source: 10, role: Role::Policy, controlled: vec![avatar] };
    assert!(parking.park(&n.world, &pol, Tick(now + 1), 60, &mut seq).is_empty());
    // Parked twice with different avatars: the first is removed, not leaked.
    let other = n.clients[1].avatar.expect("avatar");
    let twice = net::hub::Departed { client_id: id, source: net::hub::source_of(id), role: Role::Player, controlled: vec![other] };
    let mut p2 = Parking::default();
    assert_eq!(p2.park(&n.world, &d, Tick(now + 1), 60, &mut seq).len(), 1);
    let plans = p2.park(&n.world, &twice, Tick(now + 1), 60, &mut seq);
    assert_eq!(plans.len(), 2, "a despawn of the displaced avatar, then the stop");
    assert!(matches!(plans[0].ops()[0], Op::Despawn { handle } if handle.to_bits() == avatar));
}
