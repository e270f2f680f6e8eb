#![no_main]
//! EPRT argument and 229 reply (RFC 2428).
use ftpalg::ftp::codec::{encode_229, encode_eprt, find_229, parse_eprt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = parse_eprt(data) {
        assert_eq!(parse_eprt(encode_eprt(a).as_bytes()), Ok(a));
    }
    if let Ok(e) = find_229(data) {
        assert_eq!(find_229(encode_229(e.port).as_bytes()).map(|x| x.port), Ok(e.port));
    }
});
