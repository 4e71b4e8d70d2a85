/**
 * Text from a server (an ID token's name, a tool's output or description, an error description)
 * made safe to print on a terminal: control characters other than newline and tab (escape
 * sequences could set the clipboard, move the cursor or rewrite earlier lines, a carriage return
 * could overprint one) and Unicode format characters (bidirectional overrides, zero-width marks,
 * which reorder or hide text) become U+FFFD, so what the person reads is what was sent.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\p{Cf}]/gu;

export function forTerminal(text: string): string {
  return text.replace(UNSAFE, '\uFFFD');
}
