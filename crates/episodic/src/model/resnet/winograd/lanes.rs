//! The 1-D transforms of F(2x2, 3x3) along one axis of a tile, on whole runs of channels
//! (or of pixels' channels) at once, so that they vectorise; inlined into their callers.

/// `len`-float rows 0..4 of `buf`, each mutable.
pub(super) fn four_mut(buf: &mut [f32], len: usize) -> [&mut [f32]; 4] {
    let (a, rest) = buf.split_at_mut(len);
    let (b, rest) = rest.split_at_mut(len);
    let (c, d) = rest.split_at_mut(len);
    [a, b, c, &mut d[..len]]
}

/// `len`-float rows 0..2 of `buf`, each mutable.
pub(super) fn two_mut(buf: &mut [f32], len: usize) -> [&mut [f32]; 2] {
    let (a, b) = buf.split_at_mut(len);
    [a, &mut b[..len]]
}

/// `out[k][c] = f(inputs[0][c], ..)[k]` (or `+=` when `add`) for every channel `c`,
/// sixteen channels at a time, then eight, four and one. Loops over runs as short as 20 channels
/// vectorise this way; a plain loop leaves them to its scalar remainder.
#[inline(always)]
fn lanes<const I: usize, const O: usize>(
    inputs: [&[f32]; I],
    mut out: [&mut [f32]; O],
    add: bool,
    f: impl Fn([f32; I]) -> [f32; O] + Copy,
) {
    let n = out.first().map_or(0, |o| o.len());
    let mut c = 0;
    while c + 16 <= n {
        block::<I, O, 16>(&inputs, &mut out, c, add, f);
        c += 16;
    }
    while c + 8 <= n {
        block::<I, O, 8>(&inputs, &mut out, c, add, f);
        c += 8;
    }
    while c + 4 <= n {
        block::<I, O, 4>(&inputs, &mut out, c, add, f);
        c += 4;
    }
    while c < n {
        block::<I, O, 1>(&inputs, &mut out, c, add, f);
        c += 1;
    }
}

/// Channels `c..c + W` of [`lanes`].
#[inline(always)]
fn block<const I: usize, const O: usize, const W: usize>(
    inputs: &[&[f32]; I],
    out: &mut [&mut [f32]; O],
    c: usize,
    add: bool,
    f: impl Fn([f32; I]) -> [f32; O],
) {
    let x: [&[f32; W]; I] =
        std::array::from_fn(|k| inputs[k][c..c + W].try_into().expect("W channels"));
    let mut y = [[0.0f32; W]; O];
    for l in 0..W {
        let v = f(std::array::from_fn(|k| x[k][l]));
        for k in 0..O {
            y[k][l] = v[k];
        }
    }
    for (o, y) in out.iter_mut().zip(&y) {
        let o: &mut [f32; W] = (&mut o[c..c + W]).try_into().expect("W channels");
        if add {
            o.iter_mut().zip(y).for_each(|(o, &y)| *o += y);
        } else {
            *o = *y;
        }
    }
}

/// The data transform `B^T d` along one axis, channel by channel.
#[inline(always)]
pub(super) fn data_1d(d: [&[f32]; 4], out: [&mut [f32]; 4]) {
    lanes(d, out, false, |[d0, d1, d2, d3]| {
        [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
    });
}

/// Adds the transpose of [`data_1d`], `B dv` along one axis, onto `out`.
#[inline(always)]
pub(super) fn add_data_gradient_1d(dv: [&[f32]; 4], out: [&mut [f32]; 4]) {
    lanes(dv, out, true, |[v0, v1, v2, v3]| {
        [v0, v1 - v2 + v3, v1 + v2 - v0, -v3]
    });
}

/// [`add_data_gradient_1d`] onto the outputs that are there (rows inside the image).
#[inline(always)]
pub(super) fn add_data_gradient_rows(q: [&[f32]; 4], out: [Option<&mut [f32]>; 4]) {
    let [o0, o1, o2, o3] = out;
    let n = q[0].len();
    let (v0, v1, v2, v3) = (q[0], &q[1][..n], &q[2][..n], &q[3][..n]);
    if let Some(o) = o0 {
        o[..n].iter_mut().zip(v0).for_each(|(o, &v)| *o += v);
    }
    if let Some(o) = o1 {
        let o = &mut o[..n];
        for c in 0..n {
            o[c] += v1[c] - v2[c] + v3[c];
        }
    }
    if let Some(o) = o2 {
        let o = &mut o[..n];
        for c in 0..n {
            o[c] += v1[c] + v2[c] - v0[c];
        }
    }
    if let Some(o) = o3 {
        o[..n].iter_mut().zip(v3).for_each(|(o, &v)| *o -= v);
    }
}

/// The output transform `A^T m` along one axis.
#[inline(always)]
pub(super) fn output_1d(m: [&[f32]; 4], out: [&mut [f32]; 2]) {
    lanes(m, out, false, |[m0, m1, m2, m3]| {
        [m0 + m1 + m2, m1 - m2 - m3]
    });
}

/// The transpose of [`output_1d`]: `A dy` along one axis.
#[inline(always)]
pub(super) fn output_gradient_1d(dy: [&[f32]; 2], out: [&mut [f32]; 4]) {
    lanes(dy, out, false, |[y0, y1]| [y0, y0 + y1, y0 - y1, -y1]);
}

/// The filter transform `G g` along one axis.
pub(super) fn filter_1d([g0, g1, g2]: [f32; 3]) -> [f32; 4] {
    [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]
}

/// The transpose of [`filter_1d`]: `G^T du` along one axis.
pub(super) fn filter_gradient_1d([u0, u1, u2, u3]: [f32; 4]) -> [f32; 3] {
    [u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3]
}

/// `U = G g G^T` of one 3x3 kernel `g` (taps row by row): the 16 positions row by row.
#[inline(always)]
fn filter_2d(g: [f32; 9]) -> [f32; 16] {
    // Columns first (G g), then rows ((G g) G^T).
    let mut gg = [[0.0f32; 3]; 4];
    for c in 0..3 {
        let t = filter_1d([g[c], g[3 + c], g[6 + c]]);
        for (row, value) in gg.iter_mut().zip(t) {
            row[c] = value;
        }
    }
    let mut u = [0.0f32; 16];
    for (i, row) in gg.iter().enumerate() {
        u[i * 4..i * 4 + 4].copy_from_slice(&filter_1d(*row));
    }
    u
}

/// The transpose of [`filter_2d`]: `dg = G^T dU G`, taps row by row.
#[inline(always)]
fn filter_gradient_2d(du: [f32; 16]) -> [f32; 9] {
    let mut rows = [[0.0f32; 3]; 4];
    for (i, row) in rows.iter_mut().enumerate() {
        *row = filter_gradient_1d([du[i * 4], du[i * 4 + 1], du[i * 4 + 2], du[i * 4 + 3]]);
    }
    let mut dg = [0.0f32; 9];
    for c in 0..3 {
        let column = filter_gradient_1d([rows[0][c], rows[1][c], rows[2][c], rows[3][c]]);
        for (ky, value) in column.into_iter().enumerate() {
            dg[ky * 3 + c] = value;
        }
    }
    dg
}

/// [`filter_2d`] of many kernels at once: `taps[k]` holds tap `k` of each kernel, `out[xi]`
/// receives position `xi` of each.
#[inline(always)]
pub(super) fn filter_2d_lanes(taps: [&[f32]; 9], out: [&mut [f32]; 16]) {
    lanes(taps, out, false, filter_2d);
}

/// [`filter_gradient_2d`] of many kernels at once: `du[xi]` holds position `xi` of each
/// kernel's gradient, `out[k]` receives tap `k` of each.
#[inline(always)]
pub(super) fn filter_gradient_2d_lanes(du: [&[f32]; 16], out: [&mut [f32]; 9]) {
    lanes(du, out, false, filter_gradient_2d);
}
