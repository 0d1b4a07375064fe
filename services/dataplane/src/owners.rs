//! Which upstream owns a resource URI at an endpoint with several upstreams, as learned from the
//! upstreams' own `resources/list` and `resources/templates/list` answers.
//!
//! Resource URIs are not namespaced (clients treat them as meaningful, and they appear inside tool
//! results), so a request naming a URI goes to whoever listed it: an exact URI first, else the
//! template whose literal prefix (the text before its first `{`) is the longest prefix of the URI.
//! When several upstreams claim the same URI or prefix, the earlier one in the endpoint's order
//! wins, so every replica decides alike. One map lives on each endpoint's in-memory state: it is
//! never shared across endpoints or tenants, it starts empty with every snapshot, it is bounded,
//! and any replica can rebuild it by listing the upstreams (nothing sticky).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatehouse_core::ids::ServerId;
use gatehouse_core::sync::MutexExt;

/// How long what was learned is trusted: upstreams may add, move or drop resources.
const ENTRY_TTL: Duration = Duration::from_secs(300);
/// A URI nobody claimed triggers a fresh listing at most this often per endpoint, so a client
/// asking for unknown URIs cannot make the dataplane list its upstreams on every request.
const RELEARN_AFTER: Duration = Duration::from_secs(10);
/// Bounds per endpoint; past them new entries are not remembered (they are decided from a fresh
/// listing instead).
const MAX_URIS: usize = 4096;
const MAX_PREFIXES: usize = 512;

/// What one upstream listed: its resource URIs and its resource templates (`uriTemplate`).
#[derive(Debug)]
pub struct Listing {
    pub server: ServerId,
    /// The upstream's position in the endpoint's server order (lower wins a tie).
    pub rank: usize,
    pub uris: Vec<String>,
    pub templates: Vec<String>,
}

/// What the map says about a URI.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Owner(ServerId),
    /// A recent complete listing has no owner for it.
    Nobody,
    /// Not known: the upstreams must be listed to decide.
    Unknown,
}

#[derive(Clone, Copy, Debug)]
struct Owner {
    server: ServerId,
    rank: usize,
    learned: Instant,
}

#[derive(Default)]
struct Owners {
    uris: HashMap<String, Owner>,
    /// Template literal prefixes, from the last complete listing only: a prefix decision is only
    /// sound when every exact URI is known too.
    prefixes: Vec<(String, Owner)>,
    complete_at: Option<Instant>,
}

/// The resource owners of one endpoint.
#[derive(Default)]
pub struct ResourceOwners {
    owners: Mutex<Owners>,
    /// Held while the upstreams are listed, so concurrent misses list them once.
    learning: tokio::sync::Mutex<()>,
}

/// The text of a URI template before its first expression.
pub fn literal_prefix(template: &str) -> &str {
    template.split('{').next().unwrap_or(template)
}

/// Decides from fresh listings: the exact URI, else the longest template prefix.
pub fn decide(listings: &[Listing], uri: &str) -> Option<ServerId> {
    let by_rank = |a: &&Listing, b: &&Listing| a.rank.cmp(&b.rank);
    let exact = listings
        .iter()
        .filter(|l| l.uris.iter().chain(&l.templates).any(|u| u == uri))
        .min_by(by_rank);
    if let Some(listing) = exact {
        return Some(listing.server);
    }
    listings
        .iter()
        .flat_map(|l| l.templates.iter().map(move |t| (literal_prefix(t), l)))
        .filter(|(prefix, _)| uri.starts_with(prefix))
        .max_by(|(pa, la), (pb, lb)| pa.len().cmp(&pb.len()).then(lb.rank.cmp(&la.rank)))
        .map(|(_, l)| l.server)
}

impl Owners {
    fn fresh(&self, now: Instant) -> bool {
        self.complete_at
            .is_some_and(|at| now.duration_since(at) < ENTRY_TTL)
    }

    fn remember(&mut self, uri: &str, owner: Owner, now: Instant) {
        if let Some(known) = self.uris.get_mut(uri) {
            let stale = now.duration_since(known.learned) >= ENTRY_TTL;
            if stale || owner.rank <= known.rank {
                *known = owner;
            }
            return;
        }
        if self.uris.len() >= MAX_URIS {
            self.uris.retain(|_, o| now.duration_since(o.learned) < ENTRY_TTL);
        }
        if self.uris.len() < MAX_URIS {
            self.uris.insert(uri.to_owned(), owner);
        }
    }
}

impl ResourceOwners {
    /// What is known about `uri` now.
    pub fn lookup(&self, uri: &str, now: Instant) -> Lookup {
        let owners = self.owners.lock_or_recover();
        if let Some(o) = owners.uris.get(uri)
            && now.duration_since(o.learned) < ENTRY_TTL
        {
            return Lookup::Owner(o.server);
        }
        if !owners.fresh(now) {
            return Lookup::Unknown;
        }
        owners
            .prefixes
            .iter()
            .filter(|(prefix, _)| uri.starts_with(prefix.as_str()))
            .max_by(|(pa, a), (pb, b)| pa.len().cmp(&pb.len()).then(b.rank.cmp(&a.rank)))
            .map_or(Lookup::Nobody, |(_, o)| Lookup::Owner(o.server))
    }

    /// Whether a URI nobody claimed justifies listing the upstreams again.
    pub fn relearn_due(&self, now: Instant) -> bool {
        let owners = self.owners.lock_or_recover();
        owners
            .complete_at
            .is_none_or(|at| now.duration_since(at) >= RELEARN_AFTER)
    }

    /// The lock to hold while listing the upstreams.
    pub fn learning(&self) -> &tokio::sync::Mutex<()> {
        &self.learning
    }

    /// Remembers the URIs (and exact templates) of one page an upstream listed.
    pub fn learn_page(&self, listing: &Listing, now: Instant) {
        let owner = Owner {
            server: listing.server,
            rank: listing.rank,
            learned: now,
        };
        let mut owners = self.owners.lock_or_recover();
        for uri in listing.uris.iter().chain(&listing.templates) {
            owners.remember(uri, owner, now);
        }
    }

    /// Replaces what is known with complete listings of every upstream.
    pub fn learn_complete(&self, listings: &[Listing], now: Instant) {
        for listing in listings {
            self.learn_page(listing, now);
        }
        let mut prefixes: Vec<(String, Owner)> = Vec::new();
        for listing in listings {
            for template in &listing.templates {
                let owner = Owner {
                    server: listing.server,
                    rank: listing.rank,
                    learned: now,
                };
                prefixes.push((literal_prefix(template).to_owned(), owner));
            }
        }
        prefixes.truncate(MAX_PREFIXES);
        let mut owners = self.owners.lock_or_recover();
        owners.prefixes = prefixes;
        owners.complete_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(rank: usize, uris: &[&str], templates: &[&str]) -> Listing {
        Listing {
            server: ServerId::new(),
            rank,
            uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            templates: templates.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn exact_then_longest_prefix_then_rank() {
        let a = listing(0, &["test://shared", "test://a"], &["test://{x}"]);
        let b = listing(1, &["test://shared", "test://b"], &["test://b/items/{id}"]);
        let all = [a, b];
        let (a, b) = (all[0].server, all[1].server);
        assert_eq!(decide(&all, "test://b"), Some(b));
        assert_eq!(
            decide(&all, "test://shared"),
            Some(a),
            "the earlier server wins a tie"
        );
        assert_eq!(decide(&all, "test://b/items/7"), Some(b), "longest prefix");
        assert_eq!(decide(&all, "test://other"), Some(a));
        assert_eq!(decide(&all, "file:///etc/passwd"), None);
        assert_eq!(
            decide(&all, "test://b/items/{id}"),
            Some(b),
            "a template names itself"
        );
    }

    #[test]
    fn the_map_answers_only_what_it_can_answer() {
        let owners = ResourceOwners::default();
        let now = Instant::now();
        let b = listing(1, &["test://b"], &["test://b/items/{id}"]);
        owners.learn_page(&b, now);
        assert_eq!(owners.lookup("test://b", now), Lookup::Owner(b.server));
        // A prefix is only trusted after a complete listing (an exact URI of another server
        // could be missing from a partial one).
        assert_eq!(owners.lookup("test://b/items/1", now), Lookup::Unknown);
        assert!(owners.relearn_due(now));
        owners.learn_complete(std::slice::from_ref(&b), now);
        assert_eq!(owners.lookup("test://b/items/1", now), Lookup::Owner(b.server));
        assert_eq!(owners.lookup("test://nobody", now), Lookup::Nobody);
        assert!(!owners.relearn_due(now));
        let later = now + ENTRY_TTL;
        assert_eq!(
            owners.lookup("test://b", later),
            Lookup::Unknown,
            "entries expire"
        );
        assert!(owners.relearn_due(later));
    }

    #[test]
    fn an_earlier_server_keeps_a_shared_uri() {
        let owners = ResourceOwners::default();
        let now = Instant::now();
        let a = listing(0, &["test://shared"], &[]);
        let b = listing(1, &["test://shared"], &[]);
        owners.learn_page(&a, now);
        owners.learn_page(&b, now);
        assert_eq!(owners.lookup("test://shared", now), Lookup::Owner(a.server));
    }
}
