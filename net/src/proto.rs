//! Control-stream frames and client datagrams. Every decoder checks lengths
//! against caps before allocating; malformed bytes are errors.
//!
//! Control stream: frames of `u32 length | u8 type | body`, length capped at
//! [`MAX_FRAME`]. Datagrams: first byte is the type (1 = snapshot, see
//! `delta`; 2 = client ack + redundant inputs).

use crate::token::Role;
use sim_core::character::CharacterParams;

pub const ALPN: &[u8] = b"dualplane/1";
pub const PROTOCOL_VERSION: u16 = 3;
/// Control frames larger than this are refused (and the connection closed).
pub const MAX_FRAME: usize = 1 << 20;

/// Rays per `PlanRays` frame (16 bytes each, under [`MAX_FRAME`]).
pub const MAX_RAYS_PER_FRAME: usize = 60_000;
/// Redundant inputs per ack datagram.
pub const MAX_INPUTS_PER_DATAGRAM: usize = 4;
pub const ACK_TYPE: u8 = 2;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Hello { version: u16, schema_hash: u64, role: Role, token: String },
    Welcome { client_id: u32, source_id: u32, role: Role, tick_rate: u32, tick: u64, schema_hash: u64, controlled: Vec<u64> },
    /// An input plan on the reliable stream.
    Plan(Vec<u8>),
    /// What became of a plan (by sequence).
    PlanStatus { sequence: u32, tick: u64, status: u16 },
    /// Raycast results of an applied plan, in op order (policy sessions):
    /// 0 no hit, 1 entity, 2 static; the entity's handle; distances as f32
    /// bits. At most [`MAX_RAYS_PER_FRAME`].
    PlanRays { sequence: u32, tick: u64, hit: Vec<u32>, handle: Vec<u64>, distance_bits: Vec<u32> },
    /// The server refuses or ends the session.
    Bye { code: u16, reason: String },
    /// To players after the Welcome: the character controller's
    /// parameters, so the client can predict its avatar exactly.
    Character(CharacterParams),
    /// Policy -> server: control this many NPCs in all (more are granted
    /// from the free ones, fewer releases the rest; 0 releases every one).
    /// One request in flight per session.
    Control { want: u32 },
    /// Server -> policy: the whole set of NPCs it controls, sorted, after
    /// the tick that changed it.
    Controlled { tick: u64, handles: Vec<u64> },
    /// Policy -> server: send me an `Observation` every `every` ticks (0
    /// stops) of what is within `radius` metres of my entities (see
    /// [`crate::observe`]; refused past its caps).
    Observe(crate::observe::ObserveRequest),
    /// Overlap results of an applied plan (policy sessions), as in the
    /// plan journal: CSR `offsets` (queries + 1, from 0, non-decreasing,
    /// the last = `handles.len()`) into the sorted `handles` each query
    /// found. At most [`MAX_OVERLAP_QUERIES`] queries and
    /// [`MAX_OVERLAP_HANDLES`] handles (the server cuts whole queries).
    PlanOverlaps { sequence: u32, tick: u64, offsets: Vec<u32>, handles: Vec<u64> },
    /// Server -> policy: full-precision columns of what it may see, with
    /// the xxh3 of their canonical bytes (the client checks it).
    Observation { hash: u64, observed: crate::observe::Observed },
}

/// Overlap queries per `PlanOverlaps` frame.
pub const MAX_OVERLAP_QUERIES: usize = 16_384;
/// Overlap hits per `PlanOverlaps` frame (8 bytes each, under [`MAX_FRAME`]).
pub const MAX_OVERLAP_HANDLES: usize = 100_000;

/// A journal's overlap results cut to what one frame carries (whole
/// queries, in order): (offsets, handles).
#[must_use]
pub fn overlaps_for_frame(offsets: &[u32], handles: &[u64]) -> (Vec<u32>, Vec<u64>) {
    if offsets.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut q = (offsets.len() - 1).min(MAX_OVERLAP_QUERIES);
    while q > 0 && offsets[q] as usize > MAX_OVERLAP_HANDLES.min(handles.len()) {
        q -= 1;
    }
    let end = offsets[q] as usize;
    (offsets[..=q].to_vec(), handles[..end].to_vec())
}

/// The most NPCs one policy session may control.
pub const MAX_CONTROLLED: usize = 16_384;

/// Why a connection ended (Bye codes).
pub mod bye {
    pub const NORMAL: u16 = 0;
    pub const BAD_TOKEN: u16 = 1;
    pub const SCHEMA_MISMATCH: u16 = 2;
    pub const PROTOCOL: u16 = 3;
    pub const FULL: u16 = 4;
    pub const SHUTDOWN: u16 = 5;
    pub const RATE_LIMIT: u16 = 6;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("frame of {0} bytes exceeds the cap of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("truncated: {0}")]
    Truncated(&'static str),
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

struct R<'a>(&'a [u8]);

impl R<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], ProtoError> {
        if self.0.len() < n {
            return Err(ProtoError::Truncated(what));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self, w: &'static str) -> Result<u8, ProtoError> {
        Ok(self.take(1, w)?[0])
    }
    fn u16(&mut self, w: &'static str) -> Result<u16, ProtoError> {
        let b = self.take(2, w)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, w: &'static str) -> Result<u32, ProtoError> {
        let b = self.take(4, w)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, w: &'static str) -> Result<u64, ProtoError> {
        let b = self.take(8, w)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self, w: &'static str) -> Result<Vec<u8>, ProtoError> {
        let n = self.u32(w)? as usize;
        if n > MAX_FRAME {
            return Err(ProtoError::TooLarge(n));
        }
        Ok(self.take(n, w)?.to_vec())
    }
    fn string(&mut self, w: &'static str) -> Result<String, ProtoError> {
        String::from_utf8(self.bytes(w)?).map_err(|_| ProtoError::Malformed("string is not UTF-8"))
    }
}

fn put_u32s(out: &mut Vec<u8>, v: &[u32]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_u64s(out: &mut Vec<u8>, v: &[u64]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl Frame {
    /// `u32 length | type | body`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Frame::Hello { version, schema_hash, role, token } => {
                b.push(1);
                b.extend_from_slice(&version.to_le_bytes());
                b.extend_from_slice(&schema_hash.to_le_bytes());
                b.push(*role as u8);
                put_bytes(&mut b, token.as_bytes());
            }
            Frame::Welcome { client_id, source_id, role, tick_rate, tick, schema_hash, controlled } => {
                b.push(2);
                b.extend_from_slice(&client_id.to_le_bytes());
                b.extend_from_slice(&source_id.to_le_bytes());
                b.push(*role as u8);
                b.extend_from_slice(&tick_rate.to_le_bytes());
                b.extend_from_slice(&tick.to_le_bytes());
                b.extend_from_slice(&schema_hash.to_le_bytes());
                b.extend_from_slice(&(controlled.len() as u32).to_le_bytes());
                put_u64s(&mut b, controlled);
            }
            Frame::Plan(p) => {
                b.push(3);
                put_bytes(&mut b, p);
            }
            Frame::PlanStatus { sequence, tick, status } => {
                b.push(4);
                b.extend_from_slice(&sequence.to_le_bytes());
                b.extend_from_slice(&tick.to_le_bytes());
                b.extend_from_slice(&status.to_le_bytes());
            }
            Frame::PlanRays { sequence, tick, hit, handle, distance_bits } => {
                b.push(6);
                b.extend_from_slice(&sequence.to_le_bytes());
                b.extend_from_slice(&tick.to_le_bytes());
                let n = hit.len().min(handle.len()).min(distance_bits.len()).min(MAX_RAYS_PER_FRAME);
                b.extend_from_slice(&(n as u32).to_le_bytes());
                put_u32s(&mut b, &hit[..n]);
                put_u64s(&mut b, &handle[..n]);
                put_u32s(&mut b, &distance_bits[..n]);
            }
            Frame::Bye { code, reason } => {
                b.push(5);
                b.extend_from_slice(&code.to_le_bytes());
                put_bytes(&mut b, reason.as_bytes());
            }
            Frame::Character(p) => {
                b.push(7);
                for v in [p.dt, p.gravity_y, p.max_speed, p.acceleration, p.air_acceleration, p.jump_speed, p.half_extents[0], p.half_extents[1], p.foot, p.radius] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.push(u8::from(p.ground) | (u8::from(p.walls) << 1));
            }
            Frame::Control { want } => {
                b.push(8);
                b.extend_from_slice(&want.to_le_bytes());
            }
            Frame::Controlled { tick, handles } => {
                b.push(9);
                b.extend_from_slice(&tick.to_le_bytes());
                let n = handles.len().min(MAX_CONTROLLED);
                b.extend_from_slice(&(n as u32).to_le_bytes());
                put_u64s(&mut b, &handles[..n]);
            }
            Frame::PlanOverlaps { sequence, tick, offsets, handles } => {
                b.push(12);
                b.extend_from_slice(&sequence.to_le_bytes());
                b.extend_from_slice(&tick.to_le_bytes());
                b.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
                put_u32s(&mut b, offsets);
                b.extend_from_slice(&(handles.len() as u32).to_le_bytes());
                put_u64s(&mut b, handles);
            }
            Frame::Observe(r) => {
                b.push(10);
                b.extend_from_slice(&r.every.to_le_bytes());
                b.extend_from_slice(&r.radius.to_bits().to_le_bytes());
            }
            Frame::Observation { hash, observed } => {
                b.push(11);
                b.extend_from_slice(&hash.to_le_bytes());
                b.extend_from_slice(&observed.encode());
            }
        }
        let mut out = (b.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&b);
        out
    }

    /// Decodes one frame body (the bytes after the length prefix).
    pub fn decode(body: &[u8]) -> Result<Frame, ProtoError> {
        if body.len() > MAX_FRAME {
            return Err(ProtoError::TooLarge(body.len()));
        }
        let mut r = R(body);
        let f = match r.u8("type")? {
            1 => {
                let version = r.u16("version")?;
                let schema_hash = r.u64("schema hash")?;
                let role = Role::from_u8(r.u8("role")?).ok_or(ProtoError::Malformed("role"))?;
                let token = r.string("token")?;
                Frame::Hello { version, schema_hash, role, token }
            }
            2 => {
                let client_id = r.u32("client id")?;
                let source_id = r.u32("source id")?;
                let role = Role::from_u8(r.u8("role")?).ok_or(ProtoError::Malformed("role"))?;
                let tick_rate = r.u32("tick rate")?;
                let tick = r.u64("tick")?;
                let schema_hash = r.u64("schema hash")?;
                let n = r.u32("controlled count")? as usize;
                if n > r.0.len() / 8 {
                    return Err(ProtoError::Truncated("controlled handles"));
                }
                let mut controlled = Vec::with_capacity(n);
                for _ in 0..n {
                    controlled.push(r.u64("handle")?);
                }
                Frame::Welcome { client_id, source_id, role, tick_rate, tick, schema_hash, controlled }
            }
            3 => Frame::Plan(r.bytes("plan")?),
            4 => Frame::PlanStatus { sequence: r.u32("sequence")?, tick: r.u64("tick")?, status: r.u16("status")? },
            5 => Frame::Bye { code: r.u16("code")?, reason: r.string("reason")? },
            6 => {
                let sequence = r.u32("sequence")?;
                let tick = r.u64("tick")?;
                let n = r.u32("ray count")? as usize;
                if n > MAX_RAYS_PER_FRAME || n * 16 != r.0.len() {
                    return Err(ProtoError::Malformed("ray count does not match the frame length"));
                }
                let (mut hit, mut handle, mut distance_bits) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
                for _ in 0..n {
                    hit.push(r.u32("hit")?);
                }
                for _ in 0..n {
                    handle.push(r.u64("handle")?);
                }
                for _ in 0..n {
                    distance_bits.push(r.u32("distance")?);
                }
                Frame::PlanRays { sequence, tick, hit, handle, distance_bits }
            }
            7 => {
                let mut f = [0f32; 10];
                for v in &mut f {
                    *v = f32::from_bits(r.u32("character parameter")?);
                }
                let flags = r.u8("character flags")?;
                if flags > 3 || f.iter().any(|v| !v.is_finite()) || f[0] <= 0.0 {
                    return Err(ProtoError::Malformed("character parameters"));
                }
                let [dt, gravity_y, max_speed, acceleration, air_acceleration, jump_speed, hx, hz, foot, radius] = f;
                Frame::Character(CharacterParams { dt, gravity_y, max_speed, acceleration, air_acceleration, jump_speed, ground: flags & 1 != 0, walls: flags & 2 != 0, half_extents: [hx, hz], foot, radius })
            }
            8 => Frame::Control { want: r.u32("want")? },
            9 => {
                let tick = r.u64("tick")?;
                let n = r.u32("controlled count")? as usize;
                if n > MAX_CONTROLLED || n * 8 != r.0.len() {
                    return Err(ProtoError::Malformed("controlled count does not match the frame length"));
                }
                let mut handles = Vec::with_capacity(n);
                for _ in 0..n {
                    handles.push(r.u64("handle")?);
                }
                Frame::Controlled { tick, handles }
            }
            12 => {
                let sequence = r.u32("sequence")?;
                let tick = r.u64("tick")?;
                let nq = r.u32("overlap offsets")? as usize;
                if nq > MAX_OVERLAP_QUERIES + 1 || nq * 4 > r.0.len() {
                    return Err(ProtoError::Malformed("overlap offsets count"));
                }
                let mut offsets = Vec::with_capacity(nq);
                for _ in 0..nq {
                    offsets.push(r.u32("offset")?);
                }
                let nh = r.u32("overlap handles")? as usize;
                if nh > MAX_OVERLAP_HANDLES || nh * 8 != r.0.len() {
                    return Err(ProtoError::Malformed("overlap handle count does not match the frame length"));
                }
                let mut handles = Vec::with_capacity(nh);
                for _ in 0..nh {
                    handles.push(r.u64("handle")?);
                }
                let csr = offsets.first().is_none_or(|f| *f == 0) && offsets.windows(2).all(|w| w[0] <= w[1]) && offsets.last().map_or(nh == 0, |l| *l as usize == nh);
                if !csr {
                    return Err(ProtoError::Malformed("overlap offsets are not CSR over the handles"));
                }
                Frame::PlanOverlaps { sequence, tick, offsets, handles }
            }
            10 => Frame::Observe(crate::observe::ObserveRequest { every: r.u16("every")?, radius: f32::from_bits(r.u32("radius")?) }),
            11 => {
                let hash = r.u64("observation hash")?;
                let observed = crate::observe::Observed::decode(std::mem::take(&mut r.0))?;
                Frame::Observation { hash, observed }
            }
            t => return Err(ProtoError::UnknownType(t)),
        };
        if !r.0.is_empty() {
            return Err(ProtoError::Malformed("trailing bytes"));
        }
        Ok(f)
    }
}

/// Client -> server datagram: the latest snapshot applied (hash-checked),
/// cumulative hash failures, and the last few input plans (redundantly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub latest: Option<u32>,
    pub hash_failures: u32,
    /// Snapshots received fresh (newer than any seen before), ever,
    /// wrapping: the server's measure of delivery (see [`crate::rate`]).
    pub received: u32,
    pub inputs: Vec<Vec<u8>>,
}

impl Ack {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![ACK_TYPE];
        match self.latest {
            Some(s) => {
                b.push(1);
                b.extend_from_slice(&s.to_le_bytes());
            }
            None => {
                b.push(0);
                b.extend_from_slice(&0u32.to_le_bytes());
            }
        }
        b.extend_from_slice(&self.hash_failures.to_le_bytes());
        b.extend_from_slice(&self.received.to_le_bytes());
        b.push(self.inputs.len().min(MAX_INPUTS_PER_DATAGRAM) as u8);
        for p in self.inputs.iter().take(MAX_INPUTS_PER_DATAGRAM) {
            b.extend_from_slice(&(p.len() as u16).to_le_bytes());
            b.extend_from_slice(p);
        }
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Ack, ProtoError> {
        let mut r = R(bytes);
        if r.u8("type")? != ACK_TYPE {
            return Err(ProtoError::Malformed("not an ack"));
        }
        let has = r.u8("flag")?;
        let seq = r.u32("seq")?;
        let hash_failures = r.u32("hash failures")?;
        let received = r.u32("received count")?;
        let n = r.u8("input count")? as usize;
        if n > MAX_INPUTS_PER_DATAGRAM {
            return Err(ProtoError::Malformed("too many inputs"));
        }
        let mut inputs = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u16("input length")? as usize;
            inputs.push(r.take(len, "input")?.to_vec());
        }
        if !r.0.is_empty() {
            return Err(ProtoError::Malformed("trailing bytes"));
        }
        Ok(Ack { latest: (has == 1).then_some(seq), hash_failures, received, inputs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip_and_reject_garbage() {
        let frames = [
            Frame::Hello { version: 1, schema_hash: 9, role: Role::Policy, token: "abc".into() },
            Frame::Welcome { client_id: 3, source_id: 1003, role: Role::Player, tick_rate: 60, tick: 77, schema_hash: 9, controlled: vec![1, 2] },
            Frame::Plan(vec![1, 2, 3]),
            Frame::PlanStatus { sequence: 4, tick: 5, status: 6 },
            Frame::PlanRays { sequence: 4, tick: 5, hit: vec![0, 1, 2], handle: vec![0, 7, u64::MAX], distance_bits: vec![f32::INFINITY.to_bits(), 1.5f32.to_bits(), 0] },
            Frame::PlanRays { sequence: 1, tick: 2, hit: vec![], handle: vec![], distance_bits: vec![] },
            Frame::Bye { code: bye::SHUTDOWN, reason: "bye".into() },
            Frame::Control { want: 1000 },
            Frame::Controlled { tick: 9, handles: vec![3, 4, u64::MAX] },
            Frame::Controlled { tick: 9, handles: vec![] },
            Frame::Observe(crate::observe::ObserveRequest { every: 2, radius: 8.5 }),
            Frame::PlanOverlaps { sequence: 3, tick: 4, offsets: vec![0, 2, 2, 3], handles: vec![5, 9, 1] },
            Frame::PlanOverlaps { sequence: 3, tick: 4, offsets: vec![], handles: vec![] },
            Frame::Observation { hash: 5, observed: crate::observe::Observed { tick: 3, handle: vec![1, 9], archetype: vec![1, 0], owner: vec![7, 0], health: vec![100, -3], pos: vec![1.0, 2.0, 3.0, -4.0, 0.5, 6.0], linvel: vec![0.0; 6] } },
            Frame::Observation { hash: 0, observed: crate::observe::Observed::default() },
            Frame::Character(CharacterParams { dt: 1.0 / 60.0, gravity_y: -9.81, max_speed: 6.0, acceleration: 40.0, air_acceleration: 10.0, jump_speed: 5.0, ground: true, walls: false, half_extents: [30.0, 20.0], foot: 0.9, radius: 0.4 }),
        ];
        for f in frames {
            let enc = f.encode();
            if let Frame::Observation { observed, .. } = &f {
                assert_eq!(enc.len(), crate::observe::frame_bytes(observed.len()));
            }
            assert_eq!(Frame::decode(&enc[4..]), Ok(f));
            for cut in 0..enc.len() - 4 {
                assert!(Frame::decode(&enc[4..4 + cut]).is_err());
            }
        }
        assert_eq!(Frame::decode(&[99]), Err(ProtoError::UnknownType(99)));
        // Offsets that do not index the handles are refused.
        for (offsets, handles) in [(vec![1, 2], vec![7, 8]), (vec![0, 2, 1], vec![7, 8]), (vec![0, 1], vec![7, 8])] {
            let enc = Frame::PlanOverlaps { sequence: 1, tick: 1, offsets, handles }.encode();
            assert!(Frame::decode(&enc[4..]).is_err());
        }
        // The cut keeps whole queries.
        let offsets: Vec<u32> = (0..=20_000u32).map(|q| q * 10).collect();
        let handles: Vec<u64> = (0..200_000u64).collect();
        let (o, h) = overlaps_for_frame(&offsets, &handles);
        assert_eq!(o.len(), 10_001);
        assert_eq!(h.len(), 100_000);
        assert_eq!(overlaps_for_frame(&[], &[]), (vec![], vec![]));
        let a = Ack { latest: Some(5), hash_failures: 1, received: 4_000_000_007, inputs: vec![vec![7; 10], vec![]] };
        assert_eq!(Ack::decode(&a.encode()), Ok(a));
        assert!(Ack::decode(&[2, 1, 0]).is_err());
    }
}
