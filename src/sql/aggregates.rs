//! SQL aggregate functions of casebook's own: `gap_stats(time)`, the gaps between the
//! consecutive times of a group (how many, their sum and sum of squares, mean and spread): how
//! regular a pair's connections are, for beaconing rules.
//!
//! Without it, a playbook gets the gaps from a window (`lag(t) OVER (PARTITION BY … ORDER BY
//! t)`), which sorts every row of the window by its text columns before it groups them. The
//! aggregate keeps each group's times as integers and sorts only those, group by group, in
//! the hash aggregation the query does anyway: on a day of 10 million flows, a fraction of the
//! time and memory of the sort (BENCHMARKS.md).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{cast, filter};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type, TimeUnit};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// Every casebook aggregate function, with `min` and `max` over DataFusion's (`sql/minmax.rs`).
pub fn all() -> Vec<AggregateUDF> {
    let mut all = vec![AggregateUDF::from(GapStats { signature: Signature::any(1, Volatility::Immutable) })];
    all.extend(super::minmax::all());
    all
}

/// `gap_stats(time)`: a struct of `gaps` (how many: the group's times less one), `gap_sum`
/// and `gap_squares` (the sum of the gaps and of their squares, in seconds), `mean_gap` and
/// `gap_spread` (the mean and the population standard deviation of the gaps, NULL without
/// gaps), over the group's times in order. Equal times give gaps of 0; NULL times are left
/// out; a group of one time has no gaps (0, 0.0, 0.0, NULL, NULL). The sums are there so that
/// the gaps of several chunks (days) add up; the mean and spread are computed in two passes,
/// exact where the sums would cancel.
#[derive(Debug, PartialEq, Eq, Hash)]
struct GapStats {
    signature: Signature,
}

fn output_fields() -> Fields {
    Fields::from(vec![
        Field::new("gaps", DataType::Int64, false),
        Field::new("gap_sum", DataType::Float64, false),
        Field::new("gap_squares", DataType::Float64, false),
        Field::new("mean_gap", DataType::Float64, true),
        Field::new("gap_spread", DataType::Float64, true),
    ])
}

fn state_field() -> Field {
    Field::new("times", DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))), true)
}

impl AggregateUDFImpl for GapStats {
    fn name(&self) -> &str {
        "gap_stats"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [DataType::Timestamp(..)] => Ok(DataType::Struct(output_fields())),
            [other] => plan_err!("gap_stats takes a timestamp column, not {other}"),
            _ => plan_err!("gap_stats takes one timestamp column"),
        }
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(GapsOfOne::default()))
    }

    fn state_fields(&self, _: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(state_field())])
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(GapsOfGroups::default()))
    }
}

/// A timestamp column of any unit and zone as microseconds since 1970.
fn micros(values: &ArrayRef) -> Result<Int64Array> {
    let us = cast(values, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok(cast(&us, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
}

/// One group's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    gaps: i64,
    sum: f64,
    squares: f64,
    mean: Option<f64>,
    spread: Option<f64>,
}

/// The figures of one group's times, which it sorts.
fn stats(times: &mut [i64]) -> Stats {
    if times.len() < 2 {
        return Stats { gaps: 0, sum: 0.0, squares: 0.0, mean: None, spread: None };
    }
    times.sort_unstable();
    let gap = |w: &[i64]| w[1].saturating_sub(w[0]) as f64 / 1e6;
    let n = (times.len() - 1) as f64;
    let squares = times.windows(2).map(|w| gap(w) * gap(w)).sum();
    let sum = times[times.len() - 1].saturating_sub(times[0]) as f64 / 1e6;
    let mean = sum / n;
    let spread = (times.windows(2).map(|w| (gap(w) - mean) * (gap(w) - mean)).sum::<f64>() / n).sqrt();
    Stats { gaps: times.len() as i64 - 1, sum, squares, mean: Some(mean), spread: Some(spread) }
}

fn struct_of(rows: impl Iterator<Item = Stats>) -> ArrayRef {
    let rows: Vec<Stats> = rows.collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.gaps).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| r.sum).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| r.squares).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| r.mean).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| r.spread).collect::<Float64Array>()),
    ];
    Arc::new(StructArray::new(output_fields(), cols, None))
}

/// Lists of times, the `i`-th of `lengths[i]` times, one after another in `times`.
fn list_of(lengths: impl IntoIterator<Item = usize>, times: Vec<i64>) -> ArrayRef {
    let inner = Arc::new(Field::new_list_field(DataType::Int64, true));
    Arc::new(ListArray::new(inner, OffsetBuffer::from_lengths(lengths), Arc::new(Int64Array::from(times)), None))
}

/// The state of every group: each time pushed so far with its group, in the order they came
/// (no allocation per group; 12 bytes a time). They are put in order of group when groups are
/// emitted, by a counting sort over the group indices, so that each group's times are one
/// slice (its list in the state, or what its figures are computed from).
#[derive(Debug, Default)]
struct GapsOfGroups {
    group: Vec<u32>,
    time: Vec<i64>,
    groups: usize,
}

/// Times in order of group: group `g`'s are `times[offsets[g]..offsets[g + 1]]`.
struct Sorted {
    offsets: Vec<usize>,
    times: Vec<i64>,
}

impl Sorted {
    fn group(&mut self, g: usize) -> &mut [i64] {
        &mut self.times[self.offsets[g]..self.offsets[g + 1]]
    }
}

impl GapsOfGroups {
    fn push(&mut self, group: usize, t: i64) -> Result<()> {
        let Ok(g) = u32::try_from(group) else {
            return datafusion::common::exec_err!("gap_stats: more than {} groups", u32::MAX);
        };
        self.group.push(g);
        self.time.push(t);
        Ok(())
    }

    fn grow(&mut self, groups: usize) {
        self.groups = self.groups.max(groups);
    }

    /// Takes the groups `emit_to` names, their times in order of group; the groups after
    /// them (an `EmitTo::First`) keep theirs, renumbered from 0.
    fn take(&mut self, emit_to: EmitTo) -> Sorted {
        let n = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n.min(self.groups),
        };
        let mut offsets = vec![0usize; n + 1];
        for &g in &self.group {
            if (g as usize) < n {
                offsets[g as usize + 1] += 1;
            }
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let mut times = vec![0i64; offsets[n]];
        let mut kept = 0;
        for i in 0..self.group.len() {
            let (g, t) = (self.group[i] as usize, self.time[i]);
            if g < n {
                times[next[g]] = t;
                next[g] += 1;
            } else {
                self.group[kept] = (g - n) as u32;
                self.time[kept] = t;
                kept += 1;
            }
        }
        self.group.truncate(kept);
        self.time.truncate(kept);
        if kept == 0 {
            self.group.shrink_to_fit();
            self.time.shrink_to_fit();
        }
        self.groups -= n;
        Sorted { offsets, times }
    }
}

impl GroupsAccumulator for GapsOfGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let times = micros(&values[0])?;
        self.group.reserve(group_indices.len());
        self.time.reserve(group_indices.len());
        for (row, &group) in group_indices.iter().enumerate() {
            if times.is_null(row) || opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            self.push(group, times.value(row))?;
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut taken = self.take(emit_to);
        let groups = taken.offsets.len() - 1;
        Ok(struct_of((0..groups).map(|g| stats(taken.group(g)))))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let Sorted { offsets, times } = self.take(emit_to);
        Ok(vec![list_of(offsets.windows(2).map(|w| w[1] - w[0]), times)])
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.grow(total_num_groups);
        let lists = values[0].as_list::<i32>();
        let times = lists.values().as_primitive::<Int64Type>();
        let offsets = lists.value_offsets();
        for (row, &group) in group_indices.iter().enumerate() {
            if lists.is_null(row) {
                continue;
            }
            for i in offsets[row].max(0) as usize..offsets[row + 1].max(0) as usize {
                if times.is_valid(i) {
                    self.push(group, times.value(i))?;
                }
            }
        }
        Ok(())
    }

    /// Each row as a list of its one time (none for a NULL or filtered-out row).
    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let times = micros(&values[0])?;
        let kept: BooleanArray = (0..times.len())
            .map(|row| Some(times.is_valid(row) && opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row))))
            .collect();
        let lengths = kept.values().iter().map(usize::from);
        let inner = Arc::new(Field::new_list_field(DataType::Int64, true));
        let values = filter(&times, &kept)?;
        Ok(vec![Arc::new(ListArray::new(inner, OffsetBuffer::from_lengths(lengths), values, None))])
    }

    fn size(&self) -> usize {
        self.group.capacity() * std::mem::size_of::<u32>() + self.time.capacity() * std::mem::size_of::<i64>()
    }
}

/// The state of one group (no GROUP BY, or a window).
#[derive(Debug, Default)]
struct GapsOfOne {
    times: Vec<i64>,
}

impl Accumulator for GapsOfOne {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.times.extend(micros(&values[0])?.iter().flatten());
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut times = self.times.clone();
        let out = struct_of(std::iter::once(stats(&mut times)));
        ScalarValue::try_from_array(&out, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.times.capacity() * std::mem::size_of::<i64>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = list_of([self.times.len()], self.times.clone());
        Ok(vec![ScalarValue::try_from_array(&list, 0)?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for row in 0..lists.len() {
            if !lists.is_null(row) {
                self.times.extend(lists.value(row).as_primitive::<Int64Type>().iter().flatten());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    async fn table(sql: &str) -> String {
        let ctx = SessionContext::new();
        for f in super::all() {
            ctx.register_udaf(f);
        }
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    #[tokio::test]
    async fn gaps_are_taken_in_time_order_per_group_whatever_the_row_order() {
        let text = table(
            "SELECT k, get_field(s, 'gaps') AS gaps, get_field(s, 'gap_sum') AS sum, get_field(s, 'gap_squares') AS squares,
                    get_field(s, 'mean_gap') AS mean, get_field(s, 'gap_spread') AS spread FROM (
               SELECT k, gap_stats(t) AS s FROM (VALUES
                 ('a', TIMESTAMP '2026-01-01 00:01:00'), ('b', TIMESTAMP '2026-01-01 00:00:00'),
                 ('a', TIMESTAMP '2026-01-01 00:00:00'), ('a', TIMESTAMP '2026-01-01 00:00:10'),
                 ('a', NULL), ('c', TIMESTAMP '2026-01-01 00:00:00'), ('c', TIMESTAMP '2026-01-01 00:00:00'),
                 ('b', TIMESTAMP '2026-01-01 00:00:00.5')) v(k, t)
               GROUP BY k) ORDER BY k",
        )
        .await;
        // a: gaps 10 s and 50 s (2 gaps, 60 s, 100 + 2500, mean 30, spread 20); b: 0.5 s;
        // c: two equal times.
        let expected = "\
+---+------+------+---------+------+--------+
| k | gaps | sum  | squares | mean | spread |
+---+------+------+---------+------+--------+
| a | 2    | 60.0 | 2600.0  | 30.0 | 20.0   |
| b | 1    | 0.5  | 0.25    | 0.5  | 0.0    |
| c | 1    | 0.0  | 0.0     | 0.0  | 0.0    |
+---+------+------+---------+------+--------+";
        assert_eq!(text, expected);
    }

    /// Groups emitted in two goes (`EmitTo::First`, as a grouping that emits early does), from
    /// batches and from merged states, give each group's own figures.
    #[test]
    fn groups_emitted_first_and_then_the_rest_keep_their_own_times() {
        use super::{GapsOfGroups, GroupsAccumulator};
        use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondArray};
        use datafusion::arrow::datatypes::{Float64Type, Int64Type};
        use datafusion::logical_expr::EmitTo;
        use std::sync::Arc;
        let s = 1_000_000i64;
        // Group g has times 0, g+1, 2(g+1), … (g+2 of them, out of order): its gaps are all g+1.
        let (mut groups, mut times) = (Vec::new(), Vec::new());
        for k in (0..6i64).rev() {
            for g in 0..5usize {
                if k < g as i64 + 2 {
                    groups.push(g);
                    times.push(k * (g as i64 + 1) * s);
                }
            }
        }
        let values: ArrayRef = Arc::new(TimestampMicrosecondArray::from(times));
        let mean = |a: &ArrayRef| -> Vec<f64> {
            let st = a.as_struct();
            st.column_by_name("mean_gap").map(|c| c.as_primitive::<Float64Type>().values().to_vec()).unwrap_or_default()
        };
        let gaps = |a: &ArrayRef| -> Vec<i64> {
            let st = a.as_struct();
            st.column_by_name("gaps").map(|c| c.as_primitive::<Int64Type>().values().to_vec()).unwrap_or_default()
        };
        let mut acc = GapsOfGroups::default();
        acc.update_batch(std::slice::from_ref(&values), &groups, None, 5).unwrap();
        let first = acc.evaluate(EmitTo::First(2)).unwrap();
        assert_eq!((mean(&first), gaps(&first)), (vec![1.0, 2.0], vec![1, 2]));
        let rest = acc.evaluate(EmitTo::All).unwrap();
        assert_eq!((mean(&rest), gaps(&rest)), (vec![3.0, 4.0, 5.0], vec![3, 4, 5]));
        // The same through a partial state, split as well, merged into a final accumulator.
        let mut partial = GapsOfGroups::default();
        partial.update_batch(&[values], &groups, None, 5).unwrap();
        let head = partial.state(EmitTo::First(3)).unwrap();
        let tail = partial.state(EmitTo::All).unwrap();
        assert_eq!((head[0].len(), tail[0].len()), (3, 2));
        let mut fin = GapsOfGroups::default();
        fin.merge_batch(&tail, &[3, 4], 5).unwrap();
        fin.merge_batch(&head, &[0, 1, 2], 5).unwrap();
        let all = fin.evaluate(EmitTo::All).unwrap();
        assert_eq!((mean(&all), gaps(&all)), (vec![1.0, 2.0, 3.0, 4.0, 5.0], vec![1, 2, 3, 4, 5]));
    }

    #[tokio::test]
    async fn one_group_and_no_times() {
        let text = table(
            "SELECT get_field(gap_stats(t), 'gaps') AS gaps, get_field(gap_stats(t), 'mean_gap') AS mean
             FROM (VALUES (TIMESTAMP '2026-01-01 00:00:00')) v(t) WHERE t IS NULL",
        )
        .await;
        assert!(text.contains("| 0    |      |"), "{text}");
        let ctx = SessionContext::new();
        for f in super::all() {
            ctx.register_udaf(f);
        }
        let e = ctx.sql("SELECT gap_stats(1)").await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("gap_stats takes a timestamp column"), "{e}");
    }
}
