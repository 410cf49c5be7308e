//! The passes against their per-channel formulas.

use super::*;

#[test]
fn the_period_is_the_least_common_multiple_with_sixteen() {
    for (c, p) in [
        (1, 16),
        (3, 48),
        (16, 16),
        (20, 80),
        (40, 80),
        (80, 80),
        (160, 160),
    ] {
        assert_eq!(period(c), p, "{c} channels");
    }
}

#[test]
fn tiled_values_follow_the_channels_over_the_period() {
    let t = tiled(&[1.0, 2.0, 3.0], period(3));
    let flat: Vec<f32> = t.iter().flatten().copied().collect();
    assert_eq!(flat.len(), 48);
    for (j, v) in flat.iter().enumerate() {
        assert_eq!(*v, (j % 3 + 1) as f32);
    }
}

/// Runs of `pixels` pixels of `c` channels, with a tail shorter than a block.
fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761);
            (h >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

#[test]
fn sums_and_squares_are_each_channels_over_its_pixels() {
    for (c, pixels) in [(20, 37), (40, 5), (3, 11), (160, 3), (7, 1)] {
        let z = values(c * pixels, 1);
        let mut acc = vec![0.0f64; 2 * c];
        add_sums_and_squares(&z, period(c), &mut acc);
        for ch in 0..c {
            let column = z.iter().skip(ch).step_by(c).map(|&v| f64::from(v));
            let (s, q) = column.fold((0.0, 0.0), |(s, q), v| (s + v, q + v * v));
            assert!((acc[ch] - s).abs() < 1e-12, "{c} channels: sum {ch}");
            assert!((acc[c + ch] - q).abs() < 1e-12, "{c} channels: square {ch}");
        }
    }
}

#[test]
fn the_passes_are_their_per_pixel_formulas_bit_for_bit() {
    for (c, pixels) in [(20, 37), (40, 5), (3, 11), (160, 3)] {
        let len = c * pixels;
        let (z, dy, res) = (values(len, 1), values(len, 2), values(len, 3));
        let per = |seed: u32, shift: f32| -> Vec<f32> {
            values(c, seed).iter().map(|v| v + shift).collect()
        };
        let (mean, inv_std, scale, shift) = (per(4, 0.0), per(5, 1.5), per(6, 1.0), per(7, 0.0));
        let p = period(c);
        let n = Normalising {
            mean: tiled(&mean, p),
            inv_std: tiled(&inv_std, p),
            scale: tiled(&scale, p),
            shift: tiled(&shift, p),
        };
        let mut out = vec![0.0f32; len];
        normalise(&z, &n, Then::AddRelu(&res), &mut out);
        let (mean_dy, mean_dot, k) = (per(8, 0.0), per(9, 0.0), per(10, 0.0));
        let centring = Centring {
            mean: tiled(&mean, p),
            inv_std: tiled(&inv_std, p),
            mean_dy: tiled(&mean_dy, p),
            mean_dot: tiled(&mean_dot, p),
            k: tiled(&k, p),
        };
        let mut dz = vec![0.0f32; len];
        input_gradient(&dy, &z, &centring, Some((&n.scale, &n.shift)), &mut dz);
        let mut acc = vec![0.0f64; 2 * c];
        add_pair_sums(
            &dy,
            &z,
            &n.mean,
            &n.inv_std,
            Some((&n.scale, &n.shift)),
            &mut acc,
        );
        let mut expected = vec![0.0f64; 2 * c];
        for i in 0..len {
            let ch = i % c;
            let x = (z[i] - mean[ch]) * inv_std[ch];
            let y = scale[ch] * x + shift[ch];
            assert_eq!(
                out[i].to_bits(),
                (y + res[i]).max(0.0).to_bits(),
                "normalise {i}"
            );
            let g = if y > 0.0 { dy[i] } else { 0.0 };
            let d = k[ch] * (g - mean_dy[ch] - x * mean_dot[ch]);
            assert_eq!(dz[i].to_bits(), d.to_bits(), "input gradient {i}");
            expected[ch] += f64::from(g);
            expected[c + ch] += f64::from(g) * f64::from(x);
        }
        for (a, e) in acc.iter().zip(&expected) {
            assert!(
                (a - e).abs() < 1e-12,
                "{c} channels: pair sums {a} against {e}"
            );
        }
    }
}
