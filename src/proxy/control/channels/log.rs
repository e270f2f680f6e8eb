//! The transfer log: a channel bound to its command, and one report when
//! it ends.

use super::*;

impl Driver {
    /// Logs and counts the transfer of channel `c`, whose path ended
    /// with `result`, under the class the engine gives it; a channel that
    /// carried no transfer is neither.
    pub(in crate::proxy::control) fn log_transfer(
        &mut self,
        id: DataId,
        c: &Channel,
        result: Result<Moved, Reason>,
        elapsed: Duration,
    ) {
        let why = result.as_ref().err().map(Reason::to_string);
        let path = match (&result, &why) {
            (Err(r), Some(why)) if r.client_left() => PathEnd::ClientLeft(why),
            (Err(_), Some(why)) => PathEnd::Failed(why),
            _ => PathEnd::Done,
        };
        let end = self.session.transfer_end(id, path);
        let (verb, file) = match (&end, c.transfer.clone()) {
            (TransferEnd::NotATransfer, _) => {
                debug!(
                    session = self.id,
                    channel = id.0,
                    "data channel carried no transfer"
                );
                return;
            }
            (TransferEnd::RefusedByPolicy { command, file, .. }, _) => {
                (command.clone(), file.clone())
            }
            (_, Some((verb, file))) => (verb.to_string(), file),
            (_, None) => ("-".to_string(), String::new()),
        };
        let (cm, sm) = c
            .modes
            .map(|(c, s)| (c.as_str(), s.as_str()))
            .unwrap_or(("-", "-"));
        let direction = c.direction.map_or("-", Direction::as_str);
        let server = self
            .session
            .server()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let user = self.session.user().unwrap_or("-").to_string();
        // What it moved, until it failed where it did: counted by the
        // gateway as the bytes passed.
        let moved = match &result {
            Ok(m) => (m.up, m.down),
            Err(_) => c.status.as_ref().map_or((0, 0), |s| {
                let p = s.progress();
                (p.up.load(Ordering::Relaxed), p.down.load(Ordering::Relaxed))
            }),
        };
        let end = match &end {
            TransferEnd::Completed => events::TransferEnd::Completed,
            TransferEnd::RefusedByServer { reply } => {
                events::TransferEnd::RefusedByServer { reply }
            }
            TransferEnd::RefusedByPolicy { reason, .. } => {
                events::TransferEnd::RefusedByPolicy { reason }
            }
            TransferEnd::AbortedByClient => events::TransferEnd::AbortedByClient,
            TransferEnd::Failed { reason } => events::TransferEnd::Failed { error: reason },
            TransferEnd::NotATransfer => return,
        };
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
            path: c.path.name(),
            setup: c.started.map(|s| s.saturating_duration_since(c.created)),
            elapsed,
            moved,
            end,
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
