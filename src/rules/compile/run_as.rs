//! `run_as`: the account must exist, looked up as `ftpalg run` will look
//! it up when it switches to it ([`crate::privilege`]).

use super::super::schema::RawRunAs;
use super::super::RunAs;
use super::context::Ctx;
use crate::privilege::{resolve_group, resolve_user, PrivilegeError};

const HINT: &str = "create it (e.g. useradd --system --no-create-home ftpalg) or name one that exists; under systemd with DynamicUser=yes leave run_as out, the unit names the user";

pub(super) fn compile_run_as(cx: &mut Ctx, raw: &RawRunAs) -> RunAs {
    if let Some(u) = &raw.user {
        report(cx, u, "user", resolve_user(&u.value).map(|_| ()));
    }
    if let Some(g) = &raw.group {
        report(cx, g, "group", resolve_group(&g.value).map(|_| ()));
    }
    RunAs {
        user: raw.user.as_ref().map(|s| s.value.clone()),
        group: raw.group.as_ref().map(|s| s.value.clone()),
    }
}

fn report(
    cx: &mut Ctx,
    at: &serde_saphyr::Spanned<String>,
    kind: &str,
    found: Result<(), PrivilegeError>,
) {
    match found {
        Ok(()) => {}
        Err(PrivilegeError::Unknown { .. }) => cx.error(
            at,
            format!("run_as {kind} '{}' does not exist on this host", at.value),
            HINT,
        ),
        // The lookup itself failed (NSS): the account may still exist.
        Err(e) => cx.warn(
            at,
            format!("run_as {kind} '{}' could not be looked up: {e}", at.value),
            "check the host's user database (getent passwd, getent group)",
        ),
    }
}
