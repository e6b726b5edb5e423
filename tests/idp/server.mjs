// A real OpenID Connect provider (oidc-provider) for authpulse's conformance
// tests (tests/test_conformance_idp.py, started by tests/_idp.py).
// TEST ONLY: its interaction route signs anyone in and consents to anything.
//
//   npm ci && node server.mjs
//
// It listens on 127.0.0.1 on a free port and prints ONE line of JSON on
// stdout once it accepts requests:
//
//   {"issuer": "http://127.0.0.1:PORT", "port": PORT, "clients": {...}, ...}
//
// Errors go to stderr. oidc-provider's error descriptions are generic on
// purpose ("grant request is invalid"); the real reason is in its debug
// output, whose error namespaces this script switches on unless DEBUG is set.
//
// Environment:
//   AUTHPULSE_IDP_ACCESS_TTL   access token lifetime, seconds (default 60)
//   AUTHPULSE_IDP_REFRESH_TTL  refresh token lifetime, seconds (default 3600)
//   AUTHPULSE_IDP_PORT         port to listen on (default 0: a free one)
//   AUTHPULSE_IDP_MTLS_DIR     a directory of PEM files (ca, server, client,
//                              self-signed client): turns on mutual TLS (RFC 8705)
//                              on a second, https listener (see "mutual TLS" below)

import { X509Certificate, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';

process.env.DEBUG ??= [
  'oidc-provider:error',
  'oidc-provider:authentication:error',
  'oidc-provider:server_error',
  'oidc-provider:server_error:trace',
].join(',');

function seconds(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`${name} must be a positive whole number of seconds, not ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}

const ACCESS_TTL = seconds('AUTHPULSE_IDP_ACCESS_TTL', 60);
const REFRESH_TTL = seconds('AUTHPULSE_IDP_REFRESH_TTL', 3600);
const PORT = Number(process.env.AUTHPULSE_IDP_PORT || 0);
const HOST = '127.0.0.1';
// Never served: the test's login helper stops at this redirect and reads the code.
const REDIRECT_URI = 'http://127.0.0.1/authpulse/callback';
const SCOPES = ['openid', 'offline_access', 'api:read', 'api:write', 'admin'];
// every scope but "admin": a client asking for "admin" gets invalid_scope
const CLIENT_SCOPE = 'openid offline_access api:read api:write';

// Resource indicators (RFC 8707). The JWT ones differ only in their signing
// algorithm. A request without a resource gets an opaque access token: the
// one kind oidc-provider introspects and revokes (for a JWT access token both
// answer unsupported_token_type).
const RESOURCES = {
  'urn:authpulse:api': { format: 'jwt', alg: 'RS256' },
  'urn:authpulse:api:ps256': { format: 'jwt', alg: 'PS256' },
  'urn:authpulse:api:es256': { format: 'jwt', alg: 'ES256' },
  'urn:authpulse:api:eddsa': { format: 'jwt', alg: 'EdDSA' },
  'urn:authpulse:opaque': { format: 'opaque' },
};

function clientSecret() {
  // ends with characters that must be form-encoded inside HTTP Basic
  // credentials (RFC 6749 §2.3.1): a client that skips the encoding fails here
  return `${randomBytes(24).toString('base64url')}:+/=%&~!`;
}

function signingKey(kid, type, options) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}

const clients = {
  basic: {
    client_id: 'authpulse-basic',
    client_secret: clientSecret(),
    token_endpoint_auth_method: 'client_secret_basic',
  },
  post: {
    client_id: 'authpulse-post',
    client_secret: clientSecret(),
    token_endpoint_auth_method: 'client_secret_post',
  },
};

// A public client of the device authorization grant (RFC 8628), as a CLI is:
// no secret, the device code and refresh token grants only.
const deviceClient = {
  client_id: 'authpulse-device',
  token_endpoint_auth_method: 'none',
  grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
  response_types: [],
  redirect_uris: [],
  scope: CLIENT_SCOPE,
};

// -- clients that authenticate with a signed assertion (RFC 7523) ------------------
// authpulse-jwt: private_key_jwt, its public JWK registered here and the private
// one printed in the ready line (jwt_clients); authpulse-secret-jwt:
// client_secret_jwt (HS256 with its secret).
function clientKeyPair(kid) {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' },
    privateJwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256' },
  };
}
const jwtKey = clientKeyPair('authpulse-jwt-1');
const jwtClients = {
  private_key_jwt: {
    client_id: 'authpulse-jwt',
    token_endpoint_auth_method: 'private_key_jwt',
    private_jwk: jwtKey.privateJwk,
  },
  client_secret_jwt: {
    client_id: 'authpulse-secret-jwt',
    token_endpoint_auth_method: 'client_secret_jwt',
    client_secret: clientSecret(),
  },
};
const assertionClients = [
  {
    client_id: jwtClients.private_key_jwt.client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [jwtKey.publicJwk] },
  },
  {
    client_id: jwtClients.client_secret_jwt.client_id,
    client_secret: jwtClients.client_secret_jwt.client_secret,
    token_endpoint_auth_method: 'client_secret_jwt',
  },
].map((client) => ({
  ...client,
  grant_types: ['client_credentials', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
  response_types: [],
  redirect_uris: [],
  scope: CLIENT_SCOPE,
}));
// -- end of the assertion clients ---------------------------------------------------
// A public native client of the authorization code grant with PKCE (RFC 8252):
// no secret; as a native client its loopback redirect URI may use any port.
const nativeClient = {
  client_id: 'authpulse-native',
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1/callback'],
  scope: CLIENT_SCOPE,
};

// -- token exchange (RFC 8693) --------------------------------------------------------
// oidc-provider has no token exchange of its own: this registered grant checks the
// subject (and actor) token by looking it up, an opaque access token issued here,
// and issues a client-credentials access token for the one resource or audience
// asked for. A bad token is invalid_grant; another token type is invalid_request.
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const exchangeClient = {
  client_id: 'authpulse-exchange',
  client_secret: clientSecret(),
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: [TOKEN_EXCHANGE, 'client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: CLIENT_SCOPE,
};

async function exchangedToken(p, value, type, what) {
  if (type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`${what}_token_type must be ${ACCESS_TOKEN_TYPE}`);
  }
  const token = (await p.AccessToken.find(value)) ?? (await p.ClientCredentials.find(value));
  if (!token) throw new errors.InvalidGrant(`${what} token is invalid`);
  return token;
}

function registerTokenExchange(p) {
  const parameters = [
    'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
    'resource', 'audience', 'scope', 'requested_token_type',
  ];
  p.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
    const { params, client } = ctx.oidc;
    if (!params.subject_token) throw new errors.InvalidRequest('missing subject_token');
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('only access tokens are issued');
    }
    await exchangedToken(p, params.subject_token, params.subject_token_type, 'subject');
    if (params.actor_token) {
      await exchangedToken(p, params.actor_token, params.actor_token_type, 'actor');
    }
    const targets = [params.resource, params.audience].flat().filter(Boolean);
    if (targets.length !== 1 || !RESOURCES[targets[0]]) {
      throw new errors.InvalidTarget('exactly one known resource or audience is needed');
    }
    const rs = RESOURCES[targets[0]];
    const token = new p.ClientCredentials({ client, scope: 'api:read' });
    token.resourceServer = new p.ResourceServer(targets[0], {
      audience: targets[0],
      scope: 'api:read api:write',
      accessTokenTTL: ACCESS_TTL,
      accessTokenFormat: rs.format,
      ...(rs.alg ? { jwt: { sign: { alg: rs.alg } } } : {}),
    });
    ctx.oidc.entity('ClientCredentials', token);
    ctx.body = {
      access_token: await token.save(),
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope,
    };
  }, parameters, ['resource', 'audience']);
}


// -- mutual TLS (RFC 8705), when AUTHPULSE_IDP_MTLS_DIR is set ---------------------
// The directory holds ca.pem, server.pem/server.key (for 127.0.0.1, signed by
// the CA), client.pem (signed by the CA) and self-signed.pem. An https
// listener asks every peer for a certificate and verifies it against the CA
// without refusing the connection: oidc-provider decides. Discovery
// publishes mtls_endpoint_aliases on that listener. authpulse-mtls
// authenticates with tls_client_auth (the CA-signed certificate's subject),
// authpulse-mtls-self with self_signed_tls_client_auth (its registered x5c);
// both get certificate-bound access tokens (cnf x5t#S256).
const MTLS_DIR = process.env.AUTHPULSE_IDP_MTLS_DIR || '';
const MTLS_PATHS = ['/token', '/token/introspection', '/token/revocation', '/device/auth'];
const MTLS_NAMES = [
  'token_endpoint', 'introspection_endpoint', 'revocation_endpoint',
  'device_authorization_endpoint',
];

function pemOf(der) {
  const lines = der.toString('base64').match(/.{1,64}/g).join('\n');
  return `-----BEGIN CERTIFICATE-----\n${lines}\n-----END CERTIFICATE-----\n`;
}

function peerCertificate(ctx) {
  const peer = ctx.req.socket.getPeerCertificate?.(false);
  return peer && peer.raw ? peer.raw : undefined;
}

function mtlsSetup(dir) {
  if (!dir) return null;
  const read = (name) => readFileSync(join(dir, name));
  const client = new X509Certificate(read('client.pem'));
  const selfSigned = new X509Certificate(read('self-signed.pem'));
  const bound = {
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: CLIENT_SCOPE,
    tls_client_certificate_bound_access_tokens: true,
  };
  return {
    tls: { ca: read('ca.pem'), cert: read('server.pem'), key: read('server.key') },
    clients: [
      {
        ...bound,
        client_id: 'authpulse-mtls',
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: client.subject,
      },
      {
        ...bound,
        client_id: 'authpulse-mtls-self',
        token_endpoint_auth_method: 'self_signed_tls_client_auth',
        jwks: { keys: [{ ...selfSigned.publicKey.export({ format: 'jwk' }), x5c: [selfSigned.raw.toString('base64')] }] },
      },
    ],
    ready: { tls_client: 'authpulse-mtls', self_signed_client: 'authpulse-mtls-self' },
    feature: {
      enabled: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      certificateBoundAccessTokens: true,
      getCertificate(ctx) {
        const raw = peerCertificate(ctx);
        return raw ? pemOf(raw) : undefined;
      },
      certificateAuthorized(ctx) {
        return ctx.req.socket.authorized === true;
      },
      certificateSubjectMatches(ctx, property, expected) {
        const raw = peerCertificate(ctx);
        if (!raw || property !== 'tls_client_auth_subject_dn') return false;
        return new X509Certificate(raw).subject === expected;
      },
    },
  };
}
const MTLS = mtlsSetup(MTLS_DIR);
// -- end of mutual TLS --------------------------------------------------------------

const keys = [
  signingKey('rsa-1', 'rsa', { modulusLength: 2048 }),
  signingKey('ec-1', 'ec', { namedCurve: 'P-256' }),
  signingKey('ed-1', 'ed25519'),
];

// Imported only now, after every key above is made. The debug package reads DEBUG
// when it is first imported. And with the keys made after this import, a start
// now and then hung before its ready line (3 starts in 80 on Node 20, inside key
// generation or export); with them made before it, none in 100.
const { default: Provider, errors } = await import('oidc-provider');

function buildProvider(issuer) {
  return new Provider(issuer, {
    clients: [
      ...Object.values(clients).map((client) => ({
        ...client,
        grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [REDIRECT_URI],
        scope: CLIENT_SCOPE,
      })),
      deviceClient,
      ...assertionClients,
      nativeClient,
      exchangeClient,
      ...(MTLS ? MTLS.clients : []),
    ],
    ...(MTLS ? {
      discovery: { mtls_endpoint_aliases: MTLS.aliases },
      clientAuthMethods: [
        'client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt',
        'none', 'tls_client_auth', 'self_signed_tls_client_auth',
      ],
    } : {}),
    scopes: SCOPES,
    jwks: { keys },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id };
        },
      };
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      ...(MTLS ? { mTLS: MTLS.feature } : {}),
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // the user's side (the /device pages) is driven headless by tests/_idp.py
      deviceFlow: { enabled: true },
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf,
        useGrantedResource: async () => false,
        async getResourceServerInfo(ctx, resourceIndicator) {
          const rs = RESOURCES[resourceIndicator];
          if (!rs) throw new errors.InvalidTarget();
          return {
            scope: 'api:read api:write',
            audience: resourceIndicator,
            accessTokenTTL: ACCESS_TTL,
            accessTokenFormat: rs.format,
            ...(rs.alg ? { jwt: { sign: { alg: rs.alg } } } : {}),
          };
        },
      },
    },
    clientBasedCORS: () => false,
    // every refresh returns a new refresh token and retires the old one;
    // presenting a retired one is invalid_grant and revokes the whole grant
    rotateRefreshToken: true,
    ttl: {
      AccessToken: ACCESS_TTL,
      ClientCredentials: ACCESS_TTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
      RefreshToken: REFRESH_TTL,
    },
  });
}

let provider; // built once the port is known: the issuer names it
let handler;

// -- the test-only interaction route: sign in and consent, no questions asked ------

async function interact(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: String(params.login_hint || 'alice') } };
  } else if (prompt.name === 'consent') {
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    throw new Error(`unexpected interaction prompt ${JSON.stringify(prompt.name)}`);
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

function serve(req, res) {
  if (!handler) {
    res.statusCode = 503;
    res.end();
    return;
  }
  if (req.method === 'GET' && /^\/interaction\/[^/?]+(\?|$)/.test(req.url)) {
    interact(req, res).catch((err) => {
      console.error(`interaction failed: ${err?.stack ?? err}`);
      if (!res.headersSent) {
        res.statusCode = 500;
        res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      }
      res.end(`interaction failed: ${err?.message ?? err}\n`);
    });
    return;
  }
  handler(req, res);
}

const server = createServer(serve);

// the https listener of mutual TLS: listening before the provider is built, so
// that its aliases are known
if (MTLS) {
  const tlsServer = createHttpsServer(
    { ...MTLS.tls, requestCert: true, rejectUnauthorized: false },
    serve,
  );
  tlsServer.on('error', (err) => {
    console.error(`https server error: ${err?.stack ?? err}`);
    process.exit(1);
  });
  await new Promise((resolve) => { tlsServer.listen(0, HOST, resolve); });
  const origin = `https://${HOST}:${tlsServer.address().port}`;
  MTLS.aliases = Object.fromEntries(MTLS_NAMES.map((name, i) => [name, `${origin}${MTLS_PATHS[i]}`]));
  MTLS.ready.aliases = MTLS.aliases;
  MTLS.server = tlsServer;
}

server.on('error', (err) => {
  console.error(`server error: ${err?.stack ?? err}`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  const issuer = `http://${HOST}:${port}`;
  provider = buildProvider(issuer);
  registerTokenExchange(provider);
  handler = provider.callback();
  process.stdout.write(`${JSON.stringify({
    issuer,
    port,
    clients,
    device_client_id: deviceClient.client_id,
    jwt_clients: jwtClients,
    native_client: nativeClient.client_id,
    exchange_client: exchangeClient,
    redirect_uri: REDIRECT_URI,
    access_ttl: ACCESS_TTL,
    refresh_ttl: REFRESH_TTL,
    resources: Object.keys(RESOURCES),
    node: process.version,
    ...(MTLS ? { mtls: MTLS.ready } : {}),
  })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    MTLS?.server?.close();
    MTLS?.server?.closeAllConnections();
    process.exit(0);
  });
}
