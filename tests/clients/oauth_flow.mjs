// The official MCP TypeScript SDK client through Gatehouse's authorization server, headless:
// discovery from the endpoint's 401, registration (Client ID Metadata Document or dynamic
// registration), authorization with PKCE, login and consent by filling in the HTML forms over
// HTTP as a browser would, token, refresh. Driven by tests/e2e/oauth_sdk.rs.
//
// Input (environment): GATEHOUSE_FLOW = {"server_url", "mode": "cimd"|"dcr", "email", "password",
// "redirect_url", "client_metadata_url"?}. Output: one JSON line on stdout.

import { auth, extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';

const input = JSON.parse(process.env.GATEHOUSE_FLOW ?? '{}');
const log = (...args) => console.error('[ts-client]', ...args);

class MemoryProvider {
  constructor() {
    this.client = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.authorizationUrl = undefined;
  }
  get redirectUrl() { return input.redirect_url; }
  get clientMetadataUrl() { return input.mode === 'cimd' ? input.client_metadata_url : undefined; }
  get clientMetadata() {
    return {
      client_name: 'Gatehouse TS SDK test',
      redirect_uris: [input.redirect_url],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
    };
  }
  state() { return 'ts-state-' + Math.random().toString(36).slice(2); }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.saved; }
  saveTokens(tokens) { this.saved = tokens; }
  redirectToAuthorization(url) { this.authorizationUrl = url; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
}

// A browser: cookies, forms, no redirect followed off the authorization server.
const cookies = new Map();
function absorb(res) {
  for (const c of res.headers.getSetCookie?.() ?? []) {
    const [pair] = c.split(';');
    const i = pair.indexOf('=');
    const [k, v] = [pair.slice(0, i), pair.slice(i + 1)];
    if (!v || /max-age=0/i.test(c)) cookies.delete(k); else cookies.set(k, v);
  }
}
const cookieHeader = () => [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
const unescape = (s) => s.replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&');
function parseForm(html) {
  const form = html.match(/<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/);
  if (!form) throw new Error('no form on the page: ' + html.slice(0, 300));
  const fields = [];
  for (const m of form[2].matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) fields.push([unescape(m[1]), unescape(m[2])]);
  return { action: unescape(form[1]), fields };
}

async function browse(authorizationUrl) {
  let url = authorizationUrl.toString();
  let res = await fetch(url, { redirect: 'manual', headers: { cookie: cookieHeader() } });
  for (let step = 0; step < 8; step++) {
    absorb(res);
    if (res.status === 302 || res.status === 303) {
      const location = new URL(res.headers.get('location'), url);
      if (location.toString().startsWith(input.redirect_url)) return location;
      url = location.toString();
      res = await fetch(url, { redirect: 'manual', headers: { cookie: cookieHeader() } });
      continue;
    }
    if (res.status !== 200) throw new Error(`authorization stopped with HTTP ${res.status}: ${await res.text()}`);
    const { action, fields } = parseForm(await res.text());
    if (action === '/authorize/login') fields.push(['email', input.email], ['password', input.password]);
    else fields.push(['decision', 'approve']);
    log('submitting', action);
    url = new URL(action, url).toString();
    res = await fetch(url, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: cookieHeader(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }
  throw new Error('authorization did not finish');
}

async function main() {
  // Discovery starts from the endpoint's challenge.
  const probe = await fetch(input.server_url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'probe', version: '1' } } }),
  });
  if (probe.status !== 401) throw new Error(`expected 401 from the endpoint, got ${probe.status}`);
  const { resourceMetadataUrl, scope } = extractWWWAuthenticateParams(probe);
  if (!resourceMetadataUrl) throw new Error('the 401 has no resource_metadata');
  log('resource metadata at', resourceMetadataUrl.toString(), 'scope', scope);

  const provider = new MemoryProvider();
  const first = await auth(provider, { serverUrl: input.server_url, resourceMetadataUrl, scope });
  if (first !== 'REDIRECT') throw new Error('expected a redirect to authorize, got ' + first);
  const authorizationUrl = provider.authorizationUrl;
  const callback = await browse(authorizationUrl);
  if (callback.searchParams.get('error')) throw new Error('authorization error: ' + callback.search);
  const code = callback.searchParams.get('code');
  const second = await auth(provider, { serverUrl: input.server_url, resourceMetadataUrl, scope, authorizationCode: code });
  if (second !== 'AUTHORIZED') throw new Error('token exchange failed: ' + second);
  const tokens = provider.tokens();
  // A further auth() with a refresh token refreshes.
  const third = await auth(provider, { serverUrl: input.server_url, resourceMetadataUrl, scope });
  if (third !== 'AUTHORIZED') throw new Error('refresh failed: ' + third);
  const refreshed = provider.tokens();
  process.stdout.write(JSON.stringify({
    client_id: provider.clientInformation().client_id,
    authorization_url: authorizationUrl.toString(),
    callback: callback.toString(),
    tokens,
    refreshed,
  }) + '\n');
}

main().catch((e) => { console.error('[ts-client] FAILED:', e?.stack ?? e); process.exit(1); });
