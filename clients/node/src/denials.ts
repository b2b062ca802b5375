// The one decision table every SessionValidator middleware follows
// (tests/vectors/client_conformance.json): bodies, headers, warnings.
import { status } from "@grpc/grpc-js";
import { type ValidationResult } from "./client";
import { SessionValidatorError } from "./errors";
import { reasonToJSON, verdictToJSON } from "./gen/sessionvalidator/v1/session_validator_service";

/** Where the middleware writes its warnings; `console` by default. */
export interface WarningLogger {
  warn(message: string): void;
}

/** A refusal: status, JSON body and headers (always `cache-control: no-store`). */
export interface Denial {
  status: 401 | 429 | 503;
  body: Record<string, string>;
  headers: Record<string, string>;
}

const NO_STORE = { "cache-control": "no-store" } as const;

/** Why a call got no verdict: the ErrorInfo reason, `VALIDATOR_UNREACHABLE`, `DEADLINE_EXCEEDED`, or the code's name. */
export function noVerdictCause(error: unknown): string {
  return error instanceof SessionValidatorError ? error.noVerdictCause : status[status.UNKNOWN];
}

/** 401 `{"error":"unauthorized"}`; with `exposeVerdict` also the verdict and reason names. */
export function unauthorizedDenial(result: ValidationResult, exposeVerdict: boolean): Denial {
  const body: Record<string, string> = { error: "unauthorized" };
  if (exposeVerdict) {
    body["verdict"] = verdictToJSON(result.verdict);
    body["reason"] = reasonToJSON(result.reason);
  }
  return { status: 401, body, headers: { ...NO_STORE } };
}

/**
 * 429 `{"error":"rate_limited"}` for RESOURCE_EXHAUSTED (Retry-After from the
 * RetryInfo, rounded up), else 503 `{"error":"unavailable"}` with
 * Retry-After: 1 (with `exposeVerdict` the body names the cause).
 */
export function errorDenial(error: unknown, exposeVerdict: boolean): Denial {
  if (error instanceof SessionValidatorError && error.code === status.RESOURCE_EXHAUSTED) {
    const seconds = Math.max(1, Math.ceil((error.retryDelayMs ?? 0) / 1000));
    return { status: 429, body: { error: "rate_limited" }, headers: { ...NO_STORE, "retry-after": String(seconds) } };
  }
  const body: Record<string, string> = { error: "unavailable" };
  if (exposeVerdict) {
    body["reason"] = noVerdictCause(error);
  }
  return { status: 503, body, headers: { ...NO_STORE, "retry-after": "1" } };
}

/** Logs "no verdict" warnings at most once per `everyMs`, counting the ones left out. */
export class WarningLimiter {
  #last = -Infinity;
  #suppressed = 0;
  constructor(
    private readonly logger: WarningLogger = console,
    private readonly everyMs = 10_000,
  ) {}

  warn(error: unknown, answered: number): void {
    const now = Date.now();
    if (now - this.#last < this.everyMs) {
      this.#suppressed += 1;
      return;
    }
    const suppressed = this.#suppressed;
    this.#last = now;
    this.#suppressed = 0;
    const more = suppressed > 0 ? ` (${suppressed} more since the last warning)` : "";
    this.logger.warn(`sessionvalidator: no verdict, answering ${answered}: ${noVerdictCause(error)}${more}`);
  }
}
