/**
 * The agent SDK as the client of the MCP conformance suite (`conformance client --command …`):
 * the suite appends the MCP server URL as the last argument and names the scenario (and, for
 * some, a context of pre-registered credentials) in the environment. Exit 0 = the flow completed.
 * Run by test/interop/conformance-client.test.ts; by hand:
 *   .cache/conformance/node_modules/node/bin/node .cache/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js \
 *     client --scenario auth/metadata-default --command "$(which node) --import tsx $PWD/test/interop/conformance-client.ts"
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CredentialStore, MandateAgent, type AgentOptions } from '../../src/agent/index.ts';

interface Context {
  client_id?: string;
  client_secret?: string;
  private_key_pem?: string;
  signing_algorithm?: string;
  idp_client_id?: string;
  idp_id_token?: string;
  idp_issuer?: string;
  idp_token_endpoint?: string;
}

const serverUrl = process.argv[process.argv.length - 1]!;
const scenario = (process.env.MCP_CONFORMANCE_SCENARIO ?? '').replace(/^auth\//, '');
const context = (process.env.MCP_CONFORMANCE_CONTEXT ? JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT) : {}) as Context;

/** The agent's options for a scenario: the mode it tests, and the credentials its context gives. */
function optionsFor(name: string): Partial<AgentOptions> {
  switch (name) {
    case 'client-credentials-basic':
      return { mode: 'client', clientId: context.client_id, clientSecret: context.client_secret };
    case 'client-credentials-jwt':
      return { mode: 'client', clientId: context.client_id, clientKey: { privateKeyPem: context.private_key_pem, alg: context.signing_algorithm ?? 'ES256' } };
    case 'cross-app-access-complete-flow':
    case 'enterprise-managed-authorization':
      return {
        mode: 'enterprise',
        clientId: context.client_id,
        clientSecret: context.client_secret,
        enterprise: { idpIssuer: context.idp_issuer, idpTokenEndpoint: context.idp_token_endpoint, idpClientId: context.idp_client_id ?? '', idToken: context.idp_id_token ?? '' },
      };
    default:
      // The scenario ASes answer a registration with a secret: that must not make the agent a
      // delegated one (it would exchange tokens the scenario does not issue).
      return { mode: 'direct', clientId: context.client_id, clientSecret: context.client_secret };
  }
}

const home = mkdtempSync(join(tmpdir(), 'mandate-conformance-agent-'));
const options = optionsFor(scenario);
const agent = new MandateAgent({
  mcpUrl: serverUrl,
  store: new CredentialStore(join(home, 'credentials.json')),
  callbackPort: 0,
  clientMetadataUrl: 'https://conformance-test.local/client-metadata.json',
  // The scenario ASes redirect at once to the callback: following the redirect completes the sign-in.
  onAuthorizationUrl: async (url) => {
    await fetch(url).catch(() => undefined);
  },
  ...options,
});

let code = 0;
try {
  if (options.mode === 'direct' || options.mode === 'delegated') await agent.login();
  const client = await agent.connect('mandate-conformance-client');
  const tools = await client.listTools();
  if (tools.tools.some((tool) => tool.name === 'test-tool')) await client.callTool({ name: 'test-tool', arguments: {} });
  await client.close();
  console.log(`ok ${scenario}`);
} catch (error) {
  console.error(`error ${scenario}: ${(error as Error).message}`);
  code = 1;
} finally {
  rmSync(home, { recursive: true, force: true });
}
process.exit(code);
