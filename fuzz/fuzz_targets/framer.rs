#![no_main]
//! The control-line framer: bounded buffering on any bytes, any split.
use ftpalg::ftp::framer::{Frame, LineFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cap, rest)) = data.split_first() else { return };
    let cap = usize::from(cap).max(4);
    let mut f = LineFramer::new(cap);
    let mut out = Vec::new();
    for chunk in rest.chunks(7) {
        f.push(chunk, &mut out);
        assert!(f.buffered() < cap);
    }
    for frame in out {
        match frame {
            Frame::Line(l) => {
                assert!(l.raw.len() < cap);
                let _ = l.text();
            }
            Frame::TooLong { prefix } => assert!(prefix.len() < cap),
        }
    }
});
