//! RGB frames of a world from the offscreen renderer (wgpu on a GPU or on
//! Mesa's lavapipe), for `Sim.render` and `SimPool.render` (and so for the
//! environments' `render()`). One renderer per process, made on first use.

use crate::value_error;
use numpy::{IntoPyArray, PyArray3, PyArrayMethods};
use pyo3::prelude::*;
use replays::render::{Renderer, Scene};
use sim_core::World;
use std::sync::{Mutex, OnceLock};

static RENDERER: OnceLock<Result<Mutex<Renderer>, String>> = OnceLock::new();

/// The largest frame edge, in pixels.
const MAX_EDGE: u32 = 4096;

/// `world` drawn from `camera` ("overview" or "top") as uint8[height,
/// width, 3]; the GIL is released while drawing.
pub(crate) fn frame<'py>(py: Python<'py>, world: &World, width: u32, height: u32, camera: &str) -> PyResult<Bound<'py, PyArray3<u8>>> {
    if width == 0 || height == 0 || width > MAX_EDGE || height > MAX_EDGE {
        return Err(value_error(format!("render: width and height must be 1..={MAX_EDGE}, got {width}x{height}")));
    }
    let scene = Scene::from_world(world);
    let cam = replays::render::camera(&scene, &[], camera).map_err(|e| value_error(format!("render: {e}")))?;
    let rgb = py.detach(|| -> Result<Vec<u8>, String> {
        let r = RENDERER.get_or_init(|| Renderer::new().map(Mutex::new).map_err(|e| e.to_string())).as_ref().map_err(Clone::clone)?;
        let r = r.lock().map_err(|_| "the renderer panicked earlier".to_string())?;
        let (img, _) = r.render(&scene, &cam, width, height).map_err(|e| e.to_string())?;
        Ok(img.rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect())
    });
    let rgb = rgb.map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("render: no renderer ({e}); install Mesa's lavapipe (mesa-vulkan-drivers) or use a GPU")))?;
    rgb.into_pyarray(py).reshape([height as usize, width as usize, 3])
}
