//! The SSRF guard: the one way Gatehouse fetches a URL that a tenant supplied (an upstream MCP
//! server, an OAuth token endpoint of an upstream, a client metadata document, an OIDC discovery
//! document).
//!
//! What it enforces, at the moment each connection is made (not only when a URL is first
//! validated, so a DNS answer that changes between validation and use gains nothing):
//!
//! - **https** unless `egress.allow_http`;
//! - **public destinations only**: every address a host name resolves to is classified
//!   ([`ip::classify`]); if any of them is loopback, private, link-local, shared (CGNAT),
//!   a cloud metadata service, unspecified, multicast, broadcast, documentation or reserved, the
//!   name is refused as a whole. IPv6 forms carrying an IPv4 address are judged by that IPv4
//!   address. `egress.allow_private_networks` opens loopback/private/link-local/shared space;
//!   `egress.allow_hosts` exempts exact host names (or IP literals) from the address check;
//! - **DNS resolved once, connection pinned**: the client's resolver returns only the addresses
//!   it checked, and the connector connects to exactly those;
//! - **IP literals** (`http://2130706433/`, `http://[::ffff:127.0.0.1]/`, which never reach a
//!   resolver) are checked by a connector layer that sees every connection's destination;
//! - **redirects re-checked hop by hop** (scheme, literal addresses, then the resolver and the
//!   connector again), at most `egress.max_redirects`; the credentialed client follows redirects
//!   only within the same origin, so a server's credential never travels to another host;
//! - **timeouts** from `egress.request_timeout_ms`;
//! - **bounded reads** ([`bounded`]): bodies no larger than a limit (`egress.max_document_bytes`
//!   for documents: token responses, discovery documents, key sets, client metadata) and within
//!   the timeout, SSE streams with no event larger than a limit, never buffered beyond it;
//! - **generic errors**: [`EgressError`] says what kind of problem it was, never what an internal
//!   host answered, which address a name resolved to, or the underlying error text.
//!
//! ```no_run
//! # async fn demo(cfg: &gatehouse_core::config::EgressConfig) -> Result<(), Box<dyn std::error::Error>> {
//! let egress = gatehouse_egress::Egress::from_config(cfg)?;
//! let url = url::Url::parse("https://example.com/.well-known/openid-configuration")?;
//! egress.check_url(&url).await?; // friendly validation up front
//! let response = egress.client().get(url).send().await.map_err(|e| gatehouse_egress::EgressError::from_reqwest(&e))?;
//! # Ok(()) }
//! ```

pub mod bounded;
pub mod ip;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use gatehouse_core::config::EgressConfig;
use reqwest::redirect;
use url::{Host, Url};

pub use bounded::{EventTooLarge, ReadError, limit_sse_events, read_body};
pub use ip::{AddressClass, classify};

/// Why a request was refused by the guard. Travels inside reqwest's error chain (from the
/// resolver, the connector layer or the redirect policy) and is recovered by
/// [`EgressError::from_reqwest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by the egress guard: {0:?}")]
struct Refusal(EgressError);

/// What went wrong with a guarded fetch, in words safe to show to the tenant who supplied the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("the URL is not a valid absolute http(s) URL with a host")]
    InvalidUrl,
    #[error("the URL must use https")]
    HttpsRequired,
    #[error(
        "the URL's destination is not allowed (loopback, private, link-local, metadata and reserved addresses are refused)"
    )]
    DestinationNotAllowed,
    #[error("the host name could not be resolved")]
    Unresolvable,
    #[error("the server redirected too many times, or to another origin")]
    RedirectRefused,
    #[error("the server did not answer in time")]
    Timeout,
    #[error("the server could not be reached")]
    Unreachable,
}

impl EgressError {
    /// Classifies a reqwest error from a guarded client. Logs the underlying cause (without the
    /// URL, which may carry secrets) at debug level; returns only the kind.
    pub fn from_reqwest(err: &reqwest::Error) -> EgressError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = source {
            if let Some(refusal) = e.downcast_ref::<Refusal>() {
                return refusal.0;
            }
            source = e.source();
        }
        tracing::debug!(error = %DisplayChain(err), "egress request failed");
        if err.is_builder() {
            // `https_only` refuses plain http before anything is sent.
            return match err.url().map(|u| u.scheme()) {
                Some("http") => EgressError::HttpsRequired,
                _ => EgressError::InvalidUrl,
            };
        }
        if err.is_timeout() {
            EgressError::Timeout
        } else if err.is_redirect() {
            EgressError::RedirectRefused
        } else {
            EgressError::Unreachable
        }
    }

    /// A short stable label, for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EgressError::InvalidUrl => "invalid_url",
            EgressError::HttpsRequired => "https_required",
            EgressError::DestinationNotAllowed => "destination_not_allowed",
            EgressError::Unresolvable => "unresolvable",
            EgressError::RedirectRefused => "redirect_refused",
            EgressError::Timeout => "timeout",
            EgressError::Unreachable => "unreachable",
        }
    }
}

/// Formats an error's cause chain without URLs (reqwest puts the URL in its own Display).
struct DisplayChain<'a>(&'a reqwest::Error);

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.0.is_timeout() {
            "timeout"
        } else if self.0.is_connect() {
            "connect"
        } else if self.0.is_redirect() {
            "redirect"
        } else if self.0.is_body() || self.0.is_decode() {
            "body"
        } else {
            "request"
        };
        write!(f, "{kind}")?;
        let mut source = std::error::Error::source(self.0);
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// Could not build the HTTP clients (TLS backend initialisation).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the egress HTTP client: {0}")]
pub struct EgressSetupError(#[source] reqwest::Error);

/// How a guarded client treats redirects. Every hop is re-checked either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectMode {
    /// Follow redirects to any allowed destination (requests that carry no credential).
    AnyOrigin,
    /// Follow redirects only within the origin of the first request, so that a credential sent
    /// with it never reaches another host.
    SameOrigin,
}

/// Resolves host names to addresses. The system resolver in production.
trait HostResolver: Send + Sync + 'static {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The operating system's resolver (getaddrinfo: /etc/hosts, then DNS).
struct SystemResolver;

impl HostResolver for SystemResolver {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// The policy, shared by the resolver, the connector layer and the redirect policy.
struct Guard {
    allow_http: bool,
    allow_private_networks: bool,
    /// Lower-case host names without a trailing dot, and IP literals in canonical form.
    allow_hosts: HashSet<String>,
    max_redirects: usize,
    resolver: Box<dyn HostResolver>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("allow_http", &self.allow_http)
            .field("allow_private_networks", &self.allow_private_networks)
            .field("allow_hosts", &self.allow_hosts)
            .field("max_redirects", &self.max_redirects)
            .finish()
    }
}

fn normalize_host(host: &str) -> String {
    let trimmed = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&trimmed);
    match unbracketed.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => unbracketed.to_owned(),
    }
}

impl Guard {
    fn host_exempt(&self, host: &str) -> bool {
        !self.allow_hosts.is_empty() && self.allow_hosts.contains(&normalize_host(host))
    }

    fn address_allowed(&self, ip: IpAddr) -> Result<(), AddressClass> {
        let class = classify(ip);
        if class == AddressClass::Public || (self.allow_private_networks && class.is_private_network()) {
            Ok(())
        } else {
            Err(class)
        }
    }

    /// Everything that can be decided from the URL alone: scheme, host present, IP literals.
    fn check_static(&self, url: &Url) -> Result<(), EgressError> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(EgressError::HttpsRequired),
            _ => return Err(EgressError::InvalidUrl),
        }
        match url.host() {
            None => Err(EgressError::InvalidUrl),
            Some(Host::Domain("")) => Err(EgressError::InvalidUrl),
            Some(Host::Domain(_)) => Ok(()),
            Some(Host::Ipv4(v4)) => self.check_literal(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.check_literal(IpAddr::V6(v6)),
        }
    }

    fn check_literal(&self, ip: IpAddr) -> Result<(), EgressError> {
        if self.host_exempt(&ip.to_string()) {
            return Ok(());
        }
        self.address_allowed(ip).map_err(|class| {
            refused(class);
            EgressError::DestinationNotAllowed
        })
    }

    /// Resolves `host` and checks every address; returns the addresses to connect to.
    async fn resolve_checked(&self, host: &str) -> Result<Vec<IpAddr>, EgressError> {
        // A name that is itself an IP literal (hyper strips brackets) is checked as a literal.
        if let Ok(ip) = normalize_host(host).parse::<IpAddr>() {
            self.check_literal(ip)?;
            return Ok(vec![ip]);
        }
        let addrs = self
            .resolver
            .lookup(host.to_owned())
            .await
            .map_err(|_| EgressError::Unresolvable)?;
        if addrs.is_empty() {
            return Err(EgressError::Unresolvable);
        }
        if self.host_exempt(host) {
            return Ok(addrs);
        }
        for ip in &addrs {
            if let Err(class) = self.address_allowed(*ip) {
                refused(class);
                return Err(EgressError::DestinationNotAllowed);
            }
        }
        Ok(addrs)
    }

    /// The connector's check: the destination of a connection about to be opened, as reqwest
    /// renders it (`Unnameable(<uri>)`). Anything unparsable is refused (fail closed).
    fn check_connect_target(&self, rendered: &str) -> Result<(), EgressError> {
        let uri = rendered
            .find('(')
            .and_then(|open| rendered.rfind(')').map(|close| (open, close)))
            .filter(|(open, close)| open < close)
            .map(|(open, close)| &rendered[open + 1..close])
            .ok_or(EgressError::InvalidUrl)?;
        let url = Url::parse(uri).map_err(|_| EgressError::InvalidUrl)?;
        self.check_static(&url)
    }
}

fn refused(class: AddressClass) {
    metrics::counter!("gatehouse_egress_refused_total", "class" => class.as_str()).increment(1);
}

/// The guarded HTTP clients and URL checks, built once from configuration and cloned freely.
#[derive(Clone, Debug)]
pub struct Egress {
    guard: Arc<Guard>,
    timeout: Duration,
    max_document_bytes: usize,
    client: reqwest::Client,
    credentialed: reqwest::Client,
}

impl Egress {
    pub fn from_config(cfg: &EgressConfig) -> Result<Egress, EgressSetupError> {
        Self::with_resolver(cfg, Box::new(SystemResolver))
    }

    fn with_resolver(
        cfg: &EgressConfig,
        resolver: Box<dyn HostResolver>,
    ) -> Result<Egress, EgressSetupError> {
        let guard = Arc::new(Guard {
            allow_http: cfg.allow_http,
            allow_private_networks: cfg.allow_private_networks,
            allow_hosts: cfg
                .allow_hosts
                .iter()
                .map(|h| normalize_host(h))
                .filter(|h| !h.is_empty())
                .collect(),
            max_redirects: cfg.max_redirects,
            resolver,
        });
        let timeout = Duration::from_millis(cfg.request_timeout_ms.max(1));
        let build = |mode| {
            builder(&guard, timeout, mode)
                .timeout(timeout)
                .build()
                .map_err(EgressSetupError)
        };
        Ok(Egress {
            client: build(RedirectMode::AnyOrigin)?,
            credentialed: build(RedirectMode::SameOrigin)?,
            guard,
            timeout,
            max_document_bytes: cfg.max_document_bytes,
        })
    }

    /// A guarded client for requests that carry no credential (metadata and discovery documents).
    /// Follows allowed redirects to any origin.
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// A guarded client for requests that carry a credential (an upstream's token or header):
    /// redirects are followed only within the same origin.
    pub fn credentialed_client(&self) -> reqwest::Client {
        self.credentialed.clone()
    }

    /// A guarded client builder, for callers that need their own timeouts or headers (the
    /// dataplane's upstream calls). Sets the connect timeout; the total timeout is the caller's.
    pub fn client_builder(&self, redirects: RedirectMode) -> reqwest::ClientBuilder {
        builder(&self.guard, self.timeout, redirects)
    }

    /// Reads a document a tenant's server answered (a token response, a discovery document, a
    /// key set, a client metadata document): at most `egress.max_document_bytes`, within
    /// `egress.request_timeout_ms`.
    pub async fn read_document(&self, response: reqwest::Response) -> Result<bytes::Bytes, ReadError> {
        bounded::read_body(response, self.max_document_bytes, self.timeout).await
    }

    /// The configured timeout of one request (`egress.request_timeout_ms`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Checks what can be checked without the network: scheme and IP-literal hosts.
    pub fn check_url_syntax(&self, url: &Url) -> Result<(), EgressError> {
        self.guard.check_static(url)
    }

    /// Full check of a non-HTTP destination (`host:port`, e.g. a PostgreSQL backend) before use:
    /// the host, and every address its name resolves to now, as [`Egress::check_url`] checks a
    /// URL's.
    pub async fn check_host(&self, host: &str, port: u16) -> Result<(), EgressError> {
        let bracketed = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let probe =
            Url::parse(&format!("https://{bracketed}:{port}/")).map_err(|_| EgressError::InvalidUrl)?;
        self.check_url(&probe).await
    }

    /// Full check of a URL before use: scheme, host, and every address its name resolves to now.
    /// The guarded clients check again when they connect; this gives a clear error up front.
    pub async fn check_url(&self, url: &Url) -> Result<(), EgressError> {
        self.guard.check_static(url)?;
        if let Some(Host::Domain(domain)) = url.host() {
            tokio::time::timeout(self.timeout, self.guard.resolve_checked(domain))
                .await
                .map_err(|_| EgressError::Timeout)??;
        }
        Ok(())
    }
}

fn builder(guard: &Arc<Guard>, connect_timeout: Duration, mode: RedirectMode) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        // A proxy would resolve and connect on our behalf, out of the guard's sight.
        .no_proxy()
        .https_only(!guard.allow_http)
        .dns_resolver(Arc::new(GuardResolver(guard.clone())))
        .connector_layer(GuardLayer(guard.clone()))
        .redirect(redirect_policy(guard.clone(), mode))
        .connect_timeout(connect_timeout)
        .user_agent(concat!("Gatehouse/", env!("CARGO_PKG_VERSION")))
}

fn redirect_policy(guard: Arc<Guard>, mode: RedirectMode) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > guard.max_redirects {
            return attempt.error(Refusal(EgressError::RedirectRefused));
        }
        if mode == RedirectMode::SameOrigin
            && let Some(first) = attempt.previous().first()
            && first.origin() != attempt.url().origin()
        {
            return attempt.error(Refusal(EgressError::RedirectRefused));
        }
        match guard.check_static(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(Refusal(e)),
        }
    })
}

/// reqwest's DNS hook: resolve, check every address, hand over only what was checked.
struct GuardResolver(Arc<Guard>);

impl reqwest::dns::Resolve for GuardResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = guard
                .resolve_checked(&host)
                .await
                .map_err(|e| Box::new(Refusal(e)) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// A connector layer that sees the destination of every connection before it is opened. It is
/// what catches IP-literal hosts, which hyper connects to without asking the resolver.
#[derive(Clone)]
struct GuardLayer(Arc<Guard>);

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            inner,
            guard: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct GuardService<S> {
    inner: S,
    guard: Arc<Guard>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, R> tower_service::Service<R> for GuardService<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
    S::Error: From<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    S::Response: Send + 'static,
    R: fmt::Debug,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // reqwest does not expose the destination of a connection other than through Debug
        // (`Unnameable(<uri>)`); if that rendering ever changes, the parse fails and every
        // connection is refused, which the tests notice at once.
        match self.guard.check_connect_target(&format!("{request:?}")) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(e) => {
                let err: Box<dyn std::error::Error + Send + Sync> = Box::new(Refusal(e));
                Box::pin(std::future::ready(Err(S::Error::from(err))))
            }
        }
    }
}

#[cfg(test)]
mod tests;
