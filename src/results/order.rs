//! Row orders and searches over a stored table in memory, fast enough for ten million rows:
//! a sort is one radix pass per byte of an order-preserving integer key (text sorted through
//! the ranks of its distinct values), and a search looks only in the columns whose text could
//! hold what was typed, on two threads.

use std::collections::HashMap;

use anyhow::Result;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, sort_to_indices, SortOptions};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type, UInt64Type};
use memchr::memmem::Finder;

/// The positions of `values` in sorted order; ties keep their stored order and empty cells
/// come last, ascending or descending.
pub fn sorted_order(values: &dyn Array, desc: bool) -> Result<Vec<u32>> {
    let Some(keys) = order_keys(values)? else {
        // A type without an integer key (lists, structs): the engine's own sort.
        let opts = SortOptions { descending: desc, nulls_first: false };
        return Ok(sort_to_indices(values, Some(opts), None)?.values().to_vec());
    };
    let mut present: Vec<(u64, u32)> = Vec::with_capacity(values.len());
    let mut empty: Vec<u32> = Vec::new();
    for (i, k) in keys.into_iter().enumerate() {
        match k {
            Some(k) => present.push((if desc { !k } else { k }, i as u32)),
            None => empty.push(i as u32),
        }
    }
    radix_sort(&mut present);
    let mut order: Vec<u32> = present.into_iter().map(|(_, i)| i).collect();
    order.extend(empty);
    Ok(order)
}

/// An integer per row whose order is the values' order (None for an empty cell), or None
/// for a type that has no such key.
fn order_keys(values: &dyn Array) -> Result<Option<Vec<Option<u64>>>> {
    const SIGN: u64 = 1 << 63;
    let t = values.data_type();
    let keys: Vec<Option<u64>> = match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(values, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            // Each distinct text once, sorted; a row's key is its text's rank.
            let mut ids: HashMap<&str, u32> = HashMap::new();
            let row_ids: Vec<Option<u32>> = text
                .iter()
                .map(|v| {
                    v.map(|s| {
                        let next = ids.len() as u32;
                        *ids.entry(s).or_insert(next)
                    })
                })
                .collect();
            let mut distinct: Vec<(&str, u32)> = ids.into_iter().collect();
            distinct.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut rank = vec![0u64; distinct.len()];
            for (r, (_, id)) in distinct.iter().enumerate() {
                rank[*id as usize] = r as u64;
            }
            row_ids.into_iter().map(|v| v.map(|id| rank[id as usize])).collect()
        }
        DataType::UInt64 => values.as_primitive::<UInt64Type>().iter().collect(),
        DataType::Float64 => values.as_primitive::<Float64Type>().iter().map(|v| v.map(float_key)).collect(),
        DataType::Float32 => {
            values.as_primitive::<Float32Type>().iter().map(|v| v.map(|f| float_key(f64::from(f)))).collect()
        }
        DataType::Boolean => values.as_boolean().iter().map(|v| v.map(u64::from)).collect(),
        t if t.is_integer()
            || matches!(
                t,
                DataType::Timestamp(..)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Time32(_)
                    | DataType::Time64(_)
                    | DataType::Duration(_)
            ) =>
        {
            let ints = cast(values, &DataType::Int64)?;
            ints.as_primitive::<Int64Type>().iter().map(|v| v.map(|i| (i as u64) ^ SIGN)).collect()
        }
        _ => return Ok(None),
    };
    Ok(Some(keys))
}

/// The bits of `f` as an integer in the same order (negative numbers below positive ones).
fn float_key(f: f64) -> u64 {
    let bits = f.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Sorts by key, stably: one counting pass per byte of the key, least significant first,
/// skipping the bytes every key shares (ranks of a few thousand texts take two passes). The
/// eight histograms are counted in one read of the keys.
fn radix_sort(v: &mut Vec<(u64, u32)>) {
    let mut counts = vec![[0usize; 256]; 8];
    for (k, _) in v.iter() {
        for (byte, c) in counts.iter_mut().enumerate() {
            c[((k >> (byte * 8)) & 0xff) as usize] += 1;
        }
    }
    let mut buf: Vec<(u64, u32)> = vec![(0, 0); v.len()];
    for (byte, c) in counts.iter_mut().enumerate() {
        if c.contains(&v.len()) {
            continue;
        }
        let shift = byte * 8;
        let mut next = 0;
        for slot in c.iter_mut() {
            let n = *slot;
            *slot = next;
            next += n;
        }
        for e in v.iter() {
            let d = ((e.0 >> shift) & 0xff) as usize;
            buf[c[d]] = *e;
            c[d] += 1;
        }
        std::mem::swap(v, &mut buf);
    }
}

/// The rows of `table` where some cell's text (as `CAST(… AS VARCHAR)` writes it, lower-cased)
/// contains `search` (lower-cased already), in stored order.
pub fn search_rows(table: &RecordBatch, search: &str) -> Result<Vec<u32>> {
    let rows = table.num_rows();
    if rows == 0 || search.is_empty() {
        return Ok(Vec::new());
    }
    let columns: Vec<&dyn Array> =
        table.columns().iter().map(|c| c.as_ref()).filter(|c| could_hold(c.data_type(), search)).collect();
    let half = rows.div_ceil(2);
    let parts: Vec<Result<Vec<u32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = [(0, half), (half, rows)]
            .into_iter()
            .map(|(from, to)| {
                let columns = &columns;
                s.spawn(move || search_range(columns, search, from, to))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the search stopped")))).collect()
    });
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// Whether a column of type `t` can show `search` in its text at all: numbers are digits,
/// signs and one decimal point; times, digits and separators.
fn could_hold(t: &DataType, search: &str) -> bool {
    let dots = search.matches('.').count();
    let only = |allowed: &str| search.chars().all(|c| allowed.contains(c));
    match t {
        t if t.is_integer() => only("-0123456789"),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => dots <= 1 && only("-+.0123456789einfa"),
        DataType::Boolean => "true".contains(search) || "false".contains(search),
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Time32(_) | DataType::Time64(_) => {
            dots <= 1 && only("-+:.0123456789tz ")
        }
        _ => true,
    }
}

fn search_range(columns: &[&dyn Array], search: &str, from: usize, to: usize) -> Result<Vec<u32>> {
    let finder = Finder::new(search.as_bytes());
    let mut hit = vec![false; to - from];
    let mut lower = String::new();
    for column in columns {
        let part = column.slice(from, to - from);
        let text = cast(&part, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        for (i, v) in text.iter().enumerate() {
            if hit[i] {
                continue;
            }
            let Some(v) = v else { continue };
            let found = if v.is_ascii() {
                lower.clear();
                lower.push_str(v);
                lower.make_ascii_lowercase();
                finder.find(lower.as_bytes()).is_some()
            } else {
                finder.find(v.to_lowercase().as_bytes()).is_some()
            };
            hit[i] = found;
        }
    }
    Ok(hit.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| (from + i) as u32).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn is_set(mask: &BooleanArray, i: usize) -> bool {
        mask.is_valid(i) && mask.value(i)
    }

    fn engine_order(values: &dyn Array, desc: bool) -> Vec<Option<String>> {
        let opts = SortOptions { descending: desc, nulls_first: false };
        let idx = sort_to_indices(values, Some(opts), None).unwrap();
        let text = cast(values, &DataType::Utf8).unwrap();
        idx.values()
            .iter()
            .map(|i| text.as_string::<i32>().iter().nth(*i as usize).flatten().map(str::to_string))
            .collect()
    }

    fn our_order(values: &dyn Array, desc: bool) -> (Vec<u32>, Vec<Option<String>>) {
        let order = sorted_order(values, desc).unwrap();
        let text = cast(values, &DataType::Utf8).unwrap();
        let shown = order
            .iter()
            .map(|i| text.as_string::<i32>().iter().nth(*i as usize).flatten().map(str::to_string))
            .collect();
        (order, shown)
    }

    /// Sorted values equal the engine's sort, for every key type; ties keep stored order.
    #[test]
    fn orders_match_the_engines_sort_and_ties_keep_their_order() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        let n = 5000;
        let ints: Vec<Option<i64>> =
            (0..n).map(|_| if next() % 13 == 0 { None } else { Some(next() as i64 % 2000 - 1000) }).collect();
        let floats: Vec<Option<f64>> =
            (0..n).map(|_| if next() % 11 == 0 { None } else { Some((next() as f64 - 1e9) / 1e3) }).collect();
        let texts: Vec<Option<String>> = (0..n)
            .map(|_| if next() % 9 == 0 { None } else { Some(format!("10.0.{}.{}", next() % 4, next() % 300)) })
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ints)),
            Arc::new(Float64Array::from(floats)),
            Arc::new(StringArray::from(texts)),
            Arc::new(TimestampMicrosecondArray::from(
                (0..n).map(|i| Some((i as i64 * 7919) % 100_000 - 50_000)).collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from((0..n).map(|i| Some(i % 3 == 0)).collect::<Vec<_>>())),
        ];
        for c in &columns {
            for desc in [false, true] {
                let (order, shown) = our_order(c.as_ref(), desc);
                assert_eq!(shown, engine_order(c.as_ref(), desc), "{} desc={desc}", c.data_type());
                // Stable: equal values in ascending stored position.
                let text = cast(c.as_ref(), &DataType::Utf8).unwrap();
                let text = text.as_string::<i32>();
                for w in order.windows(2) {
                    if text.is_valid(w[0] as usize) == text.is_valid(w[1] as usize)
                        && (text.is_null(w[0] as usize) || text.value(w[0] as usize) == text.value(w[1] as usize))
                    {
                        assert!(w[0] < w[1], "{} desc={desc}: tie out of stored order", c.data_type());
                    }
                }
            }
        }
    }

    /// The search finds what the engine's `strpos(lower(CAST(c AS VARCHAR)), q) > 0` finds.
    #[tokio::test]
    async fn search_matches_the_engines_filter() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ip", DataType::Utf8, true),
            Field::new("port", DataType::Int64, true),
            Field::new("dur", DataType::Float64, true),
            Field::new("seen", DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None), true),
            Field::new("ok", DataType::Boolean, true),
        ]));
        let n = 3001;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    (0..n)
                        .map(|i| (i % 17 != 0).then(|| format!("10.0.{}.{} Ünï", i % 5, i % 250)))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from((0..n).map(|i| Some(i as i64 * 37 % 9000 - 20)).collect::<Vec<_>>())),
                Arc::new(Float64Array::from((0..n).map(|i| Some(i as f64 / 7.0)).collect::<Vec<_>>())),
                Arc::new(TimestampMicrosecondArray::from(
                    (0..n).map(|i| Some(1_764_000_000_000_000 + i as i64 * 1_000_123)).collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from((0..n).map(|i| (i % 4 != 0).then_some(i % 2 == 0)).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_batch("t", batch.clone()).unwrap();
        for q in ["10.0.3.1", "80", "-1", "2025-11", ":3", "true", "ünï", "ÜNÏ", "3.5", "0.", "e", "x"] {
            let q = q.to_lowercase();
            let sql =
                "SELECT strpos(lower(CAST(ip AS VARCHAR)), $1) > 0 OR strpos(lower(CAST(port AS VARCHAR)), $1) > 0 \
                       OR strpos(lower(CAST(dur AS VARCHAR)), $1) > 0 OR strpos(lower(CAST(seen AS VARCHAR)), $1) > 0 \
                       OR strpos(lower(CAST(ok AS VARCHAR)), $1) > 0 AS hit FROM t";
            let got = ctx
                .sql(sql)
                .await
                .unwrap()
                .with_param_values(vec![datafusion::common::ScalarValue::Utf8(Some(q.clone()))])
                .unwrap()
                .collect()
                .await
                .unwrap();
            let mut want = Vec::new();
            let mut offset = 0;
            for b in &got {
                let mask = b.column(0).as_boolean();
                want.extend((0..b.num_rows()).filter(|i| is_set(mask, *i)).map(|i| (offset + i) as u32));
                offset += b.num_rows();
            }
            assert_eq!(search_rows(&batch, &q).unwrap(), want, "search {q:?}");
        }
    }
}
