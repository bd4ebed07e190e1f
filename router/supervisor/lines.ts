// A service's output cut into lines for the console and the status page,
// with a bound on the partial line held: a service that prints without a
// newline (a progress bar, a binary dump, a bug) gets its text emitted in
// pieces of at most `maxLineLength` characters, each marked as cut, instead
// of growing the supervisor's memory until the unit runs out.

/** The most characters of one line held before it is emitted cut. */
export const maxLineLength = 4096;

/** Marks a piece of a line that was longer than the bound. */
export const cutMarker = " [line cut]";

export class LineSplitter {
  private partial = "";

  constructor(
    private readonly emit: (line: string) => void,
    private readonly limit = maxLineLength,
  ) {}

  push(chunk: string): void {
    let rest = chunk;
    for (;;) {
      const newline = rest.indexOf("\n");
      if (newline < 0) break;
      this.partial += rest.slice(0, newline);
      rest = rest.slice(newline + 1);
      this.flushLong();
      this.emit(this.partial);
      this.partial = "";
    }
    this.partial += rest;
    this.flushLong();
  }

  /** The stream ended: emit what is left of its last line. */
  end(): void {
    if (this.partial !== "") this.emit(this.partial);
    this.partial = "";
  }

  /** Emits whole `limit`-sized pieces of the held line, keeping the remainder. */
  private flushLong(): void {
    while (this.partial.length > this.limit) {
      this.emit(this.partial.slice(0, this.limit) + cutMarker);
      this.partial = this.partial.slice(this.limit);
    }
  }
}
