import { authorizationCodeGrant } from './authorization-code.ts';
import { clientCredentialsGrant } from './client-credentials.ts';
import { refreshTokenGrant } from './refresh-token.ts';
import { tokenExchangeGrant } from './token-exchange.ts';
import { deviceCodeGrant } from './device-code.ts';
import { jwtBearerGrant } from './jwt-bearer.ts';
import type { GrantHandler } from './types.ts';

/** The grant registry. Adding a grant type is adding a file and a line here. */
export const grants: ReadonlyMap<string, GrantHandler> = new Map(
  [authorizationCodeGrant, refreshTokenGrant, clientCredentialsGrant, tokenExchangeGrant, deviceCodeGrant, jwtBearerGrant].map((g) => [g.grantType, g]),
);

export type { GrantHandler } from './types.ts';
