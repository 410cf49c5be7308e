//! Fuzzes the allow-listed pickle reader behind the CIFAR python files: a batch as CIFAR-10
//! and as CIFAR-100, and a meta file. Any input must give a value or an error, never a panic
//! nor an unbounded allocation, and a parsed batch must hold one label per 3072-byte image; errors are one line.
#![no_main]

use std::path::Path;

use episodic::data::cifar::{parse_python_batch, parse_python_meta, CifarVariant, IMAGE_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz_batch");
    for variant in [CifarVariant::Cifar10, CifarVariant::Cifar100] {
        match parse_python_batch(path, data, variant) {
            Ok((images, labels)) => {
                assert!(!labels.is_empty());
                assert_eq!(images.len(), labels.len() * IMAGE_BYTES);
                assert!(labels.iter().all(|&y| (y as usize) < variant.classes()));
            }
            Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
        }
        match parse_python_meta(path, data, variant) {
            Ok(names) => assert_eq!(names.len(), variant.classes()),
            Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
        }
    }
});
