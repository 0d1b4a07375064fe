"""The official MCP Python SDK client through Gatehouse's authorization server, headless.

The SDK's OAuthClientProvider (an httpx2 auth flow) meets the endpoint's 401, discovers the
protected resource and authorization server metadata, registers (Client ID Metadata Document or
dynamic registration), authorizes with PKCE, and exchanges the code; the redirect handler plays
the browser, filling in the login and consent forms over HTTP. A second request after the access
token expired makes the SDK refresh it. Driven by tests/e2e/oauth_sdk.rs.

Input (environment): GATEHOUSE_FLOW = {"server_url", "mode": "cimd"|"dcr", "email", "password",
"redirect_url", "client_metadata_url"?, "wait_for_expiry_secs"}. Output: one JSON line on stdout.
"""

import asyncio
import html
import json
import os
import re
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

CFG = json.loads(os.environ["GATEHOUSE_FLOW"])


def log(*args):
    print("[py-client]", *args, file=sys.stderr)


class Memory(TokenStorage):
    def __init__(self):
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None
        self.history: list[dict] = []

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens
        self.history.append(tokens.model_dump(mode="json"))

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


def parse_form(page: str):
    form = re.search(r'<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>', page, re.S)
    if not form:
        raise RuntimeError("no form on the page: " + page[:300])
    fields = [(html.unescape(n), html.unescape(v)) for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form.group(2))]
    return html.unescape(form.group(1)), fields


async def browse(url: str) -> str:
    """A browser: cookies, forms; stops at the redirect back to the client."""
    async with httpx2.AsyncClient(follow_redirects=False) as browser:
        resp = await browser.get(url)
        for _ in range(8):
            if resp.status_code in (302, 303):
                location = urljoin(url, resp.headers["location"])
                if location.startswith(CFG["redirect_url"]):
                    return location
                url = location
                resp = await browser.get(url)
                continue
            if resp.status_code != 200:
                raise RuntimeError(f"authorization stopped with HTTP {resp.status_code}: {resp.text}")
            action, fields = parse_form(resp.text)
            if action == "/authorize/login":
                fields += [("email", CFG["email"]), ("password", CFG["password"])]
            else:
                fields.append(("decision", "approve"))
            log("submitting", action)
            url = urljoin(url, action)
            resp = await browser.post(url, data=dict(fields))
    raise RuntimeError("authorization did not finish")


async def main():
    out: dict = {}
    storage = Memory()

    async def redirect_handler(authorization_url: str):
        out["authorization_url"] = authorization_url
        out["callback"] = await browse(authorization_url)

    async def callback_handler() -> AuthorizationCodeResult:
        q = {k: v[0] for k, v in parse_qs(urlparse(out["callback"]).query).items()}
        if "error" in q:
            raise RuntimeError("authorization error: " + out["callback"])
        return AuthorizationCodeResult(code=q["code"], state=q.get("state"), iss=q.get("iss"))

    provider = OAuthClientProvider(
        server_url=CFG["server_url"],
        client_metadata=OAuthClientMetadata(
            client_name="Gatehouse Python SDK test",
            redirect_uris=[CFG["redirect_url"]],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=CFG.get("client_metadata_url") if CFG["mode"] == "cimd" else None,
    )
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "py-test", "version": "1"}},
    }
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
    async with httpx2.AsyncClient(auth=provider, follow_redirects=False, timeout=60) as client:
        first = await client.post(CFG["server_url"], json=initialize, headers=headers)
        out["first_status"] = first.status_code
        out["tokens"] = storage.history[-1] if storage.history else None
        await asyncio.sleep(CFG.get("wait_for_expiry_secs", 0))
        second = await client.post(CFG["server_url"], json=initialize, headers=headers)
        out["second_status"] = second.status_code
    out["refreshed"] = storage.history[-1] if len(storage.history) > 1 else None
    out["token_count"] = len(storage.history)
    out["client_id"] = storage.client.client_id if storage.client else None
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
