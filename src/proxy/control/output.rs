//! The session's control output: replies queued for the client in order,
//! held behind data channels, and written under deadlines.

use super::*;

impl Driver {
    /// Whether a queued reply still waits for a data channel.
    pub(super) fn waiting_on_data(&self) -> bool {
        self.out.iter().any(|o| o.0.is_some())
    }

    pub(super) fn push_out(&mut self, wait: Option<DataId>, bytes: Vec<u8>) {
        self.out_bytes += bytes.len();
        self.out.push_back((wait, bytes));
    }

    pub(super) async fn finish_close(&mut self) {
        let _ = self.flush().await;
        let _ = self.client_w.shutdown().await;
        if let Some(w) = self.server_w.as_mut() {
            let _ = w.shutdown().await;
        }
    }

    /// How long one control write may take: a peer that does not read for
    /// the control idle timeout loses the session.
    pub(super) fn write_deadline(&self) -> Duration {
        self.policy().rules().limits.control_idle_timeout
    }

    /// Writes queued client output in order, stopping at a reply that must
    /// wait for a data channel still delivering. One write under one
    /// deadline: the whole batch must go within it, and pipelined replies
    /// leave in as few segments as possible (Nagle is off here).
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        let mut batch = Vec::new();
        while let Some((None, _)) = self.out.front() {
            let Some((_, bytes)) = self.out.pop_front() else {
                break;
            };
            self.out_bytes -= bytes.len();
            if batch.is_empty() {
                batch = bytes;
            } else {
                batch.extend_from_slice(&bytes);
            }
        }
        let (deadline, id, gw) = (self.write_deadline(), self.id, self.gw.clone());
        bounded_write(&mut self.client_w, &batch, deadline, &gw, id, "client").await
    }
}

/// Writes one control message within `deadline`; a peer that does not
/// read in time, or a shutdown whose grace is over, ends the session.
pub(super) async fn bounded_write(
    w: &mut OwnedWriteHalf,
    bytes: &[u8],
    deadline: Duration,
    gw: &SessionGateway,
    session: u64,
    peer: &'static str,
) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut hard_stop = gw.shutdown.hard_stop_signal();
    tokio::select! {
        // The write first: the last words (421) still go out after the
        // grace, to a client that reads them.
        biased;
        r = tokio::time::timeout(deadline, w.write_all(bytes)) => match r {
            Ok(r) => r,
            Err(_) => {
                warn!(session, peer, reason = "peer does not read its control connection", deadline = ?deadline, "closing");
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("the {peer} did not read its control connection for {deadline:?}")))
            }
        },
        _ = hard_stop.wait_for(|stop| *stop) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, "the gateway is shutting down"))
        }
    }
}
