//! The SQL a backend's admin runs to install (or upgrade) the `gatehouse` schema, and the
//! statement that installs the backend's context key.
//!
//! Versions are applied in order; each refuses to run twice (it checks
//! `gatehouse.schema_version`), and the whole script is one transaction. Gatehouse reads the
//! installed version when it tests a backend and offers the upgrade script from there.

use crate::context::ContextKey;

/// The schema version this Gatehouse expects on backends.
pub const SCHEMA_VERSION: i32 = 1;

/// The owner role the setup script creates when the admin does not choose another.
pub const DEFAULT_OWNER_ROLE: &str = "gatehouse_context_owner";

/// The version scripts, in order: `VERSIONS[n - 1]` installs version `n`.
const VERSIONS: &[&str] = &[include_str!("../sql/gatehouse_v1.sql")];

/// Whether `role` is a name the script can use unquoted: a lower-case identifier.
pub fn valid_role_name(role: &str) -> bool {
    crate::statement::valid_parameter_name(role)
}

fn render(script: &str, owner_role: &str) -> String {
    script
        .replace("@OWNER_LITERAL@", &format!("'{owner_role}'"))
        .replace("@OWNER@", owner_role)
}

/// The script that brings a backend from `installed` (0: nothing installed) to
/// [`SCHEMA_VERSION`], with `owner_role` owning the schema; `None` when it is up to date.
///
/// # Panics
/// If `owner_role` is not a valid role name (check with [`valid_role_name`] first).
pub fn upgrade_script(owner_role: &str, installed: i32) -> Option<String> {
    assert!(valid_role_name(owner_role), "invalid owner role name");
    let from = usize::try_from(installed).unwrap_or(0);
    if from >= VERSIONS.len() {
        return None;
    }
    Some(
        VERSIONS[from..]
            .iter()
            .map(|v| render(v, owner_role))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The statement that installs `key` on the backend (run as a superuser or the owner role, after
/// the schema). It carries the key: show it only to the backend's admin.
pub fn key_statement(key: &ContextKey) -> String {
    format!(
        "SELECT gatehouse.install_key('{}', '\\x{}'::bytea);\n",
        key.kid(),
        hex::encode(key.bytes())
    )
}

/// The complete setup for a fresh backend: the schema, then the key.
pub fn setup_script(owner_role: &str, installed: i32, key: &ContextKey) -> String {
    let mut out = upgrade_script(owner_role, installed).unwrap_or_default();
    out.push_str("\n-- The backend's context key (keep this script private).\n");
    out.push_str(&key_statement(key));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_render_the_owner_and_stop_when_up_to_date() {
        let script = upgrade_script("gh_owner_x", 0).unwrap();
        assert!(script.contains("CREATE ROLE gh_owner_x NOLOGIN"));
        assert!(script.contains("rolname = 'gh_owner_x'"));
        assert!(!script.contains('@'));
        assert!(upgrade_script("gh_owner_x", SCHEMA_VERSION).is_none());
        assert!(!valid_role_name("x; DROP ROLE y"));
        assert!(!valid_role_name("Robert"));
        let key = ContextKey::generate();
        assert!(key_statement(&key).contains(&hex::encode(key.bytes())));
    }
}
