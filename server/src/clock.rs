//! The wall clock the binary injects into sim-core (which reads none).

use std::time::Instant;

#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl MonotonicClock {
    #[must_use]
    pub fn new() -> MonotonicClock {
        MonotonicClock(Instant::now())
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl sim_core::Clock for MonotonicClock {
    fn now_ns(&mut self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Mean and 99th percentile of a sample, in the sample's unit.
pub fn mean_p99(samples: &mut [u64]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_unstable();
    let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
    let idx = ((samples.len() as f64 * 0.99).ceil() as usize).clamp(1, samples.len()) - 1;
    (mean, samples[idx] as f64)
}
