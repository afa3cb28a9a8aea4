//! The client's side of a session, sans-IO: the replicated world (baseline
//! ring, hash check), the player's commands and player blocks, acks with
//! redundant inputs, and interpolation of others for rendering.

use crate::command::{InputDatagram, PlayerBlock};
use crate::delta;
use crate::proto::Ack;
use crate::quant::{QEntity, QView};
use crate::session::RING;
use std::collections::VecDeque;

/// Applied views interpolation reads (the newest of the ring).
const HISTORY: usize = 8;

/// Client-side statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub snapshots_received: u64,
    pub snapshots_applied: u64,
    pub bytes_received: u64,
    pub hash_failures: u32,
    pub missing_baseline: u64,
    pub stale_or_duplicate: u64,
    /// Snapshots that arrived newer than any seen before (what acks
    /// report as `received`, wrapping at 2^32).
    pub fresh: u64,
    pub malformed: u64,
    /// Snapshot sequence numbers never seen (gaps), an estimate of loss.
    pub lost: u64,
    pub resyncs: u64,
}

/// The client's side: the replicated world, the baseline ring, inputs.
#[derive(Debug, Default)]
pub struct ClientSession {
    /// (seq, tick, view, its hash): the views a snapshot may name as its
    /// baseline.
    ring: VecDeque<(u32, u64, QView, u64)>,
    /// A view buffer to decode the next snapshot into.
    spare: QView,
    latest: Option<u32>,
    highest_seen: Option<u32>,
    inputs: VecDeque<(Vec<u8>, u8)>,
    /// A player's commands not yet known to be applied (oldest first).
    commands: VecDeque<crate::command::Command>,
    /// The player block of the latest applied snapshot, with its tick.
    player: Option<(u64, PlayerBlock)>,
    ack_due: bool,
    pub stats: ClientStats,
    tick_rate: Option<u32>,
}

/// Most ticks `ClientSession::interpolate` extrapolates past the newest
/// snapshot (100 ms at 60 Hz); beyond it, entities hold still.
pub const MAX_EXTRAPOLATION_TICKS: f64 = 6.0;

/// Spherical interpolation of unit quaternions (the shorter way round).
#[must_use]
pub fn slerp(a: [f32; 4], b: [f32; 4], t: f32) -> [f32; 4] {
    let mut d = a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3];
    let b = if d < 0.0 {
        d = -d;
        [-b[0], -b[1], -b[2], -b[3]]
    } else {
        b
    };
    let (wa, wb) = if d > 0.9995 {
        (1.0 - t, t)
    } else {
        let th = d.clamp(-1.0, 1.0).acos();
        let s = th.sin();
        (((1.0 - t) * th).sin() / s, (t * th).sin() / s)
    };
    let q = [wa * a[0] + wb * b[0], wa * a[1] + wb * b[1], wa * a[2] + wb * b[2], wa * a[3] + wb * b[3]];
    let n = (q.iter().map(|x| x * x).sum::<f32>()).sqrt().max(1e-12);
    q.map(|x| x / n)
}

/// The replicated world as SoA columns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicatedColumns {
    pub tick: u64,
    pub handle: Vec<u64>,
    pub archetype: Vec<u8>,
    pub shape: Vec<u32>,
    pub pos_x: Vec<f32>,
    pub pos_y: Vec<f32>,
    pub pos_z: Vec<f32>,
    pub rot: Vec<[f32; 4]>,
}

/// How many times each input is repeated on ack datagrams.
pub const INPUT_REDUNDANCY: u8 = 4;

impl ClientSession {
    #[must_use]
    pub fn new() -> ClientSession {
        ClientSession::default()
    }

    /// Handles a snapshot datagram (type 1, or a player block in front of
    /// one: type 5). Returns the player block and tick when a player's
    /// snapshot was applied.
    pub fn on_datagram(&mut self, bytes: &[u8]) -> Option<(u64, PlayerBlock)> {
        self.stats.bytes_received += bytes.len() as u64;
        if bytes.first() == Some(&crate::command::PLAYER_BLOCK_TYPE) {
            let Ok((block, rest)) = PlayerBlock::unwrap(bytes) else {
                self.stats.snapshots_received += 1;
                self.stats.malformed += 1;
                return None;
            };
            let tick = self.on_snapshot(rest)?;
            self.commands.retain(|c| (c.sequence.wrapping_sub(block.last_command) as i32) > 0);
            self.player = Some((tick, block));
            return Some((tick, block));
        }
        self.on_snapshot(bytes);
        None
    }

    /// Applies a snapshot; returns its tick if it was applied.
    fn on_snapshot(&mut self, bytes: &[u8]) -> Option<u64> {
        self.stats.snapshots_received += 1;
        let Ok(h) = delta::read_header(bytes) else {
            self.stats.malformed += 1;
            return None;
        };
        if self.highest_seen.is_none_or(|hs| (h.seq.wrapping_sub(hs) as i32) > 0) {
            self.stats.lost += self.highest_seen.map_or(0, |hs| u64::from(h.seq.wrapping_sub(hs) - 1));
            self.highest_seen = Some(h.seq);
            self.stats.fresh += 1;
        }
        if self.latest.is_some_and(|l| (h.seq.wrapping_sub(l) as i32) <= 0) {
            self.stats.stale_or_duplicate += 1;
            return None;
        }
        let empty = Vec::new();
        let (base, base_hash) = match h.baseline {
            None => {
                self.stats.resyncs += 1;
                (&empty, 0)
            }
            Some(b) => match self.ring.iter().find(|(s, _, _, _)| *s == b) {
                Some((_, _, v, hash)) => (v, *hash),
                None => {
                    self.stats.missing_baseline += 1;
                    return None;
                }
            },
        };
        // The view hash, kept current from what this snapshot changed (the
        // baseline's was checked when it was applied).
        // The view buffer the ring last let go of (no allocation once warm).
        let mut view = std::mem::take(&mut self.spare);
        let Ok((h, hash)) = delta::decode_hashed_into(bytes, base, base_hash, &mut view) else {
            self.spare = view;
            self.stats.malformed += 1;
            return None;
        };
        if hash != h.hash {
            self.spare = view;
            self.stats.hash_failures += 1;
            self.ack_due = true;
            return None;
        }
        self.stats.snapshots_applied += 1;
        if self.ring.len() == RING
            && let Some((_, _, old, _)) = self.ring.pop_front()
        {
            self.spare = old;
        }
        self.ring.push_back((h.seq, h.tick, view, hash));
        self.latest = Some(h.seq);
        self.ack_due = true;
        Some(h.tick)
    }

    /// Queues an input plan; it rides on the next few ack datagrams.
    pub fn submit(&mut self, plan: Vec<u8>) {
        if self.inputs.len() == crate::proto::MAX_INPUTS_PER_DATAGRAM {
            self.inputs.pop_front();
        }
        self.inputs.push_back((plan, INPUT_REDUNDANCY));
        self.ack_due = true;
    }

    /// Queues a player's command; it rides on every input datagram until a
    /// player block says the world applied it (or a later one).
    pub fn command(&mut self, c: crate::command::Command) {
        if self.commands.len() == 4 * crate::command::MAX_COMMANDS {
            self.commands.pop_front();
        }
        self.commands.push_back(c);
        self.ack_due = true;
    }

    /// The latest player block and the tick of its state.
    #[must_use]
    pub fn player(&self) -> Option<(u64, PlayerBlock)> {
        self.player
    }

    /// The next datagram to the server, if one is due: a player's input
    /// datagram (ack + its newest unapplied commands) once it has sent a
    /// command, else an ack with redundant plans.
    pub fn poll_ack(&mut self) -> Option<Vec<u8>> {
        if !self.ack_due {
            return None;
        }
        self.ack_due = false;
        if !self.commands.is_empty() {
            let n = self.commands.len();
            let commands = self.commands.iter().skip(n.saturating_sub(crate::command::MAX_COMMANDS)).copied().collect();
            return Some(InputDatagram { ack: self.latest, hash_failures: self.stats.hash_failures, received: self.stats.fresh as u32, commands }.encode());
        }
        let inputs: Vec<Vec<u8>> = self.inputs.iter().map(|(p, _)| p.clone()).collect();
        for i in &mut self.inputs {
            i.1 -= 1;
        }
        self.inputs.retain(|i| i.1 > 0);
        Some(Ack { latest: self.latest, hash_failures: self.stats.hash_failures, received: self.stats.fresh as u32, inputs }.encode())
    }

    /// The latest replicated view (sorted by handle) and its tick.
    #[must_use]
    pub fn view(&self) -> Option<(u64, &[QEntity])> {
        self.ring.back().map(|(_, t, v, _)| (*t, v.as_slice()))
    }

    /// The latest view as SoA columns (handles, positions in metres,
    /// rotations as unit quaternions), for renderers and policies.
    #[must_use]
    pub fn columns(&self) -> Option<ReplicatedColumns> {
        let (tick, v) = self.view()?;
        let mut c = ReplicatedColumns { tick, ..Default::default() };
        for e in v {
            let p = crate::quant::dequantize_pos(e.pos);
            let r = crate::quant::dequantize_rot(e.rot);
            c.handle.push(e.handle);
            c.archetype.push(e.archetype);
            c.shape.push(e.shape);
            c.pos_x.push(p[0]);
            c.pos_y.push(p[1]);
            c.pos_z.push(p[2]);
            c.rot.push(r);
        }
        Some(c)
    }

    /// Every entity at a fractional `tick`, as (handle, position in metres,
    /// unit rotation): between the two snapshots around it, positions
    /// lerped and rotations slerped; past the newest snapshot, positions
    /// extrapolated along the replicated velocity for at most
    /// [`MAX_EXTRAPOLATION_TICKS`]; before the oldest kept, the oldest.
    #[must_use]
    pub fn interpolate(&self, tick: f64) -> Vec<(u64, [f32; 3], [f32; 4])> {
        use crate::quant::{dequantize_pos, dequantize_rot, dequantize_vel};
        // The newest applied views (the ring holds them in applied order,
        // so ascending tick).
        let first = self.ring.len().saturating_sub(HISTORY);
        let history = |k: usize| -> (u64, &QView) {
            let (_, t, v, _) = &self.ring[first + k];
            (*t, v)
        };
        let n = self.ring.len() - first;
        if n == 0 {
            return Vec::new();
        }
        let idx = (0..n).position(|k| history(k).0 as f64 >= tick);
        let Some(idx) = idx else {
            // Past the newest: extrapolate.
            let (t1, v1) = history(n - 1);
            let dt_s = ((tick - t1 as f64).min(MAX_EXTRAPOLATION_TICKS) / self.tick_rate_hz()) as f32;
            return v1
                .iter()
                .map(|e| {
                    let (p, v) = (dequantize_pos(e.pos), dequantize_vel(e.vel));
                    (e.handle, [p[0] + v[0] * dt_s, p[1] + v[1] * dt_s, p[2] + v[2] * dt_s], dequantize_rot(e.rot))
                })
                .collect();
        };
        let (t1, v1) = history(idx);
        if idx == 0 || t1 as f64 <= tick {
            return v1.iter().map(|e| (e.handle, dequantize_pos(e.pos), dequantize_rot(e.rot))).collect();
        }
        let (t0, v0) = history(idx - 1);
        let a = ((tick - t0 as f64) / (t1 as f64 - t0 as f64)) as f32;
        v1.iter()
            .filter_map(|e| {
                let b = v0.binary_search_by_key(&e.handle, |x| x.handle).ok().map(|k| v0[k])?;
                let (x0, x1) = (dequantize_pos(b.pos), dequantize_pos(e.pos));
                let p = [x0[0] + (x1[0] - x0[0]) * a, x0[1] + (x1[1] - x0[1]) * a, x0[2] + (x1[2] - x0[2]) * a];
                Some((e.handle, p, slerp(dequantize_rot(b.rot), dequantize_rot(e.rot), a)))
            })
            .collect()
    }

    /// The tick rate snapshots come at (for extrapolation): as set by
    /// [`ClientSession::set_tick_rate`], 60 until then.
    fn tick_rate_hz(&self) -> f64 {
        self.tick_rate.map_or(60.0, f64::from)
    }

    /// Tells the session the server's tick rate (from the Welcome).
    pub fn set_tick_rate(&mut self, hz: u32) {
        self.tick_rate = Some(hz.max(1));
    }
}

#[cfg(test)]
mod interpolation_tests {
    use super::*;
    use crate::quant::{quantize_pos, quantize_rot, quantize_vel, QEntity};

    #[test]
    fn others_are_lerped_slerped_and_extrapolated_along_their_velocity() {
        let mut c = ClientSession::new();
        c.set_tick_rate(60);
        let half = std::f32::consts::FRAC_1_SQRT_2;
        let e = |x: f32, rot: [f32; 4], vx: f32| QEntity { handle: 1, archetype: 1, shape: 0, pos: quantize_pos([x, 1.0, 0.0]), rot: quantize_rot(rot), vel: quantize_vel([vx, 0.0, 0.0]) };
        c.ring.push_back((1, 10, vec![e(0.0, [0.0, 0.0, 0.0, 1.0], 6.0)], 0));
        c.ring.push_back((2, 12, vec![e(0.2, [0.0, half, 0.0, half], 6.0)], 0));
        let mid = c.interpolate(11.0);
        assert!((mid[0].1[0] - 0.1).abs() < 1e-3, "{mid:?}");
        // Halfway from identity to 90 degrees about y: 45 degrees.
        let q = mid[0].2;
        let want = [0.0, (std::f32::consts::PI / 8.0).sin(), 0.0, (std::f32::consts::PI / 8.0).cos()];
        assert!(q.iter().zip(want).all(|(a, b)| (a - b).abs() < 5e-3), "{q:?}");
        // Three ticks past the newest at 6 m/s: 0.3 m further; capped at 6 ticks.
        let ahead = c.interpolate(15.0);
        assert!((ahead[0].1[0] - 0.5).abs() < 1e-3, "{ahead:?}");
        let far = c.interpolate(100.0);
        assert!((far[0].1[0] - (0.2 + 6.0 * 6.0 / 60.0)).abs() < 1e-3, "{far:?}");
    }
}
