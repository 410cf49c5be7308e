//! Unit tests of [`super`].

use super::*;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const IMAGE_PIXELS: usize = 784;

fn write_set(dir: &Path, n_images: usize, n_labels: usize, gz: bool) {
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    let images: Vec<u8> = (0..n_images * IMAGE_PIXELS)
        .map(|i| (i % 251) as u8)
        .collect();
    let labels: Vec<u8> = (0..n_labels).map(|i| (i % 10) as u8).collect();
    for split in ["train", "t10k"] {
        let files = [
            (
                format!("{split}-images-idx3-ubyte"),
                idx_writer::images(&images),
            ),
            (
                format!("{split}-labels-idx1-ubyte"),
                idx_writer::labels(&labels),
            ),
        ];
        for (name, bytes) in files {
            if gz {
                std::fs::write(mnist.join(format!("{name}.gz")), idx_writer::gzip(&bytes)).unwrap();
            } else {
                std::fs::write(mnist.join(name), bytes).unwrap();
            }
        }
    }
}

fn bytes(split: &Split) -> &[u8] {
    match &split.inputs {
        Inputs::Bytes(b) => b,
        Inputs::Floats(_) => panic!("IDX gives bytes"),
    }
}

#[test]
fn loads_gzip_and_raw_files_alike() {
    for gz in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), 3, 3, gz);
        let m = Vendored::Mnist.load(dir.path(), Checksums::Skip).unwrap();
        assert_eq!(m.train().len(), 3);
        assert_eq!(m.test().labels, vec![0, 1, 2]);
        assert_eq!(bytes(m.train())[IMAGE_PIXELS], (IMAGE_PIXELS % 251) as u8);
        assert_eq!(m.shape().to_string(), "1x28x28");
        assert_eq!(m.classes(), 10);
    }
}

#[test]
fn finds_and_loads_any_idx_pair_by_its_names() {
    let dir = tempfile::tempdir().unwrap();
    // EMNIST-style names, 2 x 3 x 4 images, labels 1..=4 (classes = max + 1).
    let images: Vec<u8> = (0..2 * 24).map(|i| i as u8).collect();
    for split in ["train", "test"] {
        std::fs::write(
            dir.path()
                .join(format!("emnist-x-{split}-images-idx4-ubyte")),
            idx_writer::images_of(&images, &[2, 3, 4]),
        )
        .unwrap();
        std::fs::write(
            dir.path()
                .join(format!("emnist-x-{split}-labels-idx1-ubyte.gz")),
            idx_writer::gzip(&idx_writer::labels(&[1, 4])),
        )
        .unwrap();
    }
    let files = IdxFiles::find(dir.path()).unwrap();
    let d = files.load("emnist-x", dir.path()).unwrap();
    assert_eq!(d.shape().to_string(), "2x3x4");
    assert_eq!(d.classes(), 5);
    assert_eq!(bytes(d.test())[24 + 5], 29);
    std::fs::remove_file(dir.path().join("emnist-x-test-labels-idx1-ubyte.gz")).unwrap();
    let err = IdxFiles::find(dir.path()).unwrap_err().to_string();
    assert!(err.contains("t10k-labels-idx?-ubyte"), "{err}");
}

#[test]
fn rejects_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), 3, 4, true);
    let err = Vendored::Mnist
        .load(dir.path(), Checksums::Skip)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::CountMismatch {
                images: 3,
                labels: 4,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rejects_checksum_mismatch_of_valid_structure() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), 3, 3, true);
    let err = Vendored::Mnist
        .load(dir.path(), Checksums::Verify)
        .unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("train-images-idx3-ubyte.gz"));
}

#[test]
fn rejects_missing_dir_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = Vendored::Mnist
        .load(&dir.path().join("nope"), Checksums::Skip)
        .unwrap_err();
    assert!(matches!(err, Error::DataDirMissing { .. }), "{err}");
    let err = Vendored::Mnist
        .load(dir.path(), Checksums::Skip)
        .unwrap_err();
    assert!(matches!(err, Error::FileMissing { .. }), "{err}");
}

#[test]
fn refuses_a_decompression_bomb() {
    // 300 MiB of zeros compress to a small file.
    let zeros = vec![0u8; (MAX_DECOMPRESSED_BYTES + (44 << 20)) as usize];
    let bomb = idx_writer::gzip(&zeros);
    assert!(bomb.len() < zeros.len() / 100, "a small file");
    let err = decompress_if_gzip(Path::new("bomb.gz"), bomb).unwrap_err();
    assert!(err.to_string().contains("more than 256 MiB"), "{err}");
}

#[test]
fn rejects_truncated_and_corrupt_gzip() {
    let good = idx_writer::gzip(&idx_writer::labels(&[1, 2, 3, 4, 5, 6, 7, 8]));
    let path = Path::new("x.gz");
    let truncated = good[..good.len() - 6].to_vec();
    let err = decompress_if_gzip(path, truncated).unwrap_err();
    assert!(matches!(err, Error::Gzip { .. }), "{err}");
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    corrupt[mid + 1] ^= 0x5a;
    let err = decompress_if_gzip(path, corrupt).unwrap_err();
    assert!(matches!(err, Error::Gzip { .. }), "{err}");
}

#[test]
fn rejects_wrong_magic_truncation_and_trailing_bytes() {
    let p = Path::new("f");
    let labels = idx_writer::labels(&[1, 2, 3]);
    let err = parse_idx(p, &labels, IMAGES_MAGIC, 3).unwrap_err();
    assert!(
        err.to_string().contains("wrong magic number 0x00000801"),
        "{err}"
    );
    let err = parse_idx(p, &labels[..labels.len() - 1], LABELS_MAGIC, 1).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = parse_idx(p, &labels[..5], LABELS_MAGIC, 1).unwrap_err();
    assert!(err.to_string().contains("truncated header"), "{err}");
    let mut long = labels.clone();
    long.push(0);
    let err = parse_idx(p, &long, LABELS_MAGIC, 1).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
    let huge = idx_writer::header(IMAGES_MAGIC, &[u32::MAX as usize; 3]);
    assert!(parse_idx(p, &huge, IMAGES_MAGIC, 3).is_err());
    let ok = parse_idx(p, &labels, LABELS_MAGIC, 1).unwrap();
    assert_eq!(ok.dims, vec![3]);
    assert_eq!(ok.data, &[1, 2, 3]);
    // Other element types and dimension counts are refused by the image reader.
    for (magic, expected) in [
        (0x0000_0d03u32, "element type 0x0d"),
        (0x0000_0805, "5 dimensions"),
        (0x0100_0803, "wrong magic"),
    ] {
        let err = image_ndims(p, &magic.to_be_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn rejects_labels_out_of_range_and_mismatched_image_sizes() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), 2, 2, false);
    let mnist = dir.path().join("mnist");
    std::fs::write(
        mnist.join("t10k-labels-idx1-ubyte"),
        idx_writer::labels(&[3, 10]),
    )
    .unwrap();
    let err = Vendored::Mnist
        .load(dir.path(), Checksums::Skip)
        .unwrap_err();
    assert!(
        matches!(err, Error::LabelOutOfRange { label: 10, .. }),
        "{err}"
    );
    let mut bad = idx_writer::header(IMAGES_MAGIC, &[2, 14, 56]);
    bad.extend(std::iter::repeat_n(0u8, 2 * IMAGE_PIXELS));
    std::fs::write(mnist.join("train-images-idx3-ubyte"), bad).unwrap();
    let err = Vendored::Mnist
        .load(dir.path(), Checksums::Skip)
        .unwrap_err();
    assert!(err.to_string().contains("1x14x56"), "{err}");
}

#[test]
fn vendored_files_pass_their_checksums() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    for vendored in [Vendored::Mnist, Vendored::FashionMnist] {
        let m = vendored.load(&data, Checksums::Verify).unwrap();
        assert_eq!((m.train().len(), m.test().len()), (60_000, 10_000));
        let mut counts = [0usize; 10];
        m.test()
            .labels
            .iter()
            .for_each(|&l| counts[l as usize] += 1);
        let expected = match vendored {
            Vendored::Mnist => [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
            Vendored::FashionMnist => [1000; 10],
        };
        assert_eq!(counts, expected, "{}", vendored.id());
    }
}
