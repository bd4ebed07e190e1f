// Splitting a console's output into lines and cleaning them: line ends of
// every kind across chunk boundaries, ANSI escape sequences, backspaces.
import { test } from "node:test";
import assert from "node:assert/strict";
import { LineAssembler, cleanLine } from "../../server/serial/lines.js";

test("lines end at \\r\\n, \\n or a lone \\r, even when the \\r\\n is split across chunks", () => {
  const lines = new LineAssembler();
  assert.deepEqual(lines.push("one\r\ntwo\nthree\rfour\r"), ["one", "two", "three", "four"]);
  assert.deepEqual(lines.push("\nfive"), []);
  assert.equal(lines.pending, "five");
  assert.deepEqual(lines.push("\r\n\r\n"), ["five", ""]);
  assert.equal(lines.pending, "");
});

test("a line that never ends is cut at the maximum length", () => {
  const lines = new LineAssembler(8);
  assert.deepEqual(lines.push("0123456789abcdef01"), ["01234567", "89abcdef"]);
  assert.equal(lines.pending, "01");
});

test("cleanLine removes colour, cursor and reset sequences, and a sequence cut off at the end", () => {
  assert.equal(
    cleanLine("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)"),
    "SeaBIOS (version 1.16.2-debian-1.16.2-1)",
  );
  assert.equal(
    cleanLine("\x1b[0;1miPXE 1.0.0\x1b[0m -- Open Source \x1b[0;36mhttp"),
    "iPXE 1.0.0 -- Open Source http",
  );
  assert.equal(cleanLine("\x1b]0;title\x07text\x1b(B"), "text");
  assert.equal(cleanLine("Press ESC\x1b[0;3"), "Press ESC");
});

test("cleanLine applies backspaces as a terminal would, and drops other control characters", () => {
  assert.equal(
    cleanLine("Press Ctrl-B for the iPXE command line...\b \b\b \b\b \b"),
    "Press Ctrl-B for the iPXE command line",
  );
  assert.equal(cleanLine("abc\b\bX"), "aXc");
  assert.equal(cleanLine("\b\bok\x07\x00"), "ok");
  assert.equal(cleanLine("a\tb   "), "a\tb");
});
