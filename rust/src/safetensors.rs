//! Reading safetensors files without trusting them.
//!
//! A safetensors file is an 8-byte little-endian header length N, N bytes of
//! JSON (`{"name": {"dtype", "shape", "data_offsets": [start, end]}, ...,
//! "__metadata__": {...}}`), then the tensor bytes. The header is checked
//! against the file before any byte of data is touched: every offset within
//! the data, every byte count equal to dtype size x element count, no two
//! tensors overlapping. A file that fails any check is a `Checkpoint` error;
//! nothing here can panic or read out of bounds on a lying header.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::Error;

/// Headers larger than this are refused (the format's own limit is 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The element types of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE double.
    F64,
    /// IEEE single.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Any non-float type (integers, bool, float8): its size in bytes.
    Other(&'static str, usize),
}

impl Dtype {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "F64" => Self::F64,
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "I64" => Self::Other("I64", 8),
            "U64" => Self::Other("U64", 8),
            "I32" => Self::Other("I32", 4),
            "U32" => Self::Other("U32", 4),
            "I16" => Self::Other("I16", 2),
            "U16" => Self::Other("U16", 2),
            "I8" => Self::Other("I8", 1),
            "U8" => Self::Other("U8", 1),
            "BOOL" => Self::Other("BOOL", 1),
            "F8_E4M3" => Self::Other("F8_E4M3", 1),
            "F8_E5M2" => Self::Other("F8_E5M2", 1),
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 => 8,
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Other(_, size) => size,
        }
    }

    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::F64 => "F64",
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Other(name, _) => name,
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

/// Parses and validates the header of a safetensors file whose bytes start
/// with `prefix` (at least the first 8 + N bytes) and whose total size is
/// `file_len`.
pub fn parse_header(prefix: &[u8], file_len: u64) -> Result<Header, Error> {
    let length_bytes: [u8; 8] =
        prefix
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                corrupt(format!(
                    "file of {file_len} bytes is too short for a safetensors header"
                ))
            })?;
    let header_len = u64::from_le_bytes(length_bytes);
    if header_len > MAX_HEADER_BYTES {
        return Err(corrupt(format!(
            "header claims {header_len} bytes (more than the format's 100 MB limit)"
        )));
    }
    if 8 + header_len > file_len {
        return Err(corrupt(format!(
            "header claims {header_len} bytes but the file has only {} after the length (truncated?)",
            file_len.saturating_sub(8)
        )));
    }
    let header_len = header_len as usize;
    let json = prefix
        .get(8..8 + header_len)
        .ok_or_else(|| corrupt("header bytes were not all read"))?;
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| corrupt(format!("header is not valid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| corrupt("header is not a JSON object"))?;
    let data_len = (file_len - 8 - header_len as u64) as usize;
    let mut tensors = Vec::with_capacity(object.len());
    let mut metadata = BTreeMap::new();
    for (name, entry) in object {
        if name == "__metadata__" {
            let map = entry
                .as_object()
                .ok_or_else(|| corrupt("__metadata__ is not an object"))?;
            for (k, v) in map {
                let text = v
                    .as_str()
                    .ok_or_else(|| corrupt(format!("__metadata__[{k:?}] is not a string")))?;
                metadata.insert(k.clone(), text.to_owned());
            }
            continue;
        }
        tensors.push(parse_entry(name, entry, data_len)?);
    }
    let mut by_start: Vec<&TensorInfo> = tensors.iter().filter(|t| t.end > t.start).collect();
    by_start.sort_by_key(|t| t.start);
    for pair in by_start.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(corrupt(format!(
                "tensors {:?} and {:?} overlap in the file",
                pair[0].name, pair[1].name
            )));
        }
    }
    Ok(Header {
        tensors,
        metadata,
        data_start: 8 + header_len,
    })
}

fn parse_entry(name: &str, entry: &Value, data_len: usize) -> Result<TensorInfo, Error> {
    let field = |key: &str| {
        entry
            .get(key)
            .ok_or_else(|| corrupt(format!("tensor {name:?} has no {key:?}")))
    };
    let dtype_name = field("dtype")?
        .as_str()
        .ok_or_else(|| corrupt(format!("tensor {name:?}: dtype is not a string")))?;
    let dtype = Dtype::parse(dtype_name)
        .ok_or_else(|| corrupt(format!("tensor {name:?}: unknown dtype {dtype_name:?}")))?;
    let shape_value = field("shape")?
        .as_array()
        .ok_or_else(|| corrupt(format!("tensor {name:?}: shape is not a list")))?;
    let mut shape = Vec::with_capacity(shape_value.len());
    for dim in shape_value {
        let dim = dim.as_u64().ok_or_else(|| {
            corrupt(format!(
                "tensor {name:?}: shape {shape_value:?} is not a list of sizes"
            ))
        })?;
        shape.push(
            usize::try_from(dim)
                .map_err(|_| corrupt(format!("tensor {name:?}: dimension {dim} is too large")))?,
        );
    }
    let offsets = field("data_offsets")?
        .as_array()
        .ok_or_else(|| corrupt(format!("tensor {name:?}: data_offsets is not a list")))?;
    let (start, end) = match offsets.as_slice() {
        [s, e] => (s.as_u64(), e.as_u64()),
        _ => (None, None),
    };
    let (Some(start), Some(end)) = (start, end) else {
        return Err(corrupt(format!(
            "tensor {name:?}: data_offsets must be two byte offsets, got {offsets:?}"
        )));
    };
    if start > end || end > data_len as u64 {
        return Err(corrupt(format!(
            "tensor {name:?}: bytes [{start}, {end}) lie outside the {data_len} bytes of data (truncated or lying header)"
        )));
    }
    let elements = shape.iter().try_fold(1_usize, |acc, &d| acc.checked_mul(d));
    let expected = elements.and_then(|n| n.checked_mul(dtype.size()));
    if expected != Some((end - start) as usize) {
        return Err(corrupt(format!(
            "tensor {name:?}: {} of shape {shape:?} needs {} bytes, the header gives {}",
            dtype.name(),
            expected.map_or("more than usize".to_owned(), |e| e.to_string()),
            end - start
        )));
    }
    Ok(TensorInfo {
        name: name.to_owned(),
        dtype,
        shape,
        start: start as usize,
        end: end as usize,
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
