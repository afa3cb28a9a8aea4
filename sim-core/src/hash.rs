//! Per-tick hashing: xxh3-64 of every column's bytes in row order, and a
//! world hash over (tick, column hashes, rng state).

use crate::ids::{Archetype, Tick};
use crate::schema::ColumnId;
use crate::table::Table;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// The hash of one column of one archetype's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnHash {
    pub archetype: Archetype,
    pub column: ColumnId,
    pub rows: u32,
    pub hash: u64,
}

/// All of a tick's hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorldHashes {
    pub tick: Tick,
    pub world: u64,
    /// In hash order: archetype order, then each table's column order.
    pub columns: Vec<ColumnHash>,
}

impl WorldHashes {
    /// Recomputes into `self`, reusing its allocation.
    ///
    /// `extra` is a digest of world state outside the tables (the
    /// behaviour graph store); `None` leaves the hash as it always was.
    pub fn compute(&mut self, tick: Tick, tables: &[Table], rng_state: u64, extra: Option<u64>) {
        self.tick = tick;
        self.columns.clear();
        let mut world = Xxh3::new();
        world.update(b"dualplane/world/v1");
        world.update(&tick.to_le_bytes());
        for t in tables {
            for (id, data) in t.columns() {
                let ch = ColumnHash { archetype: t.archetype(), column: id, rows: data.len() as u32, hash: xxh3_64(data.bytes()) };
                // One fixed 15-byte record per column: archetype, column id,
                // row count, hash (all little-endian).
                let mut rec = [0u8; 15];
                rec[0] = ch.archetype as u8;
                rec[1..3].copy_from_slice(&(ch.column as u16).to_le_bytes());
                rec[3..7].copy_from_slice(&ch.rows.to_le_bytes());
                rec[7..15].copy_from_slice(&ch.hash.to_le_bytes());
                world.update(&rec);
                self.columns.push(ch);
            }
        }
        world.update(&rng_state.to_le_bytes());
        if let Some(x) = extra {
            world.update(&x.to_le_bytes());
        }
        self.world = world.digest();
    }

    #[must_use]
    pub fn get(&self, archetype: Archetype, column: ColumnId) -> Option<u64> {
        self.columns.iter().find(|c| c.archetype == archetype && c.column == column).map(|c| c.hash)
    }
}
