import { Metadata, status } from "@grpc/grpc-js";
import { ErrorInfo } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";

/** The `ErrorInfo.domain` of every error the SessionValidator service sends. */
export const ERROR_DOMAIN = "sessionvalidator.v1";

const STATUS_DETAILS_KEY = "grpc-status-details-bin";
const ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo";

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

  constructor(
    code: status,
    details: string,
    init: { errorInfo?: ErrorInfo | undefined; metadata?: Metadata | undefined; cause?: unknown } = {},
  ) {
    const reason = init.errorInfo?.reason || undefined;
    super(`${status[code] ?? code}${reason ? ` (${reason})` : ""}: ${details}`, { cause: init.cause });
    this.code = code;
    this.details = details;
    this.reason = reason;
    this.domain = init.errorInfo?.domain || undefined;
    this.errorMetadata = { ...init.errorInfo?.metadata };
    this.metadata = init.metadata ?? new Metadata();
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
  const raw = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (!Buffer.isBuffer(raw)) {
    return undefined;
  }
  try {
    const detail = Status.decode(raw).details.find((any) => any.typeUrl === ERROR_INFO_TYPE_URL);
    return detail === undefined ? undefined : ErrorInfo.decode(detail.value);
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
  const init = { errorInfo: errorInfoFromMetadata(error.metadata), metadata: error.metadata, cause: error };
  const details = error.details ?? error.message;
  return error.code === status.UNAVAILABLE
    ? new StoreUnavailableError(error.code, details, init)
    : new SessionValidatorError(error.code, details, init);
}
