// The Express middleware, in a real Express server, over real HTTP.
import express from "express";
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { sessionUser, type SessionUserOptions } from "../src/express";
import { createClient, type SessionValidatorClient, SessionValidatorError, verdictToJSON } from "../src/index";
import { env, get, headerBytes, listen, vector } from "./support";

/** A cookie header as the string a browser's bytes become (latin-1). */
function cookieOf(name: string): string {
  return headerBytes(vector(name)).toString("latin1");
}

async function startApp(client: SessionValidatorClient, options?: SessionUserOptions): Promise<{ port: number; close: () => void }> {
  const app = express();
  app.get("/me", sessionUser(client, options), (req, res) => {
    res.json({
      user: req.sessionUser ?? null,
      verdict: req.sessionValidation === undefined ? null : verdictToJSON(req.sessionValidation.verdict),
    });
  });
  const server = http.createServer(app);
  const port = await listen(server);
  return { port, close: () => server.close() };
}

describe("sessionUser() middleware", () => {
  let live: SessionValidatorClient;
  let down: SessionValidatorClient;
  before(() => {
    live = createClient(env.addr);
    down = createClient(env.downAddr);
  });
  after(() => {
    live.close();
    down.close();
  });

  test("valid cookie: 200 and req.sessionUser is the Passport user", async () => {
    const app = await startApp(live);
    try {
      const answer = await get(app.port, "/me", cookieOf("valid_object_user"));
      assert.equal(answer.status, 200);
      assert.deepEqual(answer.body, {
        verdict: "VERDICT_VALID",
        user: {
          id: "u-100",
          username: "ann",
          displayName: "Ann Example",
          email: "ann@example.org",
          roles: ["admin", "billing"],
          attributes: {
            id: "u-100",
            username: "ann",
            displayName: "Ann Example",
            emails: [{ value: "ann@example.org" }],
            roles: ["admin", "billing"],
          },
        },
      });
    } finally {
      app.close();
    }
  });

  test("bad signature: 401", async () => {
    const app = await startApp(live);
    try {
      const answer = await get(app.port, "/me", cookieOf("bad_signature_tampered"));
      assert.equal(answer.status, 401);
      assert.deepEqual(answer.body, { error: "unauthorized" });
    } finally {
      app.close();
    }
  });

  test("no Cookie header: 401", async () => {
    const app = await startApp(live);
    try {
      assert.equal((await get(app.port, "/me")).status, 401);
    } finally {
      app.close();
    }
  });

  test("store down: 503 with Retry-After, never 401", async () => {
    const app = await startApp(down);
    try {
      const answer = await get(app.port, "/me", cookieOf("valid_scalar_user"));
      assert.equal(answer.status, 503);
      assert.equal(answer.headers["retry-after"], "1");
      assert.equal(answer.headers["cache-control"], "no-store");
      assert.deepEqual(answer.body, { error: "unavailable" });
    } finally {
      app.close();
    }
  });

  test("raw byte 0xE9 in the Cookie header reaches the validator byte-exact", async () => {
    const app = await startApp(live);
    try {
      const answer = await get(app.port, "/me", cookieOf("valid_latin1_byte_session_id"));
      assert.equal(answer.status, 200);
      assert.equal((answer.body as { user: { id: string } }).user.id, "latin");
      // The UTF-8 encoding of the same text is a different cookie.
      const utf8 = await get(app.port, "/me", cookieOf("bad_signature_utf8_bytes_seen_as_latin1"));
      assert.equal(utf8.status, 401);
    } finally {
      app.close();
    }
  });

  test("several Cookie headers are joined as Node joins them", async () => {
    const app = await startApp(live);
    try {
      const answer = await get(app.port, "/me", ["theme=dark", cookieOf("valid_scalar_user")]);
      assert.equal(answer.status, 200);
      assert.equal((answer.body as { user: { id: string } }).user.id, "42");
    } finally {
      app.close();
    }
  });

  test("a valid anonymous session is refused by default; allowAnonymousSessions admits it with no user", async () => {
    const lenient = await startApp(live, { allowAnonymousSessions: true });
    const strict = await startApp(live);
    try {
      const cookie = cookieOf("valid_anonymous_session");
      assert.deepEqual((await get(lenient.port, "/me", cookie)).body, { user: null, verdict: "VERDICT_VALID" });
      const refused = await get(strict.port, "/me", cookie);
      assert.equal(refused.status, 401);
      assert.deepEqual(refused.body, { error: "unauthorized" });
      assert.equal((await get(strict.port, "/me", cookieOf("valid_scalar_user"))).status, 200);
    } finally {
      lenient.close();
      strict.close();
    }
  });

  test("allowAnonymous lets refused sessions through without a user, but not outages", async () => {
    const app = await startApp(live, { allowAnonymous: true });
    const appDown = await startApp(down, { allowAnonymous: true });
    try {
      assert.deepEqual((await get(app.port, "/me")).body, { user: null, verdict: "VERDICT_MISSING" });
      assert.deepEqual((await get(app.port, "/me", cookieOf("bad_signature_tampered"))).body, {
        user: null,
        verdict: "VERDICT_BAD_SIGNATURE",
      });
      const ok = await get(app.port, "/me", cookieOf("valid_scalar_user"));
      assert.equal((ok.body as { user: { id: string } }).user.id, "42");
      assert.equal((await get(appDown.port, "/me", cookieOf("valid_scalar_user"))).status, 503);
    } finally {
      app.close();
      appDown.close();
    }
  });

  test("onUnauthorized and onUnavailable replace the default answers", async () => {
    const options: SessionUserOptions = {
      onUnauthorized: (_req, res, _next, result) => {
        res.status(403).json({ verdict: verdictToJSON(result.verdict) });
      },
      onUnavailable: (_req, res, _next, error) => {
        res.status(502).json({ reason: error instanceof SessionValidatorError ? error.reason : "?" });
      },
    };
    const app = await startApp(live, options);
    const appDown = await startApp(down, options);
    try {
      const refused = await get(app.port, "/me", cookieOf("malformed_not_signed"));
      assert.equal(refused.status, 403);
      assert.deepEqual(refused.body, { verdict: "VERDICT_MALFORMED" });
      const failed = await get(appDown.port, "/me", cookieOf("valid_scalar_user"));
      assert.equal(failed.status, 502);
      assert.deepEqual(failed.body, { reason: "STORE_UNAVAILABLE" });
    } finally {
      app.close();
      appDown.close();
    }
  });
});
