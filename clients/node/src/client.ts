import { type ChannelCredentials, type ChannelOptions, credentials, Metadata, status } from "@grpc/grpc-js";
import type { IncomingHttpHeaders } from "node:http";
import { ERROR_DOMAIN, errorReasonName, SessionValidatorError, toSessionValidatorError } from "./errors";
import {
  SessionValidatorClient as GrpcSessionValidatorClient,
  type Reason,
  type UserProfile,
  type ValidateSessionRequest,
  type ValidateSessionResponse,
  Verdict,
} from "./gen/sessionvalidator/v1/session_validator_service";

/** The fully qualified gRPC service name. */
export const SERVICE_NAME = "sessionvalidator.v1.SessionValidator";

/** Per-call deadline: well under the 200 ms an Envoy route in front of the caller allows. */
export const DEFAULT_DEADLINE_MS = 150;

/**
 * The service config every client uses unless `channelOptions` replaces it:
 * round-robin over every address the name resolves to, and up to 3 attempts
 * (10 ms, then up to 20 ms backoff, capped at 50 ms) on UNAVAILABLE, or on a
 * CANCELLED the server sent (grpcio's server cancels the calls it has received
 * but not started when a replica stops; they are reads, safe to retry), all
 * inside the one per-call deadline. Retry throttling stops retries when most
 * calls fail, so an outage does not triple the load on the validator.
 */
export const DEFAULT_SERVICE_CONFIG = {
  loadBalancingConfig: [{ round_robin: {} }],
  methodConfig: [
    {
      name: [{ service: SERVICE_NAME }],
      retryPolicy: {
        maxAttempts: 3,
        initialBackoff: "0.01s",
        maxBackoff: "0.05s",
        backoffMultiplier: 2,
        retryableStatusCodes: ["UNAVAILABLE", "CANCELLED"],
      },
    },
  ],
  retryThrottling: { maxTokens: 10, tokenRatio: 0.1 },
} as const;

/** The channel options every client starts from; `ClientOptions.channelOptions` is merged over them. */
export const DEFAULT_CHANNEL_OPTIONS: Readonly<ChannelOptions> = Object.freeze({
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.service_config": JSON.stringify(DEFAULT_SERVICE_CONFIG),
});

/** TLS for the channel. All fields are optional: `{}` is TLS with the system's root CAs. */
export interface TlsOptions {
  /** PEM root certificate(s) that sign the validator's certificate. */
  ca?: Buffer | undefined;
  /** PEM client certificate chain, for mTLS (needs `key`). */
  cert?: Buffer | undefined;
  /** PEM client private key, for mTLS (needs `cert`). */
  key?: Buffer | undefined;
}

export interface ClientOptions {
  /** Default per-call deadline in milliseconds (150). `Infinity` means none. */
  deadlineMs?: number | undefined;
  /**
   * TLS settings. Without `tls` (and without `credentials`) the channel is
   * plaintext, which is only right inside a trusted network or a mesh that
   * adds mTLS itself.
   */
  tls?: TlsOptions | undefined;
  /** Channel credentials to use as they are; takes precedence over `tls`. */
  credentials?: ChannelCredentials | undefined;
  /** gRPC channel options, merged over {@link DEFAULT_CHANNEL_OPTIONS}. */
  channelOptions?: ChannelOptions | undefined;
}

export interface CallOptions {
  /** This call's deadline in milliseconds, instead of the client's default. */
  deadlineMs?: number | undefined;
  /** Cancels the call (it then fails with CANCELLED). */
  signal?: AbortSignal | undefined;
  /** Request metadata to send. */
  metadata?: Metadata | undefined;
  /**
   * Ask for a session token (`result.token`): a short-lived JWT for calling other services on the
   * user's behalf, issued for a valid session of a logged-in user when the service has a signing key.
   * Verify it with `createTokenVerifier`.
   */
  issueToken?: boolean | undefined;
}

/** The validator's answer on one credential. */
export interface ValidationResult {
  /** True only for `Verdict.VERDICT_VALID`; any other value, known or not, is not valid. */
  readonly valid: boolean;
  /** The outcome (an open enum: a number this version does not know is possible). */
  readonly verdict: Verdict;
  /** The finer cause; fall back to `verdict` for values this version does not know. */
  readonly reason: Reason;
  /** The unsigned session id, once a secret verified the signature; "" before that. */
  readonly sessionId: string;
  /** A Passport user is logged in; only ever true when `valid`. */
  readonly authenticated: boolean;
  /** The logged-in user; set only when `valid` and `authenticated`. */
  readonly user: UserProfile | undefined;
  /** When the session expires; undefined for a browser-session cookie kept without TTL. */
  readonly expireTime: Date | undefined;
  /** Index of the secret that verified the signature (0 = current); undefined when none did. */
  readonly secretIndex: number | undefined;
  /** The cookie name the validator looked for. */
  readonly cookieName: string;
  /** The session token asked for with `issueToken`, or "". Valid until its `exp`, even after a logout. */
  readonly token: string;
}

/**
 * One credential's answer in a batch: a result, or, when the service refused
 * that credential on its own (a bad cookie over the caller's rate limit),
 * `error` with the status it would have failed with alone (`code`, `reason`
 * such as `RATE_LIMITED`, `retryDelayMs`); `result` is then not valid.
 */
export interface BatchItem {
  readonly result: ValidationResult;
  readonly error: SessionValidatorError | undefined;
}

/** The most credentials one batch may carry (more is INVALID_ARGUMENT, BATCH_TOO_LARGE). */
export const MAX_BATCH = 256;

/** Anything with Node's request headers: `http.IncomingMessage`, an Express request, `socket.request`. */
export interface RequestLike {
  readonly headers: IncomingHttpHeaders;
}

/** The gRPC resolver schemes a target may name (the same list in every client). */
export const TARGET_SCHEMES: readonly string[] = Object.freeze(["dns", "ipv4", "ipv6", "unix", "unix-abstract", "xds", "passthrough"]);
const KNOWN_SCHEME = /^(?:dns|ipv4|ipv6|unix|unix-abstract|xds|passthrough):/;
const NON_LATIN1 = /[^\u0000-\u00ff]/;

/**
 * Throw a TypeError naming `target` unless it is `host:port` (port 1-65535)
 * or a gRPC target with one of {@link TARGET_SCHEMES} and something after it.
 * `createClient(process.env.UNSET)` fails here, not with every request.
 */
export function checkTarget(target: unknown): string {
  const bad = (why: string): TypeError =>
    new TypeError(
      `sessionvalidator: bad target ${JSON.stringify(target) ?? String(target)}: ${why}; ` +
        "want host:port (such as localhost:50051) or a gRPC target such as dns:///name:50051 or unix:///path",
    );
  if (typeof target !== "string") {
    throw bad("it is not a string (is the address variable set?)");
  }
  if (target === "") {
    throw bad("it is empty (is the address variable set?)");
  }
  if (/\s/.test(target)) {
    throw bad("it contains blanks");
  }
  const scheme = KNOWN_SCHEME.exec(target);
  if (scheme !== null) {
    if (target.slice(scheme[0].length).replace(/^\/+|\/+$/g, "") === "") {
      throw bad("nothing follows the scheme");
    }
    return target;
  }
  const url = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(target);
  if (url !== null) {
    throw bad(`it is a URL with scheme ${url[1]}, not a gRPC target`);
  }
  const hostPort = /^(\[[^\]]*\]|[^:\[\]]*):([^:]*)$/.exec(target);
  if (hostPort === null) {
    throw bad("it has no port");
  }
  const [, host, port] = hostPort as unknown as [string, string, string];
  if (host === "" || host === "[]") {
    throw bad("it has no host");
  }
  const n = /^\d+$/.test(port) ? Number(port) : NaN;
  if (!(n >= 1 && n <= 65535)) {
    throw bad("the port is not a number from 1 to 65535");
  }
  return target;
}

/** `host:port` becomes `dns:host:port`; targets with a gRPC scheme are kept as given. */
export function normalizeTarget(target: string): string {
  return KNOWN_SCHEME.test(target) ? target : `dns:${target}`;
}

const SEVERAL_ADDRESSES = /^ipv[46]:(?:\/\/\/)?([^,]+),/;

/**
 * The authority sent for `target`: its first address when it names several
 * (`ipv4:a,b`, `ipv6:a,b`), else undefined (the library's default, which for
 * such a target holds the comma that the service's native server kind
 * answers INTERNAL on every call; tests/vectors/client_conformance.json).
 */
export function authorityFor(target: string): string | undefined {
  return SEVERAL_ADDRESSES.exec(target)?.[1];
}

function channelCredentials(options: ClientOptions): ChannelCredentials {
  if (options.credentials !== undefined) {
    return options.credentials;
  }
  const tls = options.tls;
  if (tls === undefined) {
    return credentials.createInsecure();
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new TypeError("tls.cert and tls.key must be given together (mTLS)");
  }
  return credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

function toResult(response: ValidateSessionResponse): ValidationResult {
  const valid = response.verdict === Verdict.VERDICT_VALID;
  const authenticated = valid && response.authenticated;
  return {
    valid,
    verdict: response.verdict,
    reason: response.reason,
    sessionId: response.sessionId,
    authenticated,
    user: authenticated ? response.user : undefined,
    expireTime: response.expireTime,
    secretIndex: response.secretIndex,
    cookieName: response.cookieName,
    token: response.token,
  };
}

/**
 * A SessionValidator client. Create one per process (it owns one channel,
 * with its connections) and share it; `close()` it on shutdown.
 */
export class SessionValidatorClient {
  readonly #grpc: GrpcSessionValidatorClient;
  readonly #deadlineMs: number;

  constructor(target: string, options: ClientOptions = {}) {
    checkTarget(target);
    const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    if (!(deadlineMs > 0)) {
      throw new RangeError(`deadlineMs must be positive, got ${deadlineMs}`);
    }
    this.#deadlineMs = deadlineMs;
    const authority = authorityFor(target);
    this.#grpc = new GrpcSessionValidatorClient(normalizeTarget(target), channelCredentials(options), {
      ...DEFAULT_CHANNEL_OPTIONS,
      ...(authority === undefined ? {} : { "grpc.default_authority": authority }),
      ...options.channelOptions,
    });
  }

  /**
   * Validate a Cookie header. A string is taken as Node holds header values
   * (each character one latin-1 byte, as in `req.headers.cookie`) and sent as
   * exactly those bytes; a Buffer is sent as it is.
   */
  validateCookieHeader(header: string | Uint8Array, options?: CallOptions): Promise<ValidationResult> {
    let bytes: Buffer;
    if (typeof header === "string") {
      if (NON_LATIN1.test(header)) {
        return Promise.reject(
          new TypeError(
            "cookie header has characters above U+00FF, which no header bytes decode to (Node's http refuses to write them); pass the raw bytes",
          ),
        );
      }
      bytes = Buffer.from(header, "latin1");
    } else {
      bytes = Buffer.isBuffer(header) ? header : Buffer.from(header.buffer, header.byteOffset, header.byteLength);
    }
    const issueToken = options?.issueToken ?? false;
    return this.validate({ credential: { $case: "cookieHeader", cookieHeader: bytes }, issueToken }, options);
  }

  /** Validate a bare cookie value such as `s%3A<sid>.<signature>` or `s:<sid>.<signature>`. */
  validateSignedValue(value: string, options?: CallOptions): Promise<ValidationResult> {
    const issueToken = options?.issueToken ?? false;
    return this.validate({ credential: { $case: "signedValue", signedValue: value }, issueToken }, options);
  }

  /**
   * Validate the Cookie header of an incoming request (`req.headers.cookie`,
   * which Node has already joined with "; " when several arrived). A request
   * without one is sent as a request without a credential (VERDICT_MISSING).
   */
  validateRequest(req: RequestLike, options?: CallOptions): Promise<ValidationResult> {
    const cookie = req.headers.cookie;
    return cookie === undefined
      ? this.validate({ issueToken: options?.issueToken ?? false }, options)
      : this.validateCookieHeader(cookie, options);
  }

  /** Send a raw ValidateSession request. */
  validate(request: ValidateSessionRequest, options: CallOptions = {}): Promise<ValidationResult> {
    const deadline = Date.now() + (options.deadlineMs ?? this.#deadlineMs);
    return new Promise<ValidationResult>((resolve, reject) => {
      const signal = options.signal;
      const onAbort = (): void => call.cancel();
      const call = this.#grpc.validateSession(request, options.metadata ?? new Metadata(), { deadline }, (error, response) => {
        signal?.removeEventListener("abort", onAbort);
        if (error !== null) {
          reject(toSessionValidatorError(error));
        } else {
          resolve(toResult(response));
        }
      });
      if (signal?.aborted) {
        call.cancel();
      } else {
        signal?.addEventListener("abort", onAbort, { once: true });
      }
    }).catch((error: unknown) => Promise.reject(toSessionValidatorError(error)));
  }

  /**
   * Judge up to {@link MAX_BATCH} credentials in one call and one store round
   * trip (ValidateSessions), in order. A rejected promise means the whole call
   * failed (store down, overload, a banned client, too many credentials).
   */
  validateBatch(requests: ValidateSessionRequest[], options: CallOptions = {}): Promise<BatchItem[]> {
    const deadline = Date.now() + (options.deadlineMs ?? this.#deadlineMs);
    return new Promise<BatchItem[]>((resolve, reject) => {
      this.#grpc.validateSessions({ requests }, options.metadata ?? new Metadata(), { deadline }, (error, response) => {
        if (error !== null) {
          reject(toSessionValidatorError(error));
          return;
        }
        if (response.responses.length !== requests.length) {
          reject(new SessionValidatorError(status.INTERNAL, `the service answered ${response.responses.length} of ${requests.length} credentials`));
          return;
        }
        resolve(
          response.responses.map((r) => ({
            result: toResult(r),
            error:
              r.error === undefined
                ? undefined
                : new SessionValidatorError(r.error.code, r.error.message, {
                    errorInfo: { reason: errorReasonName(r.error.reason), domain: ERROR_DOMAIN, metadata: {} },
                    retryDelayMs:
                      r.error.retryDelay === undefined ? undefined : r.error.retryDelay.seconds * 1000 + r.error.retryDelay.nanos / 1e6,
                  }),
          })),
        );
      });
    });
  }

  /** {@link validateBatch} for Cookie headers (strings as latin-1, as {@link validateCookieHeader}). */
  validateCookieHeaders(headers: (string | Uint8Array)[], options?: CallOptions): Promise<BatchItem[]> {
    const requests: ValidateSessionRequest[] = [];
    for (const header of headers) {
      if (typeof header === "string" && NON_LATIN1.test(header)) {
        return Promise.reject(new TypeError("cookie header has characters above U+00FF, which no header bytes decode to; pass the raw bytes"));
      }
      const bytes = typeof header === "string" ? Buffer.from(header, "latin1") : Buffer.from(header.buffer, header.byteOffset, header.byteLength);
      requests.push({ credential: { $case: "cookieHeader", cookieHeader: bytes }, issueToken: options?.issueToken ?? false });
    }
    return this.validateBatch(requests, options);
  }

  /** Resolve once the channel is connected, or reject after `timeoutMs`. */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#grpc.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve()));
    });
  }

  /** Close the channel; calls in flight fail with CANCELLED or UNAVAILABLE. */
  close(): void {
    this.#grpc.close();
  }
}

/**
 * Whether a result lets a request through as a known session (internal to the
 * middleware): a valid session with a logged-in user, or any valid session
 * when the app opted in to anonymous sessions.
 */
export function isAccepted(result: ValidationResult, allowAnonymousSessions: boolean): boolean {
  return result.valid && (result.authenticated || allowAnonymousSessions);
}

/** Create a client for `target` (`host:port`, or any gRPC target such as `dns:///name:port`). */
export function createClient(target: string, options?: ClientOptions): SessionValidatorClient {
  return new SessionValidatorClient(target, options);
}
