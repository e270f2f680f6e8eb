//! The session's control output: what the engine has for the client,
//! queued in order and written under deadlines.

use super::*;

impl Driver {
    pub(super) fn push_out(&mut self, bytes: Vec<u8>) {
        self.out.extend_from_slice(&bytes);
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

    /// Writes queued client output. One write under one deadline: the
    /// whole batch must go within it, and pipelined replies leave in as few
    /// segments as possible (Nagle is off here).
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        let batch = std::mem::take(&mut self.out);
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
                warn!(session, peer, reason = "peer does not read its control connection", deadline_secs = deadline.as_secs_f64(), "closing");
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("the {peer} did not read its control connection for {deadline:?}")))
            }
        },
        _ = hard_stop.wait_for(|stop| *stop) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, "the gateway is shutting down"))
        }
    }
}
