//! Setting names: the dotted keys of the built-in defaults and their environment variables (used
//! to generate and check `docs/configuration.md`).

use super::DEFAULTS_TOML;

/// Renders every setting with its default (used to generate and check docs/configuration.md).
pub fn setting_keys() -> Vec<String> {
    let table: toml_like::Value = toml_like::parse(DEFAULTS_TOML);
    let mut keys = Vec::new();
    toml_like::flatten("", &table, &mut keys);
    keys
}

/// Just enough TOML walking to list the dotted keys of the defaults file.
mod toml_like {
    pub type Value = figment::value::Value;

    pub fn parse(source: &str) -> Value {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(source))
            .extract::<Value>()
            .expect("built-in defaults are valid TOML")
    }

    pub fn flatten(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Dict(_, dict) => {
                for (key, child) in dict {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&path, child, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
}

/// Converts a dotted setting name into its environment variable.
pub fn env_var_for(setting: &str) -> String {
    format!("GATEHOUSE_{}", setting.to_ascii_uppercase().replace('.', "__"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_an_env_var_name() {
        let keys = setting_keys();
        assert!(keys.contains(&"database.url".to_owned()));
        assert_eq!(env_var_for("control_api.listen"), "GATEHOUSE_CONTROL_API__LISTEN");
    }
}
