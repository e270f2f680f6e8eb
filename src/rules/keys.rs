//! Every key of the rules file: its shape, whether it is required, its
//! default and what it means. `ftpalg check` walks a file against this
//! table (`structure.rs`) and `ftpalg-rules(5)` is written from it
//! (`manual.rs`), so the manual lists exactly the keys `check` accepts.
//!
//! Keep in step with the structs in `schema.rs`: a key missing here is
//! reported as unknown; `every_key_reaches_the_typed_file`
//! (`tests/keys.rs`) fails for one missing there. In `doc`, `word` is set
//! in bold.

use super::schema::Kind;

/// What a value in the file must look like.
#[derive(Debug)]
pub enum Shape {
    /// A map with these keys.
    Map(&'static [Key]),
    /// A map from names the operator picks to values of one shape.
    Named(&'static Shape),
    /// A list of values of one shape.
    List(&'static Shape),
    /// A string, or a list of strings.
    OneOrMany,
    /// Any scalar that reads as text (addresses, durations, names).
    Text,
    /// `true` or `false`.
    Bool,
    /// A whole number from 0 up.
    Count,
    /// One of these words.
    Word(&'static [&'static str]),
    /// The first of these shapes whose kind (map, list, scalar) the value
    /// has.
    Either(&'static [Shape]),
}

/// One key of a map.
#[derive(Debug)]
pub struct Key {
    /// The key as written.
    pub name: &'static str,
    /// What its value looks like.
    pub shape: Shape,
    /// Whether the map must have it.
    pub required: bool,
    /// Its default, as written in the file; empty for none.
    pub default: &'static str,
    /// What it means, for the manual.
    pub doc: &'static str,
}

const fn key(name: &'static str, shape: Shape, default: &'static str, doc: &'static str) -> Key {
    Key {
        name,
        shape,
        required: false,
        default,
        doc,
    }
}

const fn required(name: &'static str, shape: Shape, doc: &'static str) -> Key {
    Key {
        name,
        shape,
        required: true,
        default: "",
        doc,
    }
}

const SERVER_MODES: Shape = Shape::Word(&["same-as-client", "passive", "active", "auto"]);
const TEXTS: Shape = Shape::List(&Shape::Text);

/// The listener keys only some kinds read, from what the gateway reads:
/// `upstream` in `fixed_upstream` (`proxy/control/route.rs`); `servers`
/// for a server the client names (`route.rs`) or the original destination
/// (`proxy/control.rs`; for `explicit` and `reverse` the upstream is
/// fixed, so the list could only refuse every client or none); `advertise`
/// for `Kind::Reverse` only (`proxy/control.rs`); `tproxy` in
/// `fixed_upstream`, the kernel path's exact flows
/// (`proxy/control/forward.rs`) and the bind, which only a transparent
/// listener's connections reach. The others are read for every kind.
/// With each, what to tell a listener of another kind.
pub const READ_BY: &[(&str, &[Kind], &str)] = &[
    (
        "upstream",
        &[Kind::Explicit, Kind::Reverse],
        "remove it: this kind finds the server itself",
    ),
    (
        "servers",
        &[Kind::UserAtHost, Kind::Transparent],
        "remove it: every client goes to the upstream; a rule with match: { client: ... } refuses clients",
    ),
    (
        "advertise",
        &[Kind::Reverse],
        "remove it, or make the listener kind: reverse; only a reverse listener tells clients another address",
    ),
    (
        "tproxy",
        &[Kind::Transparent],
        "remove it: only a transparent listener is reached through TPROXY",
    ),
];

const LISTENER: Shape = Shape::Map(&[
    required(
        "name",
        Shape::Text,
        "Unique; names the listener in logs, in rules (`match: { listener: ... }`) and across reloads.",
    ),
    required(
        "listen",
        Shape::Text,
        "ADDRESS:PORT, e.g. `127.0.0.1:2121` or `\"[::]:21\"` (quote IPv6). No other listener and not the metrics endpoint may hold that port on that address (a wildcard holds it on every address of its family, `[::]` on IPv4 too), and it may not lie in a data port range.",
    ),
    required(
        "kind",
        Shape::Word(&["explicit", "user-at-host", "transparent", "reverse"]),
        "How the server is found: `explicit`, every client goes to `upstream`; `user-at-host`, clients log in as `USER name@host[:port]`; `transparent`, nftables redirects the clients' connections and their original destination is the server; `reverse`, in front of a server behind NAT.",
    ),
    key(
        "upstream",
        Shape::Text,
        "",
        "The server's ADDRESS:PORT; required for `explicit` and `reverse`.",
    ),
    key(
        "servers",
        TEXTS,
        "",
        "The networks clients may reach. Required for `user-at-host`: without it a client could make the gateway connect anywhere it can; a `transparent` listener without it lets clients reach any server. `servers: [routable]` is what a gateway to the internet wants.",
    ),
    key(
        "advertise",
        Shape::List(&Shape::Map(&[
            required("clients", Shape::Text, "A network of clients."),
            required(
                "address",
                Shape::Text,
                "The address they are told to connect to for data.",
            ),
        ])),
        "",
        "A list of `{ clients: NETWORK, address: ADDRESS }`: the address told to each client network in passive replies, first match wins (a LAN client gets the inside address, the internet the public one).",
    ),
    key(
        "server_mode",
        SERVER_MODES,
        "data.server_mode",
        "The data mode towards servers for this listener.",
    ),
    key(
        "tproxy",
        Shape::Bool,
        "false",
        "The listener takes the connections nftables diverts with TPROXY (IP_TRANSPARENT, CAP_NET_ADMIN) instead of redirect.",
    ),
]);

/// A network: a list, or its list under `include` with `except`.
const NETWORK: Shape = Shape::Either(&[
    TEXTS,
    Shape::Map(&[
        required(
            "include",
            TEXTS,
            "CIDRs and network names, as in the list form.",
        ),
        key(
            "except",
            TEXTS,
            "",
            "CIDRs and names of networks without an `except` of their own, taken out of what `include` holds.",
        ),
    ]),
]);

const DATA: Shape = Shape::Map(&[
    key(
        "server_mode",
        SERVER_MODES,
        "same-as-client",
        "Towards servers: `same-as-client`; `passive` (PASV/EPSV); `active` (PORT/EPRT); or `auto`, passive first, and active for the rest of the session (and ten minutes for that server) when the server's passive port does not answer within `passive_probe_timeout`. The client side always follows the client.",
    ),
    key(
        "client_ports",
        Shape::Text,
        "40000-40999",
        "FIRST-LAST: the ports the gateway listens on for clients (their passive mode).",
    ),
    key(
        "server_ports",
        Shape::Text,
        "41000-41999",
        "FIRST-LAST: the ports the gateway listens on for servers (active mode towards them); must not overlap `client_ports`.",
    ),
    key(
        "pinhole_timeout",
        Shape::Text,
        "30s",
        "How long a pinhole waits for its one connection; at most `5m`.",
    ),
    key(
        "passive_probe_timeout",
        Shape::Text,
        "3s",
        "`auto` mode's patience with a server's passive port.",
    ),
    key(
        "path",
        Shape::Word(&["relay", "kernel", "auto"]),
        "relay",
        "Who carries the data bytes: `relay`, ftpalg copies them; `kernel`, pinholes in ftpalg's own nftables table forward the transfers whose two sides use the same direction and mode conversions stay on the relay (CAP_NET_ADMIN); `auto`, kernel when ftpalg can open its table at start, else relay.",
    ),
    key(
        "kernel",
        Shape::Map(&[
            key(
                "table",
                Shape::Text,
                "ftpalg_data",
                "The kernel path's table in the `inet` family, replaced at start: a name nothing else uses (not `ftpalg` or `ftpalg_tproxy`, the tables of the shipped nftables files).",
            ),
            key(
                "mark",
                Shape::Text,
                "0x46540000",
                "The conntrack mark, under `mark_mask`, of every connection the kernel path admits, decimal or 0x hex: not 0, inside the mask, and not the mask's lowest bit alone.",
            ),
            key(
                "mark_mask",
                Shape::Text,
                "0xffff0000",
                "The mark bits ftpalg owns; it keeps the others as it finds them.",
            ),
            key(
                "log_group",
                Shape::Text,
                "18004",
                "The nflog group through which ftpalg hears of the strangers the kernel turns away at a pinhole, 0 to 65535, or `off`.",
            ),
        ]),
        "",
        "The kernel path's table, mark and log group, read with `path: kernel` or `auto`. The operator's default-drop forward (and input) chains accept the mark: `ftpalg check --explain` prints the exact line, e.g. `ct mark and 0xffff0000 == 0x46540000 accept`.",
    ),
]);

const LIMITS: Shape = Shape::Map(&[
    key(
        "sessions",
        Shape::Count,
        "1000",
        "Concurrent sessions in total. At this limit or the next, the session that has not logged in and has been silent longest is closed with 421 to make room for a newcomer; logged-in sessions never are.",
    ),
    key(
        "sessions_per_client",
        Shape::Count,
        "20",
        "Concurrent sessions per client address.",
    ),
    key(
        "login_timeout",
        Shape::Text,
        "30s",
        "A connection that has not logged in this long after it was accepted is closed with 421.",
    ),
    key(
        "control_idle_timeout",
        Shape::Text,
        "900s",
        "An idle control connection is closed with 421, never while a transfer runs.",
    ),
    key(
        "transfer_idle_timeout",
        Shape::Text,
        "300s",
        "A data connection silent both ways this long is reset.",
    ),
    key(
        "connect_timeout",
        Shape::Text,
        "10s",
        "Connecting to servers and to active-mode clients.",
    ),
    key(
        "max_line",
        Shape::Count,
        "2048",
        "The longest control line, 512 to 65536; longer lines get 500.",
    ),
    key(
        "bandwidth_per_session",
        Shape::Text,
        "",
        "A cap per data connection and direction, e.g. `10MiB/s`; applied by the relay only, so refused with `data.path: kernel` or `auto`.",
    ),
    key(
        "control_keepalive",
        Shape::Text,
        "60s",
        "TCP keepalive on both control connections, so that a NAT or firewall on the way does not forget one left idle by a long transfer: the first probe after this much silence, then every third of it; `off` turns it off. Keep it below the shortest idle timeout on either path.",
    ),
    key(
        "shutdown_grace",
        Shape::Text,
        "the pinhole timeout, at least 30s",
        "How long a stop (SIGTERM, `systemctl stop` or `restart`, a package upgrade) waits for running transfers before it resets them; new sessions are refused from the start of the stop. At most 24h; ftpalg extends systemd's stop timeout while it waits.",
    ),
]);

const SECURITY: Shape = Shape::Map(&[
    key(
        "bounce_protection",
        Shape::Bool,
        "true",
        "PORT/EPRT must name the client's own address. Off, servers can be made to connect to third parties (FTP bounce, RFC 2577).",
    ),
    key(
        "refuse_low_ports",
        Shape::Bool,
        "true",
        "PORT/EPRT may not name a port below 1024. Off, servers can be aimed at mail, ssh and other services.",
    ),
    key(
        "check_data_peer",
        Shape::Bool,
        "true",
        "A pinhole accepts only the expected peer. Off, whoever reaches its port first can steal or inject the transfer.",
    ),
    key(
        "trust_passive_address",
        Shape::Bool,
        "false",
        "Connect to the address in a server's 227 rather than the control connection's. On, a hostile server can aim the gateway at internal hosts.",
    ),
    key(
        "tls",
        Shape::Word(&["refuse", "passthrough"]),
        "refuse",
        "`refuse` answers AUTH TLS with 534, so clients continue in plain FTP; `passthrough` forwards it, and the session is then neither inspected nor given data channels by the gateway.",
    ),
]);

const RULE: Shape = Shape::Map(&[
    key(
        "name",
        Shape::Text,
        "rule N",
        "Unique; denials are logged and counted by it.",
    ),
    key(
        "match",
        Shape::Map(&[
            key(
                "client",
                Shape::OneOrMany,
                "",
                "The client's address is in one of these networks.",
            ),
            key(
                "server",
                Shape::OneOrMany,
                "",
                "The server's address is in one of these networks.",
            ),
            key(
                "user",
                Shape::OneOrMany,
                "",
                "The user name matches one of these patterns (`*` and `?`, ASCII case ignored; `anonymous` and `ftp` are the same user): the user the server accepted once logged in, the name proposed before.",
            ),
            key(
                "command",
                Shape::OneOrMany,
                "",
                "Verbs in upper case, or the classes `write` (STOR STOU APPE DELE RNFR RNTO MKD XMKD RMD XRMD SITE MFMT MFCT MFF) and `transfer` (RETR STOR STOU APPE LIST NLST MLSD). A verb ftpalg does not know (see EXTRA_COMMANDS) is refused.",
            ),
            key(
                "data_mode",
                Shape::Text,
                "",
                "`active` (PORT, EPRT, LPRT) or `passive` (PASV, EPSV, LPSV).",
            ),
            key("listener", Shape::OneOrMany, "", "Listener names."),
        ]),
        "",
        "What the rule matches: every key given must hold, each a string or a list; a key left out matches anything, an empty list nothing (refused).",
    ),
    required(
        "action",
        Shape::Word(&["allow", "deny"]),
        "What a match does.",
    ),
    key(
        "reply",
        Shape::Text,
        "550 Denied by policy (NAME).",
        "For deny: the reply, a 4xx or 5xx code, a space and a text, e.g. `\"550 Read-only.\"`.",
    ),
]);

const METRICS: Shape = Shape::Map(&[
    required(
        "listen",
        Shape::Text,
        "ADDRESS:PORT where `GET /metrics` answers Prometheus text (sessions, transfers, bytes, denials, pinholes, reloads, transfer setup time, build), `GET /healthz` answers ok, and `GET /status` and `/status.json` list the live sessions (user names, client addresses, file names; what clients sent is escaped). Bound at start only. `/metrics` and `/healthz` have no authentication: keep the endpoint on loopback or a management address. Idle peers cannot delay a probe: a request head must come within 1 s, `/healthz` needs no render slot, and a full endpoint answers 503 at once.",
    ),
    key(
        "status_token_file",
        Shape::Text,
        "",
        "The absolute path of a file holding one line, the bearer token (at least 16 characters of A-Z a-z 0-9 - . _ ~ + /) that `/status` and `/status.json` then ask for in `Authorization: Bearer`, answering 401 without it. Read at start and at every reload; `ftpalg check` reports a missing or weak token and warns when any user may read the file. Without it, `ftpalg check` warns when `listen` is beyond loopback.",
    ),
]);

const RUN_AS: Shape = Shape::Map(&[
    key(
        "user",
        Shape::Text,
        "",
        "Started as root, ftpalg binds its listeners and then runs as this user (a name or uid, which must exist), keeping only the capabilities its rules need; `ftpalg run --user` overrides it.",
    ),
    key(
        "group",
        Shape::Text,
        "the user's primary group",
        "The group (a name or gid, which must exist); `--group` overrides it.",
    ),
]);

/// The whole file.
pub(super) const TOP: Shape = Shape::Map(&[
    required(
        "listeners",
        Shape::List(&LISTENER),
        "Where ftpalg listens and how each listener finds the FTP server: a list of at least one map of the keys below.",
    ),
    key(
        "networks",
        Shape::Named(&NETWORK),
        "",
        "Names for sets of networks, used wherever a network is expected. A network is a list of CIDRs (a bare address is one host) and network names, built in or defined in the file; or a map of the keys below. A literal CIDR may stand wherever a name may.",
    ),
    key(
        "data",
        DATA,
        "",
        "The data channels: the ports the gateway opens and who carries the bytes.",
    ),
    key(
        "limits",
        LIMITS,
        "",
        "Sessions, deadlines and sizes. Durations take ms, s, m or h; a bare number is seconds.",
    ),
    key(
        "security",
        SECURITY,
        "",
        "Switches, all safe by default; `ftpalg check` warns for each one set against its default, naming the risk.",
    ),
    key(
        "rules",
        Shape::List(&RULE),
        "",
        "Access rules: a list; the first rule whose match holds decides, and a command no rule matches is allowed.",
    ),
    key(
        "extra_commands",
        TEXTS,
        "",
        "Verbs a server knows that ftpalg does not, e.g. `[XCRC]`, which rules may then name: a verb in a rule that is neither here nor known to ftpalg (below) is refused as the typo it usually is (`STORE` for STOR).",
    ),
    key(
        "metrics",
        METRICS,
        "",
        "The HTTP endpoint for metrics, health and status.",
    ),
    key(
        "run_as",
        RUN_AS,
        "",
        "The account the gateway runs as once its listeners are bound.",
    ),
]);

/// Every key's path (`data.kernel.mark`, `rules.match.client`), lists
/// and named maps left out of the path, in the order of the table.
pub fn paths() -> Vec<String> {
    let mut out = Vec::new();
    walk(&TOP, "", &mut out);
    out
}

fn walk(shape: &Shape, prefix: &str, out: &mut Vec<String>) {
    match shape {
        Shape::Map(keys) => {
            for k in *keys {
                let path = format!("{prefix}{}", k.name);
                out.push(path.clone());
                walk(&k.shape, &format!("{path}."), out);
            }
        }
        Shape::Named(s) | Shape::List(s) => walk(s, prefix, out),
        Shape::Either(alternatives) => {
            for s in *alternatives {
                walk(s, prefix, out);
            }
        }
        _ => {}
    }
}
