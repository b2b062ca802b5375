// Every shared vector, every expect field, against the live seeded service.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { createClient, Reason, Verdict, type ValidationResult } from "../src/index";
import { reasonFromJSON, verdictFromJSON } from "../src/gen/sessionvalidator/v1/session_validator_service";
import { env, loadVectors, type VectorCase, vector } from "./support";

const client = createClient(env.addr);
after(() => client.close());

function send(c: VectorCase): Promise<ValidationResult> {
  const keys = Object.keys(c.request);
  assert.ok(keys.length <= 1, `vector ${c.name}: more than one credential: ${keys.join(", ")}`);
  const { cookie_header_text: text, cookie_header_b64: b64, signed_value: signed } = c.request;
  if (text !== undefined) return client.validateCookieHeader(text);
  if (b64 !== undefined) return client.validateCookieHeader(Buffer.from(b64, "base64"));
  if (signed !== undefined) return client.validateSignedValue(signed);
  assert.equal(keys.length, 0, `vector ${c.name}: unknown request field ${keys.join(", ")}`);
  return client.validate({ issueToken: false });
}

const CHECKED = new Set([
  "verdict",
  "reason",
  "session_id",
  "authenticated",
  "secret_index",
  "user",
  "has_expire_time",
  "attributes",
]);

describe("shared vectors", () => {
  const cases = loadVectors();

  for (const c of cases) {
    test(c.name, async () => {
      const unknown = Object.keys(c.expect).filter((k) => !CHECKED.has(k));
      assert.deepEqual(unknown, [], `expect fields this test does not check: ${unknown.join(", ")}`);
      const result = await send(c);
      const e = c.expect;

      const verdict = verdictFromJSON(e.verdict);
      assert.notEqual(verdict, Verdict.UNRECOGNIZED, `unknown verdict name ${e.verdict}`);
      assert.equal(result.verdict, verdict, "verdict");
      assert.equal(result.valid, verdict === Verdict.VERDICT_VALID, "valid");
      const reason = reasonFromJSON(e.reason);
      assert.notEqual(reason, Reason.UNRECOGNIZED, `unknown reason name ${e.reason}`);
      assert.equal(result.reason, reason, "reason");
      assert.equal(result.cookieName, "connect.sid", "cookie name");

      if (e.session_id !== undefined) assert.equal(result.sessionId, e.session_id, "session_id");
      if (e.authenticated !== undefined) assert.equal(result.authenticated, e.authenticated, "authenticated");
      if (e.secret_index !== undefined) assert.equal(result.secretIndex, e.secret_index, "secret_index");
      if (e.has_expire_time !== undefined) {
        if (e.has_expire_time) {
          assert.ok(result.expireTime instanceof Date, "expire_time is set");
          assert.ok(!Number.isNaN(result.expireTime.getTime()), "expire_time is a real date");
        } else {
          assert.equal(result.expireTime, undefined, "expire_time is unset");
        }
      }
      if (e.attributes !== undefined) {
        assert.deepEqual(result.user?.attributes, e.attributes, "user.attributes");
      }
      if (e.user !== undefined) {
        const user = result.user;
        assert.ok(user !== undefined, "user is set");
        if (e.user.id !== undefined) assert.equal(user.id, e.user.id, "user.id");
        if (e.user.username !== undefined) assert.equal(user.username, e.user.username, "user.username");
        if (e.user.display_name !== undefined) assert.equal(user.displayName, e.user.display_name, "user.display_name");
        if (e.user.email !== undefined) assert.equal(user.email, e.user.email, "user.email");
        if (e.user.roles !== undefined) assert.deepEqual(user.roles, e.user.roles, "user.roles");
      }
      // Invariants of the contract, on every case.
      if (!result.valid) {
        assert.equal(result.authenticated, false, "never authenticated without VALID");
        assert.equal(result.user, undefined, "never a user without VALID");
      }
      if (result.authenticated) assert.ok(result.user !== undefined, "authenticated implies a user");
    });
  }

  test("covers the whole corpus", () => {
    assert.ok(cases.length >= 35, `only ${cases.length} cases`);
  });
});

describe("byte-exactness", () => {
  test("a header string holding byte 0xE9 (as req.headers.cookie would) is VALID", async () => {
    const raw = Buffer.from(vector("valid_latin1_byte_session_id").request.cookie_header_b64 ?? "", "base64");
    assert.ok(raw.includes(0xe9), "the vector carries the raw byte 0xE9");
    const header = raw.toString("latin1"); // what Node puts in req.headers.cookie
    assert.ok(header.includes("\u00e9"));
    const result = await client.validateCookieHeader(header);
    assert.equal(result.verdict, Verdict.VERDICT_VALID);
    assert.equal(result.sessionId, "\u00e9");
    assert.equal(result.user?.id, "latin");
  });

  test("the same header re-encoded as UTF-8 bytes is not the same cookie", async () => {
    const raw = Buffer.from(vector("valid_latin1_byte_session_id").request.cookie_header_b64 ?? "", "base64");
    const utf8 = Buffer.from(raw.toString("latin1"), "utf8");
    const result = await client.validateCookieHeader(utf8);
    assert.equal(result.verdict, Verdict.VERDICT_BAD_SIGNATURE);
  });

  test("validateRequest sends req.headers.cookie as latin-1 bytes", async () => {
    const raw = Buffer.from(vector("valid_latin1_byte_session_id").request.cookie_header_b64 ?? "", "base64");
    const result = await client.validateRequest({ headers: { cookie: raw.toString("latin1") } });
    assert.equal(result.valid, true);
    assert.equal(result.sessionId, "\u00e9");
  });

  test("a request without a Cookie header is MISSING / NO_COOKIE", async () => {
    const result = await client.validateRequest({ headers: {} });
    assert.equal(result.verdict, Verdict.VERDICT_MISSING);
    assert.equal(result.reason, Reason.REASON_NO_COOKIE);
  });

  test("a string no Node header could hold is refused, not mangled", async () => {
    await assert.rejects(client.validateCookieHeader("connect.sid=s%3A\u20ac"), TypeError);
  });
});
