// Verify SessionValidator session tokens offline: `jose` and the service's JWKS.
//
// A service called on a user's behalf receives a session token (a JWT the
// validator signed, sent by a gateway in `x-session-token` or passed on by the
// first service) and checks it without asking the validator:
//
//   const verifier = createTokenVerifier({
//     jwksUrl: "http://sessionvalidator:8081/.well-known/jwks.json",
//     issuer: "https://sessionvalidator.example",
//     audience: "internal-services",
//   });
//   const claims = await verifier.verify(token); // rejects with InvalidTokenError
//
// The key set is cached (`cacheMaxAgeMs`, at most the JWKS's Cache-Control
// max-age) and fetched again at once when a token names a key the cached set
// lacks, so a key rotation never fails a live session (jose's default 30 s
// cooldown would: it is 0 here unless set). Only the algorithms the validator
// signs with are accepted, and only with the key of the token's `kid`. A token
// stays valid until its `exp` even when the session was logged out sooner.
import type * as Jose from "jose" with { "resolution-mode": "import" };

/** What the validator signs with; `none` and HMAC are refused before any key is looked at. */
export const TOKEN_ALGORITHMS = ["EdDSA", "ES256", "RS256"] as const;

/** The token is not a live session token of this issuer for this audience. */
export class InvalidTokenError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = "InvalidTokenError";
  }
}

/** The JWKS could not be fetched: nothing was decided about the token. */
export class TokenKeysUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TokenKeysUnavailableError";
  }
}

export interface TokenVerifierOptions {
  /** The validator's `/.well-known/jwks.json` on its forward-auth port. */
  jwksUrl: string;
  issuer: string;
  audience: string;
  /** How long the key set is cached (default 300 000 ms, the validator's default max-age). */
  cacheMaxAgeMs?: number;
  /** Least time between fetches caused by unknown `kid` values (default 0: at once). */
  refreshCooldownMs?: number;
  /** Deadline of one JWKS fetch (default 2000 ms). */
  timeoutMs?: number;
  /** Clock skew tolerated on `exp` and `nbf`, in seconds (default 0). */
  clockToleranceS?: number;
}

/** The verified claims of a session token. */
export interface SessionTokenClaims extends Jose.JWTPayload {
  sub: string;
  sid_tag?: string;
  preferred_username?: string;
  name?: string;
  email?: string;
  roles?: string[];
}

export interface TokenVerifier {
  /** Resolve to the claims of a valid token; reject with InvalidTokenError or TokenKeysUnavailableError. */
  verify(token: string): Promise<SessionTokenClaims>;
}

// jose is an ES module; this package is CommonJS, so it is loaded with import() on first use.
let jose: Promise<typeof Jose> | undefined;
function loadJose(): Promise<typeof Jose> {
  jose ??= import("jose");
  return jose;
}

// jose's codes for a key set that could not be had: a timeout, an answer other than 200 or not JSON
// (ERR_JOSE_GENERIC, used by jose only there), or not a key set.
const UNAVAILABLE = new Set(["ERR_JWKS_TIMEOUT", "ERR_JOSE_GENERIC", "ERR_JWKS_INVALID"]);

/** Build a verifier for the tokens of one validator (see the module comment). */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const url = new URL(options.jwksUrl);
  let keys: Jose.RemoteJWKSet | undefined;
  return {
    async verify(token: string): Promise<SessionTokenClaims> {
      const lib = await loadJose();
      keys ??= lib.createRemoteJWKSet(url, {
        cacheMaxAge: options.cacheMaxAgeMs ?? 300_000,
        cooldownDuration: options.refreshCooldownMs ?? 0,
        timeoutDuration: options.timeoutMs ?? 2000,
      });
      try {
        const { payload } = await lib.jwtVerify(token, keys, {
          issuer: options.issuer,
          audience: options.audience,
          algorithms: [...TOKEN_ALGORITHMS],
          requiredClaims: ["sub", "iat", "nbf", "exp", "jti"],
          clockTolerance: options.clockToleranceS ?? 0,
        });
        return payload as SessionTokenClaims;
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        if (typeof code === "string" && UNAVAILABLE.has(code)) {
          throw new TokenKeysUnavailableError(String((error as Error).message));
        }
        if (error instanceof lib.errors.JOSEError) {
          throw new InvalidTokenError(error.message, error.code);
        }
        // fetch() itself failed (no route, refused): the keys could not be had.
        throw new TokenKeysUnavailableError(String((error as Error).message ?? error));
      }
    },
  };
}
