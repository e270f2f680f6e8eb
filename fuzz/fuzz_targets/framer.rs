#![no_main]
//! The control-line framer: bounded buffering on any bytes, any split; a
//! line that decodes re-encodes to bytes that frame and decode to the same
//! command (what the gateway checks is what the server gets).
use ftpalg::ftp::framer::{encode_line, Frame, LineFramer};
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
                if let Ok(c) = l.decode() {
                    assert!(!c.text.contains(&b'\n'));
                    let wire = encode_line(&c.text, c.synch);
                    let mut again = Vec::new();
                    LineFramer::new(wire.len() + 1).push(&wire, &mut again);
                    assert_eq!(again.len(), 1, "{wire:?}");
                    let Frame::Line(l2) = &again[0] else { panic!("{again:?}") };
                    let c2 = l2.decode().expect("re-encoded line decodes");
                    assert_eq!(c2, c);
                }
            }
            Frame::TooLong { prefix } => assert!(prefix.len() < cap),
        }
    }
});
