//! Live capture from a network interface through `pnet`'s datalink layer
//! (AF_PACKET on Linux), bounded in time and in packets.

use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pnet_datalink::{Channel, Config};
use thiserror::Error;

use super::capture::Packet;
use super::decode::LinkType;

/// Why a live capture could not run.
#[derive(Debug, Error)]
pub enum LiveError {
    /// No interface of that name.
    #[error("no interface named {0}")]
    NoInterface(String),
    /// Opening the capture socket failed (needs CAP_NET_RAW).
    #[error("cannot capture on {iface}: {source}")]
    Open {
        /// The interface.
        iface: String,
        /// The system's error.
        source: io::Error,
    },
    /// The interface gave frames of another kind than Ethernet.
    #[error("{0}: not an Ethernet-like interface")]
    NotEthernet(String),
}

/// Captures on `iface` until `duration` has passed or `max_packets` frames
/// were seen, handing each frame to `each`; returns the frames seen.
pub fn capture(
    iface: &str,
    duration: Duration,
    max_packets: u64,
    mut each: impl FnMut(&Packet<'_>),
) -> Result<u64, LiveError> {
    let interface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface)
        .ok_or_else(|| LiveError::NoInterface(iface.to_string()))?;
    let config = Config {
        // The deadline is checked between frames; a quiet interface must
        // not hold the loop past it.
        read_timeout: Some(Duration::from_millis(100)),
        promiscuous: false,
        ..Config::default()
    };
    let mut rx = match pnet_datalink::channel(&interface, config) {
        Ok(Channel::Ethernet(_tx, rx)) => rx,
        Ok(_) => return Err(LiveError::NotEthernet(iface.to_string())),
        Err(source) => {
            return Err(LiveError::Open {
                iface: iface.to_string(),
                source,
            })
        }
    };
    let deadline = Instant::now() + duration;
    let mut number = 0u64;
    while Instant::now() < deadline && number < max_packets {
        match rx.next() {
            Ok(frame) => {
                number += 1;
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
                each(&Packet {
                    number,
                    ts,
                    link: LinkType::ETHERNET,
                    data: frame,
                    orig_len: len,
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(source) => {
                return Err(LiveError::Open {
                    iface: iface.to_string(),
                    source,
                })
            }
        }
    }
    Ok(number)
}
