//! A step's result table in memory ([`StepData`]) and its Parquet file on disk.

use std::fs::File;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;

/// One step's result table, held in memory for paging.
#[derive(Debug)]
pub struct StepData {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// All batches as one, made on first paging.
    merged: OnceLock<RecordBatch>,
}

impl StepData {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> StepData {
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        StepData { schema, batches, rows, merged: OnceLock::new() }
    }

    /// Memory held: the batches, and their merged copy once one was made (paging reads the
    /// batches; rating and enriching merge them).
    pub fn bytes(&self) -> usize {
        let batches = self.batches.iter().map(RecordBatch::get_array_memory_size).sum::<usize>();
        batches + self.merged.get().map_or(0, RecordBatch::get_array_memory_size)
    }

    /// All batches as one (made once, then counted in [`StepData::bytes`]).
    pub fn merged(&self) -> Result<&RecordBatch> {
        if let Some(m) = self.merged.get() {
            return Ok(m);
        }
        let m = concat_batches(&self.schema, &self.batches)?;
        Ok(self.merged.get_or_init(|| m))
    }
}

/// Writes a table as Parquet. Times in whole seconds (`to_timestamp_seconds`) are written
/// in milliseconds: Parquet has no seconds, and other tools would read them as integers.
pub fn write_parquet(path: &std::path::Path, data: &StepData) -> Result<()> {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let seconds = |f: &Field| matches!(f.data_type(), DataType::Timestamp(TimeUnit::Second, _));
    let schema: SchemaRef = if data.schema.fields().iter().any(|f| seconds(f)) {
        let fields: Vec<Field> = data
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Timestamp(TimeUnit::Second, tz) => {
                    f.as_ref().clone().with_data_type(DataType::Timestamp(TimeUnit::Millisecond, tz.clone()))
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        std::sync::Arc::new(Schema::new_with_metadata(fields, data.schema.metadata().clone()))
    } else {
        data.schema.clone()
    };
    let mut w = ArrowWriter::try_new(file, schema.clone(), None)?;
    for b in &data.batches {
        if schema == data.schema {
            w.write(b)?;
        } else {
            let columns = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            w.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
        }
    }
    w.close()?;
    Ok(())
}

/// Reads a Parquet table written by casebook.
pub fn read_parquet(path: &std::path::Path) -> Result<StepData> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(65536).build()?;
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    Ok(StepData::new(schema, batches))
}
