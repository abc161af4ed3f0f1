// A real OpenID provider (oidc-provider 9) for the integration tests and the demo.
//
//   node tests/idp/server.mjs [--port 0] [--ttl 300] [--alg RS256|ES256]
//                             [--clients '<JSON array>'] [--exit-on-stdin-close]
//
// Listens on 127.0.0.1 only and prints one JSON line on stdout when ready:
//   {"ready":true,"port":..,"issuer":"http://127.0.0.1:<port>","jwks_path":"/jwks",..}
//
// client_credentials tokens are JWTs (typ at+jwt, `kid` in the header) for the
// resource `api://default` (or any absolute URI sent as `resource=`), with
// claims iss, sub, client_id, aud, iat, exp, jti, scope, plus `plan` and
// `tenant` from the client's metadata. Without a `scope` parameter a client
// gets its registered scope (or all of --scope). A client must authenticate
// with its registered token_endpoint_auth_method (basic vs post is enforced).
//
// Test-only admin endpoints (refused unless the peer is loopback):
//   POST /admin/rotate           new signing key becomes active; old ones stay published
//   POST /admin/remove-old       publish only the active key
//   POST /admin/jwks-mode        body: ok | down | garbage | huge | wrong-types | slow:<ms> | stale:<ms>
//   POST /admin/token-mode       body: ok | down | reject | slow:<ms>
//   GET  /admin/stats            request counters, modes and keys
//   POST /admin/reset-stats      zero the counters
//
// oidc-provider builds its keystore once, so a key change builds a new
// Provider over the same keys; the http server just forwards to the current one.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    ttl: { type: 'string', default: '300' },
    alg: { type: 'string', default: 'RS256' },
    audience: { type: 'string', default: 'api://default' },
    scope: { type: 'string', default: 'api:read api:write' },
    clients: { type: 'string' },
    'exit-on-stdin-close': { type: 'boolean', default: false },
  },
});

const TTL = Number(args.ttl);
const ALG = args.alg;
const SCOPES = args.scope.split(' ');
if (!['RS256', 'ES256'].includes(ALG)) throw new Error(`--alg must be RS256 or ES256, not ${ALG}`);
if (!Number.isInteger(TTL) || TTL <= 0) throw new Error(`--ttl must be a positive integer, not ${args.ttl}`);

const DEFAULT_CLIENTS = [
  { client_id: 'svc-a', client_secret: 'svc-a-secret', token_endpoint_auth_method: 'client_secret_basic',
    plan: 'pro', tenant: 'acme', scope: 'api:read api:write' },
  { client_id: 'svc-b', client_secret: 'svc-b-secret', token_endpoint_auth_method: 'client_secret_post',
    plan: 'free', tenant: 'globex', scope: 'api:read' },
];
const CLIENTS = (args.clients ? JSON.parse(args.clients) : DEFAULT_CLIENTS).map((c) => ({
  grant_types: ['client_credentials'], response_types: [], redirect_uris: [], ...c,
}));

// ---- state shared by every Provider instance --------------------------------

const keys = []; // private JWKs, oldest first; the last one signs
let published = []; // the kids served at the JWKS endpoint
const state = { jwksMode: 'ok', tokenMode: 'ok' };
const freshStats = () => ({ jwks_fetches: 0, discovery_fetches: 0, token_requests: 0, token_requests_by_client: {}, tokens_issued: 0 });
let stats = freshStats();
let hugeBody; // built on first use

function newKey() {
  const { privateKey } = ALG === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `key-${keys.length + 1}-${crypto.randomBytes(4).toString('hex')}`;
  keys.push({ ...privateKey.export({ format: 'jwk' }), kid, alg: ALG, use: 'sig' });
  published.push(kid);
}
const activeKid = () => keys.at(-1).kid;
const publicJwk = ({ d, p, q, dp, dq, qi, ...pub }) => pub;
const publishedKeys = () => keys.filter((k) => published.includes(k.kid)).map(publicJwk);

// ---- the provider ------------------------------------------------------------

let provider; // the current Provider
let handler; // its request handler

function buildProvider(issuer) {
  const p = new Provider(issuer, {
    clients: CLIENTS,
    extraClientMetadata: { properties: ['plan', 'tenant'] },
    scopes: ['openid', 'offline_access', ...SCOPES],
    jwks: { keys: keys.filter((k) => published.includes(k.kid)) },
    clientDefaults: { id_token_signed_response_alg: ALG },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    ttl: { AccessToken: TTL, ClientCredentials: TTL },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // No `resource` parameter means the default audience. (Without a
        // resource server oidc-provider issues opaque tokens.)
        defaultResource: () => args.audience,
        getResourceServerInfo(ctx, resource, client) {
          // Like most IdPs, a request without `scope` gets the client's scope.
          if (ctx.oidc.route === 'token' && !ctx.oidc.params.scope) {
            ctx.oidc.params.scope = client.scope ?? SCOPES.join(' ');
          }
          return {
            scope: SCOPES.join(' '),
            audience: resource,
            accessTokenTTL: TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: ALG, kid: activeKid() } },
          };
        },
      },
    },
    // Custom claims in client_credentials access tokens, from client metadata.
    extraTokenClaims(ctx, token) {
      if (token.kind !== 'ClientCredentials') return undefined;
      const { plan, tenant } = ctx.oidc.client;
      return { plan, tenant };
    },
  });
  p.use(testHooks);
  p.on('server_error', (ctx, err) => console.error('server_error', err));
  provider = p;
  handler = p.callback();
}

// ---- test hooks: admin endpoints, failure modes, counters (Koa middleware) ----

async function testHooks(ctx, next) {
  const { path, method } = ctx;
  if (path.startsWith('/admin/')) return admin(ctx);
  // oidc-provider builds endpoint URLs from the Host header; pin them to the
  // issuer so discovery is the same whatever name the IdP was reached by.
  ctx.request.header.host = new URL(provider.issuer).host;

  if (path === '/.well-known/openid-configuration') stats.discovery_fetches += 1;

  if (path === '/jwks' && method === 'GET') {
    stats.jwks_fetches += 1;
    const mode = state.jwksMode;
    if (mode.startsWith('slow:')) await new Promise((r) => setTimeout(r, Number(mode.slice(5))));
    if (mode === 'down') return json(ctx, 503, { error: 'jwks down (test mode)' });
    if (mode === 'garbage') {
      ctx.type = 'application/json';
      ctx.body = '<html>this is not JSON {{{';
      return undefined;
    }
    if (mode === 'huge') return json(ctx, 200, hugeJwks());
    if (mode === 'wrong-types') return json(ctx, 200, wrongTypesJwks());
    if (mode.startsWith('stale:')) {
      // The keys published now, sent after a delay: a fetch in flight misses
      // a key published meanwhile.
      await next();
      await new Promise((r) => setTimeout(r, Number(mode.slice(6))));
      return undefined;
    }
    return next(); // ok and slow:<ms>: oidc-provider serves the published keys
  }

  if (path === '/token' && method === 'POST') {
    stats.token_requests += 1;
    const tokenMode = state.tokenMode;
    if (tokenMode.startsWith('slow:')) await new Promise((r) => setTimeout(r, Number(tokenMode.slice(5))));
    if (tokenMode === 'down' || tokenMode === 'reject') {
      countClient(basicClientId(ctx) ?? new URLSearchParams(await readBody(ctx)).get('client_id'));
      if (state.tokenMode === 'down') return json(ctx, 503, { error: 'temporarily_unavailable' });
      return json(ctx, 401, { error: 'invalid_client', error_description: 'client authentication failed (test mode)' });
    }
    await next();
    const { client, params } = ctx.oidc ?? {};
    countClient(client?.clientId ?? basicClientId(ctx) ?? params?.client_id);
    // oidc-provider accepts client_secret_basic and _post from any client
    // with a secret; be strict so tests can catch a client using the wrong one.
    const used = params?.client_secret ? 'client_secret_post' : 'client_secret_basic';
    if (ctx.status === 200 && client && client.clientAuthMethod !== used) {
      return json(ctx, 401, { error: 'invalid_client', error_description: `client must use ${client.clientAuthMethod}, not ${used}` });
    }
    if (ctx.status === 200) stats.tokens_issued += 1;
    return undefined;
  }
  return next();
}

async function admin(ctx) {
  const peer = ctx.req.socket.remoteAddress;
  if (!['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(peer)) return json(ctx, 403, { error: 'loopback only' });
  const body = ctx.method === 'POST' ? (await readBody(ctx)).trim() : '';
  switch (`${ctx.method} ${ctx.path}`) {
    case 'GET /admin/stats':
      return json(ctx, 200, { ...stats, jwks_mode: state.jwksMode, token_mode: state.tokenMode, active_kid: activeKid(), published_kids: [...published] });
    case 'POST /admin/reset-stats':
      stats = freshStats();
      return json(ctx, 200, stats);
    case 'POST /admin/rotate':
      newKey();
      buildProvider(provider.issuer);
      return json(ctx, 200, { active_kid: activeKid(), published_kids: published });
    case 'POST /admin/remove-old':
      published = [activeKid()];
      buildProvider(provider.issuer);
      return json(ctx, 200, { active_kid: activeKid(), published_kids: published });
    case 'POST /admin/jwks-mode':
      if (!/^(ok|down|garbage|huge|wrong-types|slow:\d+|stale:\d+)$/.test(body)) return json(ctx, 400, { error: `unknown jwks mode ${body}` });
      state.jwksMode = body;
      return json(ctx, 200, { jwks_mode: body });
    case 'POST /admin/token-mode':
      if (!/^(ok|down|reject|slow:\d+)$/.test(body)) return json(ctx, 400, { error: `unknown token mode ${body}` });
      state.tokenMode = body;
      return json(ctx, 200, { token_mode: body });
    default:
      return json(ctx, 404, { error: 'no such admin endpoint' });
  }
}

function json(ctx, status, value) {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = typeof value === 'string' ? value : JSON.stringify(value);
}

function countClient(id) {
  const key = id || '(unknown)';
  stats.token_requests_by_client[key] = (stats.token_requests_by_client[key] ?? 0) + 1;
}

function basicClientId(ctx) {
  const m = /^Basic\s+(\S+)$/i.exec(ctx.get('authorization'));
  if (!m) return undefined;
  const user = Buffer.from(m[1], 'base64').toString().split(':')[0];
  return decodeURIComponent(user.replace(/\+/g, ' '));
}

async function readBody(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

// The published keys followed by ~4 MB of well-formed but useless RSA keys.
function hugeJwks() {
  hugeBody ??= JSON.stringify({
    keys: Array.from({ length: 9000 }, (_, i) => ({
      kty: 'RSA', kid: `filler-${i}`, use: 'sig', alg: 'RS256', e: 'AQAB',
      n: crypto.randomBytes(256).toString('base64url'),
    })),
  });
  const real = JSON.stringify(publishedKeys()).slice(1, -1);
  return `{"keys":[${real},${hugeBody.slice('{"keys":['.length)}`;
}

// Entries of the wrong JSON types, then each published key followed by a
// different key claiming the same kid.
function wrongTypesJwks() {
  const other = ALG === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const impostor = other.publicKey.export({ format: 'jwk' });
  return {
    keys: [
      { kty: 42, kid: 'wrong-1', use: 'sig' },
      { kty: 'RSA', kid: 7, n: 12345, e: true, alg: ['RS256'] },
      'not-an-object',
      null,
      [],
      ...publishedKeys().flatMap((k) => [k, { ...impostor, kid: k.kid, alg: ALG, use: 'sig' }]),
    ],
  };
}

// ---- start -------------------------------------------------------------------

newKey();
const server = http.createServer((req, res) => handler(req, res));
server.listen(Number(args.port), '127.0.0.1', () => {
  const { port } = server.address();
  buildProvider(`http://127.0.0.1:${port}`);
  console.log(JSON.stringify({
    ready: true, port, issuer: provider.issuer,
    discovery_path: '/.well-known/openid-configuration', jwks_path: '/jwks', token_path: '/token',
    alg: ALG, audience: args.audience, ttl: TTL, active_kid: activeKid(), clients: CLIENTS.map((c) => c.client_id),
  }));
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (args['exit-on-stdin-close']) {
  process.stdin.on('end', stop).on('error', stop).resume();
}
