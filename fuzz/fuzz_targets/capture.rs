#![no_main]
//! The capture reader and the whole diagnosis on any bytes: a report or a
//! clear error, never a panic. The first byte picks the container, so the
//! fuzzer need not find the magic numbers itself.
use ftpalg::diagnose::Diagnoser;
use libfuzzer_sys::fuzz_target;

const PCAP: [u8; 24] = [
    0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0,
];
const PCAPNG: [u8; 28] = [
    0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0,
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut input = Vec::with_capacity(rest.len() + 28);
    match mode % 3 {
        0 => input.extend_from_slice(&PCAP),
        1 => input.extend_from_slice(&PCAPNG),
        _ => {}
    }
    input.extend_from_slice(rest);
    let mut d = Diagnoser::new();
    if d.add_capture("fuzz", &input[..]).is_ok() {
        let report = d.report();
        let _ = report.to_text();
        let _ = report.to_json();
        let _ = ftpalg::diagnose::svg::render(&report);
    }
});
