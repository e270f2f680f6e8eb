//! Port ranges as they appear in rules (`40000-40999`, or one port).

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
