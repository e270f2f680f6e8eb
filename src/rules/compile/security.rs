//! The security switches, and a warning for each one turned off that
//! names what the operator then accepts.

use super::super::schema::RawSecurity;
use super::super::Security;
use super::context::Ctx;
use crate::ftp::session::TlsPolicy;

const HINT: &str = "leave the key out to keep the safe default, unless the risk is accepted (docs/rules.md, security)";

/// Compiles `security:`, warning for every switch set against its safe
/// default.
pub(super) fn compile_security(cx: &mut Ctx, raw: &RawSecurity) -> Security {
    let switch = |s: &Option<serde_saphyr::Spanned<bool>>, default: bool| {
        s.as_ref().map_or(default, |s| s.value)
    };
    let security = Security {
        bounce_protection: switch(&raw.bounce_protection, true),
        refuse_low_ports: switch(&raw.refuse_low_ports, true),
        check_data_peer: switch(&raw.check_data_peer, true),
        trust_passive_address: switch(&raw.trust_passive_address, false),
        tls: raw.tls.as_ref().map(|t| t.value).unwrap_or_default(),
    };
    let risks = [
        (
            &raw.bounce_protection,
            !security.bounce_protection,
            "bounce_protection is off: a client's PORT/EPRT may name any host, so servers can be made to connect to third parties (FTP bounce, RFC 2577)",
        ),
        (
            &raw.refuse_low_ports,
            !security.refuse_low_ports,
            "refuse_low_ports is off: PORT/EPRT may name ports below 1024, so servers can be aimed at mail, ssh and other services",
        ),
        (
            &raw.check_data_peer,
            !security.check_data_peer,
            "check_data_peer is off: whoever reaches a pinhole's port first can steal or inject the transfer",
        ),
        (
            &raw.trust_passive_address,
            security.trust_passive_address,
            "trust_passive_address is on: the gateway connects to the address in a server's 227, so a hostile server can aim it at internal hosts",
        ),
    ];
    for (at, risky, message) in risks {
        if let (Some(at), true) = (at, risky) {
            cx.warn(at, message.into(), HINT);
        }
    }
    if let Some(t) = raw
        .tls
        .as_ref()
        .filter(|t| t.value == TlsPolicy::Passthrough)
    {
        cx.warn(
            t,
            "tls is passthrough: a session that sends AUTH TLS is not inspected from then on: no rule applies to its commands and the gateway opens no data channel for it".into(),
            HINT,
        );
    }
    security
}
