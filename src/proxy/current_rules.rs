//! The rules in force: read by every room for each new session, command
//! and transfer, replaced as a whole by a reload.

use crate::rules::Rules;
use std::sync::{Arc, RwLock};

/// The rules in force now.
pub(crate) struct CurrentRules(RwLock<Arc<Rules>>);

impl CurrentRules {
    pub(crate) fn new(rules: Rules) -> CurrentRules {
        CurrentRules(RwLock::new(Arc::new(rules)))
    }

    /// The rules in force now: a snapshot, which a reload does not change.
    pub(crate) fn get(&self) -> Arc<Rules> {
        self.0
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Puts `new` in force (for the reload alone).
    pub(crate) fn replace(&self, new: Arc<Rules>) {
        match self.0.write() {
            Ok(mut w) => *w = new,
            Err(p) => *p.into_inner() = new,
        }
    }
}
