//! The runtime that executes queries, apart from the one serving pages, and a task handle
//! that aborts its task when dropped (a cancelled or timed-out run's steps).

/// The runtime that executes queries, apart from the one serving pages: CPU-bound query
/// work cannot starve the web server, and cancel and time limits are answered at once.
pub(super) struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    pub(super) fn new() -> QueryRuntime {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("casebook-query")
            .enable_all()
            .build();
        if let Err(e) = &rt {
            tracing::warn!(error = %e, "no separate query runtime; queries share the server's");
        }
        QueryRuntime(rt.ok())
    }

    pub(super) fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(rt) => rt.spawn(f),
            None => tokio::spawn(f),
        }
    }
}

impl std::fmt::Debug for QueryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryRuntime")
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // May be dropped from async code, where a blocking shutdown is not allowed.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Aborts the task when dropped (a cancelled or timed-out run's steps).
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    pub(super) fn handle(&mut self) -> &mut tokio::task::JoinHandle<T> {
        &mut self.0
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
