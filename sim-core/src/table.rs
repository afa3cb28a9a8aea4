//! Archetype tables of typed SoA columns, and the entity index.
//!
//! Row i of every column of a table is the same entity (bevy_ecs style). The
//! `Handle` column is the entity list. Spawning appends a row; despawning
//! swap-removes and reports which handle moved into the hole, so the entity
//! index stays exact. Row order is therefore a pure function of the sequence
//! of spawns and despawns: deterministic.

use crate::ids::{Archetype, Handle};
use crate::schema::{archetype_columns, ColumnId, ColumnType, COLUMNS};
use bytemuck::cast_slice;

/// One typed column.
#[derive(Clone, Debug, PartialEq)]
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ColumnData {
    U64(Vec<u64>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
}

impl ColumnData {
    fn empty(ty: ColumnType) -> ColumnData {
        match ty {
            ColumnType::U64 => ColumnData::U64(Vec::new()),
            ColumnType::U32 => ColumnData::U32(Vec::new()),
            ColumnType::I32 => ColumnData::I32(Vec::new()),
            ColumnType::F32 => ColumnData::F32(Vec::new()),
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            ColumnData::U64(v) => v.len(),
            ColumnData::U32(v) => v.len(),
            ColumnData::I32(v) => v.len(),
            ColumnData::F32(v) => v.len(),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column's bytes in row order (little-endian on every supported
    /// target; see the compile-time check in lib.rs).
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        match self {
            ColumnData::U64(v) => cast_slice(v),
            ColumnData::U32(v) => cast_slice(v),
            ColumnData::I32(v) => cast_slice(v),
            ColumnData::F32(v) => cast_slice(v),
        }
    }

    /// Mutable bytes, for tests and fault injection (bit flips).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            ColumnData::U64(v) => bytemuck::cast_slice_mut(v),
            ColumnData::U32(v) => bytemuck::cast_slice_mut(v),
            ColumnData::I32(v) => bytemuck::cast_slice_mut(v),
            ColumnData::F32(v) => bytemuck::cast_slice_mut(v),
        }
    }

    fn swap_remove(&mut self, row: usize) {
        match self {
            ColumnData::U64(v) => {
                v.swap_remove(row);
            }
            ColumnData::U32(v) => {
                v.swap_remove(row);
            }
            ColumnData::I32(v) => {
                v.swap_remove(row);
            }
            ColumnData::F32(v) => {
                v.swap_remove(row);
            }
        }
    }

    fn push_zero(&mut self) {
        match self {
            ColumnData::U64(v) => v.push(0),
            ColumnData::U32(v) => v.push(0),
            ColumnData::I32(v) => v.push(0),
            ColumnData::F32(v) => v.push(0.0),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            ColumnData::U64(v) => v.capacity(),
            ColumnData::U32(v) => v.capacity(),
            ColumnData::I32(v) => v.capacity(),
            ColumnData::F32(v) => v.capacity(),
        }
    }

    /// A copy in a fresh allocation with room for `capacity` rows.
    fn copy_with_capacity(&self, capacity: usize) -> ColumnData {
        fn copy<T: Copy>(v: &[T], capacity: usize) -> Vec<T> {
            let mut out = Vec::with_capacity(capacity.max(v.len()));
            out.extend_from_slice(v);
            out
        }
        match self {
            ColumnData::U64(v) => ColumnData::U64(copy(v, capacity)),
            ColumnData::U32(v) => ColumnData::U32(copy(v, capacity)),
            ColumnData::I32(v) => ColumnData::I32(copy(v, capacity)),
            ColumnData::F32(v) => ColumnData::F32(copy(v, capacity)),
        }
    }

    fn reserve(&mut self, n: usize) {
        match self {
            ColumnData::U64(v) => v.reserve(n),
            ColumnData::U32(v) => v.reserve(n),
            ColumnData::I32(v) => v.reserve(n),
            ColumnData::F32(v) => v.reserve(n),
        }
    }

    /// One value rendered for humans (diffs, inspection).
    #[must_use]
    pub fn value_string(&self, row: usize) -> Option<String> {
        Some(match self {
            ColumnData::U64(v) => format!("{:#x}", v.get(row)?),
            ColumnData::U32(v) => v.get(row)?.to_string(),
            ColumnData::I32(v) => v.get(row)?.to_string(),
            ColumnData::F32(v) => {
                let x = *v.get(row)?;
                format!("{x:?} (bits {:#010x})", x.to_bits())
            }
        })
    }
}

/// The table of one archetype.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    archetype: Archetype,
    /// Column ids in hash order (the archetype's schema).
    ids: &'static [ColumnId],
    /// Column data, parallel to `ids`.
    columns: Vec<ColumnData>,
    /// Where each `ColumnId` lives in `columns` (u8::MAX = absent).
    slot_of: [u8; COLUMNS.len()],
    /// The physics backend's key per row (not hashed: backend-internal).
    keys: Vec<u64>,
}

/// The position of a row's values when spawning.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowInit {
    pub shape: u32,
    pub owner: u32,
    pub health: i32,
}

impl Table {
    #[must_use]
    pub fn new(archetype: Archetype) -> Table {
        let ids = archetype_columns(archetype);
        let mut slot_of = [u8::MAX; COLUMNS.len()];
        let mut columns = Vec::with_capacity(ids.len());
        for (slot, id) in ids.iter().enumerate() {
            slot_of[*id as usize] = slot as u8;
            columns.push(ColumnData::empty(id.desc().ty));
        }
        Table { archetype, ids, columns, slot_of, keys: Vec::new() }
    }

    /// Rebuilds a table from snapshot data, checking that it matches the schema.
    pub(crate) fn from_columns(
        archetype: Archetype,
        columns: Vec<ColumnData>,
        keys: Vec<u64>,
    ) -> Result<Table, String> {
        let mut t = Table::new(archetype);
        if columns.len() != t.columns.len() {
            return Err(format!(
                "table {}: expected {} columns, found {}",
                archetype.name(),
                t.columns.len(),
                columns.len()
            ));
        }
        let len = columns.first().map_or(0, ColumnData::len);
        for (i, (have, want)) in columns.iter().zip(&t.columns).enumerate() {
            if std::mem::discriminant(have) != std::mem::discriminant(want) {
                return Err(format!("table {}: column {} has the wrong type", archetype.name(), t.ids[i].name()));
            }
            if have.len() != len {
                return Err(format!("table {}: column {} has {} rows, expected {len}", archetype.name(), t.ids[i].name(), have.len()));
            }
        }
        if keys.len() != len {
            return Err(format!("table {}: {} physics keys for {len} rows", archetype.name(), keys.len()));
        }
        t.columns = columns;
        t.keys = keys;
        Ok(t)
    }

    #[must_use]
    pub fn archetype(&self) -> Archetype {
        self.archetype
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.handles().len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Column ids and data, in hash order.
    pub fn columns(&self) -> impl ExactSizeIterator<Item = (ColumnId, &ColumnData)> {
        self.ids.iter().copied().zip(self.columns.iter())
    }

    pub(crate) fn column_data(&self) -> &[ColumnData] {
        &self.columns
    }

    #[must_use]
    pub fn has(&self, id: ColumnId) -> bool {
        self.slot_of[id as usize] != u8::MAX
    }

    #[must_use]
    pub fn column(&self, id: ColumnId) -> Option<&ColumnData> {
        self.columns.get(usize::from(self.slot_of[id as usize]))
    }

    pub fn column_mut(&mut self, id: ColumnId) -> Option<&mut ColumnData> {
        self.columns.get_mut(usize::from(self.slot_of[id as usize]))
    }

    /// The entity list.
    #[must_use]
    pub fn handles(&self) -> &[u64] {
        match &self.columns[0] {
            ColumnData::U64(v) => v,
            _ => unreachable!("column 0 is the handle column by construction"),
        }
    }

    #[must_use]
    pub fn u64(&self, id: ColumnId) -> &[u64] {
        match self.column(id) {
            Some(ColumnData::U64(v)) => v,
            _ => &[],
        }
    }

    pub fn u64_mut(&mut self, id: ColumnId) -> &mut [u64] {
        match self.column_mut(id) {
            Some(ColumnData::U64(v)) => v,
            _ => &mut [],
        }
    }

    #[must_use]
    pub fn f32(&self, id: ColumnId) -> &[f32] {
        match self.column(id) {
            Some(ColumnData::F32(v)) => v,
            _ => &[],
        }
    }

    #[must_use]
    pub fn u32(&self, id: ColumnId) -> &[u32] {
        match self.column(id) {
            Some(ColumnData::U32(v)) => v,
            _ => &[],
        }
    }

    #[must_use]
    pub fn i32(&self, id: ColumnId) -> &[i32] {
        match self.column(id) {
            Some(ColumnData::I32(v)) => v,
            _ => &[],
        }
    }

    pub fn u32_mut(&mut self, id: ColumnId) -> &mut [u32] {
        match self.column_mut(id) {
            Some(ColumnData::U32(v)) => v,
            _ => &mut [],
        }
    }

    pub fn i32_mut(&mut self, id: ColumnId) -> &mut [i32] {
        match self.column_mut(id) {
            Some(ColumnData::I32(v)) => v,
            _ => &mut [],
        }
    }

    /// Mutable access to several f32 columns at once (all must exist and be
    /// distinct; that is a schema fact, checked here).
    pub fn f32_many_mut<const N: usize>(&mut self, ids: [ColumnId; N]) -> [&mut [f32]; N] {
        let slots = ids.map(|id| usize::from(self.slot_of[id as usize]));
        let cols = self
            .columns
            .get_disjoint_mut(slots)
            .unwrap_or_else(|e| panic!("f32_many_mut({ids:?}) on {:?}: {e:?}", self.archetype));
        cols.map(|c| match c {
            ColumnData::F32(v) => v.as_mut_slice(),
            other => panic!("column is not f32: {other:?}"),
        })
    }

    /// Appends a row; physics columns start at zero and are filled by the
    /// next sync (the world does that immediately after spawning).
    pub fn push(&mut self, handle: Handle, key: u64, init: RowInit) -> usize {
        let row = self.len();
        self.keys.push(key);
        for (id, col) in self.ids.iter().zip(self.columns.iter_mut()) {
            match (id, col) {
                (ColumnId::Handle, ColumnData::U64(v)) => v.push(handle.to_bits()),
                (ColumnId::Shape, ColumnData::U32(v)) => v.push(init.shape),
                (ColumnId::Owner, ColumnData::U32(v)) => v.push(init.owner),
                (ColumnId::Health, ColumnData::I32(v)) => v.push(init.health),
                (ColumnId::RotW, ColumnData::F32(v)) => v.push(1.0),
                (_, c) => c.push_zero(),
            }
        }
        row
    }

    /// Removes `row` by swapping the last row into it. Returns the handle of
    /// the entity that moved into `row`, if any.
    pub fn swap_remove(&mut self, row: usize) -> Option<Handle> {
        let last = self.len().checked_sub(1)?;
        if row > last {
            return None;
        }
        for c in &mut self.columns {
            c.swap_remove(row);
        }
        self.keys.swap_remove(row);
        (row != last).then(|| Handle::from_bits(self.handles()[row]))
    }

    /// Physics keys, parallel to rows.
    #[must_use]
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// The physics keys with the 13 physics-synced columns, mutably.
    pub fn physics_columns_mut(&mut self) -> (&[u64], [&mut [f32]; 13]) {
        let slots = crate::schema::PHYSICS_COLUMNS.map(|id| usize::from(self.slot_of[id as usize]));
        let cols = match self.columns.get_disjoint_mut(slots) {
            Ok(c) => c,
            Err(e) => unreachable!("physics columns exist in every table: {e:?}"),
        };
        let cols = cols.map(|c| match c {
            ColumnData::F32(v) => v.as_mut_slice(),
            _ => unreachable!("physics columns are f32"),
        });
        (&self.keys, cols)
    }

    pub fn reserve(&mut self, n: usize) {
        self.keys.reserve(n);
        for c in &mut self.columns {
            c.reserve(n);
        }
    }

    /// Rows every column holds without reallocating.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.columns.iter().map(ColumnData::capacity).min().unwrap_or(0)
    }

    /// Moves every column into a fresh allocation with room for `capacity`
    /// rows and hands back the old columns, unchanged and still allocated.
    /// Zero-copy readers (the Python bindings' numpy views) keep the old
    /// allocations alive while they may still point into them, instead of
    /// letting a growing `Vec` free memory under them.
    pub fn regrow(&mut self, capacity: usize) -> Vec<ColumnData> {
        let fresh: Vec<ColumnData> = self.columns.iter().map(|c| c.copy_with_capacity(capacity)).collect();
        self.keys.reserve(capacity.saturating_sub(self.keys.len()));
        std::mem::replace(&mut self.columns, fresh)
    }
}

/// Where an entity lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub archetype: Archetype,
    pub row: u32,
}

/// Generational slot allocator: handle index -> location.
///
/// What an [`EntityIndex`] is made of: world id, generations, locations
/// (archetype, row), free list.
pub(crate) type IndexParts<'a> = (u8, &'a [u32], &'a [(u8, u32)], &'a [u32]);

/// Freed indices are reused LIFO, so allocation order is a pure function of
/// the spawn/despawn sequence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntityIndex {
    world: u8,
    generations: Vec<u32>,
    /// (archetype, row) per slot; archetype u8::MAX means free.
    locations: Vec<(u8, u32)>,
    free: Vec<u32>,
}

const FREE: u8 = u8::MAX;

impl EntityIndex {
    #[must_use]
    pub fn new(world: u8) -> EntityIndex {
        EntityIndex { world, ..Default::default() }
    }

    pub(crate) fn from_parts(
        world: u8,
        generations: Vec<u32>,
        locations: Vec<(u8, u32)>,
        free: Vec<u32>,
    ) -> Result<EntityIndex, String> {
        if generations.len() != locations.len() {
            return Err("entity index: generations and locations differ in length".into());
        }
        if free.iter().any(|&i| locations.get(i as usize).is_none_or(|l| l.0 != FREE)) {
            return Err("entity index: free list names a live or missing slot".into());
        }
        let mut sorted = free.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err("entity index: free list names a slot twice".into());
        }
        if locations.iter().filter(|l| l.0 == FREE).count() != free.len() {
            return Err("entity index: a free slot is missing from the free list".into());
        }
        Ok(EntityIndex { world, generations, locations, free })
    }

    pub(crate) fn parts(&self) -> IndexParts<'_> {
        (self.world, &self.generations, &self.locations, &self.free)
    }

    pub fn alloc(&mut self, loc: Location) -> Handle {
        let entry = (loc.archetype as u8, loc.row);
        let index = if let Some(i) = self.free.pop() {
            self.locations[i as usize] = entry;
            i
        } else {
            let i = self.generations.len() as u32;
            self.generations.push(0);
            self.locations.push(entry);
            i
        };
        Handle::new(index, self.generations[index as usize], self.world)
    }

    /// The location of a live handle; `None` for dead, stale or foreign ones.
    #[must_use]
    pub fn get(&self, h: Handle) -> Option<Location> {
        if h.world() != self.world {
            return None;
        }
        let i = h.index() as usize;
        let (a, row) = *self.locations.get(i)?;
        if a == FREE || self.generations[i] & Handle::GENERATION_MASK != h.generation() {
            return None;
        }
        Some(Location { archetype: Archetype::from_u8(a)?, row })
    }

    /// Like `get`, but says why a handle is not live.
    pub fn check(&self, h: Handle) -> Result<Location, crate::ports::Status> {
        use crate::ports::Status;
        if h.world() != self.world {
            return Err(Status::ForeignHandle);
        }
        let i = h.index() as usize;
        let Some(&(a, row)) = self.locations.get(i) else { return Err(Status::DeadHandle) };
        let current = self.generations[i] & Handle::GENERATION_MASK;
        if current != h.generation() {
            // A handle from an older generation of the slot (freed or reused).
            return Err(if h.generation() < current { Status::StaleHandle } else { Status::DeadHandle });
        }
        if a == FREE {
            return Err(Status::DeadHandle);
        }
        Archetype::from_u8(a).map(|archetype| Location { archetype, row }).ok_or(Status::DeadHandle)
    }

    pub fn set_row(&mut self, h: Handle, row: u32) {
        if let Some(l) = self.locations.get_mut(h.index() as usize) {
            l.1 = row;
        }
    }

    /// Frees a live handle's slot and bumps its generation.
    pub fn free(&mut self, h: Handle) -> bool {
        if self.get(h).is_none() {
            return false;
        }
        let i = h.index() as usize;
        self.locations[i] = (FREE, 0);
        self.generations[i] = self.generations[i].wrapping_add(1) & Handle::GENERATION_MASK;
        self.free.push(h.index());
        true
    }

    /// Handles of every live slot, by index.
    pub fn live_handles(&self) -> impl Iterator<Item = Handle> + '_ {
        self.locations.iter().enumerate().filter(|(_, l)| l.0 != FREE).map(|(i, _)| Handle::new(i as u32, self.generations[i], self.world))
    }

    #[must_use]
    pub fn live_count(&self) -> usize {
        self.locations.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(t: &mut Table, idx: &mut EntityIndex, health: i32) -> Handle {
        let h = idx.alloc(Location { archetype: t.archetype(), row: t.len() as u32 });
        t.push(h, 0, RowInit { shape: 0, owner: 0, health });
        h
    }

    fn despawn(t: &mut Table, idx: &mut EntityIndex, h: Handle) {
        let loc = idx.get(h).expect("live");
        if let Some(moved) = t.swap_remove(loc.row as usize) {
            idx.set_row(moved, loc.row);
        }
        assert!(idx.free(h));
    }

    #[test]
    fn swap_remove_reports_moved_handle_and_keeps_rows_aligned() {
        let mut t = Table::new(Archetype::Prop);
        let mut idx = EntityIndex::new(0);
        let hs: Vec<Handle> = (0..5).map(|i| spawn(&mut t, &mut idx, i * 10)).collect();
        // Remove row 1: the last row (handle 4) moves into it.
        let moved = t.swap_remove(1);
        assert_eq!(moved, Some(hs[4]));
        assert_eq!(t.len(), 4);
        assert_eq!(t.i32(ColumnId::Health), &[0, 40, 20, 30]);
        assert_eq!(t.handles()[1], hs[4].to_bits());
        // Removing the last row moves nothing.
        assert_eq!(t.swap_remove(3), None);
        assert_eq!(t.swap_remove(99), None);
        for c in t.column_data() {
            assert_eq!(c.len(), 3);
        }
    }

    #[test]
    fn regrow_moves_columns_and_keeps_the_old_allocation_intact() {
        let mut t = Table::new(Archetype::Prop);
        let mut idx = EntityIndex::new(0);
        for i in 0..3 {
            spawn(&mut t, &mut idx, i);
        }
        let before = t.clone();
        let old_ptr = t.i32(ColumnId::Health).as_ptr();
        let old = t.regrow(100);
        assert!(t.capacity() >= 100);
        assert_eq!(t, before, "values and row order unchanged");
        assert_ne!(t.i32(ColumnId::Health).as_ptr(), old_ptr, "fresh allocation");
        // The returned columns are the old allocation, untouched.
        let ColumnData::I32(h) = &old[before.ids.iter().position(|c| *c == ColumnId::Health).expect("health")] else { panic!("type") };
        assert_eq!(h.as_ptr(), old_ptr);
        assert_eq!(h.as_slice(), &[0, 1, 2]);
        // Spawning within capacity does not move the columns again.
        let p = t.i32(ColumnId::Health).as_ptr();
        for i in 0..90 {
            spawn(&mut t, &mut idx, i);
        }
        assert_eq!(t.i32(ColumnId::Health).as_ptr(), p);
    }

    #[test]
    fn stale_handles_are_rejected_by_generation() {
        let mut t = Table::new(Archetype::Prop);
        let mut idx = EntityIndex::new(0);
        let a = spawn(&mut t, &mut idx, 1);
        let b = spawn(&mut t, &mut idx, 2);
        despawn(&mut t, &mut idx, a);
        assert_eq!(idx.get(a), None, "despawned handle must be dead");
        assert!(!idx.free(a), "double free must be refused");
        // The slot is reused with a new generation: the old handle stays dead.
        let c = spawn(&mut t, &mut idx, 3);
        assert_eq!(c.index(), a.index());
        assert_ne!(c.generation(), a.generation());
        assert_eq!(idx.get(a), None);
        assert!(idx.get(c).is_some());
        // b moved to row 0 when a was removed; the index followed it.
        assert_eq!(idx.get(b).map(|l| l.row), Some(0));
        assert_eq!(t.i32(ColumnId::Health)[0], 2);
        // Foreign world handles are rejected.
        assert_eq!(idx.get(Handle::new(b.index(), b.generation(), 9)), None);
    }

    #[test]
    fn entity_index_parts_must_be_consistent() {
        let free_slot = (FREE, 0u32);
        let live = (Archetype::Prop as u8, 0u32);
        assert!(EntityIndex::from_parts(0, vec![1, 0], vec![free_slot, live], vec![0]).is_ok());
        assert!(EntityIndex::from_parts(0, vec![1, 0], vec![free_slot, live], vec![0, 0]).is_err(), "duplicate free entry");
        assert!(EntityIndex::from_parts(0, vec![1, 0], vec![free_slot, live], vec![]).is_err(), "free slot missing from the free list");
        assert!(EntityIndex::from_parts(0, vec![1, 0], vec![free_slot, live], vec![1]).is_err(), "live slot on the free list");
        assert!(EntityIndex::from_parts(0, vec![1], vec![free_slot, live], vec![0]).is_err(), "length mismatch");
    }

    #[test]
    fn npc_table_has_target_columns_and_props_do_not() {
        assert!(Table::new(Archetype::Npc).has(ColumnId::TargetX));
        assert!(!Table::new(Archetype::Prop).has(ColumnId::TargetX));
    }
}
