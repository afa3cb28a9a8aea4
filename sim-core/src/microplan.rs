//! Microplan v1: the immutable binary plan format, its builder and a decoder
//! that trusts no byte.
//!
//! The layout is defined in `ports/dualplane.ports.toml` (`[microplan]`):
//! a 64-byte little-endian header, a section table of 16-byte entries, then
//! one 16-byte-aligned SoA section per op kind, each field an array starting
//! at a 16-byte-aligned offset within its section. The checksum is xxh3-64 of
//! the whole plan with the checksum field zeroed.
//!
//! [`MicroPlan::decode`] checks every length, offset and count against the
//! caps before touching a section, and never allocates more than the
//! section table it was given. Semantic checks (handles, ownership, values)
//! happen in the world's apply phase, which knows the world.

use crate::ids::{Archetype, Handle, SourceId, Tick};
use crate::ports::{
    OpKind, Status, MAX_OPS_PER_PLAN, MAX_PLAN_BYTES, PLAN_ALIGN, PLAN_HEADER_SIZE, PLAN_MAGIC,
    PLAN_SECTION_ENTRY_SIZE, PLAN_VERSION,
};
use xxhash_rust::xxh3::Xxh3;

const KINDS: usize = OpKind::ALL.len();
const MAX_FIELDS: usize = 7;
const CHECKSUM_AT: usize = 40;

/// A structural decode failure: the status code and exactly what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", status.name())]
pub struct DecodeError {
    pub status: Status,
    pub detail: String,
}

fn err<T>(status: Status, detail: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError { status, detail: detail.into() })
}

fn align(n: u64) -> u64 {
    let a = PLAN_ALIGN as u64;
    n.div_ceil(a) * a
}

/// Byte offsets of each field within a section of `count` ops, and the
/// section's exact length.
#[must_use]
pub fn section_layout(kind: OpKind, count: u32) -> ([u64; MAX_FIELDS], u64) {
    let mut offsets = [0u64; MAX_FIELDS];
    let mut off = 0u64;
    for (i, f) in kind.fields().iter().enumerate() {
        off = align(off);
        offsets[i] = off;
        off += u64::from(count) * u64::from(f.size);
    }
    (offsets, off)
}

/// The header fields a plan is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanHeader {
    pub target_tick: Tick,
    pub source: SourceId,
    pub sequence: u32,
    pub correlation: u64,
}

/// A located, validated section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SectionRef {
    count: u32,
    offset: u32,
    field_offsets: [u32; MAX_FIELDS],
}

/// A decoded, structurally valid microplan (owns its bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MicroPlan {
    bytes: Vec<u8>,
    header: PlanHeader,
    checksum: u64,
    sections: [Option<SectionRef>; KINDS],
    op_count: u32,
}

/// A read-only view of one section's SoA fields.
#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    pub kind: OpKind,
    pub count: usize,
    /// Global index of this section's first op within the plan.
    pub first_op: u32,
    fields: [&'a [u8]; MAX_FIELDS],
}

impl Section<'_> {
    fn at<const N: usize>(&self, field: usize, i: usize) -> [u8; N] {
        let b = self.fields[field];
        let mut out = [0u8; N];
        out.copy_from_slice(&b[i * N..i * N + N]);
        out
    }

    #[must_use]
    pub fn u32(&self, field: usize, i: usize) -> u32 {
        u32::from_le_bytes(self.at::<4>(field, i))
    }

    #[must_use]
    pub fn u64(&self, field: usize, i: usize) -> u64 {
        u64::from_le_bytes(self.at::<8>(field, i))
    }

    #[must_use]
    pub fn handle(&self, field: usize, i: usize) -> Handle {
        Handle::from_bits(self.u64(field, i))
    }

    #[must_use]
    pub fn f32(&self, field: usize, i: usize) -> f32 {
        f32::from_le_bytes(self.at::<4>(field, i))
    }

    #[must_use]
    pub fn f32x3(&self, field: usize, i: usize) -> [f32; 3] {
        let b = self.at::<12>(field, i);
        std::array::from_fn(|k| f32::from_le_bytes([b[k * 4], b[k * 4 + 1], b[k * 4 + 2], b[k * 4 + 3]]))
    }

    #[must_use]
    pub fn f32x4(&self, field: usize, i: usize) -> [f32; 4] {
        let b = self.at::<16>(field, i);
        std::array::from_fn(|k| f32::from_le_bytes([b[k * 4], b[k * 4 + 1], b[k * 4 + 2], b[k * 4 + 3]]))
    }

    /// The raw little-endian bytes of one field array.
    #[must_use]
    pub fn field_bytes(&self, field: usize) -> &[u8] {
        self.fields[field]
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

/// xxh3-64 of the plan with the checksum field treated as zero.
#[must_use]
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&bytes[..CHECKSUM_AT]);
    h.update(&[0u8; 8]);
    h.update(&bytes[CHECKSUM_AT + 8..]);
    h.digest()
}

/// Recomputes and stores the checksum (tests and tools that edit plans).
pub fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= PLAN_HEADER_SIZE {
        let c = checksum(bytes);
        bytes[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&c.to_le_bytes());
    }
}

impl MicroPlan {
    /// Structural validation. Checks, in order: header size, magic, version,
    /// flags and reserved bytes, the per-plan byte cap, declared vs actual
    /// length, checksum, then every section table entry (known kind,
    /// ascending, counts within caps, exact lengths, alignment, bounds,
    /// no overlap).
    pub fn decode(bytes: Vec<u8>) -> Result<MicroPlan, DecodeError> {
        MicroPlan::decode_checked(bytes, true)
    }

    /// `decode`, verifying the checksum only when `verify_checksum` (false
    /// only for bytes this process's [`PlanBuilder`] just sealed: every
    /// structural check still runs).
    fn decode_checked(bytes: Vec<u8>, verify_checksum: bool) -> Result<MicroPlan, DecodeError> {
        let b = &bytes;
        if b.len() < PLAN_HEADER_SIZE {
            return err(Status::Truncated, format!("{} bytes, the header alone is {PLAN_HEADER_SIZE}", b.len()));
        }
        if b[0..4] != PLAN_MAGIC {
            return err(Status::BadMagic, format!("magic {:02x?}, expected {:?}", &b[0..4], std::str::from_utf8(&PLAN_MAGIC).unwrap_or("?")));
        }
        let version = le16(b, 4);
        if version != PLAN_VERSION {
            return err(Status::BadVersion, format!("version {version}, this build reads {PLAN_VERSION}"));
        }
        let flags = le16(b, 6);
        if flags != 0 {
            return err(Status::BadLayout, format!("flags {flags:#06x}: no flags are defined in v1"));
        }
        if le16(b, 38) != 0 || b[48..64].iter().any(|&x| x != 0) {
            return err(Status::BadLayout, "reserved header bytes are not zero");
        }
        let total = le32(b, 32) as usize;
        if total > MAX_PLAN_BYTES {
            return err(Status::PlanTooLarge, format!("declared length {total} exceeds the cap {MAX_PLAN_BYTES}"));
        }
        if b.len() < total {
            return err(Status::Truncated, format!("declared length {total}, only {} bytes present", b.len()));
        }
        if b.len() > total {
            return err(Status::BadLayout, format!("{} bytes after the declared length {total}", b.len() - total));
        }
        let stored = le64(b, CHECKSUM_AT);
        if verify_checksum {
            let computed = checksum(b);
            if stored != computed {
                return err(Status::BadChecksum, format!("stored {stored:#018x}, computed {computed:#018x}"));
            }
        }
        let header = PlanHeader {
            target_tick: Tick(le64(b, 8)),
            source: SourceId(le32(b, 16)),
            sequence: le32(b, 20),
            correlation: le64(b, 24),
        };
        let n = usize::from(le16(b, 36));
        if n > KINDS {
            return err(Status::BadLayout, format!("{n} sections, at most {KINDS} (one per op kind)"));
        }
        let table_end = PLAN_HEADER_SIZE + n * PLAN_SECTION_ENTRY_SIZE;
        if table_end > total {
            return err(Status::Truncated, format!("section table ends at {table_end}, plan is {total} bytes"));
        }
        let mut sections = [None; KINDS];
        let mut prev_kind = 0u16;
        let mut prev_end = table_end as u64;
        let mut ops = 0u64;
        for s in 0..n {
            let e = PLAN_HEADER_SIZE + s * PLAN_SECTION_ENTRY_SIZE;
            let raw_kind = le16(b, e);
            let Some(kind) = OpKind::from_u16(raw_kind) else {
                return err(Status::UnknownOp, format!("section {s}: op kind {raw_kind}"));
            };
            if le16(b, e + 2) != 0 {
                return err(Status::BadLayout, format!("section {s}: reserved bytes are not zero"));
            }
            if raw_kind <= prev_kind {
                return err(Status::BadLayout, format!("section {s}: kind {} after kind {prev_kind}: kinds must ascend, each at most once", raw_kind));
            }
            prev_kind = raw_kind;
            let count = le32(b, e + 4);
            let offset = u64::from(le32(b, e + 8));
            let length = u64::from(le32(b, e + 12));
            ops += u64::from(count);
            if count > MAX_OPS_PER_PLAN || ops > u64::from(MAX_OPS_PER_PLAN) {
                return err(Status::TooManyOps, format!("section {s} ({}): {ops} ops so far, cap {MAX_OPS_PER_PLAN}", kind.name()));
            }
            let (field_offsets, want) = section_layout(kind, count);
            if length != want {
                return err(Status::BadLayout, format!("section {s} ({}): length {length}, {count} ops need exactly {want}", kind.name()));
            }
            if offset % PLAN_ALIGN as u64 != 0 {
                return err(Status::BadLayout, format!("section {s} ({}): offset {offset} is not {PLAN_ALIGN}-byte aligned", kind.name()));
            }
            if offset < prev_end {
                return err(Status::BadLayout, format!("section {s} ({}): offset {offset} overlaps the table or the previous section (ends at {prev_end})", kind.name()));
            }
            if offset + length > total as u64 {
                return err(Status::BadLayout, format!("section {s} ({}): bytes {offset}..{} are past the end ({total})", kind.name(), offset + length));
            }
            prev_end = offset + length;
            sections[usize::from(raw_kind - 1)] = Some(SectionRef {
                count,
                offset: offset as u32,
                field_offsets: field_offsets.map(|f| f as u32),
            });
        }
        Ok(MicroPlan { header, checksum: stored, sections, op_count: ops as u32, bytes })
    }

    #[must_use]
    pub fn header(&self) -> &PlanHeader {
        &self.header
    }

    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    #[must_use]
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    #[must_use]
    pub fn op_count(&self) -> u32 {
        self.op_count
    }

    /// Sections present, in application order.
    pub fn sections(&self) -> impl Iterator<Item = Section<'_>> {
        let mut first = 0u32;
        OpKind::ALL.into_iter().filter_map(move |kind| {
            let s = self.sections[kind as usize - 1]?;
            let mut fields: [&[u8]; MAX_FIELDS] = [&[]; MAX_FIELDS];
            for (i, f) in kind.fields().iter().enumerate() {
                let start = s.offset as usize + s.field_offsets[i] as usize;
                fields[i] = &self.bytes[start..start + s.count as usize * f.size as usize];
            }
            let sec = Section { kind, count: s.count as usize, first_op: first, fields };
            first += s.count;
            Some(sec)
        })
    }

    #[must_use]
    pub fn section(&self, kind: OpKind) -> Option<Section<'_>> {
        self.sections().find(|s| s.kind == kind)
    }

    /// Every op, decoded one by one (for inspection and tests; the world
    /// reads sections directly).
    #[must_use]
    pub fn ops(&self) -> Vec<Op> {
        let mut out = Vec::with_capacity(self.op_count as usize);
        for s in self.sections() {
            for i in 0..s.count {
                out.push(match s.kind {
                    OpKind::Spawn => Op::Spawn {
                        archetype: s.u32(0, i),
                        shape: s.u32(1, i),
                        position: s.f32x3(2, i),
                        rotation: s.f32x4(3, i),
                        linvel: s.f32x3(4, i),
                        angvel: s.f32x3(5, i),
                    },
                    OpKind::Despawn => Op::Despawn { handle: s.handle(0, i) },
                    OpKind::SetVelocity => Op::SetVelocity { handle: s.handle(0, i), linvel: s.f32x3(1, i), angvel: s.f32x3(2, i) },
                    OpKind::ApplyImpulse => Op::ApplyImpulse { handle: s.handle(0, i), impulse: s.f32x3(1, i) },
                    OpKind::MoveTo => Op::MoveTo { handle: s.handle(0, i), target: s.f32x3(1, i), max_speed: s.f32(2, i) },
                    OpKind::Raycast => Op::Raycast { origin: s.f32x3(0, i), direction: s.f32x3(1, i), max_distance: s.f32(2, i) },
                    OpKind::Overlap => Op::Overlap { min: s.f32x3(0, i), max: s.f32x3(1, i) },
                    OpKind::Grant => Op::Grant { handle: s.handle(0, i), owner: s.u32(1, i) },
                    OpKind::Command => Op::Command {
                        handle: s.handle(0, i),
                        sequence: s.u32(1, i),
                        buttons: s.u32(2, i),
                        movement: s.f32x3(3, i),
                        yaw: s.f32(4, i),
                        pitch: s.f32(5, i),
                        rewind: s.u32(6, i),
                    },
                    OpKind::GraphUpload => Op::GraphWord { word: s.u32(0, i) },
                    OpKind::GraphBind => Op::GraphBind { handle: s.handle(0, i), graph: s.u64(1, i) },
                });
            }
        }
        out
    }
}

/// One op, as a value (builder input and inspection output). The `Spawn`
/// archetype is the raw wire value so that invalid ones can be expressed
/// (and rejected by the world).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Spawn { archetype: u32, shape: u32, position: [f32; 3], rotation: [f32; 4], linvel: [f32; 3], angvel: [f32; 3] },
    Despawn { handle: Handle },
    SetVelocity { handle: Handle, linvel: [f32; 3], angvel: [f32; 3] },
    ApplyImpulse { handle: Handle, impulse: [f32; 3] },
    MoveTo { handle: Handle, target: [f32; 3], max_speed: f32 },
    Raycast { origin: [f32; 3], direction: [f32; 3], max_distance: f32 },
    Overlap { min: [f32; 3], max: [f32; 3] },
    /// Authority only: give an entity to a source.
    Grant { handle: Handle, owner: u32 },
    /// A player's input command for its avatar (the IDL's `move` field is
    /// `movement` here).
    Command { handle: Handle, sequence: u32, buttons: u32, movement: [f32; 3], yaw: f32, pitch: f32, rewind: u32 },
    /// One little-endian word of a behaviour graph (`graph_upload`; see
    /// [`PlanBuilder::graph_upload`]).
    GraphWord { word: u32 },
    /// Run graph `graph` (0: none) for the entity (`graph_bind`).
    GraphBind { handle: Handle, graph: u64 },
}

impl Op {
    #[must_use]
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Spawn { .. } => OpKind::Spawn,
            Op::Despawn { .. } => OpKind::Despawn,
            Op::SetVelocity { .. } => OpKind::SetVelocity,
            Op::ApplyImpulse { .. } => OpKind::ApplyImpulse,
            Op::MoveTo { .. } => OpKind::MoveTo,
            Op::Raycast { .. } => OpKind::Raycast,
            Op::Overlap { .. } => OpKind::Overlap,
            Op::Grant { .. } => OpKind::Grant,
            Op::Command { .. } => OpKind::Command,
            Op::GraphWord { .. } => OpKind::GraphUpload,
            Op::GraphBind { .. } => OpKind::GraphBind,
        }
    }

    /// A spawn of a valid archetype with identity rotation and no velocity.
    #[must_use]
    pub fn spawn(archetype: Archetype, shape: u32, position: [f32; 3]) -> Op {
        Op::Spawn { archetype: archetype as u32, shape, position, rotation: [0.0, 0.0, 0.0, 1.0], linvel: [0.0; 3], angvel: [0.0; 3] }
    }
}

fn push_f32s(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Builds microplan bytes. Ops are grouped into sections by kind (so the
/// application order is kind order, then insertion order within a kind).
#[derive(Clone, Debug)]
pub struct PlanBuilder {
    header: PlanHeader,
    counts: [u32; KINDS],
    /// Per kind, per field: the field array's bytes.
    fields: [[Vec<u8>; MAX_FIELDS]; KINDS],
}

impl PlanBuilder {
    #[must_use]
    pub fn new(target_tick: Tick, source: SourceId, sequence: u32) -> PlanBuilder {
        PlanBuilder {
            header: PlanHeader { target_tick, source, sequence, correlation: 0 },
            counts: [0; KINDS],
            fields: Default::default(),
        }
    }

    #[must_use]
    pub fn correlation(mut self, c: u64) -> PlanBuilder {
        self.header.correlation = c;
        self
    }

    pub fn push(&mut self, op: Op) -> &mut PlanBuilder {
        let k = op.kind() as usize - 1;
        self.counts[k] += 1;
        let f = &mut self.fields[k];
        match op {
            Op::Spawn { archetype, shape, position, rotation, linvel, angvel } => {
                f[0].extend_from_slice(&archetype.to_le_bytes());
                f[1].extend_from_slice(&shape.to_le_bytes());
                push_f32s(&mut f[2], &position);
                push_f32s(&mut f[3], &rotation);
                push_f32s(&mut f[4], &linvel);
                push_f32s(&mut f[5], &angvel);
            }
            Op::Despawn { handle } => f[0].extend_from_slice(&handle.to_le_bytes()),
            Op::SetVelocity { handle, linvel, angvel } => {
                f[0].extend_from_slice(&handle.to_le_bytes());
                push_f32s(&mut f[1], &linvel);
                push_f32s(&mut f[2], &angvel);
            }
            Op::ApplyImpulse { handle, impulse } => {
                f[0].extend_from_slice(&handle.to_le_bytes());
                push_f32s(&mut f[1], &impulse);
            }
            Op::MoveTo { handle, target, max_speed } => {
                f[0].extend_from_slice(&handle.to_le_bytes());
                push_f32s(&mut f[1], &target);
                push_f32s(&mut f[2], &[max_speed]);
            }
            Op::Raycast { origin, direction, max_distance } => {
                push_f32s(&mut f[0], &origin);
                push_f32s(&mut f[1], &direction);
                push_f32s(&mut f[2], &[max_distance]);
            }
            Op::Overlap { min, max } => {
                push_f32s(&mut f[0], &min);
                push_f32s(&mut f[1], &max);
            }
            Op::Grant { handle, owner } => {
                f[0].extend_from_slice(&handle.to_le_bytes());
                f[1].extend_from_slice(&owner.to_le_bytes());
            }
            Op::Command { handle, sequence, buttons, movement, yaw, pitch, rewind } => {
                f[0].extend_from_slice(&handle.to_le_bytes());
                f[1].extend_from_slice(&sequence.to_le_bytes());
                f[2].extend_from_slice(&buttons.to_le_bytes());
                push_f32s(&mut f[3], &movement);
                push_f32s(&mut f[4], &[yaw]);
                push_f32s(&mut f[5], &[pitch]);
                f[6].extend_from_slice(&rewind.to_le_bytes());
            }
            Op::GraphWord { word } => f[0].extend_from_slice(&word.to_le_bytes()),
            Op::GraphBind { handle, graph } => {
                f[0].extend_from_slice(&handle.to_le_bytes());
                f[1].extend_from_slice(&graph.to_le_bytes());
            }
        }
        self
    }

    /// Ops of one kind added so far.
    #[must_use]
    pub fn count(&self, kind: OpKind) -> u32 {
        self.counts[kind as usize - 1]
    }

    /// Adds a behaviour graph's bytes as `graph_upload` words (a length
    /// that is not a multiple of 4 is zero-padded, which the world refuses
    /// as `GRAPH_MALFORMED`).
    pub fn graph_upload(&mut self, bytes: &[u8]) -> &mut PlanBuilder {
        for c in bytes.chunks(4) {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            self.push(Op::GraphWord { word: u32::from_le_bytes(w) });
        }
        self
    }

    /// Appends a whole batch of one kind from raw little-endian field arrays
    /// (the Python bindings hand numpy buffers straight in). Each array must
    /// hold exactly `count` elements of its field's size.
    pub fn push_batch(&mut self, kind: OpKind, count: u32, arrays: &[&[u8]]) -> Result<&mut PlanBuilder, String> {
        let fields = kind.fields();
        if arrays.len() != fields.len() {
            return Err(format!("{}: expected {} field arrays, got {}", kind.name(), fields.len(), arrays.len()));
        }
        for (f, a) in fields.iter().zip(arrays) {
            let want = count as usize * f.size as usize;
            if a.len() != want {
                return Err(format!("{}.{}: expected {want} bytes ({count} x {}), got {}", kind.name(), f.name, f.size, a.len()));
            }
        }
        let k = kind as usize - 1;
        self.counts[k] += count;
        for (dst, a) in self.fields[k].iter_mut().zip(arrays) {
            dst.extend_from_slice(a);
        }
        Ok(self)
    }

    #[must_use]
    pub fn op_count(&self) -> u32 {
        self.counts.iter().sum()
    }

    /// The plan's bytes (canonical: sections packed in kind order with
    /// alignment padding only).
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let present: Vec<OpKind> = OpKind::ALL.into_iter().filter(|k| self.counts[*k as usize - 1] > 0).collect();
        let table_end = PLAN_HEADER_SIZE + present.len() * PLAN_SECTION_ENTRY_SIZE;
        // One allocation: header, table and every section with its padding.
        let sections: usize = present.iter().map(|k| section_layout(*k, self.counts[*k as usize - 1]).1 as usize + PLAN_ALIGN).sum();
        let mut out = Vec::with_capacity(table_end + sections);
        out.resize(table_end, 0u8);
        out[0..4].copy_from_slice(&PLAN_MAGIC);
        out[4..6].copy_from_slice(&PLAN_VERSION.to_le_bytes());
        out[8..16].copy_from_slice(&self.header.target_tick.0.to_le_bytes());
        out[16..20].copy_from_slice(&self.header.source.0.to_le_bytes());
        out[20..24].copy_from_slice(&self.header.sequence.to_le_bytes());
        out[24..32].copy_from_slice(&self.header.correlation.to_le_bytes());
        out[36..38].copy_from_slice(&(present.len() as u16).to_le_bytes());
        for (s, kind) in present.iter().enumerate() {
            let k = *kind as usize - 1;
            let count = self.counts[k];
            let (offsets, len) = section_layout(*kind, count);
            let start = align(out.len() as u64) as usize;
            out.resize(start, 0);
            for (i, f) in kind.fields().iter().enumerate() {
                out.resize(start + offsets[i] as usize, 0);
                debug_assert_eq!(self.fields[k][i].len(), count as usize * f.size as usize);
                out.extend_from_slice(&self.fields[k][i]);
            }
            let e = PLAN_HEADER_SIZE + s * PLAN_SECTION_ENTRY_SIZE;
            out[e..e + 2].copy_from_slice(&(*kind as u16).to_le_bytes());
            out[e + 4..e + 8].copy_from_slice(&count.to_le_bytes());
            out[e + 8..e + 12].copy_from_slice(&(start as u32).to_le_bytes());
            out[e + 12..e + 16].copy_from_slice(&(len as u32).to_le_bytes());
        }
        let total = out.len() as u32;
        out[32..36].copy_from_slice(&total.to_le_bytes());
        reseal(&mut out);
        out
    }

    /// The plan itself, built and sealed here, so its checksum is not
    /// computed a second time to verify it (in-process submit paths).
    pub fn build_plan(&self) -> Result<MicroPlan, DecodeError> {
        MicroPlan::decode_checked(self.build(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_plan_equals_decoding_the_built_bytes() {
        let mut b = PlanBuilder::new(Tick(5), SourceId(3), 9);
        b.push(Op::Despawn { handle: crate::Handle::new(7, 1, 0) }).push(Op::MoveTo { handle: crate::Handle::new(8, 1, 0), target: [1.0, 2.0, 3.0], max_speed: 2.5 });
        let direct = b.build_plan().expect("a built plan");
        assert_eq!(direct, MicroPlan::decode(b.build()).expect("decodes"));
        assert_eq!(direct.checksum(), checksum(direct.bytes()), "sealed with its real checksum");
    }

    fn sample() -> Vec<u8> {
        let mut b = PlanBuilder::new(Tick(5), SourceId(3), 9).correlation(77);
        b.push(Op::spawn(Archetype::Prop, 1, [1.0, 2.0, 3.0]));
        b.push(Op::SetVelocity { handle: Handle::new(4, 1, 0), linvel: [1.0, 0.0, 0.0], angvel: [0.0; 3] });
        b.push(Op::Raycast { origin: [0.0; 3], direction: [0.0, -1.0, 0.0], max_distance: 10.0 });
        b.build()
    }

    #[test]
    fn roundtrip_and_alignment() {
        let bytes = sample();
        assert!(bytes.len() > 64);
        let p = MicroPlan::decode(bytes.clone()).expect("decode");
        assert_eq!(p.header(), &PlanHeader { target_tick: Tick(5), source: SourceId(3), sequence: 9, correlation: 77 });
        assert_eq!(p.op_count(), 3);
        let ops = p.ops();
        let mut b = PlanBuilder::new(Tick(5), SourceId(3), 9).correlation(77);
        for op in &ops {
            b.push(*op);
        }
        assert_eq!(b.build(), bytes);
        for s in p.sections() {
            let (offs, _) = section_layout(s.kind, s.count as u32);
            for (i, _) in s.kind.fields().iter().enumerate() {
                assert_eq!(offs[i] % 16, 0);
            }
        }
    }

    #[test]
    fn empty_plan_is_valid() {
        let p = MicroPlan::decode(PlanBuilder::new(Tick(1), SourceId(1), 1).build()).expect("empty");
        assert_eq!(p.op_count(), 0);
    }

    #[test]
    fn push_batch_checks_lengths() {
        let mut b = PlanBuilder::new(Tick(1), SourceId(1), 1);
        assert!(b.push_batch(OpKind::Despawn, 2, &[&[0u8; 16]]).is_ok());
        assert!(b.push_batch(OpKind::Despawn, 2, &[&[0u8; 15]]).is_err());
        assert!(b.push_batch(OpKind::Despawn, 1, &[]).is_err());
    }
}
