//! Requests naming a resource URI (`resources/read`, `resources/subscribe`,
//! `resources/unsubscribe`, `completion/complete` with a `ref/resource`) at an endpoint with
//! several upstreams go to the upstream that owns the URI ([`crate::owners`]): what the
//! endpoint's map knows, else what the upstreams list when asked now. URIs are never rewritten.

use std::time::Instant;

use gatehouse_core::ids::ServerId;
use serde_json::{Value, json};

use crate::jsonrpc::{Kind, Message};
use crate::owners::{Listing, Lookup, decide};
use crate::session::Session;

use super::aggregate::{ListKind, list_page, listing_of};
use super::context::{ClientWire, Ctx};
use super::upstream_calls::fan_out;

/// At most this many pages of each list are read from each upstream when learning.
const MAX_PAGES: usize = 5;

/// Why a resource request has no upstream.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unrouted {
    /// No upstream lists the URI or a template it matches.
    NotFound,
    /// No upstream answered its lists.
    Unavailable,
}

/// The upstream that owns `uri`: from the endpoint's map, else learned by listing every upstream
/// (once at a time per endpoint; a URI nobody claimed is looked for again at most every few
/// seconds).
pub(super) async fn resource_owner(
    ctx: &Ctx,
    client_wire: ClientWire,
    session: Option<&Session>,
    message: &Message,
    uri: &str,
) -> Result<ServerId, Unrouted> {
    let owners = &ctx.endpoint.resource_owners;
    if let Some(decided) = known_owner(ctx, uri) {
        return decided;
    }
    let _learning = owners.learning().lock().await;
    // Whoever held the lock may have learned what this request needs.
    if let Some(decided) = known_owner(ctx, uri) {
        return decided;
    }
    let listings = list_everything(ctx, client_wire, session, message).await;
    if listings.is_empty() {
        return Err(Unrouted::Unavailable);
    }
    owners.learn_complete(&listings, Instant::now());
    decide(&listings, uri).ok_or(Unrouted::NotFound)
}

/// The decision the map can make without asking the upstreams, if any.
fn known_owner(ctx: &Ctx, uri: &str) -> Option<Result<ServerId, Unrouted>> {
    let owners = &ctx.endpoint.resource_owners;
    let now = Instant::now();
    match owners.lookup(uri, now) {
        Lookup::Owner(server) => Some(Ok(server)),
        Lookup::Nobody if !owners.relearn_due(now) => Some(Err(Unrouted::NotFound)),
        Lookup::Nobody | Lookup::Unknown => None,
    }
}

/// Every upstream's resources and templates (the upstreams that answered at least one list).
async fn list_everything(
    ctx: &Ctx,
    client_wire: ClientWire,
    session: Option<&Session>,
    message: &Message,
) -> Vec<Listing> {
    let ranked = ctx
        .endpoint
        .server_ids
        .iter()
        .enumerate()
        .map(|(rank, s)| (*s, rank));
    let calls = fan_out(ctx, ranked, |server, rank| async move {
        let server = &server.snapshot.id;
        let resources = all_pages(ctx, client_wire, session, message, ListKind::Resources, *server);
        let templates = all_pages(
            ctx,
            client_wire,
            session,
            message,
            ListKind::ResourceTemplates,
            *server,
        );
        let (resources, templates) = futures::join!(resources, templates);
        if resources.is_none() && templates.is_none() {
            return None;
        }
        let uris = listing_of(*server, rank, &resources.unwrap_or_default()).uris;
        let templates = listing_of(*server, rank, &templates.unwrap_or_default()).templates;
        Some(Listing {
            server: *server,
            rank,
            uris,
            templates,
        })
    });
    calls.await.into_iter().flatten().collect()
}

/// The items of up to [`MAX_PAGES`] pages of `kind` from `server`; `None` if it could not be
/// reached.
async fn all_pages(
    ctx: &Ctx,
    client_wire: ClientWire,
    session: Option<&Session>,
    client_message: &Message,
    kind: ListKind,
    server: ServerId,
) -> Option<Vec<Value>> {
    let request = list_request(client_message, kind);
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = match list_page(
            ctx,
            client_wire,
            session,
            &request,
            kind.key(),
            server,
            cursor.as_deref(),
        )
        .await
        {
            Ok(page) => page,
            // A refusal (an upstream without resources, say) is an answer: nothing more here.
            Err(Some(_refusal)) => return Some(items),
            // No answer: none at all, or a partial listing after earlier pages.
            Err(None) => return (!items.is_empty()).then_some(items),
        };
        items.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Some(items)
}

/// The dataplane's own list request, on the client's wire: a 2026-07-28 request carries the
/// client's `_meta` (protocol version, client info and capabilities).
fn list_request(client_message: &Message, kind: ListKind) -> Message {
    let mut params = json!({});
    if let Some(meta) = era_meta(client_message) {
        params["_meta"] = meta.clone();
    }
    Message {
        value: json!({
            "jsonrpc": "2.0",
            "id": format!("gatehouse-{}", uuid::Uuid::new_v4().simple()),
            "method": kind.method(),
            "params": params,
        }),
        kind: Kind::Request,
    }
}

fn era_meta(message: &Message) -> Option<&Value> {
    message
        .has_meta_protocol_version_key()
        .then(|| message.params().and_then(|p| p.get("_meta")))
        .flatten()
}
