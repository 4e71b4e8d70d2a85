/** Reads a V8 `.cpuprofile` (from `node --cpu-prof`) and ranks self time by function and by file or package. */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import { fmtFixed, table } from './stats.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const SPECIAL = new Set(['(program)', '(garbage collector)', '(idle)', '(root)']);

function shortUrl(url: string, root: string): string {
  if (!url) return '';
  let path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) return path.slice(nm + '/node_modules/'.length);
  if (path.startsWith(root)) path = path.slice(root.length).replace(/^\//, '');
  return path;
}

/** The package (node_modules), the repository file, `node:` internals, or a V8 pseudo-frame. */
function owner(node: ProfileNode, root: string): string {
  const { functionName, url } = node.callFrame;
  if (SPECIAL.has(functionName)) return functionName;
  if (!url) return '(native / V8 builtins)';
  if (url.startsWith('node:')) return 'node: internals';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = path.slice(nm + '/node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  return shortUrl(url, root);
}

/** Maps each repository frame to its TypeScript line with the source maps the child wrote. */
function applySourceMaps(profile: CpuProfile, sourceMapsFile: string | undefined): void {
  if (!sourceMapsFile || !existsSync(sourceMapsFile)) return;
  const payloads = JSON.parse(readFileSync(sourceMapsFile, 'utf8')) as Record<string, SourceMapPayload>;
  const maps = new Map<string, SourceMap>();
  for (const node of profile.nodes) {
    const frame = node.callFrame;
    const payload = payloads[frame.url];
    if (!payload) continue;
    let map = maps.get(frame.url);
    if (!map) maps.set(frame.url, (map = new SourceMap(payload)));
    const entry = map.findEntry(frame.lineNumber, frame.columnNumber) as { originalLine?: number; originalColumn?: number };
    if (entry.originalLine !== undefined) {
      frame.lineNumber = entry.originalLine;
      frame.columnNumber = entry.originalColumn ?? 0;
    }
  }
}

/**
 * `window` (µs on the monotonic clock, `process.hrtime.bigint() / 1000n`, the clock V8 stamps
 * samples with on Linux) keeps only the samples taken while the load ran, not start-up or exit.
 */
export function analyzeProfile(
  file: string,
  root: string,
  options: { top?: number; sourceMaps?: string; window?: { start: number; end: number } } = {},
): string {
  const top = options.top ?? 15;
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  applySourceMaps(profile, options.sourceMaps);
  let windowNote = 'whole process lifetime (start-up and exit included)';
  if (options.window) {
    const { start, end } = options.window;
    const inWindow: boolean[] = [];
    let t = profile.startTime;
    for (const delta of profile.timeDeltas) {
      t += delta;
      inWindow.push(t >= start && t <= end);
    }
    const kept = inWindow.filter(Boolean).length;
    if (kept > profile.samples.length * 0.1) {
      profile.timeDeltas = profile.timeDeltas.map((d, i) => (inWindow[i] ? d : 0));
      windowNote = `the ${fmtFixed((end - start) / 1e6, 1)} s measured under load only`;
    }
  }
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfMicros = new Map<number, number>();
  // timeDeltas[i] is the time since the previous sample; attribute it to sample i.
  profile.samples.forEach((id, i) => selfMicros.set(id, (selfMicros.get(id) ?? 0) + Math.max(0, profile.timeDeltas[i] ?? 0)));
  let total = 0;
  let idle = 0;
  const byFunction = new Map<string, number>();
  const byOwner = new Map<string, number>();
  for (const [id, micros] of selfMicros) {
    const node = byId.get(id)!;
    total += micros;
    if (node.callFrame.functionName === '(idle)') idle += micros;
    const { functionName, url, lineNumber } = node.callFrame;
    const fn = SPECIAL.has(functionName) ? functionName : `${functionName || '(anonymous)'}  ${shortUrl(url, root) || '(native)'}${url ? `:${lineNumber + 1}` : ''}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + micros);
    const who = owner(node, root);
    byOwner.set(who, (byOwner.get(who) ?? 0) + micros);
  }
  const busy = total - idle;

  // Inclusive time of the repository's own functions (src/, or dist/src/ when the compiled gateway
  // runs; not node_modules): each sample counts once for every distinct such function on its stack.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const ownKey = (n: ProfileNode) => {
    const { functionName, url, lineNumber } = n.callFrame;
    if (!url.startsWith(`file://${root}/src/`) && !url.startsWith(`file://${root}/dist/src/`)) return undefined;
    return `${functionName || '(anonymous)'}  ${shortUrl(url, root)}:${lineNumber + 1}`;
  };
  const inclusive = new Map<string, number>();
  for (const [id, micros] of selfMicros) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const key = ownKey(byId.get(cur)!);
      if (key && !seen.has(key)) {
        seen.add(key);
        inclusive.set(key, (inclusive.get(key) ?? 0) + micros);
      }
    }
  }
  const rank = (m: Map<string, number>, n: number) =>
    [...m]
      // Functions seen only outside the measured window (module top levels at start-up) weigh 0.
      .filter(([k, v]) => k !== '(idle)' && v > 0)
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => [k, fmtFixed((v / busy) * 100, 1), fmtFixed(v / 1000, 0)]);
  return [
    `CPU profile ${file}`,
    `main thread only (V8 samples JS; thread-pool work such as WebCrypto and libuv I/O is not in it); ${windowNote}`,
    `sampled ${fmtFixed(total / 1e6, 1)} s, busy (not idle) ${fmtFixed((busy / total) * 100, 1)} %; percentages below are of busy time`,
    '',
    `Top ${top} functions by self time`,
    table(['function  location', '% busy', 'ms'], rank(byFunction, top)),
    '',
    `Top ${top} files / packages by self time`,
    table(['file or package', '% busy', 'ms'], rank(byOwner, top)),
    ...(inclusive.size > 0
      ? [
          '',
          `Top ${top} src/ (or dist/src/) functions by inclusive time (self + callees on the same synchronous stack; work after an await is not counted)`,
          table(['function  location', '% busy', 'ms'], rank(inclusive, top)),
        ]
      : []),
  ].join('\n');
}
