//! Column schema: which columns exist, their types and units, and which
//! archetype has which.
//!
//! The order of `ColumnId` is the order columns are hashed in, so it is part
//! of the determinism contract: append new columns, never reorder.

/// Element type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    U64,
    U32,
    I32,
    F32,
}

/// Every column any archetype may have. Discriminants are stable ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum ColumnId {
    /// The entity list: row i's handle bits. Sets the table length.
    Handle = 0,
    /// Index into the world's shape table.
    Shape = 1,
    /// Owning source id (0 = server).
    Owner = 2,
    /// Gameplay integer: hit points.
    Health = 3,
    PosX = 4,
    PosY = 5,
    PosZ = 6,
    RotX = 7,
    RotY = 8,
    RotZ = 9,
    RotW = 10,
    LinVelX = 11,
    LinVelY = 12,
    LinVelZ = 13,
    AngVelX = 14,
    AngVelY = 15,
    AngVelZ = 16,
    /// Kinematic move target (NPCs only).
    TargetX = 17,
    TargetY = 18,
    TargetZ = 19,
    /// Kinematic move speed in m/s; 0 = standing still (NPCs only).
    MaxSpeed = 20,
}

/// Static description of one column.
#[derive(Clone, Copy, Debug)]
pub struct ColumnDesc {
    pub id: ColumnId,
    pub name: &'static str,
    pub ty: ColumnType,
    pub unit: &'static str,
}

const fn desc(id: ColumnId, name: &'static str, ty: ColumnType, unit: &'static str) -> ColumnDesc {
    ColumnDesc { id, name, ty, unit }
}

/// All columns, indexed by `ColumnId as usize`.
pub const COLUMNS: [ColumnDesc; 21] = [
    desc(ColumnId::Handle, "handle", ColumnType::U64, "handle"),
    desc(ColumnId::Shape, "shape", ColumnType::U32, "index"),
    desc(ColumnId::Owner, "owner", ColumnType::U32, "source_id"),
    desc(ColumnId::Health, "health", ColumnType::I32, "hp"),
    desc(ColumnId::PosX, "pos_x", ColumnType::F32, "m"),
    desc(ColumnId::PosY, "pos_y", ColumnType::F32, "m"),
    desc(ColumnId::PosZ, "pos_z", ColumnType::F32, "m"),
    desc(ColumnId::RotX, "rot_x", ColumnType::F32, "quat"),
    desc(ColumnId::RotY, "rot_y", ColumnType::F32, "quat"),
    desc(ColumnId::RotZ, "rot_z", ColumnType::F32, "quat"),
    desc(ColumnId::RotW, "rot_w", ColumnType::F32, "quat"),
    desc(ColumnId::LinVelX, "linvel_x", ColumnType::F32, "m/s"),
    desc(ColumnId::LinVelY, "linvel_y", ColumnType::F32, "m/s"),
    desc(ColumnId::LinVelZ, "linvel_z", ColumnType::F32, "m/s"),
    desc(ColumnId::AngVelX, "angvel_x", ColumnType::F32, "rad/s"),
    desc(ColumnId::AngVelY, "angvel_y", ColumnType::F32, "rad/s"),
    desc(ColumnId::AngVelZ, "angvel_z", ColumnType::F32, "rad/s"),
    desc(ColumnId::TargetX, "target_x", ColumnType::F32, "m"),
    desc(ColumnId::TargetY, "target_y", ColumnType::F32, "m"),
    desc(ColumnId::TargetZ, "target_z", ColumnType::F32, "m"),
    desc(ColumnId::MaxSpeed, "max_speed", ColumnType::F32, "m/s"),
];

impl ColumnId {
    #[must_use]
    pub fn desc(self) -> &'static ColumnDesc {
        &COLUMNS[self as usize]
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        self.desc().name
    }

    #[must_use]
    pub fn from_u16(v: u16) -> Option<ColumnId> {
        COLUMNS.get(usize::from(v)).map(|d| d.id)
    }

    #[must_use]
    pub fn from_name(name: &str) -> Option<ColumnId> {
        COLUMNS.iter().find(|d| d.name == name).map(|d| d.id)
    }
}

use ColumnId as C;

/// Columns every body archetype has, in hash order.
const BODY: [ColumnId; 17] = [
    C::Handle,
    C::Shape,
    C::Owner,
    C::Health,
    C::PosX,
    C::PosY,
    C::PosZ,
    C::RotX,
    C::RotY,
    C::RotZ,
    C::RotW,
    C::LinVelX,
    C::LinVelY,
    C::LinVelZ,
    C::AngVelX,
    C::AngVelY,
    C::AngVelZ,
];

const NPC: [ColumnId; 21] = [
    C::Handle,
    C::Shape,
    C::Owner,
    C::Health,
    C::PosX,
    C::PosY,
    C::PosZ,
    C::RotX,
    C::RotY,
    C::RotZ,
    C::RotW,
    C::LinVelX,
    C::LinVelY,
    C::LinVelZ,
    C::AngVelX,
    C::AngVelY,
    C::AngVelZ,
    C::TargetX,
    C::TargetY,
    C::TargetZ,
    C::MaxSpeed,
];

/// The physics-synced columns, in the order the sync writes them.
pub const PHYSICS_COLUMNS: [ColumnId; 13] = [
    C::PosX,
    C::PosY,
    C::PosZ,
    C::RotX,
    C::RotY,
    C::RotZ,
    C::RotW,
    C::LinVelX,
    C::LinVelY,
    C::LinVelZ,
    C::AngVelX,
    C::AngVelY,
    C::AngVelZ,
];

/// The columns of an archetype's table, in hash order.
#[must_use]
pub fn archetype_columns(a: crate::Archetype) -> &'static [ColumnId] {
    match a {
        crate::Archetype::Prop | crate::Archetype::Avatar => &BODY,
        crate::Archetype::Npc => &NPC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_table_is_indexed_by_id() {
        for (i, d) in COLUMNS.iter().enumerate() {
            assert_eq!(d.id as usize, i, "{}", d.name);
            assert_eq!(ColumnId::from_name(d.name), Some(d.id));
        }
    }
}
