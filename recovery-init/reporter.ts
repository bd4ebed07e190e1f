// The unit's side of the recovery reports: progress, success and failure
// go to the recovery server with the run's session token. Progress is best
// effort (a lost report must not stop a recovery); success and failure are
// retried and their replies checked, because the server's exit code depends
// on them (router7 did not check).
import type { FailureReport, ProgressReport, SuccessReport } from "../lib/wire/report.js";

export interface Reporter {
  progress(report: ProgressReport): Promise<void>;
  success(report: SuccessReport): Promise<void>;
  failure(report: FailureReport): Promise<void>;
}

export interface HttpReporterOptions {
  baseUrl: string;
  token: string;
  /** Attempts for success and failure reports. */
  attempts?: number;
  retryDelayMs?: number;
  fetch?: typeof fetch;
  /** Where to say what happened to a report (the console). */
  say?: (line: string) => void;
}

export function httpReporter(options: HttpReporterOptions): Reporter {
  const doFetch = options.fetch ?? fetch;
  const attempts = options.attempts ?? 6;
  const say = options.say ?? ((line: string) => console.log(line));

  const post = async (path: string, body: unknown): Promise<void> => {
    const response = await doFetch(`${options.baseUrl}/${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${options.token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    if (response.status !== 200) {
      const text = await response.text().catch(() => "");
      throw new Error(`POST /${path}: HTTP ${response.status} ${text.slice(0, 200)}`);
    }
    await response.arrayBuffer();
  };

  const postWithRetries = async (path: string, body: unknown): Promise<void> => {
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt += 1) {
      try {
        await post(path, body);
        return;
      } catch (error) {
        lastError = error;
        say(
          `rtr7-recovery: report ${path} failed (attempt ${attempt}/${attempts}): ${(error as Error).message}`,
        );
        await new Promise((resolve) => setTimeout(resolve, (options.retryDelayMs ?? 2000) * attempt));
      }
    }
    throw new Error(`could not report ${path} to ${options.baseUrl}`, { cause: lastError });
  };

  return {
    progress: (report) =>
      post("progress", report).catch((error: Error) =>
        say(`rtr7-recovery: progress report lost: ${error.message}`),
      ),
    success: (report) => postWithRetries("success", report),
    failure: (report) => postWithRetries("failure", report),
  };
}
