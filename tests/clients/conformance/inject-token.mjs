// Preloaded into the conformance suite (`node --import ./inject-token.mjs ...`): the suite sends
// no Authorization header, and every dataplane request needs one. Adds
// `Authorization: Bearer $GATEHOUSE_CONFORMANCE_TOKEN` to requests for $GATEHOUSE_CONFORMANCE_ORIGIN,
// whether they go through fetch, undici.request (both use undici's global dispatcher) or
// node:http (raw header tests).
import http from 'node:http';
import { syncBuiltinESMExports } from 'node:module';
import { Agent, setGlobalDispatcher } from 'undici';

const token = process.env.GATEHOUSE_CONFORMANCE_TOKEN;
const origin = process.env.GATEHOUSE_CONFORMANCE_ORIGIN;
if (!token || !origin) {
  throw new Error('GATEHOUSE_CONFORMANCE_TOKEN and GATEHOUSE_CONFORMANCE_ORIGIN must be set');
}

function withAuthorization(headers) {
  const value = `Bearer ${token}`;
  if (headers == null) return { authorization: value };
  if (Array.isArray(headers)) {
    const out = [];
    for (let i = 0; i < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() !== 'authorization') out.push(headers[i], headers[i + 1]);
    }
    out.push('authorization', value);
    return out;
  }
  if (typeof headers[Symbol.iterator] === 'function') {
    const out = {};
    for (const [k, v] of headers) out[k] = v;
    out.authorization = value;
    return out;
  }
  return { ...headers, authorization: value };
}

const agent = new Agent().compose((dispatch) => (opts, handler) => {
  const target = String(opts.origin ?? '');
  if (target.replace(/\/$/, '') === origin) {
    opts = { ...opts, headers: withAuthorization(opts.headers) };
  }
  return dispatch(opts, handler);
});
setGlobalDispatcher(agent);

// node:http: requests built from an options object (the suite's raw header checks).
const target = new URL(origin);
for (const name of ['request', 'get']) {
  const original = http[name];
  http[name] = function (options, ...rest) {
    if (options && typeof options === 'object' && !(options instanceof URL)) {
      const host = options.hostname ?? options.host;
      const port = String(options.port ?? '');
      if (host === target.hostname && port === target.port) {
        const headers = { ...(options.headers ?? {}) };
        for (const k of Object.keys(headers)) if (k.toLowerCase() === 'authorization') delete headers[k];
        headers.authorization = `Bearer ${token}`;
        options = { ...options, headers };
      }
    }
    return original.call(this, options, ...rest);
  };
}
syncBuiltinESMExports();
