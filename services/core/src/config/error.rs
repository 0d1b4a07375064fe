//! [`ConfigError`]: the one-line report of a configuration problem, and the translation of
//! figment's extraction errors into it.

/// A configuration problem: which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

/// Turns figment's error into ours, naming the setting as a dotted path.
pub(super) fn figment_error(err: figment::Error) -> ConfigError {
    let setting = if err.path.is_empty() {
        "configuration".to_owned()
    } else {
        err.path.join(".")
    };
    let problem = match &err.kind {
        figment::error::Kind::UnknownField(field, _) => {
            let full = match err.path.last() {
                Some(last) if last == field => err.path.join("."),
                Some(_) => format!("{}.{field}", err.path.join(".")),
                None => field.clone(),
            };
            return ConfigError::new(
                full,
                "is not a known setting (check the spelling; docs/configuration.md lists every setting)",
            );
        }
        figment::error::Kind::MissingField(field) => format!("missing setting `{field}`"),
        figment::error::Kind::InvalidType(actual, expected) => {
            format!("has the wrong type: found {actual}, expected {expected}")
        }
        figment::error::Kind::InvalidValue(_, expected) => {
            format!("has an invalid value: expected {expected}")
        }
        figment::error::Kind::UnknownVariant(found, expected) => {
            format!(
                "has unknown value {found:?}; expected one of {}",
                expected.join(", ")
            )
        }
        figment::error::Kind::Message(message) => message.clone(),
        other => other.to_string(),
    };
    ConfigError::new(setting, problem)
}
