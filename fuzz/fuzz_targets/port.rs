#![no_main]
//! PORT argument and 227 reply: never panic; whatever parses re-encodes to
//! something that parses to the same address.
use ftpalg::ftp::codec::{encode_port, find_227, parse_port};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = parse_port(data) {
        assert_eq!(parse_port(encode_port(a).as_bytes()), Ok(a));
    }
    if let Ok(f) = find_227(data) {
        assert!(f.span.end <= data.len());
        assert_eq!(parse_port(&data[f.span.clone()]).ok(), Some(f.addr));
    }
});
