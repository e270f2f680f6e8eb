//! A session after `AUTH TLS` passed through: the control connection is
//! copied blindly, under the control idle timeout, until shutdown.

use super::{bounded_write, Driver};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

impl Driver {
    /// After AUTH TLS passes through: copy raw bytes both ways, until
    /// either side ends, nothing moves for the control idle timeout, or the
    /// gateway shuts down (the gateway cannot see where an encrypted reply
    /// ends, so there is nothing to drain: it closes at once).
    pub(super) async fn go_opaque(&mut self) -> io::Result<()> {
        let (Some(mut cr), Some(mut sr), Some(mut sw)) = (
            self.client_r.take(),
            self.server_r.take(),
            self.server_w.take(),
        ) else {
            return Ok(());
        };
        let idle = self.write_deadline();
        let (id, gw) = (self.id, self.gw.clone());
        let from_client = self.from_client.take_buffered();
        bounded_write(&mut sw, &from_client, idle, &gw, id, "server").await?;
        let from_server = self.from_server.take_buffered();
        bounded_write(&mut self.client_w, &from_server, idle, &gw, id, "client").await?;
        let mut shutdown = self.gw.shutdown.shutdown_signal();
        let (mut cbuf, mut sbuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
        let (mut client_open, mut server_open) = (true, true);
        while client_open || server_open {
            tokio::select! {
                r = cr.read(&mut cbuf), if client_open => match r? {
                    0 => {
                        client_open = false;
                        let _ = sw.shutdown().await;
                    }
                    n => bounded_write(&mut sw, &cbuf[..n], idle, &gw, id, "server").await?,
                },
                r = sr.read(&mut sbuf), if server_open => match r? {
                    0 => {
                        server_open = false;
                        let _ = self.client_w.shutdown().await;
                    }
                    n => bounded_write(&mut self.client_w, &sbuf[..n], idle, &gw, id, "client").await?,
                },
                _ = tokio::time::sleep(idle) => {
                    warn!(session = id, reason = "control idle timeout", "closing the TLS passthrough session");
                    return Ok(());
                }
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                    info!(session = id, reason = "gateway shutting down", "closing the TLS passthrough session");
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
