// How an error quotes what it was given: as JSON, and never more than a
// short prefix of it. An error message goes into logs, HTTP replies and
// terminals; a hostile input (a 4000-digit form field, a megabyte of
// header) must not come back in full.

/** The default number of characters an error quotes of an input. */
export const quotedInputLimit = 64;

/** `text` as a JSON string, cut to `limit` characters with the full length said. */
export function quoteInput(text: string, limit = quotedInputLimit): string {
  if (text.length <= limit) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, limit))}... (${text.length} characters)`;
}
