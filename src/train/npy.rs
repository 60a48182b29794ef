//! The .npy format (versions 1 to 3): the magic string, a header that is a Python dict literal
//! (`{'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }`), then the raw
//! elements. Plain numeric dtypes of either byte order are read; the shape is checked against
//! the bytes that are there before anything is allocated.

/// What an element is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Uint,
    Float,
}

/// A plain dtype: kind, bytes per element, byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dtype {
    pub kind: Kind,
    pub size: usize,
    pub big_endian: bool,
}

/// An array as stored: its dtype as written (`descr`), shape and raw C-order elements.
#[derive(Clone, Debug)]
pub(crate) struct Array {
    pub descr: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    data: Vec<u8>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

impl Array {
    /// Parses the contents of an .npy file.
    pub(crate) fn parse(mut bytes: Vec<u8>) -> Result<Array, String> {
        if !bytes.starts_with(MAGIC) {
            return Err("not an .npy array (bad magic string)".into());
        }
        if bytes.len() < 12 {
            return Err("truncated .npy header".into());
        }
        let (len, start) = match bytes[6] {
            1 => (
                usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
                10usize,
            ),
            2 | 3 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            v => return Err(format!(".npy format version {v}; versions 1 to 3 are read")),
        };
        let header = bytes
            .get(start..start.saturating_add(len))
            .ok_or("truncated .npy header")?;
        let header = std::str::from_utf8(header).map_err(|_| "an .npy header that is not text")?;
        let fields = parse_header(header)?;
        let descr = fields.descr.ok_or("an .npy header without 'descr'")?;
        let shape = fields.shape.ok_or("an .npy header without 'shape'")?;
        if fields.fortran_order {
            return Err(
                "stored in Fortran order; save numpy.ascontiguousarray(a) (C order)".into(),
            );
        }
        let dtype = parse_descr(&descr)?;
        let needed = shape.iter().try_fold(dtype.size, |n, &d| n.checked_mul(d));
        let data_len = bytes.len() - start - len;
        if needed != Some(data_len) {
            let needed = needed.map_or("more than memory holds".into(), |n| n.to_string());
            return Err(format!(
                "holds {data_len} bytes of data but shape {shape:?} of '{descr}' needs {needed}; the array is truncated or corrupt"
            ));
        }
        bytes.drain(..start + len);
        Ok(Array {
            descr,
            dtype,
            shape,
            data: bytes,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len() / self.dtype.size
    }

    /// The raw bytes of element `i`, most significant byte last.
    fn element(&self, i: usize) -> [u8; 8] {
        let s = self.dtype.size;
        let mut le = [0u8; 8];
        le[..s].copy_from_slice(&self.data[i * s..(i + 1) * s]);
        if self.dtype.big_endian {
            le[..s].reverse();
        }
        le
    }

    /// The elements as integers (an integer dtype).
    pub(crate) fn integers(&self) -> impl Iterator<Item = i128> + '_ {
        let (s, signed) = (self.dtype.size, self.dtype.kind == Kind::Int);
        (0..self.len()).map(move |i| {
            let v = u64::from_le_bytes(self.element(i));
            let shift = 64 - 8 * s as u32;
            if signed {
                i128::from(((v << shift) as i64) >> shift)
            } else {
                i128::from(v)
            }
        })
    }

    /// The elements as floats (a float32 or float64 dtype).
    pub(crate) fn floats(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.len()).map(move |i| {
            let e = self.element(i);
            match self.dtype.size {
                4 => f64::from(f32::from_le_bytes([e[0], e[1], e[2], e[3]])),
                _ => f64::from_le_bytes(e),
            }
        })
    }

    /// The elements of a uint8 array.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data
    }
}

/// `<u1`, `|u1`, `>i8`, `<f4`...: byte order, kind, size.
fn parse_descr(descr: &str) -> Result<Dtype, String> {
    let unsupported = || {
        format!("dtype '{descr}'; plain integer (i1-i8, u1-u8) and float (f4, f8) dtypes are read")
    };
    let mut chars = descr.chars();
    let big_endian = match chars.next() {
        Some('>') => true,
        Some('<' | '|' | '=') => false,
        _ => return Err(unsupported()),
    };
    let kind = match chars.next() {
        Some('i') => Kind::Int,
        Some('u') => Kind::Uint,
        Some('f') => Kind::Float,
        _ => return Err(unsupported()),
    };
    let size: usize = chars.as_str().parse().map_err(|_| unsupported())?;
    let ok = match kind {
        Kind::Float => matches!(size, 4 | 8),
        _ => matches!(size, 1 | 2 | 4 | 8),
    };
    if !ok {
        return Err(unsupported());
    }
    Ok(Dtype {
        kind,
        size,
        big_endian,
    })
}

#[derive(Default)]
struct Header {
    descr: Option<String>,
    fortran_order: bool,
    shape: Option<Vec<usize>>,
}

/// The dict literal of an .npy header: string keys, and string, boolean or integer-tuple values.
fn parse_header(text: &str) -> Result<Header, String> {
    let bad = || {
        format!("an .npy header that is not a dict of descr, fortran_order and shape: {text:.120}")
    };
    let mut p = Parser {
        rest: text.trim_start(),
    };
    p.expect('{').ok_or_else(bad)?;
    let mut header = Header::default();
    while !p.eat('}') {
        let key = p.string().ok_or_else(bad)?;
        p.expect(':').ok_or_else(bad)?;
        match key.as_str() {
            "descr" => header.descr = Some(p.string().ok_or_else(bad)?),
            "fortran_order" => header.fortran_order = p.boolean().ok_or_else(bad)?,
            "shape" => header.shape = Some(p.tuple()?.ok_or_else(bad)?),
            _ => return Err(bad()),
        }
        if !p.eat(',') {
            p.expect('}').ok_or_else(bad)?;
            break;
        }
    }
    Ok(header)
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r.trim_start();
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn string(&mut self) -> Option<String> {
        let quote = self
            .rest
            .chars()
            .next()
            .filter(|q| matches!(q, '\'' | '"'))?;
        let body = &self.rest[1..];
        let end = body.find(quote)?;
        let s = body[..end].to_string();
        self.rest = body[end + 1..].trim_start();
        Some(s)
    }

    fn boolean(&mut self) -> Option<bool> {
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(r) = self.rest.strip_prefix(word) {
                self.rest = r.trim_start();
                return Some(value);
            }
        }
        None
    }

    /// `(2, 3)`, `(5,)` or `()`; `Err` for a dimension past `usize`.
    fn tuple(&mut self) -> Result<Option<Vec<usize>>, String> {
        if !self.eat('(') {
            return Ok(None);
        }
        let mut dims = Vec::new();
        while !self.eat(')') {
            let digits = self.rest.len()
                - self
                    .rest
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .len();
            if digits == 0 {
                return Ok(None);
            }
            let d = self.rest[..digits].parse().map_err(|_| {
                format!("a dimension of {} in the .npy shape", &self.rest[..digits])
            })?;
            dims.push(d);
            self.rest = self.rest[digits..].trim_start();
            // Python 2 wrote long integers as `60000L`.
            self.eat('L');
            if !self.eat(',') {
                if !self.eat(')') {
                    return Ok(None);
                }
                break;
            }
        }
        Ok(Some(dims))
    }
}

/// An .npy file (version 1) of `data`, elements of dtype `descr` in C order of `shape`.
pub(crate) fn encode(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // numpy pads the header with spaces and a newline to a multiple of 64 bytes.
    while !(MAGIC.len() + 4 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend([1, 0]);
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}
