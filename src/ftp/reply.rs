//! Server replies: single-line `NNN text` and multi-line `NNN-` ... `NNN text`
//! (RFC 959 section 4.2).

/// A three-digit reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplyCode(pub u16);

impl ReplyCode {
    /// 1yz: the command started; another reply follows.
    pub fn is_preliminary(self) -> bool {
        (100..200).contains(&self.0)
    }
    /// 2yz.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
    /// 3yz: more input is needed (e.g. 331 after USER).
    pub fn is_intermediate(self) -> bool {
        (300..400).contains(&self.0)
    }
}

/// Where a line stands within a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLine {
    /// The reply's code.
    pub code: ReplyCode,
    /// The first line of the reply.
    pub first: bool,
    /// The last line: the reply is complete.
    pub last: bool,
    /// Offset of the text after `NNN ` / `NNN-` (0 for continuation lines).
    pub text_at: usize,
}

/// Follows replies across lines, so that continuation lines of a multi-line
/// reply (which may start with anything, digits included) are not mistaken
/// for new replies.
#[derive(Debug, Default, Clone)]
pub struct ReplyTracker {
    open: Option<ReplyCode>,
}

fn code_of(line: &[u8]) -> Option<ReplyCode> {
    match line {
        [a @ b'1'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', ..] => Some(ReplyCode(
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'),
        )),
        _ => None,
    }
}

impl ReplyTracker {
    /// Whether a multi-line reply is open.
    pub fn in_reply(&self) -> bool {
        self.open.is_some()
    }

    /// Classifies the next line; `None` when it is not a reply line at all
    /// (the caller passes it through and reports it).
    pub fn classify(&mut self, line: &[u8]) -> Option<ReplyLine> {
        if let Some(open) = self.open {
            let ends = code_of(line) == Some(open) && matches!(line.get(3), None | Some(b' '));
            if ends {
                self.open = None;
                return Some(ReplyLine {
                    code: open,
                    first: false,
                    last: true,
                    text_at: line.len().min(4),
                });
            }
            return Some(ReplyLine {
                code: open,
                first: false,
                last: false,
                text_at: 0,
            });
        }
        let code = code_of(line)?;
        match line.get(3) {
            None => Some(ReplyLine {
                code,
                first: true,
                last: true,
                text_at: 3,
            }),
            Some(b' ') => Some(ReplyLine {
                code,
                first: true,
                last: true,
                text_at: 4,
            }),
            Some(b'-') => {
                self.open = Some(code);
                Some(ReplyLine {
                    code,
                    first: true,
                    last: false,
                    text_at: 4,
                })
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        let mut t = ReplyTracker::default();
        let r = t
            .classify(b"227 Entering Passive Mode (1,2,3,4,5,6)")
            .unwrap();
        assert_eq!(
            (r.code, r.first, r.last, r.text_at),
            (ReplyCode(227), true, true, 4)
        );
        let r = t.classify(b"200").unwrap();
        assert!(r.last && r.code == ReplyCode(200));
    }

    #[test]
    fn multi_line_with_numeric_continuations() {
        let mut t = ReplyTracker::default();
        assert!(!t.classify(b"211-Features:").unwrap().last);
        let c = t.classify(b"200 not the end, another code").unwrap();
        assert!(!c.last && c.code == ReplyCode(211));
        assert!(!t.classify(b"211-still open").unwrap().last);
        assert!(!t.classify(b" MDTM").unwrap().last);
        assert!(t.in_reply());
        assert!(t.classify(b"211 End").unwrap().last);
        assert!(!t.in_reply());
    }

    #[test]
    fn not_replies() {
        let mut t = ReplyTracker::default();
        assert_eq!(t.classify(b"hello"), None);
        assert_eq!(t.classify(b"22"), None);
        assert_eq!(t.classify(b"227x"), None);
        assert_eq!(t.classify(b"627 x"), None);
        assert_eq!(t.classify(b""), None);
    }

    #[test]
    fn classes() {
        assert!(ReplyCode(150).is_preliminary());
        assert!(ReplyCode(226).is_success());
        assert!(ReplyCode(331).is_intermediate());
    }
}
