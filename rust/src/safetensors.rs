//! Reading safetensors files without trusting them.
//!
//! A safetensors file is an 8-byte little-endian header length N, N bytes of
//! JSON (`{"name": {"dtype", "shape", "data_offsets": [start, end]}, ...,
//! "__metadata__": {...}}`), then the tensor bytes. The header is checked
//! against the file before any byte of data is touched: every offset within
//! the data, every byte count equal to dtype size x element count, and the
//! tensors tiling the data from its first byte to its last without a gap or
//! an overlap (what the format's own reader requires). A file that fails any
//! check is a `Checkpoint` error;
//! nothing here can panic or read out of bounds on a lying header.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::Error;

/// Headers larger than this are refused (the format's own limit is 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The element types of the format: one table that serves both the header
/// parser and the engine's packed matrices (`matrix::PackedMatrix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE double.
    F64,
    /// IEEE single.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16 (the top half of an IEEE single).
    BF16,
    /// 8-bit float, 4 exponent bits.
    F8E4M3,
    /// 8-bit float, 5 exponent bits.
    F8E5M2,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Boolean, one byte.
    Bool,
}

/// Each dtype with its name in the file and its size in bytes.
const DTYPES: [(Dtype, &str, usize); 15] = [
    (Dtype::F64, "F64", 8),
    (Dtype::F32, "F32", 4),
    (Dtype::F16, "F16", 2),
    (Dtype::BF16, "BF16", 2),
    (Dtype::F8E4M3, "F8_E4M3", 1),
    (Dtype::F8E5M2, "F8_E5M2", 1),
    (Dtype::I64, "I64", 8),
    (Dtype::U64, "U64", 8),
    (Dtype::I32, "I32", 4),
    (Dtype::U32, "U32", 4),
    (Dtype::I16, "I16", 2),
    (Dtype::U16, "U16", 2),
    (Dtype::I8, "I8", 1),
    (Dtype::U8, "U8", 1),
    (Dtype::Bool, "BOOL", 1),
];

impl Dtype {
    /// The dtype written `name` in a header, if the format has one.
    pub fn parse(name: &str) -> Option<Self> {
        DTYPES.iter().find(|e| e.1 == name).map(|e| e.0)
    }

    fn entry(self) -> (Dtype, &'static str, usize) {
        *DTYPES
            .iter()
            .find(|e| e.0 == self)
            .expect("every dtype is in the table")
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        self.entry().2
    }

    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The machine epsilon of the floating-point types the engine decodes
    /// (F64, F32, F16, BF16); None for every other type.
    pub fn epsilon(self) -> Option<f64> {
        match self {
            Self::F64 => Some(f64::EPSILON),
            Self::F32 => Some(f64::from(f32::EPSILON)),
            Self::F16 => Some(2f64.powi(-10)),
            Self::BF16 => Some(2f64.powi(-7)),
            _ => None,
        }
    }

    /// The numpy name of the type, for messages.
    pub fn numpy_name(self) -> &'static str {
        match self {
            Self::F64 => "float64",
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::F8E4M3 => "float8_e4m3",
            Self::F8E5M2 => "float8_e5m2",
            Self::I64 => "int64",
            Self::U64 => "uint64",
            Self::I32 => "int32",
            Self::U32 => "uint32",
            Self::I16 => "int16",
            Self::U16 => "uint16",
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }
}

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Its name.
    pub name: String,
    /// Its element type.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Byte range within the data section.
    pub start: usize,
    /// End of that range (exclusive).
    pub end: usize,
}

/// A validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The tensors, in file order.
    pub tensors: Vec<TensorInfo>,
    /// `__metadata__` (string to string).
    pub metadata: BTreeMap<String, String>,
    /// Where the data section starts in the file (8 + header length).
    pub data_start: usize,
}

fn corrupt(message: impl Into<String>) -> Error {
    Error::Checkpoint(message.into())
}

/// Names and JSON values echoed in messages are cut to this many characters,
/// so that a hostile header cannot make an error message megabytes long.
const ECHO_CHARS: usize = 80;

/// `text` quoted, cut to `ECHO_CHARS`.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// A JSON value as JSON, cut to `ECHO_CHARS`.
fn json(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The header length `N` stored in a file's first 8 bytes, checked against
/// the file's size `file_len` before anything is allocated for it: more
/// than the format's 100 MB limit, or a header that would end past the end
/// of the file, is a `Checkpoint` error. The messages never echo the field
/// itself: in a file that is not safetensors at all, those 8 bytes are an
/// arbitrary number that would only confuse.
pub fn header_length(length_field: [u8; 8], file_len: u64) -> Result<usize, Error> {
    let header_len = u64::from_le_bytes(length_field);
    if header_len > MAX_HEADER_BYTES {
        return Err(corrupt(
            "not a safetensors file: its header length field is beyond the format's 100 MB limit",
        ));
    }
    if header_len + 8 > file_len {
        return Err(corrupt(format!(
            "truncated, or not a safetensors file: its header would end past the end of the file ({file_len} bytes)"
        )));
    }
    // At most 100 MB: fits any usize of 32 bits or more.
    usize::try_from(header_len).map_err(|_| corrupt("header too large for this platform"))
}

/// Parses and validates the header of a safetensors file whose bytes start
/// with `prefix` (at least the first 8 + N bytes) and whose total size is
/// `file_len`.
pub fn parse_header(prefix: &[u8], file_len: u64) -> Result<Header, Error> {
    let length_field: [u8; 8] =
        prefix
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                corrupt(format!(
                    "file of {file_len} bytes is too short for a safetensors header"
                ))
            })?;
    let header_len = header_length(length_field, file_len)?;
    let json_bytes = prefix
        .get(8..8 + header_len)
        .ok_or_else(|| corrupt("header bytes were not all read"))?;
    let value: Value = serde_json::from_slice(json_bytes)
        .map_err(|e| corrupt(format!("header is not valid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| corrupt("header is not a JSON object"))?;
    let data_len = usize::try_from(file_len - 8 - header_len as u64)
        .map_err(|_| corrupt("file too large for this platform"))?;
    let mut tensors = Vec::with_capacity(object.len());
    let mut metadata = BTreeMap::new();
    for (name, entry) in object {
        if name == "__metadata__" {
            let map = entry
                .as_object()
                .ok_or_else(|| corrupt("__metadata__ is not an object"))?;
            for (k, v) in map {
                let text = v.as_str().ok_or_else(|| {
                    corrupt(format!("__metadata__[{}] is not a string", quoted(k)))
                })?;
                metadata.insert(k.clone(), text.to_owned());
            }
            continue;
        }
        tensors.push(parse_entry(name, entry, data_len)?);
    }
    tile(&tensors, data_len)?;
    Ok(Header {
        tensors,
        metadata,
        data_start: 8 + header_len,
    })
}

/// Checks that the tensors, in the order of their offsets, cover the data
/// exactly, as the format's own reader requires (`safetensors` refuses a
/// file with a gap, an overlap or bytes after the last tensor): a gap is
/// also what a duplicate name leaves, since the JSON object keeps only the
/// last of two entries of one name.
fn tile(tensors: &[TensorInfo], data_len: usize) -> Result<(), Error> {
    let mut by_start: Vec<&TensorInfo> = tensors.iter().collect();
    by_start.sort_by_key(|t| (t.start, t.end));
    let mut position = 0;
    let mut previous: Option<&TensorInfo> = None;
    for tensor in by_start {
        if tensor.start < position {
            let other = previous.map_or_else(String::new, |p| quoted(&p.name));
            return Err(corrupt(format!(
                "tensors {other} and {} overlap in the file",
                quoted(&tensor.name)
            )));
        }
        if tensor.start > position {
            return Err(corrupt(format!(
                "bytes {position}..{} of the data belong to no tensor (before {}): a gap, or a tensor name given twice in the header",
                tensor.start,
                quoted(&tensor.name)
            )));
        }
        position = tensor.end;
        previous = Some(tensor);
    }
    if position != data_len {
        return Err(corrupt(format!(
            "the tensors end at byte {position} of {data_len} data bytes: the file holds bytes its header does not describe"
        )));
    }
    Ok(())
}

fn parse_entry(name: &str, entry: &Value, data_len: usize) -> Result<TensorInfo, Error> {
    let tensor = quoted(name);
    let field = |key: &str| {
        entry
            .get(key)
            .ok_or_else(|| corrupt(format!("tensor {tensor} has no {key:?}")))
    };
    let dtype_value = field("dtype")?;
    let dtype = dtype_value.as_str().and_then(Dtype::parse).ok_or_else(|| {
        corrupt(format!(
            "tensor {tensor}: unknown dtype {}",
            json(dtype_value)
        ))
    })?;
    let shape_value = field("shape")?;
    let dims = shape_value
        .as_array()
        .ok_or_else(|| corrupt(format!("tensor {tensor}: shape is not a list")))?;
    let mut shape = Vec::with_capacity(dims.len());
    for dim in dims {
        let dim = dim
            .as_u64()
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| {
                corrupt(format!(
                    "tensor {tensor}: shape {} is not a list of sizes",
                    json(shape_value)
                ))
            })?;
        shape.push(dim);
    }
    let offsets = field("data_offsets")?;
    let (start, end) = match offsets.as_array().map(Vec::as_slice) {
        Some([s, e]) => (s.as_u64(), e.as_u64()),
        _ => (None, None),
    };
    let (Some(start), Some(end)) = (start, end) else {
        return Err(corrupt(format!(
            "tensor {tensor}: data_offsets must be two byte offsets, got {}",
            json(offsets)
        )));
    };
    if start > end || end > data_len as u64 {
        return Err(corrupt(format!(
            "tensor {tensor}: its data_offsets lie outside the {data_len} bytes of data (truncated or lying header)"
        )));
    }
    // Both offsets are now within the data, hence within usize.
    let (start, end) = (start as usize, end as usize);
    let elements = shape.iter().try_fold(1_usize, |acc, &d| acc.checked_mul(d));
    let expected = elements.and_then(|n| n.checked_mul(dtype.size()));
    if expected != Some(end - start) {
        return Err(corrupt(format!(
            "tensor {tensor}: {} of shape {shape:?} needs {} bytes, its data_offsets give {}",
            dtype.name(),
            expected.map_or("more than usize".to_owned(), |e| e.to_string()),
            end - start
        )));
    }
    Ok(TensorInfo {
        name: name.to_owned(),
        dtype,
        shape,
        start,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data_len: usize) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend(std::iter::repeat_n(0u8, data_len));
        out
    }

    fn parse(bytes: &[u8]) -> Result<Header, Error> {
        parse_header(bytes, bytes.len() as u64)
    }

    #[test]
    fn a_valid_header_is_read() {
        let h = r#"{"__metadata__":{"step":"100"},"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[3],"data_offsets":[12,24]}}"#;
        let header = parse(&file(h, 24)).unwrap();
        assert_eq!(header.metadata["step"], "100");
        assert_eq!(header.tensors.len(), 2);
        let w = header.tensors.iter().find(|t| t.name == "w").unwrap();
        assert_eq!(
            (w.dtype, w.shape.clone(), w.start, w.end),
            (Dtype::BF16, vec![2, 3], 0, 12)
        );
        assert_eq!(header.data_start, 8 + h.len());
    }

    #[test]
    fn lying_and_truncated_headers_are_refused() {
        let cases = [
            (
                r#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#,
                20,
                "outside",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#,
                24,
                "needs 24 bytes",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
                24,
                "outside",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
                24,
                "overlap",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}"#,
                32,
                "belong to no tensor",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[6],"data_offsets":[8,32]}}"#,
                32,
                "name given twice",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                32,
                "does not describe",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}"#,
                16,
                "overlap",
            ),
            (
                r#"{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#,
                8,
                "unknown dtype",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
                8,
                "list of sizes",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
                8,
                "more than usize",
            ),
            (
                r#"{"w":{"dtype":"F32","data_offsets":[0,8]}}"#,
                8,
                "no \"shape\"",
            ),
            (r#"[1,2,3]"#, 0, "not a JSON object"),
            (r#"{"w": "#, 0, "not valid JSON"),
            (r#"{"__metadata__":{"step":100}}"#, 0, "not a string"),
        ];
        for (header, data, expected) in cases {
            match parse(&file(header, data)) {
                Err(Error::Checkpoint(m)) => assert!(m.contains(expected), "{header}: {m}"),
                other => panic!("{header}: expected a checkpoint error, got {other:?}"),
            }
        }
        // A header length beyond the file.
        let mut short = file(r#"{}"#, 0);
        short[0] = 200;
        assert!(matches!(parse(&short), Err(Error::Checkpoint(m)) if m.contains("truncated")));
        assert!(matches!(parse(&[1, 2, 3]), Err(Error::Checkpoint(_))));
    }

    #[test]
    fn absurd_header_lengths_are_refused_without_echoing_them() {
        // The first 8 bytes of a zip archive (a torch .pt file) and of a text file.
        for field in [*b"PK\x03\x04\x14\x00\x00\x00", *b"# hello\n", [0xFF; 8]] {
            let mut bytes = field.to_vec();
            bytes.extend_from_slice(&[b' '; 64]);
            let number = u64::from_le_bytes(field).to_string();
            match parse(&bytes) {
                Err(Error::Checkpoint(m)) => {
                    assert!(m.contains("not a safetensors file"), "{m}");
                    assert!(!m.contains(&number), "{m}");
                }
                other => panic!("expected a checkpoint error, got {other:?}"),
            }
        }
        // Just above the 100 MB limit, in a file that is large enough.
        let field = (MAX_HEADER_BYTES + 1).to_le_bytes();
        assert!(matches!(
            header_length(field, u64::MAX),
            Err(Error::Checkpoint(m)) if m.contains("100 MB")
        ));
        assert_eq!(header_length(16u64.to_le_bytes(), 24).unwrap(), 16);
        assert!(header_length(17u64.to_le_bytes(), 24).is_err());
    }

    /// A xorshift generator: the fuzz tests are deterministic.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// A number a hostile header might hold: small, near a power of two,
        /// huge, negative, fractional, or not a number at all.
        fn number(&mut self, small: u64) -> String {
            match self.below(8) {
                0 => (1u64 << self.below(64)).to_string(),
                1 => u64::MAX.to_string(),
                2 => format!("-{}", self.below(10)),
                3 => format!("{}.5", self.below(small + 1)),
                4 => "1e400".to_owned(),
                5 => "\"7\"".to_owned(),
                _ => self.below(small + 1).to_string(),
            }
        }
    }

    #[test]
    fn random_headers_never_panic_and_what_passes_is_consistent() {
        let names = [
            "F64", "F32", "F16", "BF16", "I8", "BOOL", "F8_E5M2", "Q4", "",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for _ in 0..30_000 {
            // Half the headers lay their tensors end to end, as real files
            // do (random offsets alone would almost never tile the data).
            let consistent = rng.below(2) == 0;
            let mut data_len = rng.below(80) as usize;
            let mut end = 0;
            let mut entries = Vec::new();
            for t in 0..rng.below(4) {
                let dtype = names[rng.below(names.len() as u64) as usize];
                let sizes: Vec<u64> = (0..rng.below(4)).map(|_| rng.below(6)).collect();
                let mut shape: Vec<String> = sizes.iter().map(|n| n.to_string()).collect();
                let offsets: Vec<String> = if consistent {
                    let bytes = Dtype::parse(dtype).map_or(4, Dtype::size);
                    let start = end;
                    end += bytes * sizes.iter().product::<u64>() as usize;
                    vec![start.to_string(), end.to_string()]
                } else {
                    shape = (0..rng.below(4)).map(|_| rng.number(6)).collect();
                    (0..if rng.below(10) == 0 { 3 } else { 2 })
                        .map(|_| rng.number(data_len as u64 + 4))
                        .collect()
                };
                let mut fields = vec![
                    format!("\"dtype\":\"{dtype}\""),
                    format!("\"shape\":[{}]", shape.join(",")),
                    format!("\"data_offsets\":[{}]", offsets.join(",")),
                ];
                if rng.below(20) == 0 {
                    fields.remove(rng.below(3) as usize);
                }
                entries.push(format!("\"t{t}\":{{{}}}", fields.join(",")));
            }
            if rng.below(4) == 0 {
                entries.push(format!("\"__metadata__\":{{\"step\":{}}}", rng.number(9)));
            }
            if consistent && rng.below(8) != 0 {
                data_len = end;
            }
            let header = format!("{{{}}}", entries.join(","));
            let mut bytes = file(&header, data_len);
            // Sometimes a lying length field, or a cut file.
            match rng.below(10) {
                0 => bytes[..8].copy_from_slice(&rng.next().to_le_bytes()),
                1 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
                _ => {}
            }
            let Ok(parsed) = parse(&bytes) else { continue };
            accepted += 1;
            let data = bytes.len() - parsed.data_start;
            let mut ranges: Vec<(usize, usize)> = Vec::new();
            for t in &parsed.tensors {
                let count: usize = t.shape.iter().product();
                assert!(t.start <= t.end && t.end <= data, "{header}");
                assert_eq!(count * t.dtype.size(), t.end - t.start, "{header}");
                assert!(t.dtype.epsilon().is_some() || t.dtype.size() <= 8);
                if t.end > t.start {
                    ranges.push((t.start, t.end));
                }
            }
            ranges.sort_unstable();
            assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0), "{header}");
            assert_eq!(ranges.first().map_or(0, |r| r.0), 0, "{header}");
            assert_eq!(ranges.last().map_or(0, |r| r.1), data, "{header}");
        }
        // The generator must also produce valid headers, or it tests nothing.
        assert!(accepted > 1000, "only {accepted} headers were accepted");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: random prefixes and mutations of a valid file.
        let valid = file(
            r#"{"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}"#,
            8,
        );
        let mut state = 0x1234_5678_9ABC_DEF0_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            bytes.truncate((next() as usize) % (bytes.len() + 1));
            let _ = parse(&bytes);
        }
    }
}
