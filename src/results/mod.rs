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
pub use table::StepData;
