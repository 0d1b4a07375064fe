//! A2: redirect-URI near misses. Mutants are generated from each registered URI (case, slash,
//! dot segments, encoding, userinfo, port, query, fragment, scheme, IDN, host); none is accepted
//! except the exact URI and, for a loopback IP literal, its port variants, and no response is
//! ever a redirect to a URI that was not registered.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::fixture::*;
use crate::helpers::TestApp;

const CASES_PER_URI: u32 = 320;

/// One mutation: `(kind, position, choice)`.
type Op = (u8, u16, u8);

fn mutate(uri: &str, ops: &[Op]) -> String {
    let mut s = uri.to_owned();
    for &(kind, pos, choice) in ops {
        let chars: Vec<char> = s.chars().collect();
        let at = (pos as usize) % (chars.len() + 1);
        let scheme_end = s.find("://").map(|i| i + 3).unwrap_or(0);
        let host_end = s[scheme_end..]
            .find('/')
            .map(|i| i + scheme_end)
            .unwrap_or(s.len());
        s = match kind % 13 {
            // Flip the case of one letter.
            0 => chars
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == at % chars.len().max(1) {
                        if c.is_ascii_lowercase() {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        }
                    } else {
                        *c
                    }
                })
                .collect(),
            // Trailing slash added or last character dropped.
            1 => {
                if choice % 2 == 0 {
                    format!("{s}/")
                } else {
                    chars[..chars.len() - 1].iter().collect()
                }
            }
            // Dot segments.
            2 => {
                let seg = ["/./", "/../", "/x/../", "/%2e/", "/%2E%2E/", "//"][choice as usize % 6];
                let path_slash = s[host_end..].rfind('/').map(|i| i + host_end).unwrap_or(s.len());
                format!(
                    "{}{}{}",
                    &s[..path_slash],
                    seg,
                    s[path_slash..].trim_start_matches('/')
                )
            }
            // Percent-encode one character.
            3 => chars
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == at % chars.len().max(1) && i >= scheme_end {
                        format!("%{:02X}", *c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
            // Userinfo.
            4 => {
                let info = ["user@", "good@", "a:b@", "%40@"][choice as usize % 4];
                format!("{}{}{}", &s[..scheme_end], info, &s[scheme_end..])
            }
            // Port added or changed.
            5 => {
                let port =
                    [":443", ":80", ":8443", ":0", ":65536", ":054321", ":", ":1"][choice as usize % 8];
                let authority = &s[scheme_end..host_end];
                let host = authority
                    .rsplit_once(':')
                    .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
                    .map(|(h, _)| h)
                    .unwrap_or(authority);
                format!("{}{}{}{}", &s[..scheme_end], host, port, &s[host_end..])
            }
            // Query added.
            6 => format!(
                "{s}{}",
                ["?x=1", "?", "&a=b", "?redirect=https://evil.example"][choice as usize % 4]
            ),
            // Fragment added.
            7 => format!("{s}{}", ["#", "#frag", "#/evil"][choice as usize % 3]),
            // Scheme changed.
            8 => {
                let rest = &s[scheme_end..];
                let scheme = [
                    "http://",
                    "https://",
                    "HTTPS://",
                    "javascript://",
                    "ftp://",
                    "//",
                    "cursor://",
                ][choice as usize % 7];
                format!("{scheme}{rest}")
            }
            // IDN: a look-alike letter or a punycode label in the host.
            9 => {
                let host = &s[scheme_end..host_end];
                let alt = [
                    host.replacen('a', "\u{0430}", 1),
                    host.replacen('e', "\u{0435}", 1),
                    format!("xn--{host}"),
                    host.replacen('o', "0", 1),
                ][choice as usize % 4]
                    .clone();
                format!("{}{}{}", &s[..scheme_end], alt, &s[host_end..])
            }
            // Another host around or instead of the registered one.
            10 => {
                let host = &s[scheme_end..host_end];
                let alt = [
                    format!("{host}.evil.example"),
                    format!("evil.{host}"),
                    "evil.example".to_owned(),
                    format!("{host}@evil.example"),
                ][choice as usize % 4]
                    .clone();
                format!("{}{}{}", &s[..scheme_end], alt, &s[host_end..])
            }
            // Backslashes and control characters.
            11 => {
                let ins = ["\\", "%5C", "%0d%0a", " ", "\t", "%00"][choice as usize % 6];
                let mut out: String = chars[..at].iter().collect();
                out.push_str(ins);
                out.extend(&chars[at..]);
                out
            }
            // Path changed.
            _ => format!(
                "{}{}",
                &s[..host_end],
                ["/", "/callback2", "/CALLBACK", "/cb/extra", ""][choice as usize % 5]
            ),
        };
    }
    s
}

/// The oracle: what exact matching with the loopback port allowance accepts.
fn should_accept(registered: &str, candidate: &str) -> bool {
    if registered == candidate {
        return true;
    }
    for host in ["127.0.0.1", "[::1]"] {
        let prefix = format!("http://{host}");
        if let (Some(r), Some(c)) = (registered.strip_prefix(&prefix), candidate.strip_prefix(&prefix)) {
            let r_path = r.trim_start_matches(|ch: char| ch == ':' || ch.is_ascii_digit());
            let port = &c[..c.len()
                - c.trim_start_matches(|ch: char| ch == ':' || ch.is_ascii_digit())
                    .len()];
            let c_path = &c[port.len()..];
            let port_ok = port.is_empty()
                || port.strip_prefix(':').is_some_and(|p| {
                    !p.is_empty()
                        && !p.starts_with('0')
                        && p.len() <= 5
                        && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
                });
            return port_ok && r_path == c_path && c.len() > port.len() && c_path.starts_with('/');
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9700_a2_redirect_uri_mutants_never_accepted() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@a2.test", "a2").await;
    let web = ["https://app.example.com/oauth/callback"];
    let native = [
        "http://127.0.0.1/callback",
        "http://localhost:8976/cb",
        "cursor://anysphere.cursor-retrieval/oauth/callback",
    ];
    let (web_client, _) = register(&app, &web, "none").await;
    let (native_client, _) = register(&app, &native, "none").await;
    let mut browser = Browser::signed_in(&app, &fx.owner);
    let pkce = Pkce::new();
    // Consent once per client, so an accepted URI answers with a redirect straight away.
    for (client, uri) in [(&web_client, web[0]), (&native_client, native[0])] {
        browser
            .authorize(
                &authorize_path(client, uri, &pkce.challenge, &fx.resource, None, "s"),
                "",
            )
            .await;
    }
    let handle = tokio::runtime::Handle::current();
    let accepted_mutants = std::cell::Cell::new(0u32);
    let total = std::cell::Cell::new(0u32);
    for (client, registered_all, registered) in web
        .iter()
        .map(|u| (&web_client, &web[..], *u))
        .chain(native.iter().map(|u| (&native_client, &native[..], *u)))
    {
        let mut runner = TestRunner::new(Config {
            cases: CASES_PER_URI,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = prop::collection::vec((any::<u8>(), any::<u16>(), any::<u8>()), 1..4);
        let result = runner.run(&strategy, |ops| {
            let candidate = mutate(registered, &ops);
            let expected = registered_all.iter().any(|r| should_accept(r, &candidate));
            let path = authorize_path(client, &candidate, &pkce.challenge, &fx.resource, None, "s");
            let (status, location) = tokio::task::block_in_place(|| {
                handle.block_on(async {
                    let resp = browser.clone().get(&path).await;
                    (
                        resp.status().as_u16(),
                        resp.headers()
                            .get("location")
                            .map(|l| l.to_str().unwrap().to_owned()),
                    )
                })
            });
            total.set(total.get() + 1);
            if let Some(loc) = &location {
                let to_registered = registered_all
                    .iter()
                    .any(|r| loc.starts_with(&format!("{candidate}?")) && should_accept(r, &candidate));
                prop_assert!(
                    to_registered,
                    "redirected to a non-registered URI: {candidate:?} -> {loc}"
                );
            }
            if expected {
                accepted_mutants.set(accepted_mutants.get() + u32::from(candidate != registered));
                prop_assert_eq!(status, 302, "{:?} should be accepted", candidate);
            } else {
                prop_assert_eq!(status, 400, "{:?} must be refused", candidate);
                prop_assert!(location.is_none());
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{registered}: {e}");
        }
    }
    let (total, accepted) = (total.get(), accepted_mutants.get());
    assert!(total >= 4 * CASES_PER_URI, "only {total} mutants tried");
    eprintln!("{total} mutants tried, {accepted} accepted (loopback port variants only)");
}

#[test]
fn mutation_oracle_is_sane() {
    assert!(should_accept(
        "http://127.0.0.1/callback",
        "http://127.0.0.1:8080/callback"
    ));
    assert!(!should_accept(
        "http://127.0.0.1/callback",
        "http://127.0.0.1:0/callback"
    ));
    assert!(!should_accept(
        "http://127.0.0.1/callback",
        "http://127.0.0.1:8080/callback/"
    ));
    assert!(!should_accept(
        "http://localhost:8976/cb",
        "http://localhost:8977/cb"
    ));
    assert!(!should_accept("https://a/cb", "https://a/cb/"));
}
