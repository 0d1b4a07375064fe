//! The usual test setup in one value: a fixture upstream behind a dataplane, one org, one endpoint.

use serde_json::json;

use gatehouse_core::snapshot::EndpointSnapshot;

use super::{Issuer, OrgSpec, RawClient, ServerSpec, Shared, TestDataplane};

/// A fixture + dataplane + org with one endpoint exposing the fixture's tools un-namespaced and a
/// scope `all` granting everything.
pub struct World {
    pub issuer: Issuer,
    pub shared: Shared,
    pub dataplane: TestDataplane,
    pub fixture: mcp_fixture::FixtureHandle,
    pub server: ServerSpec,
    pub org: OrgSpec,
}

impl World {
    pub async fn start(
        options: mcp_fixture::FixtureOptions,
        scopes: &[(&str, &[&str])],
        extra: &[(&str, &str)],
    ) -> World {
        let issuer = Issuer::start().await;
        let shared = Shared::new();
        let dataplane = TestDataplane::start(&issuer, &shared, extra).await;
        let fixture = mcp_fixture::spawn_fixture(options).await.unwrap();
        let server = ServerSpec::fixture("fx", fixture.url()).await;
        let mut org = OrgSpec::new(&format!(
            "org-{}",
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        ));
        org.add_server(&server, &shared.snapshot_keys);
        org.add_endpoint(&dataplane.url, "main", &[&server], false, scopes);
        dataplane.load(&[org.snapshot()]);
        World {
            issuer,
            shared,
            dataplane,
            fixture,
            server,
            org,
        }
    }

    /// The usual world: one scope, `fx:all`, granting every tool.
    pub async fn granting_all(options: mcp_fixture::FixtureOptions) -> World {
        Self::start(options, &[("fx:all", &["*"])], &[]).await
    }

    /// [`World::granting_all`] over a fixture that records the headers of every request it gets.
    pub async fn recording() -> World {
        Self::granting_all(mcp_fixture::FixtureOptions {
            record_headers: true,
            ..Default::default()
        })
        .await
    }

    pub fn endpoint(&self) -> &EndpointSnapshot {
        &self.org.endpoints[0]
    }

    pub fn url(&self) -> String {
        self.dataplane.endpoint_url(&self.org.slug, "main")
    }

    pub fn token(&self, sub: &str, scope: &str) -> String {
        self.issuer
            .token(self.endpoint(), self.org.org_id, sub, scope, json!({}))
    }

    pub fn client(&self, sub: &str, scope: &str, version: &str) -> RawClient {
        RawClient::new(&self.url(), Some(self.token(sub, scope)), version)
    }

    /// Publishes a changed snapshot (next version).
    pub fn republish(&mut self) {
        self.org.version += 1;
        self.dataplane.store.install(self.org.snapshot());
    }
}

impl World {
    /// The upstream (a recording fixture) never saw any of `tokens`, an Authorization header or
    /// a cookie.
    pub fn assert_no_client_tokens(&self, tokens: &[String]) {
        let seen = self.fixture.headers_snapshot();
        assert!(!seen.is_empty(), "the canary recorded requests");
        for request in &seen {
            for (name, value) in request {
                for token in tokens {
                    assert!(
                        !value.contains(token.as_str()),
                        "client token reached the upstream in {name}"
                    );
                }
                assert_ne!(
                    name, "authorization",
                    "no Authorization header upstream (server has no credential)"
                );
                assert_ne!(name, "cookie");
            }
        }
    }
}
