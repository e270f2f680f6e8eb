//! Codecs for the addresses FTP carries inside its control channel.
//!
//! Each codec parses strictly (an octet over 255 or port 0 is an error, never
//! wrapped) and encodes canonically, so `parse(encode(x)) == x` holds. The
//! reply finders are tolerant about the text around the address, because
//! real servers disagree about parentheses, case and punctuation.

mod extended;
mod long;
mod port;

pub use extended::{encode_229, encode_eprt, find_229, parse_eprt, ExtendedPassive};
pub use long::{encode_lprt, find_228, parse_lprt};
pub use port::{encode_port, find_227, parse_port, Found};

use thiserror::Error;

/// Why an address argument or reply could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The wrong number of comma-separated fields.
    #[error("expected {expected} fields, found {found}")]
    FieldCount {
        /// How many fields the form needs.
        expected: usize,
        /// How many were present.
        found: usize,
    },
    /// A field is empty or holds something other than decimal digits.
    #[error("field {index} is not a decimal number")]
    NotANumber {
        /// Zero-based position of the field.
        index: usize,
    },
    /// A field that must be a byte is over 255.
    #[error("field {index} is {value}, above 255")]
    OctetRange {
        /// Zero-based position of the field.
        index: usize,
        /// The value found.
        value: u32,
    },
    /// Port 0 names no data port.
    #[error("port 0 is not a data port")]
    PortZero,
    /// A port over 65535.
    #[error("port {0} is above 65535")]
    PortRange(u32),
    /// No address of the expected form anywhere in the text.
    #[error("no address found")]
    NotFound,
    /// An address family the codec does not carry.
    #[error("unsupported address family {0}")]
    Family(u32),
    /// The length fields of LPRT do not match the family.
    #[error("address or port length {0} does not match the family")]
    Length(u32),
    /// The delimiter is not a printable ASCII character, or is missing.
    #[error("bad or inconsistent delimiter")]
    Delimiter,
    /// The address text is not an address of the named family.
    #[error("address does not parse")]
    Address,
}

/// Parses an ASCII decimal field of at most `max_digits` digits.
fn decimal(field: &[u8], index: usize, max_digits: usize) -> Result<u32, CodecError> {
    if field.is_empty() || field.len() > max_digits || !field.iter().all(u8::is_ascii_digit) {
        return Err(CodecError::NotANumber { index });
    }
    Ok(field
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

/// Parses a decimal octet (0..=255).
fn octet(field: &[u8], index: usize) -> Result<u8, CodecError> {
    let value = decimal(field, index, 3)?;
    u8::try_from(value).map_err(|_| CodecError::OctetRange { index, value })
}

/// Parses a non-zero decimal port.
fn port_number(field: &[u8], index: usize) -> Result<u16, CodecError> {
    let value = decimal(field, index, 5)?;
    match u16::try_from(value) {
        Ok(0) => Err(CodecError::PortZero),
        Ok(p) => Ok(p),
        Err(_) => Err(CodecError::PortRange(value)),
    }
}

/// Trims ASCII spaces and tabs from both ends.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
