//! Per-client send rate: a client whose link cannot carry a snapshot every
//! tick gets one every second or third tick instead (60 / 30 / 20 Hz at a
//! 60 Hz tick), so it receives fewer, whole snapshots rather than losing
//! most of them to a congested path.
//!
//! Sans-IO, like the sessions: fed the snapshots sent, the acks that came
//! back and (once a window) the transport's own counters, on the caller's
//! clock. Each window of [`WINDOW_MS`] decides once:
//! - **slower** (every d ticks -> every d' ticks) when fewer snapshots were
//!   acknowledged than the slower rate would deliver whole (acked / sent
//!   < d / d': under half at 60 Hz, under two thirds at 30 Hz);
//! - **held** when none was acknowledged (an outage says nothing about the
//!   link's capacity);
//! - **faster** after [`GOOD_WINDOWS`] windows in a row in which at least
//!   90% were acknowledged and the transport dropped none of the datagrams
//!   it was handed (QUIC's congestion window had room: `sent -
//!   transmitted` is 0).
//!
//! A lossy but uncongested link (20% each way: ~64% acknowledged) should
//! keep its rate, since a slower one would deliver fewer snapshots, not
//! more; QUIC dropping datagrams under random loss is not by itself a reason
//! to slow (measured: slowing on it cut 16 bots behind 20% loss from 47 to
//! 33 snapshots/s).
//!
//! **Opt-in** (`serve --max-send-divisor 2|3`; the default 1 never
//! adapts): the ack ratio the server sees is a weak measure of delivery.
//! A client acks only its newest applied snapshot, so reordering, several
//! snapshots between two acks and lost acks all read as lost snapshots. In
//! the fault lab (`tests/faults/run.sh --only profiles`) this controller
//! slowed clients behind 20% loss + 5% reorder to 29.5 snapshots/s (min of
//! 16; 47 without it) and after a 3 s blackout to 37.6. The fix is a
//! client-reported receive count in the ack (a protocol change), not a
//! better threshold here. Clients also size their render delay
//! (`net::timeline::InterpDelay`, 1.5 ticks plus jitter) for one snapshot
//! per tick: at 30 or 20 Hz they extrapolate in the gaps until the jitter
//! term grows.

/// Ticks between snapshots at each level.
pub const DIVISORS: [u64; 3] = [1, 2, 3];
/// One decision per this many milliseconds.
pub const WINDOW_MS: u64 = 1000;
/// Datagrams the transport may hold queued before a growing backlog counts
/// as dropped.
pub const QUEUE_ALLOWANCE: u64 = 4;
/// Clean windows in a row before the rate goes back up.
pub const GOOD_WINDOWS: u32 = 3;

/// One client's send rate.
#[derive(Debug, Clone)]
pub struct SendRate {
    level: usize,
    /// Highest level allowed (0: always every tick).
    max_level: usize,
    window_start_ms: Option<u64>,
    /// Snapshots sent, ever (the transport's counter is compared with it).
    sent_total: u64,
    /// Snapshots sent and acknowledged this window.
    sent: u64,
    acked: u64,
    /// The tick of the last snapshot sent.
    last_sent_tick: Option<u64>,
    /// The transport's datagrams-transmitted counter and our sent count at
    /// its first reading, and the largest backlog (sent - transmitted since
    /// then) seen so far.
    transport_base: Option<(u64, u64)>,
    backlog_max: u64,
    dropped: u64,
    good: u32,
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
        SendRate { level: 0, max_level, window_start_ms: None, sent_total: 0, sent: 0, acked: 0, last_sent_tick: None, transport_base: None, backlog_max: 0, dropped: 0, good: 0, slowdowns: 0, speedups: 0 }
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
        self.sent_total += 1;
        self.last_sent_tick = Some(tick);
    }

    /// A new (higher) snapshot was acknowledged.
    pub fn on_acked(&mut self) {
        self.acked += 1;
    }

    /// The transport's count of datagrams it actually transmitted (QUIC
    /// DATAGRAM frames), read once a window. What we handed it and it has
    /// not sent is its backlog: a few may wait in its queue, but a backlog
    /// that grows past [`QUEUE_ALLOWANCE`] and its earlier peak is
    /// datagrams dropped for want of congestion window (they are never
    /// sent).
    pub fn on_transport(&mut self, transmitted: u64) {
        let Some((t0, s0)) = self.transport_base else {
            self.transport_base = Some((transmitted, self.sent_total));
            return;
        };
        let backlog = self.sent_total.saturating_sub(s0).saturating_sub(transmitted.saturating_sub(t0));
        self.dropped += backlog.saturating_sub(self.backlog_max.max(QUEUE_ALLOWANCE));
        self.backlog_max = self.backlog_max.max(backlog);
    }

    /// Whether a window has ended (the caller then reads the transport's
    /// counters and calls [`SendRate::on_transport`] before [`SendRate::decide`]).
    #[must_use]
    pub fn window_over(&self, now_ms: u64) -> bool {
        self.window_start_ms.is_some_and(|s| now_ms.saturating_sub(s) >= WINDOW_MS)
    }

    /// Ends the window if it is over and moves the rate; returns the new
    /// divisor when it changed.
    pub fn decide(&mut self, now_ms: u64) -> Option<u64> {
        let Some(start) = self.window_start_ms else {
            self.window_start_ms = Some(now_ms);
            return None;
        };
        if now_ms.saturating_sub(start) < WINDOW_MS {
            return None;
        }
        let (sent, acked, dropped) = (self.sent, self.acked, self.dropped);
        self.window_start_ms = Some(now_ms);
        (self.sent, self.acked, self.dropped) = (0, 0, 0);
        if sent == 0 {
            return None;
        }
        let before = self.level;
        let next = DIVISORS.get(self.level + 1).copied();
        if acked == 0 {
            // An outage (a blackout, a paused client) says nothing about
            // what the link carries: hold the rate.
            self.good = 0;
        } else if self.level < self.max_level && next.is_some_and(|next| acked * next < sent * self.divisor()) {
            // Fewer arrive than the slower rate would deliver whole.
            self.good = 0;
            self.level += 1;
            self.slowdowns += 1;
        } else if dropped == 0 && acked * 10 >= sent * 9 {
            self.good += 1;
            if self.good >= GOOD_WINDOWS && self.level > 0 {
                self.level -= 1;
                self.speedups += 1;
                self.good = 0;
            }
        } else {
            self.good = 0;
        }
        (self.level != before).then(|| self.divisor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `secs` seconds at 60 Hz: `ack_per_10` of every 10 due
    /// snapshots are acked (a fixed pattern, no RNG) and the transport
    /// (whose transmitted counter and our sent count carry over between
    /// calls) transmits all but every `drop_every`-th of them (0: all).
    fn run((r, transmitted, n): (&mut SendRate, &mut u64, &mut u64), t0: u64, secs: u64, ack_per_10: u64, drop_every: u64) -> u64 {
        for tick in t0..t0 + 60 * secs {
            let now = tick * 1000 / 60;
            if r.window_over(now) {
                r.on_transport(*transmitted);
            }
            r.decide(now);
            if !r.due(tick) {
                continue;
            }
            r.on_sent(tick);
            *n += 1;
            if drop_every == 0 || !n.is_multiple_of(drop_every) {
                *transmitted += 1;
            }
            if *n % 10 < ack_per_10 {
                r.on_acked();
            }
        }
        t0 + 60 * secs
    }

    #[test]
    fn a_congested_link_slows_to_the_bound_and_a_clean_one_speeds_back_up() {
        let (mut r, mut tx, mut n) = (SendRate::new(3), 0, 0);
        let t = run((&mut r, &mut tx, &mut n), 0, 5, 10, 0);
        assert_eq!((r.divisor(), r.slowdowns), (1, 0), "clean: every tick");
        let t = run((&mut r, &mut tx, &mut n), t, 5, 4, 0);
        assert_eq!(r.divisor(), 3, "40% arrive: down to 20 Hz and no further");
        assert_eq!(r.slowdowns, 2);
        let t = run((&mut r, &mut tx, &mut n), t, 4, 10, 0);
        assert_eq!(r.divisor(), 2, "three clean windows: one step back up");
        let t = run((&mut r, &mut tx, &mut n), t, 4, 10, 4);
        assert_eq!(r.divisor(), 2, "all acked but the transport drops: no faster");
        run((&mut r, &mut tx, &mut n), t, 4, 10, 0);
        assert_eq!((r.divisor(), r.speedups), (1, 2));
    }

    #[test]
    fn random_loss_keeps_the_rate_and_most_snapshots_lost_slows_it() {
        let (mut r, mut tx, mut n) = (SendRate::new(3), 0, 0);
        let t = run((&mut r, &mut tx, &mut n), 0, 10, 6, 3);
        assert_eq!(r.divisor(), 1, "60% acked (the transport dropping a third): a slower rate would deliver fewer");
        run((&mut r, &mut tx, &mut n), t, 2, 4, 0);
        assert!(r.divisor() > 1, "under half acked: slower");
    }

    #[test]
    fn an_outage_holds_the_rate() {
        let (mut r, mut tx, mut n) = (SendRate::new(3), 0, 0);
        run((&mut r, &mut tx, &mut n), 0, 5, 0, 0);
        assert_eq!((r.divisor(), r.slowdowns), (1, 0), "nothing acked: a blackout, not congestion");
    }

    #[test]
    fn a_bound_of_one_never_adapts_and_due_spreads_clients_over_ticks() {
        let (mut r, mut tx, mut n) = (SendRate::new(1), 0, 0);
        run((&mut r, &mut tx, &mut n), 0, 5, 1, 2);
        assert_eq!((r.divisor(), r.slowdowns), (1, 0));
        let mut slow = SendRate::new(2);
        (tx, n) = (0, 0);
        run((&mut slow, &mut tx, &mut n), 0, 5, 3, 0);
        assert_eq!(slow.divisor(), 2);
        let mut every2 = slow.clone();
        every2.on_sent(10);
        assert!(!every2.due(11) && every2.due(12) && every2.due(13), "every 2nd tick, and a skipped turn is not lost");
        assert_eq!(SendRate::new(99).max_level, 2, "clamped to the table");
    }
}
