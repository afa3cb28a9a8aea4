//! Player input commands and the two datagrams that carry the player path:
//! the client's input datagram (snapshot ack + the last few unacknowledged
//! commands) and the server's player block (what became of those commands
//! and the avatar's exact state), which rides in front of the snapshot.
//!
//! Input datagram (bit-packed, LSB first, see `bits`): type (8) = 3,
//! has_ack (1) [+ acked snapshot seq (32)], hash failures (gamma),
//! command count (4, at most [`MAX_COMMANDS`]), then commands oldest first:
//! the first with sequence (32) and tick (64), each later one with gamma
//! deltas of both (>= 1: strictly increasing); then per command
//! move x (8, signed, /127), move z (8, signed, /127), yaw (16, 2 pi/65536),
//! pitch (16, signed, (pi/2)/32767), buttons (8), rewind (8: ticks behind
//! its tick the player's view was).
//!
//! Player block datagram (little-endian): type (8) = 5, last applied
//! command sequence (u32), input lead (i8: ticks the newest command arrived
//! before its tick was simulated; negative = late; -128 = no command
//! arrived since the previous block), commands dropped as late
//! so far (u32), flags (u8: 1 = the
//! avatar is alive), avatar position (3 x f32 bits), velocity (3 x f32
//! bits); then a whole snapshot datagram (type 1). The state is the one at
//! the snapshot's tick, exact (the controller's own f32s), so a client can
//! rewind to it and replay its later commands bit for bit.

use crate::bits::{BitError, BitReader, BitWriter};

pub const INPUT_TYPE: u8 = 3;
pub const PLAYER_BLOCK_TYPE: u8 = 5;
/// Commands per input datagram (the newest unacknowledged ones).
pub const MAX_COMMANDS: usize = 8;
/// Bytes of a player block before the snapshot it carries.
pub const PLAYER_BLOCK_LEN: usize = 1 + 4 + 1 + 4 + 1 + 24;
/// A player block's lead when no command arrived since the last block.
pub const NO_LEAD: i8 = i8::MIN;

/// One input command, as quantized on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Command {
    pub sequence: u32,
    /// The server tick this command is for.
    pub tick: u64,
    pub move_x: i8,
    pub move_z: i8,
    pub yaw: u16,
    pub pitch: i16,
    pub buttons: u8,
    /// Ticks behind `tick` the player's view was when it sampled this
    /// command (what it saw: lag compensation of fire).
    pub rewind: u8,
}

const TAU: f32 = std::f32::consts::TAU;
const HALF_PI: f32 = std::f32::consts::FRAC_PI_2;

impl Command {
    /// Quantizes a move input (x, z; clamped to -1..1), view angles and buttons.
    #[must_use]
    pub fn new(sequence: u32, tick: u64, movement: [f32; 2], yaw: f32, pitch: f32, buttons: u8) -> Command {
        let q8 = |v: f32| (v.clamp(-1.0, 1.0) * 127.0).round() as i8;
        let turns = (yaw / TAU).rem_euclid(1.0);
        Command {
            sequence,
            tick,
            move_x: q8(movement[0]),
            move_z: q8(movement[1]),
            yaw: ((turns * 65536.0).round() as u32 % 65536) as u16,
            pitch: ((pitch.clamp(-HALF_PI, HALF_PI) / HALF_PI) * 32767.0).round() as i16,
            buttons,
            rewind: 0,
        }
    }

    /// The same command, saying its view was `ticks` behind its tick.
    #[must_use]
    pub fn seen(self, ticks: u64) -> Command {
        Command { rewind: ticks.min(255) as u8, ..self }
    }

    /// The move input as the world applies it (x, z), length at most 1.
    #[must_use]
    pub fn movement(&self) -> [f32; 2] {
        let (x, z) = (f32::from(self.move_x) / 127.0, f32::from(self.move_z) / 127.0);
        let l2 = x * x + z * z;
        if l2 > 1.0 {
            let l = l2.sqrt();
            [x / l, z / l]
        } else {
            [x, z]
        }
    }

    #[must_use]
    pub fn yaw(&self) -> f32 {
        f32::from(self.yaw) * (TAU / 65536.0)
    }

    #[must_use]
    pub fn pitch(&self) -> f32 {
        f32::from(self.pitch) * (HALF_PI / 32767.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("not an input datagram (type {0})")]
    WrongType(u8),
    #[error(transparent)]
    Bits(#[from] BitError),
    #[error("malformed input datagram: {0}")]
    Malformed(&'static str),
}

/// Client -> server: snapshot ack and commands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputDatagram {
    pub ack: Option<u32>,
    pub hash_failures: u32,
    /// As [`crate::proto::Ack::received`].
    pub received: u32,
    /// Oldest first; sequences and ticks strictly increasing.
    pub commands: Vec<Command>,
}

impl InputDatagram {
    /// Encodes the newest [`MAX_COMMANDS`] commands (they must be in
    /// increasing sequence and tick order; others are skipped).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut cmds: Vec<&Command> = Vec::with_capacity(MAX_COMMANDS);
        for c in &self.commands {
            if cmds.last().is_none_or(|p| c.sequence > p.sequence && c.tick > p.tick) {
                cmds.push(c);
            }
        }
        let cmds = &cmds[cmds.len().saturating_sub(MAX_COMMANDS)..];
        let mut w = BitWriter::new();
        w.write(u64::from(INPUT_TYPE), 8);
        match self.ack {
            Some(a) => {
                w.bit(true);
                w.write(u64::from(a), 32);
            }
            None => w.bit(false),
        }
        w.gamma(u64::from(self.hash_failures));
        w.write(u64::from(self.received), 32);
        w.write(cmds.len() as u64, 4);
        let mut prev: Option<&Command> = None;
        for c in cmds {
            match prev {
                None => {
                    w.write(u64::from(c.sequence), 32);
                    w.write(c.tick, 64);
                }
                Some(p) => {
                    w.gamma(u64::from(c.sequence - p.sequence));
                    w.gamma(c.tick - p.tick);
                }
            }
            prev = Some(c);
        }
        for c in cmds {
            w.write(u64::from(c.move_x as u8), 8);
            w.write(u64::from(c.move_z as u8), 8);
            w.write(u64::from(c.yaw), 16);
            w.write(u64::from(c.pitch as u16), 16);
            w.write(u64::from(c.buttons), 8);
            w.write(u64::from(c.rewind), 8);
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<InputDatagram, CommandError> {
        let mut r = BitReader::new(bytes);
        let t = r.read(8)? as u8;
        if t != INPUT_TYPE {
            return Err(CommandError::WrongType(t));
        }
        let ack = if r.bit()? { Some(r.read(32)? as u32) } else { None };
        let hash_failures = u32::try_from(r.gamma()?).map_err(|_| CommandError::Malformed("hash failure count"))?;
        let received = r.read(32)? as u32;
        let n = r.read(4)? as usize;
        if n > MAX_COMMANDS {
            return Err(CommandError::Malformed("more than 8 commands"));
        }
        let mut commands = Vec::with_capacity(n);
        let (mut seq, mut tick) = (0u32, 0u64);
        for i in 0..n {
            if i == 0 {
                seq = r.read(32)? as u32;
                tick = r.read(64)?;
            } else {
                let ds = u32::try_from(r.gamma()?).map_err(|_| CommandError::Malformed("sequence delta"))?;
                let dt = r.gamma()?;
                if ds == 0 || dt == 0 {
                    return Err(CommandError::Malformed("sequences and ticks must increase"));
                }
                seq = seq.checked_add(ds).ok_or(CommandError::Malformed("sequence overflows"))?;
                tick = tick.checked_add(dt).ok_or(CommandError::Malformed("tick overflows"))?;
            }
            commands.push(Command { sequence: seq, tick, ..Command::default() });
        }
        for c in &mut commands {
            c.move_x = r.read(8)? as u8 as i8;
            c.move_z = r.read(8)? as u8 as i8;
            c.yaw = r.read(16)? as u16;
            c.pitch = r.read(16)? as u16 as i16;
            c.buttons = r.read(8)? as u8;
            c.rewind = r.read(8)? as u8;
        }
        // Only the final byte's padding may remain.
        if r.bits_left() >= 8 {
            return Err(CommandError::Malformed("trailing bytes"));
        }
        Ok(InputDatagram { ack, hash_failures, received, commands })
    }
}

/// Server -> player: what the server made of its commands, and its avatar.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PlayerBlock {
    /// Sequence of the last command the world applied for this avatar.
    pub last_command: u32,
    /// Ticks the newest command arrived before its tick ran (< 0: late);
    /// [`NO_LEAD`] when no command arrived since the previous block.
    pub lead: i8,
    /// This client's commands dropped so far for arriving after their tick.
    pub commands_late: u32,
    pub alive: bool,
    pub pos: [f32; 3],
    pub vel: [f32; 3],
}

impl PlayerBlock {
    /// The block followed by a snapshot datagram.
    #[must_use]
    pub fn wrap(&self, snapshot: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(PLAYER_BLOCK_LEN + snapshot.len());
        b.push(PLAYER_BLOCK_TYPE);
        b.extend_from_slice(&self.last_command.to_le_bytes());
        b.push(self.lead as u8);
        b.extend_from_slice(&self.commands_late.to_le_bytes());
        b.push(u8::from(self.alive));
        for v in self.pos.iter().chain(&self.vel) {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(snapshot);
        b
    }

    /// Splits a player-block datagram into the block and its snapshot.
    pub fn unwrap(bytes: &[u8]) -> Result<(PlayerBlock, &[u8]), CommandError> {
        if bytes.first() != Some(&PLAYER_BLOCK_TYPE) {
            return Err(CommandError::WrongType(bytes.first().copied().unwrap_or(0)));
        }
        if bytes.len() < PLAYER_BLOCK_LEN {
            return Err(CommandError::Malformed("player block truncated"));
        }
        let f = |at: usize| f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let flags = bytes[10];
        if flags > 1 {
            return Err(CommandError::Malformed("player block flags"));
        }
        let b = PlayerBlock {
            last_command: u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]),
            lead: bytes[5] as i8,
            commands_late: u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]),
            alive: flags == 1,
            pos: [f(11), f(15), f(19)],
            vel: [f(23), f(27), f(31)],
        };
        Ok((b, &bytes[PLAYER_BLOCK_LEN..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_of_an_input_datagram() {
        let d = InputDatagram {
            ack: Some(0x0102_0304),
            hash_failures: 0,
            received: 0x0a0b_0c0d,
            commands: vec![Command::new(7, 100, [1.0, -0.5], 0.0, 0.0, 1), Command::new(8, 101, [0.0, 0.0], std::f32::consts::PI, 0.5, 2).seen(9)],
        };
        let b = d.encode();
        assert_eq!(hex(&b), "030906040236302c28c8010000001900000000000080f4070c000000100000000000e88b229000", "wire layout changed: update net/PROTOCOL.md");
        let back = InputDatagram::decode(&b).expect("decodes");
        assert_eq!(back, d);
        assert_eq!(back.commands[1].yaw(), std::f32::consts::PI);
        let (x, z) = (1.0f32, -64.0f32 / 127.0);
        let l = (x * x + z * z).sqrt();
        assert_eq!(back.commands[0].movement(), [x / l, z / l], "over-long inputs are normalised");
        for cut in 0..b.len() {
            assert!(InputDatagram::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn only_the_newest_increasing_commands_travel_and_garbage_is_refused() {
        let cmds: Vec<Command> = (0..12).map(|k| Command::new(k, 50 + u64::from(k), [0.5, 0.5], 1.0, -0.2, 0)).collect();
        let d = InputDatagram { ack: None, hash_failures: 3, received: 0, commands: cmds.clone() };
        let back = InputDatagram::decode(&d.encode()).expect("decodes");
        assert_eq!(back.commands, cmds[4..].to_vec(), "the newest 8");
        // Not increasing: the later duplicate is skipped by the encoder.
        let dup = InputDatagram { ack: None, hash_failures: 0, received: 0, commands: vec![cmds[3], cmds[3], cmds[2]] };
        assert_eq!(InputDatagram::decode(&dup.encode()).expect("decodes").commands, vec![cmds[3]]);
        assert!(InputDatagram::decode(&[2, 0]).is_err());
        assert!(InputDatagram::decode(&[3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut long = d.encode();
        long.push(0);
        assert!(InputDatagram::decode(&long).is_err(), "trailing byte");
    }

    #[test]
    fn quantization_is_symmetric_and_bounded() {
        let c = Command::new(1, 1, [-3.0, 0.7], -1.0, 9.0, 0);
        assert_eq!((c.move_x, c.move_z), (-127, 89));
        assert!((c.yaw() - (std::f32::consts::TAU - 1.0)).abs() < 1e-3);
        assert_eq!(c.pitch, 32767);
        let [x, z] = Command { move_x: 127, move_z: 127, ..c }.movement();
        assert!(x * x + z * z <= 1.0 + 1e-6);
    }

    #[test]
    fn player_blocks_wrap_snapshots() {
        let b = PlayerBlock { last_command: 9, lead: -2, commands_late: 4, alive: true, pos: [1.0, 2.0, 3.0], vel: [0.5, 0.0, -0.5] };
        let w = b.wrap(&[1, 2, 3]);
        assert_eq!(w.len(), PLAYER_BLOCK_LEN + 3);
        let (back, rest) = PlayerBlock::unwrap(&w).expect("unwraps");
        assert_eq!((back, rest), (b, &[1u8, 2, 3][..]));
        assert!(PlayerBlock::unwrap(&w[..10]).is_err());
        assert!(PlayerBlock::unwrap(&[1, 2]).is_err());
    }
}
