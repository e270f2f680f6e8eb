//! Micro-benchmarks: parsing and rewriting the lines that carry addresses,
//! and a whole PASV exchange through the session engine.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ftpalg::ftp::codec::{encode_eprt, encode_port, find_227, find_229, parse_eprt, parse_port};
use ftpalg::ftp::framer::{Frame, Line, LineFramer};
use ftpalg::ftp::session::{
    AllowAll, DataId, ServerDataMode, Session, SessionConfig, Side, TlsPolicy, Upstream,
};
use std::hint::black_box;
use std::time::Duration;

fn codecs(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("parse", "PORT"), |b| {
        b.iter(|| parse_port(black_box(b"100,64,0,2,156,65")))
    });
    g.bench_function(BenchmarkId::new("parse", "227"), |b| {
        b.iter(|| find_227(black_box(b"Entering Passive Mode (198,51,100,10,195,80).")))
    });
    g.bench_function(BenchmarkId::new("parse", "EPRT"), |b| {
        b.iter(|| parse_eprt(black_box(b"|2|2001:db8:1::2|40001|")))
    });
    g.bench_function(BenchmarkId::new("parse", "229"), |b| {
        b.iter(|| find_229(black_box(b"Entering Extended Passive Mode (|||50000|)")))
    });
    g.bench_function(BenchmarkId::new("rewrite", "227"), |b| {
        let text = b"Entering Passive Mode (10,0,0,5,195,80).";
        b.iter(|| {
            let f = find_227(black_box(text)).unwrap();
            let mut out = Vec::with_capacity(64);
            out.extend_from_slice(&text[..f.span.start]);
            out.extend_from_slice(encode_port("198.51.100.1:50000".parse().unwrap()).as_bytes());
            out.extend_from_slice(&text[f.span.end..]);
            out
        })
    });
    g.bench_function(BenchmarkId::new("encode", "EPRT"), |b| {
        let a = "[2001:db8:2::1]:41000".parse().unwrap();
        b.iter(|| encode_eprt(black_box(a)))
    });
    g.finish();
}

fn framing(c: &mut Criterion) {
    let mut stream = Vec::new();
    for i in 0..1000 {
        stream.extend_from_slice(format!("RETR /pub/file-{i}.tar.gz\r\n").as_bytes());
    }
    let mut g = c.benchmark_group("framer");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 lines", |b| {
        b.iter(|| {
            let mut f = LineFramer::new(2048);
            let mut out = Vec::with_capacity(1000);
            f.push(black_box(&stream), &mut out);
            out
        })
    });
    g.finish();
}

fn engine(c: &mut Criterion) {
    let policy = AllowAll {
        server_mode: ServerDataMode::SameAsClient,
        tls: TlsPolicy::Refuse,
    };
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    g.bench_function("NOOP round trip", |b| {
        let mut s = Session::new(SessionConfig::new(
            "100.64.0.2:40000".parse().unwrap(),
            Upstream::Fixed("198.51.100.10:21".parse().unwrap()),
        ));
        s.on_server(Frame::Line(Line::new(&b"220 hi"[..])), &policy);
        while s.poll_action().is_some() {}
        b.iter(|| {
            s.on_client(Frame::Line(Line::new(&b"NOOP"[..])), &policy);
            s.on_server(Frame::Line(Line::new(&b"200 ok"[..])), &policy);
            while let Some(a) = s.poll_action() {
                black_box(a);
            }
        })
    });
    g.bench_function("PASV exchange", |b| {
        let mut s = Session::new(SessionConfig::new(
            "100.64.0.2:40000".parse().unwrap(),
            Upstream::Fixed("198.51.100.10:21".parse().unwrap()),
        ));
        s.on_server(Frame::Line(Line::new(&b"220 hi"[..])), &policy);
        while s.poll_action().is_some() {}
        let mut id = 1;
        b.iter(|| {
            s.on_client(Frame::Line(Line::new(&b"PASV"[..])), &policy);
            s.on_server(
                Frame::Line(Line::new(
                    &b"227 Entering Passive Mode (198,51,100,10,195,80)."[..],
                )),
                &policy,
            );
            s.data_prepared(
                DataId(id),
                Side::Server,
                "198.51.100.1:33000".parse().unwrap(),
                &policy,
            );
            s.data_prepared(
                DataId(id),
                Side::Client,
                "100.64.0.1:40001".parse().unwrap(),
                &policy,
            );
            id += 1;
            while let Some(a) = s.poll_action() {
                black_box(a);
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = codecs, framing, engine
}
criterion_main!(benches);
