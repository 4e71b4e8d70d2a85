/**
 * The README's shell blocks, as the README test runs them.
 *
 * A block is a fence opened with ```sh or ```bash. An HTML comment on the line just before the
 * fence marks it (invisible on GitHub):
 *
 * - `<!-- readme-test: skip (why) -->` — not run (a person's step the test cannot stand in for).
 * - `<!-- readme-test: sign-in (why) -->` — run; every authorization URL it prints (an `echo`, the
 *   agent, the Inspector CLI) is signed in as demo/demo over HTTP (as the demo's admin, with its
 *   generated password, when the reason says "as admin"; ticking the consent page's high-risk boxes
 *   when it says "ticks"), and the redirect is delivered.
 *   A later line `CODE=...` gets the code of the last sign-in.
 * - `<!-- readme-test: approve (why) -->` — run; every approval link it prints (`<issuer>/approve/…`),
 *   or the pending approvals page it names (`<issuer>/approvals`), is opened as demo/demo over HTTP
 *   and the call approved with the password, as the person would in a browser.
 * - `<!-- readme-test: output -->` before a ```text fence — what the previous shell block prints:
 *   each line must appear in its output, `…` standing for anything.
 *
 * An unknown marker is an error, so a typo cannot silently skip a block.
 */
export interface ShellBlock {
  /** 1-based position among the README's shell blocks. */
  index: number;
  /** 1-based line of the opening fence. */
  line: number;
  code: string;
  mark?: { kind: 'skip' | 'sign-in' | 'approve'; reason: string };
  /** Lines the block's output must contain (from a following `output` block). */
  output?: string[];
}

const MARKER = /^<!--\s*readme-test:\s*([a-z-]+)(?:\s*\((.*)\))?\s*-->\s*$/;

export function shellBlocks(markdown: string): ShellBlock[] {
  const lines = markdown.split('\n');
  const blocks: ShellBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\S*)\s*$/.exec(lines[i]!);
    if (!fence) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    if (i >= lines.length) throw new Error(`README line ${start + 1}: unclosed fence`);
    const marker = start > 0 ? MARKER.exec(lines[start - 1]!) : null;
    const [kind, reason = ''] = marker ? [marker[1]!, marker[2]?.trim()] : [undefined];
    if (kind !== undefined && !['skip', 'sign-in', 'approve', 'output'].includes(kind)) throw new Error(`README line ${start}: unknown readme-test marker "${kind}"`);
    if (kind === 'output') {
      const previous = blocks.at(-1);
      if (!previous) throw new Error(`README line ${start}: an output block with no shell block before it`);
      previous.output = body.filter((line) => line.trim() !== '');
      continue;
    }
    if (fence[1] !== 'sh' && fence[1] !== 'bash') {
      if (kind) throw new Error(`README line ${start}: a readme-test "${kind}" marker on a ${fence[1] || 'plain'} fence`);
      continue;
    }
    if (kind === 'skip' && !reason) throw new Error(`README line ${start}: a skipped block says why: <!-- readme-test: skip (reason) -->`);
    blocks.push({ index: blocks.length + 1, line: start + 1, code: body.join('\n'), ...(kind ? { mark: { kind: kind as 'skip' | 'sign-in' | 'approve', reason } } : {}) });
  }
  return blocks;
}

/** The ports the README names: the demo's, and the everything gateway's (8090, metrics 9465) and server (8100). */
export const README_PORTS = [9000, 8080, 9464, 8000, 8001, 8787, 8090, 8100, 9465];

export interface Rewrite {
  portOffset: number;
  /** Replaces `.mandate/`. */
  dataDir: string;
  /** Files named in commands, replaced by copies (e.g. a config with its ports moved). */
  files: Record<string, string>;
  /** `mandate agent` gets `--mcp-url` (its default is the demo gateway on 8080). */
  gateway: string;
}

/** Moves a README port (`localhost:8080`, `127.0.0.1:8080`, URL-encoded `%2Flocalhost%3A8080`, `PORT=8100`, YAML `port: 8090`) by the offset. */
export function movePorts(text: string, offset: number): string {
  const ports = new Set(README_PORTS);
  return text
    .replace(/(?:\b|(?<=%2F))(localhost|127\.0\.0\.1)(:|%3A)(\d{4,5})\b/g, (whole, host: string, colon: string, port: string) => (ports.has(Number(port)) ? `${host}${colon}${Number(port) + offset}` : whole))
    .replace(/\b(PORT=|port:\s*)(\d{4,5})\b/g, (whole, key: string, port: string) => (ports.has(Number(port)) ? `${key}${Number(port) + offset}` : whole));
}

/** A block as the test runs it: the same commands, on the test's ports, data dir and files. */
export function rewriteBlock(code: string, rewrite: Rewrite): string {
  let text = movePorts(code, rewrite.portOffset).replace(/(^|[\s"'(=])\.mandate\//gm, `$1${rewrite.dataDir}/`);
  for (const [file, copy] of Object.entries(rewrite.files)) text = text.split(file).join(copy);
  return text.replace(/(bin\/mandate\.js agent [a-z]+)/g, `$1 --mcp-url ${rewrite.gateway}`);
}

/** An `output` line as a pattern: literal text, `…` for anything. */
export function outputPattern(line: string): RegExp {
  return new RegExp(line.split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*'));
}
