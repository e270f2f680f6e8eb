//! A reload: new rules put in force, and each room that keeps something of
//! the old ones brought in line: the listeners (by name), the metrics
//! endpoint (its address and `/status` token; started if the rules gained
//! a metrics section). Sessions and the accept loops (which give
//! admission its limits) read the rules in force as they go, and need no
//! telling.

use super::current_rules::CurrentRules;
use super::events::Telemetry;
use super::http::{self, Endpoint};
use super::listeners::Listening;
use super::shutdown::ShutdownWatch;
use crate::rules::{self, DataPath, KernelSettings, MetricsSettings, Rules};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tracing::{error, warn};

/// What a reload changes.
pub(crate) struct Reload {
    rules: Arc<CurrentRules>,
    /// Reloads one at a time, so the listeners always match the rules in
    /// force.
    one_at_a_time: Mutex<()>,
    listening: Arc<Listening>,
    /// The metrics endpoint, once rules have asked for one.
    endpoint: Mutex<Option<Arc<Endpoint>>>,
    /// What an endpoint started by a reload runs on and stops with.
    rt: tokio::runtime::Handle,
    shutdown: ShutdownWatch,
    telemetry: Arc<Telemetry>,
    /// The kernel data path's settings if it started with ftpalg: it
    /// cannot start later, nor change its table or mark.
    kernel_started: Option<KernelSettings>,
}

impl Reload {
    /// Call within the runtime the gateway runs on.
    pub(crate) fn new(
        rules: Arc<CurrentRules>,
        listening: Arc<Listening>,
        endpoint: Option<Arc<Endpoint>>,
        shutdown: ShutdownWatch,
        telemetry: Arc<Telemetry>,
        kernel_started: Option<KernelSettings>,
    ) -> Reload {
        Reload {
            rules,
            one_at_a_time: Mutex::new(()),
            listening,
            endpoint: Mutex::new(endpoint),
            rt: tokio::runtime::Handle::current(),
            shutdown,
            telemetry,
            kernel_started,
        }
    }

    /// Where the metrics endpoint is bound now, if there is one.
    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        let endpoint = self.endpoint.lock().unwrap_or_else(|p| p.into_inner());
        endpoint.as_ref().map(|e| e.addr())
    }

    /// Brings the metrics endpoint in line with `settings`: moved or given
    /// its new token if it runs, started if the rules gained a metrics
    /// section.
    fn reconcile_metrics(&self, settings: Option<&MetricsSettings>) {
        let mut endpoint = self.endpoint.lock().unwrap_or_else(|p| p.into_inner());
        match (&*endpoint, settings) {
            (Some(e), _) => e.reload(settings),
            (None, None) => {}
            (None, Some(m)) => {
                let _rt = self.rt.enter();
                match http::serve(self.telemetry.clone(), self.shutdown.clone(), m) {
                    Ok(e) => *endpoint = Some(e),
                    Err(e) => {
                        error!(addr = %m.listen, error = %e, "the rules gained a metrics section, but its address cannot be bound; no endpoint until a reload or restart that can bind one")
                    }
                }
            }
        }
    }

    /// Puts `new` in force, read from `file` (for the reload's log line):
    /// for new sessions and new transfers, with the listeners matched to it
    /// by name (see [`Listening::reconcile_listeners`]).
    pub(crate) fn apply(&self, new: Rules, file: &str) {
        let _one_at_a_time = self.one_at_a_time.lock().unwrap_or_else(|p| p.into_inner());
        let new = Arc::new(new);
        self.rules.replace(new.clone());
        match &self.kernel_started {
            None if new.data.path != DataPath::Relay => warn!(
                path = new.data.path.as_str(),
                "the kernel data path starts only with ftpalg: transfers stay on the relay until a restart"
            ),
            Some(k) if new.data.path != DataPath::Relay && *k != new.data.kernel => warn!(
                table = %k.table,
                accept_rule = %k.config().accept_rule(),
                "data.kernel changed: the kernel data path keeps the table and mark it started with until a restart"
            ),
            _ => {}
        }
        self.listening.reconcile_listeners(&new);
        self.reconcile_metrics(new.metrics.as_ref());
        self.telemetry.reload(true, file, None);
    }

    /// Re-reads the rules file: a valid one is applied, an invalid one is
    /// refused and the rules in force stay.
    pub(crate) fn reread(&self, path: &Path) -> Result<(), rules::RulesError> {
        let file = path.display().to_string();
        match rules::load(path) {
            Ok((r, warnings)) => {
                for w in warnings {
                    warn!(file = %file, "{w}");
                }
                self.apply(r, &file);
                Ok(())
            }
            Err(e) => {
                self.telemetry.reload(false, &file, Some(&e.to_string()));
                Err(e)
            }
        }
    }
}
