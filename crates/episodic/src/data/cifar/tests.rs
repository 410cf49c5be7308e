//! Unit tests of [`super`].

use super::cifar_writer::{self, write_dir};
use super::*;
use crate::data::pickle::writer::Pickle;

const C10: CifarVariant = CifarVariant::Cifar10;
const C100: CifarVariant = CifarVariant::Cifar100;

fn images(n: usize, salt: usize) -> Vec<u8> {
    (0..n * IMAGE_BYTES)
        .map(|i| ((i * 7 + salt) % 251) as u8)
        .collect()
}

fn labels(n: usize, classes: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 3) % classes) as u32).collect()
}

fn names(variant: CifarVariant) -> Vec<String> {
    (0..variant.classes())
        .map(|i| format!("class{i}"))
        .collect()
}

fn write(dir: &Path, variant: CifarVariant, binary: bool, n_train: usize) {
    let c = variant.classes();
    let names = names(variant);
    write_dir(
        dir,
        variant,
        binary,
        (&images(n_train, 0), &labels(n_train, c)),
        (&images(3, 1), &labels(3, c)),
        Some(&names),
    )
    .unwrap();
}

fn err_text(r: Result<impl std::fmt::Debug>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn loads_both_layouts_of_both_variants() {
    for variant in [C10, C100] {
        for binary in [true, false] {
            let root = tempfile::tempdir().unwrap();
            let folder = variant.folders()[usize::from(!binary)];
            write(&root.path().join(folder), variant, binary, 15);
            let d = load_cifar(root.path(), variant).unwrap();
            assert_eq!(d.name(), variant.name());
            assert_eq!(d.shape(), SHAPE);
            assert_eq!(d.classes(), variant.classes());
            assert_eq!(d.train().len(), 15);
            assert_eq!(d.test().len(), 3);
            assert_eq!(d.train().labels, labels(15, variant.classes()));
            assert_eq!(d.test().labels, vec![0, 3, 6]);
            let Inputs::Bytes(px) = &d.train().inputs else {
                panic!("not bytes")
            };
            // Image 11, green plane, row 5, column 7 (across CIFAR-10's batch files).
            let i = 11 * IMAGE_BYTES + 1024 + 5 * 32 + 7;
            assert_eq!(px[i], ((i * 7) % 251) as u8);
            let Inputs::Bytes(px) = &d.test().inputs else {
                panic!("not bytes")
            };
            assert_eq!(
                px[IMAGE_BYTES + 2047],
                (((IMAGE_BYTES + 2047) * 7 + 1) % 251) as u8
            );
            assert_eq!(d.class_names().unwrap()[2], "class2");
            assert!(d.source().ends_with(folder), "{}", d.source());
        }
    }
}

#[test]
fn detects_the_folder_given_directly_and_prefers_binary() {
    let root = tempfile::tempdir().unwrap();
    // Files directly in the folder given, without a name file: no class names.
    let plain = root.path().join("mine");
    write_dir(
        &plain,
        C10,
        false,
        (&images(5, 0), &labels(5, 10)),
        (&images(1, 0), &[4]),
        None,
    )
    .unwrap();
    let d = load_cifar(&plain, C10).unwrap();
    assert_eq!(d.test().labels, vec![4]);
    assert!(d.class_names().is_none());
    // The official folder itself.
    let official = root.path().join("cifar-100-python");
    write(&official, C100, false, 4);
    assert_eq!(load_cifar(&official, C100).unwrap().train().len(), 4);
    // Both folders: the binary one wins.
    write(&root.path().join("cifar-100-binary"), C100, true, 7);
    assert_eq!(load_cifar(root.path(), C100).unwrap().train().len(), 7);
}

#[test]
fn says_what_it_looked_for() {
    let root = tempfile::tempdir().unwrap();
    let err = err_text(load_cifar(root.path(), C100));
    assert!(
        err.contains("cifar-100-binary/ and cifar-100-python/"),
        "{err}"
    );
    let err = err_text(load_cifar(&root.path().join("nope"), C10));
    assert!(err.contains("data directory not found"), "{err}");
    // A batch missing from an official folder.
    let folder = root.path().join("cifar-10-batches-bin");
    write(&folder, C10, true, 10);
    std::fs::remove_file(folder.join("data_batch_3.bin")).unwrap();
    let err = err_text(load_cifar(root.path(), C10));
    assert!(
        err.contains("not found") && err.contains("data_batch_3.bin"),
        "{err}"
    );
}

#[test]
fn binary_refuses_truncated_and_ragged_files() {
    let p = Path::new("test_batch.bin");
    let good = cifar_writer::binary(C10, &images(2, 0), &[1, 2]);
    assert_eq!(parse_binary(p, &good, C10).unwrap().1, vec![1, 2]);
    let err = err_text(parse_binary(p, &good[..good.len() - 10], C10));
    assert!(
        err.contains("test_batch.bin") && err.contains("3063 bytes left over"),
        "{err}"
    );
    assert!(err_text(parse_binary(p, &[], C10)).contains("empty"));
    // A CIFAR-10 file read as CIFAR-100 has the wrong record length.
    let err = err_text(parse_binary(p, &good, C100));
    assert!(err.contains("3074-byte records"), "{err}");
}

#[test]
fn binary_refuses_labels_beyond_the_classes() {
    let p = Path::new("x.bin");
    let mut bytes = cifar_writer::binary(C10, &images(2, 0), &[1, 2]);
    bytes[3073] = 10;
    let err = err_text(parse_binary(p, &bytes, C10));
    assert!(
        err.contains("record 1 has label 10, beyond the 10 classes"),
        "{err}"
    );
    let mut bytes = cifar_writer::binary(C100, &images(1, 0), &[99]);
    assert_eq!(parse_binary(p, &bytes, C100).unwrap().1, vec![99]);
    bytes[1] = 100;
    assert!(err_text(parse_binary(p, &bytes, C100)).contains("label 100, beyond the 100"));
    bytes[1] = 5;
    bytes[0] = 20;
    assert!(err_text(parse_binary(p, &bytes, C100)).contains("coarse label 20"));
}

#[test]
fn refuses_wrong_class_names() {
    let p = Path::new("batches.meta.txt");
    assert!(err_text(parse_names_txt(p, b"a\nb\n", C10)).contains("2 class names, expected 10"));
    assert!(err_text(parse_names_txt(p, &[0xff, b'\n'], C10)).contains("UTF-8"));
    let names: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let meta = cifar_writer::python_meta(C10, &names);
    assert_eq!(parse_python_meta(p, &meta, C10).unwrap(), names);
    assert!(err_text(parse_python_meta(p, &meta, C100)).contains("no 'fine_label_names'"));
}

/// A batch dict with `data` replaced by the given pickle bytes.
fn batch_with_data(data: impl FnOnce(&mut Pickle)) -> Vec<u8> {
    let mut p = Pickle::new();
    p.raw(b"}(")
        .bytes(b"labels")
        .int_list(&[1, 2])
        .bytes(b"data");
    data(&mut p);
    p.raw(b"u").stop()
}

#[test]
fn python_accepts_str_keys_and_python2_strings() {
    let p = Path::new("data_batch_1");
    let px = images(2, 0);
    // Python 2 (cPickle): str keys and raw data as BINSTRING.
    let mut b = Pickle::new();
    b.raw(b"}(")
        .py2_str(b"labels")
        .int_list(&[3, 4])
        .py2_str(b"data")
        .global("numpy.core.multiarray", "_reconstruct")
        .global("numpy", "ndarray")
        .int(0)
        .raw(&[0x85])
        .py2_str(b"b")
        .raw(&[0x87, b'R', b'('])
        .int(1)
        .int(2)
        .int(IMAGE_BYTES as i64)
        .raw(&[0x86])
        .global("numpy", "dtype")
        .py2_str(b"u1")
        .raw(&[b'K', 0, b'K', 1, 0x87, b'R', b'('])
        .int(3)
        .py2_str(b"|")
        .raw(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        .raw(b"I00\n")
        .py2_str(&px)
        .raw(b"tbu");
    let (x, y) = parse_python_batch(p, &b.stop(), C10).unwrap();
    assert_eq!((x, y), (px.clone(), vec![3, 4]));
    // Python 3 str keys.
    let mut s = Pickle::new();
    s.raw(b"}(")
        .str("labels")
        .int_list(&[1, 2])
        .str("data")
        .ndarray(&[2, IMAGE_BYTES], "u1", false, &px)
        .raw(b"u");
    assert_eq!(parse_python_batch(p, &s.stop(), C10).unwrap().1, vec![1, 2]);
}

#[test]
fn python_refuses_what_is_not_a_cifar_dict() {
    let p = Path::new("data_batch_1");
    let px = images(2, 0);
    let array = |shape: &[usize], code: &str, fortran: bool, data: &[u8]| {
        let (shape, code, data) = (shape.to_vec(), code.to_string(), data.to_vec());
        batch_with_data(move |b| {
            b.ndarray(&shape, &code, fortran, &data);
        })
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            Pickle::new().int_list(&[1]).stop(),
            "holds a list, not a dict",
        ),
        (
            Pickle::new()
                .raw(b"}(")
                .bytes(b"data")
                .int(1)
                .raw(b"u")
                .stop(),
            "'data' is an int, not a NumPy array",
        ),
        (
            Pickle::new()
                .raw(b"}(")
                .bytes(b"data")
                .ndarray(&[2, IMAGE_BYTES], "u1", false, &px)
                .raw(b"u")
                .stop(),
            "no 'labels' entry",
        ),
        (
            Pickle::new()
                .raw(b"}(")
                .bytes(b"labels")
                .int_list(&[1])
                .raw(b"u")
                .stop(),
            "no 'data' entry",
        ),
        (
            array(&[2, IMAGE_BYTES], "i1", false, &px),
            "dtype \"i1\", expected uint8",
        ),
        (array(&[2, IMAGE_BYTES], "<f4", false, &px), "dtype \"<f4\""),
        (
            array(&[2, 32, 32, 3], "u1", false, &px),
            "expected N x 3072",
        ),
        (
            array(&[1, IMAGE_BYTES * 2], "u1", false, &px),
            "expected N x 3072",
        ),
        (array(&[0, IMAGE_BYTES], "u1", false, &[]), "with N > 0"),
        (array(&[2, IMAGE_BYTES], "u1", true, &px), "Fortran order"),
        (
            array(&[2, IMAGE_BYTES], "u1", false, &px[1..]),
            "6143 data bytes",
        ),
        (
            array(&[3, IMAGE_BYTES], "u1", false, &images(3, 0)),
            "has 2 labels for 3 images",
        ),
        (
            batch_with_data(|b| {
                b.global("numpy", "dtype").str("u1").raw(&[0x85, b'R']);
            }),
            "not a NumPy array",
        ),
        (
            batch_with_data(|b| {
                b.global("numpy.core.multiarray", "_reconstruct")
                    .global("numpy", "ndarray")
                    .raw(&[b')', 0x86, b'R']);
            }),
            "without a (version",
        ),
    ];
    for (bytes, expected) in cases {
        let err = err_text(parse_python_batch(p, &bytes, C10));
        assert!(
            err.contains("data_batch_1") && err.contains(expected),
            "{err} / {expected}"
        );
    }
    // Labels: beyond the classes, not ints, not a list; CIFAR-100's coarse labels.
    let good = cifar_writer::python_batch(C100, &px, &[99, 98]);
    assert_eq!(parse_python_batch(p, &good, C100).unwrap().1, vec![99, 98]);
    let err = err_text(parse_python_batch(p, &good, C10));
    assert!(err.contains("no 'labels' entry"), "{err}");
    let bad_labels = cifar_writer::python_batch(C10, &px, &[1, 10]);
    let err = err_text(parse_python_batch(p, &bad_labels, C10));
    assert!(
        err.contains("item 1 is label 10, beyond the 10 classes"),
        "{err}"
    );
    let mut p2 = Pickle::new();
    p2.raw(b"}(")
        .bytes(b"labels")
        .raw(b"](")
        .bytes(b"x")
        .raw(b"e")
        .bytes(b"data");
    p2.ndarray(&[1, IMAGE_BYTES], "u1", false, &px[..IMAGE_BYTES])
        .raw(b"u");
    let err = err_text(parse_python_batch(p, &p2.stop(), C10));
    assert!(err.contains("item 0 is bytes, not an int"), "{err}");
    let mut p3 = Pickle::new();
    p3.raw(b"}(")
        .bytes(b"fine_labels")
        .int_list(&[1])
        .bytes(b"coarse_labels")
        .int_list(&[20])
        .bytes(b"data");
    p3.ndarray(&[1, IMAGE_BYTES], "u1", false, &px[..IMAGE_BYTES])
        .raw(b"u");
    let err = err_text(parse_python_batch(p, &p3.stop(), C100));
    assert!(err.contains("'coarse_labels' item 0 is label 20"), "{err}");
}

#[test]
fn python_refuses_foreign_globals_and_code() {
    let p = Path::new("data_batch_1");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            batch_with_data(|b| {
                b.global("os", "system")
                    .str("touch /tmp/pwned")
                    .raw(&[0x85, b'R']);
            }),
            "global os.system",
        ),
        (
            batch_with_data(|b| {
                b.global("builtins", "eval").str("1+1").raw(&[0x85, b'R']);
            }),
            "global builtins.eval",
        ),
        (
            // A code object smuggled in through marshal.
            batch_with_data(|b| {
                b.global("marshal", "loads")
                    .raw(b"C\x03\xe3\x00\x00")
                    .raw(&[0x85, b'R']);
            }),
            "global marshal.loads",
        ),
        (
            batch_with_data(|b| {
                b.global("copy_reg", "_reconstructor");
            }),
            "global copy_reg._reconstructor",
        ),
        (
            // NEWOBJ: objects of arbitrary classes.
            batch_with_data(|b| {
                b.raw(b")").raw(&[0x81]);
            }),
            "opcode 0x81",
        ),
        (
            // _codecs.encode with another codec.
            batch_with_data(|b| {
                b.global("_codecs", "encode")
                    .str("x")
                    .str("rot13")
                    .raw(&[0x86, b'R']);
            }),
            "encoding \"rot13\"",
        ),
    ];
    for (bytes, expected) in cases {
        let err = err_text(parse_python_batch(p, &bytes, C10));
        assert!(
            err.contains("data_batch_1") && err.contains(expected),
            "{err} / {expected}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
    assert!(!Path::new("/tmp/pwned").exists());
}

#[test]
fn python_refuses_truncated_pickles() {
    let p = Path::new("test_batch");
    let good = cifar_writer::python_batch(C10, &images(1, 0), &[7]);
    for cut in [1, 2, 40, good.len() / 2, good.len() - 1] {
        let err = err_text(parse_python_batch(p, &good[..cut], C10));
        assert!(
            err.contains("test_batch") && err.contains("pickle"),
            "{cut}: {err}"
        );
    }
}

#[test]
fn loader_reports_the_damaged_file() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("cifar-10-batches-py");
    write(&folder, C10, false, 10);
    std::fs::write(folder.join("data_batch_4"), b"\x80\x02K\x01.").unwrap();
    let err = err_text(load_cifar(root.path(), C10));
    assert!(
        err.contains("data_batch_4: the pickle holds an int, not a dict"),
        "{err}"
    );
    std::fs::write(folder.join("batches.meta"), b"garbage").unwrap();
    std::fs::write(
        folder.join("data_batch_4"),
        cifar_writer::python_batch(C10, &images(1, 0), &[1]),
    )
    .unwrap();
    let err = err_text(load_cifar(root.path(), C10));
    assert!(err.contains("batches.meta"), "{err}");
}
