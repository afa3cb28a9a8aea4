//! `bench serve`'s measure of what clients see go backwards: an entity
//! whose value in a client's view is from an older tick of the world than
//! the value it held before (a snapshot is a delta against the last acked
//! view, so an entity sent in a snapshot the client has not acked yet is
//! back at its acked value in the next snapshot unless that one sends it
//! again). Tracked on the first few clients against a history of the
//! world's quantized frames; not timed (client side).

use net::quant::QEntity;
use std::collections::{BTreeMap, VecDeque};

/// Clients tracked (each costs a search of the history per changed entity).
pub const TRACKED: usize = 8;
/// World frames kept: older values than this are "older than the history".
const FRAMES: usize = 80;

#[derive(Debug, Default)]
pub struct Reverts {
    /// (tick, the world's quantized frame), oldest first.
    history: VecDeque<(u64, Vec<QEntity>)>,
    /// Per tracked client: the tick of each held value, and its last view.
    held: Vec<(BTreeMap<u64, u64>, Vec<QEntity>)>,
    /// Entity values that changed in a tracked client's view, and of them
    /// those that moved back in time, and by how many ticks in all (a
    /// value older than the history counts as just older than it).
    pub changed: u64,
    pub reverted: u64,
    pub reverted_ticks: u64,
    /// Tracked client-ticks.
    pub client_ticks: u64,
}

impl Reverts {
    #[must_use]
    pub fn new(clients: usize) -> Reverts {
        Reverts { held: (0..clients.min(TRACKED)).map(|_| (BTreeMap::new(), Vec::new())).collect(), ..Reverts::default() }
    }

    /// The world's frame of `tick` (call once per tick, before `observe`).
    pub fn frame(&mut self, tick: u64, world: &[QEntity]) {
        if self.history.len() == FRAMES {
            self.history.pop_front();
        }
        self.history.push_back((tick, world.to_vec()));
    }

    /// The newest tick whose frame holds exactly `e`; older than every
    /// frame kept: the tick before the oldest (so a revert's depth counts
    /// at most the history: "at least this far back").
    fn tick_of(&self, e: &QEntity) -> u64 {
        let oldest = self.history.front().map_or(0, |(t, _)| t.saturating_sub(1));
        self.history
            .iter()
            .rev()
            .find(|(_, f)| f.binary_search_by_key(&e.handle, |x| x.handle).is_ok_and(|i| f[i] == *e))
            .map_or(oldest, |(t, _)| *t)
    }

    /// Tracked client `k`'s view after this tick's snapshot.
    pub fn observe(&mut self, k: usize, view: &[QEntity]) {
        if k >= self.held.len() {
            return;
        }
        self.client_ticks += 1;
        let (mut held, prev) = std::mem::take(&mut self.held[k]);
        for e in view {
            let same = prev.binary_search_by_key(&e.handle, |x| x.handle).is_ok_and(|i| prev[i] == *e);
            if same {
                continue;
            }
            let t = self.tick_of(e);
            if let Some(&before) = held.get(&e.handle) {
                self.changed += 1;
                if t < before {
                    self.reverted += 1;
                    self.reverted_ticks += before - t;
                }
            }
            held.insert(e.handle, t);
        }
        held.retain(|h, _| view.binary_search_by_key(h, |x| x.handle).is_ok());
        self.held[k] = (held, view.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(handle: u64, x: i32) -> QEntity {
        QEntity { handle, archetype: 0, shape: 0, pos: [x, 0, 0], rot: 0, vel: [0; 3] }
    }

    #[test]
    fn a_value_from_an_older_tick_is_a_revert() {
        let mut r = Reverts::new(1);
        for t in 1..=5 {
            r.frame(t, &[e(1, t as i32), e(2, 0)]);
        }
        r.observe(0, &[e(1, 1), e(2, 0)]);
        r.observe(0, &[e(1, 4), e(2, 0)]);
        assert_eq!((r.changed, r.reverted), (1, 0), "forward in time");
        r.observe(0, &[e(1, 2), e(2, 0)]);
        assert_eq!((r.changed, r.reverted, r.reverted_ticks), (2, 1, 2), "back from tick 4 to 2");
        r.observe(0, &[e(1, 5), e(2, 0)]);
        assert_eq!((r.changed, r.reverted), (3, 1));
    }
}
