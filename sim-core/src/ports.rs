//! Types generated from the port IDL (`ports/dualplane.ports.toml`) by
//! `build.rs`, and the small hand-written types they are built from.

/// Element type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    U64,
    U32,
    I32,
    F32,
}

/// Wire quantization of a column (used by replication).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quant {
    None,
    /// `round(value * scale)` as a signed integer of `bits` bits.
    Fixed { scale: f32, bits: u8 },
    /// Part of a smallest-three quaternion with `bits` per component.
    Smallest3 { bits: u8 },
}

/// Static description of one column.
#[derive(Clone, Copy, Debug)]
pub struct ColumnDesc {
    pub id: ColumnId,
    pub name: &'static str,
    pub ty: ColumnType,
    pub unit: &'static str,
    pub quant: Quant,
}

/// Element type of a microplan section field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    U32,
    U64,
    F32,
    F32x3,
    F32x4,
}

/// One field (array) of a microplan section.
#[derive(Clone, Copy, Debug)]
pub struct FieldDesc {
    pub name: &'static str,
    pub ty: FieldType,
    /// Bytes per element.
    pub size: u32,
}

/// An op's cost model, in units (1 unit ~ 1 us of tick time): `base`, plus
/// `per_m` per metre of a raycast's max distance, plus `per_m3` per cubic
/// metre of an overlap's box. See [`crate::cost`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpCost {
    pub base: u32,
    pub per_m: f64,
    pub per_m3: f64,
}

/// What one client role may send (the IDL's `[[roles]]`).
#[derive(Clone, Copy, Debug)]
pub struct RoleDesc {
    pub id: u8,
    pub name: &'static str,
    pub ops: &'static [OpKind],
    pub max_ops_per_plan: u32,
    /// Cost units the role's plans may spend per tick.
    pub budget_per_tick: u64,
}

include!(concat!(env!("OUT_DIR"), "/ports_gen.rs"));

/// The generated Python module (`policy-py/python/dualplane/_ports.py`).
pub const PYTHON_PORTS: &str = include_str!(concat!(env!("OUT_DIR"), "/_ports.py"));
/// The generated stubs (`policy-py/python/dualplane/_ports.pyi`).
pub const PYTHON_PORTS_PYI: &str = include_str!(concat!(env!("OUT_DIR"), "/_ports.pyi"));

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Archetype;

    #[test]
    fn archetypes_match_the_idl() {
        for (id, name, kinematic) in ARCHETYPES_IDL {
            let a = Archetype::from_u8(id).expect("archetype id");
            assert_eq!(a.name(), name);
            assert_eq!(a.is_kinematic(), kinematic);
        }
        assert_eq!(ARCHETYPES_IDL.len(), Archetype::COUNT);
    }

    #[test]
    fn op_kinds_roundtrip_and_fields_are_sized() {
        for k in OpKind::ALL {
            assert_eq!(OpKind::from_u16(k as u16), Some(k));
            for f in k.fields() {
                let expect = match f.ty {
                    FieldType::U32 | FieldType::F32 => 4,
                    FieldType::U64 => 8,
                    FieldType::F32x3 => 12,
                    FieldType::F32x4 => 16,
                };
                assert_eq!(f.size, expect, "{}.{}", k.name(), f.name);
            }
        }
        assert_eq!(OpKind::from_u16(0), None);
        assert_eq!(Status::from_u16(Status::ALL.len() as u16), None);
    }
}
