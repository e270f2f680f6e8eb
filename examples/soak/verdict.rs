//! The verdict on one transfer: what the client saw against what must
//! hold (docs/soak.md, "The checks").

use crate::client::{DataEnd, Seen};
use crate::content::{hex, sha256, ClientFault, ServerFault};
use crate::net::{Reply, Res};
use crate::plan::{Kind, Plan};
use sha2::{Digest, Sha256};
use std::path::Path;

/// What one transfer proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Broken, and the client was told so in time.
    FailedProperly,
    /// A file reported complete (2xx) with wrong or missing bytes.
    Corrupted(String),
    /// A 2xx for a download whose data connection broke.
    False226(String),
    /// No outcome within the deadline.
    Late(String),
    /// A transfer without a breaking fault failed.
    CleanFailed(String),
    /// A download broken by a reset or a timeout reached the client as a
    /// clean close: a truncated file that looks whole to the data channel.
    FinForBroken(String),
}

impl Verdict {
    pub fn class(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::FailedProperly => "failed-properly",
            Verdict::Corrupted(_) => "CORRUPTED",
            Verdict::False226(_) => "226-FOR-BROKEN-DOWNLOAD",
            Verdict::Late(_) => "NO-OUTCOME-IN-TIME",
            Verdict::CleanFailed(_) => "CLEAN-TRANSFER-FAILED",
            Verdict::FinForBroken(_) => "BROKEN-DOWNLOAD-ENDED-WITH-FIN",
        }
    }
    pub fn violation(&self) -> bool {
        !matches!(self, Verdict::Ok | Verdict::FailedProperly)
    }
}

/// What a 2xx for an upload says arrived: from the soak server's reply
/// text, or from the real server's disk.
fn upload_arrived(kind: Kind, plan: &Plan, text: &str, real_root: &Path) -> Res<(u64, String)> {
    if kind == Kind::Real {
        let name = plan.path.rsplit('/').next().unwrap_or("");
        let bytes = std::fs::read(real_root.join("up").join(name))?;
        return Ok((bytes.len() as u64, hex(&Sha256::digest(&bytes))));
    }
    let got = text
        .split("Received ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .ok_or("no byte count in the 226")?;
    let sha = text
        .split("sha256=")
        .nth(1)
        .map(|s| s.trim().to_string())
        .ok_or("no sha256 in the 226")?;
    Ok((got, sha))
}

/// Judges what the client saw.
pub fn judge(kind: Kind, plan: &Plan, seen: &Seen, real_root: &Path) -> Verdict {
    let must = plan.must_succeed() && kind != Kind::Victim;
    let client_broke = matches!(plan.spec.client, ClientFault::Rst | ClientFault::Kill);
    let reply = match &seen.reply {
        Some(r) => r.clone(),
        None if matches!(seen.data, DataEnd::Stalled(_)) => Reply::Timeout,
        None if must => return Verdict::CleanFailed(format!("{:?}", seen.data)),
        None => return Verdict::FailedProperly,
    };
    if reply == Reply::Timeout {
        return Verdict::Late(format!(
            "no reply within the deadline; data: {:?}",
            seen.data
        ));
    }
    if reply.is_2xx() {
        if plan.spec.upload {
            let want = (plan.spec.size, sha256(plan.spec.size, plan.spec.seed));
            return match upload_arrived(kind, plan, &reply.text(), real_root) {
                Ok(got) if got == want => Verdict::Ok,
                Ok((n, _)) => Verdict::Corrupted(format!(
                    "{} covers an upload of {n} of {} bytes (or wrong content); client data: {:?}",
                    reply.text(),
                    plan.spec.size,
                    seen.data
                )),
                Err(e) => Verdict::Corrupted(format!("{}: {e}", reply.text())),
            };
        }
        return match &seen.data {
            DataEnd::Complete => Verdict::Ok,
            DataEnd::Short(n) => Verdict::Corrupted(format!(
                "{} after a clean end of the data at {n} of {} bytes",
                reply.text(),
                plan.spec.size
            )),
            DataEnd::Wrong => Verdict::Corrupted(format!(
                "{} for {} bytes of wrong content",
                reply.text(),
                plan.spec.size
            )),
            DataEnd::Reset(..) | DataEnd::Aborted if client_broke => Verdict::FailedProperly,
            other => Verdict::False226(format!("{} while the data ended: {other:?}", reply.text())),
        };
    }
    // A server that dies closes its data connection cleanly, and the
    // gateway can only pass that on; every other break it must reset.
    let server_closed = plan.spec.server == ServerFault::Die || kind == Kind::Victim;
    if let (false, DataEnd::Short(n), false) = (plan.spec.upload, &seen.data, server_closed) {
        return Verdict::FinForBroken(format!(
            "the data connection closed cleanly at {n} of {} bytes; reply: {}",
            plan.spec.size,
            reply.text()
        ));
    }
    if must {
        return Verdict::CleanFailed(format!("{}; data: {:?}", reply.text(), seen.data));
    }
    Verdict::FailedProperly
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Spec;
    use crate::plan::Mode;

    fn plan(upload: bool, server: ServerFault, client: ClientFault) -> Plan {
        Plan {
            index: 1,
            mode: Mode::Pasv,
            spec: Spec {
                upload,
                size: 1000,
                seed: 5,
                server,
                client,
                client_tag: client.tag().into(),
            },
            path: "soak/x".into(),
        }
    }

    fn judged(p: &Plan, data: DataEnd, reply: Option<Reply>) -> Verdict {
        let s = Seen {
            data,
            reply,
            parked: None,
            reusable: false,
        };
        judge(Kind::Fault, p, &s, Path::new("/nonexistent"))
    }

    fn ok226() -> Option<Reply> {
        Some(Reply::Code(226, "226 done".into()))
    }

    #[test]
    fn a_226_after_a_short_clean_end_is_corruption() {
        let p = plan(false, ServerFault::None, ClientFault::None);
        assert!(matches!(
            judged(&p, DataEnd::Short(500), ok226()),
            Verdict::Corrupted(_)
        ));
        assert_eq!(judged(&p, DataEnd::Complete, ok226()), Verdict::Ok);
    }

    #[test]
    fn a_226_after_a_reset_is_false_unless_the_client_reset() {
        let p = plan(false, ServerFault::None, ClientFault::Stall);
        assert!(matches!(
            judged(&p, DataEnd::Reset(10, "reset".into()), ok226()),
            Verdict::False226(_)
        ));
        let p = plan(false, ServerFault::None, ClientFault::Rst);
        assert_eq!(
            judged(&p, DataEnd::Aborted, ok226()),
            Verdict::FailedProperly
        );
    }

    #[test]
    fn an_upload_226_must_cover_every_byte() {
        let p = plan(true, ServerFault::None, ClientFault::Rst);
        let partial = format!("226 Received 500 bytes sha256={}", sha256(500, 5));
        assert!(matches!(
            judged(&p, DataEnd::Aborted, Some(Reply::Code(226, partial))),
            Verdict::Corrupted(_)
        ));
        let p = plan(true, ServerFault::None, ClientFault::None);
        let whole = format!("226 Received 1000 bytes sha256={}", sha256(1000, 5));
        assert_eq!(
            judged(&p, DataEnd::Complete, Some(Reply::Code(226, whole))),
            Verdict::Ok
        );
    }

    #[test]
    fn silence_past_the_deadline_is_late_and_a_reset_as_fin_is_flagged() {
        let p = plan(false, ServerFault::None, ClientFault::HalfStall);
        assert!(matches!(
            judged(&p, DataEnd::Stalled(64), Some(Reply::Timeout)),
            Verdict::Late(_)
        ));
        let p = plan(false, ServerFault::Rst, ClientFault::None);
        assert!(matches!(
            judged(
                &p,
                DataEnd::Short(500),
                Some(Reply::Code(426, "426 x".into()))
            ),
            Verdict::FinForBroken(_)
        ));
        assert_eq!(
            judged(
                &p,
                DataEnd::Reset(500, "reset".into()),
                Some(Reply::Code(426, "426 x".into()))
            ),
            Verdict::FailedProperly
        );
        // A server that dies closes cleanly; passing that on is right.
        let p = plan(false, ServerFault::Die, ClientFault::None);
        assert_eq!(
            judged(
                &p,
                DataEnd::Short(500),
                Some(Reply::Code(421, "421 x".into()))
            ),
            Verdict::FailedProperly
        );
    }
}
