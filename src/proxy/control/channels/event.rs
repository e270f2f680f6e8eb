//! What reaches a session's driver about its data channels (from their
//! paths, and from the upstream's connection).

use crate::proxy::datapath::PathReport;
use tokio::net::TcpStream;

/// An event of one of the session's data channels.
pub(in crate::proxy::control) enum DataEvent {
    Upstream(Result<TcpStream, super::super::route::RouteError>),
    /// What a channel's path reports.
    Path(PathReport),
}

#[cfg(test)]
mod tests {
    /// Every session's event channel allocates room for 32 events at
    /// once: a large variant costs each idle session its size 32 times.
    #[test]
    fn data_events_stay_small() {
        assert!(std::mem::size_of::<super::DataEvent>() <= 64);
    }
}
