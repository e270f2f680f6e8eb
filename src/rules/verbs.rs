//! The FTP commands a rule may name: those of the RFCs and of IANA's
//! registry of FTP commands and extensions, and those the operator adds
//! with `extra_commands`. A verb outside both is almost always a typo
//! (`STORE`, `DELETE`), and a rule naming it would never fire.

/// Every command ftpalg knows: RFC 959 (and its X-forms of RFC 775),
/// 1639 (LPRT, LPSV), 2228 (security), 2389 (FEAT, OPTS), 2428 (EPRT,
/// EPSV), 2640 (LANG), 3659 (MDTM, SIZE, MLST, MLSD), 7151 (HOST), and
/// the drafts IANA's registry lists (AVBL, CSID, DSIZ, HASH, MFCT, MFF,
/// MFMT, RANG, RMDA, SPSV, THMB).
pub const KNOWN: &[&str] = &[
    "ABOR", "ACCT", "ADAT", "ALLO", "APPE", "AUTH", "AVBL", "CCC", "CDUP", "CONF", "CSID", "CWD",
    "DELE", "DSIZ", "ENC", "EPRT", "EPSV", "FEAT", "HASH", "HELP", "HOST", "LANG", "LIST", "LPRT",
    "LPSV", "MDTM", "MFCT", "MFF", "MFMT", "MIC", "MKD", "MLSD", "MLST", "MODE", "NLST", "NOOP",
    "OPTS", "PASS", "PASV", "PBSZ", "PORT", "PROT", "PWD", "QUIT", "RANG", "REIN", "REST", "RETR",
    "RMD", "RMDA", "RNFR", "RNTO", "SITE", "SIZE", "SMNT", "SPSV", "STAT", "STOR", "STOU", "STRU",
    "SYST", "THMB", "TYPE", "USER", "XCUP", "XCWD", "XMKD", "XPWD", "XRCP", "XRMD", "XRSQ", "XSEM",
    "XSEN",
];

/// Whether `verb` (upper case) is one ftpalg knows.
pub fn known(verb: &str) -> bool {
    KNOWN.contains(&verb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::command::Verb;

    #[test]
    fn every_known_verb_parses_and_is_listed_once() {
        for (i, v) in KNOWN.iter().enumerate() {
            assert_eq!(
                Verb::parse(v.as_bytes()).map(|p| p.to_string()),
                Some(v.to_string())
            );
            assert!(!KNOWN[..i].contains(v), "{v} twice");
        }
        // The verbs the engine names are all known.
        for v in [
            "USER", "PASS", "PORT", "PASV", "EPRT", "EPSV", "LPRT", "LPSV", "RETR", "STOR", "STOU",
            "APPE", "LIST", "NLST", "MLSD", "DELE", "RNFR", "RNTO", "MKD", "XMKD", "RMD", "XRMD",
            "SITE", "AUTH", "MFMT", "MFCT", "MFF", "REST",
        ] {
            assert!(known(v), "{v}");
        }
    }
}
