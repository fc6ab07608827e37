//! Benchmarks of the API server; see BENCHMARKS.md.
fn main() {}
