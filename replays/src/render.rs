//! Offscreen verification frames (cargo feature `render`, on by default):
//! the world's bodies drawn headless with wgpu on a GPU or on Mesa's
//! lavapipe (CPU), PNG out, golden-image checks with a tolerance.

pub mod compare;
pub mod gpu;
pub mod scene;

pub use compare::{check_golden, compare, read_png, write_png, Comparison, Tolerance};
pub use gpu::{FrameJournal, Image, RenderError, Renderer};
pub use scene::{Camera, Scene};

/// Picks a camera by name from the scene's defaults and `extra` (scenario
/// cameras win over built-ins of the same name).
pub fn camera(scene: &Scene, extra: &[Camera], name: &str) -> Result<Camera, RenderError> {
    let defaults = scene.default_cameras();
    extra
        .iter()
        .chain(defaults.iter())
        .find(|c| c.name == name)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = extra.iter().chain(defaults.iter()).map(|c| c.name.as_str()).collect();
            RenderError::Camera(name.to_string(), names.join(", "))
        })
}
