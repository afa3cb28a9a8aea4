//! Snapshots: the entire world as a versioned byte blob.
//!
//! Layout: magic `DPSNAP\0\0` (8 bytes), format version (u32 LE), reserved
//! (u32), xxh3-64 of the payload (u64 LE), payload length (u64 LE), payload.
//! The payload is an rkyv archive of our own types; rapier's state is inside
//! it as bincode bytes (rapier supports serde, not rkyv). Restoring checks
//! every length and cross-reference before building a world, so a hostile
//! blob is an error, never a panic.

use crate::ids::{Archetype, Tick};
use crate::physics::{PhysicsPort, RapierPhysics, ShapeSpec};
use crate::rng::WorldRng;
use crate::table::{ColumnData, EntityIndex, Table};
use crate::world::{key_from_bits, World, WorldConfig};
use rkyv::rancor;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"DPSNAP\0\0";
/// 3: behaviour graphs and their bindings.
pub const SNAPSHOT_VERSION: u32 = 3;
const HEADER_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot: expected at least {HEADER_LEN} header bytes, found {0}")]
    Truncated(usize),
    #[error("snapshot: bad magic (not a dualplane snapshot)")]
    BadMagic,
    #[error("snapshot: format version {found}, this build reads {SNAPSHOT_VERSION}")]
    Version { found: u32 },
    #[error("snapshot: payload length {declared} but {actual} bytes follow the header")]
    Length { declared: u64, actual: usize },
    #[error("snapshot: checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    Checksum { stored: u64, computed: u64 },
    #[error("snapshot: payload does not decode: {0}")]
    Decode(String),
    #[error("snapshot: inconsistent state: {0}")]
    Inconsistent(String),
    #[error("snapshot: cannot encode: {0}")]
    Encode(String),
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct ConfigV1 {
    world_id: u8,
    tick_rate: u32,
    gravity: [f32; 3],
    half_extents: [f32; 2],
    kill_y: f32,
    wander_radius: f32,
    seed: u64,
    players: crate::character::PlayerRules,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct TableV1 {
    archetype: u8,
    keys: Vec<u64>,
    columns: Vec<ColumnData>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SnapshotV1 {
    tick: u64,
    rng: u64,
    config: ConfigV1,
    shapes: Vec<ShapeSpec>,
    shape_names: Vec<String>,
    tables: Vec<TableV1>,
    generations: Vec<u32>,
    locations: Vec<(u8, u32)>,
    free: Vec<u32>,
    physics: Vec<u8>,
    /// Lag compensation's pose history: (tick, [(handle, centre, radius)]).
    history: Vec<(u64, crate::lagcomp::Poses)>,
    /// Behaviour graphs, ascending hash: bytes, then (handle, source,
    /// registers) of every bound entity, ascending handle.
    graphs: Vec<GraphV1>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct GraphV1 {
    bytes: Vec<u8>,
    members: Vec<(u64, u32, Vec<[f32; 3]>)>,
}

/// Recomputes a snapshot's payload checksum and length (fuzzing and
/// fault-injection tools that edit payloads).
pub fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[HEADER_LEN..]);
        let len = (bytes.len() - HEADER_LEN) as u64;
        bytes[16..24].copy_from_slice(&sum.to_le_bytes());
        bytes[24..32].copy_from_slice(&len.to_le_bytes());
    }
}

/// A world's state, copied by [`World::capture`], not yet encoded.
pub struct Capture {
    snap: SnapshotV1,
    physics: RapierPhysics,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").field("tick", &self.snap.tick).field("physics", &self.physics).finish()
    }
}

impl Capture {
    /// The tick the captured world had simulated.
    #[must_use]
    pub fn tick(&self) -> u64 {
        self.snap.tick
    }

    /// The snapshot bytes, identical to [`World::snapshot`] at capture time.
    pub fn encode(mut self) -> Result<Vec<u8>, SnapshotError> {
        self.snap.physics = self.physics.save().map_err(|e| SnapshotError::Encode(e.to_string()))?;
        seal(&self.snap)
    }
}

fn seal(snap: &SnapshotV1) -> Result<Vec<u8>, SnapshotError> {
    let payload = rkyv::to_bytes::<rancor::Error>(snap).map_err(|e| SnapshotError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

impl World {
    /// The whole world as bytes.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let mut snap = self.snapshot_parts();
        snap.physics = self.physics.save().map_err(|e| SnapshotError::Encode(e.to_string()))?;
        seal(&snap)
    }

    /// A copy of the state a snapshot holds, to encode elsewhere (the
    /// replay writer's thread): copying is a fraction of encoding's cost,
    /// and `Capture::encode` gives exactly the bytes `snapshot` would have.
    #[must_use]
    pub fn capture(&self) -> Capture {
        Capture { snap: self.snapshot_parts(), physics: self.physics.clone() }
    }

    fn snapshot_parts(&self) -> SnapshotV1 {
        let (world_id, generations, locations, free) = self.index.parts();
        let c = &self.config;
        SnapshotV1 {
            tick: self.tick.0,
            rng: self.rng.state(),
            config: ConfigV1 {
                world_id,
                tick_rate: c.tick_rate,
                gravity: c.gravity,
                half_extents: c.half_extents,
                kill_y: c.kill_y,
                wander_radius: c.wander_radius,
                seed: c.seed,
                players: c.players.clone(),
            },
            shapes: self.shapes.clone(),
            shape_names: self.shape_names.clone(),
            tables: self
                .tables
                .iter()
                .map(|t| TableV1 { archetype: t.archetype() as u8, keys: t.keys().to_vec(), columns: t.column_data().to_vec() })
                .collect(),
            generations: generations.to_vec(),
            locations: locations.to_vec(),
            free: free.to_vec(),
            physics: Vec::new(),
            history: self.history.iter().cloned().collect(),
            graphs: self
                .graphs
                .graphs
                .values()
                .map(|l| GraphV1 { bytes: l.bytes.clone(), members: l.members.iter().map(|(&h, m)| (h, m.source, m.state.clone())).collect() })
                .collect(),
        }
    }

    /// Rebuilds a world from [`World::snapshot`] bytes.
    pub fn restore(bytes: &[u8]) -> Result<World, SnapshotError> {
        if bytes.len() < HEADER_LEN {
            return Err(SnapshotError::Truncated(bytes.len()));
        }
        if bytes[..8] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let dword = |at: usize| u64::from(word(at)) | (u64::from(word(at + 4)) << 32);
        let version = word(8);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version { found: version });
        }
        let stored = dword(16);
        let declared = dword(24);
        let payload = &bytes[HEADER_LEN..];
        if declared != payload.len() as u64 {
            return Err(SnapshotError::Length { declared, actual: payload.len() });
        }
        let computed = xxhash_rust::xxh3::xxh3_64(payload);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let snap = rkyv::from_bytes::<SnapshotV1, rancor::Error>(&aligned).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        Self::from_snapshot(snap)
    }

    fn from_snapshot(s: SnapshotV1) -> Result<World, SnapshotError> {
        let bad = SnapshotError::Inconsistent;
        let c = s.config;
        if !(1..=1000).contains(&c.tick_rate) {
            return Err(bad(format!("tick rate {}", c.tick_rate)));
        }
        if s.tables.len() != Archetype::COUNT {
            return Err(bad(format!("{} tables, expected {}", s.tables.len(), Archetype::COUNT)));
        }
        if s.tick > u64::MAX / 4 {
            return Err(bad(format!("tick {} is beyond any run", s.tick)));
        }
        let pl = &c.players;
        let rules_ok = [pl.max_speed, pl.acceleration, pl.air_acceleration, pl.jump_speed].iter().all(|v| v.is_finite() && *v >= 0.0)
            && !pl.spawn_points.is_empty()
            && pl.spawn_points.iter().flatten().all(|v| v.is_finite())
            && (pl.shape as usize) < s.shapes.len().max(1);
        if !rules_ok {
            return Err(bad("player rules: negative or non-finite limits, no spawn points, or an unknown shape".into()));
        }
        if s.shape_names.len() != s.shapes.len() {
            return Err(bad("shape names and shapes differ in count".into()));
        }
        let physics = RapierPhysics::load(&s.physics).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        let index = EntityIndex::from_parts(c.world_id, s.generations, s.locations, s.free).map_err(bad)?;
        let mut tables = Vec::with_capacity(Archetype::COUNT);
        for (i, t) in s.tables.into_iter().enumerate() {
            let a = Archetype::from_u8(t.archetype).filter(|a| *a as usize == i).ok_or_else(|| bad(format!("table {i} has archetype {}", t.archetype)))?;
            tables.push(Table::from_columns(a, t.columns, t.keys).map_err(bad)?);
        }
        let mut live = 0usize;
        for t in &tables {
            for (row, (&h, &k)) in t.handles().iter().zip(t.keys()).enumerate() {
                let h = crate::Handle::from_bits(h);
                let loc = index.get(h).ok_or_else(|| bad(format!("row {row} of {} holds dead handle {h:?}", t.archetype().name())))?;
                if loc.archetype != t.archetype() || loc.row as usize != row {
                    return Err(bad(format!("handle {h:?} indexed at {loc:?}, stored in {} row {row}", t.archetype().name())));
                }
                if !physics.contains(key_from_bits(k)) {
                    return Err(bad(format!("handle {h:?} has no physics body")));
                }
            }
            if t.u32(crate::ColumnId::Shape).iter().any(|&sh| sh as usize >= s.shapes.len()) {
                return Err(bad(format!("{} names an unknown shape", t.archetype().name())));
            }
            live += t.len();
        }
        // Avatars' columns are the controller's input: finite, inputs in range.
        let av = &tables[Archetype::Avatar as usize];
        let finite = |c: crate::ColumnId| av.f32(c).iter().all(|v| v.is_finite() && v.abs() <= 1.0e6);
        let unit = |c: crate::ColumnId| av.f32(c).iter().all(|v| (-1.0..=1.0).contains(v));
        use crate::ColumnId as C;
        if ![C::PosX, C::PosY, C::PosZ, C::LinvelX, C::LinvelY, C::LinvelZ, C::Yaw, C::Pitch].into_iter().all(finite) || !unit(C::InputX) || !unit(C::InputZ) {
            return Err(bad("avatar state is not finite or its inputs are out of range".into()));
        }
        if live != index.live_count() {
            return Err(bad(format!("{live} rows but {} live handles", index.live_count())));
        }
        // Every live slot points at a row that holds its handle.
        for h in index.live_handles() {
            let loc = index.get(h).ok_or_else(|| bad(format!("slot {} is not live", h.index())))?;
            let t = &tables[loc.archetype as usize];
            if t.handles().get(loc.row as usize) != Some(&h.to_bits()) {
                return Err(bad(format!("handle {h:?} points at {} row {} which holds another entity", loc.archetype.name(), loc.row)));
            }
        }
        let config = WorldConfig {
            world_id: c.world_id,
            tick_rate: c.tick_rate,
            gravity: c.gravity,
            half_extents: c.half_extents,
            kill_y: c.kill_y,
            wander_radius: c.wander_radius,
            seed: c.seed,
            players: c.players,
        };
        if s.history.len() > crate::lagcomp::HISTORY_TICKS
            || s.history.windows(2).any(|w| w[0].0 >= w[1].0)
            || s.history.last().is_some_and(|(t, _)| *t > s.tick)
            || s.history.iter().any(|(_, p)| p.iter().any(|(_, c, r)| !c.iter().all(|v| v.is_finite()) || !r.is_finite()))
        {
            return Err(bad("pose history: too long, out of order, ahead of the tick or not finite".into()));
        }
        let history = crate::lagcomp::PoseHistory { ticks: s.history.into_iter().collect() };
        if s.graphs.len() > crate::world::MAX_GRAPHS {
            return Err(bad(format!("{} behaviour graphs; at most {}", s.graphs.len(), crate::world::MAX_GRAPHS)));
        }
        let mut graphs = crate::world::GraphStore::default();
        for g in s.graphs {
            let hash = graphs.insert_bytes(g.bytes).map_err(|e| bad(format!("behaviour graph: {e}")))?;
            for (h, source, state) in g.members {
                if index.check(crate::ids::Handle::from_bits(h)).is_err() {
                    return Err(bad(format!("behaviour graph {hash:#018x} binds dead handle {h:#x}")));
                }
                graphs.restore_member(hash, h, crate::world::GraphMember { source, state }).map_err(|e| bad(format!("behaviour graph {hash:#018x}: {e}")))?;
            }
        }
        Ok(World::assemble(Tick(s.tick), config, WorldRng::from_state(s.rng), s.shapes, s.shape_names, tables, index, physics, history, graphs))
    }
}
