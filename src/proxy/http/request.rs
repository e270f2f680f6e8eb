//! The little HTTP/1.1 the endpoint speaks: reading a request head within
//! a bound, the request line and the bearer token, and the replies.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest request head read.
pub(super) const MAX_REQUEST: usize = 8 * 1024;

/// Reads until the blank line that ends the head, [`MAX_REQUEST`] bytes,
/// or the peer's end of stream; the caller bounds the time.
pub(super) async fn read_head(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n.min(MAX_REQUEST - buf.len())]);
    }
    Ok(buf)
}

/// What the endpoint looks at in a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Request<'a> {
    /// `GET`, `HEAD`, ...
    pub method: &'a str,
    /// The target's path: a query string is left out (no page takes one,
    /// and scrapers and probes may add one).
    pub path: &'a str,
    /// The token of an `Authorization: Bearer` header, if one came.
    pub bearer: Option<&'a str>,
    /// Whether an `Authorization` header came at all.
    pub authorization: bool,
}

/// Parses a request head (`head` may hold bytes that are not UTF-8: they
/// were replaced).
pub(super) fn parse(head: &str) -> Request<'_> {
    let mut lines = head.split("\r\n");
    let mut words = lines.next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    let mut bearer = None;
    let mut authorization = false;
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("authorization") {
            authorization = true;
            // The scheme is case-insensitive (RFC 9110 11.1).
            bearer = value
                .trim()
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
        }
    }
    Request {
        method,
        path,
        bearer,
        authorization,
    }
}

/// A reply, always closing the connection.
#[derive(Debug)]
pub(super) struct Reply {
    /// Status line after `HTTP/1.1 `.
    pub status: &'static str,
    /// `Content-Type`.
    pub ctype: &'static str,
    /// More header lines, each ending in CRLF.
    pub extra: &'static str,
    /// The body.
    pub body: String,
}

impl Reply {
    pub(super) fn new(status: &'static str, ctype: &'static str, body: String) -> Reply {
        Reply {
            status,
            ctype,
            extra: "",
            body,
        }
    }

    /// Every render slot is taken.
    pub(super) fn busy() -> Reply {
        Reply {
            extra: "Retry-After: 1\r\n",
            ..Reply::new("503 Service Unavailable", "text/plain", "busy\n".into())
        }
    }

    /// `/status` without the right token; `tried` says one was presented.
    pub(super) fn unauthorized(tried: bool) -> Reply {
        Reply {
            extra: if tried {
                "WWW-Authenticate: Bearer realm=\"ftpalg status\", error=\"invalid_token\"\r\n"
            } else {
                "WWW-Authenticate: Bearer realm=\"ftpalg status\"\r\n"
            },
            ..Reply::new(
                "401 Unauthorized",
                "text/plain",
                "a bearer token is needed\n".into(),
            )
        }
    }

    /// A method other than `GET` and `HEAD`.
    pub(super) fn method_not_allowed() -> Reply {
        Reply {
            extra: "Allow: GET, HEAD\r\n",
            ..Reply::new(
                "405 Method Not Allowed",
                "text/plain",
                "GET or HEAD only\n".into(),
            )
        }
    }

    /// The bytes on the wire.
    pub(super) fn bytes(&self) -> Vec<u8> {
        let mut out = self.head();
        out.extend_from_slice(self.body.as_bytes());
        out
    }

    /// The bytes on the wire for a `HEAD` request: the same head as for a
    /// `GET`, `Content-Length` included, and no body (RFC 9110 9.3.2).
    pub(super) fn head(&self) -> Vec<u8> {
        format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
            self.status,
            self.ctype,
            self.body.len(),
            self.extra,
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_and_the_bearer_token() {
        let r = parse("GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n");
        assert_eq!(
            r,
            Request {
                method: "GET",
                path: "/status",
                bearer: Some("abc"),
                authorization: true,
            }
        );
        let r = parse("GET /status HTTP/1.1\r\nauthorization:   bEaReR   abc  \r\n\r\n");
        assert_eq!((r.bearer, r.authorization), (Some("abc"), true));
        let r = parse("GET /status HTTP/1.1\r\nAuthorization: Basic YWJj\r\n\r\n");
        assert_eq!((r.bearer, r.authorization), (None, true));
        let r = parse("GET /status HTTP/1.1\r\nX-Authorization: Bearer abc\r\n\r\n");
        assert_eq!((r.bearer, r.authorization), (None, false));
        // A header after the end of the head is the body, not a header.
        let r = parse("GET /status HTTP/1.1\r\n\r\nAuthorization: Bearer abc\r\n");
        assert_eq!((r.bearer, r.authorization), (None, false));
        let r = parse("");
        assert_eq!((r.method, r.path, r.bearer), ("", "", None));
    }

    #[test]
    fn a_query_string_is_not_part_of_the_path() {
        for (target, path) in [
            ("/metrics?name[]=ftpalg_build_info", "/metrics"),
            ("/healthz?", "/healthz"),
            ("/status.json?x=1?y=2", "/status.json"),
            ("/metrics", "/metrics"),
            ("/?a", "/"),
        ] {
            let head = format!("HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            let r = parse(&head);
            assert_eq!((r.method, r.path), ("HEAD", path), "{target}");
        }
    }

    #[test]
    fn replies_carry_their_headers() {
        let b = String::from_utf8(Reply::busy().bytes()).unwrap();
        assert!(b.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{b}");
        assert!(
            b.contains("\r\nRetry-After: 1\r\n") && b.ends_with("\r\n\r\nbusy\n"),
            "{b}"
        );
        let u = String::from_utf8(Reply::unauthorized(false).bytes()).unwrap();
        assert!(u.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{u}");
        assert!(u.contains("\r\nWWW-Authenticate: Bearer realm="), "{u}");
        assert!(String::from_utf8(Reply::unauthorized(true).bytes())
            .unwrap()
            .contains("error=\"invalid_token\""));
        let m = String::from_utf8(Reply::method_not_allowed().bytes()).unwrap();
        assert!(m.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{m}");
        assert!(m.contains("\r\nAllow: GET, HEAD\r\n"), "{m}");
    }

    #[test]
    fn a_head_reply_is_the_get_reply_without_its_body() {
        let r = Reply::new("200 OK", "text/plain", "ok\n".into());
        let head = String::from_utf8(r.head()).unwrap();
        let get = String::from_utf8(r.bytes()).unwrap();
        assert_eq!(get, format!("{head}ok\n"));
        assert!(head.contains("\r\nContent-Length: 3\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }
}
