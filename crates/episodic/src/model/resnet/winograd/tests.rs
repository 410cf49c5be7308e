//! F(2x2, 3x3) against im2col on the network's own shapes: several chunks of images, odd
//! sides, and 1 against 2 threads.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::super::conv::{Conv, ConvWork, InputGradient};

fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0..1.0)).collect()
}

/// The output, weight gradient and input gradient of `conv` on `n` images.
fn run(conv: &Conv, n: usize, threads: usize) -> [Vec<f32>; 3] {
    let w = uniform(conv.weight_len(), 1);
    let x = uniform(conv.cin * n * conv.in_area(), 2);
    let dout = uniform(conv.cout * n * conv.out_area(), 3);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    pool.install(|| {
        let mut work = ConvWork::default();
        let mut out = vec![0.0; dout.len()];
        conv.forward(&w, &x, n, &mut out, &mut work, threads);
        let mut dw = vec![0.0; w.len()];
        // Added onto: start from something that is not zero.
        let mut dx = vec![0.5; x.len()];
        conv.backward(
            &w,
            &x,
            &dout,
            n,
            &mut dw,
            Some(InputGradient::Add(&mut dx)),
            &mut work,
            threads,
        );
        [out, dw, dx]
    })
}

fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * scale,
            "{what}[{i}]: {x} against im2col's {y} (largest {scale})"
        );
    }
}

#[test]
fn winograd_matches_im2col_over_chunks_odd_sides_and_threads() {
    // (cin, cout, side, images): the first stage's shape over several chunks of one image,
    // the last stage's (4 tiles an image), and odd sides whose last tiles hang over.
    for (cin, cout, side, n) in [
        (20, 20, 32, 3),
        (160, 24, 4, 70),
        (5, 7, 9, 3),
        (3, 2, 1, 2),
    ] {
        let im2col = Conv::new(cin, cout, 3, 1, 1, side, side, 0);
        let winograd = Conv {
            winograd: true,
            ..im2col
        };
        let plain = Conv {
            winograd: false,
            ..im2col
        };
        let want = run(&plain, n, 1);
        let one = run(&winograd, n, 1);
        for (what, (a, b)) in ["output", "weight gradient", "input gradient"]
            .iter()
            .zip(one.iter().zip(&want))
        {
            assert_close(&format!("{cin}x{cout} on {side}x{side}: {what}"), a, b);
        }
        assert_eq!(one, run(&winograd, n, 2), "1 and 2 threads differ");
    }
}

#[test]
fn the_paper_s_stride_1_convolutions_run_as_winograd_and_the_stem_as_im2col() {
    assert!(Conv::new(20, 20, 3, 1, 1, 32, 32, 0).winograd);
    assert!(!Conv::new(3, 20, 3, 1, 1, 32, 32, 0).winograd);
    assert!(!Conv::new(20, 40, 3, 2, 1, 32, 32, 0).winograd);
    assert!(!Conv::new(20, 40, 1, 2, 0, 32, 32, 0).winograd);
}

#[test]
fn the_sums_gathered_in_the_output_transform_are_the_outputs_sums() {
    // Several chunks of images, and an odd side whose last tiles hang over.
    for (cin, cout, side, n) in [(20, 20, 32, 3), (5, 7, 9, 40)] {
        let conv = Conv::new(cin, cout, 3, 1, 1, side, side, 0);
        assert!(conv.winograd);
        let w = uniform(conv.weight_len(), 1);
        let x = uniform(cin * n * conv.in_area(), 2);
        let gathered = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            pool.install(|| {
                let mut out = vec![0.0; cout * n * conv.out_area()];
                let mut sums = vec![0.0f64; 2 * cout];
                let mut work = ConvWork::default();
                let did = conv.forward_gathering(
                    &w,
                    &x,
                    n,
                    &mut out,
                    &mut work,
                    threads,
                    Some(&mut sums),
                );
                assert!(did, "Winograd gathers the sums");
                (out, sums)
            })
        };
        let (out, sums) = gathered(1);
        for ch in 0..cout {
            let column = out.iter().skip(ch).step_by(cout).map(|&v| f64::from(v));
            let (s, q) = column.fold((0.0, 0.0), |(s, q), v| (s + v, q + v * v));
            assert!((sums[ch] - s).abs() < 1e-9 * q.max(1.0), "{side}: sum {ch}");
            assert!(
                (sums[cout + ch] - q).abs() < 1e-9 * q.max(1.0),
                "{side}: square {ch}"
            );
        }
        assert_eq!(gathered(2).1, sums, "{side}: 2 threads, same sums");
    }
    // im2col's convolutions leave the sums to the BatchNorm.
    let conv = Conv::new(3, 4, 3, 2, 1, 8, 8, 0);
    let mut sums = vec![0.0f64; 8];
    let mut out = vec![0.0; 4 * conv.out_area()];
    let w = uniform(conv.weight_len(), 1);
    let x = uniform(3 * conv.in_area(), 2);
    let did = conv.forward_gathering(
        &w,
        &x,
        1,
        &mut out,
        &mut ConvWork::default(),
        1,
        Some(&mut sums),
    );
    assert!(!did && sums.iter().all(|&s| s == 0.0));
}
