//! The YAML file as written, every value with its position so that
//! diagnostics can point at it. Compiled into [`super::Rules`].

use super::DataPath;
use crate::ftp::session::{ServerDataMode, TlsPolicy};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// The whole rules file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub listeners: Spanned<Vec<RawListener>>,
    #[serde(default)]
    pub networks: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub data: RawData,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub security: RawSecurity,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub run_as: RawRunAs,
    pub metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Spanned<String>,
    pub status_token_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunAs {
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
}

/// Listener kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Fixed upstream.
    Explicit,
    /// `USER name@host[:port]`.
    UserAtHost,
    /// nftables redirect/TPROXY; the original destination is the server.
    Transparent,
    /// In front of a server behind NAT.
    Reverse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Spanned<String>,
    pub listen: Spanned<String>,
    pub kind: Spanned<Kind>,
    pub upstream: Option<Spanned<String>>,
    pub servers: Option<Vec<Spanned<String>>>,
    pub advertise: Option<Vec<RawAdvertise>>,
    pub server_mode: Option<Spanned<ServerDataMode>>,
    pub tproxy: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdvertise {
    pub clients: Spanned<String>,
    pub address: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    pub server_mode: Option<Spanned<ServerDataMode>>,
    pub client_ports: Option<Spanned<String>>,
    pub server_ports: Option<Spanned<String>>,
    pub pinhole_timeout: Option<Spanned<String>>,
    pub passive_probe_timeout: Option<Spanned<String>>,
    pub path: Option<Spanned<DataPath>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub sessions: Option<Spanned<u32>>,
    pub sessions_per_client: Option<Spanned<u32>>,
    pub control_idle_timeout: Option<Spanned<String>>,
    pub login_timeout: Option<Spanned<String>>,
    pub transfer_idle_timeout: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub max_line: Option<Spanned<u32>>,
    pub bandwidth_per_session: Option<Spanned<String>>,
    pub control_keepalive: Option<Spanned<String>>,
    pub shutdown_grace: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    pub bounce_protection: Option<bool>,
    pub refuse_low_ports: Option<bool>,
    pub check_data_peer: Option<bool>,
    pub trust_passive_address: Option<bool>,
    pub tls: Option<TlsPolicy>,
}

/// A string or a list of strings, with the position of the value.
#[derive(Debug)]
pub struct OneOrMany(pub Spanned<Vec<String>>);

struct ListVisitor;

impl<'de> serde::de::Visitor<'de> for ListVisitor {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string or a list of strings")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(vec![v.to_string()])
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<String>()? {
            out.push(s);
        }
        Ok(out)
    }
}

/// The list inside [`OneOrMany`].
#[derive(Debug)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor).map(StringList)
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<StringList>::deserialize(d)?;
        Ok(OneOrMany(Spanned::new(s.value.0, s.referenced, s.defined)))
    }
}

impl OneOrMany {
    /// Each item, carrying the position of the whole value.
    pub fn items(&self) -> Vec<Spanned<String>> {
        let s = &self.0;
        s.value
            .iter()
            .map(|v| Spanned::new(v.clone(), s.referenced, s.defined))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawAction {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<Spanned<String>>,
    #[serde(rename = "match", default)]
    pub matcher: RawMatch,
    pub action: Spanned<RawAction>,
    pub reply: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub client: Option<OneOrMany>,
    pub server: Option<OneOrMany>,
    pub user: Option<OneOrMany>,
    pub command: Option<OneOrMany>,
    pub data_mode: Option<Spanned<String>>,
    pub listener: Option<OneOrMany>,
}
