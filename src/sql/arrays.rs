//! Small helpers the scalar SQL functions share: a string argument as one array, how many
//! rows a call has, and giving back a scalar when every argument was one.

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;

/// An argument as `rows` plain strings (views and dictionaries cast; a scalar repeated).
pub(super) fn to_strings(v: &ColumnarValue, rows: usize) -> Result<StringArray> {
    let arr = v.to_array(rows)?;
    let arr = cast(&arr, &DataType::Utf8)?;
    arr.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("expected a string column".into()))
}

/// The rows of a call: the length of its first array argument, 1 when all are scalars.
pub(super) fn rows_of(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

/// A call's answer: a scalar when every argument was a scalar, else the array.
pub(super) fn finish(args: &[ColumnarValue], out: ArrayRef) -> Result<ColumnarValue> {
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
    } else {
        Ok(ColumnarValue::Array(out))
    }
}
