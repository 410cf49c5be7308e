//! A minimal, allow-listed reader of Python pickles, for the CIFAR "python version" files.
//!
//! Nothing is executed: the reader builds plain values from the opcodes of protocols 0-4 that
//! `pickle.dump` writes for dicts, lists, tuples, ints, floats, strings, bytes and NumPy arrays,
//! and refuses any other opcode. Of the globals, only the ones NumPy's array and dtype
//! reductions and Python 3's protocol-2 `bytes` use are known (see [`Global`]); any other global
//! (say `os.system`, `builtins.eval`, `marshal.loads`) is refused by name. `REDUCE` of an
//! allow-listed global records the call (callable and arguments) instead of performing it,
//! except for `_codecs.encode(str, 'latin1')`, which turns into the bytes it stands for;
//! `BUILD` attaches its state to the recorded call.
//!
//! Why not `serde-pickle`: it keeps the state of `BUILD` but drops the object it is applied
//! to, so a NumPy dtype's type code (`'u1'` vs `'i1'`) is lost, and it keeps no name for the
//! globals it does not know, so it can neither refuse `os.system` by name nor tell
//! `numpy.core.multiarray._reconstruct` from any other callable.
//!
//! Hostile input is bounded: every length field is checked against the bytes left before
//! anything is allocated, values are shared (not copied) between the memo and the stack,
//! containers nest at most [`MAX_DEPTH`] deep and at most [`MAX_VALUES`] values are made.

use std::collections::HashMap;
use std::rc::Rc;

/// How deep containers may nest (a CIFAR batch needs 5).
pub const MAX_DEPTH: usize = 32;
/// How many values a pickle may create (a CIFAR-100 training file needs about 400,000).
pub const MAX_VALUES: usize = 1 << 22;

/// The globals a CIFAR pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    /// `numpy.core.multiarray._reconstruct` (or `numpy._core.multiarray._reconstruct`).
    Reconstruct,
    /// `numpy.ndarray`.
    Ndarray,
    /// `numpy.dtype`.
    Dtype,
    /// `_codecs.encode`, Python 3's way of pickling `bytes` under protocol 2.
    Encode,
}

impl Global {
    fn lookup(module: &str, name: &str) -> Option<Self> {
        match (module, name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Some(Self::Reconstruct)
            }
            ("numpy", "ndarray") => Some(Self::Ndarray),
            ("numpy", "dtype") => Some(Self::Dtype),
            ("_codecs", "encode") => Some(Self::Encode),
            _ => None,
        }
    }
}

/// A recorded call of an allow-listed global and the state `BUILD` gave the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The callable.
    pub class: Global,
    /// Its arguments.
    pub args: Vec<Rc<Value>>,
    /// The state set by `BUILD`, if any.
    pub state: Option<Rc<Value>>,
}

/// A value built by the reader.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// A Python 2 `str` or a Python 3 `bytes`.
    Bytes(Vec<u8>),
    /// A Python 3 `str` or a Python 2 `unicode`.
    Str(String),
    /// A list, with its nesting depth.
    List(Vec<Rc<Value>>, usize),
    /// A tuple, with its nesting depth.
    Tuple(Vec<Rc<Value>>, usize),
    /// A dict's items in file order, with its nesting depth.
    Dict(Vec<(Rc<Value>, Rc<Value>)>, usize),
    /// An allow-listed global, not yet called.
    Global(Global),
    /// A recorded call, with its nesting depth.
    Object(Box<Object>, usize),
}

impl Value {
    /// Nesting depth: 0 for scalars, one more than the deepest element for containers.
    pub fn depth(&self) -> usize {
        match self {
            Self::List(_, d) | Self::Tuple(_, d) | Self::Dict(_, d) | Self::Object(_, d) => *d,
            _ => 0,
        }
    }

    /// The text of a `Str`, or of a `Bytes` that is UTF-8 (Python 2 `str` keys and names).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            Self::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// A short name of the value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Bool(_) => "a bool",
            Self::Int(_) => "an int",
            Self::Float(_) => "a float",
            Self::Bytes(_) => "bytes",
            Self::Str(_) => "a str",
            Self::List(..) => "a list",
            Self::Tuple(..) => "a tuple",
            Self::Dict(..) => "a dict",
            Self::Global(_) => "a global",
            Self::Object(..) => "an object",
        }
    }

    /// The value stored under the text key `key` in a dict (bytes or str keys).
    pub fn get(&self, key: &str) -> Option<&Rc<Value>> {
        match self {
            Self::Dict(items, _) => items
                .iter()
                .rev()
                .find(|(k, _)| k.as_text() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

fn depth_of<'a>(items: impl Iterator<Item = &'a Rc<Value>>) -> usize {
    items.map(|v| v.depth()).max().unwrap_or(0) + 1
}

enum Item {
    Mark,
    Value(Rc<Value>),
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    memo: HashMap<u32, Rc<Value>>,
    made: usize,
}

type Res<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "truncated pickle: {n} bytes wanted at offset {}, {} left",
                    self.pos,
                    self.bytes.len() - self.pos
                )
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Res<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len_u32(&mut self) -> Res<usize> {
        Ok(u32::from_le_bytes(self.le()?) as usize)
    }

    fn len_u64(&mut self) -> Res<usize> {
        let n = u64::from_le_bytes(self.le()?);
        usize::try_from(n).map_err(|_| format!("length {n} is too large"))
    }

    fn line(&mut self) -> Res<&'a str> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("truncated pickle: unterminated line at offset {}", self.pos))?;
        let line = self.take(end + 1)?;
        std::str::from_utf8(&line[..end]).map_err(|_| {
            format!(
                "a text argument at offset {} is not UTF-8",
                self.pos - end - 1
            )
        })
    }

    fn push(&mut self, v: Value) -> Res<()> {
        self.push_rc(Rc::new(v))
    }

    fn push_rc(&mut self, v: Rc<Value>) -> Res<()> {
        self.made += 1;
        if self.made > MAX_VALUES {
            return Err(format!("more than {MAX_VALUES} values"));
        }
        if v.depth() > MAX_DEPTH {
            return Err(format!("containers nest more than {MAX_DEPTH} deep"));
        }
        self.stack.push(Item::Value(v));
        Ok(())
    }

    fn pop(&mut self) -> Res<Rc<Value>> {
        match self.stack.pop() {
            Some(Item::Value(v)) => Ok(v),
            Some(Item::Mark) => Err(format!("unexpected mark at offset {}", self.pos)),
            None => Err(format!("stack underflow at offset {}", self.pos)),
        }
    }

    fn top(&mut self) -> Res<&mut Rc<Value>> {
        let pos = self.pos;
        match self.stack.last_mut() {
            Some(Item::Value(v)) => Ok(v),
            _ => Err(format!("stack underflow at offset {pos}")),
        }
    }

    fn pop_mark(&mut self) -> Res<Vec<Rc<Value>>> {
        let start = self
            .stack
            .iter()
            .rposition(|i| matches!(i, Item::Mark))
            .ok_or_else(|| format!("no mark on the stack at offset {}", self.pos))?;
        let items = self.stack.split_off(start + 1);
        self.stack.pop();
        items
            .into_iter()
            .map(|i| match i {
                Item::Value(v) => Ok(v),
                Item::Mark => Err("unexpected mark".to_string()),
            })
            .collect()
    }

    fn text(v: &Value, what: &str) -> Res<String> {
        v.as_text()
            .map(str::to_string)
            .ok_or_else(|| format!("{what} is {}, not a string", v.kind()))
    }

    fn global(&mut self, module: &str, name: &str) -> Res<()> {
        match Global::lookup(module, name) {
            Some(g) => self.push(Value::Global(g)),
            None => Err(format!(
                "refers to the global {module}.{name}, which is not allowed (only NumPy array reconstruction is)"
            )),
        }
    }

    fn memo_get(&mut self, index: u32) -> Res<()> {
        let v = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| format!("memo entry {index} read before it is written"))?;
        self.push_rc(v)
    }

    fn memo_put(&mut self, index: u32) -> Res<()> {
        let v = Rc::clone(self.top()?);
        if self.memo.len() >= MAX_VALUES {
            return Err(format!("more than {MAX_VALUES} memo entries"));
        }
        self.memo.insert(index, v);
        Ok(())
    }

    fn reduce(&mut self) -> Res<()> {
        let args = self.pop()?;
        let callable = self.pop()?;
        let Value::Tuple(args, _) = &*args else {
            return Err(format!("REDUCE arguments are {}, not a tuple", args.kind()));
        };
        let Value::Global(class) = &*callable else {
            return Err(format!("REDUCE calls {}, not a global", callable.kind()));
        };
        if *class == Global::Encode {
            let [text, encoding] = args.as_slice() else {
                return Err(format!(
                    "_codecs.encode takes 2 arguments, got {}",
                    args.len()
                ));
            };
            let encoding = Self::text(encoding, "the encoding of _codecs.encode")?;
            if encoding != "latin1" && encoding != "latin-1" {
                return Err(format!("_codecs.encode with encoding {encoding:?}"));
            }
            let Value::Str(text) = &**text else {
                return Err("_codecs.encode of something else than a str".into());
            };
            let bytes = text
                .chars()
                .map(|c| u8::try_from(u32::from(c)))
                .collect::<std::result::Result<Vec<u8>, _>>()
                .map_err(|_| "_codecs.encode of a str that is not latin-1".to_string())?;
            return self.push(Value::Bytes(bytes));
        }
        let depth = depth_of(args.iter());
        self.push(Value::Object(
            Box::new(Object {
                class: *class,
                args: args.clone(),
                state: None,
            }),
            depth,
        ))
    }

    fn build(&mut self) -> Res<()> {
        let state = self.pop()?;
        let pos = self.pos;
        let top = self.top()?;
        let depth = top.depth().max(state.depth() + 1);
        match Rc::make_mut(top) {
            Value::Object(object, d) if object.state.is_none() => {
                object.state = Some(state);
                *d = depth;
            }
            other => {
                return Err(format!(
                    "BUILD at offset {pos} applies to {}, not a fresh object",
                    other.kind()
                ))
            }
        }
        if depth > MAX_DEPTH {
            return Err(format!("containers nest more than {MAX_DEPTH} deep"));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Rc<Value>>) -> Res<()> {
        let add = depth_of(items.iter());
        self.made += items.len();
        let pos = self.pos;
        match Rc::make_mut(self.top()?) {
            Value::List(list, d) => {
                list.extend(items);
                *d = (*d).max(add);
                if *d > MAX_DEPTH {
                    return Err(format!("containers nest more than {MAX_DEPTH} deep"));
                }
                Ok(())
            }
            other => Err(format!(
                "APPEND at offset {pos} to {}, not a list",
                other.kind()
            )),
        }
    }

    fn set_items(&mut self, items: Vec<Rc<Value>>) -> Res<()> {
        if items.len() % 2 != 0 {
            return Err("SETITEMS with an odd number of items".into());
        }
        let add = depth_of(items.iter());
        let pos = self.pos;
        match Rc::make_mut(self.top()?) {
            Value::Dict(dict, d) => {
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    dict.push((k, v));
                }
                *d = (*d).max(add);
                if *d > MAX_DEPTH {
                    return Err(format!("containers nest more than {MAX_DEPTH} deep"));
                }
                Ok(())
            }
            other => Err(format!(
                "SETITEM at offset {pos} on {}, not a dict",
                other.kind()
            )),
        }
    }

    fn tuple(&mut self, items: Vec<Rc<Value>>) -> Res<()> {
        let depth = depth_of(items.iter());
        self.push(Value::Tuple(items, depth))
    }

    fn text_line_int(&mut self) -> Res<i64> {
        let line = self.line()?;
        let digits = line.strip_suffix('L').unwrap_or(line);
        digits
            .parse()
            .map_err(|_| format!("integer {line:?} is not a 64-bit integer"))
    }

    fn utf8(&mut self, n: usize) -> Res<()> {
        let raw = self.take(n)?;
        let s = std::str::from_utf8(raw).map_err(|_| "a str is not valid UTF-8".to_string())?;
        self.push(Value::Str(s.to_string()))
    }

    fn bytes(&mut self, n: usize) -> Res<()> {
        let raw = self.take(n)?.to_vec();
        self.push(Value::Bytes(raw))
    }

    fn run(mut self) -> Res<Rc<Value>> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(format!("unknown pickle protocol {proto}"));
                    }
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => {
                    let v = self.pop()?;
                    if !self.stack.is_empty() {
                        return Err("values left on the stack at STOP".into());
                    }
                    return Ok(v);
                }
                b'(' => self.stack.push(Item::Mark),
                b'0' => {
                    self.stack
                        .pop()
                        .ok_or_else(|| format!("stack underflow at offset {at}"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = Rc::clone(self.top()?);
                    self.push_rc(v)?;
                }
                b'}' => self.push(Value::Dict(Vec::new(), 1))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Vec::new(), 1))?;
                    self.set_items(items)?;
                }
                b']' => self.push(Value::List(Vec::new(), 1))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Vec::new(), 1))?;
                    self.append(items)?;
                }
                b')' => self.tuple(Vec::new())?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.tuple(items)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(format!("stack underflow at offset {at}"));
                    }
                    let mut items = (0..n).map(|_| self.pop()).collect::<Res<Vec<_>>>()?;
                    items.reverse();
                    self.tuple(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'I' => {
                    let v = match self.line()? {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        line => Value::Int(
                            line.parse()
                                .map_err(|_| format!("integer {line:?} is not a 64-bit integer"))?,
                        ),
                    };
                    self.push(v)?;
                }
                b'L' => {
                    let v = self.text_line_int()?;
                    self.push(Value::Int(v))?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    if n > 8 {
                        return Err(format!("a {n}-byte integer does not fit in 64 bits"));
                    }
                    let raw = self.take(n)?;
                    let fill = if raw.last().is_some_and(|&b| b & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    };
                    let mut le = [fill; 8];
                    le[..n].copy_from_slice(raw);
                    self.push(Value::Int(i64::from_le_bytes(le)))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v))?;
                }
                b'F' => {
                    let line = self.line()?;
                    let v = line
                        .parse()
                        .map_err(|_| format!("float {line:?} is not a number"))?;
                    self.push(Value::Float(v))?;
                }
                b'U' => {
                    let n = usize::from(self.u8()?);
                    self.bytes(n)?;
                }
                b'T' | b'B' => {
                    let n = self.len_u32()?;
                    self.bytes(n)?;
                }
                b'C' => {
                    let n = usize::from(self.u8()?);
                    self.bytes(n)?;
                }
                0x8e => {
                    let n = self.len_u64()?;
                    self.bytes(n)?;
                }
                b'X' => {
                    let n = self.len_u32()?;
                    self.utf8(n)?;
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    self.utf8(n)?;
                }
                0x8d => {
                    let n = self.len_u64()?;
                    self.utf8(n)?;
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(u32::from(i))?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.le()?);
                    self.memo_put(i)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let i = line
                        .parse()
                        .map_err(|_| format!("memo index {line:?} is not a number"))?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| "too many memo entries".to_string())?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(u32::from(i))?;
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.le()?);
                    self.memo_get(i)?;
                }
                b'g' => {
                    let line = self.line()?;
                    let i = line
                        .parse()
                        .map_err(|_| format!("memo index {line:?} is not a number"))?;
                    self.memo_get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let name = Self::text(&name, "the name of a global")?;
                    let module = Self::text(&module, "the module of a global")?;
                    self.global(&module, &name)?;
                }
                b'R' => self.reduce()?,
                b'b' => self.build()?,
                other => {
                    return Err(format!(
                        "opcode 0x{other:02x} at offset {at} is not supported (objects other than NumPy arrays, or a newer protocol)"
                    ))
                }
            }
        }
    }
}

/// Reads one pickle from `bytes` into a [`Value`], without executing anything. The error
/// says what is wrong, with the offset where it helps.
pub fn read(bytes: &[u8]) -> std::result::Result<Rc<Value>, String> {
    let reader = Reader {
        bytes,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        made: 0,
    };
    reader.run()
}

/// Builders of pickle bytes as Python writes them, for tests and fuzz seeds.
#[doc(hidden)]
pub mod writer;

#[cfg(test)]
mod tests;
