//! Conversions between ONNX `TensorProto` initializers and plain constant arrays.

use super::proto::{TensorProto, tensor_proto::DataType};

/// A constant tensor: weights as `f32`, shapes and indices as `i64`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Constant {
    pub dims: Vec<i64>,
    pub values: Values,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Values {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

impl Constant {
    pub(crate) fn float(dims: Vec<i64>, values: Vec<f32>) -> Constant {
        Constant {
            dims,
            values: Values::Float(values),
        }
    }

    pub fn int(dims: Vec<i64>, values: Vec<i64>) -> Constant {
        Constant {
            dims,
            values: Values::Int(values),
        }
    }

    pub fn len(&self) -> usize {
        match &self.values {
            Values::Float(v) => v.len(),
            Values::Int(v) => v.len(),
        }
    }

    pub(crate) fn as_floats(&self) -> Vec<f32> {
        match &self.values {
            Values::Float(v) => v.clone(),
            Values::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    pub(crate) fn as_ints(&self) -> Vec<i64> {
        match &self.values {
            Values::Float(v) => v.iter().map(|&x| x as i64).collect(),
            Values::Int(v) => v.clone(),
        }
    }
}

/// Decodes an initializer or constant. Errors are plain messages; the caller names the tensor.
pub(super) fn decode(tensor: &TensorProto) -> Result<Constant, String> {
    if tensor.data_location == Some(super::proto::tensor_proto::DataLocation::External as i32) {
        return Err("stored as external data, which qsearch does not read; re-save the model with all tensors inside the .onnx file".into());
    }
    let dims = tensor.dims.clone();
    if dims.iter().any(|&d| d < 0) {
        return Err(format!("has negative dimensions {dims:?}"));
    }
    let expected = super::constant_ops::element_count(&dims)
        .ok_or_else(|| format!("has dimensions {dims:?} whose product overflows"))?;
    let raw = tensor.raw_data.as_deref().unwrap_or(&[]);
    let data_type = DataType::try_from(tensor.data_type.unwrap_or(0))
        .map_err(|_| format!("has unknown data type {}", tensor.data_type.unwrap_or(0)))?;
    let constant = match data_type {
        DataType::Float => Constant::float(
            dims,
            from_raw_or(raw, 4, &tensor.float_data, |b| {
                f32::from_le_bytes(std::array::from_fn(|i| b[i]))
            })?,
        ),
        DataType::Double => Constant::float(
            dims,
            from_raw_or(raw, 8, &tensor.double_data, |b| {
                f64::from_le_bytes(std::array::from_fn(|i| b[i]))
            })?
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        ),
        DataType::Int64 => Constant::int(
            dims,
            from_raw_or(raw, 8, &tensor.int64_data, |b| {
                i64::from_le_bytes(std::array::from_fn(|i| b[i]))
            })?,
        ),
        DataType::Int32 | DataType::Int8 | DataType::Uint8 | DataType::Int16 | DataType::Bool => {
            let width = match data_type {
                DataType::Int32 => 4,
                DataType::Int16 => 2,
                _ => 1,
            };
            let values = if raw.is_empty() {
                tensor.int32_data.iter().map(|&x| i64::from(x)).collect()
            } else {
                check_raw(raw, width)?;
                raw.chunks_exact(width)
                    .map(|b| match data_type {
                        DataType::Int32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        DataType::Int16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
                        DataType::Int8 => i64::from(b[0] as i8),
                        _ => i64::from(b[0]),
                    })
                    .collect()
            };
            Constant::int(dims, values)
        }
        other => {
            return Err(format!(
                "has data type {}, qsearch reads FLOAT, DOUBLE and integer tensors",
                other.as_str_name()
            ));
        }
    };
    if constant.len() != expected {
        return Err(format!(
            "holds {} values but its dimensions {:?} need {expected}",
            constant.len(),
            constant.dims
        ));
    }
    Ok(constant)
}

fn check_raw(raw: &[u8], width: usize) -> Result<(), String> {
    if raw.len().is_multiple_of(width) {
        Ok(())
    } else {
        Err(format!(
            "raw data has {} bytes, not a multiple of the element size {width}",
            raw.len()
        ))
    }
}

/// Reads little-endian `raw` data when present, the typed field otherwise.
fn from_raw_or<T: Clone>(
    raw: &[u8],
    width: usize,
    typed: &[T],
    read: impl Fn(&[u8]) -> T,
) -> Result<Vec<T>, String> {
    if raw.is_empty() {
        return Ok(typed.to_vec());
    }
    check_raw(raw, width)?;
    Ok(raw.chunks_exact(width).map(read).collect())
}

/// Encodes a float tensor as raw little-endian data.
pub(super) fn encode_floats(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// Encodes a double tensor as raw little-endian data (integers up to 2^53 stay exact).
pub(crate) fn encode_doubles(name: &str, dims: &[i64], values: &[f64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Double as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

pub(super) fn encode_ints(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_through_raw_data() {
        let t = encode_floats("w", &[2, 2], &[1.0, -2.5, 3.25, 0.0]);
        let c = decode(&t).unwrap();
        assert_eq!(c, Constant::float(vec![2, 2], vec![1.0, -2.5, 3.25, 0.0]));
    }

    #[test]
    fn typed_fields_are_read() {
        let t = TensorProto {
            dims: vec![3],
            data_type: Some(DataType::Int64 as i32),
            int64_data: vec![1, -1, 7],
            ..Default::default()
        };
        assert_eq!(decode(&t).unwrap().as_ints(), vec![1, -1, 7]);
    }

    #[test]
    fn wrong_length_is_reported() {
        let mut t = encode_floats("w", &[3], &[1.0, 2.0]);
        t.dims = vec![3];
        let err = decode(&t).unwrap_err();
        assert!(err.contains("holds 2 values"), "{err}");
    }
}
