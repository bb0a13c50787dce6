//! Results: step tables in memory and on disk, cells as analysts read them, pages sorted and
//! searched on the server (`order`, `search`), and the formats they are exported in. Knows nothing of how a
//! table was made.

pub mod cells;
pub mod formats;
pub mod lru;
pub mod order;
pub mod paging;
pub mod search;
pub mod stored;
pub mod table;

pub use cells::cell_text;

/// Where each of several pieces of a table starts, given their lengths in order (a row's
/// piece is the last one starting at or before it).
pub(crate) fn starts(lengths: impl IntoIterator<Item = usize>) -> Vec<usize> {
    lengths
        .into_iter()
        .scan(0, |at, len| {
            let start = *at;
            *at += len;
            Some(start)
        })
        .collect()
}
pub use table::StepData;
