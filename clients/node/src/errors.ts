import { Metadata, status } from "@grpc/grpc-js";
import { ErrorInfo, RetryInfo } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";
import { ErrorReason, errorReasonToJSON } from "./gen/sessionvalidator/v1/session_validator_service";

/** The `ErrorInfo.domain` of every error the SessionValidator service sends. */
export const ERROR_DOMAIN = "sessionvalidator.v1";

const STATUS_DETAILS_KEY = "grpc-status-details-bin";
const ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo";
const RETRY_INFO_TYPE_URL = "type.googleapis.com/google.rpc.RetryInfo";

/** The wire form of an ErrorReason: its name without the `ERROR_REASON_` prefix, as in `ErrorInfo.reason`. */
export function errorReasonName(reason: ErrorReason): string {
  return errorReasonToJSON(reason).replace(/^ERROR_REASON_/, "");
}

/** The `ErrorInfo.reason` values the service sends, derived from the contract's `enum ErrorReason`. */
export const ERROR_REASONS = Object.freeze({
  STORE_UNAVAILABLE: errorReasonName(ErrorReason.ERROR_REASON_STORE_UNAVAILABLE),
  STORE_TIMEOUT: errorReasonName(ErrorReason.ERROR_REASON_STORE_TIMEOUT),
  RATE_LIMITED: errorReasonName(ErrorReason.ERROR_REASON_RATE_LIMITED),
  BATCH_TOO_LARGE: errorReasonName(ErrorReason.ERROR_REASON_BATCH_TOO_LARGE),
  MALFORMED_REQUEST: errorReasonName(ErrorReason.ERROR_REASON_MALFORMED_REQUEST),
  INTERNAL_ERROR: errorReasonName(ErrorReason.ERROR_REASON_INTERNAL_ERROR),
  OVERLOADED: errorReasonName(ErrorReason.ERROR_REASON_OVERLOADED),
});

/** {@link SessionValidatorError.cause}-like names for errors without an ErrorInfo reason. */
export const VALIDATOR_UNREACHABLE = "VALIDATOR_UNREACHABLE";
export const DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED";

/**
 * A call that ended without a verdict: the validator could not decide.
 *
 * Never treat this as "not logged in": it means "unknown", and the caller
 * should fail closed with a retryable answer (HTTP 503), not a 401.
 */
export class SessionValidatorError extends Error {
  override readonly name: string = "SessionValidatorError";
  /** The gRPC status code (`status.UNAVAILABLE`, `status.DEADLINE_EXCEEDED`, ...). */
  readonly code: status;
  /** The gRPC status message. */
  readonly details: string;
  /**
   * `ErrorInfo.reason` from the `grpc-status-details-bin` trailer, such as
   * `STORE_UNAVAILABLE`, `STORE_TIMEOUT` or `INTERNAL_ERROR`; undefined when
   * the status carried no ErrorInfo (for example a deadline that passed on
   * the client, or a validator that could not be reached at all).
   */
  readonly reason: string | undefined;
  /** `ErrorInfo.domain` (`sessionvalidator.v1` for the service's own errors). */
  readonly domain: string | undefined;
  /** `ErrorInfo.metadata`, such as `{ retryable: "true" }`. */
  readonly errorMetadata: Readonly<Record<string, string>>;
  /** The call's trailing metadata. */
  readonly metadata: Metadata;
  /** The google.rpc.RetryInfo delay in milliseconds (sent with RESOURCE_EXHAUSTED), or undefined. */
  readonly retryDelayMs: number | undefined;

  constructor(
    code: status,
    details: string,
    init: {
      errorInfo?: ErrorInfo | undefined;
      metadata?: Metadata | undefined;
      cause?: unknown;
      retryDelayMs?: number | undefined;
    } = {},
  ) {
    const reason = init.errorInfo?.reason || undefined;
    super(`${status[code] ?? code}${reason ? ` (${reason})` : ""}: ${details}`, { cause: init.cause });
    this.code = code;
    this.details = details;
    this.reason = reason;
    this.domain = init.errorInfo?.domain || undefined;
    this.errorMetadata = { ...init.errorInfo?.metadata };
    this.metadata = init.metadata ?? new Metadata();
    this.retryDelayMs = init.retryDelayMs;
  }

  /**
   * Why no verdict was reached, in the words the middleware logs: the
   * ErrorInfo reason when there is one, `VALIDATOR_UNREACHABLE` for
   * UNAVAILABLE without one, `DEADLINE_EXCEEDED`, else the code's name.
   */
  get noVerdictCause(): string {
    if (this.reason !== undefined) {
      return this.reason;
    }
    if (this.code === status.UNAVAILABLE) {
      return VALIDATOR_UNREACHABLE;
    }
    return status[this.code] ?? String(this.code);
  }

  /** True for codes worth retrying later: UNAVAILABLE and DEADLINE_EXCEEDED. */
  get retryable(): boolean {
    return this.code === status.UNAVAILABLE || this.code === status.DEADLINE_EXCEEDED;
  }
}

/**
 * UNAVAILABLE: the validator could not read its session store (`reason` is
 * `STORE_UNAVAILABLE` or `STORE_TIMEOUT`), or could not be reached at all
 * (`reason` undefined). Retryable; never a verdict.
 */
export class StoreUnavailableError extends SessionValidatorError {
  override readonly name: string = "StoreUnavailableError";
  declare readonly code: status.UNAVAILABLE;
}

/** Whether `error` is an UNAVAILABLE from the validator (see {@link StoreUnavailableError}). */
export function isStoreUnavailable(error: unknown): error is StoreUnavailableError {
  return error instanceof StoreUnavailableError;
}

/** The google.rpc.ErrorInfo in a call's `grpc-status-details-bin` trailer, if any. */
export function errorInfoFromMetadata(metadata: Metadata | undefined): ErrorInfo | undefined {
  const detail = statusDetail(metadata, ERROR_INFO_TYPE_URL);
  return detail === undefined ? undefined : decodeOrUndefined(() => ErrorInfo.decode(detail));
}

/** The google.rpc.RetryInfo delay in a call's `grpc-status-details-bin` trailer, in ms, if any. */
export function retryDelayFromMetadata(metadata: Metadata | undefined): number | undefined {
  const detail = statusDetail(metadata, RETRY_INFO_TYPE_URL);
  const delay = detail === undefined ? undefined : decodeOrUndefined(() => RetryInfo.decode(detail).retryDelay);
  return delay === undefined ? undefined : delay.seconds * 1000 + delay.nanos / 1e6;
}

function statusDetail(metadata: Metadata | undefined, typeUrl: string): Uint8Array | undefined {
  const raw = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (!Buffer.isBuffer(raw)) {
    return undefined;
  }
  return decodeOrUndefined(() => Status.decode(raw).details.find((any) => any.typeUrl === typeUrl)?.value);
}

function decodeOrUndefined<T>(decode: () => T): T | undefined {
  try {
    return decode();
  } catch {
    // A trailer we cannot parse is no reason to hide the status itself.
    return undefined;
  }
}

interface GrpcErrorLike extends Error {
  code: status;
  details?: string;
  metadata?: Metadata;
}

function isGrpcErrorLike(error: unknown): error is GrpcErrorLike {
  return error instanceof Error && typeof (error as Partial<GrpcErrorLike>).code === "number";
}

/** Turn whatever a call failed with into a {@link SessionValidatorError}. */
export function toSessionValidatorError(error: unknown): SessionValidatorError {
  if (error instanceof SessionValidatorError) {
    return error;
  }
  if (!isGrpcErrorLike(error)) {
    return new SessionValidatorError(status.UNKNOWN, error instanceof Error ? error.message : String(error), {
      cause: error,
    });
  }
  const init = {
    errorInfo: errorInfoFromMetadata(error.metadata),
    metadata: error.metadata,
    cause: error,
    retryDelayMs: retryDelayFromMetadata(error.metadata),
  };
  const details = error.details ?? error.message;
  return error.code === status.UNAVAILABLE
    ? new StoreUnavailableError(error.code, details, init)
    : new SessionValidatorError(error.code, details, init);
}
