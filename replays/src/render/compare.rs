//! PNG IO and golden-image comparison.
//!
//! Tolerance: a pixel "differs" when any channel differs by more than
//! `channel` levels; a check fails when more than `max_fraction` of pixels
//! differ. The default (channel 2, 0.01% of pixels... see `Tolerance`)
//! accepts GPU-vs-lavapipe rasterization differences (FACTS.md: 4.1% of
//! pixels off by one level, one edge pixel by 39 on 512x512) and rejects a
//! body moved by a few centimetres (hundreds of pixels change by far more).

use super::gpu::{Image, RenderError};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Tolerance {
    /// Per-channel difference (0..=255) tolerated everywhere.
    pub channel: u8,
    /// Fraction of pixels allowed beyond `channel`.
    pub max_fraction: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { channel: 2, max_fraction: 0.0005 }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub pixels: u64,
    /// Pixels with any channel over the tolerance.
    pub over: u64,
    pub over_fraction: f64,
    pub max_channel_diff: u8,
    pub passed: bool,
    /// Bounding box (x0, y0, x1, y1) of the differing pixels.
    pub bbox: Option<(u32, u32, u32, u32)>,
}

pub fn write_png(path: &Path, img: &Image) -> Result<(), RenderError> {
    let f = std::fs::File::create(path).map_err(|e| RenderError::Io(path.display().to_string(), e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), img.width, img.height);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| RenderError::Png(e.to_string()))?;
    w.write_image_data(&img.rgba).map_err(|e| RenderError::Png(e.to_string()))?;
    w.finish().map_err(|e| RenderError::Png(e.to_string()))
}

pub fn read_png(path: &Path) -> Result<Image, RenderError> {
    let f = std::fs::File::open(path).map_err(|e| RenderError::Io(path.display().to_string(), e))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(f));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut r = dec.read_info().map_err(|e| RenderError::Png(format!("{}: {e}", path.display())))?;
    let mut buf = vec![0; r.output_buffer_size().ok_or_else(|| RenderError::Png(format!("{}: image too large", path.display())))?];
    let info = r.next_frame(&mut buf).map_err(|e| RenderError::Png(format!("{}: {e}", path.display())))?;
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba if info.bit_depth == png::BitDepth::Eight => buf,
        png::ColorType::Rgb if info.bit_depth == png::BitDepth::Eight => buf.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        other => return Err(RenderError::Png(format!("{}: expected 8-bit RGBA, found {other:?} {:?}", path.display(), info.bit_depth))),
    };
    Ok(Image { width: info.width, height: info.height, rgba })
}

/// Compares two images; `diff` is a grey copy of the expected image with
/// differing pixels painted red (brighter = larger difference).
#[must_use]
pub fn compare(actual: &Image, expected: &Image, tol: Tolerance) -> (Comparison, Image) {
    let (w, h) = (expected.width, expected.height);
    let mut diff = Image { width: w, height: h, rgba: vec![0; (w * h * 4) as usize] };
    if actual.width != w || actual.height != h {
        let c = Comparison { pixels: u64::from(w * h), over: u64::from(w * h), over_fraction: 1.0, max_channel_diff: 255, passed: false, bbox: Some((0, 0, w, h)) };
        return (c, diff);
    }
    let (mut over, mut maxd) = (0u64, 0u8);
    let mut bbox: Option<(u32, u32, u32, u32)> = None;
    for (i, (a, e)) in actual.rgba.chunks(4).zip(expected.rgba.chunks(4)).enumerate() {
        let d = (0..3).map(|k| a[k].abs_diff(e[k])).max().unwrap_or(0);
        maxd = maxd.max(d);
        let g = ((u32::from(e[0]) + u32::from(e[1]) + u32::from(e[2])) / 6) as u8;
        let px = &mut diff.rgba[i * 4..i * 4 + 4];
        if d > tol.channel {
            over += 1;
            px.copy_from_slice(&[128u8.saturating_add(d / 2), 0, 0, 255]);
            let (x, y) = (i as u32 % w, i as u32 / w);
            bbox = Some(match bbox {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        } else {
            px.copy_from_slice(&[g, g, g, 255]);
        }
    }
    let pixels = u64::from(w * h);
    let frac = over as f64 / pixels.max(1) as f64;
    (Comparison { pixels, over, over_fraction: frac, max_channel_diff: maxd, passed: frac <= tol.max_fraction, bbox }, diff)
}

/// Checks `actual` against a golden PNG. On failure writes
/// `<stem>.actual.png`, `<stem>.expected.png` and `<stem>.diff.png` next to
/// `out_dir`/golden name and returns their paths.
pub fn check_golden(actual: &Image, golden: &Path, out_dir: &Path, tol: Tolerance) -> Result<(Comparison, Vec<PathBuf>), RenderError> {
    let expected = read_png(golden)?;
    let (c, diff) = compare(actual, &expected, tol);
    let mut written = Vec::new();
    if !c.passed {
        let stem = golden.file_stem().and_then(|s| s.to_str()).unwrap_or("frame");
        std::fs::create_dir_all(out_dir).map_err(|e| RenderError::Io(out_dir.display().to_string(), e))?;
        for (suffix, img) in [("actual", actual), ("expected", &expected), ("diff", &diff)] {
            let p = out_dir.join(format!("{stem}.{suffix}.png"));
            write_png(&p, img)?;
            written.push(p);
        }
    }
    Ok((c, written))
}
