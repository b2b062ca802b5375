import type { NextFunction, Request, RequestHandler, Response } from "express";
import { isAccepted, type SessionValidatorClient, type ValidationResult } from "./client";
import { type Denial, errorDenial, unauthorizedDenial, WarningLimiter, type WarningLogger } from "./denials";
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
   * Also admit valid sessions without a logged-in Passport user (visitors who
   * never logged in, or logged out; `saveUninitialized` or a visit counter
   * makes them), with `req.sessionUser` undefined. Default false: such a
   * session gets 401. Go's `AllowAnonymousSessions()` and Python's
   * `allow_anonymous_sessions=True` mean the same.
   */
  allowAnonymousSessions?: boolean | undefined;
  /**
   * Let every request with a verdict through (with `req.sessionUser`
   * undefined unless a logged-in user is admitted) instead of answering 401:
   * the route decides from `req.sessionValidation`. Errors still answer 503:
   * an outage is never taken for "anonymous". Default false.
   */
  allowAnonymous?: boolean | undefined;
  /** @deprecated Refusing sessions without a logged-in user is the default now; see `allowAnonymousSessions`. */
  requireAuthenticated?: boolean | undefined;
  /**
   * Put the verdict and reason in the default 401 body, and the cause in the
   * default 503 body. Off by default: it tells a caller whether a forged
   * signature verified.
   */
  exposeVerdict?: boolean | undefined;
  /** Where the warning goes when a request gets no verdict (503/429); default `console`. At most one every 10 s. */
  logger?: WarningLogger | undefined;
  /** Answers a refused request. Default: 401 `{"error":"unauthorized"}`, `cache-control: no-store`. */
  onUnauthorized?: ((req: Request, res: Response, next: NextFunction, result: ValidationResult) => void) | undefined;
  /**
   * Answers a request that got no verdict: the store is unavailable or timed
   * out, the validator is unreachable or overloaded, the deadline passed,
   * the caller is rate limited, any other error. `error` is usually a
   * `SessionValidatorError`. Default: 503 `{"error":"unavailable"}` with
   * `Retry-After: 1`, or 429 `{"error":"rate_limited"}` for
   * RESOURCE_EXHAUSTED; `cache-control: no-store` on both. The warning is
   * logged either way.
   */
  onUnavailable?: ((req: Request, res: Response, next: NextFunction, error: unknown) => void) | undefined;
}

function send(res: Response, denial: Denial): void {
  res.status(denial.status).set(denial.headers).json(denial.body);
}

/**
 * Express middleware: validates the request's Cookie header and sets
 * `req.sessionUser` and `req.sessionValidation`. By default only a valid
 * session with a logged-in user gets through; anything else is 401, a rate
 * limited caller 429, and a request that got no verdict (store down,
 * validator unreachable) 503 with Retry-After and a logged warning.
 *
 *     app.use(sessionUser(client));
 */
export function sessionUser(
  client: Pick<SessionValidatorClient, "validateRequest">,
  options: SessionUserOptions = {},
): RequestHandler {
  const allowAnonymous = options.allowAnonymous ?? false;
  const allowAnonymousSessions = options.allowAnonymousSessions ?? false;
  const exposeVerdict = options.exposeVerdict ?? false;
  const onUnauthorized =
    options.onUnauthorized ?? ((_req: Request, res: Response, _next: NextFunction, result: ValidationResult) => send(res, unauthorizedDenial(result, exposeVerdict)));
  const onUnavailable =
    options.onUnavailable ?? ((_req: Request, res: Response, _next: NextFunction, error: unknown) => send(res, errorDenial(error, exposeVerdict)));
  const warnings = new WarningLimiter(options.logger);
  return (req, res, next) => {
    req.sessionUser = undefined;
    req.sessionValidation = undefined;
    client
      .validateRequest(req)
      .then(
        (result) => {
          req.sessionValidation = result;
          if (isAccepted(result, allowAnonymousSessions)) {
            req.sessionUser = result.user;
            next();
          } else if (allowAnonymous) {
            next();
          } else {
            onUnauthorized(req, res, next, result);
          }
        },
        (error: unknown) => {
          warnings.warn(error, errorDenial(error, false).status);
          onUnavailable(req, res, next, error);
        },
      )
      .catch(next);
  };
}
