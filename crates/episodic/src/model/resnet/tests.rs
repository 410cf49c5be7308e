use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::batchnorm::{BatchNorm, BnMode, BnStats, BnTape, Then};
use super::conv::{Conv, ConvWork, InputGradient};
use super::*;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n).map(|_| r.random_range(-1.0..1.0)).collect()
}

#[test]
fn parameter_counts_are_the_reference_s() {
    // torch: sum(p.numel() for p in ResNet18(10, nf=2).parameters()) and ResNet18(100).
    let small = ResNetConfig {
        nf: 2,
        blocks: [2, 2, 2, 2],
        classes: 10,
    };
    assert_eq!(small.num_params(), 11_420);
    assert_eq!(ResNetConfig::paper(100).num_params(), 1_109_240);
    let net = ResNet::new(&small, 1, &mut rng(0)).unwrap();
    assert_eq!(net.num_params(), 11_420);
    // 20 BatchNorm layers of 150 channels together: means then variances.
    assert_eq!(net.buffers().len(), 300);
    // 54.6 M multiply-adds per image at nf = 20 (the bench script's count).
    let paper = ResNet::new(&ResNetConfig::paper(100), 1, &mut rng(0)).unwrap();
    assert_eq!(paper.macs_per_image(), 54_636_160);
    assert_eq!(ResNetConfig::paper(100).multiply_adds(), 54_636_160);
}

/// A direct convolution in f64, for comparison.
fn naive_conv(conv: &Conv, w: &[f32], x: &[f32], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; conv.cout * n * conv.out_area()];
    for co in 0..conv.cout {
        for img in 0..n {
            for oy in 0..conv.hout {
                for ox in 0..conv.wout {
                    let mut acc = 0.0f64;
                    for ci in 0..conv.cin {
                        for ky in 0..conv.k {
                            for kx in 0..conv.k {
                                let iy = (oy * conv.stride + ky) as isize - conv.pad as isize;
                                let ix = (ox * conv.stride + kx) as isize - conv.pad as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= conv.hin as isize
                                    || ix >= conv.win as isize
                                {
                                    continue;
                                }
                                let pixel = (img * conv.hin + iy as usize) * conv.win + ix as usize;
                                let xv = x[pixel * conv.cin + ci];
                                let wv = w[((co * conv.cin + ci) * conv.k + ky) * conv.k + kx];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    out[((img * conv.hout + oy) * conv.wout + ox) * conv.cout + co] = acc;
                }
            }
        }
    }
    out
}

#[test]
fn convolutions_match_a_direct_one_and_their_gradients_the_finite_differences() {
    // Stride 1 and 2 with padding (3x3), and the shortcut's 1x1 of stride 2, on odd and
    // even sides; the 3x3 of stride 1 both as im2col and as Winograd's F(2x2, 3x3).
    for (k, stride, pad, side, winograd) in [
        (3, 1, 1, 6, false),
        (3, 1, 1, 6, true),
        (3, 1, 1, 7, true),
        (3, 1, 1, 1, true),
        (3, 2, 1, 6, false),
        (3, 2, 1, 7, false),
        (1, 2, 0, 6, false),
    ] {
        let (cin, cout, n) = (2, 3, 2);
        let conv = Conv {
            winograd,
            ..Conv::new(cin, cout, k, stride, pad, side, side, 0)
        };
        let w = uniform(conv.weight_len(), 1);
        let x = uniform(cin * n * conv.in_area(), 2);
        let m = cout * n * conv.out_area();
        let mut out = vec![0.0; m];
        conv.forward(&w, &x, n, &mut out, &mut ConvWork::default(), 1);
        let want = naive_conv(&conv, &w, &x, n);
        for (a, b) in out.iter().zip(&want) {
            assert!(
                (f64::from(*a) - b).abs() < 1e-5,
                "{k}x{k}/{stride} (winograd {winograd}): {a} vs {b}"
            );
        }
        // loss = r . out: its gradients are exact for a linear map; compare them with
        // central differences of the f64 direct convolution.
        let r = uniform(m, 3);
        let mut dw = vec![0.0; w.len()];
        // Overwritten: what the buffer held does not count...
        let mut dx = vec![7.0; x.len()];
        conv.backward(
            &w,
            &x,
            &r,
            n,
            &mut dw,
            Some(InputGradient::Overwrite(&mut dx)),
            &mut ConvWork::default(),
            1,
        );
        // ...added: it does.
        let mut added = vec![1.0; x.len()];
        conv.backward(
            &w,
            &x,
            &r,
            n,
            &mut dw,
            Some(InputGradient::Add(&mut added)),
            &mut ConvWork::default(),
            1,
        );
        for (a, d) in added.iter().zip(&dx) {
            assert!((a - 1.0 - d).abs() < 1e-6, "added {a} against {d}");
        }
        // ...or the given buffer's images first, whatever the buffer held.
        let base = uniform(x.len(), 4);
        let mut with = vec![7.0; x.len()];
        conv.backward(
            &w,
            &x,
            &r,
            n,
            &mut dw,
            Some(InputGradient::OverwriteWith(&mut with, &base)),
            &mut ConvWork::default(),
            1,
        );
        for ((a, b), d) in with.iter().zip(&base).zip(&dx) {
            assert!((a - b - d).abs() < 1e-6, "{a} with base {b} against {d}");
        }
        let loss = |w: &[f32], x: &[f32]| -> f64 {
            naive_conv(&conv, w, x, n)
                .iter()
                .zip(&r)
                .map(|(o, &r)| o * f64::from(r))
                .sum()
        };
        let h = 1e-2f32;
        for i in 0..w.len() {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[i] += h;
            wm[i] -= h;
            let fd = (loss(&wp, &x) - loss(&wm, &x)) / (2.0 * f64::from(h));
            assert!(
                (fd - f64::from(dw[i])).abs() < 1e-4,
                "dw[{i}]: {fd} vs {}",
                dw[i]
            );
        }
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (loss(&w, &xp) - loss(&w, &xm)) / (2.0 * f64::from(h));
            assert!(
                (fd - f64::from(dx[i])).abs() < 1e-4,
                "dx[{i}]: {fd} vs {}",
                dx[i]
            );
        }
    }
}

/// A training forward of `bn` over the `m` pixels `z`, then `then`: the output and the
/// tape.
fn bn_train(
    bn: &BatchNorm,
    params: &[f32],
    z: &[f32],
    m: usize,
    then: Then<'_>,
) -> (Vec<f32>, BnTape) {
    let c = bn.channels;
    let mut out = vec![0.0; c * m];
    let mut tape = BnTape {
        z: z.to_vec(),
        ..BnTape::default()
    };
    let mut stats = vec![0.0; 2 * c];
    let mode = BnMode::Train {
        stats: &mut tape.stats,
        batch_stats: &mut stats,
        sums: None,
    };
    bn.forward(params, z, m, &mut out, mode, then, 1);
    (out, tape)
}

#[test]
fn batchnorm_gradients_match_finite_differences_in_training() {
    // Alone, and with the ReLU its backward pass goes through.
    for relu in [false, true] {
        let (c, m) = (3, 10);
        let bn = BatchNorm {
            channels: c,
            scale: 0,
            stat: 0,
        };
        let then = if relu { Then::Relu } else { Then::Nothing };
        let mut params = uniform(2 * c, 4);
        params[..c].iter_mut().for_each(|g| *g += 1.5);
        let z = uniform(c * m, 5);
        let r = uniform(c * m, 6);
        let loss = |params: &[f32], z: &[f32]| -> f64 {
            let (out, _) = bn_train(&bn, params, z, m, then);
            out.iter().zip(&r).map(|(&o, &r)| f64::from(o * r)).sum()
        };
        let (out, tape) = bn_train(&bn, &params, &z, m, then);
        // Each channel comes out with mean 0 and variance 1 before the affine map.
        let BnStats { mean, inv_std } = &tape.stats;
        for ch in 0..c {
            let xs: Vec<f32> = z
                .iter()
                .skip(ch)
                .step_by(c)
                .map(|v| (v - mean[ch]) * inv_std[ch])
                .collect();
            let mean: f32 = xs.iter().sum::<f32>() / m as f32;
            let var: f32 = xs.iter().map(|x| x * x).sum::<f32>() / m as f32;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
                "{mean} {var}"
            );
        }
        if relu {
            let zeros = out.iter().filter(|&&o| o == 0.0).count();
            assert!(zeros > 0 && zeros < out.len(), "{zeros} ReLU zeros");
        }
        let (mut grad, mut dz) = (vec![0.0; 2 * c], vec![0.0; c * m]);
        bn.backward(&params, &tape, &r, relu, m, &mut grad, &mut dz, 1);
        let h = 1e-3f32;
        for i in 0..2 * c {
            let (mut pp, mut pm) = (params.clone(), params.clone());
            pp[i] += h;
            pm[i] -= h;
            let fd = (loss(&pp, &z) - loss(&pm, &z)) / (2.0 * f64::from(h));
            assert!(
                (fd - f64::from(grad[i])).abs() < 2e-3,
                "relu {relu}, param {i}: {fd} vs {}",
                grad[i]
            );
        }
        for i in 0..c * m {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[i] += h;
            zm[i] -= h;
            let fd = (loss(&params, &zp) - loss(&params, &zm)) / (2.0 * f64::from(h));
            assert!(
                (fd - f64::from(dz[i])).abs() < 2e-3,
                "relu {relu}, z {i}: {fd} vs {}",
                dz[i]
            );
        }
    }
}

#[test]
fn batchnorm_s_fused_relu_and_residual_add_give_the_bits_of_separate_passes() {
    let (c, m) = (5, 4000);
    let bn = BatchNorm {
        channels: c,
        scale: 0,
        stat: 0,
    };
    let mut params = uniform(2 * c, 10);
    params[..c].iter_mut().for_each(|g| *g += 1.0);
    let z = uniform(c * m, 11);
    let residual = uniform(c * m, 12);
    let (plain, _) = bn_train(&bn, &params, &z, m, Then::Nothing);
    let (relu, _) = bn_train(&bn, &params, &z, m, Then::Relu);
    let (added, _) = bn_train(&bn, &params, &z, m, Then::AddRelu(&residual));
    for i in 0..c * m {
        assert_eq!(relu[i].to_bits(), plain[i].max(0.0).to_bits(), "relu {i}");
        let separate = (plain[i] + residual[i]).max(0.0);
        assert_eq!(added[i].to_bits(), separate.to_bits(), "add {i}");
    }
    assert!(relu.contains(&0.0) && relu.iter().any(|&v| v > 0.0));
}

#[test]
fn batchnorm_over_several_chunks_gives_the_same_on_one_and_two_threads() {
    // 5,000 pixels: three chunks of the sums, the last one short.
    let (c, m) = (3, 5000);
    let bn = BatchNorm {
        channels: c,
        scale: 0,
        stat: 0,
    };
    let params = uniform(2 * c, 7);
    let z: Vec<f32> = uniform(c * m, 8).iter().map(|v| 3.0 * v + 1.0).collect();
    let dy = uniform(c * m, 9);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        pool.install(|| {
            let mut tape = BnTape {
                z: z.clone(),
                ..BnTape::default()
            };
            let mut stats = vec![0.0; 2 * c];
            let mut out = vec![0.0; c * m];
            let mode = BnMode::Train {
                stats: &mut tape.stats,
                batch_stats: &mut stats,
                sums: None,
            };
            bn.forward(&params, &z, m, &mut out, mode, Then::Relu, threads);
            let (mut grad, mut dz) = (vec![0.0; 2 * c], vec![0.0; c * m]);
            bn.backward(&params, &tape, &dy, true, m, &mut grad, &mut dz, threads);
            (stats, out, grad, dz)
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    // The batch statistics are the plain ones.
    for ch in 0..c {
        let xs: Vec<f64> = z
            .iter()
            .skip(ch)
            .step_by(c)
            .map(|&v| f64::from(v))
            .collect();
        let mean = xs.iter().sum::<f64>() / m as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (m - 1) as f64;
        assert!((f64::from(one.0[ch]) - mean).abs() < 1e-6, "mean {ch}");
        assert!(
            (f64::from(one.0[c + ch]) - var).abs() < 1e-5 * var,
            "variance {ch}"
        );
    }
}

#[test]
fn batchnorm_normalises_with_batch_statistics_in_training_and_running_ones_at_test() {
    let (c, m) = (2, 8);
    let bn = BatchNorm {
        channels: c,
        scale: 0,
        stat: 0,
    };
    let params = [1.0, 1.0, 0.0, 0.0];
    // Pixel p holds p in channel 0 and 8 + p in channel 1.
    let z: Vec<f32> = (0..c * m).map(|i| ((i % c) * m + i / c) as f32).collect();
    let (mut tape, mut stats) = (BnTape::default(), vec![0.0; 2 * c]);
    let mut out = vec![0.0; c * m];
    let mode = BnMode::Train {
        stats: &mut tape.stats,
        batch_stats: &mut stats,
        sums: None,
    };
    bn.forward(&params, &z, m, &mut out, mode, Then::Nothing, 1);
    // Channel 0 holds 0..8: mean 3.5, unbiased variance 6.
    assert_eq!(&stats, &[3.5, 11.5, 6.0, 6.0]);
    let mut running = vec![0.0, 0.0, 1.0, 1.0];
    bn.update_running(&mut running, 2, &stats);
    let want = [0.35, 1.15, 0.9 + 0.6, 0.9 + 0.6];
    for (a, b) in running.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{running:?}");
    }
    // At test: (z - running mean) / sqrt(running var + eps).
    bn.forward(
        &params,
        &z,
        m,
        &mut out,
        BnMode::Test {
            running: &running,
            vars_at: 2,
        },
        Then::Nothing,
        1,
    );
    let expected = (3.0 - 0.35) / (1.5f32 + 1e-5).sqrt();
    assert!(
        (out[3 * c] - expected).abs() < 1e-5,
        "{} vs {expected}",
        out[3 * c]
    );
}

fn tiny() -> ResNet {
    let config = ResNetConfig {
        nf: 2,
        blocks: [1, 1, 1, 1],
        classes: 4,
    };
    ResNet::new(&config, 1, &mut rng(7)).unwrap()
}

#[test]
fn the_network_s_gradient_matches_finite_differences() {
    let mut net = tiny();
    let n = 3;
    let xs: Vec<f32> = uniform(n * 3072, 8).iter().map(|v| v.abs()).collect();
    let ys = [0u32, 3, 1];
    let mut grad = vec![0.0; net.num_params()];
    net.loss_and_grad(&xs, &ys, 0..4, &mut grad).unwrap();
    let params = net.params().to_vec();
    // Directional derivatives along the gradient restricted to one layer (its own
    // norm): the stem's convolution and BatchNorm, a stride-1 and a stride-2 convolution,
    // a shortcut's 1x1 convolution and BatchNorm, the linear layer, and everything.
    let b1 = net.blocks[1];
    let short = b1.shortcut.unwrap();
    let ranges = [
        0..54,
        54..58,
        net.blocks[0].first.conv.weight..net.blocks[0].first.bn.scale,
        b1.first.conv.weight..b1.first.bn.scale,
        short.conv.weight..short.bn.scale,
        short.bn.scale..short.bn.scale + 2 * short.bn.channels,
        net.linear_weight..params.len(),
        0..params.len(),
    ];
    let directions: Vec<Vec<f32>> = ranges
        .iter()
        .map(|r| {
            let norm = grad[r.clone()].iter().map(|g| g * g).sum::<f32>().sqrt();
            assert!(norm > 0.0, "no gradient in {r:?}");
            (0..params.len())
                .map(|i| if r.contains(&i) { grad[i] / norm } else { 0.0 })
                .collect()
        })
        .collect();
    let mut scratch = vec![0.0; params.len()];
    for v in &directions {
        let analytic: f64 = grad.iter().zip(v).map(|(&g, &d)| f64::from(g * d)).sum();
        // The closest of central differences at four step sizes: f32 rounding spoils
        // small steps and ReLU kinks large ones, but not all four. (Exactness is the
        // reference fixture's test; this one catches a missing or wrong term.)
        let mut best = f64::INFINITY;
        for h in [1e-2f32, 3e-3, 1e-3, 3e-4] {
            let mut at = |sign: f32| {
                let moved: Vec<f32> = params
                    .iter()
                    .zip(v)
                    .map(|(p, d)| p + sign * h * d)
                    .collect();
                net.params_mut().copy_from_slice(&moved);
                f64::from(net.loss_and_grad(&xs, &ys, 0..4, &mut scratch).unwrap())
            };
            let fd = (at(1.0) - at(-1.0)) / (2.0 * f64::from(h));
            best = best.min((fd - analytic).abs());
        }
        assert!(
            best < 3e-2 * analytic.abs(),
            "finite differences miss the gradient {analytic} by {best}"
        );
    }
}

#[test]
fn masked_heads_leave_other_classes_without_gradient() {
    let mut net = tiny();
    let xs: Vec<f32> = uniform(2 * 3072, 9).iter().map(|v| v.abs()).collect();
    let mut grad = vec![0.0; net.num_params()];
    net.loss_and_grad(&xs, &[2, 3], 2..4, &mut grad).unwrap();
    let bias = &grad[net.linear_bias..];
    assert_eq!(&bias[..2], &[0.0, 0.0]);
    assert!(bias[2] != 0.0 && bias[3] != 0.0);
    // Labels outside the head are refused.
    assert!(net.loss_and_grad(&xs, &[0, 3], 2..4, &mut grad).is_err());
}

#[test]
fn inputs_that_are_not_whole_images_are_refused() {
    let mut net = tiny();
    let mut grad = vec![0.0; net.num_params()];
    let err = net
        .loss_and_grad(&vec![0.5; 784], &[1], 0..4, &mut grad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3072") && err.contains("784"), "{err}");
    let mut out = vec![0.0; 4];
    assert!(net.logits(&vec![0.5; 3000], &mut out).is_err());
}

#[test]
fn test_logits_do_not_depend_on_the_batch_and_training_moves_running_statistics() {
    let mut net = tiny();
    let xs: Vec<f32> = uniform(3 * 3072, 10).iter().map(|v| v.abs()).collect();
    let before = net.buffers().to_vec();
    let mut all = vec![0.0; 12];
    net.logits(&xs, &mut all).unwrap();
    assert_eq!(net.buffers(), &before[..], "a test pass changes nothing");
    let mut one = vec![0.0; 4];
    net.logits(&xs[3072..6144], &mut one).unwrap();
    for (a, b) in one.iter().zip(&all[4..8]) {
        assert!((a - b).abs() < 1e-5, "{one:?} vs {all:?}");
    }
    let mut grad = vec![0.0; net.num_params()];
    net.loss_and_grad(&xs, &[0, 1, 2], 0..4, &mut grad).unwrap();
    assert_ne!(
        net.buffers(),
        &before[..],
        "a training pass moves the running statistics"
    );
    // A fork carries parameters and running statistics.
    let mut fork = net.fork();
    let mut forked = vec![0.0; 12];
    fork.logits(&xs, &mut forked).unwrap();
    net.logits(&xs, &mut all).unwrap();
    assert_eq!(forked, all);
}

/// The reference's own ResNet18 (nf = 2, 10 classes) on a fixed batch of 4, written by
/// `scripts/resnet-fixture.py` with torch: its initial parameters, loss, gradient,
/// running statistics after one training forward, and test logits.
mod reference {
    use super::*;
    use crate::model::resnet::fixture::{assert_close, floats, labels, read};
    use safetensors::SafeTensors;

    fn fixture() -> Vec<u8> {
        read("resnet-nf2.safetensors")
    }

    fn network(st: &SafeTensors<'_>) -> ResNet {
        let config = ResNetConfig {
            nf: 2,
            blocks: [2, 2, 2, 2],
            classes: 10,
        };
        let mut net = ResNet::new(&config, 1, &mut rng(0)).unwrap();
        net.params_mut().copy_from_slice(&floats(st, "params"));
        net
    }

    #[test]
    fn our_resnet_reproduces_the_reference_s_loss_gradient_statistics_and_logits() {
        let bytes = fixture();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut net = network(&st);
        let xs = floats(&st, "x");
        let ys = labels(&st, "y");
        let mut grad = vec![0.0; net.num_params()];
        let loss = net.loss_and_grad(&xs, &ys, 0..10, &mut grad).unwrap();
        assert_close(
            "train logits",
            &net.tape.logits[..40],
            &floats(&st, "train_logits"),
        );
        assert_close("loss", &[loss], &floats(&st, "loss"));
        assert_close("gradient", &grad, &floats(&st, "grad"));
        let channels = net.buffers().len() / 2;
        let (means, vars) = net.buffers().split_at(channels);
        assert_close("running means", means, &floats(&st, "running_mean"));
        assert_close("running variances", vars, &floats(&st, "running_var"));
        let mut logits = vec![0.0; 40];
        net.logits(&xs, &mut logits).unwrap();
        assert_close("test logits", &logits, &floats(&st, "eval_logits"));
    }

    #[test]
    fn our_masked_head_reproduces_the_reference_s_task_loss_and_gradient() {
        let bytes = fixture();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut net = network(&st);
        let xs = floats(&st, "x");
        let ys = labels(&st, "y_head");
        let mut grad = vec![0.0; net.num_params()];
        let loss = net.loss_and_grad(&xs, &ys, 2..5, &mut grad).unwrap();
        assert_close("masked loss", &[loss], &floats(&st, "masked_loss"));
        assert_close("masked gradient", &grad, &floats(&st, "masked_grad"));
    }
}
