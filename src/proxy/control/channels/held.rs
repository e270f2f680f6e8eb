//! Replies held behind a data channel: queued until its data path has
//! ended, then settled as the engine decides, and the failures remembered
//! for a reply that arrives after its relay.

use super::*;

impl Driver {
    pub(in crate::proxy::control) fn remember_failed(&mut self, id: DataId, reason: String) {
        if self.failed.len() >= REMEMBER_FAILED {
            self.failed.pop_front();
        }
        self.failed.push_back((id, reason));
    }

    /// A line of the reply that must wait for channel `id`: queued until
    /// the data path has ended, then sent as it is or as the engine
    /// rewrites it for a failed one.
    pub(in crate::proxy::control) fn held_reply(&mut self, id: DataId, bytes: Vec<u8>) {
        let known = self.channels.get_mut(&id).map(|c| {
            c.success_reply = true;
            c.delivered.clone()
        });
        self.arm_linger(id);
        match known {
            Some(None) => self.push_out(Some(id), bytes),
            Some(Some(outcome)) => {
                let bytes = self.decide(id, outcome, bytes);
                self.push_out(None, bytes);
            }
            None => {
                let failed = self
                    .failed
                    .iter()
                    .find(|(f, _)| *f == id)
                    .map(|(_, r)| r.clone());
                let bytes = match failed {
                    Some(reason) => self.decide(id, Err(reason), bytes),
                    // Its relay finished cleanly already.
                    None => bytes,
                };
                self.push_out(None, bytes);
            }
        }
    }

    /// Releases the replies waiting for channel `id`, now that its data
    /// path has ended with `outcome`.
    pub(in crate::proxy::control) fn settle_held(
        &mut self,
        id: DataId,
        outcome: Result<(), String>,
    ) {
        for i in 0..self.out.len() {
            if self.out[i].0 != Some(id) {
                continue;
            }
            let held = std::mem::take(&mut self.out[i].1);
            let old = held.len();
            let now = self.decide(id, outcome.clone(), held);
            self.out_bytes = self.out_bytes - old + now.len();
            self.out[i] = (None, now);
        }
    }

    /// Asks the engine what a held reply line becomes, and logs a change.
    pub(in crate::proxy::control) fn decide(
        &mut self,
        id: DataId,
        outcome: Result<(), String>,
        held: Vec<u8>,
    ) -> Vec<u8> {
        let reason = outcome.as_ref().err().cloned();
        let before = held.clone();
        let now = self.session.data_finished(
            id,
            outcome.as_ref().map(|_| ()).map_err(|e| e.as_str()),
            held,
        );
        if now != before && !now.is_empty() {
            warn!(session = self.id, channel = id.0, reason = reason.as_deref().unwrap_or("-"),
                  held = %String::from_utf8_lossy(&before).trim_end(),
                  "data path failed: the client is told the transfer aborted");
        }
        now
    }
}
