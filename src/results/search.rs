//! Searching a stored table in memory, fast enough for ten million rows: only the columns
//! whose text could hold what was typed are looked at, text columns are searched in their
//! value buffers at once (not value by value), and the rows are taken in blocks so that the
//! first page of matches is known before the whole table has been read.

use std::borrow::Cow;

use anyhow::Result;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use memchr::memmem::Finder;

/// Rows looked at in one go by one thread.
pub(crate) const BLOCK: usize = 1 << 17;

/// The rows of a table (its `batches`) where some cell's text (as `CAST(… AS VARCHAR)` writes
/// it, lower-cased) contains `search` (lower-cased already), in stored order.
pub fn search_rows(batches: &[RecordBatch], search: &str) -> Result<Vec<u32>> {
    Ok(first_matches(batches, search, usize::MAX)?.0)
}

/// The first `want` (or more) rows of a table (its `batches`) matching `search`, in stored
/// order, and whether they are all the rows that match (the whole table was read). Blocks of
/// rows are searched two at a time, one per thread, in order, until `want` are found.
pub fn first_matches(batches: &[RecordBatch], search: &str, want: usize) -> Result<(Vec<u32>, bool)> {
    if search.is_empty() {
        return Ok((Vec::new(), true));
    }
    // Blocks of rows: (batch, first row, end), and the table's row number of each start.
    let mut blocks: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut start = 0;
    for (i, b) in batches.iter().enumerate() {
        let mut from = 0;
        while from < b.num_rows() {
            let to = (from + BLOCK).min(b.num_rows());
            blocks.push((i, from, to, start + from));
            from = to;
        }
        start += b.num_rows();
    }
    let mut out = Vec::new();
    for (n, pair) in blocks.chunks(2).enumerate() {
        let parts: Vec<Result<Vec<u32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = pair
                .iter()
                .map(|&(batch, from, to, at)| {
                    s.spawn(move || {
                        let table = &batches[batch];
                        let columns: Vec<&dyn Array> = table
                            .columns()
                            .iter()
                            .map(|c| c.as_ref())
                            .filter(|c| could_hold(c.data_type(), search))
                            .collect();
                        let rows = search_range(&columns, search, from, to)?;
                        Ok(rows.into_iter().map(|r| (at - from) as u32 + r).collect())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the search stopped"))))
                .collect()
        });
        for p in parts {
            out.extend(p?);
        }
        if out.len() >= want && (n + 1) * 2 < blocks.len() {
            return Ok((out, false));
        }
    }
    Ok((out, true))
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

/// The rows in `from..to` of `columns` whose text holds `search`, numbered in those columns.
fn search_range(columns: &[&dyn Array], search: &str, from: usize, to: usize) -> Result<Vec<u32>> {
    let finder = Finder::new(search.as_bytes());
    let mut hit = vec![false; to - from];
    for column in columns {
        let part = column.slice(from, to - from);
        let text = cast(&part, &DataType::Utf8)?;
        mark_hits(text.as_string::<i32>(), &finder, &mut hit);
    }
    Ok(hit.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| (from + i) as u32).collect())
}

/// Sets `hit[i]` for each value of `text` that contains the finder's needle, lower-cased.
/// Values all in ASCII are searched in their buffer at once: each match is placed in its row
/// by the offsets, and one that spans two values is no match.
fn mark_hits(text: &StringArray, finder: &Finder<'_>, hit: &mut [bool]) {
    let offsets = text.value_offsets();
    let (start, end) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
    let bytes = &text.values()[start..end];
    if !bytes.is_ascii() {
        return mark_hits_one_by_one(text, finder, hit);
    }
    let lowered: Cow<[u8]> = if bytes.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(bytes.to_ascii_lowercase())
    } else {
        Cow::Borrowed(bytes)
    };
    let len = finder.needle().len();
    let mut pos = 0;
    while let Some(m) = finder.find(&lowered[pos..]) {
        let at = start + pos + m;
        // The row whose value starts at or before the match (the last such: empty values
        // end where they start).
        let row = offsets.partition_point(|&o| o as usize <= at).saturating_sub(1);
        let row_end = offsets[row + 1] as usize;
        if at + len <= row_end && text.is_valid(row) {
            hit[row] = true;
            pos = row_end - start;
        } else {
            pos += m + 1;
        }
    }
}

fn mark_hits_one_by_one(text: &StringArray, finder: &Finder<'_>, hit: &mut [bool]) {
    let mut lower = String::new();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{BooleanArray, Float64Array, Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn is_set(mask: &BooleanArray, i: usize) -> bool {
        mask.is_valid(i) && mask.value(i)
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
            // ASCII only, mixed case: searched in its value buffer at once.
            Field::new("host", DataType::Utf8, true),
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
                Arc::new(StringArray::from(
                    (0..n).map(|i| (i % 13 != 0).then(|| format!("Host-{}.Example.ORG", i % 97))).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_batch("t", batch.clone()).unwrap();
        for q in [
            "10.0.3.1", "80", "-1", "2025-11", ":3", "true", "ünï", "ÜNÏ", "3.5", "0.", "e", "x", "host-9", "g",
            "-96.ex", "orgh",
        ] {
            let q = q.to_lowercase();
            let sql =
                "SELECT strpos(lower(CAST(ip AS VARCHAR)), $1) > 0 OR strpos(lower(CAST(port AS VARCHAR)), $1) > 0 \
                       OR strpos(lower(CAST(dur AS VARCHAR)), $1) > 0 OR strpos(lower(CAST(seen AS VARCHAR)), $1) > 0 \
                       OR strpos(lower(CAST(ok AS VARCHAR)), $1) > 0 OR strpos(lower(host), $1) > 0 AS hit FROM t";
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
            assert_eq!(search_rows(std::slice::from_ref(&batch), &q).unwrap(), want, "search {q:?}");
        }
    }

    /// A match across two values is none, and one just after it is still found; every
    /// block size gives the same rows, and a first page stops early.
    #[test]
    fn matches_are_placed_in_their_rows_and_blocks_do_not_change_them() {
        let values: Vec<Option<&str>> =
            vec![Some("ab"), Some("cab"), None, Some(""), Some("AB"), Some("xa"), Some("b")];
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(values))]).unwrap();
        let one = std::slice::from_ref(&batch);
        assert_eq!(search_rows(one, "ab").unwrap(), vec![0, 1, 4]);
        assert_eq!(search_rows(one, "bc").unwrap(), Vec::<u32>::new());
        assert_eq!(search_rows(one, "ab").unwrap(), first_matches(one, "ab", 1).unwrap().0);
        // Many blocks: the first page is found before the end, and all of them after.
        let n = BLOCK * 5 + 17;
        let many: Vec<String> =
            (0..n).map(|i| if i % 1000 == 3 { format!("Hit{i}") } else { format!("m{i}") }).collect();
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(many))]).unwrap();
        let all = search_rows(std::slice::from_ref(&batch), "hit").unwrap();
        assert_eq!(all.len(), n.div_ceil(1000));
        assert!(all.iter().all(|i| i % 1000 == 3));
        let (first, complete) = first_matches(std::slice::from_ref(&batch), "hit", 25).unwrap();
        assert!(!complete && first.len() >= 25 && first.len() < all.len());
        assert_eq!(&all[..first.len()], &first[..]);
        // The same rows cut in batches of other sizes, and through a batch boundary.
        let cut: Vec<RecordBatch> =
            [(0, 1000), (1000, BLOCK + 5), (BLOCK + 1005, n - BLOCK - 1005)].map(|(a, l)| batch.slice(a, l)).to_vec();
        assert_eq!(search_rows(&cut, "hit").unwrap(), all);
    }
}
