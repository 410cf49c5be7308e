/// Appends pickle opcodes; each method writes one value the way Python's pickler does
/// under protocol 2 (without memoisation, which the reader does not need).
#[derive(Debug, Default, Clone)]
pub struct Pickle {
    /// The bytes written so far.
    pub out: Vec<u8>,
}

impl Pickle {
    /// A pickle starting with `PROTO 2`.
    pub fn new() -> Self {
        Self { out: vec![0x80, 2] }
    }

    /// Raw opcode bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    /// A Python 3 `str` (`BINUNICODE`).
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
        self
    }

    /// A Python 2 `str` (`BINSTRING`).
    pub fn py2_str(&mut self, b: &[u8]) -> &mut Self {
        self.out.push(b'T');
        self.out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.out.extend_from_slice(b);
        self
    }

    /// A Python 3 `bytes` under protocol 2: `_codecs.encode(str, 'latin1')`.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.global("_codecs", "encode");
        let text: String = b.iter().map(|&c| char::from(c)).collect();
        self.str(&text).str("latin1").raw(&[0x86, b'R'])
    }

    /// An int (`BININT1`, `BININT2` or `BININT`).
    pub fn int(&mut self, v: i64) -> &mut Self {
        match v {
            0..=0xff => self.raw(&[b'K', v as u8]),
            0x100..=0xffff => {
                self.out.push(b'M');
                self.raw(&(v as u16).to_le_bytes())
            }
            _ => {
                self.out.push(b'J');
                self.raw(&(v as i32).to_le_bytes())
            }
        }
    }

    /// A `GLOBAL` opcode.
    pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.out.push(b'c');
        self.out
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        self
    }

    /// A list of ints.
    pub fn int_list(&mut self, values: &[i64]) -> &mut Self {
        self.raw(b"](");
        for &v in values {
            self.int(v);
        }
        self.raw(b"e")
    }

    /// A list of Python 3 `bytes`.
    pub fn bytes_list(&mut self, values: &[&[u8]]) -> &mut Self {
        self.raw(b"](");
        for v in values {
            self.bytes(v);
        }
        self.raw(b"e")
    }

    /// A NumPy array as `ndarray.__reduce__` pickles it: `_reconstruct(ndarray, (0,), b'b')`
    /// built with the state `(1, shape, dtype(code), fortran, data)`.
    pub fn ndarray(
        &mut self,
        shape: &[usize],
        code: &str,
        fortran: bool,
        data: &[u8],
    ) -> &mut Self {
        self.global("numpy.core.multiarray", "_reconstruct")
            .global("numpy", "ndarray")
            .int(0)
            .raw(&[0x85])
            .bytes(b"b")
            .raw(&[0x87, b'R', b'('])
            .int(1)
            .raw(b"(");
        for &d in shape {
            self.int(d as i64);
        }
        self.raw(b"t")
            .global("numpy", "dtype")
            .str(code)
            .raw(&[0x89, 0x88, 0x87, b'R', b'('])
            .int(3)
            .str("|")
            .raw(b"NNN")
            .int(-1)
            .int(-1)
            .int(0)
            .raw(b"tb")
            .raw(if fortran { &[0x88] } else { &[0x89] })
            .bytes(data)
            .raw(b"tb")
    }

    /// Ends the pickle (`STOP`) and returns its bytes.
    pub fn stop(&mut self) -> Vec<u8> {
        self.out.push(b'.');
        std::mem::take(&mut self.out)
    }
}
