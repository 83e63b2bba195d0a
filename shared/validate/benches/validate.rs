//! Benchmark of the validation pipeline (filled in by a later commit).

fn main() {}
