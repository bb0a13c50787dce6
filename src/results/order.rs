//! Row orders over a stored table in memory, fast enough for ten million rows: a sort is one
//! radix pass per byte of an order-preserving integer key (text sorted through the ranks of
//! its distinct values); the first rows of an order, for the page an analyst asked for, are
//! picked in one pass without sorting the rest.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use anyhow::Result;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::{cast, sort_to_indices, SortOptions};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type, UInt64Type};

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

/// The first `k` positions of [`sorted_order`] of a column (given as its `chunks`, the
/// column of each batch, in order), found in one pass with a heap of `k`: what a page of a
/// new sort needs, long before the whole order.
pub fn first_in_order(chunks: &[ArrayRef], desc: bool, k: usize) -> Result<Vec<u32>> {
    let n: usize = chunks.iter().map(|c| c.len()).sum();
    let k = k.min(n);
    let Some(kind) = chunks.first().map(|c| c.data_type().clone()).filter(|_| k > 0) else {
        return Ok(Vec::new());
    };
    let starts = super::starts(chunks.iter().map(|c| c.len()));
    let mut first = match kind {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let texts = chunks.iter().map(|c| cast(c, &DataType::Utf8)).collect::<std::result::Result<Vec<_>, _>>()?;
            let items = texts.iter().zip(&starts).flat_map(|(t, start)| {
                let t = t.as_string::<i32>();
                (0..t.len()).filter(|i| t.is_valid(*i)).map(move |i| (t.value(i), (start + i) as u32))
            });
            if desc {
                smallest(items.map(|(s, i)| (Reverse(s), i)), k)
            } else {
                smallest(items, k)
            }
        }
        _ => {
            let mut keyed = Vec::with_capacity(chunks.len());
            for c in chunks {
                match order_keys(c.as_ref())? {
                    Some(keys) => keyed.push(keys),
                    None => {
                        let all =
                            datafusion::arrow::compute::concat(&chunks.iter().map(|c| c.as_ref()).collect::<Vec<_>>())?;
                        return Ok(sorted_order(all.as_ref(), desc)?.into_iter().take(k).collect());
                    }
                }
            }
            let items = keyed.iter().zip(&starts).flat_map(|(keys, start)| {
                keys.iter()
                    .enumerate()
                    .filter_map(move |(i, key)| key.map(|key| (if desc { !key } else { key }, (start + i) as u32)))
            });
            smallest(items, k)
        }
    };
    // Empty cells come last, in stored order.
    if first.len() < k {
        let more = k - first.len();
        let empty = chunks
            .iter()
            .zip(&starts)
            .flat_map(|(c, start)| (0..c.len()).filter(|i| c.is_null(*i)).map(move |i| (start + i) as u32));
        first.extend(empty.take(more));
    }
    Ok(first)
}

/// The positions of the `k` smallest items, in order (items are unique: they end with their
/// position).
fn smallest<K: Ord>(items: impl Iterator<Item = (K, u32)>, k: usize) -> Vec<u32> {
    let mut heap: BinaryHeap<(K, u32)> = BinaryHeap::with_capacity(k + 1);
    for item in items {
        if heap.len() < k {
            heap.push(item);
        } else if let Some(mut top) = heap.peek_mut() {
            if item < *top {
                *top = item;
            }
        }
    }
    heap.into_sorted_vec().into_iter().map(|(_, i)| i).collect()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };

    use super::*;

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
                for k in [0, 1, 25, 4999, 5000, 6000] {
                    // Whole, and cut in chunks as a table's batches are.
                    let cut: Vec<ArrayRef> =
                        [(0, 1), (1, 1700), (1701, 0), (1701, 3299)].map(|(a, l)| c.slice(a, l)).to_vec();
                    for chunks in [std::slice::from_ref(c), &cut[..]] {
                        let first = first_in_order(chunks, desc, k).unwrap();
                        assert_eq!(first[..], order[..k.min(order.len())], "{} desc={desc} first {k}", c.data_type());
                    }
                }
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
}
