//! Human durations, byte rates and port ranges as they appear in rules.

use std::time::Duration;

/// Parses `30s`, `15m`, `2h`, `500ms` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    Some(d)
}

/// Parses a rate such as `10MiB/s`, `500KiB/s`, `1000000` (bytes per second).
pub fn parse_rate(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix("/s").unwrap_or(s);
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "GiB" => 1024 * 1024 * 1024,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// An inclusive range of TCP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port, inclusive.
    pub last: u16,
}

impl PortRange {
    /// Number of ports.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }
    /// Never true for a parsed range; here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }
    /// Whether two ranges share a port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
    /// Whether `p` is inside.
    pub fn contains(&self, p: u16) -> bool {
        (self.first..=self.last).contains(&p)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Why a port range is wrong.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeError {
    /// Not `N-M`.
    Syntax,
    /// 0 or over 65535.
    OutOfRange,
    /// First above last.
    Empty,
}

/// Parses `40000-40999` or a single port.
pub fn parse_range(s: &str) -> Result<PortRange, RangeError> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let p = |x: &str| -> Result<u16, RangeError> {
        let v: u32 = x.trim().parse().map_err(|_| RangeError::Syntax)?;
        match u16::try_from(v) {
            Ok(0) | Err(_) => Err(RangeError::OutOfRange),
            Ok(p) => Ok(p),
        }
    };
    let (first, last) = (p(a)?, p(b)?);
    if first > last {
        return Err(RangeError::Empty);
    }
    Ok(PortRange { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_duration("12x"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10MiB/s"), Some(10 * 1024 * 1024));
        assert_eq!(parse_rate("1000"), Some(1000));
        assert_eq!(parse_rate("fast"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("40000-40999"),
            Ok(PortRange {
                first: 40000,
                last: 40999
            })
        );
        assert_eq!(
            parse_range("2121"),
            Ok(PortRange {
                first: 2121,
                last: 2121
            })
        );
        assert_eq!(parse_range("5-4"), Err(RangeError::Empty));
        assert_eq!(parse_range("0-4"), Err(RangeError::OutOfRange));
        assert_eq!(parse_range("1-70000"), Err(RangeError::OutOfRange));
        assert_eq!(parse_range("a-b"), Err(RangeError::Syntax));
        let a = parse_range("10-20").unwrap();
        assert!(a.overlaps(&parse_range("20-30").unwrap()));
        assert!(!a.overlaps(&parse_range("21-30").unwrap()));
        assert_eq!(a.len(), 11);
    }
}
