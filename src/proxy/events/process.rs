//! The `process_*` series every Prometheus client library exports, read
//! from `/proc/self` at each scrape (the `prometheus-client` crate has no
//! process collector): CPU time, memory, file descriptors and start time,
//! under the names and meanings dashboards and alerts already expect. Only
//! `/proc/self` is read, which the packaged unit's `ProcSubset=pid` keeps.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the process's figures at each scrape.
#[derive(Debug, Default)]
pub(super) struct ProcessCollector;

/// One reading of the process's figures; a field is `None` when its
/// source could not be read (it is then left out of the scrape, not
/// shown as zero).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Reading {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time: Option<f64>,
    /// File descriptors open now.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
}

/// The `/proc/<pid>/stat` fields the reading needs, in clock ticks and
/// bytes as the kernel gives them.
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so the fields
/// are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest[0] is field 3 (state): field n is at n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

/// When the host booted, in seconds since the epoch: the wall clock less
/// the time since boot, as the kernel derives `btime` for `/proc/stat`,
/// which the packaged unit's `ProcSubset=pid` hides.
fn boot_time() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let since_boot = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(now - since_boot)
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf takes a constant and reads no memory of ours.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|&v| v > 0)
}

impl Reading {
    /// Reads this process's figures now.
    pub(crate) fn now() -> Reading {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t));
        let btime = boot_time();
        let ticks = sysconf(libc::_SC_CLK_TCK);
        let page = sysconf(libc::_SC_PAGESIZE);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            // The directory's own descriptor is counted, as other
            // clients count it.
            .map(|d| d.count() as u64);
        let max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| soft);
        Reading {
            cpu_seconds: stat
                .as_ref()
                .zip(ticks)
                .map(|(s, t)| (s.utime + s.stime) as f64 / t as f64),
            resident_bytes: stat.as_ref().zip(page).map(|(s, p)| s.rss_pages * p),
            virtual_bytes: stat.as_ref().map(|s| s.vsize),
            start_time: stat
                .as_ref()
                .zip(ticks)
                .zip(btime)
                .map(|((s, t), b)| b + s.starttime as f64 / t as f64),
            open_fds,
            max_fds,
        }
    }
}

/// Encodes a gauge when its value could be read.
fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<N>,
) -> Result<(), std::fmt::Error> {
    let Some(v) = value else { return Ok(()) };
    let g = ConstGauge::new(v);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = Reading::now();
        if let Some(cpu) = r.cpu_seconds {
            let c = ConstCounter::new(cpu);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            r.resident_bytes.map(|v| v as f64),
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            r.virtual_bytes.map(|v| v as f64),
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            r.start_time,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            r.open_fds.map(|v| v as f64),
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors (the soft limit)",
            r.max_fds.map(|v| v as f64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and parentheses, as a process may
        // give itself.
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 250,
                stime: 50,
                starttime: 123456,
                vsize: 104857600,
                rss_pages: 2560,
            })
        );
        assert_eq!(parse_stat("4242 (cut short) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn the_boot_time_is_the_one_proc_stat_gives() {
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let btime: f64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let derived = boot_time().unwrap();
        // btime is whole seconds; the clocks may have drifted a little.
        assert!((derived - btime).abs() < 5.0, "{derived} {btime}");
    }

    #[test]
    fn this_process_reads_as_itself() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let r = Reading::now();
        let rss = r.resident_bytes.expect("rss");
        let vsz = r.virtual_bytes.expect("vsize");
        // A test binary holds at least a megabyte, and never more resident
        // than mapped.
        assert!(rss > 1 << 20 && rss <= vsz, "{r:?}");
        let fds = r.open_fds.expect("open fds");
        let max = r.max_fds.expect("max fds");
        assert!(fds >= 3 && fds <= max, "{r:?}");
        let start = r.start_time.expect("start time");
        // Started before now, and within the last day.
        assert!(
            start <= before + 1.0 && start > before - 24.0 * 3600.0,
            "{r:?}"
        );
        assert!(r.cpu_seconds.expect("cpu") >= 0.0, "{r:?}");
    }
}
