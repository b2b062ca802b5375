/**
 * @sessionvalidator/client: a typed client for the SessionValidator gRPC
 * service. Express and Socket.IO middleware live in
 * `@sessionvalidator/client/express` and `@sessionvalidator/client/socket.io`.
 */
export {
  type BatchItem,
  type CallOptions,
  type ClientOptions,
  checkTarget,
  createClient,
  DEFAULT_CHANNEL_OPTIONS,
  DEFAULT_DEADLINE_MS,
  DEFAULT_SERVICE_CONFIG,
  MAX_BATCH,
  normalizeTarget,
  type RequestLike,
  SERVICE_NAME,
  SessionValidatorClient,
  TARGET_SCHEMES,
  type TlsOptions,
  type ValidationResult,
} from "./client";
export { type Denial, errorDenial, noVerdictCause, unauthorizedDenial, type WarningLogger } from "./denials";
export {
  DEADLINE_EXCEEDED,
  ERROR_DOMAIN,
  ERROR_REASONS,
  errorReasonName,
  errorInfoFromMetadata,
  isStoreUnavailable,
  SessionValidatorError,
  StoreUnavailableError,
  retryDelayFromMetadata,
  toSessionValidatorError,
  VALIDATOR_UNREACHABLE,
} from "./errors";
export { ErrorInfo } from "./gen/google/rpc/error_details";
export {
  ErrorReason,
  errorReasonToJSON,
  ItemError,
  Reason,
  reasonToJSON,
  UserProfile,
  ValidateSessionRequest,
  ValidateSessionResponse,
  Verdict,
  verdictToJSON,
} from "./gen/sessionvalidator/v1/session_validator_service";
export { status } from "@grpc/grpc-js";
export {
  createTokenVerifier,
  InvalidTokenError,
  type SessionTokenClaims,
  TOKEN_ALGORITHMS,
  TokenKeysUnavailableError,
  type TokenVerifier,
  type TokenVerifierOptions,
} from "./tokens";
