/**
 * A browser's family and operating system from its User-Agent, versions left out (a browser update
 * is no change of device): `Chrome on Linux`, `Safari on iOS`. Order matters: Edge and Opera also
 * say "Chrome", Chrome also says "Safari", Android also says "Linux". Anything else is `Other`;
 * the header is the client's to write, so this is a signal, never an identity.
 */
const BROWSERS: [RegExp, string][] = [
  [/\bEdg(?:e|A|iOS)?\//, 'Edge'],
  [/\b(?:OPR|Opera)\//, 'Opera'],
  [/\bSamsungBrowser\//, 'Samsung Internet'],
  [/\b(?:Firefox|FxiOS)\//, 'Firefox'],
  [/\b(?:Chrome|CriOS|Chromium|HeadlessChrome)\//, 'Chrome'],
  [/\bVersion\/[\d.]+.*\bSafari\//, 'Safari'],
  [/\bcurl\//, 'curl'],
];

const SYSTEMS: [RegExp, string][] = [
  [/\bWindows\b/, 'Windows'],
  [/\bAndroid\b/, 'Android'],
  [/\b(?:iPhone|iPad|iPod)\b/, 'iOS'],
  [/\bCrOS\b/, 'ChromeOS'],
  [/\bMac OS X\b|\bMacintosh\b/, 'macOS'],
  [/\bLinux\b/, 'Linux'],
];

const first = (list: [RegExp, string][], ua: string) => list.find(([pattern]) => pattern.test(ua))?.[1] ?? 'Other';

export function userAgentFamily(ua: string | undefined): string {
  const text = (ua ?? '').slice(0, 512);
  return `${first(BROWSERS, text)} on ${first(SYSTEMS, text)}`;
}
