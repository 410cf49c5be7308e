use std::io::Write;

/// A `.npy` file (format 1.0) with type string `descr`, `shape` and raw `data`.
pub fn npy(descr: &str, shape: &[usize], fortran: bool, data: &[u8]) -> Vec<u8> {
    let dims: String = match shape {
        [d] => format!("{d},"),
        _ => shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let order = if fortran { "True" } else { "False" };
    npy_with_header(
        &format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': ({dims}), }}"),
        data,
    )
}

/// A `.npy` file (format 1.0) with the given header text (padded as NumPy pads it).
pub fn npy_with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut header = header.to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A `uint8` array.
pub fn u8s(shape: &[usize], v: &[u8]) -> Vec<u8> {
    npy("|u1", shape, false, v)
}

/// A little-endian `float32` array.
pub fn f32s(shape: &[usize], v: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    npy("<f4", shape, false, &data)
}

/// A big-endian `float64` array.
pub fn f64s_be(shape: &[usize], v: &[f64]) -> Vec<u8> {
    let data: Vec<u8> = v.iter().flat_map(|x| x.to_be_bytes()).collect();
    npy(">f8", shape, false, &data)
}

/// A little-endian `int64` array.
pub fn i64s(shape: &[usize], v: &[i64]) -> Vec<u8> {
    let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    npy("<i8", shape, false, &data)
}

/// An `.npz` archive of the named `.npy` files (`deflate`: as `np.savez_compressed`).
pub fn npz(entries: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        // Writing into memory cannot fail.
        let _ = zip.start_file(format!("{name}.npy"), options);
        let _ = zip.write_all(bytes);
    }
    zip.finish().map(|c| c.into_inner()).unwrap_or_default()
}
