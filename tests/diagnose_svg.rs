//! The SVG timeline: every control line and data connection is drawn, a
//! failed data connection in red, the findings under the ladder, and text
//! from the capture escaped.

mod diagnose_util;

use diagnose_util::diagnose_files;
use ftpalg::diagnose::svg;

#[test]
fn timeline_shows_where_it_broke() {
    let r = diagnose_files(&["passive-21-only.inside.pcap"]);
    let doc = svg::render(&r);
    assert!(doc.starts_with("<svg ") && doc.trim_end().ends_with("</svg>"));
    assert_eq!(doc.matches("session ").count(), 2);
    assert!(doc.contains("229 Entering Extended Passive Mode"));
    // The blocked data connection: red, dashed, with its outcome.
    let line = doc
        .lines()
        .find(|l| l.contains("4 SYN, no answer"))
        .unwrap();
    assert!(
        line.contains("#c62828") && line.contains("stroke-dasharray"),
        "{line}"
    );
    assert!(doc.contains(">passive-data-blocked ("));
    // "->" in the text is escaped: every line's markup stays balanced.
    assert!(doc.contains("-&gt;"));
    for l in doc.lines() {
        assert_eq!(l.matches('<').count(), l.matches('>').count(), "{l}");
    }
}

#[test]
fn a_working_transfer_is_green() {
    let r = diagnose_files(&["helper-active-ok.outside.pcap"]);
    let doc = svg::render(&r);
    let line = doc.lines().find(|l| l.contains("16384 bytes")).unwrap();
    assert!(
        line.contains("#2e7d32") && !line.contains("dasharray"),
        "{line}"
    );
    assert!(doc.contains(">ok</text>"));
}

#[test]
fn a_session_seen_in_two_captures_is_drawn_once_with_both_ladders() {
    let r = diagnose_files(&["ftpalg-ok.inside.pcap", "ftpalg-ok.outside.pcap"]);
    let doc = svg::render(&r);
    assert_eq!(doc.matches(">session ").count(), 1, "{doc}");
    assert!(
        doc.contains("the same session in tests/captures/ftpalg-ok.outside.pcap"),
        "{doc}"
    );
    // The client's EPSV on one ladder, ftpalg's PASV and PORT on the other.
    assert!(doc.contains("229 Entering Extended Passive Mode"));
    assert!(doc.contains("227 Entering Passive Mode"));
    assert!(doc.contains(">PORT 198,51,100,1,"));
    assert!(doc.contains(">passive-data-blocked ("));
}
