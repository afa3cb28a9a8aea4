//! The per-client priority accumulator of the snapshot codec
//! ([`crate::delta`]): what a full byte budget sends first.

use crate::quant::QEntity;

/// Per-client priority accumulator: entities that differ from the client's
/// baseline gain priority every snapshot until sent, so every change is
/// eventually sent and the most important first. Slots are indexed by the
/// handle's index bits (dense, reused by the world) and tagged with its
/// generation and world bits, so a reused index starts from zero: no
/// hashing, and stale slots need no sweep (8 bytes per index).
#[derive(Debug, Default, Clone)]
pub struct Priorities {
    /// (the handle's upper 32 bits: generation and world, accumulated).
    acc: Vec<(u32, u32)>,
}

impl Priorities {
    pub(crate) fn bump(&mut self, handle: u64, by: u32) -> u32 {
        let (i, tag) = (handle as u32 as usize, (handle >> 32) as u32);
        if i >= self.acc.len() {
            self.acc.resize(i + 1, (0, 0));
        }
        let slot = &mut self.acc[i];
        if slot.0 != tag {
            *slot = (tag, 0);
        }
        slot.1 = slot.1.saturating_add(by);
        slot.1
    }

    pub(crate) fn reset(&mut self, handle: u64) {
        if let Some(slot) = self.acc.get_mut(handle as u32 as usize)
            && slot.0 == (handle >> 32) as u32 {
                slot.1 = 0;
            }
    }

    /// Frees memory when the world shrank a lot (slots past twice its
    /// highest handle index are dropped).
    pub fn retain(&mut self, view: &[QEntity]) {
        if self.acc.len() <= 2 * view.len() + 64 {
            return;
        }
        let max = view.iter().map(|e| e.handle as u32 as usize + 1).max().unwrap_or(0);
        if self.acc.len() > 2 * max + 64 {
            self.acc.truncate(max);
            self.acc.shrink_to_fit();
        }
    }
}

/// Weight per snapshot for an entity that differs from the baseline.
pub(crate) fn weight(e: &QEntity, is_new: bool) -> u32 {
    let base = if is_new { 64 } else { 8 };
    // Avatars and NPCs (archetypes 1, 2) are what players look at.
    if e.archetype == 0 { base } else { base * 4 }
}
