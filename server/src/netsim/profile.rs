//! A link profile and the seeded schedule it makes of one direction's
//! packets: which are dropped, duplicated, held back, and when each leaves.
//! Pure (time in, decisions out), so a profile and a seed always make the
//! same schedule.

use sim_core::rng::WorldRng;
use std::time::Duration;

/// `delay=50ms,jitter=10ms,loss=5%,dup=1%,reorder=2%,rate=2mbit,blackout=3s@10s`;
/// every item optional, applied to each direction independently.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// One-way base delay.
    pub delay: Duration,
    /// Each packet's delay varies uniformly within +- jitter (never below 0).
    pub jitter: Duration,
    /// Probability a packet is lost.
    pub loss: f64,
    /// Probability a packet is sent twice.
    pub dup: f64,
    /// Probability a packet is held back (by delay + jitter + 10 ms extra),
    /// so later packets overtake it.
    pub reorder: f64,
    /// Link rate in bits per second (0 = unlimited): packets serialize, and
    /// a queue over [`MAX_QUEUE`] drops (tail drop).
    pub rate_bps: u64,
    /// Periods (start after the relay starts, length) in which every packet is lost.
    pub blackouts: Vec<(Duration, Duration)>,
}

/// Longest queueing delay a rate-limited link holds before dropping.
pub const MAX_QUEUE: Duration = Duration::from_millis(500);

const ITEMS: &str = "delay=DUR, jitter=DUR, loss=P%, dup=P%, reorder=P%, rate=N(bit|kbit|mbit), blackout=DUR@DUR";

/// Longest duration a profile item may name.
const MAX_ITEM: Duration = Duration::from_secs(86_400);

fn duration(item: &str, v: &str) -> Result<Duration, String> {
    let d = crate::client_args::parse_duration(v).map_err(|e| format!("{item}: {e}"))?;
    if d > MAX_ITEM {
        return Err(format!("{item}={v:?}: at most a day"));
    }
    Ok(d)
}

fn percent(item: &str, v: &str) -> Result<f64, String> {
    let n: f64 = v.trim_end_matches('%').parse().map_err(|_| format!("{item}={v:?}: expected a percentage like 5%"))?;
    if !(0.0..=100.0).contains(&n) {
        return Err(format!("{item}={v:?}: expected 0% to 100%"));
    }
    Ok(n / 100.0)
}

fn rate(v: &str) -> Result<u64, String> {
    let lower = v.to_ascii_lowercase();
    let (n, mul) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(u, m)| lower.strip_suffix(u).map(|n| (n.to_string(), *m)))
        .ok_or_else(|| format!("rate={v:?}: expected a number with bit, kbit, mbit or gbit (e.g. 2mbit)"))?;
    let n: f64 = n.parse().map_err(|_| format!("rate={v:?}: expected a number with bit, kbit, mbit or gbit"))?;
    if !(n * mul >= 1.0 && n.is_finite()) {
        return Err(format!("rate={v:?}: must be at least 1 bit per second"));
    }
    Ok((n * mul) as u64)
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Profile, String> {
        let mut p = Profile::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| format!("{item:?}: expected key=value; items: {ITEMS}"))?;
            match k {
                "delay" => p.delay = duration(k, v)?,
                "jitter" => p.jitter = duration(k, v)?,
                "loss" => p.loss = percent(k, v)?,
                "dup" => p.dup = percent(k, v)?,
                "reorder" => p.reorder = percent(k, v)?,
                "rate" => p.rate_bps = rate(v)?,
                "blackout" => {
                    let (len, at) = v.split_once('@').ok_or_else(|| format!("blackout={v:?}: expected LENGTH@START, e.g. 3s@10s"))?;
                    p.blackouts.push((duration(k, at)?, duration(k, len)?));
                }
                other => return Err(format!("unknown link profile item {other:?}; items: {ITEMS}")),
            }
        }
        Ok(p)
    }
}

/// What becomes of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Lost (loss, blackout or a full queue).
    Drop(DropWhy),
    /// Leaves at these times after the relay started (two for a duplicate).
    Send { at: Duration, again: Option<Duration> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropWhy {
    Loss,
    Blackout,
    Queue,
}

/// One direction's schedule.
#[derive(Debug)]
pub struct Impairer {
    profile: Profile,
    rng: WorldRng,
    /// When the rate-limited link is next free.
    link_free: Duration,
}

impl Impairer {
    #[must_use]
    pub fn new(profile: Profile, seed: u64) -> Impairer {
        Impairer { profile, rng: WorldRng::from_seed(seed), link_free: Duration::ZERO }
    }

    fn chance(&mut self, p: f64) -> bool {
        // Always draw, so one decision never shifts the others' randomness.
        let x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    fn delay(&mut self) -> Duration {
        let j = self.profile.jitter.as_secs_f64();
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64((self.profile.delay.as_secs_f64() + j * (2.0 * u - 1.0)).max(0.0))
    }

    /// The fate of a packet of `len` bytes arriving `now` after the start.
    pub fn packet(&mut self, now: Duration, len: usize) -> Fate {
        let (lost, dup, held) = (self.chance(self.profile.loss), self.chance(self.profile.dup), self.chance(self.profile.reorder));
        let (d1, d2) = (self.delay(), self.delay());
        if self.profile.blackouts.iter().any(|(at, len)| now >= *at && now < *at + *len) {
            return Fate::Drop(DropWhy::Blackout);
        }
        if lost {
            return Fate::Drop(DropWhy::Loss);
        }
        let mut depart = now;
        if self.profile.rate_bps > 0 {
            let start = self.link_free.max(now);
            if start - now > MAX_QUEUE {
                return Fate::Drop(DropWhy::Queue);
            }
            self.link_free = start + Duration::from_secs_f64(len as f64 * 8.0 / self.profile.rate_bps as f64);
            depart = self.link_free;
        }
        let hold = if held { self.profile.delay + self.profile.jitter + Duration::from_millis(10) } else { Duration::ZERO };
        Fate::Send { at: depart + d1 + hold, again: dup.then_some(depart + d2) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_bad_ones_say_what_is_valid() {
        let p: Profile = "delay=50ms,jitter=10ms,loss=5%,dup=1%,reorder=2%,rate=2mbit,blackout=3s@10s".parse().expect("parses");
        assert_eq!(p.delay, Duration::from_millis(50));
        assert_eq!(p.jitter, Duration::from_millis(10));
        assert!((p.loss - 0.05).abs() < 1e-12 && (p.dup - 0.01).abs() < 1e-12 && (p.reorder - 0.02).abs() < 1e-12);
        assert_eq!(p.rate_bps, 2_000_000);
        assert_eq!(p.blackouts, vec![(Duration::from_secs(10), Duration::from_secs(3))]);
        assert_eq!("".parse::<Profile>(), Ok(Profile::default()));
        for (bad, says) in [("lag=5ms", "items: delay=DUR"), ("loss=150%", "0% to 100%"), ("rate=fast", "mbit"), ("blackout=3s", "LENGTH@START"), ("delay", "key=value")] {
            let e = bad.parse::<Profile>().err().unwrap_or_default();
            assert!(!e.is_empty(), "{bad} should fail");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn schedules_are_seeded_and_match_the_profile() {
        let p: Profile = "delay=50ms,jitter=10ms,loss=5%,dup=1%".parse().expect("p");
        let run = |seed| {
            let mut i = Impairer::new(p.clone(), seed);
            (0..20_000u64).map(|k| i.packet(Duration::from_millis(k), 100)).collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "same seed, same schedule");
        assert_ne!(a, run(8));
        let lost = a.iter().filter(|f| matches!(f, Fate::Drop(DropWhy::Loss))).count() as f64 / a.len() as f64;
        assert!((lost - 0.05).abs() < 0.01, "loss {lost}");
        let dups = a.iter().filter(|f| matches!(f, Fate::Send { again: Some(_), .. })).count() as f64 / a.len() as f64;
        assert!((dups - 0.0095).abs() < 0.005, "dup {dups}");
        for (k, f) in a.iter().enumerate() {
            if let Fate::Send { at, .. } = f {
                let d = *at - Duration::from_millis(k as u64);
                assert!(d >= Duration::from_millis(40) && d <= Duration::from_millis(60), "delay {d:?}");
            }
        }
    }

    #[test]
    fn blackouts_and_rate_limits_drop_and_space_packets() {
        let p: Profile = "rate=1mbit,blackout=1s@2s".parse().expect("p");
        let mut i = Impairer::new(p, 1);
        assert!(matches!(i.packet(Duration::from_millis(2500), 100), Fate::Drop(DropWhy::Blackout)));
        assert!(matches!(i.packet(Duration::from_millis(3000), 100), Fate::Send { .. }), "the blackout ends");
        // 1,250 bytes at 1 Mbit/s take 10 ms: a burst leaves 10 ms apart,
        // and a burst longer than the queue bound is cut.
        let now = Duration::from_secs(10);
        let sends: Vec<Fate> = (0..100).map(|_| i.packet(now, 1250)).collect();
        let times: Vec<Duration> = sends.iter().filter_map(|f| if let Fate::Send { at, .. } = f { Some(*at) } else { None }).collect();
        assert!(times.windows(2).all(|w| w[1] - w[0] == Duration::from_millis(10)), "{times:?}");
        assert!((50..=52).contains(&times.len()), "queue bound: {} sent", times.len());
        assert!(sends.iter().any(|f| matches!(f, Fate::Drop(DropWhy::Queue))));
    }
}
