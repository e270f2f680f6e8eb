//! Carrying out the engine's actions, and its events as logs and metrics.

use super::*;

impl Driver {
    pub(super) async fn execute(&mut self) -> io::Result<()> {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::ToClient(b) => self.push_out(b),
                Action::ToServer(b) => {
                    let deadline = self.write_deadline();
                    let (id, gw) = (self.id, self.gw.clone());
                    if let Some(w) = self.server_w.as_mut() {
                        bounded_write(w, &b, deadline, &gw, id, "server").await?;
                    }
                }
                Action::Connect { host, port } => self.connect_upstream(host, port),
                Action::Prepare { id, side, endpoint } => self.prepare(id, side, endpoint),
                Action::Start {
                    id,
                    client_mode,
                    server_mode,
                } => self.start_transfer(id, client_mode, server_mode),
                Action::Transfer {
                    id,
                    verb,
                    direction,
                    arg,
                } => self.bind_transfer(id, verb, direction, arg),
                Action::Reset { id, why } => self.kill(id, why),
                Action::Retire { id, why } => self.close_delivered(id, why.as_str()),
                // The server hears ABOR next and may close its end at once:
                // the transfer is cut first.
                Action::Cut { id } => self.cut(id).await,
                Action::Opaque => self.opaque = true,
                Action::Close => self.close_pending = true,
                Action::Event(e) => self.log_event(e),
            }
        }
        Ok(())
    }

    pub(super) fn log_event(&mut self, e: Event) {
        let id = self.id;
        let client = self.session.client();
        let user = self.session.user().unwrap_or("-").to_string();
        match e {
            Event::Denied {
                reason,
                detail,
                file,
            } => {
                let reason = reason.to_string();
                let file = file.as_deref();
                self.gw
                    .telemetry
                    .denied(Some(id), client, &user, &reason, &detail, file);
            }
            Event::Unparsed { from, line } => {
                info!(session = id, from = crate::proxy::plain::side(from), line = %line, "passed through a line it could not parse")
            }
            Event::UnsolicitedPassive { code } => warn!(
                session = id,
                code, "unsolicited passive reply from the server: not honoured"
            ),
            Event::PassiveAddressIgnored { advertised, used } => {
                info!(session = id, advertised = %advertised, used = %used, "server advertised another address in its passive reply; using the control connection's")
            }
            Event::PassiveFallback { reason } => {
                warn!(session = id, reason = %reason, "server passive port unreachable; using active mode towards it");
                if let Some(server) = self.session.server() {
                    self.gw.passive.mark_dead(server.ip());
                }
            }
            Event::PassiveAnswered => {
                if let Some(server) = self.session.server() {
                    self.gw.passive.mark_alive(server.ip());
                }
            }
            Event::KernelFallback { reason } => {
                warn!(session = id, reason = %reason, "kernel data path failed; relaying this transfer")
            }
            Event::User { name } => debug!(session = id, user = %name, "user"),
            Event::LoggedIn => {
                self.admission.settle();
                let server = self.session.server().map(|s| s.to_string());
                self.gw.telemetry.logged_in(id, client, &user, server)
            }
            Event::Aborted { id: channel } => {
                info!(
                    session = id,
                    channel = channel.0,
                    "transfer aborted by the client"
                )
            }
            Event::ReplyOverdue { id: channel } => {
                warn!(
                    session = id,
                    channel = channel.0,
                    reason = "the server did not answer a transfer whose data was cut",
                    "replied 426 for the server"
                )
            }
            Event::DataPathFailed {
                id: channel,
                reason,
                held,
            } => {
                // The transfer's own line says how it ended, at its level.
                info!(session = id, channel = channel.0, reason = %reason, held = %held,
                      "data path failed: the client is told the transfer aborted")
            }
            Event::IdleTimeout => {
                self.end = "idle timeout";
                info!(session = id, reason = "control idle timeout", "closing")
            }
            Event::LoginTimeout => {
                self.gw.telemetry.login_timeout(id, client, None);
                self.end = "login timeout";
                self.dismissed = true;
            }
            Event::TlsPassthrough => {
                // The login is encrypted from here on: the gateway cannot
                // tell, so the session counts as logged in.
                self.admission.settle();
                info!(
                    session = id,
                    "TLS passed through; data channels not inspected"
                )
            }
        }
    }
}
