//! The per-client priority accumulator of the snapshot codec
//! ([`crate::delta`]): what a full byte budget sends first.

use crate::quant::QEntity;

/// Per-client priority accumulator: entities that differ from the client's
/// baseline gain priority every snapshot until a snapshot that sent them is
/// acked, so every change is eventually sent and the most important first.
/// Sending does not reset it, the ack does: a snapshot is a delta against
/// the last acked view, so an entity sent in a snapshot still in flight is
/// back at its acked value in the next one unless that one sends it again.
/// Reset on send, the next snapshots sent others instead and the snapshots
/// in flight took turns: `bench serve --clients 128 --ack-delay 6` counted
/// 314 entity values per client per tick (45% of those that changed) going
/// back in time in the client's view, 45+ ticks on average. Kept until the
/// ack, and ahead of every entity no snapshot in flight sent: 96 (13%), 8
/// ticks (about the round trip: a value sent after the acked snapshot goes
/// back to the acked one when the reset entity loses the next round). What
/// is left is the price of deltas against an acked view within a budget:
/// never resetting would starve the rest.
/// Slots are indexed by the handle's index bits (dense, reused by the world)
/// and tagged with its generation and world bits, so a reused index starts
/// from zero: no hashing, and stale slots need no sweep (12 bytes per index).
#[derive(Debug, Default, Clone)]
pub struct Priorities {
    /// (the handle's upper 32 bits: generation and world, accumulated, the
    /// first snapshot of the run of snapshots that sent it since its last
    /// ack; 0: none).
    acc: Vec<(u32, u32, u32)>,
    /// The baseline of the encode under way (`None`: a resync), and its
    /// sequence.
    base: Option<u32>,
    seq: u32,
}

impl Priorities {
    /// The baseline (acked snapshot) and sequence of the encode that
    /// follows: an entity whose run of sends began at or before the
    /// baseline starts again from zero at its next bump (the baseline holds
    /// a value it sent, not always the newest: one that fell out of a later
    /// snapshot still in flight goes back to it). So does one whose run
    /// began more than `MAX_BASELINE_AGE` snapshots ago: that snapshot can
    /// never be a baseline, and a client that never gets an ack through
    /// (every encode a resync) would otherwise get the same entities
    /// forever; it gets them in turns, as before acks gated the reset.
    pub(crate) fn set_base(&mut self, base: Option<u32>, seq: u32) {
        self.base = base;
        self.seq = seq;
    }

    /// Adds `by` to `handle`'s priority; returns the priority to sort on.
    pub(crate) fn bump(&mut self, handle: u64, by: u32) -> u32 {
        let (i, tag) = (handle as u32 as usize, (handle >> 32) as u32);
        if i >= self.acc.len() {
            self.acc.resize(i + 1, (0, 0, 0));
        }
        let slot = &mut self.acc[i];
        if slot.0 != tag {
            *slot = (tag, 0, 0);
        }
        if slot.2 != 0 && (self.base.is_some_and(|b| b.wrapping_sub(slot.2) as i32 >= 0) || self.seq.wrapping_sub(slot.2) > crate::delta::MAX_BASELINE_AGE) {
            slot.1 = 0;
            slot.2 = 0;
        }
        slot.1 = slot.1.saturating_add(by);
        // Sent by a snapshot in flight: ahead of every other (the top bit),
        // so a weightier entity's growing priority cannot push it out and
        // send the client's value back to its acked one.
        (u32::from(slot.2 != 0) << 31) | (slot.1 >> 1)
    }

    /// `handle` went out in snapshot `seq`: the first of a run is kept
    /// (sequence 0, once per 2^32 snapshots, marks nothing: the entity is
    /// marked again by the next snapshot that sends it).
    pub(crate) fn sent(&mut self, handle: u64, seq: u32) {
        if let Some(slot) = self.acc.get_mut(handle as u32 as usize)
            && slot.0 == (handle >> 32) as u32
            && slot.2 == 0
        {
            slot.2 = seq;
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
