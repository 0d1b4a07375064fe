//! Scope strings: parsing, and what a user may be granted at an endpoint.

use std::collections::BTreeSet;

use gatehouse_core::role::Role;
use gatehouse_db::repos::oauth_scopes::EndpointScope;

/// Requested by some clients out of habit; refresh tokens are always issued to the authorization
/// code grant, so it is accepted and ignored rather than refused.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Parses a space-separated scope parameter into a sorted set. `None` for malformed input.
pub fn parse(scope: &str) -> Option<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        let valid = s.len() <= 64
            && s.bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if !valid {
            return None;
        }
        if s != OFFLINE_ACCESS {
            out.insert(s.to_owned());
        }
    }
    Some(out)
}

pub fn join<'a>(scopes: impl IntoIterator<Item = &'a String>) -> String {
    scopes
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Requested names that are not scopes granting something at the endpoint.
pub fn unknown<'a>(requested: &'a BTreeSet<String>, endpoint: &[EndpointScope]) -> Vec<&'a str> {
    requested
        .iter()
        .filter(|r| !endpoint.iter().any(|s| &s.name == *r))
        .map(String::as_str)
        .collect()
}

/// Whether `role` may hold a scope whose minimum role is `min_role`. An unparsable minimum
/// (impossible by the table's check) allows nobody.
pub fn role_allows(role: Role, min_role: &str) -> bool {
    min_role.parse::<Role>().is_ok_and(|min| role.at_least(min))
}

/// Splits the scopes to grant: those `role` may hold, and those it may not. With no explicit
/// request, every scope of the endpoint is requested.
pub fn for_role(
    requested: Option<&BTreeSet<String>>,
    endpoint: &[EndpointScope],
    role: Role,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut granted = BTreeSet::new();
    let mut withheld = BTreeSet::new();
    for s in endpoint {
        if requested.is_some_and(|r| !r.contains(&s.name)) {
            continue;
        }
        if role_allows(role, &s.min_role) {
            granted.insert(s.name.clone());
        } else {
            withheld.insert(s.name.clone());
        }
    }
    (granted, withheld)
}

/// The scopes of a token request: a `scope` parameter may narrow `allowed`, never widen it
/// (RFC 6749 §3.3, RFC 9700 §4.14.2); without one, all of `allowed`.
pub fn narrow(requested: Option<&str>, allowed: &BTreeSet<String>) -> Result<BTreeSet<String>, &'static str> {
    let Some(requested) = requested else {
        return Ok(allowed.clone());
    };
    let asked = parse(requested).ok_or("scope is malformed")?;
    if asked.is_subset(allowed) {
        Ok(asked)
    } else {
        Err("scope exceeds what was granted")
    }
}
