// A real OpenID Connect provider (the `oidc-provider` package, independent of Gatehouse) for
// tests. Started with one JSON argument:
//   { "mode": "normal" | "wrong_nonce" | "wrong_audience" | "wrong_issuer",
//     "clients": [{ "client_id", "client_secret", "redirect_uris": [..] }],
//     "accounts": { "<email>": { "sub", "email_verified", "name" } } }
// It prints {"type":"listening","port":N,"issuer":".."} on stdout and exits when stdin closes.
//
// Login is automatic: the interaction page logs in the account named by the authorization
// request's login_hint (an email of `accounts`) and grants the requested scopes, so a test can
// drive the whole code flow with plain HTTP redirects.
//
// The modes make the provider itself misbehave, so that the relying party's checks are tested
// against real, correctly signed ID tokens:
//   wrong_nonce    - the authorization request's nonce is replaced before the provider sees it,
//                    so the ID token carries another nonce;
//   wrong_audience - the RP uses client id "<id>-alias"; the provider only knows "<id>" and the
//                    alias is translated on the way in, so the ID token's aud is "<id>";
//   wrong_issuer   - discovery at "<issuer>/other" describes issuer "<issuer>/other" with this
//                    provider's endpoints, whose ID tokens say iss "<issuer>".
import http from 'node:http';
import Provider from 'oidc-provider';

const options = JSON.parse(process.argv[2] || '{}');
const mode = options.mode || 'normal';
const accounts = options.accounts || {};
const bySub = Object.fromEntries(Object.entries(accounts).map(([email, a]) => [a.sub, { email, ...a }]));

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: (options.clients || []).map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      redirect_uris: c.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    conformIdTokenClaims: false,
    cookies: { keys: ['gatehouse-test-provider-cookie-key'] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, sub) => {
      const account = bySub[sub];
      if (!account) return undefined;
      return {
        accountId: sub,
        claims: async () => ({ sub, email: account.email, email_verified: account.email_verified !== false, name: account.name || '' }),
      };
    },
  });

  provider.use(async (ctx, next) => {
    if (ctx.path.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      const hint = details.params.login_hint;
      const account = accounts[hint] || Object.values(accounts)[0];
      const accountId = account.sub;
      const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      const target = await provider.interactionResult(ctx.req, ctx.res, {
        login: { accountId },
        consent: { grantId },
      }, { mergeWithLastSubmission: false });
      ctx.status = 303;
      ctx.redirect(target);
      return;
    }
    if (mode === 'wrong_nonce' && ctx.path === '/auth' && ctx.query.nonce) {
      const q = new URLSearchParams(ctx.querystring);
      q.set('nonce', 'a-nonce-the-relying-party-never-sent');
      ctx.querystring = q.toString();
    }
    if (mode === 'wrong_audience') {
      if (ctx.path === '/auth' && ctx.query.client_id) {
        const q = new URLSearchParams(ctx.querystring);
        q.set('client_id', q.get('client_id').replace(/-alias$/, ''));
        ctx.querystring = q.toString();
      }
      const auth = ctx.req.headers.authorization;
      if (ctx.path === '/token' && auth && auth.startsWith('Basic ')) {
        const [id, secret] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
        const real = decodeURIComponent(id).replace(/-alias$/, '');
        ctx.req.headers.authorization = 'Basic ' + Buffer.from(`${encodeURIComponent(real)}:${secret}`).toString('base64');
      }
    }
    if (mode === 'wrong_issuer' && ctx.path === '/other/.well-known/openid-configuration') {
      ctx.path = '/.well-known/openid-configuration';
      await next();
      if (ctx.body && typeof ctx.body === 'object') ctx.body = { ...ctx.body, issuer: `${issuer}/other` };
      return;
    }
    await next();
  });

  server.on('request', provider.callback());
  process.stdout.write(JSON.stringify({ type: 'listening', port, issuer }) + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
