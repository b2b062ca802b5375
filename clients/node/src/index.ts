/**
 * @sessionvalidator/client: a typed client for the SessionValidator gRPC
 * service. Express and Socket.IO middleware live in
 * `@sessionvalidator/client/express` and `@sessionvalidator/client/socket.io`.
 */
export {
  type CallOptions,
  type ClientOptions,
  createClient,
  DEFAULT_CHANNEL_OPTIONS,
  DEFAULT_DEADLINE_MS,
  DEFAULT_SERVICE_CONFIG,
  normalizeTarget,
  type RequestLike,
  SERVICE_NAME,
  SessionValidatorClient,
  type TlsOptions,
  type ValidationResult,
} from "./client";
export {
  ERROR_DOMAIN,
  errorInfoFromMetadata,
  isStoreUnavailable,
  SessionValidatorError,
  StoreUnavailableError,
  toSessionValidatorError,
} from "./errors";
export { ErrorInfo } from "./gen/google/rpc/error_details";
export {
  Reason,
  reasonToJSON,
  UserProfile,
  ValidateSessionRequest,
  ValidateSessionResponse,
  Verdict,
  verdictToJSON,
} from "./gen/sessionvalidator/v1/session_validator_service";
export { status } from "@grpc/grpc-js";
