//! Transactional email: verification, password reset, invitations and usage alerts.
//!
//! A [`Mailer`] is built once from [`MailConfig`]: over SMTP when `mail.smtp_url` is set
//! (`smtp://` = STARTTLS required, `smtps://` = implicit TLS, `?tls=none` = plain, for local test
//! servers only), or, in local mode without SMTP, as `.eml` files under `mail.file_dir` (the path
//! of each file is logged so a developer can open the link). Every message is a typed template
//! ([`Mail`]) rendered as text and HTML.
//!
//! The SMTP server's certificate is always verified: against the public web roots, plus the roots
//! in `mail.smtp_ca_file` when it is set (a relay whose certificate an internal CA signed).

mod templates;

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use url::Url;

use gatehouse_core::config::MailConfig;

pub use templates::{Mail, Rendered};

/// Why mail could not be configured or sent. Never contains the SMTP password.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail.smtp_url: {0}")]
    Config(String),
    #[error("mail.smtp_ca_file: {0}")]
    CaFile(String),
    #[error("invalid recipient address")]
    Recipient,
    #[error("could not build the message: {0}")]
    Build(String),
    #[error("SMTP delivery failed: {0}")]
    Smtp(String),
    #[error("writing the message file failed: {0}")]
    File(String),
}

/// How a message left: accepted by the SMTP server, or written to a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Smtp,
    File(PathBuf),
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File {
        transport: AsyncFileTransport<Tokio1Executor>,
        dir: PathBuf,
    },
}

/// Sends Gatehouse's email. Cheap to clone (the SMTP connection pool is shared).
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.transport {
            Transport::Smtp(_) => "smtp".to_owned(),
            Transport::File { dir, .. } => format!("file:{}", dir.display()),
        };
        f.debug_struct("Mailer")
            .field("transport", &kind)
            .field("from", &self.from.to_string())
            .finish()
    }
}

/// How long one SMTP exchange may take before delivery is reported as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

impl Mailer {
    /// Builds the mailer. Without `smtp_url`, mail goes to files, which is only allowed in local
    /// mode (`local = true`); configuration validation already refuses that in production.
    pub fn from_config(cfg: &MailConfig, local: bool) -> Result<Self, MailError> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|_| MailError::Config("mail.from is not a valid address".into()))?;
        let url = cfg.smtp_url.expose_secret();
        let transport = if url.is_empty() {
            if !local {
                return Err(MailError::Config(
                    "is required outside local mode (set GATEHOUSE_MAIL__SMTP_URL)".into(),
                ));
            }
            std::fs::create_dir_all(&cfg.file_dir).map_err(|e| {
                MailError::Config(format!(
                    "mail.file_dir {} cannot be created: {e}",
                    cfg.file_dir.display()
                ))
            })?;
            Transport::File {
                transport: AsyncFileTransport::new(&cfg.file_dir),
                dir: cfg.file_dir.clone(),
            }
        } else {
            let extra_roots = extra_roots(&cfg.smtp_ca_file)?;
            Transport::Smtp(smtp_transport(url, extra_roots.as_ref())?)
        };
        Ok(Self { transport, from })
    }

    /// Renders `mail` and sends it to `to`.
    pub async fn send(&self, to: &str, mail: &Mail) -> Result<Delivery, MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Recipient)?;
        let rendered = mail.render();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
            .map_err(|e| MailError::Build(e.to_string()))?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message)
                    .await
                    .map_err(|e| MailError::Smtp(e.to_string()))?;
                tracing::info!(
                    template = mail.template_name(),
                    "mail accepted by the SMTP server"
                );
                Ok(Delivery::Smtp)
            }
            Transport::File { transport, dir } => {
                let id = transport
                    .send(message)
                    .await
                    .map_err(|e| MailError::File(e.to_string()))?;
                let path = dir.join(format!("{id}.eml"));
                tracing::info!(
                    template = mail.template_name(),
                    path = %path.display(),
                    "mail written to a file (local mode without SMTP)"
                );
                Ok(Delivery::File(path))
            }
        }
    }
}

/// The PEM roots in `path` (none when the path is empty), checked now so that a bad file stops the
/// service at start rather than failing every mail later.
fn extra_roots(path: &std::path::Path) -> Result<Option<Certificate>, MailError> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let pem = std::fs::read(path)
        .map_err(|e| MailError::CaFile(format!("{} cannot be read: {e}", path.display())))?;
    // A file with no certificate block at all would parse as an empty list and add nothing.
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(MailError::CaFile(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    let roots = Certificate::from_pem(&pem)
        .map_err(|_| MailError::CaFile(format!("{} is not PEM certificates", path.display())))?;
    Ok(Some(roots))
}

/// The SMTP transport described by `url` (see the module docs for the accepted forms), trusting
/// `extra_roots` on top of the public roots.
fn smtp_transport(
    raw: &str,
    extra_roots: Option<&Certificate>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let url = Url::parse(raw).map_err(|_| MailError::Config("is not a valid URL".into()))?;
    let host = url
        .host_str()
        .ok_or_else(|| MailError::Config("has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tls_param = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let tls_params = || {
        let mut params = TlsParameters::builder(host.clone());
        if let Some(roots) = extra_roots {
            params = params.add_root_certificate(roots.clone());
        }
        params
            .build()
            .map_err(|e| MailError::Config(format!("TLS setup failed: {e}")))
    };
    let (tls, default_port) = match (url.scheme(), tls_param.as_deref()) {
        ("smtps", None | Some("wrapper")) => (Tls::Wrapper(tls_params()?), 465),
        ("smtp", None | Some("required") | Some("starttls")) => (Tls::Required(tls_params()?), 587),
        ("smtp", Some("opportunistic")) => (Tls::Opportunistic(tls_params()?), 587),
        ("smtp", Some("none")) => (Tls::None, 25),
        ("smtp" | "smtps", Some(other)) => {
            return Err(MailError::Config(format!(
                "unknown tls={other} (use required, opportunistic or none)"
            )));
        }
        (scheme, _) => {
            return Err(MailError::Config(format!(
                "scheme {scheme} is not supported (use smtp or smtps)"
            )));
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
        .port(url.port().unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));
    if !url.username().is_empty() {
        let user = gatehouse_core::config::decode_userinfo(url.username());
        let pass = gatehouse_core::config::decode_userinfo(url.password().unwrap_or_default());
        builder = builder.credentials(Credentials::new(user, pass));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, dir: PathBuf) -> MailConfig {
        MailConfig {
            smtp_url: url.to_owned().into(),
            smtp_ca_file: PathBuf::new(),
            from: "Gatehouse <no-reply@example.com>".into(),
            file_dir: dir,
        }
    }

    #[tokio::test]
    async fn smtp_urls_are_understood() {
        for ok in [
            "smtp://mail.example.com",
            "smtp://user:p%40ss@mail.example.com:587",
            "smtps://mail.example.com",
            "smtp://127.0.0.1:2525?tls=none",
            "smtp://mail.example.com?tls=opportunistic",
        ] {
            assert!(smtp_transport(ok, None).is_ok(), "{ok}");
        }
        for bad in [
            "http://mail.example.com",
            "smtp://mail.example.com?tls=maybe",
            "not a url",
            "smtp:///nohost",
        ] {
            assert!(smtp_transport(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn production_without_smtp_is_refused() {
        let dir = std::env::temp_dir().join("gatehouse-mail-unused");
        assert!(Mailer::from_config(&cfg("", dir), false).is_err());
    }

    #[tokio::test]
    async fn local_mode_writes_eml_files() {
        let dir = std::env::temp_dir().join(format!("gatehouse-mail-test-{}", std::process::id()));
        let mailer = Mailer::from_config(&cfg("", dir.clone()), true).unwrap();
        let delivery = mailer
            .send(
                "alice@example.com",
                &Mail::VerifyEmail {
                    link: "https://gatehouse.example/verify?token=abc".into(),
                },
            )
            .await
            .unwrap();
        let Delivery::File(path) = delivery else {
            panic!("expected a file delivery")
        };
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(content.contains("To: alice@example.com"), "{content}");
        assert!(content.contains("Subject: Verify your email"), "{content}");
        std::fs::remove_dir_all(dir).ok();
    }
}
