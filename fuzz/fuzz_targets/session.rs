#![no_main]
//! The session engine fed interleaved client and server bytes: no panic.
use ftpalg::ftp::framer::LineFramer;
use ftpalg::ftp::session::{AllowAll, ServerDataMode, Session, SessionConfig, TlsPolicy, Upstream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = SessionConfig::new("100.64.0.2:40000".parse().unwrap(), Upstream::Fixed("198.51.100.10:21".parse().unwrap()));
    let policy = AllowAll { server_mode: ServerDataMode::Auto, tls: TlsPolicy::Passthrough };
    let mut s = Session::new(cfg);
    let mut from_client = LineFramer::new(256);
    let mut from_server = LineFramer::new(256);
    let mut frames = Vec::new();
    // The first byte of each chunk says who sent it.
    for chunk in data.split(|&b| b == 0xfe) {
        let Some((&who, bytes)) = chunk.split_first() else { continue };
        frames.clear();
        if who & 1 == 0 {
            from_client.push(bytes, &mut frames);
            for f in frames.drain(..) {
                s.on_client(f, &policy);
            }
        } else {
            from_server.push(bytes, &mut frames);
            for f in frames.drain(..) {
                s.on_server(f, &policy);
            }
        }
        while s.poll_action().is_some() {}
    }
});
