/// The bytes of an IDX image file (magic 0x803) holding `images` of 28x28.
pub fn images(images: &[u8]) -> Vec<u8> {
    images_of(images, &[28, 28])
}

/// The bytes of an IDX image file of images of `dims` (1 to 3 dimensions after the count).
pub fn images_of(images: &[u8], dims: &[usize]) -> Vec<u8> {
    let per_image: usize = dims.iter().product();
    let mut all = vec![images.len() / per_image.max(1)];
    all.extend_from_slice(dims);
    let mut out = header((super::UNSIGNED_BYTE << 8) | (dims.len() as u32 + 1), &all);
    out.extend_from_slice(images);
    out
}

/// The bytes of an IDX label file (magic 0x801).
pub fn labels(labels: &[u8]) -> Vec<u8> {
    let mut out = header(super::LABELS_MAGIC, &[labels.len()]);
    out.extend_from_slice(labels);
    out
}

/// An IDX header with the given magic and dimensions.
pub fn header(magic: u32, dims: &[usize]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out
}

/// Gzip-compresses `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}
