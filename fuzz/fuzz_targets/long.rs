#![no_main]
//! LPRT argument and 228 reply (RFC 1639).
use ftpalg::ftp::codec::{encode_lprt, find_228, parse_lprt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = parse_lprt(data) {
        assert_eq!(parse_lprt(encode_lprt(a).as_bytes()), Ok(a));
    }
    let _ = find_228(data);
});
