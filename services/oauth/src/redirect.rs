//! Redirect URIs: what may be registered, and the exact-match rule of RFC 9700 §2.1 with the one
//! exception of RFC 8252 §7.3 (a loopback IP literal's port may vary).

/// Whether the client runs as a web application or natively on the user's device (RFC 7591
/// `application_type`, from OpenID Connect Dynamic Client Registration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppType {
    Web,
    Native,
}

impl AppType {
    pub fn as_str(self) -> &'static str {
        match self {
            AppType::Web => "web",
            AppType::Native => "native",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "web" => Some(AppType::Web),
            "native" => Some(AppType::Native),
            _ => None,
        }
    }
}

pub const MAX_LEN: usize = 2000;

/// Schemes that must never receive an authorization response.
const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
    "blob",
    "ftp",
    "ws",
    "wss",
    "mailto",
    "view-source",
];

/// Checks a redirect URI offered at registration. Web clients: https only. Native clients:
/// https, http on a loopback host, or a private-use scheme. Always: absolute, no fragment, no
/// userinfo, no dot segments, written in canonical form (so that exact matching is meaningful).
pub fn validate(uri: &str, app: AppType) -> Result<(), String> {
    if uri.is_empty() || uri.len() > MAX_LEN {
        return Err(format!("must be 1 to {MAX_LEN} characters"));
    }
    if !uri.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("must be printable ASCII without spaces".into());
    }
    if uri.contains('#') {
        return Err("must not contain a fragment".into());
    }
    let parsed = url::Url::parse(uri).map_err(|e| format!("is not an absolute URI ({e})"))?;
    let scheme = parsed.scheme();
    if !uri.starts_with(&format!("{scheme}:")) {
        return Err("the scheme must be written in lower case".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not contain user information".into());
    }
    let path = parsed.path();
    let lowered = uri.to_ascii_lowercase();
    if path.split('/').any(|seg| seg == "." || seg == "..")
        || lowered.contains("/./")
        || lowered.contains("/../")
        || lowered.contains("%2e")
        || lowered.contains("%2f")
        || lowered.contains("%5c")
        || uri.contains('\\')
    {
        return Err("must not contain dot segments or encoded path separators".into());
    }
    match scheme {
        "https" => {
            let host = parsed.host_str().ok_or("must have a host")?;
            if !uri.starts_with(&format!("https://{host}")) {
                return Err("the host must be written in canonical (lower case, punycode) form".into());
            }
            Ok(())
        }
        "http" => {
            if app == AppType::Web {
                return Err("web clients must use https redirect URIs".into());
            }
            match parsed.host() {
                Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
                Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
                Some(url::Host::Domain("localhost")) => Ok(()),
                _ => Err(
                    "http redirect URIs are allowed only on a loopback host (127.0.0.1, [::1], localhost)"
                        .into(),
                ),
            }
        }
        other => {
            if app == AppType::Web {
                return Err("web clients must use https redirect URIs".into());
            }
            if FORBIDDEN_SCHEMES.contains(&other) {
                return Err(format!("the scheme {other}: is not allowed"));
            }
            Ok(())
        }
    }
}

/// Whether the redirect URIs would all pass for a native client but not for a web client (no
/// https among them): how the type of a client that did not say is inferred.
pub fn looks_native(uris: &[String]) -> bool {
    !uris.is_empty() && uris.iter().all(|u| validate(u, AppType::Web).is_err())
}

/// The parts of `http://<loopback IP literal>[:port]<rest>`.
struct Loopback<'a> {
    host: &'a str,
    rest: &'a str,
}

fn loopback_parts(uri: &str) -> Option<Loopback<'_>> {
    let after = uri.strip_prefix("http://")?;
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (host, port) = if let Some(v6) = authority.strip_prefix("[::1]") {
        ("[::1]", v6)
    } else if let Some(v4) = authority.strip_prefix("127.0.0.1") {
        ("127.0.0.1", v4)
    } else {
        return None;
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':')?;
        let valid = !digits.is_empty()
            && digits.len() <= 5
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !valid {
            return None;
        }
    }
    Some(Loopback { host, rest })
}

/// Exact string comparison, except that for a registered `http` loopback IP literal the
/// requested port may differ (RFC 8252 §7.3). `localhost` gets no such allowance.
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (loopback_parts(registered), loopback_parts(requested)) {
        (Some(r), Some(q)) => r.host == q.host && r.rest == q.rest,
        _ => false,
    }
}

pub fn matches_any(registered: &[String], requested: &str) -> bool {
    registered.iter().any(|r| matches(r, requested))
}

/// `uri` with the parameters appended to its query (the fragment is excluded at registration).
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(uri.len() + 128);
    out.push_str(uri);
    let mut sep = if uri.contains('?') {
        if uri.ends_with('?') || uri.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    for (k, v) in params {
        out.push_str(sep);
        out.extend(url::form_urlencoded::byte_serialize(k.as_bytes()));
        out.push('=');
        out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
        sep = "&";
    }
    out
}

/// The CSP source that lets a form's redirect chain end at `uri`: its origin, or `scheme:`.
pub fn csp_source(uri: &str) -> Option<String> {
    let parsed = url::Url::parse(uri).ok()?;
    let source = match parsed.scheme() {
        "http" | "https" => parsed.origin().ascii_serialization(),
        other => format!("{other}:"),
    };
    // Never let a crafted value break out of the header.
    source
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":/.-[]+".contains(&b))
        .then_some(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        assert!(validate("https://app.example/cb", AppType::Web).is_ok());
        assert!(validate("http://app.example/cb", AppType::Web).is_err());
        assert!(validate("http://app.example/cb", AppType::Native).is_err());
        assert!(validate("http://127.0.0.1/cb", AppType::Native).is_ok());
        assert!(validate("http://localhost:3000/callback", AppType::Native).is_ok());
        assert!(validate("http://127.0.0.1/cb", AppType::Web).is_err());
        assert!(
            validate(
                "cursor://anysphere.cursor-retrieval/oauth/callback",
                AppType::Native
            )
            .is_ok()
        );
        assert!(validate("cursor://x/cb", AppType::Web).is_err());
        assert!(validate("javascript://x/%0aalert(1)", AppType::Native).is_err());
        assert!(validate("https://app.example/cb#frag", AppType::Web).is_err());
        assert!(validate("https://user@app.example/cb", AppType::Web).is_err());
        assert!(validate("https://app.example/a/../cb", AppType::Web).is_err());
        assert!(validate("HTTPS://app.example/cb", AppType::Web).is_err());
        assert!(validate("https://APP.example/cb", AppType::Web).is_err());
        assert!(validate("/cb", AppType::Web).is_err());
    }

    #[test]
    fn matching() {
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:54321/cb"));
        assert!(matches("http://127.0.0.1:1000/cb", "http://127.0.0.1:54321/cb"));
        assert!(matches("http://[::1]/cb", "http://[::1]:8080/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://localhost:54321/cb"));
        assert!(!matches("http://localhost/cb", "http://localhost:54321/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:054321/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:99999/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:80/cb/"));
        assert!(!matches("https://a.example/cb", "https://a.example:443/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb/"));
    }

    #[test]
    fn params_are_appended() {
        assert_eq!(
            with_params("https://a/cb", &[("code", "x y"), ("state", "s&")]),
            "https://a/cb?code=x+y&state=s%26"
        );
        assert_eq!(
            with_params("https://a/cb?k=v", &[("code", "c")]),
            "https://a/cb?k=v&code=c"
        );
    }
}
