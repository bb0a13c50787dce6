//! What a query read: the files, row groups and bytes its scans touched and what their
//! statistics, page indexes and bloom filters let them skip, summed from an executed plan's
//! metrics. Shown with a step's outcome and printed by `casebook run --trace`.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::ExecutionPlan;
use serde::{Deserialize, Serialize};

/// The scans of one executed query, summed over its files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStats {
    /// Files the scans are to read (after partition pruning at planning).
    pub files: u64,
    /// Of those, the files opened so far (all of them once the query is done, but for those
    /// skipped on their statistics).
    pub files_opened: u64,
    /// File ranges skipped on their statistics at run time.
    pub files_pruned: u64,
    /// Row groups in the files opened.
    pub row_groups: u64,
    /// Row groups skipped on their min/max statistics or their bloom filters.
    pub row_groups_pruned: u64,
    /// Rows skipped on the page index inside the row groups read.
    pub page_rows_pruned: u64,
    /// Rows the scans handed on.
    pub rows: u64,
    /// Rows in the files the scans are to read, from their footers (0 when the format keeps no
    /// count, as CSV and NDJSON): what `rows` grows towards while a query runs.
    #[serde(default)]
    pub rows_to_read: u64,
    pub bytes: u64,
    /// Bytes sorts, joins and groupings wrote to the run's spill folder.
    #[serde(default)]
    pub spilled: u64,
}

impl ScanStats {
    /// The sum of every scan in `plan` (after it ran).
    pub fn of(plan: &Arc<dyn ExecutionPlan>) -> ScanStats {
        let mut s = ScanStats::default();
        let mut files = HashSet::new();
        let mut opened = HashSet::new();
        visit(plan, &mut s, &mut files, &mut opened);
        s.files = files.len() as u64;
        s.files_opened = opened.len() as u64;
        s
    }

    pub fn add(&mut self, o: &ScanStats) {
        self.files += o.files;
        self.files_opened += o.files_opened;
        self.files_pruned += o.files_pruned;
        self.row_groups += o.row_groups;
        self.row_groups_pruned += o.row_groups_pruned;
        self.page_rows_pruned += o.page_rows_pruned;
        self.rows += o.rows;
        self.rows_to_read += o.rows_to_read;
        self.bytes += o.bytes;
        self.spilled += o.spilled;
    }
}

/// Works on a running plan too: its metrics are counted as the scans go.
fn visit(plan: &Arc<dyn ExecutionPlan>, s: &mut ScanStats, files: &mut HashSet<String>, opened: &mut HashSet<String>) {
    if let Some(source) = plan.downcast_ref::<DataSourceExec>() {
        if let Some(config) = source.data_source().downcast_ref::<FileScanConfig>() {
            // Each scan's files count their rows (a self-join reads them twice); a file read in
            // ranges counts its rows once.
            let mut this_scan = HashSet::new();
            for group in &config.file_groups {
                for f in group.iter() {
                    let name = f.object_meta.location.to_string();
                    if this_scan.insert(name.clone()) {
                        let rows = f.statistics.as_ref().and_then(|st| st.num_rows.get_value().copied());
                        s.rows_to_read += rows.unwrap_or(0) as u64;
                    }
                    files.insert(name);
                }
            }
        }
        if let Some(metrics) = plan.metrics() {
            for m in metrics.iter() {
                if let Some(f) = m.labels().iter().find(|l| l.name() == "filename") {
                    opened.insert(f.value().to_string());
                }
                match m.value() {
                    MetricValue::PruningMetrics { name, pruning_metrics: p } => match name.as_ref() {
                        "files_ranges_pruned_statistics" => s.files_pruned += p.pruned() as u64,
                        // Statistics see every row group first; bloom filters the ones left.
                        "row_groups_pruned_statistics" => {
                            s.row_groups += (p.pruned() + p.matched()) as u64;
                            s.row_groups_pruned += p.pruned() as u64;
                        }
                        "row_groups_pruned_bloom_filter" => s.row_groups_pruned += p.pruned() as u64,
                        "page_index_rows_pruned" => s.page_rows_pruned += p.pruned() as u64,
                        _ => {}
                    },
                    MetricValue::Count { name, count } if name == "bytes_scanned" => s.bytes += count.value() as u64,
                    MetricValue::OutputRows(c) => s.rows += c.value() as u64,
                    _ => {}
                }
            }
        }
    }
    if let Some(metrics) = plan.metrics() {
        for m in metrics.iter() {
            if let MetricValue::SpilledBytes(c) = m.value() {
                s.spilled += c.value() as u64;
            }
        }
    }
    for child in plan.children() {
        visit(child, s, files, opened);
    }
}
