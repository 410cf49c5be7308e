//! Reading the fixtures that `scripts/resnet-fixture.py` and `scripts/gem-step-fixture.py`
//! write with the reference's own code (torch), for the tests that compare against them.

use safetensors::SafeTensors;

/// The bytes of `tests/fixtures/NAME`.
pub(crate) fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The f32 tensor `name`.
pub(crate) fn floats(st: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The i64 tensor `name`, as labels.
pub(crate) fn labels(st: &SafeTensors<'_>, name: &str) -> Vec<u32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::I64, "{name}");
    t.data()
        .chunks_exact(8)
        .map(|b| {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            i64::from_le_bytes(w) as u32
        })
        .collect()
}

/// `ours` equals `theirs` within 1e-5 of the largest of `theirs` in magnitude.
pub(crate) fn assert_close(what: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let scale = theirs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-5 * scale,
        "{what}: worst difference {worst:e} against scale {scale:e}"
    );
}
