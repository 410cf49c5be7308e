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

/// The data transform `B^T d` along one axis, channel by channel.
#[inline(always)]
pub(super) fn data_1d(d: [&[f32]; 4], out: [&mut [f32]; 4]) {
    let [o0, o1, o2, o3] = out;
    let n = o0.len();
    let (d0, d1, d2, d3) = (&d[0][..n], &d[1][..n], &d[2][..n], &d[3][..n]);
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for c in 0..n {
        o0[c] = d0[c] - d2[c];
        o1[c] = d1[c] + d2[c];
        o2[c] = d2[c] - d1[c];
        o3[c] = d1[c] - d3[c];
    }
}

/// Adds the transpose of [`data_1d`], `B dv` along one axis, onto `out`.
#[inline(always)]
pub(super) fn add_data_gradient_1d(dv: [&[f32]; 4], out: [&mut [f32]; 4]) {
    let [o0, o1, o2, o3] = out;
    let n = o0.len();
    let (v0, v1, v2, v3) = (&dv[0][..n], &dv[1][..n], &dv[2][..n], &dv[3][..n]);
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for c in 0..n {
        o0[c] += v0[c];
        o1[c] += v1[c] - v2[c] + v3[c];
        o2[c] += v1[c] + v2[c] - v0[c];
        o3[c] -= v3[c];
    }
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
    let [o0, o1] = out;
    let n = o0.len();
    let (m0, m1, m2, m3) = (&m[0][..n], &m[1][..n], &m[2][..n], &m[3][..n]);
    let o1 = &mut o1[..n];
    for c in 0..n {
        o0[c] = m0[c] + m1[c] + m2[c];
        o1[c] = m1[c] - m2[c] - m3[c];
    }
}

/// The transpose of [`output_1d`]: `A dy` along one axis.
#[inline(always)]
pub(super) fn output_gradient_1d(dy: [&[f32]; 2], out: [&mut [f32]; 4]) {
    let [o0, o1, o2, o3] = out;
    let n = o0.len();
    let (y0, y1) = (&dy[0][..n], &dy[1][..n]);
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for c in 0..n {
        o0[c] = y0[c];
        o1[c] = y0[c] + y1[c];
        o2[c] = y0[c] - y1[c];
        o3[c] = -y1[c];
    }
}

/// The filter transform `G g` along one axis.
pub(super) fn filter_1d([g0, g1, g2]: [f32; 3]) -> [f32; 4] {
    [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]
}

/// The transpose of [`filter_1d`]: `G^T du` along one axis.
pub(super) fn filter_gradient_1d([u0, u1, u2, u3]: [f32; 4]) -> [f32; 3] {
    [u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3]
}
