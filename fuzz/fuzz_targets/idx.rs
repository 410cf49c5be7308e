//! Fuzzes the MNIST reader: gzip detection and decompression, then IDX parsing as an image
//! file (magic 0x803, 3 dimensions) and as a label file (magic 0x801, 1 dimension). Any
//! input must give a value or an error, never a panic, and a parsed file's payload must be
//! exactly the product of its dimensions.
#![no_main]

use std::path::Path;

use episodic::data::idx::{decompress_if_gzip, parse_idx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.idx");
    let Ok(bytes) = decompress_if_gzip(path, data.to_vec()) else {
        return;
    };
    for (magic, ndims) in [(0x0803, 3), (0x0801, 1)] {
        if let Ok(idx) = parse_idx(path, &bytes, magic, ndims) {
            assert_eq!(idx.dims.len(), ndims);
            assert_eq!(idx.data.len(), idx.dims.iter().product::<usize>());
        }
    }
});
