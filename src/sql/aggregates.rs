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

/// Every casebook aggregate function.
pub fn all() -> Vec<AggregateUDF> {
    vec![AggregateUDF::from(GapStats { signature: Signature::any(1, Volatility::Immutable) })]
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

fn list_of<'a>(groups: impl Iterator<Item = &'a [i64]>) -> ArrayRef {
    let mut lengths = Vec::new();
    let mut values = Vec::new();
    for g in groups {
        lengths.push(g.len());
        values.extend_from_slice(g);
    }
    let inner = Arc::new(Field::new_list_field(DataType::Int64, true));
    Arc::new(ListArray::new(inner, OffsetBuffer::from_lengths(lengths), Arc::new(Int64Array::from(values)), None))
}

/// The state of every group: its times so far, and the bytes they hold (kept as they grow:
/// `size` is asked once per batch and must not walk every group).
#[derive(Debug, Default)]
struct GapsOfGroups {
    times: Vec<Vec<i64>>,
    bytes: usize,
}

impl GapsOfGroups {
    fn push(&mut self, group: usize, t: i64) {
        let v = &mut self.times[group];
        let before = v.capacity();
        v.push(t);
        self.bytes += (v.capacity() - before) * std::mem::size_of::<i64>();
    }

    fn grow(&mut self, groups: usize) {
        if self.times.len() < groups {
            self.times.resize_with(groups, Vec::new);
        }
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<Vec<i64>> {
        let taken = emit_to.take_needed(&mut self.times);
        let freed: usize = taken.iter().map(|v| v.capacity() * std::mem::size_of::<i64>()).sum();
        self.bytes = self.bytes.saturating_sub(freed);
        taken
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
        for (row, &group) in group_indices.iter().enumerate() {
            if times.is_null(row) || opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            self.push(group, times.value(row));
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut taken = self.take(emit_to);
        Ok(struct_of(taken.iter_mut().map(|v| stats(v))))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let taken = self.take(emit_to);
        Ok(vec![list_of(taken.iter().map(Vec::as_slice))])
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
                    self.push(group, times.value(i));
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
        self.bytes + self.times.capacity() * std::mem::size_of::<Vec<i64>>()
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
        let list = list_of(std::iter::once(self.times.as_slice()));
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
