//! Client-side prediction and reconciliation of the player's own avatar.
//!
//! The client runs the server's character controller
//! (`sim_core::character::step`) on each command as it sends it, so its
//! avatar moves at once. Every player block carries the server's exact
//! controller state for a tick; the predictor compares it with what it
//! predicted for that tick (the prediction error), and when they differ
//! (a command lost or late, something the controller does not model) it
//! rewinds to the server's state and replays the commands after it.

use sim_core::character::{step, CharacterInput, CharacterParams, CharacterState};
use std::collections::VecDeque;

/// Commands kept for replay (about 2 s at 60 Hz).
const KEEP: usize = 128;

#[derive(Clone, Debug)]
pub struct Predictor {
    params: CharacterParams,
    /// The latest server state and its tick.
    base: Option<(u64, CharacterState)>,
    /// The input in force at the base tick (the server repeats the last
    /// command's input on ticks without one).
    base_input: CharacterInput,
    /// Commands for ticks after the base, ascending.
    pending: VecDeque<(u64, CharacterInput)>,
    /// Predicted states for those ticks, parallel to `pending` ticks.
    predicted: VecDeque<(u64, CharacterState)>,
    pub corrections: u64,
    pub compared: u64,
}

impl Predictor {
    #[must_use]
    pub fn new(params: CharacterParams) -> Predictor {
        Predictor { params, base: None, base_input: CharacterInput::default(), pending: VecDeque::new(), predicted: VecDeque::new(), corrections: 0, compared: 0 }
    }

    /// The predicted state after the newest command (the server state when
    /// nothing is pending).
    #[must_use]
    pub fn current(&self) -> Option<CharacterState> {
        self.predicted.back().map(|(_, s)| *s).or(self.base.map(|(_, s)| s))
    }

    /// Runs the controller from the last state through `tick`, repeating the
    /// last input on ticks without a command, as the server does.
    fn advance(&mut self, tick: u64, input: CharacterInput) {
        let Some((mut t, mut s)) = self.predicted.back().copied().or(self.base) else { return };
        let mut last = self.pending.back().map_or(self.base_input, |(_, i)| *i);
        while t + 1 < tick {
            t += 1;
            s = step(&self.params, s, last);
            self.predicted.push_back((t, s));
        }
        if tick > t {
            last = input;
            s = step(&self.params, s, last);
            self.predicted.push_back((tick, s));
        }
        while self.predicted.len() > KEEP {
            self.predicted.pop_front();
        }
    }

    /// Records the command for `tick` (ticks ascending) and predicts it.
    pub fn command(&mut self, tick: u64, input: CharacterInput) {
        if self.pending.back().is_some_and(|(t, _)| *t >= tick) || self.base.is_some_and(|(t, _)| t >= tick) {
            return;
        }
        self.advance(tick, input);
        self.pending.push_back((tick, input));
        while self.pending.len() > KEEP {
            self.pending.pop_front();
        }
    }

    /// The server's exact state at `tick`. Returns the prediction error in
    /// metres when a prediction for that tick existed.
    pub fn on_server(&mut self, tick: u64, state: CharacterState) -> Option<f32> {
        if self.base.is_some_and(|(t, _)| t >= tick) {
            return None;
        }
        let predicted = self.predicted.iter().find(|(t, _)| *t == tick).map(|(_, s)| *s);
        // The input in force at `tick`: the newest command at or before it.
        if let Some((_, i)) = self.pending.iter().rev().find(|(t, _)| *t <= tick) {
            self.base_input = *i;
        }
        self.pending.retain(|(t, _)| *t > tick);
        self.predicted.retain(|(t, _)| *t > tick);
        self.base = Some((tick, state));
        let error = predicted.map(|p| {
            let d = [p.pos[0] - state.pos[0], p.pos[1] - state.pos[1], p.pos[2] - state.pos[2]];
            (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
        });
        if predicted.is_some() {
            self.compared += 1;
        }
        if predicted != Some(state) {
            if predicted.is_some() {
                self.corrections += 1;
            }
            // Rewind to the server's state and replay what it has not seen.
            self.predicted.clear();
            let replay: Vec<(u64, CharacterInput)> = self.pending.iter().copied().collect();
            self.pending.clear();
            for (t, i) in replay {
                self.command(t, i);
            }
        }
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> CharacterParams {
        CharacterParams { dt: 1.0 / 60.0, gravity_y: -9.81, max_speed: 6.0, acceleration: 40.0, air_acceleration: 10.0, jump_speed: 5.0, ground: true, walls: false, half_extents: [30.0, 30.0], foot: 0.9, radius: 0.4 }
    }

    fn input(k: u64) -> CharacterInput {
        CharacterInput { movement: if (k / 20).is_multiple_of(2) { [1.0, 0.0] } else { [0.0, -1.0] }, buttons: u32::from(k.is_multiple_of(45)) }
    }

    #[test]
    fn a_mispredicted_tick_is_corrected_and_replay_lands_where_the_server_put_it() {
        let p = params();
        let start = CharacterState { pos: [0.0, 0.9, 0.0], vel: [0.0; 3] };
        // The server's run: the same inputs, except the command for tick 20
        // never arrived (the server repeats tick 14's input).
        let mut server = vec![start];
        let mut last = CharacterInput::default();
        for k in 1..=60u64 {
            if k != 20 {
                last = input(k);
            }
            server.push(step(&p, server[k as usize - 1], last));
        }
        let mut pr = Predictor::new(p);
        assert_eq!(pr.on_server(0, start), None);
        for k in 1..=30 {
            pr.command(k, input(k));
        }
        // Ticks before the loss: exact.
        assert_eq!(pr.on_server(10, server[10]), Some(0.0));
        assert_eq!(pr.corrections, 0);
        // The loss shows up at tick 25: a correction, then replay.
        let err = pr.on_server(25, server[25]).expect("predicted");
        assert!(err > 0.0, "a lost command changes the path");
        assert_eq!(pr.corrections, 1);
        for k in 31..=60 {
            pr.command(k, input(k));
        }
        // After the rewind, the prediction for 60 matches the server exactly.
        assert_eq!(pr.current(), Some(server[60]));
        assert_eq!(pr.on_server(40, server[40]), Some(0.0));
        assert_eq!(pr.on_server(60, server[60]), Some(0.0));
        assert_eq!(pr.corrections, 1, "no more corrections once replayed");
        // Old or repeated server states are ignored.
        assert_eq!(pr.on_server(50, server[50]), None);
    }
}
