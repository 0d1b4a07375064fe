//! The messages Gatehouse sends, each rendered as plain text and HTML. Every value interpolated
//! into HTML is escaped; links are only ever Gatehouse's own URLs.

use gatehouse_core::html::escape;

/// One message, with what it needs to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mail {
    /// Confirms the address after sign-up.
    VerifyEmail { link: String },
    /// Someone tried to sign up with an address that already has an account. Sent instead of a
    /// second verification so that sign-up answers the same for known and unknown addresses.
    AccountExists { login_link: String, reset_link: String },
    /// A single-use password reset link.
    PasswordReset { link: String },
    /// An invitation to join an org.
    Invitation {
        org_name: String,
        inviter: String,
        role: String,
        link: String,
        expires_in_days: u32,
    },
    /// An org's identity provider signed someone in with this address: following the link
    /// proves the mailbox before the sign-in may create (or link) a Gatehouse account.
    SsoLinkConfirm {
        org_name: String,
        link: String,
        expires_in_hours: u32,
    },
    /// Usage crossed a threshold of the plan's allowance.
    UsageAlert {
        org_name: String,
        percent: u32,
        used_calls: u64,
        included_calls: u64,
        period: String,
        link: String,
    },
}

/// A rendered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Mail {
    /// A stable name for logs and metrics (never the content).
    pub fn template_name(&self) -> &'static str {
        match self {
            Mail::VerifyEmail { .. } => "verify_email",
            Mail::AccountExists { .. } => "account_exists",
            Mail::PasswordReset { .. } => "password_reset",
            Mail::Invitation { .. } => "invitation",
            Mail::SsoLinkConfirm { .. } => "sso_link_confirm",
            Mail::UsageAlert { .. } => "usage_alert",
        }
    }

    pub fn render(&self) -> Rendered {
        match self {
            Mail::VerifyEmail { link } => page(
                "Verify your email for Gatehouse",
                &["Welcome to Gatehouse. Confirm your email address to finish creating your account."],
                ("Verify email", link),
                &[
                    "The link works once and expires in 24 hours. If you did not sign up, ignore this message.",
                ],
            ),
            Mail::AccountExists {
                login_link,
                reset_link,
            } => page(
                "Your Gatehouse account",
                &[
                    "Someone (hopefully you) tried to sign up for Gatehouse with this email address, \
                   but it already has an account.",
                ],
                ("Sign in", login_link),
                &[
                    &format!("Forgot your password? Reset it here: {reset_link}"),
                    "If this was not you, you can ignore this message; your account is unchanged.",
                ],
            ),
            Mail::PasswordReset { link } => page(
                "Reset your Gatehouse password",
                &["A password reset was requested for your Gatehouse account."],
                ("Choose a new password", link),
                &[
                    "The link works once and expires in 1 hour. Resetting signs you out everywhere. \
                   If you did not ask for this, ignore this message; your password is unchanged.",
                ],
            ),
            Mail::Invitation {
                org_name,
                inviter,
                role,
                link,
                expires_in_days,
            } => page(
                &format!("{inviter} invited you to {org_name} on Gatehouse"),
                &[&format!(
                    "{inviter} invited you to join the org \"{org_name}\" on Gatehouse as {role}."
                )],
                ("Accept the invitation", link),
                &[&format!(
                    "The invitation works once and expires in {expires_in_days} days. Sign in (or sign up) \
                     with this email address to accept it."
                )],
            ),
            Mail::SsoLinkConfirm {
                org_name,
                link,
                expires_in_hours,
            } => page(
                &format!("Confirm your email to sign in to {org_name} on Gatehouse"),
                &[&format!(
                    "Someone signed in to the org \"{org_name}\" on Gatehouse through its identity provider \
                     with this email address. Confirm that it was you to sign in with it; your Gatehouse \
                     account is created, or your existing account linked to that identity provider, only then."
                )],
                ("Confirm and continue", link),
                &[&format!(
                    "The link works once and expires in {expires_in_hours} hours. If this was not you, ignore \
                     this message: nothing changes, and no one can sign in as you with it."
                )],
            ),
            Mail::UsageAlert {
                org_name,
                percent,
                used_calls,
                included_calls,
                period,
                link,
            } => page(
                &format!("{org_name} has used {percent}% of its Gatehouse calls for {period}"),
                &[&format!(
                    "The org \"{org_name}\" has made {used_calls} of the {included_calls} tool calls included \
                     in its plan for {period} ({percent}%)."
                )],
                ("See usage", link),
                &["Calls beyond a hard limit are refused until the next period or a plan change."],
            ),
        }
    }
}

/// Lays a message out: intro paragraphs, one call-to-action link, closing paragraphs.
fn page(subject: &str, intro: &[&str], action: (&str, &str), outro: &[&str]) -> Rendered {
    let (label, link) = action;
    let mut text = String::new();
    for p in intro {
        text.push_str(p);
        text.push_str("\n\n");
    }
    text.push_str(&format!("{label}: {link}\n\n"));
    for p in outro {
        text.push_str(p);
        text.push_str("\n\n");
    }
    text.push_str("-- \nGatehouse\n");

    let mut html = String::from(
        "<!doctype html><html><body style=\"font-family:sans-serif;max-width:560px;margin:auto;color:#222\">",
    );
    for p in intro {
        html.push_str(&format!("<p>{}</p>", escape(p)));
    }
    html.push_str(&format!(
        "<p><a href=\"{}\" style=\"display:inline-block;padding:10px 16px;background:#1f4fd1;color:#fff;\
         text-decoration:none;border-radius:4px\">{}</a></p><p style=\"font-size:12px;color:#555\">{}</p>",
        escape(link),
        escape(label),
        escape(link)
    ));
    for p in outro {
        html.push_str(&format!("<p>{}</p>", escape(p)));
    }
    html.push_str("<p style=\"color:#777\">Gatehouse</p></body></html>");
    Rendered {
        subject: subject.to_owned(),
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_text_and_html_with_its_link() {
        let mails = [
            Mail::VerifyEmail {
                link: "https://g.example/v?t=1".into(),
            },
            Mail::AccountExists {
                login_link: "https://g.example/login".into(),
                reset_link: "https://g.example/r".into(),
            },
            Mail::PasswordReset {
                link: "https://g.example/r?t=2".into(),
            },
            Mail::Invitation {
                org_name: "Acme".into(),
                inviter: "a@acme.test".into(),
                role: "developer".into(),
                link: "https://g.example/i?t=3".into(),
                expires_in_days: 7,
            },
            Mail::SsoLinkConfirm {
                org_name: "Acme".into(),
                link: "https://g.example/api/v1/sso/confirm?token=4".into(),
                expires_in_hours: 24,
            },
            Mail::UsageAlert {
                org_name: "Acme".into(),
                percent: 80,
                used_calls: 8000,
                included_calls: 10000,
                period: "2026-11".into(),
                link: "https://g.example/orgs/acme/usage".into(),
            },
        ];
        for mail in mails {
            let r = mail.render();
            assert!(!r.subject.is_empty());
            let link = match &mail {
                Mail::VerifyEmail { link } | Mail::PasswordReset { link } => link.clone(),
                Mail::AccountExists { login_link, .. } => login_link.clone(),
                Mail::Invitation { link, .. }
                | Mail::UsageAlert { link, .. }
                | Mail::SsoLinkConfirm { link, .. } => link.clone(),
            };
            assert!(r.text.contains(&link), "{}", mail.template_name());
            assert!(r.html.contains(&escape(&link)), "{}", mail.template_name());
        }
    }

    #[test]
    fn html_is_escaped() {
        let r = Mail::Invitation {
            org_name: "<script>alert(1)</script>".into(),
            inviter: "x\"y".into(),
            role: "viewer".into(),
            link: "https://g.example/i?a=1&b=2".into(),
            expires_in_days: 7,
        }
        .render();
        assert!(!r.html.contains("<script>"));
        assert!(r.html.contains("&lt;script&gt;"));
        assert!(r.html.contains("a=1&amp;b=2"));
    }
}
