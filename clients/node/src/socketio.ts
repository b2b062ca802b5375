import { status } from "@grpc/grpc-js";
import { isAccepted, type RequestLike, type SessionValidatorClient, type ValidationResult } from "./client";
import { errorDenial, WarningLimiter, type WarningLogger } from "./denials";
import { SessionValidatorError } from "./errors";
import { reasonToJSON, type UserProfile, verdictToJSON } from "./gen/sessionvalidator/v1/session_validator_service";

/** The `connect_error` message for a refused session. */
export const UNAUTHORIZED_MESSAGE = "unauthorized";
/** The `connect_error` message when the session could not be checked. */
export const UNAVAILABLE_MESSAGE = "unavailable";
/** The `connect_error` message when the validator refuses the caller's bad cookies for a while. */
export const RATE_LIMITED_MESSAGE = "rate_limited";

/** What `socketIoAuth()` puts on `socket.data`; include it in your Server's SocketData type. */
export interface SessionSocketData {
  sessionUser?: UserProfile | undefined;
  sessionValidation?: ValidationResult | undefined;
}

/** The `err.data` a client sees on `connect_error`. */
export interface ConnectErrorData {
  /** For refused sessions: the verdict's name, such as `VERDICT_BAD_SIGNATURE`. */
  verdict?: string;
  /** For refused sessions: the reason's name; for errors: the ErrorInfo reason, if any. */
  reason?: string;
  /** For errors: the gRPC status name, such as `UNAVAILABLE`. */
  code?: string;
}

/** The error handed to `next()`: Socket.IO sends `message` and `data` to the client. */
export interface SocketAuthError extends Error {
  data: ConnectErrorData;
}

/** The part of a Socket.IO `Socket` the middleware uses. */
export interface HandshakeSocket {
  readonly request: RequestLike;
  data: SessionSocketData;
}

export interface SocketIoAuthOptions {
  /** Also accept valid sessions without a logged-in Passport user (default: refused). */
  allowAnonymousSessions?: boolean | undefined;
  /** Accept handshakes without a usable session (`socket.data.sessionUser` undefined). Errors still refuse. */
  allowAnonymous?: boolean | undefined;
  /** @deprecated Refusing sessions without a logged-in user is the default now. */
  requireAuthenticated?: boolean | undefined;
  /** Put `{ verdict, reason }` / `{ code, reason }` in `err.data` (default: empty, so a caller cannot probe signatures). */
  exposeVerdict?: boolean | undefined;
  /** Where the warning goes when a handshake gets no verdict; default `console`. At most one every 10 s. */
  logger?: WarningLogger | undefined;
}

function socketAuthError(message: string, data: ConnectErrorData): SocketAuthError {
  return Object.assign(new Error(message), { data });
}

function errorData(error: unknown): ConnectErrorData {
  if (!(error instanceof SessionValidatorError)) {
    return { code: status[status.UNKNOWN] };
  }
  const data: ConnectErrorData = { code: status[error.code] ?? String(error.code) };
  if (error.reason !== undefined) {
    data.reason = error.reason;
  }
  return data;
}

/**
 * Socket.IO middleware: validates the handshake's Cookie header once per
 * connection, as express-session would.
 *
 *     io.use(socketIoAuth(client));
 *
 * Only a valid session with a logged-in user is accepted by default. A
 * refused session fails the connection with `connect_error` "unauthorized";
 * a validator error with "unavailable" ("rate_limited" for
 * RESOURCE_EXHAUSTED), logged as a warning. `err.data` is `{}` unless
 * `exposeVerdict` (then `{ verdict, reason }` or `{ code, reason }`).
 */
export function socketIoAuth(
  client: Pick<SessionValidatorClient, "validateRequest">,
  options: SocketIoAuthOptions = {},
): (socket: HandshakeSocket, next: (err?: Error) => void) => void {
  const allowAnonymous = options.allowAnonymous ?? false;
  const allowAnonymousSessions = options.allowAnonymousSessions ?? false;
  const exposeVerdict = options.exposeVerdict ?? false;
  const warnings = new WarningLimiter(options.logger);
  return (socket, next) => {
    client.validateRequest(socket.request).then(
      (result) => {
        socket.data.sessionValidation = result;
        const accepted = isAccepted(result, allowAnonymousSessions);
        socket.data.sessionUser = accepted ? result.user : undefined;
        if (accepted || allowAnonymous) {
          next();
        } else {
          next(
            socketAuthError(
              UNAUTHORIZED_MESSAGE,
              exposeVerdict ? { verdict: verdictToJSON(result.verdict), reason: reasonToJSON(result.reason) } : {},
            ),
          );
        }
      },
      (error: unknown) => {
        const denial = errorDenial(error, false);
        warnings.warn(error, denial.status);
        const message = denial.status === 429 ? RATE_LIMITED_MESSAGE : UNAVAILABLE_MESSAGE;
        next(socketAuthError(message, exposeVerdict ? errorData(error) : {}));
      },
    );
  };
}
