//! Benchmark drivers behind the scripts in e2e/bench (hidden `rind bench api` and
//! `rind node bench-scheduler`), and the standalone API server on loopback that they
//! and the Python client suite (e2e/api) start. No component depends on this crate:
//! benchmarks sit on top, beside the CLI.

pub mod api;
pub mod scheduler;
pub mod standalone;
