//! The ResNet's backward pass: from the logits' gradient to every parameter's.

use super::conv::{grown, InputGradient};
use super::ResNet;
use crate::error::{Error, Result};
use crate::linalg::{matmul, MatMut, MatRef};
use multiversion::multiversion;

impl ResNet {
    /// The backward pass of the last training forward over `n` images, from the logits'
    /// gradient in the tape: every parameter's gradient into `grad` (overwritten).
    fn backward(&mut self, n: usize, grad: &mut [f32]) {
        let threads = self.threads;
        let params = &self.params;
        let t = &mut self.tape;
        let classes = self.config.classes;
        let (lw, lb) = (self.linear_weight, self.linear_bias);
        let dlogits = &t.dlogits[..n * classes];
        matmul(
            MatMut::row_major(&mut grad[lw..lb], classes, self.features),
            MatRef::row_major(dlogits, n, classes).t(),
            MatRef::row_major(&t.features, n, self.features),
            false,
            threads,
        );
        for (k, g) in grad[lb..lb + classes].iter_mut().enumerate() {
            *g = dlogits.iter().skip(k).step_by(classes).sum();
        }
        let c = self.features;
        let dfeatures = grown(&mut t.grad_features, c * n);
        matmul(
            MatMut::row_major(dfeatures, n, c),
            MatRef::row_major(dlogits, n, classes),
            MatRef::row_major(&params[lw..lb], classes, c),
            false,
            threads,
        );
        // The pooling's gradient: each of the 16 positions gets a sixteenth.
        let g_out = grown(&mut t.grad_out, c * n * 16);
        for (window, d) in g_out
            .chunks_exact_mut(16 * c)
            .zip(dfeatures.chunks_exact(c))
        {
            for pixel in window.chunks_exact_mut(c) {
                pixel.iter_mut().zip(d).for_each(|(g, &v)| *g = v / 16.0);
            }
        }
        for (b, block) in self.blocks.iter().enumerate().rev() {
            let bt = &t.blocks[b];
            let x: &[f32] = if b == 0 {
                &t.stem_out
            } else {
                &t.blocks[b - 1].out
            };
            let out_len = block.second.conv.cout * n * block.second.conv.out_area();
            let in_len = block.first.conv.cin * n * block.first.conv.in_area();
            // Through the final ReLU.
            relu_backward(&mut t.grad_out[..out_len], &bt.out);
            let m2 = n * block.second.conv.out_area();
            let dz = grown(&mut t.grad_z, out_len);
            block.second.bn.backward(
                params,
                &bt.second,
                &t.grad_out[..out_len],
                false,
                m2,
                grad,
                dz,
                threads,
            );
            let hidden_len = block.first.conv.cout * n * block.first.conv.out_area();
            let dh = grown(&mut t.grad_hidden, hidden_len);
            block.second.conv.backward(
                params,
                &bt.hidden,
                dz,
                n,
                grad,
                Some(InputGradient::Overwrite(dh)),
                &mut t.conv,
                threads,
            );
            // Through the first ReLU (in its BatchNorm's backward pass) and BatchNorm.
            let m1 = n * block.first.conv.out_area();
            let dz = grown(&mut t.grad_z, hidden_len);
            block
                .first
                .bn
                .backward(params, &bt.first, dh, true, m1, grad, dz, threads);
            let din = grown(&mut t.grad_in, in_len);
            // An identity shortcut's gradient (the block's, through its ReLU) joins the
            // input's in the convolution's own pass.
            let into = match &block.shortcut {
                Some(_) => InputGradient::Overwrite(&mut *din),
                None => InputGradient::OverwriteWith(&mut *din, &t.grad_out[..out_len]),
            };
            block
                .first
                .conv
                .backward(params, x, dz, n, grad, Some(into), &mut t.conv, threads);
            if let Some(unit) = &block.shortcut {
                let dz = grown(&mut t.grad_z, out_len);
                unit.bn.backward(
                    params,
                    &bt.shortcut,
                    &t.grad_out[..out_len],
                    false,
                    m2,
                    grad,
                    dz,
                    threads,
                );
                unit.conv.backward(
                    params,
                    x,
                    dz,
                    n,
                    grad,
                    Some(InputGradient::Add(din)),
                    &mut t.conv,
                    threads,
                );
            }
            std::mem::swap(&mut t.grad_out, &mut t.grad_in);
        }
        // The stem: through its ReLU and BatchNorm to its convolution's weight.
        let len = self.stem.conv.cout * n * self.stem.conv.out_area();
        let dz = grown(&mut t.grad_z, len);
        let m = n * self.stem.conv.out_area();
        self.stem.bn.backward(
            params,
            &t.stem,
            &t.grad_out[..len],
            true,
            m,
            grad,
            dz,
            threads,
        );
        self.stem
            .conv
            .backward(params, &t.input, dz, n, grad, None, &mut t.conv, threads);
    }

    /// Forward in training mode, `objective` on the logits, backward.
    pub(super) fn backprop(
        &mut self,
        xs: &[f32],
        grad: &mut [f32],
        objective: &mut dyn FnMut(&[f32], &mut [f32]) -> f64,
    ) -> Result<f32> {
        let n = self.images(xs)?;
        if grad.len() != self.params.len() {
            return Err(Error::Shape {
                what: "gradient (one entry per parameter)",
                expected: self.params.len(),
                actual: grad.len(),
            });
        }
        self.forward(xs, n, true);
        let classes = self.config.classes;
        let mut dlogits = std::mem::take(&mut self.tape.dlogits);
        dlogits.resize(n * classes, 0.0);
        let loss = objective(&self.tape.logits[..n * classes], &mut dlogits);
        self.tape.dlogits = dlogits;
        self.backward(n, grad);
        Ok(loss as f32)
    }
}

/// The gradient `g` through a ReLU whose outputs were `out`: zero where they were.
#[multiversion(targets("x86_64+avx2+fma"))]
fn relu_backward(g: &mut [f32], out: &[f32]) {
    for (g, &o) in g.iter_mut().zip(out) {
        if o <= 0.0 {
            *g = 0.0;
        }
    }
}
