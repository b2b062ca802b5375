// Session tokens: one the live service issues verifies offline with `jose` and the JWKS fetched over
// HTTP; the harness's forged and stale tokens (tests/support/token_vectors.py) never do.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { createClient, createTokenVerifier, InvalidTokenError, TokenKeysUnavailableError } from "../src/index";
import { env, headerBytes, vector } from "./support";

interface TokenVectors {
  jwks_url: string;
  issuer: string;
  audience: string;
  refused: Record<string, string>;
}

const REFUSED = [
  "alg_none",
  "expired",
  "hs256_with_the_public_key",
  "no_subject",
  "not_yet_valid",
  "retired_and_removed_key",
  "tampered_claims",
  "unknown_kid",
  "wrong_audience",
  "wrong_issuer",
];

function vectors(): TokenVectors {
  return JSON.parse(readFileSync(env.tokensPath, "utf8")) as TokenVectors;
}

function verifier(v: TokenVectors, jwksUrl = v.jwks_url) {
  return createTokenVerifier({ jwksUrl, issuer: v.issuer, audience: v.audience });
}

test("a token the service issued verifies with jose and the JWKS over HTTP", async () => {
  const v = vectors();
  const client = createClient(env.addr, { deadlineMs: 5000 });
  try {
    const result = await client.validateCookieHeader(headerBytes(vector("valid_object_user")), { issueToken: true });
    assert.ok(result.valid);
    assert.notEqual(result.token, "");
    assert.ok(!result.token.includes(result.sessionId));
    const claims = await verifier(v).verify(result.token);
    assert.equal(claims.sub, result.user?.id);
    assert.equal(claims.iss, v.issuer);
    assert.ok(result.expireTime !== undefined && (claims.exp ?? Infinity) * 1000 <= result.expireTime.getTime());
    // Not asked for, or no user: no token.
    const plain = await client.validateCookieHeader(headerBytes(vector("valid_object_user")));
    assert.equal(plain.token, "");
    const anonymous = await client.validateCookieHeader(headerBytes(vector("valid_anonymous_session")), { issueToken: true });
    assert.equal(anonymous.token, "");
  } finally {
    client.close();
  }
});

test("forged and stale tokens are refused", async () => {
  const v = vectors();
  assert.deepEqual(Object.keys(v.refused).sort(), REFUSED);
  const check = verifier(v);
  for (const name of REFUSED) {
    await assert.rejects(check.verify(v.refused[name] ?? ""), InvalidTokenError, name);
  }
  for (const garbage of ["", "a.b", "a.b.c", "not a token"]) {
    await assert.rejects(check.verify(garbage), InvalidTokenError, garbage);
  }
});

test("keys that cannot be fetched are not a verdict", async () => {
  const v = vectors();
  const client = createClient(env.addr, { deadlineMs: 5000 });
  try {
    const { token } = await client.validateCookieHeader(headerBytes(vector("valid_object_user")), { issueToken: true });
    const unreachable = verifier(v, `http://${env.unreachableAddr}/.well-known/jwks.json`);
    await assert.rejects(unreachable.verify(token), TokenKeysUnavailableError);
    const notFound = verifier(v, v.jwks_url.replace("/.well-known/jwks.json", "/no-such-path"));
    await assert.rejects(notFound.verify(token), TokenKeysUnavailableError);
  } finally {
    client.close();
  }
});
