//! Where the gateway's log lines go, and at which priority.
//!
//! Under systemd a line on stderr reaches the journal at the unit's
//! default priority unless it starts with `<N>`, its syslog priority
//! (sd-daemon(3)); without it `journalctl -p warning` shows every line.
//! So `--log-target auto` prefixes each line with its level's priority
//! when stderr is the journal (`JOURNAL_STREAM` names stderr's device and
//! inode, as systemd.exec(5) says to check), and writes plain lines
//! otherwise. `--log-target journald` talks to the journal's socket
//! instead (`tracing-journald`), every field a journal field of its own.

use crate::cli::{LogFormat, LogTarget};
use std::io::{self, Write};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Where the log lines went, once [`init`] chose.
#[derive(Debug, PartialEq, Eq)]
pub enum Destination {
    /// stderr; `prefixed`: each line led by its syslog priority.
    Stderr {
        /// Lines start with `<N>`.
        prefixed: bool,
    },
    /// The journal's native socket.
    Journald,
}

/// The syslog priority of a level: ERROR `3`, WARN `4`, INFO `6`, DEBUG
/// and TRACE `7`.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether stderr is the journal's stream: `JOURNAL_STREAM` is
/// `DEVICE:INODE` of the stream systemd connected, and a child that
/// inherited the variable but not the stream must not take it for the
/// journal.
pub fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(named) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    named.to_str() == Some(&format!("{}:{}", meta.dev(), meta.ino()))
}

/// Sets up the logs for `format` and `target`, filtered by `FTPALG_LOG`
/// (`info` when unset), and says where they go. A journal socket that
/// cannot be reached falls back to stderr (prefixed if it is the journal),
/// and the first line says so.
pub fn init(format: LogFormat, target: LogTarget) -> Destination {
    let filter = EnvFilter::try_from_env("FTPALG_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let mut unreachable = None;
    if target == LogTarget::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(Some("FTPALG".into()))
                    .with_syslog_identifier("ftpalg".into())
                    .with_priority_mappings(journal_priorities());
                tracing_subscriber::registry()
                    .with(layer)
                    .with(filter)
                    .init();
                return Destination::Journald;
            }
            Err(e) => unreachable = Some(e),
        }
    }
    let prefixed = target != LogTarget::Stderr && stderr_is_journal();
    tracing_subscriber::registry()
        .with(stderr_layer(format, prefixed))
        .with(filter)
        .init();
    if let Some(e) = unreachable {
        tracing::warn!(
            error = %crate::proxy::plain_io_error(&e),
            "cannot reach the journal's socket; logging to stderr"
        );
    }
    Destination::Stderr { prefixed }
}

fn journal_priorities() -> tracing_journald::PriorityMappings {
    use tracing_journald::Priority;
    tracing_journald::PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

fn stderr_layer(format: LogFormat, prefixed: bool) -> Boxed {
    use std::io::IsTerminal;
    let writer = Stderr { prefixed };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(!prefixed && io::stderr().is_terminal());
    match (format, prefixed) {
        (LogFormat::Json, _) => layer.json().flatten_event(true).boxed(),
        // The journal stamps every line itself.
        (LogFormat::Text, true) => layer.without_time().boxed(),
        (LogFormat::Text, false) => layer.boxed(),
    }
}

/// stderr, each line led by its event's priority when `prefixed`.
#[derive(Clone, Copy)]
struct Stderr {
    prefixed: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Prefixed<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Prefixed::new(io::stderr(), None)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let p = self.prefixed.then(|| priority(meta.level()));
        Prefixed::new(io::stderr(), p)
    }
}

/// A writer that starts every line with `<priority>`.
pub struct Prefixed<W: Write> {
    inner: W,
    priority: Option<u8>,
    at_line_start: bool,
}

impl<W: Write> Prefixed<W> {
    /// Prefixes what goes to `inner` with `<priority>` at each line start,
    /// or passes it as it is when `priority` is `None`.
    pub fn new(inner: W, priority: Option<u8>) -> Self {
        Prefixed {
            inner,
            priority,
            at_line_start: true,
        }
    }
}

impl<W: Write> Write for Prefixed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(p) = self.priority else {
            return self.inner.write(buf);
        };
        // One event is one buffer: it goes out in one write where it can,
        // so that lines of two threads do not interleave.
        let mut out = Vec::with_capacity(buf.len() + 8);
        for chunk in buf.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start {
                out.extend_from_slice(format!("<{p}>").as_bytes());
            }
            out.extend_from_slice(chunk);
            self.at_line_start = chunk.ends_with(b"\n");
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_gets_its_priority() {
        let mut w = Prefixed::new(Vec::new(), Some(4));
        w.write_all(b"one\ntwo\n").unwrap();
        w.write_all(b"thr").unwrap();
        w.write_all(b"ee\n").unwrap();
        assert_eq!(
            String::from_utf8(w.inner).unwrap(),
            "<4>one\n<4>two\n<4>three\n"
        );
        let mut plain = Prefixed::new(Vec::new(), None);
        plain.write_all(b"one\n").unwrap();
        assert_eq!(plain.inner, b"one\n");
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }
}
