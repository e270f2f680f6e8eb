//! The telnet bytes an FTP control connection may carry (RFC 854), shared
//! by the framer, which reads them, and the redaction of logged lines,
//! which skips them.

/// Telnet "interpret as command".
pub const IAC: u8 = 255;
/// Telnet interrupt process.
pub const IP: u8 = 244;
/// Telnet data mark (the synch signal).
pub const DM: u8 = 242;
/// Telnet WILL, the first of the four option negotiation commands.
pub(crate) const WILL: u8 = 251;
/// Telnet DONT, the last of them.
pub(crate) const DONT: u8 = 254;
