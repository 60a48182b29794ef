//! Operators evaluated on constants at import time. Exporters write shape arithmetic (padding
//! amounts, flatten sizes) as small graphs of these; qsearch folds them into plain constants.

use super::tensor::{Constant, Values};

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

fn udims(c: &Constant) -> Vec<usize> {
    c.dims.iter().map(|&d| d as usize).collect()
}

/// The number of elements of a tensor of shape `dims`: `None` when a dimension is negative or
/// the product overflows.
pub(super) fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    })
}

/// A new constant with `dims` whose element `i` is element `source(i)` of `c`; `dims` never
/// hold more elements than `c` or the constant that chose them.
fn gather_elements(c: &Constant, dims: Vec<i64>, source: impl Fn(usize) -> usize) -> Constant {
    let n = element_count(&dims).unwrap_or(0);
    let values = match &c.values {
        Values::Float(v) => Values::Float((0..n).map(|i| v[source(i)]).collect()),
        Values::Int(v) => Values::Int((0..n).map(|i| v[source(i)]).collect()),
    };
    Constant { dims, values }
}

/// Multi-index of flat position `i` for `dims`.
fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut index = vec![0; dims.len()];
    for axis in (0..dims.len()).rev() {
        index[axis] = i % dims[axis].max(1);
        i /= dims[axis].max(1);
    }
    index
}

/// Same values, new dimensions (already resolved).
pub(super) fn reshape(c: &Constant, dims: Vec<i64>) -> Result<Constant, String> {
    if element_count(&dims) != Some(c.len()) {
        return Err(format!(
            "cannot reshape a constant of {} values to {dims:?}",
            c.len()
        ));
    }
    Ok(Constant {
        dims,
        values: c.values.clone(),
    })
}

/// Permutes the axes; an empty `perm` reverses them (the ONNX default).
pub(super) fn transpose(c: &Constant, perm: &[i64]) -> Result<Constant, String> {
    let dims = udims(c);
    let perm: Vec<usize> = if perm.is_empty() {
        (0..dims.len()).rev().collect()
    } else {
        perm.iter().map(|&p| p as usize).collect()
    };
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..dims.len()).collect::<Vec<_>>() {
        return Err(format!(
            "permutation {perm:?} does not fit a rank-{} constant",
            dims.len()
        ));
    }
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let in_strides = strides(&dims);
    let source = |i: usize| {
        let index = unravel(i, &out_dims);
        index
            .iter()
            .zip(&perm)
            .map(|(&x, &p)| x * in_strides[p])
            .sum()
    };
    Ok(gather_elements(
        c,
        out_dims.iter().map(|&d| d as i64).collect(),
        source,
    ))
}

/// ONNX `Slice` with negative indices, clamping and negative steps.
pub(super) fn slice(
    c: &Constant,
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
) -> Result<Constant, String> {
    let dims = udims(c);
    let rank = dims.len() as i64;
    let mut begin: Vec<i64> = vec![0; dims.len()];
    let mut step: Vec<i64> = vec![1; dims.len()];
    let mut count: Vec<usize> = dims.clone();
    let axes: Vec<i64> = if axes.is_empty() {
        (0..starts.len() as i64).collect()
    } else {
        axes.to_vec()
    };
    if starts.len() != ends.len() || axes.len() != starts.len() {
        return Err("starts, ends and axes differ in length".into());
    }
    for (k, &axis) in axes.iter().enumerate() {
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) {
            return Err(format!("axis {axis} out of range for rank {rank}"));
        }
        let a = axis as usize;
        let n = dims[a] as i64;
        let s = steps.get(k).copied().unwrap_or(1);
        if s == 0 {
            return Err("step 0".into());
        }
        // In i128: starts, ends and steps are any i64 the file holds.
        let (n, s) = (i128::from(n), i128::from(s));
        let norm = |v: i128| if v < 0 { v + n } else { v };
        let (lo, hi) = if s > 0 { (0, n) } else { (-1, n - 1) };
        let start = norm(i128::from(starts[k])).clamp(lo, hi);
        let end = norm(i128::from(ends[k]).clamp(-n - 1, n)).clamp(lo, hi);
        let len = if s > 0 {
            (end - start + s - 1) / s
        } else {
            (start - end - s - 1) / -s
        };
        let (start, s) = (start as i64, s as i64);
        begin[a] = start;
        step[a] = s;
        count[a] = len.max(0) as usize;
    }
    let in_strides = strides(&dims);
    let source = |i: usize| {
        let index = unravel(i, &count);
        index
            .iter()
            .enumerate()
            .map(|(a, &x)| (begin[a] + x as i64 * step[a]) as usize * in_strides[a])
            .sum()
    };
    Ok(gather_elements(
        c,
        count.iter().map(|&d| d as i64).collect(),
        source,
    ))
}

/// Elements of a 1-D constant at `indices` (ONNX `Gather` on axis 0).
pub(super) fn gather(c: &Constant, indices: &Constant) -> Result<Constant, String> {
    let n = c.len() as i64;
    let picked = indices
        .as_ints()
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n } else { i };
            if (0..n).contains(&j) {
                Ok(j as usize)
            } else {
                Err(format!("index {i} out of range"))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(gather_elements(c, indices.dims.clone(), |i| picked[i]))
}

/// A constant of shape `dims` (`n` = [`element_count`] elements) filled with `fill`'s single
/// value (ONNX `ConstantOfShape`).
pub(super) fn filled(dims: Vec<i64>, n: usize, fill: Option<&Constant>) -> Constant {
    match fill.map(|f| &f.values) {
        Some(Values::Int(v)) => Constant::int(dims, vec![v.first().copied().unwrap_or(0); n]),
        Some(Values::Float(v)) => Constant::float(dims, vec![v.first().copied().unwrap_or(0.0); n]),
        None => Constant::float(dims, vec![0.0; n]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_pad_arithmetic_folds() {
        // torch 1.13 exports ZeroPad2d((1, 1, 4, 5)) as: reshape to [-1, 2], reverse the rows,
        // transpose, flatten. The result is ONNX's [begins..., ends...] order.
        let pads = Constant::int(vec![8], vec![1, 1, 4, 5, 0, 0, 0, 0]);
        let pairs = reshape(&pads, vec![4, 2]).unwrap();
        let reversed = slice(&pairs, &[-1], &[i64::MIN + 1], &[0], &[-1]).unwrap();
        let t = transpose(&reversed, &[]).unwrap();
        let flat = reshape(&t, vec![8]).unwrap();
        assert_eq!(flat.as_ints(), vec![0, 0, 4, 1, 0, 0, 5, 1]);
    }

    #[test]
    fn slice_and_gather() {
        let c = Constant::int(vec![4], vec![1, 8, 3, 3]);
        assert_eq!(
            slice(&c, &[1], &[3], &[0], &[]).unwrap().as_ints(),
            vec![8, 3]
        );
        assert_eq!(
            slice(&c, &[-2], &[100], &[], &[]).unwrap().as_ints(),
            vec![3, 3]
        );
        let idx = Constant::int(vec![], vec![0]);
        assert_eq!(gather(&c, &idx).unwrap().as_ints(), vec![1]);
        assert!(gather(&c, &Constant::int(vec![], vec![9])).is_err());
    }
}
