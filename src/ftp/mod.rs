//! The sans-IO FTP layer: framing, parsing, address codecs and the session
//! state machine. Nothing here opens a socket or reads a clock.

pub mod codec;
pub mod command;
pub mod framer;
pub mod redact;
pub mod refusal;
pub mod reply;
pub mod session;
pub(crate) mod telnet;
