import { OAuthError } from '../core/errors.ts';
import { assertValidRedirectUri, isLoopbackHttp } from '../core/redirect-uri.ts';
import type { ClientMetadata } from '../core/client-metadata.ts';

/**
 * The logout members of client metadata: `post_logout_redirect_uris` (OpenID Connect RP-Initiated
 * Logout 1.0 §3.1), `backchannel_logout_uri` and `backchannel_logout_session_required` (OpenID
 * Connect Back-Channel Logout 1.0 §2.2).
 */

const refuse = (description: string): never => {
  throw new OAuthError('invalid_client_metadata', description);
};

function parse(uri: string): URL | undefined {
  try {
    return new URL(uri);
  } catch {
    return undefined;
  }
}

/**
 * Whether a client that registered itself may have logout tokens POSTed to this URI: https, or
 * http to a loopback host where the server's development rule for client-supplied URLs
 * (`client_id_metadata_documents.allow_loopback`) allows it. Back-Channel Logout 1.0 §2.2: an
 * absolute URI, which MAY contain query components and MUST NOT contain a fragment.
 */
export function backchannelUriAllowed(uri: string, allowLoopback: boolean): boolean {
  const url = parse(uri);
  if (!url || url.hash || uri.includes('#')) return false;
  return url.protocol === 'https:' || (allowLoopback && isLoopbackHttp(url));
}

/**
 * Registration-time checks (RFC 7591 at /register, RFC 7592 updates): post-logout redirect URIs
 * follow the redirect URI rules; the back-channel URI must be https (see `backchannelUriAllowed`).
 * Throws `invalid_client_metadata` (RFC 7591 §3.2.2).
 */
export function assertRegisteredLogoutMetadata(metadata: ClientMetadata, allowLoopback: boolean): void {
  for (const uri of metadata.post_logout_redirect_uris ?? []) {
    try {
      assertValidRedirectUri(uri);
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      refuse(`post_logout_redirect_uris: ${error.message.replace(/^redirect_uri /, '')}`);
    }
  }
  const uri = metadata.backchannel_logout_uri;
  if (uri !== undefined && !backchannelUriAllowed(uri, allowLoopback)) {
    refuse(`backchannel_logout_uri ${JSON.stringify(uri)} must be an absolute https URI without a fragment${allowLoopback ? ' (or http on a loopback host)' : ''}`);
  }
}

/**
 * Start-time checks of a configured client: an administrator chose the URIs, so plain http and
 * internal hosts are allowed, but never a fragment, another scheme or a relative URI.
 */
export function assertConfiguredLogoutMetadata(clientId: string, config: { post_logout_redirect_uris: string[]; backchannel_logout_uri?: string }): void {
  for (const uri of [...config.post_logout_redirect_uris, ...(config.backchannel_logout_uri === undefined ? [] : [config.backchannel_logout_uri])]) {
    const url = parse(uri);
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.hash || uri.includes('#')) {
      throw new Error(`client ${clientId}: ${JSON.stringify(uri)} must be an absolute http or https URI without a fragment`);
    }
  }
}

/** The logout members of a configured client, as stored client metadata. */
export function configuredLogoutMetadata(config: { post_logout_redirect_uris: string[]; backchannel_logout_uri?: string; backchannel_logout_session_required: boolean }): Partial<ClientMetadata> {
  return {
    ...(config.post_logout_redirect_uris.length > 0 ? { post_logout_redirect_uris: config.post_logout_redirect_uris } : {}),
    ...(config.backchannel_logout_uri !== undefined
      ? { backchannel_logout_uri: config.backchannel_logout_uri, backchannel_logout_session_required: config.backchannel_logout_session_required }
      : {}),
  };
}
