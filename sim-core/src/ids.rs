//! Identifier newtypes with fixed byte encodings.
//!
//! Everything here is hashed, snapshotted and (later) sent over the wire, so
//! every type has an explicit little-endian encoding that does not depend on
//! `usize` width or host layout.

use std::fmt;

/// A simulation tick. Tick 0 is the state built from the scenario; stepping
/// produces tick 1, 2, ...
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[repr(transparent)]
pub struct Tick(pub u64);

impl Tick {
    pub const ZERO: Tick = Tick(0);

    #[must_use]
    pub fn next(self) -> Tick {
        Tick(self.0 + 1)
    }

    #[must_use]
    pub fn to_le_bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }
}

impl fmt::Display for Tick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who issued a plan or owns an entity. `SourceId::SERVER` (0) is the
/// authority itself: scenario-spawned entities belong to it and it may command
/// any entity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct SourceId(pub u32);

impl SourceId {
    pub const SERVER: SourceId = SourceId(0);
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A 64-bit generational entity handle.
///
/// Bit layout (fixed, little-endian on the wire):
/// `index` in bits 0..32, `generation` in bits 32..56, `world` in bits 56..64.
/// A handle is live only while its slot's generation matches; despawning
/// bumps the generation so stale handles are rejected.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Handle(u64);

impl Handle {
    pub const GENERATION_BITS: u32 = 24;
    pub const GENERATION_MASK: u32 = (1 << Self::GENERATION_BITS) - 1;
    /// Never refers to a live entity.
    pub const NONE: Handle = Handle(u64::MAX);

    #[must_use]
    pub fn new(index: u32, generation: u32, world: u8) -> Handle {
        let generation = u64::from(generation & Self::GENERATION_MASK);
        Handle(u64::from(index) | (generation << 32) | (u64::from(world) << 56))
    }

    #[must_use]
    pub const fn from_bits(bits: u64) -> Handle {
        Handle(bits)
    }

    #[must_use]
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    #[must_use]
    pub fn index(self) -> u32 {
        (self.0 & 0xFFFF_FFFF) as u32
    }

    #[must_use]
    pub fn generation(self) -> u32 {
        ((self.0 >> 32) as u32) & Self::GENERATION_MASK
    }

    #[must_use]
    pub fn world(self) -> u8 {
        (self.0 >> 56) as u8
    }

    #[must_use]
    pub fn to_le_bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }

    #[must_use]
    pub fn from_le_bytes(bytes: [u8; 8]) -> Handle {
        Handle(u64::from_le_bytes(bytes))
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({}v{}w{})", self.index(), self.generation(), self.world())
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}v{}", self.index(), self.generation())
    }
}

/// The archetypes of the world. Each has its own table; the discriminant is
/// the table's position and is part of hashes and snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Archetype {
    /// A dynamic physics prop (crate, ball, pill).
    Prop = 0,
    /// A kinematic NPC steered by move targets.
    Npc = 1,
    /// A dynamic body controlled by a connected player.
    Avatar = 2,
}

impl Archetype {
    pub const ALL: [Archetype; 3] = [Archetype::Prop, Archetype::Npc, Archetype::Avatar];
    pub const COUNT: usize = Self::ALL.len();

    #[must_use]
    pub fn from_u8(v: u8) -> Option<Archetype> {
        Self::ALL.get(usize::from(v)).copied()
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Archetype::Prop => "prop",
            Archetype::Npc => "npc",
            Archetype::Avatar => "avatar",
        }
    }

    /// Kinematic archetypes are moved by targets, not by forces.
    #[must_use]
    pub fn is_kinematic(self) -> bool {
        matches!(self, Archetype::Npc | Archetype::Avatar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_bits_roundtrip_and_layout() {
        let h = Handle::new(0xDEAD_BEEF, 0x12_3456, 7);
        assert_eq!(h.index(), 0xDEAD_BEEF);
        assert_eq!(h.generation(), 0x12_3456);
        assert_eq!(h.world(), 7);
        assert_eq!(h.to_bits(), 0x0712_3456_DEAD_BEEF);
        assert_eq!(h.to_le_bytes(), [0xEF, 0xBE, 0xAD, 0xDE, 0x56, 0x34, 0x12, 0x07]);
        assert_eq!(Handle::from_le_bytes(h.to_le_bytes()), h);
    }

    #[test]
    fn generation_wraps_within_its_bits() {
        let h = Handle::new(1, Handle::GENERATION_MASK + 1, 0);
        assert_eq!(h.generation(), 0);
    }
}
