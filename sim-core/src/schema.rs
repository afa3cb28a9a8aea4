//! Column schema helpers over the IDL-generated `ColumnId` and `COLUMNS`.
//!
//! The order of `ColumnId` is the order columns are hashed in, so it is part
//! of the determinism contract: the IDL appends columns, never reorders.

pub use crate::ports::{ColumnDesc, ColumnId, ColumnType, Quant, ARCHETYPE_COLUMNS, COLUMNS};

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

/// The physics-synced columns, in the order the sync writes them.
pub const PHYSICS_COLUMNS: [ColumnId; 13] = [
    C::PosX,
    C::PosY,
    C::PosZ,
    C::RotX,
    C::RotY,
    C::RotZ,
    C::RotW,
    C::LinvelX,
    C::LinvelY,
    C::LinvelZ,
    C::AngvelX,
    C::AngvelY,
    C::AngvelZ,
];

/// The columns of an archetype's table, in hash order.
#[must_use]
pub fn archetype_columns(a: crate::Archetype) -> &'static [ColumnId] {
    ARCHETYPE_COLUMNS[a as usize]
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

    #[test]
    fn every_archetype_has_the_physics_columns() {
        for cols in ARCHETYPE_COLUMNS {
            assert_eq!(cols[0], ColumnId::Handle);
            for p in PHYSICS_COLUMNS {
                assert!(cols.contains(&p));
            }
        }
    }
}
