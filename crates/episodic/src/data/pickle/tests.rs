//! Unit tests of [`super`].

use super::writer::Pickle;
use super::*;

#[test]
fn reads_a_dict_with_bytes_and_str_keys() {
    let bytes = Pickle::new()
        .raw(b"}(")
        .bytes(b"a")
        .int(300)
        .str("b")
        .int_list(&[1, 2, 70000])
        .raw(b"u")
        .stop();
    let v = read(&bytes).unwrap();
    assert_eq!(*v.get("a").unwrap().as_ref(), Value::Int(300));
    let Value::List(items, 1) = v.get("b").unwrap().as_ref() else {
        panic!("{v:?}")
    };
    assert_eq!(*items[2], Value::Int(70000));
}

#[test]
fn refuses_globals_by_name() {
    let bytes = Pickle::new()
        .global("os", "system")
        .str("echo hi")
        .raw(&[0x85, b'R'])
        .stop();
    let err = read(&bytes).unwrap_err();
    assert!(err.contains("global os.system"), "{err}");
    // Protocol 4 names its globals on the stack.
    let mut p = Pickle::new();
    p.raw(&[0x8c, 8])
        .raw(b"builtins")
        .raw(&[0x8c, 4])
        .raw(b"eval")
        .raw(&[0x93]);
    let err = read(&p.stop()).unwrap_err();
    assert!(err.contains("builtins.eval"), "{err}");
}

#[test]
fn bounds_hostile_structures() {
    // A length field far beyond the input.
    let err = read(&[0x80, 2, b'X', 0xff, 0xff, 0xff, 0xff, b'a']).unwrap_err();
    assert!(err.contains("truncated"), "{err}");
    let err = read(&[
        0x80, 2, 0x8e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ])
    .unwrap_err();
    assert!(
        err.contains("truncated") || err.contains("too large"),
        "{err}"
    );
    // Deep nesting.
    let mut deep = vec![0x80, 2, b')'];
    deep.extend(std::iter::repeat_n(0x85, 100));
    deep.push(b'.');
    assert!(read(&deep).unwrap_err().contains("nest"));
    // A memo read before it is written, an unknown opcode, a stray STOP.
    assert!(read(&[0x80, 2, b'h', 7, b'.'])
        .unwrap_err()
        .contains("memo"));
    assert!(read(&[0x80, 2, 0x81, b'.']).unwrap_err().contains("0x81"));
    assert!(read(b".").unwrap_err().contains("underflow"));
    assert!(read(&[]).unwrap_err().contains("truncated"));
    // Sharing through the memo copies nothing: 2^30 references cost a few values.
    let mut laughs = vec![0x80, 2, b']', b'q', 0, b'0'];
    for i in 0..30u8 {
        laughs.extend([b'h', i, b'h', i, 0x86, b'q', i + 1, b'0']);
    }
    laughs.extend([b'h', 30, b'.']);
    assert!(read(&laughs).is_ok());
}
