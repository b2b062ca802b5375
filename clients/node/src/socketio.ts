import { status } from "@grpc/grpc-js";
import { isAccepted, type RequestLike, type SessionValidatorClient, type ValidationResult } from "./client";
import { SessionValidatorError } from "./errors";
import { reasonToJSON, type UserProfile, verdictToJSON } from "./gen/sessionvalidator/v1/session_validator_service";

/** The `connect_error` message for a refused session. */
export const UNAUTHORIZED_MESSAGE = "unauthorized";
/** The `connect_error` message when the session could not be checked. */
export const UNAVAILABLE_MESSAGE = "session store unavailable";

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
  /** Accept handshakes without a usable session (`socket.data.sessionUser` undefined). Errors still refuse. */
  allowAnonymous?: boolean | undefined;
  /** Also refuse valid sessions without a logged-in Passport user. */
  requireAuthenticated?: boolean | undefined;
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
 * A refused session fails the connection with `connect_error` "unauthorized"
 * (`err.data` = `{ verdict, reason }`); a validator error with
 * "session store unavailable" (`err.data` = `{ code, reason }`).
 */
export function socketIoAuth(
  client: Pick<SessionValidatorClient, "validateRequest">,
  options: SocketIoAuthOptions = {},
): (socket: HandshakeSocket, next: (err?: Error) => void) => void {
  const allowAnonymous = options.allowAnonymous ?? false;
  const requireAuthenticated = options.requireAuthenticated ?? false;
  return (socket, next) => {
    client.validateRequest(socket.request).then(
      (result) => {
        socket.data.sessionValidation = result;
        const accepted = isAccepted(result, requireAuthenticated);
        socket.data.sessionUser = accepted ? result.user : undefined;
        if (accepted || allowAnonymous) {
          next();
        } else {
          next(
            socketAuthError(UNAUTHORIZED_MESSAGE, {
              verdict: verdictToJSON(result.verdict),
              reason: reasonToJSON(result.reason),
            }),
          );
        }
      },
      (error: unknown) => next(socketAuthError(UNAVAILABLE_MESSAGE, errorData(error))),
    );
  };
}
