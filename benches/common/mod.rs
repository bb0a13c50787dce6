//! What the benchmarks share: percentiles of measured times, printed one line per kind.

use std::time::Duration;

/// Prints the count, p50, p95 and max of `d` in milliseconds under `name`.
pub fn stats(name: &str, mut d: Vec<Duration>) {
    d.sort();
    let pct = |p: f64| d[((d.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "{name:<52} n={:<4} p50={:>8.2} ms  p95={:>8.2} ms  max={:>8.2} ms",
        d.len(),
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
}
