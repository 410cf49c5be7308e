//! Fuzzes the CIFAR binary reader as CIFAR-10 and as CIFAR-100 records, and the class-name
//! text files. Any input must give a value or an error, never a panic, and parsed images and
//! labels must agree in number, with labels below the classes; errors are one line.
#![no_main]

use std::path::Path;

use episodic::data::cifar::{parse_binary, parse_names_txt, CifarVariant, IMAGE_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.bin");
    for variant in [CifarVariant::Cifar10, CifarVariant::Cifar100] {
        match parse_binary(path, data, variant) {
            Ok((images, labels)) => {
                assert_eq!(images.len(), labels.len() * IMAGE_BYTES);
                assert!(labels.iter().all(|&y| (y as usize) < variant.classes()));
            }
            Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
        }
        match parse_names_txt(path, data, variant) {
            Ok(names) => assert_eq!(names.len(), variant.classes()),
            Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
        }
    }
});
