// ValidateSessions through the client: per-item verdicts and per-item errors.
// (A long deadline: these tests are about answers, not about the default deadline.)
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient, isStoreUnavailable, Verdict } from "../src/index";
import { env, headerBytes, vector } from "./support";

test("validateCookieHeaders: one verdict per header, in order", async () => {
  const client = createClient(env.addr, { deadlineMs: 5000 });
  try {
    const items = await client.validateCookieHeaders([
      headerBytes(vector("valid_object_user")),
      headerBytes(vector("bad_signature_tampered")).toString("latin1"),
      "",
    ]);
    assert.deepEqual(
      items.map((i) => [i.result.verdict, i.error]),
      [
        [Verdict.VERDICT_VALID, undefined],
        [Verdict.VERDICT_BAD_SIGNATURE, undefined],
        [Verdict.VERDICT_MISSING, undefined],
      ],
    );
    assert.equal(items[0]?.result.user?.id, "u-100");
  } finally {
    client.close();
  }
});

test("a credential over the rate limit gets its own RATE_LIMITED error; the others keep their verdicts", async () => {
  const client = createClient(env.limitedAddr, { deadlineMs: 5000 });
  try {
    const bad = headerBytes(vector("bad_signature_tampered"));
    const items = await client.validateCookieHeaders([headerBytes(vector("valid_scalar_user")), bad, bad]);
    assert.equal(items[0]?.result.valid, true);
    assert.equal(items[0]?.error, undefined);
    const last = items[2];
    assert.ok(last?.error !== undefined, "no item error over the limit");
    assert.equal(last.error.code, status.RESOURCE_EXHAUSTED);
    assert.equal(last.error.reason, "RATE_LIMITED");
    assert.ok((last.error.retryDelayMs ?? 0) > 0);
    assert.equal(last.result.valid, false);
  } finally {
    client.close();
  }
});

test("a store outage fails the whole batch", async () => {
  const client = createClient(env.downAddr, { deadlineMs: 5000 });
  try {
    await assert.rejects(client.validateCookieHeaders([headerBytes(vector("valid_object_user"))]), (e: unknown) => isStoreUnavailable(e));
  } finally {
    client.close();
  }
});
