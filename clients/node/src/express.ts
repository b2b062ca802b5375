import type { NextFunction, Request, RequestHandler, Response } from "express";
import { isAccepted, type SessionValidatorClient, type ValidationResult } from "./client";
import type { UserProfile } from "./gen/sessionvalidator/v1/session_validator_service";

declare global {
  // Express's own extension point for request properties (as Passport uses).
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The logged-in user of a valid session, set by `sessionUser()`; undefined otherwise. */
      sessionUser?: UserProfile | undefined;
      /** The validator's full answer, set by `sessionUser()` whenever it got one. */
      sessionValidation?: ValidationResult | undefined;
    }
  }
}

export interface SessionUserOptions {
  /**
   * Let requests without a usable session through (with `req.sessionUser`
   * undefined) instead of answering 401. Errors still answer 503: an outage
   * is never taken for "anonymous". Default false.
   */
  allowAnonymous?: boolean | undefined;
  /**
   * Also refuse valid sessions that have no logged-in Passport user.
   * Default false: a valid anonymous session passes with `req.sessionUser`
   * undefined.
   */
  requireAuthenticated?: boolean | undefined;
  /** Answers a refused request. Default: 401 `{"error":"unauthorized"}`. */
  onUnauthorized?: ((req: Request, res: Response, next: NextFunction, result: ValidationResult) => void) | undefined;
  /**
   * Answers a request whose session could not be checked: the store is
   * unavailable or timed out, the deadline passed, or any other error.
   * `error` is usually a `SessionValidatorError`. Default: 503 with
   * `Retry-After: 1` and `{"error":"session validation unavailable"}`.
   */
  onUnavailable?: ((req: Request, res: Response, next: NextFunction, error: unknown) => void) | undefined;
}

function unauthorized(_req: Request, res: Response): void {
  res.status(401).json({ error: "unauthorized" });
}

function unavailable(_req: Request, res: Response): void {
  res.status(503).set("Retry-After", "1").json({ error: "session validation unavailable" });
}

/**
 * Express middleware: validates the request's Cookie header and sets
 * `req.sessionUser` and `req.sessionValidation`.
 *
 *     app.use(sessionUser(client));
 */
export function sessionUser(
  client: Pick<SessionValidatorClient, "validateRequest">,
  options: SessionUserOptions = {},
): RequestHandler {
  const allowAnonymous = options.allowAnonymous ?? false;
  const requireAuthenticated = options.requireAuthenticated ?? false;
  const onUnauthorized = options.onUnauthorized ?? unauthorized;
  const onUnavailable = options.onUnavailable ?? unavailable;
  return (req, res, next) => {
    req.sessionUser = undefined;
    req.sessionValidation = undefined;
    client
      .validateRequest(req)
      .then(
        (result) => {
          req.sessionValidation = result;
          if (isAccepted(result, requireAuthenticated)) {
            req.sessionUser = result.user;
            next();
          } else if (allowAnonymous) {
            next();
          } else {
            onUnauthorized(req, res, next, result);
          }
        },
        (error: unknown) => onUnavailable(req, res, next, error),
      )
      .catch(next);
  };
}
