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
    /// Required, as are the other keys typed `Option` below that the
    /// shape check (`structure.rs`) marks so: it reports one missing or
    /// unusable, and the compiler leaves out what lacks it, so that the
    /// rest of the file is still checked.
    pub listeners: Option<Spanned<Vec<RawListener>>>,
    #[serde(default)]
    pub networks: BTreeMap<String, Spanned<RawNetwork>>,
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
    pub extra_commands: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A network as written: a list, or a map of `include` and `except`.
#[derive(Debug, Default)]
pub struct RawNetwork {
    /// The list, or `include`.
    pub include: Vec<Spanned<String>>,
    /// `except`, if given.
    pub except: Option<Vec<Spanned<String>>>,
}

struct NetworkVisitor;

impl<'de> serde::de::Visitor<'de> for NetworkVisitor {
    type Value = RawNetwork;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of networks, or a map of include and except")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawNetwork, A::Error> {
        let mut include = Vec::new();
        while let Some(s) = seq.next_element::<Spanned<String>>()? {
            include.push(s);
        }
        Ok(RawNetwork {
            include,
            except: None,
        })
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawNetwork, A::Error> {
        let mut n = RawNetwork::default();
        while let Some(k) = map.next_key::<String>()? {
            match k.as_str() {
                "include" => n.include = map.next_value()?,
                "except" => n.except = Some(map.next_value()?),
                other => {
                    return Err(serde::de::Error::unknown_field(
                        other,
                        &["include", "except"],
                    ))
                }
            }
        }
        Ok(n)
    }
}

impl<'de> Deserialize<'de> for RawNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NetworkVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<Spanned<String>>,
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

impl Kind {
    /// The kind as the rules spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Explicit => "explicit",
            Kind::UserAtHost => "user-at-host",
            Kind::Transparent => "transparent",
            Kind::Reverse => "reverse",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<Spanned<String>>,
    pub listen: Option<Spanned<String>>,
    pub kind: Option<Spanned<Kind>>,
    pub upstream: Option<Spanned<String>>,
    pub servers: Option<Spanned<Vec<Spanned<String>>>>,
    pub advertise: Option<Spanned<Vec<RawAdvertise>>>,
    pub server_mode: Option<Spanned<ServerDataMode>>,
    pub tproxy: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdvertise {
    pub clients: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
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
    pub kernel: Option<Spanned<RawKernel>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKernel {
    pub table: Option<Spanned<String>>,
    pub mark: Option<Spanned<String>>,
    pub mark_mask: Option<Spanned<String>>,
    pub log_group: Option<Spanned<String>>,
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
    pub bounce_protection: Option<Spanned<bool>>,
    pub refuse_low_ports: Option<Spanned<bool>>,
    pub check_data_peer: Option<Spanned<bool>>,
    pub trust_passive_address: Option<Spanned<bool>>,
    pub tls: Option<Spanned<TlsPolicy>>,
}

/// A string or a list of strings, with the position of the value and of
/// each item in a list.
#[derive(Debug)]
pub struct OneOrMany(pub Spanned<Vec<Item>>);

/// One string of a [`OneOrMany`]: a list's item with its own position,
/// or the single string, which has the position of the whole value.
#[derive(Debug)]
pub enum Item {
    /// An item of a list.
    Listed(Spanned<String>),
    /// The value was this one string.
    Single(String),
}

struct ListVisitor;

impl<'de> serde::de::Visitor<'de> for ListVisitor {
    type Value = Vec<Item>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string or a list of strings")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(vec![Item::Single(v.to_string())])
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<Spanned<String>>()? {
            out.push(Item::Listed(s));
        }
        Ok(out)
    }
}

/// The list inside [`OneOrMany`].
#[derive(Debug)]
pub struct StringList(pub Vec<Item>);

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
    /// Each item with its position.
    pub fn items(&self) -> Vec<Spanned<String>> {
        let s = &self.0;
        s.value
            .iter()
            .map(|v| match v {
                Item::Listed(i) => i.clone(),
                Item::Single(v) => Spanned::new(v.clone(), s.referenced, s.defined),
            })
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
    pub action: Option<Spanned<RawAction>>,
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
