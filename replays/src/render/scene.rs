//! What a frame draws: a plain copy of the world's shapes and poses, cheap
//! to take on the tick thread and render elsewhere.

use sim_core::physics::{Shape, ShapeSpec};
use sim_core::{Archetype, ColumnId, World};

/// One drawn body.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Instance {
    pub shape: u32,
    pub archetype: u8,
    pub pos: [f32; 3],
    pub rot: [f32; 4],
}

/// A fixed camera.
#[derive(Clone, Debug, PartialEq)]
pub struct Camera {
    pub name: String,
    pub eye: [f32; 3],
    pub target: [f32; 3],
    pub fov_y_degrees: f32,
}

/// Everything the renderer needs from a world.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub tick: u64,
    pub shapes: Vec<Shape>,
    pub half_extents: [f32; 2],
    pub instances: Vec<Instance>,
}

impl Scene {
    #[must_use]
    pub fn from_world(w: &World) -> Scene {
        let mut instances = Vec::with_capacity(w.entity_count());
        for a in Archetype::ALL {
            let t = w.table(a);
            let c = |id| t.f32(id);
            let (px, py, pz) = (c(ColumnId::PosX), c(ColumnId::PosY), c(ColumnId::PosZ));
            let (rx, ry, rz, rw) = (c(ColumnId::RotX), c(ColumnId::RotY), c(ColumnId::RotZ), c(ColumnId::RotW));
            for (i, &shape) in t.u32(ColumnId::Shape).iter().enumerate() {
                instances.push(Instance { shape, archetype: a as u8, pos: [px[i], py[i], pz[i]], rot: [rx[i], ry[i], rz[i], rw[i]] });
            }
        }
        Scene {
            tick: w.tick().0,
            shapes: w.shapes().iter().map(|s: &ShapeSpec| s.shape).collect(),
            half_extents: w.config().half_extents,
            instances,
        }
    }

    /// Built-in cameras scaled to the arena: "overview" (oblique) and "top".
    #[must_use]
    pub fn default_cameras(&self) -> Vec<Camera> {
        let h = self.half_extents[0].max(self.half_extents[1]);
        vec![
            Camera { name: "overview".into(), eye: [0.0, 0.8 * h, 1.1 * h], target: [0.0, 0.0, 0.0], fov_y_degrees: 60.0 },
            Camera { name: "top".into(), eye: [0.0, 1.8 * h, 0.01], target: [0.0, 0.0, 0.0], fov_y_degrees: 60.0 },
        ]
    }
}

/// Column-major 4x4.
pub type Mat4 = [[f32; 4]; 4];

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn norm(a: [f32; 3]) -> [f32; 3] {
    let l = dot(a, a).sqrt();
    [a[0] / l, a[1] / l, a[2] / l]
}

/// Right-handed look-at view times a 0..1-depth perspective projection.
#[must_use]
pub fn view_proj(cam: &Camera, aspect: f32) -> Mat4 {
    let f = norm(sub(cam.target, cam.eye));
    let s = norm(cross(f, [0.0, 1.0, 0.0]));
    let u = cross(s, f);
    let view: Mat4 = [
        [s[0], u[0], -f[0], 0.0],
        [s[1], u[1], -f[1], 0.0],
        [s[2], u[2], -f[2], 0.0],
        [-dot(s, cam.eye), -dot(u, cam.eye), dot(f, cam.eye), 1.0],
    ];
    let (near, far) = (0.1f32, 1000.0f32);
    let t = 1.0 / (cam.fov_y_degrees.to_radians() * 0.5).tan();
    let proj: Mat4 = [
        [t / aspect, 0.0, 0.0, 0.0],
        [0.0, t, 0.0, 0.0],
        [0.0, 0.0, far / (near - far), -1.0],
        [0.0, 0.0, near * far / (near - far), 0.0],
    ];
    let mut out = [[0.0f32; 4]; 4];
    for (c, col) in out.iter_mut().enumerate() {
        for (r, v) in col.iter_mut().enumerate() {
            *v = (0..4).map(|k| proj[k][r] * view[c][k]).sum();
        }
    }
    out
}

/// Vertex: position and normal.
pub type Vertex = [f32; 6];

/// Triangle mesh of one shape, in its local frame.
#[must_use]
pub fn mesh(shape: &Shape) -> (Vec<Vertex>, Vec<u32>) {
    match *shape {
        Shape::Cuboid { half_extents: [x, y, z] } => cuboid(x, y, z),
        Shape::Ball { radius } => capsule(0.0, radius),
        Shape::Capsule { half_height, radius } => capsule(half_height, radius),
    }
}

fn cuboid(x: f32, y: f32, z: f32) -> (Vec<Vertex>, Vec<u32>) {
    let faces: [([f32; 3], [f32; 3], [f32; 3]); 6] = [
        ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]),
        ([-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]),
        ([0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]),
        ([0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]),
        ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
        ([0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]),
    ];
    let (mut v, mut idx) = (Vec::new(), Vec::new());
    for (n, a, b) in faces {
        let base = v.len() as u32;
        for (sa, sb) in [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)] {
            let p = [0, 1, 2].map(|k| (n[k] + a[k] * sa + b[k] * sb) * [x, y, z][k]);
            v.push([p[0], p[1], p[2], n[0], n[1], n[2]]);
        }
        idx.extend_from_slice(&[base, base + 1, base + 2, base, base + 2, base + 3]);
    }
    (v, idx)
}

/// A capsule along Y (a sphere when `half_height` is 0).
fn capsule(half_height: f32, r: f32) -> (Vec<Vertex>, Vec<u32>) {
    const RINGS: u32 = 8; // even: ring RINGS/2 is the equator (emitted twice)
    const SEGS: u32 = 12;
    let mut rings: Vec<(f32, f32)> = Vec::new(); // (phi, y offset)
    for i in 0..=RINGS / 2 {
        rings.push((std::f32::consts::PI * i as f32 / RINGS as f32, half_height));
    }
    for i in RINGS / 2..=RINGS {
        rings.push((std::f32::consts::PI * i as f32 / RINGS as f32, -half_height));
    }
    let mut v = Vec::new();
    for &(phi, off) in &rings {
        for s in 0..=SEGS {
            let th = std::f32::consts::TAU * s as f32 / SEGS as f32;
            let n = [phi.sin() * th.cos(), phi.cos(), phi.sin() * th.sin()];
            v.push([n[0] * r, n[1] * r + off, n[2] * r, n[0], n[1], n[2]]);
        }
    }
    let mut idx = Vec::new();
    let w = SEGS + 1;
    for i in 0..rings.len() as u32 - 1 {
        for s in 0..SEGS {
            let (a, b, c, d) = (i * w + s, i * w + s + 1, (i + 1) * w + s, (i + 1) * w + s + 1);
            idx.extend_from_slice(&[a, c, b, b, c, d]);
        }
    }
    (v, idx)
}

/// Colour by archetype (props vary a little by shape).
#[must_use]
pub fn color(archetype: u8, shape: u32) -> [f32; 4] {
    match archetype {
        1 => [0.2, 0.45, 0.95, 1.0],
        2 => [0.25, 0.85, 0.35, 1.0],
        _ => {
            let k = (shape % 4) as f32 * 0.08;
            [0.95 - k, 0.55 + k, 0.2, 1.0]
        }
    }
}
