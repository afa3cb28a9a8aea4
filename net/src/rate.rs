//! Per-client send rate: a client whose link cannot carry a snapshot every
//! tick gets one every second or third tick instead (60 / 30 / 20 Hz at a
//! 60 Hz tick), so it receives fewer, whole snapshots rather than losing
//! most of them to a congested path (and queueing the rest behind them).
//!
//! Sans-IO, like the sessions: fed the snapshots sent, the client's own
//! count of snapshots it received fresh (every ack carries it: see
//! `net/PROTOCOL.md`) and round trips (a snapshot's send to its ack), on
//! the caller's clock. Each window of [`WINDOW_MS`] compares what the client
//! says it received with what was sent, and decides once:
//! - **slower** (every d ticks -> every d' ticks) when fewer arrived than
//!   the slower rate would deliver whole (received / sent < d / d': under
//!   half at 60 Hz, under two thirds at 30 Hz), or when even the window's
//!   shortest round trip is [`QUEUE_MS`] over the link's base (the least
//!   of the last [`BASE_WINDOWS`] windows' shortest): a standing queue
//!   (bufferbloat), which a link that drops what overflows it shows before
//!   it loses half;
//! - **held** when the client's count stood still for over [`OUTAGE_MS`]
//!   in the window (a blackout, a dark downlink or a paused client says
//!   nothing about what the link carries);
//! - **faster** after `patience` windows in a row in which at least three
//!   quarters arrived (over the faster rate's slow-down bound with a
//!   margin, so random loss alone never keeps a client slow) and no
//!   standing queue formed (the shortest round trip within half of
//!   [`QUEUE_MS`] of the base). `patience` starts at [`GOOD_WINDOWS`] and
//!   doubles (up to [`MAX_PATIENCE`]) each time a speed-up is undone in
//!   its own window or the [`PROBE_WINDOWS`] after, so a link that carries
//!   only the slower rate is probed ever more rarely instead of every few
//!   seconds. A probe is undone at once, not at its window's end, by
//!   [`PROBE_STRIKES`] round trips in a row, of snapshots sent since it
//!   began, each [`QUEUE_MS`] over the base.
//!
//! Random loss keeps the rate: at 20% loss each way ~80% arrive, and a
//! slower rate would deliver fewer, not more. Version 2 of the protocol
//! had no received count and this controller read the server's ack ratio,
//! which reordering, lost acks and several snapshots between two acks all
//! pull down: it slowed clients behind 20% loss + 5% reorder to 29.5
//! snapshots/s (47 without it) and so was opt-in. Clients size their render
//! delay (`net::timeline::InterpDelay`) from the interval between snapshot
//! ticks and the arrival jitter, so at 30 or 20 Hz they still interpolate
//! between two snapshots they hold.

/// Ticks between snapshots at each level.
pub const DIVISORS: [u64; 3] = [1, 2, 3];
/// One decision per this many milliseconds.
pub const WINDOW_MS: u64 = 1000;
/// Clean windows in a row before the rate goes back up (at first).
pub const GOOD_WINDOWS: u32 = 3;
/// The most clean windows a speed-up may wait for.
pub const MAX_PATIENCE: u32 = 48;
/// A slow-down within this many windows after a speed-up's own undoes it.
pub const PROBE_WINDOWS: u32 = 3;
/// Queued round trips in a row that undo a probe at once.
pub const PROBE_STRIKES: u32 = 3;
/// A client silent this long within a window is in an outage.
pub const OUTAGE_MS: u64 = 300;
/// A window whose shortest round trip is this far over the base has a
/// standing queue on its path.
pub const QUEUE_MS: u64 = 60;
/// Windows whose shortest round trips the base is the least of.
pub const BASE_WINDOWS: usize = 30;

#[derive(Debug, Clone, Copy)]
struct Probe {
    level: usize,
    windows: u32,
    since_ms: u64,
    strikes: u32,
}

/// One client's send rate.
#[derive(Debug, Clone)]
pub struct SendRate {
    level: usize,
    /// Highest level allowed (0: always every tick).
    max_level: usize,
    window_start_ms: Option<u64>,
    /// Snapshots sent this window.
    sent: u64,
    /// The client's newest received count, and the one the window started
    /// from.
    received: Option<u32>,
    received_base: Option<u32>,
    /// When the client's count last moved, and its longest standstill
    /// this window.
    heard_ms: Option<u64>,
    silence_ms: u64,
    /// The shortest round trip this window, and of each of the last
    /// [`BASE_WINDOWS`] windows that had one.
    rtt_min_ms: Option<u64>,
    rtt_mins: std::collections::VecDeque<u64>,
    /// The tick of the last snapshot sent.
    last_sent_tick: Option<u64>,
    good: u32,
    /// Slow-downs and speed-ups [`SendRate::decide`] last reported.
    reported: (u64, u64),
    /// Clean windows a speed-up to each level waits for.
    patience: [u32; DIVISORS.len()],
    /// The level the last speed-up went to, windows since, when it began
    /// and its queued round trips in a row (None: none being probed).
    probing: Option<Probe>,
    /// Times the rate went down / up.
    pub slowdowns: u64,
    pub speedups: u64,
}

impl SendRate {
    /// A rate that may slow down to one snapshot every `max_divisor` ticks
    /// (1 turns adaptation off; values past the table are clamped).
    #[must_use]
    pub fn new(max_divisor: u64) -> SendRate {
        let max_level = DIVISORS.iter().rposition(|&d| d <= max_divisor.max(1)).unwrap_or(0);
        SendRate {
            level: 0,
            max_level,
            window_start_ms: None,
            sent: 0,
            received: None,
            received_base: None,
            heard_ms: None,
            silence_ms: 0,
            rtt_min_ms: None,
            rtt_mins: std::collections::VecDeque::with_capacity(BASE_WINDOWS),
            last_sent_tick: None,
            good: 0,
            reported: (0, 0),
            patience: [GOOD_WINDOWS; DIVISORS.len()],
            probing: None,
            slowdowns: 0,
            speedups: 0,
        }
    }

    /// Ticks between this client's snapshots now.
    #[must_use]
    pub fn divisor(&self) -> u64 {
        DIVISORS[self.level]
    }

    /// Whether this client gets a snapshot of `tick`: at least a divisor's
    /// worth of ticks since its last one. Counted from the last one sent,
    /// not by tick parity, so a replication that skips published ticks
    /// (behind the tick rate) never starves a client whose turns it skips.
    /// Clients slow down at the ends of their own windows (which start when
    /// each joined), which spreads them over the ticks.
    #[must_use]
    pub fn due(&self, tick: u64) -> bool {
        self.last_sent_tick.is_none_or(|l| tick.saturating_sub(l) >= self.divisor())
    }

    pub fn on_sent(&mut self, tick: u64) {
        self.sent += 1;
        self.last_sent_tick = Some(tick);
    }

    /// An ack arrived carrying the client's count of snapshots received
    /// fresh (wrapping). Acks arrive reordered and duplicated: the count
    /// only moves forward (by less than 2^31). Silence is the count
    /// standing still, whether acks stop or keep coming (a player acks
    /// every frame, snapshots or not).
    pub fn on_report(&mut self, now_ms: u64, received: u32) {
        if self.received.is_none_or(|r| (received.wrapping_sub(r) as i32) > 0) {
            if let Some(h) = self.heard_ms {
                self.silence_ms = self.silence_ms.max(now_ms.saturating_sub(h));
            }
            self.heard_ms = Some(now_ms.max(self.heard_ms.unwrap_or(0)));
            self.received = Some(received);
        }
    }

    /// A round trip measured: a snapshot sent at `sent_ms`, acked
    /// `rtt_ms` later. During a speed-up's first windows, [`PROBE_STRIKES`]
    /// in a row of snapshots sent since it began, each over the base by
    /// [`QUEUE_MS`], undo it at once: a queue is forming, and every further
    /// snapshot at the faster rate would lengthen it (a whole window of it
    /// at twice a link's rate leaves seconds of queue to drain).
    pub fn on_rtt(&mut self, sent_ms: u64, rtt_ms: u64) {
        self.rtt_min_ms = Some(self.rtt_min_ms.map_or(rtt_ms, |m| m.min(rtt_ms)));
        // Per ack: the base (a min over the windows) only while probing.
        if !self.probing.is_some_and(|p| p.level == self.level && sent_ms >= p.since_ms) {
            return;
        }
        let (Some(base), Some(p)) = (self.rtt_mins.iter().copied().min(), self.probing.as_mut()) else { return };
        p.strikes = if rtt_ms > base + QUEUE_MS { p.strikes + 1 } else { 0 };
        if p.strikes >= PROBE_STRIKES {
            self.slow_down();
        }
    }

    /// One level slower; a speed-up being probed failed, so the next one
    /// to that level waits twice as long.
    fn slow_down(&mut self) {
        self.level += 1;
        self.slowdowns += 1;
        self.good = 0;
        if let Some(p) = self.probing.take() {
            self.patience[p.level] = (self.patience[p.level] * 2).min(MAX_PATIENCE);
        }
    }

    /// The window's shortest round trip over the base, or None without one.
    fn queueing_ms(&mut self) -> Option<u64> {
        let now = self.rtt_min_ms.take()?;
        if self.rtt_mins.len() == BASE_WINDOWS {
            self.rtt_mins.pop_front();
        }
        self.rtt_mins.push_back(now);
        let base = self.rtt_mins.iter().copied().min().unwrap_or(now);
        Some(now - base)
    }

    /// Ends the window if it is over and moves the rate; returns the
    /// (slow-downs, speed-ups) since the last call (a probe undone in
    /// [`SendRate::on_rtt`] included).
    pub fn decide(&mut self, now_ms: u64) -> (u64, u64) {
        self.window(now_ms);
        let (down, up) = self.reported;
        self.reported = (self.slowdowns, self.speedups);
        (self.slowdowns - down, self.speedups - up)
    }

    fn window(&mut self, now_ms: u64) {
        let Some(start) = self.window_start_ms else {
            self.window_start_ms = Some(now_ms);
            self.received_base = self.received;
            return;
        };
        if now_ms.saturating_sub(start) < WINDOW_MS {
            return;
        }
        let silence = self.silence_ms.max(now_ms.saturating_sub(self.heard_ms.unwrap_or(start).max(start)));
        let received = match (self.received, self.received_base) {
            (Some(now), Some(base)) => u64::from(now.wrapping_sub(base)),
            (Some(now), None) => u64::from(now),
            _ => 0,
        };
        let queueing = self.queueing_ms();
        let sent = self.sent;
        self.window_start_ms = Some(now_ms);
        (self.sent, self.silence_ms) = (0, 0);
        self.received_base = self.received;
        if sent == 0 || self.max_level == 0 {
            return;
        }
        let next = DIVISORS.get(self.level + 1).copied();
        if let Some(p) = self.probing.as_mut() {
            p.windows += 1;
            if p.windows > PROBE_WINDOWS {
                // The last speed-up held: the link carries that rate.
                self.patience[p.level] = GOOD_WINDOWS;
                self.probing = None;
            }
        }
        if silence > OUTAGE_MS {
            // An outage (a blackout, a paused client) says nothing about
            // what the link carries: hold the rate.
            self.good = 0;
        } else if self.level < self.max_level && (next.is_some_and(|next| received * next < sent * self.divisor()) || queueing.is_some_and(|q| q > QUEUE_MS)) {
            // Fewer arrive than the slower rate would deliver whole, or
            // what is sent waits in a queue.
            self.slow_down();
        } else if received * 4 >= sent * 3 && queueing.is_none_or(|q| q <= QUEUE_MS / 2) {
            self.good += 1;
            if self.level > 0 && self.good >= self.patience[self.level - 1] {
                self.level -= 1;
                self.speedups += 1;
                self.good = 0;
                self.probing = Some(Probe { level: self.level, windows: 0, since_ms: now_ms, strikes: 0 });
            }
        } else {
            self.good = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client on a simulated link at 60 Hz: of every 10 due snapshots,
    /// `arrive_per_10` arrive (a fixed pattern, no RNG); the client reports
    /// its received count every tick unless `quiet`.
    struct Link {
        r: SendRate,
        tick: u64,
        sent: u64,
        received: u32,
        /// Round trip of each snapshot, by the divisor it was sent at.
        rtt: fn(u64) -> u64,
        /// When set, arrivals per 10 by the divisor a snapshot was sent at
        /// (overrides `run`'s).
        arrive: Option<fn(u64) -> u64>,
        /// Ticks spent at each divisor.
        ticks_at: [u64; 4],
    }

    impl Link {
        fn new(max_divisor: u64) -> Link {
            Link { r: SendRate::new(max_divisor), tick: 0, sent: 0, received: 0, rtt: |_| 40, arrive: None, ticks_at: [0; 4] }
        }

        fn run(&mut self, secs: u64, arrive_per_10: u64, quiet: bool) -> &mut Link {
            for _ in 0..60 * secs {
                let (tick, now) = (self.tick, self.tick * 1000 / 60);
                self.tick += 1;
                self.r.decide(now);
                self.ticks_at[self.r.divisor() as usize] += 1;
                if self.r.due(tick) {
                    self.r.on_sent(tick);
                    self.sent += 1;
                    if self.sent % 10 < self.arrive.map_or(arrive_per_10, |f| f(self.r.divisor())) {
                        self.received = self.received.wrapping_add(1);
                        self.r.on_rtt(now, (self.rtt)(self.r.divisor()));
                    }
                }
                if !quiet {
                    self.r.on_report(now, self.received);
                }
            }
            self
        }
    }

    #[test]
    fn a_congested_link_slows_to_the_bound_and_a_clean_one_speeds_back_up() {
        let mut l = Link::new(3);
        l.run(5, 10, false);
        assert_eq!((l.r.divisor(), l.r.slowdowns), (1, 0), "clean: every tick");
        l.run(5, 4, false);
        assert_eq!(l.r.divisor(), 3, "40% arrive: down to 20 Hz and no further");
        assert_eq!(l.r.slowdowns, 2);
        l.run(4, 10, false);
        assert_eq!(l.r.divisor(), 2, "three clean windows: one step back up");
        l.run(5, 10, false);
        assert_eq!((l.r.divisor(), l.r.speedups), (1, 2));
    }

    #[test]
    fn random_loss_keeps_the_rate_and_most_snapshots_lost_slows_it() {
        let mut l = Link::new(3);
        l.run(10, 6, false);
        assert_eq!(l.r.divisor(), 1, "60% arrive: a slower rate would deliver fewer");
        l.run(2, 4, false);
        assert!(l.r.divisor() > 1, "under half arrive: slower");
        // The congestion passes; 20% loss stays: back to every tick.
        l.run(12, 8, false);
        assert_eq!(l.r.divisor(), 1, "random loss alone never keeps a client slow");
    }

    #[test]
    fn an_outage_holds_the_rate_and_a_counter_that_wraps_is_no_outage() {
        let mut l = Link::new(3);
        l.run(5, 0, true);
        assert_eq!((l.r.divisor(), l.r.slowdowns), (1, 0), "the client went quiet: a blackout, not congestion");
        // A dark downlink: the client acks every frame, its count stands still.
        let mut d = Link::new(3);
        d.run(3, 10, false).run(4, 0, false);
        assert_eq!((d.r.divisor(), d.r.slowdowns), (1, 0), "acks without progress: an outage too");
        let mut l = Link::new(3);
        l.received = u32::MAX - 100;
        l.run(10, 10, false);
        assert_eq!((l.r.divisor(), l.r.slowdowns), (1, 0), "the count wrapped mid-run");
        // A report from before (reordered) does not move the count back.
        l.r.on_report(10_000, 5);
        assert_eq!(l.r.received, Some(l.received));
    }

    #[test]
    fn a_link_that_carries_only_the_slower_rate_is_probed_ever_more_rarely() {
        // Half arrive at 60 Hz (a link for ~30 snapshots/s); at 30 Hz all do.
        let mut l = Link::new(2);
        let mut at = Vec::new();
        for _ in 0..120 {
            let arrive = if l.r.divisor() == 1 { 4 } else { 10 };
            l.run(1, arrive, false);
            at.push(l.r.divisor());
        }
        let probes = l.r.speedups;
        assert!(probes >= 2, "it does try again: {probes}");
        assert!(probes <= 5, "3 + 6 + 12 + 24 + 48 clean windows between tries, not 3: {probes} in 120 s");
        // The first second, then up to two per probe (the probe's window
        // and the one that judges it).
        assert!(at.iter().filter(|&&d| d == 2).count() >= 120 - 1 - 2 * probes as usize, "mostly at 30 Hz: {at:?}");
    }

    #[test]
    fn a_standing_queue_slows_the_rate_though_most_snapshots_arrive() {
        // A link that queues (500 ms deep) what it cannot carry at 60 Hz
        // and drops the overflow: 55% arrive, each half a second late.
        let mut l = Link::new(3);
        l.run(5, 10, false);
        l.rtt = |d| if d == 1 { 520 } else { 40 };
        l.arrive = Some(|d| if d == 1 { 6 } else { 10 });
        l.run(40, 0, false);
        assert_eq!(l.r.divisor(), 2, "30 Hz: every snapshot arrives without queueing");
        assert_eq!(l.r.slowdowns, 1 + l.r.speedups, "never below 30 Hz");
        assert!(l.r.speedups <= 3, "probed after 3, 6, 12 and 24 clean windows: {}", l.r.speedups);
        // Each probe is undone by its first round trip over the base, not
        // at the end of its window.
        let at60 = l.ticks_at[1] - 5 * 60;
        assert!(at60 <= 60 + 3 * l.r.speedups, "{at60} ticks at 60 Hz after the queue formed");
        // Jitter under the margin is no queue.
        let mut j = Link::new(3);
        j.rtt = |_| 100;
        j.run(3, 10, false);
        j.rtt = |_| 100 + QUEUE_MS / 2;
        j.run(10, 10, false);
        assert_eq!((j.r.divisor(), j.r.slowdowns), (1, 0));
    }

    #[test]
    fn a_bound_of_one_never_adapts_and_due_spreads_clients_over_ticks() {
        let mut l = Link::new(1);
        l.run(5, 1, false);
        assert_eq!((l.r.divisor(), l.r.slowdowns), (1, 0));
        let mut slow = Link::new(2);
        slow.run(5, 3, false);
        assert_eq!(slow.r.divisor(), 2);
        let mut every2 = slow.r.clone();
        every2.on_sent(10);
        assert!(!every2.due(11) && every2.due(12) && every2.due(13), "every 2nd tick, and a skipped turn is not lost");
        assert_eq!(SendRate::new(99).max_level, 2, "clamped to the table");
    }
}
