//! The one logging setup of every rind process: plain text on stdout (the node init
//! sends each component's stdout to its log file), filtered by `RIND_LOG`.

/// The environment variable that sets the log filter, in `tracing`'s `EnvFilter`
/// syntax (`info`, `debug`, `info,kube=warn`, …).
pub const FILTER_VARIABLE: &str = "RIND_LOG";

/// Installs the logger with `default` as the filter when `RIND_LOG` is unset.
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(FILTER_VARIABLE)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Another component in the same process (a test, a benchmark) may have installed
    // one already.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .try_init();
}
