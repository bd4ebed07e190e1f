// The supervisor's line splitter: whole lines as they come, and a bound on
// the partial line a service without newlines makes it hold.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cutMarker, LineSplitter } from "../../router/supervisor/lines.js";

function split(chunks: string[], limit?: number): string[] {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line), limit);
  for (const chunk of chunks) splitter.push(chunk);
  splitter.end();
  return lines;
}

test("lines across chunks are joined, several in one chunk are split, the last one is kept for end", () => {
  assert.deepEqual(split(["he", "llo\nwor", "ld\nsecond\nthi", "rd"]), ["hello", "world", "second", "third"]);
  assert.deepEqual(split(["a\n\nb\n"]), ["a", "", "b"]);
});

test("a service that never prints a newline is emitted in bounded pieces, each marked as cut", () => {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line), 100);
  for (let index = 0; index < 1000; index += 1) splitter.push("x".repeat(37));
  // 37 000 characters without a newline: never more than 100 held.
  assert.equal(lines.length, 369);
  for (const line of lines) assert.equal(line, "x".repeat(100) + cutMarker);
  splitter.push("tail\n");
  assert.equal(lines.at(-1), "tail");
});

test("a long line that ends is emitted in pieces, then its rest as a whole line", () => {
  assert.deepEqual(split(["y".repeat(250) + "\nnext\n"], 100), [
    "y".repeat(100) + cutMarker,
    "y".repeat(100) + cutMarker,
    "y".repeat(50),
    "next",
  ]);
});
