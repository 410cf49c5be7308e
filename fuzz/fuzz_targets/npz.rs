//! Fuzzes the NumPy readers: the bytes as one `.npy` file, and as an `.npz` archive made
//! into a data set (with the seeded holdout when it has no test arrays). Any input must give
//! a value or an error, never a panic nor an allocation beyond what the input declares and
//! the 4 GiB cap allows; errors are one line.
#![no_main]

use std::path::Path;

use episodic::data::npz::{parse_npy, parse_npz, Values};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_npy(Path::new("fuzz.npy"), data);
    if let Err(e) = &parsed {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    if let Ok(array) = parsed {
        let n: usize = array.shape.iter().product();
        let len = match &array.values {
            Values::U8(v) => v.len(),
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::Signed(v) => v.len(),
            Values::Unsigned(v) => v.len(),
        };
        assert_eq!(len, n);
    }
    let parsed = parse_npz(Path::new("fuzz.npz"), data, 0);
    if let Err(e) = &parsed {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    if let Ok((dataset, holdout)) = parsed {
        assert!(!dataset.train().is_empty());
        if let Some(h) = holdout {
            assert_eq!(
                (h.train, h.test),
                (dataset.train().len(), dataset.test().len())
            );
        }
    }
});
