//! The transfer log: a channel bound to its command, and one report when
//! it ends.

use super::*;

impl Driver {
    pub(in crate::proxy::control) fn log_transfer(
        &self,
        id: DataId,
        c: &Channel,
        result: Result<Moved, String>,
        elapsed: Duration,
    ) {
        let (cm, sm) = c
            .modes
            .map(|(c, s)| (c.as_str(), s.as_str()))
            .unwrap_or(("-", "-"));
        let (verb, file) = c
            .transfer
            .clone()
            .unwrap_or((Verb::from_static("NONE"), String::new()));
        let direction = c.direction.map_or("-", Direction::as_str);
        let server = self
            .session
            .server()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let user = self.session.user().unwrap_or("-").to_string();
        let path = c.path.name();
        let result = match &result {
            Ok(m) => Ok((m.up, m.down)),
            Err(e) => Err(e.as_str()),
        };
        let verb = verb.to_string();
        self.gw.telemetry.transfer(TransferReport {
            session: self.id,
            channel: id.0,
            client: self.session.client(),
            server: &server,
            user: &user,
            direction,
            command: &verb,
            file: &file,
            client_mode: cm,
            server_mode: sm,
            path,
            setup: c.started.map(|s| s.saturating_duration_since(c.created)),
            elapsed,
            result,
        });
    }

    /// Binds a transfer command to channel `id`, for the transfer log.
    pub(in crate::proxy::control) fn bind_transfer(
        &mut self,
        id: DataId,
        verb: Verb,
        direction: Direction,
        arg: String,
    ) {
        self.gw
            .telemetry
            .transfer_named(self.id, id.0, &verb.to_string(), &arg);
        if let Some(c) = self.channels.get_mut(&id) {
            c.transfer = Some((verb, arg));
            c.direction = Some(direction);
        }
    }
}
