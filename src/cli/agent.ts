import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { decodeJwt } from 'jose';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { MandateAgent, type CallToolOptions } from '../agent/agent.ts';
import { ApprovalRequiredError, clockTime, type ApprovalProgress, type ApprovalRequest } from '../agent/approval.ts';
import { displayUser, resourceScopes } from '../agent/display.ts';
import { AgentError } from '../agent/errors.ts';
import { METHOD_NAMES, type RegistrationPreference } from '../agent/registration.ts';
import type { DpopSetting } from '../agent/dpop.ts';
import type { AgentMode, EnterpriseOptions } from '../agent/options.ts';
import { parseScope } from '../core/scopes.ts';
import { chatWithModel, modelFromEnv } from './agent-chat.ts';
import { forTerminal } from '../agent/terminal.ts';

// Everything the agent CLI prints goes through these: much of it comes from servers (names, tool
// output, error descriptions), and none of it may drive the terminal.
const out = (text: string) => process.stdout.write(forTerminal(text));
const err = (text: string) => process.stderr.write(forTerminal(text));

const USAGE = `mandate agent — the sample AI agent (seed 001): acts for you at an MCP server

Usage: mandate agent <command> [options]
  login [--device]      sign in through the agent (opens the browser, or prints the URL); with
                        --idp, sign in at the enterprise IdP instead, once: later commands run the
                        ID-JAG chain without a browser
  whoami                who the agent acts for, with which scopes (in client, enterprise and
                        workload mode: the claims of the token the MCP server gets)
  tools                 the MCP server's tools
  call <tool> [--args '<json>']   call a tool (signs in again for a missing scope: step-up; when
                        the call needs your approval, says where to give it and waits)
  chat                  a prompt loop: /tools, /call <tool> <json>, /exit; with OPENAI_API_KEY (and
                        OPENAI_BASE_URL, OPENAI_MODEL) a model chooses the tools
  tokens                the actor, subject and exchanged tokens' claims side by side
  logout [--forget-registration]
                        forget the sign-in (and revoke it) — with --idp, the one at the IdP; with
                        the flag, also the agent's own registration (deleted at the AS when it can be)

Options:
  --mcp-url <url>       the MCP endpoint (default http://localhost:8080/mcp, the demo gateway)
  --client-id <id>      the agent's pre-registered client id (or AGENT_CLIENT_ID); its secret comes
                        from AGENT_SECRET. Without one, login registers the agent and keeps it
  --register <how>      auto (default: client ID metadata document, dynamic registration, agent
                        registration, in the MCP spec's order), metadata-document, dynamic or agent
  --client-metadata-url <https url>   the agent's client ID metadata document
  --mode <mode>         how the agent gets the MCP server's token: delegated (you sign in through
                        the agent, which exchanges your token with its own as actor), direct (you
                        sign in for the MCP server; a public client), client (no person: the
                        agent's own token, client credentials), enterprise (your enterprise IdP
                        sign-in, through an ID-JAG; see --idp), workload (the platform's identity;
                        see --workload-token-file). Default: delegated with AGENT_SECRET, else direct
  --dpop <how>          DPoP-bound tokens (RFC 9449): auto (default: when the AS offers ES256),
                        always (a Bearer token is refused), never. The proof key is made once per
                        client and kept with the credentials (0600)
  --idp <issuer>        enterprise mode: the enterprise IdP where you sign in (implies --mode
                        enterprise); needs --idp-client-id and the agent's --client-id (and
                        AGENT_SECRET) at the MCP server's AS
  --idp-client-id <id>  the agent's client at the IdP; its secret comes from IDP_CLIENT_SECRET
  --workload-token-file <path>   workload mode: the platform's JWT (a Kubernetes service account
                        token, a SPIFFE JWT-SVID), read afresh for every token (implies --mode
                        workload); with --client-id, client credentials authenticated by it
  --scope "<scopes>"    scopes to ask for at login (default: what the MCP server lists)
  --callback-port <n>   port of the loopback redirect (default 3000; 0 = any free port)
  --agent-resource <u>  the agent's own resource at the AS (default http://localhost:3000)
  --no-browser          print the sign-in URL instead of opening a browser
  --device              sign in on another device (RFC 8628): a URL and a code to enter there
  --approve <how>       a call that needs your approval (call, chat's /call): browser (default:
                        print the approval link) or push (no link: approve it among your pending
                        approvals, <issuer>/approvals, from any device); then wait and call again
  --open                also open the approval link in the browser (with --approve browser)
  --no-wait             do not wait for an approval: say where to give it and exit 13; run the
                        same call again once it is approved

Environment: AGENT_CLIENT_ID, AGENT_SECRET (the agent's client at the MCP server's AS),
IDP_CLIENT_SECRET (its client at the IdP), MANDATE_AGENT_HOME (where credentials are kept).

Exit codes: 2 usage, 3 a server cannot be reached, 4 consent denied, 5 agent disabled or
credentials refused, 6 scope refused, 7 not signed in, 8 the tool failed, 9 protocol error,
10 the MCP server refused the call (a policy rule, a rate limit) — in enterprise and workload
mode also the IdP or the AS refusing the ID-JAG or the platform token, 11 you denied the approval the
call needed, 12 the approval expired (or was used by another call) before it was given, 13 the call
needs your approval and --no-wait was given, 130 stopped with Ctrl-C while waiting for an approval.
`;

const REGISTRATION_PREFERENCES: readonly RegistrationPreference[] = ['auto', 'metadata-document', 'dynamic', 'agent'];
const MODES: readonly AgentMode[] = ['delegated', 'direct', 'client', 'enterprise', 'workload'];
const DPOP_SETTINGS: readonly DpopSetting[] = ['auto', 'always', 'never'];

/** The modes where no person signs in through the agent: the CLI shows the MCP server's token instead. */
const PERSONLESS: readonly AgentMode[] = ['client', 'enterprise', 'workload'];

/** The mode and its inputs from the flags, or the usage error that says what is missing. */
export function modeOf(values: { mode?: string; idp?: string; 'idp-client-id'?: string; 'workload-token-file'?: string; 'client-id'?: string }, env: NodeJS.ProcessEnv = process.env):
  | { error: string }
  | { mode?: AgentMode; enterprise?: EnterpriseOptions; workloadIdentity?: { tokenFile: string } } {
  const { idp, 'idp-client-id': idpClientId, 'workload-token-file': tokenFile } = values;
  if (values.mode !== undefined && !MODES.includes(values.mode as AgentMode)) return { error: `--mode is one of ${MODES.join(', ')}` };
  const named = values.mode as AgentMode | undefined;
  if (idp !== undefined && tokenFile !== undefined) return { error: '--idp (enterprise mode) and --workload-token-file (workload mode) do not go together' };
  const mode = named ?? (idp !== undefined ? 'enterprise' : tokenFile !== undefined ? 'workload' : undefined);
  if (idp !== undefined && mode !== 'enterprise') return { error: `--idp is for enterprise mode, not --mode ${mode}` };
  if (tokenFile !== undefined && mode !== 'workload') return { error: `--workload-token-file is for workload mode, not --mode ${mode}` };
  if (idpClientId !== undefined && idp === undefined) return { error: '--idp-client-id names the agent at an IdP: give the IdP too (--idp <issuer>)' };
  if (mode === 'enterprise') {
    if (idp === undefined) return { error: 'enterprise mode needs the IdP: --idp <issuer> --idp-client-id <id> (its secret in IDP_CLIENT_SECRET)' };
    try {
      new URL(idp);
    } catch {
      return { error: `--idp is the IdP's issuer URL, not ${JSON.stringify(idp)}` };
    }
    if (!idpClientId) return { error: '--idp needs --idp-client-id, the agent\'s client at the IdP (its secret in IDP_CLIENT_SECRET, never on the command line)' };
    if (!values['client-id']) return { error: "enterprise mode needs the agent's client at the MCP server's AS, which takes the ID-JAG: --client-id (or AGENT_CLIENT_ID) and AGENT_SECRET" };
    return { mode, enterprise: { idpIssuer: idp, idpClientId, idpClientSecret: env.IDP_CLIENT_SECRET || undefined } };
  }
  if (mode === 'workload') {
    if (!tokenFile) return { error: 'workload mode needs the platform token: --workload-token-file <path>' };
    return { mode, workloadIdentity: { tokenFile } };
  }
  return { mode };
}

function openBrowser(url: string): void {
  const command = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
  try {
    spawn(command, [url], { stdio: 'ignore', detached: true }).on('error', () => undefined).unref();
  } catch {
    // The URL is printed anyway.
  }
}

const textOf = (result: Record<string, unknown>) =>
  ((result.content as { type: string; text?: string }[] | undefined) ?? []).map((part) => (part.type === 'text' ? part.text : `[${part.type}]`)).join('\n');

/** The claims of the three tokens as rows: claim, actor, subject, exchanged. */
export function tokensTable(tokens: { actor?: Record<string, unknown>; subject: Record<string, unknown>; mcp: Record<string, unknown> }): string {
  const columns = [tokens.actor ?? {}, tokens.subject, tokens.mcp];
  const show = (value: unknown) => (value === undefined ? '—' : typeof value === 'string' ? value : JSON.stringify(value));
  const order = ['sub', 'aud', 'client_id', 'scope', 'acr', 'may_act', 'act', 'exp'];
  const names = [...new Set([...order, ...columns.flatMap((c) => Object.keys(c))])].filter((name) => !['iat', 'jti', 'iss', 'nbf', 'auth_time', 'sid'].includes(name));
  const rows = [['claim', 'actor token (agent)', 'subject token (you, via the agent)', 'exchanged token (for the MCP server)'], ...names.map((name) => [name, ...columns.map((c) => show(c[name]))])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

async function withClient<T>(agent: MandateAgent, run: (client: Client) => Promise<T>): Promise<T> {
  const client = await agent.connect();
  try {
    return await run(client);
  } finally {
    await client.close();
  }
}

/** How the person wants to give the approvals calls need. */
export interface ApprovalChoice {
  how: 'browser' | 'push';
  open: boolean;
  wait: boolean;
}

const clock = (seconds: number) => `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;

/** What the person sees of the approvals of one command (or one chat line). */
interface ApprovalUi {
  choice: ApprovalChoice;
  handlers: Pick<CallToolOptions, 'onApproval' | 'onApprovalProgress'>;
  /** Whether a wait is under way (then Ctrl-C stops the wait, not the command). */
  waiting(): boolean;
  /** The call is over: the countdown line gives way to what follows. */
  settle(): void;
}

/**
 * The approval handlers of a call: where to approve (stderr: stdout stays the tool's result), and
 * a progress line while waiting.
 */
function approvalUi(choice: ApprovalChoice): ApprovalUi {
  const live = process.stderr.isTTY === true;
  let waiting = false;
  let announced = false;
  const handlers: ApprovalUi['handlers'] = {
    onApproval: (request: ApprovalRequest) => {
      const what = request.message ?? `${request.tool} ${JSON.stringify(request.arguments)}`;
      err(
        choice.how === 'push'
          ? `This call needs your approval: ${what}\n  approve it in your pending approvals at ${request.approvalsPage}\n`
          : `This call needs your approval: ${what}\n  open ${request.url}\n`,
      );
      if (!choice.wait) return false;
      if (choice.how === 'browser' && choice.open) openBrowser(request.url);
      waiting = true;
      announced = false;
      return true;
    },
    onApprovalProgress: ({ status, secondsLeft }: ApprovalProgress) => {
      if (status === 'approved') {
        waiting = false;
        // Our own control sequence (erase the countdown line) goes around the filter, never through it.
        if (live) process.stderr.write('\r\x1b[K');
        err('Approved: calling the tool again.\n');
        return;
      }
      // A terminal gets one line that counts down; a log gets one line, once.
      if (live) process.stderr.write(`\r\x1b[KWaiting for your approval (Ctrl-C to stop)… ${clock(secondsLeft ?? 0)} left`);
      else if (!announced) err(`Waiting for your approval (Ctrl-C to stop), ${clock(secondsLeft ?? 0)} left…\n`);
      announced = true;
    },
  };
  return {
    choice,
    handlers,
    waiting: () => waiting,
    settle: () => {
      if (waiting && live) process.stderr.write('\r\x1b[K');
      waiting = false;
    },
  };
}

/** The agent's call with the approval handlers of `ui`; the wait ends with the call. */
async function viaAgent(agent: MandateAgent, client: Client, ui: ApprovalUi, name: string, args: Record<string, unknown>, signal: AbortSignal) {
  try {
    return await agent.callTool(name, args, { client, ...ui.handlers, signal });
  } finally {
    ui.settle();
  }
}

/**
 * Runs `call` with Ctrl-C stopping the wait for an approval (a clean exit 130 with a line saying
 * the approval stays open), or, at any other moment, the command at once.
 */
async function interruptible<T>(ui: ApprovalUi, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const stop = new AbortController();
  const onInterrupt = () => {
    if (ui.waiting()) stop.abort();
    else process.exit(130);
  };
  process.on('SIGINT', onInterrupt);
  try {
    return await call(stop.signal);
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

async function callTool(agent: MandateAgent, client: Client, name: string, args: Record<string, unknown>, ui: ApprovalUi, signal?: AbortSignal): Promise<number> {
  const unknown = async (text: string) =>
    /-32602\b.*\bnot found|unknown tool/i.test(text) && !(await client.listTools()).tools.some((tool) => tool.name === name)
      ? new AgentError('unknown_tool', `no tool named ${name} at ${agent.options.mcpUrl} — \`mandate agent tools\` lists the tools you may call there`)
      : undefined;
  let result: Awaited<ReturnType<Client['callTool']>>;
  try {
    const call = (stop: AbortSignal) => viaAgent(agent, client, ui, name, args, stop);
    // The chat handles Ctrl-C itself (readline): it passes its own signal.
    result = signal ? await call(signal) : await interruptible(ui, call);
  } catch (error) {
    if (error instanceof ApprovalRequiredError && !ui.choice.wait) {
      const until = error.request.expiresAt ? ` (until ${clockTime(error.request.expiresAt * 1000)})` : '';
      throw new AgentError('approval_required', `not waiting (--no-wait): once you have approved${until}, run the same call again`);
    }
    // MCP: an unknown tool is JSON-RPC error -32602 (MCP 2025-11-25, server/tools "Error Handling").
    if ((error as { code?: unknown }).code === -32602) throw (await unknown(`-32602 ${(error as Error).message}`)) ?? error;
    throw error;
  }
  const text = textOf(result as Record<string, unknown>);
  // The TypeScript SDK's servers answer it with an error result instead ("MCP error -32602: Tool x
  // not found"): said as what it is when the server lists no such tool.
  if (result.isError) {
    const notThere = await unknown(text);
    if (notThere) throw notThere;
  }
  if (result.isError) {
    err(`mandate agent: the tool ${name} failed: ${text}\n`);
    return 8;
  }
  out(`${text}\n`);
  return 0;
}

async function chat(agent: MandateAgent, choice: ApprovalChoice): Promise<number> {
  const model = modelFromEnv();
  return withClient(agent, async (client) => {
    const { tools } = await client.listTools();
    const personless = agent.options.mode === 'client' || agent.options.mode === 'enterprise' || agent.options.mode === 'workload';
    const stored = personless ? undefined : await agent.subjectToken();
    const who = stored ? displayUser(stored.user, decodeJwt(stored.access_token).sub) : `${String(decodeJwt(await agent.mcpToken()).sub)} (${agent.options.mode} mode)`;
    out(`Connected to ${agent.options.mcpUrl}, acting for ${who}: ${tools.map((t) => t.name).join(', ')}\n`);
    out(model ? `Model ${model.model} chooses the tools. /tools, /call <tool> <json>, /exit.\n` : 'No model configured (OPENAI_API_KEY): use /tools, /call <tool> <json>, /exit.\n');
    // Lines are read as a stream, not one question at a time: piped or pasted input arrives in one
    // chunk, and lines that came while a tool call was running were lost (a question only sees the
    // lines after it is asked). Every line is handled, in order; the end of the input ends the chat.
    const terminal = process.stdin.isTTY === true;
    const rl = createInterface({ input: process.stdin, output: terminal ? process.stdout : undefined, terminal });
    const prompt = () => {
      if (terminal) rl.prompt();
    };
    rl.setPrompt('> ');
    // Ctrl-C while a /call waits for an approval stops that wait; at any other moment it ends the
    // chat, as readline does without a listener.
    let current: { stop: AbortController; ui: ApprovalUi } | undefined;
    rl.on('SIGINT', () => {
      if (current?.ui.waiting()) current.stop.abort();
      else rl.close();
    });
    prompt();
    try {
      for await (const raw of rl) {
        const line = raw.trim();
        if (line === '/exit' || line === '/quit' || line === 'exit' || line === 'quit') return 0;
        if (line !== '') {
          current = { stop: new AbortController(), ui: approvalUi(choice) };
          try {
            await chatLine(agent, client, tools, model, line, current.ui, current.stop.signal);
          } finally {
            current = undefined;
          }
        }
        prompt();
      }
      return 0;
    } finally {
      rl.close();
    }
  });
}

/** One line of the chat: a command, or a prompt for the model. Errors are shown, not fatal. */
async function chatLine(
  agent: MandateAgent,
  client: Client,
  tools: Awaited<ReturnType<Client['listTools']>>['tools'],
  model: ReturnType<typeof modelFromEnv>,
  line: string,
  ui: ApprovalUi,
  signal: AbortSignal,
): Promise<void> {
  try {
    if (line === '/tools') {
      for (const tool of (await client.listTools()).tools) out(`  ${tool.name}  ${tool.description ?? ''}\n`);
    } else if (line.startsWith('/call ') || line === '/call') {
      const [, name = '', ...rest] = line.split(' ');
      if (!name) {
        out('which tool? /call <tool> <json>\n');
        return;
      }
      const json = rest.join(' ').trim();
      await callTool(agent, client, name, json ? (JSON.parse(json) as Record<string, unknown>) : {}, ui, signal);
    } else if (model) {
      // The model's calls wait for an approval like /call does (the person is at this terminal).
      out(`${await chatWithModel(model, client, tools, line, (name, args) => viaAgent(agent, client, ui, name, args, signal))}\n`);
    } else {
      out('No model is configured: try /tools or /call <tool> <json>.\n');
    }
  } catch (error) {
    if (error instanceof SyntaxError) out(`not JSON: ${error.message}\n`);
    else if (error instanceof AgentError) out(`${error.message}\n`);
    else out(`error: ${(error as Error).message}\n`);
  }
}

export async function agentCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'mcp-url': { type: 'string', default: 'http://localhost:8080/mcp' },
      'client-id': { type: 'string', default: process.env.AGENT_CLIENT_ID || undefined },
      register: { type: 'string', default: 'auto' },
      'client-metadata-url': { type: 'string' },
      mode: { type: 'string' },
      dpop: { type: 'string', default: 'auto' },
      idp: { type: 'string' },
      'idp-client-id': { type: 'string' },
      'workload-token-file': { type: 'string' },
      'forget-registration': { type: 'boolean', default: false },
      scope: { type: 'string' },
      'callback-port': { type: 'string', default: '3000' },
      'agent-resource': { type: 'string' },
      args: { type: 'string' },
      'no-browser': { type: 'boolean', default: false },
      device: { type: 'boolean', default: false },
      approve: { type: 'string', default: 'browser' },
      open: { type: 'boolean', default: false },
      'no-wait': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...rest] = positionals;
  // Asking for help is not a usage error: stdout, exit 0. No command at all is one: stderr, exit 2.
  if (values.help || command === 'help') {
    out(USAGE);
    return 0;
  }
  if (!command) {
    err(USAGE);
    return 2;
  }
  const register = values.register as RegistrationPreference;
  if (!REGISTRATION_PREFERENCES.includes(register)) {
    err(`mandate agent: --register is one of ${REGISTRATION_PREFERENCES.join(', ')}\n`);
    return 2;
  }
  if (values.approve !== 'browser' && values.approve !== 'push') {
    err('mandate agent: --approve is browser or push\n');
    return 2;
  }
  if (values.open && values.approve === 'push') {
    err('mandate agent: --open opens the approval link, which --approve push does not use\n');
    return 2;
  }
  if (!DPOP_SETTINGS.includes(values.dpop as DpopSetting)) {
    err(`mandate agent: --dpop is one of ${DPOP_SETTINGS.join(', ')}\n`);
    return 2;
  }
  const chosen = modeOf(values);
  if ('error' in chosen) {
    err(`mandate agent: ${chosen.error}\n`);
    return 2;
  }
  const personless = chosen.mode !== undefined && PERSONLESS.includes(chosen.mode);
  const approval: ApprovalChoice = { how: values.approve, open: values.open === true, wait: !values['no-wait'] };
  const clientSecret = process.env.AGENT_SECRET || undefined;
  if (clientSecret && !values['client-id']) {
    err('mandate agent: AGENT_SECRET is set but no --client-id (or AGENT_CLIENT_ID) names the agent it belongs to\n');
    return 2;
  }
  const agent = new MandateAgent({
    mcpUrl: values['mcp-url']!,
    clientId: values['client-id'],
    clientSecret,
    register,
    clientMetadataUrl: values['client-metadata-url'],
    dpop: values.dpop as DpopSetting,
    ...chosen,
    onRegistered: (client, issuer) => {
      err(`Registered at ${issuer} as ${client.client_id} (${METHOD_NAMES[client.method]}); kept in ${agent.store.file} for later runs.\n`);
    },
    agentResource: values['agent-resource'],
    callbackPort: Number(values['callback-port']),
    onAuthorizationUrl: (url) => {
      const where = chosen.mode === 'enterprise' ? `Sign in at your identity provider ${values.idp}, once, to let the agent act for you` : 'Sign in to let the agent act for you';
      err(`${where} — open this URL in a browser:\n  ${url}\n`);
      if (!values['no-browser'] && process.stderr.isTTY) openBrowser(url);
    },
    onStepUp: ({ tool, scopes, missing }) => {
      const needs = missing.length ? missing : scopes;
      const what = needs.length ? `scope ${needs.join(' ')}` : 'a scope it did not name';
      err(`${tool ? `The tool ${tool}` : 'The MCP server'} needs ${what}, which you have not allowed the agent yet: sign in again to allow it.\n`);
    },
    onDeviceCode: ({ verificationUri, verificationUriComplete, userCode, expiresIn }) => {
      err(`To sign in, open ${verificationUri} on any device and enter the code ${userCode}\n  (or open ${verificationUriComplete ?? verificationUri}; the code expires in ${Math.round(expiresIn / 60)} minutes)\n`);
    },
  });
  try {
    switch (command) {
      case 'login': {
        if (chosen.mode === 'enterprise') {
          const signIn = await agent.signInAtIdp({ device: values.device });
          const claims = decodeJwt(signIn.id_token);
          const who = typeof claims.email === 'string' ? claims.email : typeof claims.preferred_username === 'string' ? claims.preferred_username : String(claims.sub);
          out(`Signed in at ${values.idp} as ${who}; \`tools\` and \`call\` with the same --idp now get ID-JAGs for ${agent.options.mcpUrl} without a browser (kept in ${agent.store.file}).\n`);
          return 0;
        }
        if (personless) throw new AgentError('usage', `in ${chosen.mode} mode nobody signs in: run \`tools\` or \`call\` directly`);
        const scopes = values.scope ? parseScope(values.scope) : undefined;
        const tokens = values.device ? await agent.loginWithDevice(scopes) : await agent.login(scopes);
        const claims = decodeJwt(tokens.access_token);
        const { clientId, mode } = await agent.identity();
        const who = displayUser(tokens.user, claims.sub);
        const granted = resourceScopes(parseScope(tokens.scope)).join(' ') || '(no scope)';
        out(
          mode === 'delegated'
            ? `Signed in as ${who}; ${clientId} may act for you at ${agent.options.mcpUrl} with ${granted}.\n`
            : `Signed in as ${who}; ${clientId} holds your token for ${agent.options.mcpUrl} with ${granted} (direct: a public client cannot act in its own name, so no token exchange).\n`,
        );
        return 0;
      }
      case 'whoami': {
        if (personless) {
          const claims = decodeJwt(await agent.mcpToken());
          const shown = { mode: chosen.mode, sub: claims.sub, client_id: claims.client_id, scope: claims.scope, aud: claims.aud, idp: claims.idp, cnf: claims.cnf, expires: new Date(Number(claims.exp) * 1000).toISOString() };
          out(`${JSON.stringify(shown, null, 2)}\n`);
          return 0;
        }
        const { subject: stored, clientId, registration, mode } = await agent.storedIdentity();
        const subject = decodeJwt(stored.access_token);
        const shown = {
          user: displayUser(stored.user, subject.sub),
          username: stored.user?.preferred_username,
          name: stored.user?.name,
          sub: subject.sub,
          scope: subject.scope,
          client_id: clientId,
          registration,
          mode,
          may_act: subject.may_act,
          acr: subject.acr,
          expires: new Date(Number(subject.exp) * 1000).toISOString(),
        };
        out(`${JSON.stringify(shown, null, 2)}\n`);
        return 0;
      }
      case 'tools':
        return await withClient(agent, async (client) => {
          for (const tool of (await client.listTools()).tools) out(`${tool.name}\t${tool.description ?? ''}\n`);
          return 0;
        });
      case 'call': {
        const name = rest[0];
        if (!name) throw new AgentError('usage', 'which tool? mandate agent call <tool> --args \'{"…": …}\'');
        let args: Record<string, unknown> = {};
        try {
          args = values.args ? (JSON.parse(values.args) as Record<string, unknown>) : {};
        } catch (error) {
          throw new AgentError('usage', `--args is not JSON: ${(error as Error).message}`);
        }
        return await withClient(agent, (client) => callTool(agent, client, name, args, approvalUi(approval)));
      }
      case 'tokens': {
        if (personless) {
          out(`${JSON.stringify(decodeJwt(await agent.mcpToken()), null, 2)}\n`);
          return 0;
        }
        const tokens = await agent.tokens();
        if (tokens.mode === 'direct') out('Signed in directly for the MCP server (a public client): no actor token, no exchange; the MCP server gets the subject token.\n');
        out(`${tokensTable(tokens)}\n`);
        return 0;
      }
      case 'chat':
        return await chat(agent, approval);
      case 'logout': {
        if (chosen.mode === 'enterprise') {
          out((await agent.signOutAtIdp()) ? `Signed out at ${values.idp}.\n` : `Not signed in at ${values.idp}.\n`);
          return 0;
        }
        out((await agent.logout()) ? 'Signed out.\n' : 'Not signed in.\n');
        if (values['forget-registration']) {
          const gone = await agent.forgetRegistration();
          out(gone ? `Forgot the registration ${gone.client_id}; the next login registers anew.\n` : 'No registration to forget.\n');
        }
        return 0;
      }
      default:
        err(`mandate agent: unknown command ${command}\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof AgentError) {
      err(`mandate agent: ${error.message}\n`);
      return error.exitCode;
    }
    const code = (error as { code?: number }).code;
    if (typeof code === 'number') {
      err(`mandate agent: the MCP server refused: ${(error as Error).message}\n`);
      return 9;
    }
    throw error;
  }
}
