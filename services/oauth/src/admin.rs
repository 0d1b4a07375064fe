//! Checks behind the org admin's REST API for service tokens and service clients (the routes live
//! in the control API): the endpoint exists and every scope grants something there and is within
//! the creator's role.

use std::collections::BTreeSet;

use gatehouse_core::ids::EndpointId;
use gatehouse_core::role::Role;
use gatehouse_db::repos::oauth_scopes::{self, EndpointRef};
use gatehouse_db::{DbResult, TenantTx};

use crate::scopes;

/// Why scopes cannot be granted.
#[derive(Debug, PartialEq, Eq)]
pub enum ScopeProblem {
    UnknownEndpoint,
    /// These grant nothing at the endpoint (or do not exist).
    GrantNothing(Vec<String>),
    /// These need a higher role than the creator's.
    AboveRole(Vec<String>),
    Malformed,
}

impl std::fmt::Display for ScopeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScopeProblem::UnknownEndpoint => f.write_str("no such endpoint in this org"),
            ScopeProblem::GrantNothing(s) => {
                write!(f, "these scopes grant nothing at the endpoint: {}", s.join(", "))
            }
            ScopeProblem::AboveRole(s) => write!(f, "your role may not grant these scopes: {}", s.join(", ")),
            ScopeProblem::Malformed => {
                f.write_str("scope names must be 1-64 printable characters without spaces")
            }
        }
    }
}

/// The endpoint and the normalised (sorted, deduplicated) scopes, or the problem.
pub async fn grantable(
    tx: &mut TenantTx,
    endpoint: EndpointId,
    requested: &[String],
    role: Role,
) -> DbResult<Result<(EndpointRef, Vec<String>), ScopeProblem>> {
    let Some(endpoint) = oauth_scopes::endpoint_by_id(tx, endpoint).await? else {
        return Ok(Err(ScopeProblem::UnknownEndpoint));
    };
    let Some(wanted) = scopes::parse(&requested.join(" ")) else {
        return Ok(Err(ScopeProblem::Malformed));
    };
    if requested.iter().any(|s| s.contains(' ') || s.is_empty()) {
        return Ok(Err(ScopeProblem::Malformed));
    }
    let available = oauth_scopes::granting_scopes(tx, endpoint.id).await?;
    let unknown: Vec<String> = scopes::unknown(&wanted, &available)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if !unknown.is_empty() {
        return Ok(Err(ScopeProblem::GrantNothing(unknown)));
    }
    let above: Vec<String> = available
        .iter()
        .filter(|s| wanted.contains(&s.name) && !scopes::role_allows(role, &s.min_role))
        .map(|s| s.name.clone())
        .collect();
    if !above.is_empty() {
        return Ok(Err(ScopeProblem::AboveRole(above)));
    }
    let normalised: BTreeSet<String> = wanted;
    Ok(Ok((endpoint, normalised.into_iter().collect())))
}
