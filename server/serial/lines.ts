// Turning a serial console's byte stream into lines a program can match and a
// person can read: firmware ends lines with \r\n, \n or a lone \r (iPXE
// rewrites a line in place with \r), colours and clears the screen with ANSI
// escape sequences, and erases characters with backspaces. Pure functions,
// no I/O, so transcripts can be replayed in tests.

/** Splits text into lines at \r\n, \n or a lone \r, across chunk boundaries. */
export class LineAssembler {
  private partial = "";
  private afterCarriageReturn = false;

  /** A line longer than this is cut, so a console that never ends a line cannot grow memory. */
  constructor(private readonly maxLineLength = 4096) {}

  /** Adds decoded text; returns the lines it completed (raw: escape sequences kept). */
  push(text: string): string[] {
    const lines: string[] = [];
    for (const char of text) {
      if (this.afterCarriageReturn) {
        this.afterCarriageReturn = false;
        if (char === "\n") continue;
      }
      if (char === "\r" || char === "\n") {
        lines.push(this.partial);
        this.partial = "";
        this.afterCarriageReturn = char === "\r";
        continue;
      }
      this.partial += char;
      if (this.partial.length >= this.maxLineLength) {
        lines.push(this.partial);
        this.partial = "";
      }
    }
    return lines;
  }

  /** The text received since the last line ended (a prompt may wait there for a key). */
  get pending(): string {
    return this.partial;
  }
}

// CSI (ESC [ ... final, also cut off at the end of the text), OSC (ESC ] ... BEL
// or ESC \), and the two- or three-character escapes (ESC c, ESC ( B, ESC 7).
// eslint-disable-next-line no-control-regex -- matching terminal control characters is the point
const escapeSequence = /\x1b(?:\[[0-?]*[ -/]*(?:[@-~]|$)|\][^\x07\x1b]*(?:\x07|\x1b\\|$)|[ -/]*[0-~]?)/g;

/**
 * What a terminal would show for one raw line: escape sequences removed,
 * backspaces applied, other control characters dropped, trailing blanks trimmed.
 */
export function cleanLine(raw: string): string {
  const text = raw.replace(escapeSequence, "");
  const screen: string[] = [];
  let cursor = 0;
  for (const char of text) {
    if (char === "\b") {
      cursor = Math.max(0, cursor - 1);
      continue;
    }
    const code = char.codePointAt(0) ?? 0;
    if ((code < 0x20 && char !== "\t") || code === 0x7f) continue;
    screen[cursor] = char;
    cursor++;
  }
  return screen.join("").trimEnd();
}
