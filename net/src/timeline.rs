//! The client's input timeline: which server tick a command sampled now
//! should be stamped for, so it arrives a little before that tick runs.
//!
//! Overwatch's scheme: the client runs ahead of the server by about half
//! the round trip plus a small buffer, and the server says, in every
//! player block, how many ticks early (or late) the client's newest
//! command arrived. The clock nudges its offset toward a target lead with
//! a small gain on a smoothed lead, so jitter does not make it jump and
//! the round-trip delay of the feedback does not make it oscillate.
//! Sans-IO: fed milliseconds on any monotonic clock.

/// Ticks of buffer the clock aims for on a steady link; jitter adds more
/// (see [`TickClock::target_lead`]).
pub const TARGET_LEAD: f64 = 3.0;
/// Most ticks of buffer the clock will add for jitter.
const MAX_TARGET_LEAD: f64 = 8.0;
/// Smoothing of the reported lead (weight of a new report).
const LEAD_WEIGHT: f64 = 0.2;
/// Fraction of the smoothed lead error corrected per report.
const GAIN: f64 = 0.02;
/// Reports to wait after a jump before another (about a round trip at
/// 60 Hz and 200 ms).
const JUMP_HOLDOFF: u32 = 12;

#[derive(Clone, Debug)]
pub struct TickClock {
    rate: f64,
    /// Command tick = now_s * rate + offset (set by the first snapshot).
    offset: Option<f64>,
    lead: f64,
    /// Smoothed squared deviation of reported leads (their jitter).
    lead_var: f64,
    reports: u64,
    /// Reports since the clock last jumped (a jump's effect takes a round
    /// trip to show in the reports).
    since_jump: u32,
}

impl TickClock {
    #[must_use]
    pub fn new(tick_rate: u32) -> TickClock {
        TickClock { rate: f64::from(tick_rate.max(1)), offset: None, lead: TARGET_LEAD, lead_var: 0.0, reports: 0, since_jump: u32::MAX }
    }

    /// A snapshot of `server_tick` arrived at `now_ms`, with the current
    /// round-trip estimate: the first one sets the clock (server tick now
    /// ~ snapshot tick + half a round trip; commands go one more half
    /// round trip plus the buffer ahead).
    pub fn on_snapshot(&mut self, now_ms: u64, server_tick: u64, rtt_ms: f64) {
        if self.offset.is_none() {
            let now_s = now_ms as f64 / 1000.0;
            let ahead = rtt_ms.max(0.0) / 1000.0 * self.rate + TARGET_LEAD;
            self.offset = Some(server_tick as f64 + ahead - now_s * self.rate);
        }
    }

    /// The server reported how many ticks early the newest command arrived.
    pub fn on_lead(&mut self, lead: i8) {
        if self.offset.is_none() || lead == crate::command::NO_LEAD {
            return;
        }
        self.reports += 1;
        self.since_jump = self.since_jump.saturating_add(1);
        // Well late (a bad first estimate, a route change): jump forward by
        // the deficit at once instead of losing commands while the gentle
        // correction catches up; then wait for the jump to show.
        if f64::from(lead) < -1.0 && self.since_jump > JUMP_HOLDOFF {
            let jump = self.target_lead() - f64::from(lead);
            if let Some(off) = self.offset.as_mut() {
                *off += jump;
            }
            self.lead = self.target_lead();
            self.since_jump = 0;
            return;
        }
        let dev = f64::from(lead) - self.lead;
        self.lead += LEAD_WEIGHT * dev;
        self.lead_var += 0.05 * (dev * dev - self.lead_var);
        let target = self.target_lead();
        // A command that arrived late needs a faster correction than one
        // that arrived a little early.
        let err = self.lead - target;
        let gain = if lead < 0 { 4.0 * GAIN } else { GAIN };
        if let Some(off) = self.offset.as_mut() {
            *off -= gain * err;
        }
    }

    /// The tick a command sampled at `now_ms` is for (None before the first
    /// snapshot).
    #[must_use]
    pub fn command_tick(&self, now_ms: u64) -> Option<u64> {
        let t = now_ms as f64 / 1000.0 * self.rate + self.offset?;
        (t >= 0.0).then_some(t as u64)
    }

    /// The lead the clock aims for now: the base buffer plus twice the
    /// reported leads' jitter (a lost datagram's commands arrive a tick
    /// later with the next one).
    #[must_use]
    pub fn target_lead(&self) -> f64 {
        (TARGET_LEAD + 2.0 * self.lead_var.sqrt()).min(MAX_TARGET_LEAD)
    }

    /// The smoothed lead the server reports.
    #[must_use]
    pub fn smoothed_lead(&self) -> f64 {
        self.lead
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim_core::rng::WorldRng;

    /// A 60 Hz server, 50 ms +- `jitter` ms each way, a command per client
    /// tick: after settling, commands arrive early, by about the target,
    /// and the command tick never steps back or leaps.
    fn run(jitter: f32, start_skew_ms: f64) -> (Vec<i64>, Vec<u64>) {
        let mut rng = WorldRng::from_seed(7);
        let mut clock = TickClock::new(60);
        let server_tick = |ms: f64| (ms / (1000.0 / 60.0)).floor() as u64;
        let mut in_flight: Vec<(f64, u64)> = Vec::new(); // (arrival ms at the server, command tick)
        let mut reports: Vec<(f64, i8)> = Vec::new(); // (arrival ms at the client, lead)
        let (mut leads, mut ticks) = (Vec::new(), Vec::new());
        let mut last_sent = 0u64;
        for step in 0..1200u64 {
            let now = step as f64 * (1000.0 / 60.0) + 3.0;
            let one_way = |rng: &mut WorldRng| 50.0 + f64::from(rng.range_f32(-jitter, jitter));
            // Snapshots: the server's tick as of one way ago (+ skew on the first).
            let seen = server_tick((now - one_way(&mut rng) + start_skew_ms).max(0.0));
            clock.on_snapshot(now as u64, seen, 100.0);
            for (_, lead) in reports.iter().filter(|(at, _)| *at <= now) {
                clock.on_lead(*lead);
            }
            reports.retain(|(at, _)| *at > now);
            if let Some(t) = clock.command_tick(now as u64) {
                ticks.push(t);
                if t > last_sent {
                    last_sent = t;
                    in_flight.push((now + one_way(&mut rng), t));
                }
            }
            // The server takes what arrived and reports the lead of the newest.
            let arrived: Vec<(f64, u64)> = in_flight.iter().filter(|(at, _)| *at <= now).copied().collect();
            in_flight.retain(|(at, _)| *at > now);
            if let Some(&(at, t)) = arrived.last() {
                let lead = t as i64 - (server_tick(at) as i64 + 1);
                leads.push(lead);
                reports.push((now + one_way(&mut rng), lead.clamp(-128, 127) as i8));
            }
        }
        (leads, ticks)
    }

    #[test]
    fn converges_under_jitter_and_does_not_oscillate() {
        for (jitter, skew) in [(0.0, 0.0), (10.0, 0.0), (10.0, 200.0), (20.0, -150.0)] {
            let (leads, ticks) = run(jitter, skew);
            let settled = &leads[leads.len() / 2..];
            let late = settled.iter().filter(|l| **l < 0).count();
            assert!(late * 100 <= settled.len(), "jitter {jitter} skew {skew}: {late} of {} late", settled.len());
            let mean = settled.iter().sum::<i64>() as f64 / settled.len() as f64;
            assert!((1.0..=5.5).contains(&mean), "jitter {jitter} skew {skew}: mean lead {mean}");
            for w in ticks.windows(2) {
                assert!(w[1] >= w[0] && w[1] <= w[0] + 3, "command tick stepped back or leapt: {} -> {}", w[0], w[1]);
            }
            // No oscillation: once settled, the lead's spread stays small.
            let var = settled.iter().map(|l| (*l as f64 - mean).powi(2)).sum::<f64>() / settled.len() as f64;
            assert!(var.sqrt() < 1.5, "jitter {jitter}: lead stddev {}", var.sqrt());
        }
    }
}

/// How far behind the newest snapshot a client should render others: one
/// snapshot interval (the server may send every 2nd or 3rd tick to a client
/// on a slow link) plus a half, and a buffer that grows with the measured
/// jitter of snapshot arrivals (and shrinks again when the link calms), so
/// interpolation rarely runs dry.
#[derive(Clone, Debug)]
pub struct InterpDelay {
    rate: f64,
    /// Smoothed offset of arrival time minus tick time, ms.
    offset: Option<f64>,
    /// Smoothed absolute deviation from it, ms.
    jitter_ms: f64,
    /// The newest snapshot tick seen.
    newest: Option<u64>,
    /// The last [`INTERVALS`] steps between newest ticks (the first
    /// `filled` of them while fewer have been seen).
    intervals: [u64; INTERVALS],
    next: usize,
    filled: usize,
}

/// The least delay, in snapshot intervals' worth of ticks: one interval of
/// slack plus a half tick.
pub const MIN_INTERP_TICKS: f64 = 1.5;
/// The most delay, in ticks.
pub const MAX_INTERP_TICKS: f64 = 12.0;
/// Steps between snapshot ticks the interval is the median of: a lost
/// snapshot (one long step) does not move it, a slower send rate (every
/// step long) does within five.
pub const INTERVALS: usize = 9;

impl InterpDelay {
    #[must_use]
    pub fn new(tick_rate: u32) -> InterpDelay {
        InterpDelay { rate: f64::from(tick_rate.max(1)), offset: None, jitter_ms: 0.0, newest: None, intervals: [0; INTERVALS], next: 0, filled: 0 }
    }

    /// Ticks between snapshots: the median of the recent steps between
    /// newest ticks (1 until any are seen).
    #[must_use]
    pub fn interval(&self) -> u64 {
        let mut v = self.intervals;
        let seen = &mut v[..self.filled];
        seen.sort_unstable();
        seen.get(seen.len() / 2).copied().unwrap_or(1).max(1)
    }

    /// A snapshot of `tick` arrived at `now_ms`.
    pub fn on_snapshot(&mut self, now_ms: u64, tick: u64) {
        if self.newest.is_none_or(|n| tick > n) {
            if let Some(n) = self.newest {
                // Capped: a long outage is not a send rate.
                self.intervals[self.next] = (tick - n).min(MAX_INTERP_TICKS as u64);
                self.next = (self.next + 1) % INTERVALS;
                self.filled = (self.filled + 1).min(INTERVALS);
            }
            self.newest = Some(tick);
        }
        let off = now_ms as f64 - tick as f64 * 1000.0 / self.rate;
        match self.offset.as_mut() {
            None => self.offset = Some(off),
            Some(o) => {
                let dev = off - *o;
                // The offset follows slowly (clock drift), the jitter quickly
                // upward and slowly downward.
                *o += 0.02 * dev;
                let w = if dev.abs() > self.jitter_ms { 0.25 } else { 0.02 };
                self.jitter_ms += w * (dev.abs() - self.jitter_ms);
            }
        }
    }

    /// The delay to render others at, in ticks.
    #[must_use]
    pub fn ticks(&self) -> f64 {
        (self.interval() as f64 - 1.0 + MIN_INTERP_TICKS + 2.0 * self.jitter_ms * self.rate / 1000.0).min(MAX_INTERP_TICKS)
    }

    /// The fractional tick to render others at now.
    #[must_use]
    pub fn render_tick(&self, now_ms: u64) -> Option<f64> {
        let o = self.offset?;
        Some((now_ms as f64 - o) * self.rate / 1000.0 - self.ticks())
    }
}

#[cfg(test)]
mod interp_tests {
    use super::*;
    use sim_core::rng::WorldRng;

    fn settle(jitter_ms: f32) -> InterpDelay {
        let mut d = InterpDelay::new(60);
        let mut rng = WorldRng::from_seed(3);
        for tick in 0..600u64 {
            let at = tick as f64 * 1000.0 / 60.0 + 50.0 + f64::from(rng.range_f32(-jitter_ms, jitter_ms));
            d.on_snapshot(at.max(0.0) as u64, tick);
        }
        d
    }

    #[test]
    fn the_delay_grows_with_jitter_and_shrinks_when_it_calms() {
        let calm = settle(0.0);
        assert!(calm.ticks() < 2.0, "{}", calm.ticks());
        let rough = settle(30.0);
        assert!(rough.ticks() > 3.0 && rough.ticks() <= MAX_INTERP_TICKS, "{}", rough.ticks());
        // Rendered about `ticks()` behind the newest tick.
        let now = (600.0 * 1000.0 / 60.0 + 50.0) as u64;
        let r = calm.render_tick(now).expect("set");
        assert!((600.0 - r - calm.ticks()).abs() < 1.0, "{r}");
        let mut d = rough;
        for tick in 600..2400u64 {
            d.on_snapshot((tick as f64 * 1000.0 / 60.0 + 50.0) as u64, tick);
        }
        assert!(d.ticks() < 2.5, "calmed: {}", d.ticks());
    }

    /// At a reduced send rate the delay covers the gap between snapshots,
    /// so the render tick stays behind the newest snapshot; lost snapshots
    /// here and there do not move it; back at every tick it shrinks.
    #[test]
    fn the_delay_covers_the_send_interval() {
        let mut d = InterpDelay::new(60);
        let at = |tick: u64| (tick as f64 * 1000.0 / 60.0 + 40.0) as u64;
        let mut rng = WorldRng::from_seed(5);
        for tick in 0..600u64 {
            // Every tick, with one in ten lost.
            if rng.range_f32(0.0, 1.0) >= 0.1 {
                d.on_snapshot(at(tick), tick);
            }
        }
        assert_eq!(d.interval(), 1, "loss is not a rate");
        assert!(d.ticks() < 2.0, "{}", d.ticks());
        for tick in (600..1200u64).step_by(3) {
            d.on_snapshot(at(tick), tick);
            let newest = tick;
            if tick > 650 {
                // Just before the next snapshot arrives: still behind this one.
                let r = d.render_tick(at(tick + 3) - 1).expect("set");
                assert!(r <= newest as f64, "render tick {r} past the newest snapshot {newest}");
            }
        }
        assert_eq!(d.interval(), 3);
        assert!(d.ticks() >= 3.5, "{}", d.ticks());
        for tick in 1200..1300u64 {
            d.on_snapshot(at(tick), tick);
        }
        assert_eq!(d.interval(), 1);
        assert!(d.ticks() < 2.0, "{}", d.ticks());
        // From the second snapshot of a client sent every third tick.
        let mut d = InterpDelay::new(60);
        for tick in [3u64, 6] {
            d.on_snapshot(at(tick), tick);
        }
        assert_eq!(d.interval(), 3, "from the first step");
    }
}
