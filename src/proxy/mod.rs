//! The tokio driver (placeholder until the proxy lands).
use crate::rules::Rules;
use std::path::PathBuf;

/// Runs the gateway.
pub async fn run(_path: PathBuf, _rules: Rules) -> std::io::Result<()> {
    Ok(())
}
