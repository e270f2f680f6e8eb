//! ftpalg: a userspace FTP application-layer gateway.
//!
//! Three layers make the gateway: [`rules`] turns the operator's YAML into
//! a policy; [`ftp`] is the sans-IO protocol core (it turns control-channel
//! bytes into decisions); [`proxy`] drives sessions over tokio sockets,
//! with [`dataplane`] for the flows and the kernel's nftables/conntrack
//! backend. Beside them, [`packet`] (captures, TCP decoding and
//! reassembly) and [`diagnose`] serve `ftpalg diagnose`; [`cli`] holds the
//! command line and [`privilege`] least privilege (the capabilities kept,
//! the run_as user) and [`logging`] where log lines go; [`selftest`] checks a running gateway and its
//! nftables rules. Under them all, [`addrs`] holds the canonical form of
//! an address, which every layer may use. See `docs/architecture.md`.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod addrs;
pub mod cli;
pub mod dataplane;
pub mod diagnose;
pub mod ftp;
pub mod logging;
pub mod packet;
pub mod privilege;
pub mod proxy;
pub mod rules;
pub mod selftest;
