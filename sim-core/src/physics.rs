//! The physics port and its rapier3d adapter.
//!
//! sim-core talks to physics only through [`PhysicsPort`]; [`RapierPhysics`]
//! is the one adapter. rapier is built with `enhanced-determinism` and runs
//! single-threaded. The adapter's persistent state is rapier's
//! [`PhysicsWorld`] (bodies, colliders, islands, broad and narrow phase,
//! joints, integration parameters); the pipelines inside it are scratch and
//! are not serialized (rapier's own split).

use rapier3d::prelude::*;

/// A body in the physics backend: rapier's handle as raw (index, generation),
/// so it has a fixed encoding in snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BodyKey {
    pub index: u32,
    pub generation: u32,
}

impl BodyKey {
    fn rapier(self) -> RigidBodyHandle {
        RigidBodyHandle::from_raw_parts(self.index, self.generation)
    }

    fn from_rapier(h: RigidBodyHandle) -> BodyKey {
        let (index, generation) = h.into_raw_parts();
        BodyKey { index, generation }
    }
}

/// A collider shape, in metres.
#[derive(Clone, Copy, Debug, PartialEq)]
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Shape {
    Cuboid { half_extents: [f32; 3] },
    Ball { radius: f32 },
    /// Along local Y.
    Capsule { half_height: f32, radius: f32 },
}

/// A shape plus its material.
#[derive(Clone, Copy, Debug, PartialEq)]
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ShapeSpec {
    pub shape: Shape,
    pub density: f32,
    pub friction: f32,
    pub restitution: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Motion {
    Dynamic,
    Kinematic,
    Fixed,
}

/// Everything needed to create a body.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BodyDesc {
    pub motion: Motion,
    pub shape: ShapeSpec,
    pub position: [f32; 3],
    /// Quaternion (x, y, z, w).
    pub rotation: [f32; 4],
    pub linvel: [f32; 3],
    pub angvel: [f32; 3],
}

/// A body's state as the sync phase reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BodyState {
    pub position: [f32; 3],
    pub rotation: [f32; 4],
    pub linvel: [f32; 3],
    pub angvel: [f32; 3],
}

#[derive(Debug, thiserror::Error)]
pub enum PhysicsError {
    #[error("physics state does not decode: {0}")]
    Decode(String),
    #[error("physics state does not encode: {0}")]
    Encode(String),
}

/// What sim-core needs from a physics engine.
pub trait PhysicsPort {
    /// Adds a body tagged with `tag` (the entity handle's bits), which
    /// queries report back.
    fn add_body(&mut self, desc: &BodyDesc, tag: u64) -> BodyKey;
    fn remove_body(&mut self, key: BodyKey) -> bool;
    fn contains(&self, key: BodyKey) -> bool;
    /// One fixed step of `1 / tick_rate` seconds.
    fn step(&mut self);
    fn body_state(&self, key: BodyKey) -> Option<BodyState>;
    fn set_velocity(&mut self, key: BodyKey, linvel: [f32; 3], angvel: [f32; 3]);
    /// Moves a body to `position` at once (no sweep: nothing in between is pushed).
    fn teleport(&mut self, key: BodyKey, position: [f32; 3]);
    fn apply_impulse(&mut self, key: BodyKey, impulse: [f32; 3]);
    /// Sets where a kinematic body will be after the next step.
    fn set_kinematic_target(&mut self, key: BodyKey, position: [f32; 3]);
    /// Contact pairs with at least one active contact point.
    fn active_contact_pairs(&self) -> u32;
    /// Bodies currently awake.
    fn active_bodies(&self) -> u32;
    /// First hit along a ray: (tag of the body hit, or `STATIC_TAG`; distance).
    fn raycast(&self, origin: [f32; 3], dir: [f32; 3], max_distance: f32) -> Option<(u64, f32)>;
    /// Tags of bodies whose collider AABBs overlap the box (unsorted).
    fn overlap(&self, min: [f32; 3], max: [f32; 3], out: &mut Vec<u64>);
    fn save(&self) -> Result<Vec<u8>, PhysicsError>;
    fn load(bytes: &[u8]) -> Result<Self, PhysicsError>
    where
        Self: Sized;
}

/// The tag of static geometry (ground, walls).
pub const STATIC_TAG: u64 = u64::MAX;

/// rapier3d behind the physics port.
pub struct RapierPhysics {
    world: PhysicsWorld,
}

impl std::fmt::Debug for RapierPhysics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RapierPhysics").field("bodies", &self.world.bodies.len()).finish()
    }
}

fn v3(a: [f32; 3]) -> Vector {
    Vector::new(a[0], a[1], a[2])
}

/// bincode's standard config: little-endian, varint integers (rapier's
/// state is mostly small indices; varints halve the snapshot).
fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// A copy of the simulation state (bodies, colliders, islands, broad and
/// narrow phase, joints, parameters), for saving it on another thread: the
/// pipelines and the CCD solver are workspaces, rebuilt fresh, exactly as
/// `load` rebuilds them (so a clone steps like a restored snapshot).
impl Clone for RapierPhysics {
    fn clone(&self) -> RapierPhysics {
        let w = &self.world;
        RapierPhysics {
            world: PhysicsWorld {
                gravity: w.gravity,
                integration_parameters: w.integration_parameters,
                islands: w.islands.clone(),
                broad_phase: w.broad_phase.clone(),
                narrow_phase: w.narrow_phase.clone(),
                bodies: w.bodies.clone(),
                colliders: w.colliders.clone(),
                impulse_joints: w.impulse_joints.clone(),
                multibody_joints: w.multibody_joints.clone(),
                soft_bodies: w.soft_bodies.clone(),
                ..PhysicsWorld::default()
            },
        }
    }
}

impl RapierPhysics {
    #[must_use]
    pub fn new(gravity: [f32; 3], tick_rate: u32) -> RapierPhysics {
        let mut world = PhysicsWorld::new();
        world.gravity = v3(gravity);
        world.integration_parameters.dt = 1.0 / tick_rate as f32;
        RapierPhysics { world }
    }

    /// A static box (ground, walls).
    pub fn add_fixed_box(&mut self, center: [f32; 3], half_extents: [f32; 3], friction: f32) {
        let body = RigidBodyBuilder::fixed().translation(v3(center)).user_data(u128::from(STATIC_TAG));
        let collider = ColliderBuilder::cuboid(half_extents[0], half_extents[1], half_extents[2]).friction(friction);
        self.world.insert(body, collider);
    }

    fn tag_of(&self, collider: ColliderHandle) -> u64 {
        self.world
            .colliders
            .get(collider)
            .and_then(|c| c.parent())
            .and_then(|b| self.world.bodies.get(b))
            .map_or(STATIC_TAG, |b| b.user_data as u64)
    }

    /// Raw rapier access, for benchmarks that measure rapier alone.
    pub fn raw_step(&mut self) {
        self.world.step();
    }

    /// Raw rapier: sets the velocity of every dynamic body (waking it), the
    /// floor `bench plan` holds a validated set-velocity plan against.
    /// Returns the bodies set.
    pub fn raw_set_velocity_all(&mut self, linvel: [f32; 3], angvel: [f32; 3]) -> usize {
        let mut n = 0;
        for (_, b) in self.world.bodies.iter_mut() {
            if b.is_dynamic() {
                b.set_linvel(v3(linvel), true);
                b.set_angvel(v3(angvel), true);
                n += 1;
            }
        }
        n
    }

    #[must_use]
    pub fn rapier(&self) -> &PhysicsWorld {
        &self.world
    }
}

impl PhysicsPort for RapierPhysics {
    fn add_body(&mut self, d: &BodyDesc, tag: u64) -> BodyKey {
        let builder = match d.motion {
            Motion::Dynamic => RigidBodyBuilder::dynamic(),
            Motion::Kinematic => RigidBodyBuilder::kinematic_position_based(),
            Motion::Fixed => RigidBodyBuilder::fixed(),
        };
        let [x, y, z, w] = d.rotation;
        let pose = Pose::from_parts(v3(d.position), Rotation::from_xyzw(x, y, z, w).normalize());
        let body = builder.pose(pose).linvel(v3(d.linvel)).angvel(v3(d.angvel)).user_data(u128::from(tag));
        let s = &d.shape;
        let collider = match s.shape {
            Shape::Cuboid { half_extents: [hx, hy, hz] } => ColliderBuilder::cuboid(hx, hy, hz),
            Shape::Ball { radius } => ColliderBuilder::ball(radius),
            Shape::Capsule { half_height, radius } => ColliderBuilder::capsule_y(half_height, radius),
        }
        .density(s.density)
        .friction(s.friction)
        .restitution(s.restitution);
        let (h, _) = self.world.insert(body, collider);
        BodyKey::from_rapier(h)
    }

    fn remove_body(&mut self, key: BodyKey) -> bool {
        self.world.remove_body(key.rapier()).is_some()
    }

    fn contains(&self, key: BodyKey) -> bool {
        self.world.bodies.contains(key.rapier())
    }

    fn step(&mut self) {
        self.world.step();
    }

    fn body_state(&self, key: BodyKey) -> Option<BodyState> {
        let b = self.world.bodies.get(key.rapier())?;
        let t = b.translation();
        let r = b.rotation();
        let l = b.linvel();
        let a = b.angvel();
        Some(BodyState {
            position: [t.x, t.y, t.z],
            rotation: [r.x, r.y, r.z, r.w],
            linvel: [l.x, l.y, l.z],
            angvel: [a.x, a.y, a.z],
        })
    }

    fn set_velocity(&mut self, key: BodyKey, linvel: [f32; 3], angvel: [f32; 3]) {
        if let Some(b) = self.world.bodies.get_mut(key.rapier()) {
            b.set_linvel(v3(linvel), true);
            b.set_angvel(v3(angvel), true);
        }
    }

    fn apply_impulse(&mut self, key: BodyKey, impulse: [f32; 3]) {
        if let Some(b) = self.world.bodies.get_mut(key.rapier()) {
            b.apply_impulse(v3(impulse), true);
        }
    }

    fn teleport(&mut self, key: BodyKey, position: [f32; 3]) {
        if let Some(b) = self.world.bodies.get_mut(key.rapier()) {
            b.set_translation(v3(position), true);
            if b.is_kinematic() {
                b.set_next_kinematic_translation(v3(position));
            }
        }
    }

    fn set_kinematic_target(&mut self, key: BodyKey, position: [f32; 3]) {
        if let Some(b) = self.world.bodies.get_mut(key.rapier()) {
            b.set_next_kinematic_translation(v3(position));
        }
    }

    fn active_contact_pairs(&self) -> u32 {
        self.world.narrow_phase.contact_pairs().filter(|p| p.has_any_active_contact()).count() as u32
    }

    fn active_bodies(&self) -> u32 {
        self.world.islands.active_bodies().count() as u32
    }

    fn raycast(&self, origin: [f32; 3], dir: [f32; 3], max_distance: f32) -> Option<(u64, f32)> {
        let ray = Ray::new(v3(origin), v3(dir));
        let (collider, toi) = self.world.cast_ray(&ray, max_distance, true, QueryFilter::default())?;
        Some((self.tag_of(collider), toi))
    }

    fn overlap(&self, min: [f32; 3], max: [f32; 3], out: &mut Vec<u64>) {
        let aabb = Aabb::new(v3(min), v3(max));
        for (h, _) in self.world.intersect_aabb_conservative(aabb, QueryFilter::default()) {
            let tag = self.tag_of(h);
            if tag != STATIC_TAG {
                out.push(tag);
            }
        }
    }

    fn save(&self) -> Result<Vec<u8>, PhysicsError> {
        bincode::serde::encode_to_vec(&self.world, bincode_config()).map_err(|e| PhysicsError::Encode(e.to_string()))
    }

    fn load(bytes: &[u8]) -> Result<RapierPhysics, PhysicsError> {
        // The limit bounds every length prefix, so hostile bytes cannot ask
        // for a huge allocation: nothing decoded can exceed the input size.
        let config = bincode_config().with_limit::<{ 1 << 30 }>();
        let (world, used): (PhysicsWorld, usize) =
            bincode::serde::decode_from_slice(bytes, config).map_err(|e| PhysicsError::Decode(e.to_string()))?;
        if used != bytes.len() {
            return Err(PhysicsError::Decode(format!("{} trailing bytes", bytes.len() - used)));
        }
        Ok(RapierPhysics { world })
    }
}
