//! What runs on its own beside the pages: the scheduler's loop and its webhook
//! notifications, the file watcher that reloads the catalog, and the self-test runner.

pub mod notify;
pub mod scheduler;
pub mod selftest;
pub mod watch;
