/**
 * `oidc-provider` (v9) configured like bench/mandate-server.ts, alone in a process: the default
 * in-memory adapter, one client `bench` (client_secret_basic, client_credentials only) with the
 * BENCH_SECRET secret, and one resource server `https://api.bench.test` (scope `api:read`) that gets
 * ES256-signed JWT access tokens, also used when a request names no resource. An ES256 key is
 * generated at start. Prints one ready line on stdout.
 */
import { randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { Provider, errors } from 'oidc-provider';
import { ACCESS_TOKEN_TTL, BENCH_CLIENT_ID, BENCH_RESOURCE, BENCH_SCOPE, announceReady, exitOnSignal, freePort } from './lib/child.ts';

const secret = process.env.BENCH_SECRET;
if (!secret) throw new Error('BENCH_SECRET is not set');

const port = Number(process.env.BENCH_PORT) || (await freePort());
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const privateJwk = await exportJWK(privateKey);
const signingKey = { ...privateJwk, kid: await calculateJwkThumbprint(privateJwk), alg: 'ES256', use: 'sig' };

const resourceServer = {
  scope: BENCH_SCOPE,
  audience: BENCH_RESOURCE,
  accessTokenTTL: ACCESS_TOKEN_TTL,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'ES256' } },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: BENCH_CLIENT_ID,
      client_secret: secret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ttl: { ClientCredentials: ACCESS_TOKEN_TTL },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => BENCH_RESOURCE,
      getResourceServerInfo: (_ctx: unknown, resource: string) => {
        if (resource !== BENCH_RESOURCE) throw new errors.InvalidTarget();
        return resourceServer;
      },
      useGrantedResource: () => true,
    },
  },
});
provider.on('server_error', (_ctx, error) => console.error('oidc-provider server_error', error));

const server = provider.listen(port, '127.0.0.1');
await new Promise<void>((resolve, reject) => {
  server.once('listening', () => resolve());
  server.once('error', reject);
});
exitOnSignal(
  () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
);
announceReady({ name: 'oidc-provider', url: issuer, tokenEndpoint: `${issuer}/token` });
