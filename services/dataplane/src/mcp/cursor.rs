//! Composite cursors for lists aggregated across several upstreams: base64url (no padding) of a
//! JSON object naming, for each upstream that has more, its own cursor (`{"<server slug>":
//! "<upstream cursor>"}`). An upstream missing from the object is done. Each upstream only ever
//! sees its own cursor; with one upstream the dataplane passes cursors through untouched.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Where one upstream is in a walk through an aggregated list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Position {
    /// The first page (no cursor yet).
    Start,
    /// The page after this upstream cursor.
    At(String),
    /// Nothing more from this upstream.
    Done,
}

/// The upstreams' cursors of a walk, by server slug.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Walk(BTreeMap<String, String>);

impl Walk {
    /// The walk a client's `cursor` continues; `None` when the dataplane did not make it.
    pub(super) fn decode(cursor: &str) -> Option<Walk> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        serde_json::from_slice::<BTreeMap<String, String>>(&bytes)
            .ok()
            .map(Walk)
    }

    /// Where `slug` is: a walk that has not begun (`None`) starts every upstream.
    pub(super) fn position(walk: Option<&Walk>, slug: &str) -> Position {
        match walk {
            None => Position::Start,
            Some(Walk(cursors)) => cursors
                .get(slug)
                .map_or(Position::Done, |c| Position::At(c.clone())),
        }
    }

    /// Records that `slug` has more after `cursor`.
    pub(super) fn insert(&mut self, slug: &str, cursor: String) {
        self.0.insert(slug.to_owned(), cursor);
    }

    /// The `nextCursor` to hand the client, when any upstream has more.
    pub(super) fn encode(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        Some(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.0).expect("json")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_positions() {
        let mut walk = Walk::default();
        assert_eq!(walk.encode(), None, "nothing more: no nextCursor");
        walk.insert("orders", "p2".into());
        let cursor = walk.encode().unwrap();
        let back = Walk::decode(&cursor).unwrap();
        assert_eq!(back, walk);
        assert_eq!(Walk::position(Some(&back), "orders"), Position::At("p2".into()));
        assert_eq!(Walk::position(Some(&back), "catalog"), Position::Done);
        assert_eq!(Walk::position(None, "catalog"), Position::Start);
    }

    #[test]
    fn foreign_cursors_are_refused() {
        for cursor in ["", "not base64 !", "e30", "WzFd", "eyJhIjoxfQ"] {
            // "e30" is `{}`: decodable, an empty walk (every upstream done).
            let decoded = Walk::decode(cursor);
            assert!(decoded.is_none() || cursor == "e30", "{cursor}: {decoded:?}");
        }
    }
}
