//! SMTP delivery against a real SMTP server (npm `smtp-server`, started by the test): over
//! STARTTLS and implicit TLS with a certificate an internal CA signed (`mail.smtp_ca_file`), and
//! the refusals that keep mail from going out unprotected: an untrusted certificate, and a server
//! that does not offer STARTTLS when TLS is required.

use std::path::PathBuf;

use gatehouse_core::config::MailConfig;
use gatehouse_mail::{Delivery, Mail, MailError, Mailer};
use gatehouse_test_support::node_tools::{MailServer, SmtpTls};
use gatehouse_test_support::tls::TestCa;

fn config(smtp_url: String, ca_file: Option<&PathBuf>) -> MailConfig {
    MailConfig {
        smtp_url: smtp_url.into(),
        smtp_ca_file: ca_file.cloned().unwrap_or_default(),
        from: "Gatehouse <no-reply@example.com>".into(),
        file_dir: std::env::temp_dir().join("gatehouse-mail-unused"),
    }
}

fn verify_mail() -> Mail {
    Mail::VerifyEmail {
        link: "https://gatehouse.example/verify?token=abc".into(),
    }
}

#[tokio::test]
async fn starttls_delivers_over_tls_to_a_server_the_configured_ca_signed() {
    let ca = TestCa::new();
    let server = MailServer::start_tls(SmtpTls::StartTls, &ca).await;
    // `smtp://` without `tls=`: STARTTLS required.
    let mailer = Mailer::from_config(&config(server.smtp_url(), Some(&ca.ca_pem)), false).unwrap();
    let delivery = mailer.send("alice@example.com", &verify_mail()).await.unwrap();
    assert_eq!(delivery, Delivery::Smtp);
    let mail = server.wait_for_nth("alice@example.com", 1).await;
    assert!(mail.secure, "the message must have travelled over TLS");
    assert_eq!(mail.subject(), "Verify your email for Gatehouse");
}

#[tokio::test]
async fn implicit_tls_delivers_to_a_server_the_configured_ca_signed() {
    let ca = TestCa::new();
    let server = MailServer::start_tls(SmtpTls::Implicit, &ca).await;
    let mailer = Mailer::from_config(&config(server.smtp_url(), Some(&ca.ca_pem)), false).unwrap();
    mailer.send("bob@example.com", &verify_mail()).await.unwrap();
    let mail = server.wait_for_nth("bob@example.com", 1).await;
    assert!(mail.secure);
}

#[tokio::test]
async fn a_certificate_no_configured_root_vouches_for_is_refused() {
    let ca = TestCa::new();
    for mode in [SmtpTls::StartTls, SmtpTls::Implicit] {
        let server = MailServer::start_tls(mode, &ca).await;
        // Only the public web roots: the test CA is not among them.
        let mailer = Mailer::from_config(&config(server.smtp_url(), None), false).unwrap();
        let sent = mailer.send("carol@example.com", &verify_mail()).await;
        assert!(
            matches!(sent, Err(MailError::Smtp(_))),
            "{mode:?}: an unverifiable certificate must stop delivery, got {sent:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(server.all_mails().is_empty(), "{mode:?}: nothing may arrive");
    }
}

#[tokio::test]
async fn required_tls_never_falls_back_to_plain_smtp() {
    let ca = TestCa::new();
    // A server that does not offer STARTTLS.
    let server = MailServer::start().await;
    for url in [
        format!("smtp://127.0.0.1:{}", server.port),
        format!("smtp://127.0.0.1:{}?tls=required", server.port),
    ] {
        let mailer = Mailer::from_config(&config(url.clone(), Some(&ca.ca_pem)), false).unwrap();
        let sent = mailer.send("dave@example.com", &verify_mail()).await;
        assert!(matches!(sent, Err(MailError::Smtp(_))), "{url}: {sent:?}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(server.all_mails().is_empty());
}

#[test]
fn a_ca_file_that_holds_no_certificate_stops_the_mailer_at_start() {
    let dir = std::env::temp_dir().join(format!("gatehouse-mail-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.pem");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for path in [&missing, &empty] {
        let err =
            Mailer::from_config(&config("smtp://mail.example.com".into(), Some(path)), false).unwrap_err();
        assert!(matches!(err, MailError::CaFile(_)), "{err:?}");
        assert!(err.to_string().starts_with("mail.smtp_ca_file: "), "{err}");
    }
    std::fs::remove_dir_all(dir).ok();
}
