//! The configuration reference (`docs/configuration.md`), rendered from the commented built-in
//! defaults so that the document cannot drift from the code.

use crate::config::{DEFAULTS_TOML, ENV_ALIASES, env_var_for};

/// One documented setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDoc {
    pub key: String,
    pub default: String,
    pub description: String,
}

/// Every setting of `defaults.toml`, with the comment lines directly above it.
pub fn settings() -> Vec<SettingDoc> {
    let mut section = String::new();
    let mut pending: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for raw in DEFAULTS_TOML.lines() {
        let line = raw.trim();
        if line.is_empty() {
            pending.clear();
        } else if let Some(comment) = line.strip_prefix('#') {
            pending.push(comment.trim().to_owned());
        } else if line.starts_with('[') && line.ends_with(']') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            pending.clear();
        } else if let Some((key, value)) = line.split_once('=') {
            let key = key.trim();
            let full = if section.is_empty() {
                key.to_owned()
            } else {
                format!("{section}.{key}")
            };
            out.push(SettingDoc {
                key: full,
                default: value.trim().to_owned(),
                description: pending.join(" "),
            });
            pending.clear();
        }
    }
    out
}

/// The whole reference document in Markdown.
pub fn markdown() -> String {
    let mut md = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from services/core/src/defaults.toml by the `configuration_reference_is_current` test; \
         run `BLESS=1 cargo test -p gatehouse-core configuration_reference` to regenerate. -->\n\n\
         Gatehouse reads its configuration once at start, in layers, each overriding the one before:\n\n\
         1. built-in defaults (below);\n\
         2. an optional TOML file: `--config FILE` or `GATEHOUSE_CONFIG=FILE` (`gatehouse up` also reads \
         `<data dir>/local.toml`, which it generates on first run);\n\
         3. environment variables `GATEHOUSE_<SECTION>__<KEY>` (double underscore between section and key), \
         e.g. `GATEHOUSE_CONTROL_API__LISTEN=0.0.0.0:8080`. Lists are written `[\"a\", \"b\"]`. Every \
         `GATEHOUSE_*` variable is read as a setting: an unknown one (a typo) stops the process.\n\n\
         Every value is validated before anything listens. A missing or malformed value stops the process \
         with exit code 2 and one line naming the setting, e.g.\n\
         `gatehouse: configuration error: database.url: is required (set GATEHOUSE_DATABASE__URL or DATABASE_URL)`.\n\
         Secrets (database and Redis URLs, keys, SMTP credentials) are wrapped so that they never print.\n\n\
         ## Standard variables\n\n\
         | variable | fills |\n|---|---|\n",
    );
    for (var, key) in ENV_ALIASES {
        md.push_str(&format!(
            "| `{var}` | `{key}` (the `GATEHOUSE_` form wins when both are set) |\n"
        ));
    }
    md.push_str("| `RUST_LOG` | overrides `telemetry.log_filter` |\n");
    let mut current_section = None;
    for setting in settings() {
        let section = setting
            .key
            .split_once('.')
            .map(|(s, _)| s.to_owned())
            .unwrap_or_default();
        if current_section.as_ref() != Some(&section) {
            let title = if section.is_empty() {
                "General".to_owned()
            } else {
                format!("`[{section}]`")
            };
            md.push_str(&format!(
                "\n## {title}\n\n| setting | environment variable | default | meaning |\n|---|---|---|---|\n"
            ));
            current_section = Some(section);
        }
        let default = if setting.default == "\"\"" {
            "*(empty)*".to_owned()
        } else {
            format!("`{}`", setting.default.replace('|', "\\|"))
        };
        md.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            setting.key,
            env_var_for(&setting.key),
            default,
            setting.description.replace('|', "\\|")
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_documented() {
        let undocumented: Vec<_> = settings()
            .into_iter()
            .filter(|s| s.description.is_empty())
            .map(|s| s.key)
            .collect();
        assert!(
            undocumented.is_empty(),
            "settings without a comment in defaults.toml: {undocumented:?}"
        );
        // The parsed keys are exactly the keys figment sees.
        let mut parsed: Vec<String> = settings().into_iter().map(|s| s.key).collect();
        let mut loaded = crate::config::setting_keys();
        parsed.sort();
        loaded.sort();
        assert_eq!(parsed, loaded);
    }

    #[test]
    fn configuration_reference_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let rendered = markdown();
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&path, &rendered).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == rendered,
            "docs/configuration.md is out of date; regenerate it with \
             `BLESS=1 cargo test -p gatehouse-core configuration_reference`"
        );
    }
}
