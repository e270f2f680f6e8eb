//! ftpalg: a userspace FTP application-layer gateway.
//!
//! Layers, from the wire inwards: [`ftp`] is the sans-IO protocol core (it
//! turns control-channel bytes into decisions); `rules` turns the operator's
//! YAML into a policy; `proxy` drives sessions over tokio sockets. See
//! `docs/architecture.md`.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cli;
pub mod dataplane;
pub mod diagnose;
pub mod ftp;
pub mod packet;
pub mod privilege;
pub mod proxy;
pub mod rules;
