//! Per-task input transforms: a fixed map from each output pixel to a source pixel.
//!
//! Permutations and rotations are of this kind; a map acts on the pixel positions of one
//! channel and every channel of a colour image moves alike. A permutation maps every output pixel to a
//! distinct source pixel; a nearest-neighbour rotation maps each output pixel to the
//! source pixel its centre lands in, or to nothing (zero fill) when that falls outside
//! the image. Tasks are therefore the base data plus one small `PixelMap`, applied when
//! a batch or a test chunk is needed; no transformed copy of the data set is kept.

use rand::seq::SliceRandom;
use rand::Rng;

use super::dataset::Inputs;

/// Marks an output pixel with no source (filled with zero).
const NO_SOURCE: u32 = u32::MAX;

/// For each output pixel, the index of the input pixel it copies, or none (zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelMap {
    source: Vec<u32>,
}

impl PixelMap {
    /// The identity map on `n` pixels.
    pub fn identity(n: usize) -> Self {
        Self {
            source: (0..n as u32).collect(),
        }
    }

    /// A uniformly random permutation of `n` pixels drawn from `rng`.
    pub fn random_permutation(n: usize, rng: &mut impl Rng) -> Self {
        let mut map = Self::identity(n);
        map.source.shuffle(rng);
        map
    }

    /// Counter-clockwise rotation of a `side` x `side` image by `degrees` about its centre,
    /// nearest-neighbour, zero fill, no expansion: the semantics of PIL's
    /// `Image.rotate(angle)` with its defaults, which the reference uses.
    ///
    /// Output pixel (x, y) takes the input pixel containing the point obtained by rotating
    /// its centre (x + 0.5, y + 0.5) clockwise by `degrees` about (side / 2, side / 2).
    pub fn rotation(side: usize, degrees: f64) -> Self {
        let n = side;
        let side = n as f64;
        let centre = side / 2.0;
        let theta = degrees.to_radians();
        // PIL rounds the matrix entries to 15 decimals, which makes multiples of 90 degrees exact.
        let round15 = |v: f64| (v * 1e15).round() / 1e15;
        let (cos, sin) = (round15(theta.cos()), round15(theta.sin()));
        let mut source = Vec::with_capacity(n * n);
        for y in 0..n {
            for x in 0..n {
                let dx = x as f64 + 0.5 - centre;
                let dy = y as f64 + 0.5 - centre;
                let sx = (cos * dx - sin * dy + centre).floor();
                let sy = (sin * dx + cos * dy + centre).floor();
                let inside = (0.0..side).contains(&sx) && (0.0..side).contains(&sy);
                source.push(if inside {
                    (sy as usize * n + sx as usize) as u32
                } else {
                    NO_SOURCE
                });
            }
        }
        Self { source }
    }

    /// Number of output pixels.
    pub fn len(&self) -> usize {
        self.source.len()
    }

    /// Whether the map has no pixels.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    /// Source pixel of output pixel `i` (`None`: filled with zero).
    pub fn source_of(&self, i: usize) -> Option<usize> {
        let s = self.source[i];
        (s != NO_SOURCE).then_some(s as usize)
    }

    /// Writes the transformed image, scaled from 0..=255 to [0, 1], into `out`.
    pub fn apply_scaled(&self, image: &[u8], out: &mut [f32]) {
        debug_assert_eq!(out.len(), self.source.len());
        for (o, &s) in out.iter_mut().zip(&self.source) {
            *o = image.get(s as usize).map_or(0.0, |&p| scale_pixel(p));
        }
    }

    /// Writes example `k` of `inputs` (`channels` planes of this map's pixels each),
    /// transformed plane by plane and scaled as its kind says (bytes / 255, floats as they
    /// are), into `out`.
    pub fn apply_example(&self, inputs: &Inputs, k: usize, channels: usize, out: &mut [f32]) {
        let plane = self.source.len();
        let d = plane * channels;
        debug_assert_eq!(out.len(), d);
        match inputs {
            Inputs::Bytes(all) => {
                let example = &all[k * d..(k + 1) * d];
                for (c, o) in out.chunks_exact_mut(plane).enumerate() {
                    self.apply_scaled(&example[c * plane..(c + 1) * plane], o);
                }
            }
            Inputs::Floats(all) => {
                let example = &all[k * d..(k + 1) * d];
                for (c, o) in out.chunks_exact_mut(plane).enumerate() {
                    let image = &example[c * plane..(c + 1) * plane];
                    for (o, &s) in o.iter_mut().zip(&self.source) {
                        *o = image.get(s as usize).copied().unwrap_or(0.0);
                    }
                }
            }
        }
    }

    /// For each source pixel, the output pixels that copy it: the map run backwards, so that
    /// a sparse image can be transformed by visiting only its non-zero pixels.
    pub fn inverse(&self, source_pixels: usize) -> InverseMap {
        let mut starts = vec![0u32; source_pixels + 1];
        for &s in &self.source {
            if (s as usize) < source_pixels {
                starts[s as usize + 1] += 1;
            }
        }
        for j in 0..source_pixels {
            starts[j + 1] += starts[j];
        }
        let mut next = starts.clone();
        let mut targets = vec![0u32; starts[source_pixels] as usize];
        for (i, &s) in self.source.iter().enumerate() {
            if (s as usize) < source_pixels {
                targets[next[s as usize] as usize] = i as u32;
                next[s as usize] += 1;
            }
        }
        let widest = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) as usize;
        let padded = (widest <= MAX_PADDED_TARGETS).then(|| {
            let mut padded = vec![0u32; source_pixels * widest];
            for j in 0..source_pixels {
                let row = &targets[starts[j] as usize..starts[j + 1] as usize];
                padded[j * widest..j * widest + row.len()].copy_from_slice(row);
            }
            padded
        });
        InverseMap {
            starts,
            targets,
            widest,
            padded,
        }
    }

    /// SHA-256 (hex) of the map, identifying a permutation in results files.
    pub fn digest(&self) -> String {
        let bytes: Vec<u8> = self.source.iter().flat_map(|s| s.to_le_bytes()).collect();
        super::idx::sha256_hex(&bytes)
    }
}

/// A grey level 0..=255 as an input in [0, 1].
#[inline]
pub fn scale_pixel(p: u8) -> f32 {
    f32::from(p) * (1.0 / 255.0)
}

/// A [`PixelMap`] run backwards: for each source pixel, the output pixels that copy it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InverseMap {
    starts: Vec<u32>,
    targets: Vec<u32>,
    /// The most targets of one source pixel.
    widest: usize,
    /// Source pixel `j`'s targets in slots `j * widest..`, the unused slots zero (when
    /// `widest` is at most [`MAX_PADDED_TARGETS`]).
    padded: Option<Vec<u32>>,
}

/// Source pixels with at most this many targets get fixed-width slots.
const MAX_PADDED_TARGETS: usize = 4;

impl InverseMap {
    /// Each source pixel's targets in `width` fixed slots (unused ones zero) and the
    /// number of targets of each, so that a caller can copy them without a branch per pixel;
    /// `None` when a pixel has more than a few targets.
    pub fn padded(&self) -> Option<(usize, &[u32])> {
        self.padded.as_deref().map(|p| (self.widest, p))
    }

    /// The number of output pixels that copy source pixel `j`.
    pub fn count(&self, j: usize) -> usize {
        (self.starts[j + 1] - self.starts[j]) as usize
    }

    /// The output pixels that copy source pixel `j` (none for a pixel rotated out of view).
    pub fn targets(&self, j: usize) -> &[u32] {
        &self.targets[self.starts[j] as usize..self.starts[j + 1] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const IMAGE_SIDE: usize = 28;
    const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;

    fn random_image(seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..IMAGE_PIXELS).map(|_| rng.random()).collect()
    }

    fn apply(map: &PixelMap, image: &[u8]) -> Vec<f32> {
        let mut out = vec![0.0; IMAGE_PIXELS];
        map.apply_scaled(image, &mut out);
        out
    }

    #[test]
    fn permutation_is_a_bijection_and_seeded() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let p = PixelMap::random_permutation(IMAGE_PIXELS, &mut rng);
        let mut seen = vec![false; IMAGE_PIXELS];
        for i in 0..IMAGE_PIXELS {
            let s = p.source_of(i).unwrap();
            assert!(!seen[s], "source {s} used twice");
            seen[s] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_ne!(p, PixelMap::identity(IMAGE_PIXELS));
        let mut rng2 = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        assert_eq!(p, PixelMap::random_permutation(IMAGE_PIXELS, &mut rng2));
        // Applying it moves pixel values without changing the multiset.
        let img = random_image(1);
        let mut a: Vec<u32> = apply(&p, &img)
            .iter()
            .map(|v| (v * 255.0).round() as u32)
            .collect();
        let mut b: Vec<u32> = img.iter().map(|&v| u32::from(v)).collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
    }

    #[test]
    fn inverse_map_lists_every_output_of_each_source() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for map in [
            PixelMap::rotation(IMAGE_SIDE, 33.0),
            PixelMap::random_permutation(IMAGE_PIXELS, &mut rng),
        ] {
            let inverse = map.inverse(IMAGE_PIXELS);
            let mut covered = 0;
            for j in 0..IMAGE_PIXELS {
                for &i in inverse.targets(j) {
                    assert_eq!(map.source_of(i as usize), Some(j));
                    covered += 1;
                }
            }
            let mapped = (0..IMAGE_PIXELS)
                .filter(|&i| map.source_of(i).is_some())
                .count();
            assert_eq!(covered, mapped);
        }
    }

    #[test]
    fn rotation_by_zero_is_identity() {
        assert_eq!(
            PixelMap::rotation(IMAGE_SIDE, 0.0),
            PixelMap::identity(IMAGE_PIXELS)
        );
        let img = random_image(2);
        let expected: Vec<f32> = img.iter().map(|&p| f32::from(p) / 255.0).collect();
        let got = apply(&PixelMap::rotation(IMAGE_SIDE, 0.0), &img);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-7);
        }
    }

    #[test]
    fn rotation_by_90_matches_hand_rotated_image() {
        // Counter-clockwise by 90 degrees: output row r, column c is input row c, column 27 - r.
        let img = random_image(3);
        let got = apply(&PixelMap::rotation(IMAGE_SIDE, 90.0), &img);
        for r in 0..IMAGE_SIDE {
            for c in 0..IMAGE_SIDE {
                let want = img[c * IMAGE_SIDE + (IMAGE_SIDE - 1 - r)];
                assert_eq!(
                    (got[r * IMAGE_SIDE + c] * 255.0).round() as u8,
                    want,
                    "pixel ({r}, {c})"
                );
            }
        }
        // Four quarter turns bring the image back.
        let q = PixelMap::rotation(IMAGE_SIDE, 90.0);
        let mut x: Vec<u8> = img.clone();
        for _ in 0..4 {
            x = apply(&q, &x)
                .iter()
                .map(|v| (v * 255.0).round() as u8)
                .collect();
        }
        assert_eq!(x, img);
    }

    #[test]
    fn rotation_by_45_clips_corners_and_keeps_centre() {
        let map = PixelMap::rotation(IMAGE_SIDE, 45.0);
        assert_eq!(
            map.source_of(0),
            None,
            "corner comes from outside the image"
        );
        assert!(map.source_of(14 * IMAGE_SIDE + 14).is_some());
        let filled = (0..IMAGE_PIXELS)
            .filter(|&i| map.source_of(i).is_none())
            .count();
        // Square and rotated square overlap in an octagon of 2(sqrt 2 - 1) = 83% of the area: ~135 empty.
        assert!((100..250).contains(&filled), "{filled} zero-filled pixels");
    }

    #[test]
    fn colour_planes_move_alike_and_floats_pass_unscaled() {
        let map = PixelMap::rotation(4, 90.0);
        let bytes: Vec<u8> = (0..2 * 16 * 3).map(|i| i as u8).collect();
        let mut out = vec![0.0; 48];
        map.apply_example(&Inputs::Bytes(bytes.clone()), 1, 3, &mut out);
        let example = &bytes[48..96];
        for c in 0..3 {
            let mut plane = vec![0.0; 16];
            map.apply_scaled(&example[c * 16..(c + 1) * 16], &mut plane);
            assert_eq!(&out[c * 16..(c + 1) * 16], &plane[..], "plane {c}");
        }
        let floats: Vec<f32> = bytes.iter().map(|&b| f32::from(b) * 2.0).collect();
        map.apply_example(&Inputs::Floats(floats), 1, 3, &mut out);
        let mut plane = vec![0.0; 16];
        map.apply_scaled(&example[16..32], &mut plane);
        for (f, p) in out[16..32].iter().zip(&plane) {
            assert!((f - p * 510.0).abs() < 1e-3, "{f} vs {p}");
        }
    }
}
