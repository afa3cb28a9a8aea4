// Verification-frame shader: instanced meshes, one fixed directional light,
// Lambert + ambient. Nothing time-dependent, no MSAA.
struct Camera {
    view_proj: mat4x4<f32>,
    light_dir: vec4<f32>,
};
@group(0) @binding(0) var<uniform> cam: Camera;

struct VIn {
    @location(0) pos: vec3<f32>,
    @location(1) normal: vec3<f32>,
    @location(2) i_pos: vec3<f32>,
    @location(3) i_rot: vec4<f32>,
    @location(4) i_color: vec4<f32>,
};

struct VOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) normal: vec3<f32>,
    @location(1) color: vec4<f32>,
};

fn rotate(q: vec4<f32>, v: vec3<f32>) -> vec3<f32> {
    let t = 2.0 * cross(q.xyz, v);
    return v + q.w * t + cross(q.xyz, t);
}

@vertex
fn vs(in: VIn) -> VOut {
    var out: VOut;
    let world = rotate(in.i_rot, in.pos) + in.i_pos;
    out.clip = cam.view_proj * vec4<f32>(world, 1.0);
    out.normal = rotate(in.i_rot, in.normal);
    out.color = in.i_color;
    return out;
}

@fragment
fn fs(in: VOut) -> @location(0) vec4<f32> {
    let n = normalize(in.normal);
    let l = max(dot(n, -cam.light_dir.xyz), 0.0);
    return vec4<f32>(in.color.rgb * (0.3 + 0.7 * l), 1.0);
}
