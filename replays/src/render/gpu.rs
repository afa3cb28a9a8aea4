//! Headless wgpu rendering: no window, no surface, RGBA8 readback.

use super::scene::{color, mesh, view_proj, Camera, Scene};
use std::time::Instant;
use wgpu::util::DeviceExt;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no GPU or CPU (lavapipe) adapter found: {0} (install mesa-vulkan-drivers and libvulkan1 for CPU rendering)")]
    NoAdapter(String),
    #[error("device request failed: {0}")]
    Device(String),
    #[error("readback failed: {0}")]
    Readback(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("PNG: {0}")]
    Png(String),
    #[error("unknown camera {0:?} (known: {1})")]
    Camera(String, String),
}

/// What a frame took and produced (the render journal).
#[derive(Clone, Debug, serde::Serialize)]
pub struct FrameJournal {
    pub tick: u64,
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub width: u32,
    pub height: u32,
    pub instances: usize,
    /// xxh3-64 of the RGBA8 pixels.
    pub frame_hash: String,
    pub upload_ms: f64,
    pub render_readback_ms: f64,
}

/// An RGBA8 image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct InstanceRaw {
    pos: [f32; 3],
    rot: [f32; 4],
    color: [f32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CameraRaw {
    view_proj: [[f32; 4]; 4],
    light_dir: [f32; 4],
}

/// A device, queue and pipeline, reused across frames.
#[derive(Debug)]
pub struct Renderer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::RenderPipeline,
    bgl: wgpu::BindGroupLayout,
    info: wgpu::AdapterInfo,
}

const COLOR: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;
const DEPTH: wgpu::TextureFormat = wgpu::TextureFormat::Depth32Float;

impl Renderer {
    /// The first adapter wgpu offers (GPU preferred, lavapipe on CPU).
    /// `WGPU_BACKEND` / `WGPU_ADAPTER_NAME` select explicitly.
    pub fn new() -> Result<Renderer, RenderError> {
        pollster::block_on(Renderer::new_async())
    }

    async fn new_async() -> Result<Renderer, RenderError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| RenderError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("dualplane-render"),
                required_features: wgpu::Features::empty(),
                required_limits: wgpu::Limits::downlevel_defaults(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| RenderError::Device(e.to_string()))?;
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("frame"),
            source: wgpu::ShaderSource::Wgsl(include_str!("shader.wgsl").into()),
        });
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("camera"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
                ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None },
                count: None,
            }],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some("frame"), bind_group_layouts: &[Some(&bgl)], immediate_size: 0 });
        let vertex_attrs = wgpu::vertex_attr_array![0 => Float32x3, 1 => Float32x3];
        let instance_attrs = wgpu::vertex_attr_array![2 => Float32x3, 3 => Float32x4, 4 => Float32x4];
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("frame"),
            layout: Some(&layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs"),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                buffers: &[
                    Some(wgpu::VertexBufferLayout { array_stride: 24, step_mode: wgpu::VertexStepMode::Vertex, attributes: &vertex_attrs }),
                    Some(wgpu::VertexBufferLayout { array_stride: std::mem::size_of::<InstanceRaw>() as u64, step_mode: wgpu::VertexStepMode::Instance, attributes: &instance_attrs }),
                ],
            },
            primitive: wgpu::PrimitiveState { cull_mode: None, ..Default::default() },
            depth_stencil: Some(wgpu::DepthStencilState {
                format: DEPTH,
                depth_write_enabled: Some(true),
                depth_compare: Some(wgpu::CompareFunction::Less),
                stencil: wgpu::StencilState::default(),
                bias: wgpu::DepthBiasState::default(),
            }),
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs"),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                targets: &[Some(wgpu::ColorTargetState { format: COLOR, blend: None, write_mask: wgpu::ColorWrites::ALL })],
            }),
            multiview_mask: None,
            cache: None,
        });
        Ok(Renderer { device, queue, pipeline, bgl, info })
    }

    #[must_use]
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// Renders `scene` from `camera` at `width` x `height`.
    pub fn render(&self, scene: &Scene, camera: &Camera, width: u32, height: u32) -> Result<(Image, FrameJournal), RenderError> {
        let t0 = Instant::now();
        let d = &self.device;
        let cam = CameraRaw { view_proj: view_proj(camera, width as f32 / height as f32), light_dir: [-0.4, -1.0, -0.3, 0.0] };
        let cam_buf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("camera"), contents: bytemuck::bytes_of(&cam), usage: wgpu::BufferUsages::UNIFORM });
        let bind = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("camera"),
            layout: &self.bgl,
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: cam_buf.as_entire_binding() }],
        });
        // One draw per shape (its mesh, its instances), plus the ground.
        struct Draw {
            vb: wgpu::Buffer,
            ib: wgpu::Buffer,
            inst: wgpu::Buffer,
            indices: u32,
            count: u32,
        }
        let mut draws = Vec::new();
        let [hx, hz] = scene.half_extents;
        let ground = sim_core::physics::Shape::Cuboid { half_extents: [hx, 0.5, hz] };
        let ground_inst = [InstanceRaw { pos: [0.0, -0.5, 0.0], rot: [0.0, 0.0, 0.0, 1.0], color: [0.55, 0.55, 0.58, 1.0] }];
        let mut groups: Vec<(sim_core::physics::Shape, Vec<InstanceRaw>)> = vec![(ground, ground_inst.to_vec())];
        for (k, s) in scene.shapes.iter().enumerate() {
            let inst: Vec<InstanceRaw> = scene
                .instances
                .iter()
                .filter(|i| i.shape as usize == k)
                .map(|i| InstanceRaw { pos: i.pos, rot: i.rot, color: color(i.archetype, i.shape) })
                .collect();
            if !inst.is_empty() {
                groups.push((*s, inst));
            }
        }
        for (shape, inst) in &groups {
            let (v, idx) = mesh(shape);
            draws.push(Draw {
                vb: d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("mesh"), contents: bytemuck::cast_slice(&v), usage: wgpu::BufferUsages::VERTEX }),
                ib: d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("idx"), contents: bytemuck::cast_slice(&idx), usage: wgpu::BufferUsages::INDEX }),
                inst: d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some("inst"), contents: bytemuck::cast_slice(inst), usage: wgpu::BufferUsages::VERTEX }),
                indices: idx.len() as u32,
                count: inst.len() as u32,
            });
        }
        let size = wgpu::Extent3d { width, height, depth_or_array_layers: 1 };
        let target = d.create_texture(&wgpu::TextureDescriptor {
            label: Some("color"),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: COLOR,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let depth = d.create_texture(&wgpu::TextureDescriptor {
            label: Some("depth"),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: DEPTH,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
            view_formats: &[],
        });
        let (tv, dv) = (target.create_view(&Default::default()), depth.create_view(&Default::default()));
        let row = (width * 4).div_ceil(256) * 256;
        let readback = d.create_buffer(&wgpu::BufferDescriptor { label: Some("readback"), size: u64::from(row * height), usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ, mapped_at_creation: false });
        let upload_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let mut enc = d.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("frame") });
        {
            let mut pass = enc.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("frame"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &tv,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color { r: 0.08, g: 0.09, b: 0.12, a: 1.0 }), store: wgpu::StoreOp::Store },
                })],
                depth_stencil_attachment: Some(wgpu::RenderPassDepthStencilAttachment {
                    view: &dv,
                    depth_ops: Some(wgpu::Operations { load: wgpu::LoadOp::Clear(1.0), store: wgpu::StoreOp::Store }),
                    stencil_ops: None,
                }),
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            for dr in &draws {
                pass.set_vertex_buffer(0, dr.vb.slice(..));
                pass.set_vertex_buffer(1, dr.inst.slice(..));
                pass.set_index_buffer(dr.ib.slice(..), wgpu::IndexFormat::Uint32);
                pass.draw_indexed(0..dr.indices, 0, 0..dr.count);
            }
        }
        enc.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo { texture: &target, mip_level: 0, origin: wgpu::Origin3d::ZERO, aspect: wgpu::TextureAspect::All },
            wgpu::TexelCopyBufferInfo { buffer: &readback, layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(row), rows_per_image: Some(height) } },
            size,
        );
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        readback.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        d.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| RenderError::Readback(e.to_string()))?;
        rx.recv().map_err(|e| RenderError::Readback(e.to_string()))?.map_err(|e| RenderError::Readback(e.to_string()))?;
        let mut rgba = Vec::with_capacity((width * height * 4) as usize);
        {
            let view = readback.get_mapped_range(..).map_err(|e| RenderError::Readback(e.to_string()))?;
            for y in 0..height {
                let start = (y * row) as usize;
                rgba.extend_from_slice(&view[start..start + (width * 4) as usize]);
            }
        }
        readback.unmap();
        let render_readback_ms = t1.elapsed().as_secs_f64() * 1e3;
        let journal = FrameJournal {
            tick: scene.tick,
            adapter: self.info.name.clone(),
            backend: format!("{:?}", self.info.backend),
            device_type: format!("{:?}", self.info.device_type),
            width,
            height,
            instances: scene.instances.len(),
            frame_hash: format!("{:#018x}", xxhash_rust::xxh3::xxh3_64(&rgba)),
            upload_ms,
            render_readback_ms,
        };
        Ok((Image { width, height, rgba }, journal))
    }
}
