// Errors are never verdicts: store outages, deadlines, unreachable validators.
import { Metadata, Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import {
  createClient,
  DEFAULT_DEADLINE_MS,
  ERROR_DOMAIN,
  isStoreUnavailable,
  normalizeTarget,
  Reason,
  SessionValidatorError,
  StoreUnavailableError,
  Verdict,
} from "../src/index";
import { ErrorInfo } from "../src/gen/google/rpc/error_details";
import { Status } from "../src/gen/google/rpc/status";
import {
  type ValidateSessionRequest,
  type ValidateSessionResponse,
  SessionValidatorService,
} from "../src/gen/sessionvalidator/v1/session_validator_service";
import { env, headerBytes, listen, vector } from "./support";

type Handler = (call: ServerUnaryCall<ValidateSessionRequest, ValidateSessionResponse>, callback: sendUnaryData<ValidateSessionResponse>) => void;

/** A stand-in server for what the real one never sends (unknown enums, scripted failures). */
async function withFakeServer(handler: Handler, body: (target: string) => Promise<void>): Promise<void> {
  const server = new Server();
  server.addService(SessionValidatorService, { validateSession: handler });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))),
  );
  try {
    await body(`127.0.0.1:${port}`);
  } finally {
    server.forceShutdown();
  }
}

function statusDetails(code: status, message: string, reason: string): Metadata {
  const metadata = new Metadata();
  const info = ErrorInfo.encode({ reason, domain: ERROR_DOMAIN, metadata: {} }).finish();
  const details = Status.encode({
    code,
    message,
    details: [{ typeUrl: "type.googleapis.com/google.rpc.ErrorInfo", value: Buffer.from(info) }],
  }).finish();
  metadata.set("grpc-status-details-bin", Buffer.from(details));
  return metadata;
}

const VALID_RESPONSE: ValidateSessionResponse = {
  verdict: Verdict.VERDICT_VALID,
  reason: Reason.REASON_SESSION_ACTIVE,
  sessionId: "sid",
  authenticated: false,
  cookieName: "connect.sid",
  token: "",
};

describe("store down (live service)", () => {
  test("UNAVAILABLE with ErrorInfo STORE_UNAVAILABLE, as a StoreUnavailableError", async () => {
    const client = createClient(env.downAddr, { deadlineMs: 5000 }); // about the mapping, not the deadline
    try {
      const valid = vector("valid_scalar_user");
      const error = await client.validateCookieHeader(headerBytes(valid)).then(
        (result) => assert.fail(`an outage became a verdict: ${JSON.stringify(result)}`),
        (e: unknown) => e,
      );
      assert.ok(error instanceof StoreUnavailableError, String(error));
      assert.ok(error instanceof SessionValidatorError);
      assert.ok(isStoreUnavailable(error));
      assert.equal(error.code, status.UNAVAILABLE);
      assert.equal(error.reason, "STORE_UNAVAILABLE");
      assert.equal(error.domain, ERROR_DOMAIN);
      assert.deepEqual(error.errorMetadata, { retryable: "true" });
      assert.equal(error.retryable, true);
      assert.match(error.message, /UNAVAILABLE \(STORE_UNAVAILABLE\)/);
    } finally {
      client.close();
    }
  });

  test("a cookie judged without the store still gets its verdict", async () => {
    const client = createClient(env.downAddr, { deadlineMs: 5000 }); // about the mapping, not the deadline
    try {
      const result = await client.validateCookieHeader(headerBytes(vector("bad_signature_tampered")));
      assert.equal(result.verdict, Verdict.VERDICT_BAD_SIGNATURE);
    } finally {
      client.close();
    }
  });
});

describe("deadlines and reachability", () => {
  test(`the default ${DEFAULT_DEADLINE_MS} ms deadline: a server that never answers fails fast`, async () => {
    const sockets = new Set<net.Socket>();
    const blackhole = net.createServer((socket) => {
      sockets.add(socket); // accept, read nothing, answer nothing
    });
    const port = await listen(blackhole);
    const client = createClient(`127.0.0.1:${port}`);
    try {
      const started = performance.now();
      const error = await client.validateCookieHeader("connect.sid=s%3Aabc.def").then(
        () => assert.fail("a server that never answers gave a verdict"),
        (e: unknown) => e,
      );
      const elapsed = performance.now() - started;
      assert.ok(error instanceof SessionValidatorError, String(error));
      assert.ok(!(error instanceof StoreUnavailableError));
      assert.equal(error.code, status.DEADLINE_EXCEEDED);
      assert.equal(error.retryable, true);
      assert.ok(elapsed >= DEFAULT_DEADLINE_MS - 20, `failed after ${elapsed.toFixed(0)} ms, before the deadline`);
      assert.ok(elapsed < 1_000, `took ${elapsed.toFixed(0)} ms`);
      assert.ok(sockets.size > 0, "the client did connect");
    } finally {
      client.close();
      for (const socket of sockets) socket.destroy();
      blackhole.close();
    }
  });

  test("a per-call deadline overrides the default", async () => {
    const sockets = new Set<net.Socket>();
    const blackhole = net.createServer((socket) => sockets.add(socket));
    const port = await listen(blackhole);
    const client = createClient(`127.0.0.1:${port}`, { deadlineMs: 5_000 });
    try {
      const started = performance.now();
      await assert.rejects(client.validateSignedValue("s:abc.def", { deadlineMs: 50 }), { code: status.DEADLINE_EXCEEDED });
      assert.ok(performance.now() - started < 1_000);
    } finally {
      client.close();
      for (const socket of sockets) socket.destroy();
      blackhole.close();
    }
  });

  test("an unreachable validator is UNAVAILABLE without a reason", async () => {
    const probe = net.createServer();
    const port = await listen(probe);
    await new Promise((resolve) => probe.close(resolve)); // nothing listens there now
    const client = createClient(`127.0.0.1:${port}`);
    try {
      const error = await client.validateSignedValue("s:abc.def").then(
        () => assert.fail("an unreachable validator gave a verdict"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof StoreUnavailableError, String(error));
      assert.equal(error.reason, undefined);
    } finally {
      client.close();
    }
  });

  test("an aborted call fails with CANCELLED", async () => {
    const client = createClient(env.addr);
    try {
      const controller = new AbortController();
      controller.abort();
      await assert.rejects(client.validateSignedValue("s:abc.def", { signal: controller.signal }), {
        name: "SessionValidatorError",
        code: status.CANCELLED,
      });
    } finally {
      client.close();
    }
  });

  test("targets without a scheme resolve through dns:", () => {
    assert.equal(normalizeTarget("127.0.0.1:50051"), "dns:127.0.0.1:50051");
    assert.equal(normalizeTarget("validator.svc:50051"), "dns:validator.svc:50051");
    assert.equal(normalizeTarget("[::1]:50051"), "dns:[::1]:50051");
    assert.equal(normalizeTarget("dns:///validator:50051"), "dns:///validator:50051");
    assert.equal(normalizeTarget("unix:/run/sv.sock"), "unix:/run/sv.sock");
    assert.equal(normalizeTarget("ipv4:10.0.0.1:50051,10.0.0.2:50051"), "ipv4:10.0.0.1:50051,10.0.0.2:50051");
  });

  test("mTLS needs both cert and key", () => {
    assert.throws(() => createClient("127.0.0.1:1", { tls: { cert: Buffer.from("x") } }), TypeError);
  });
});

describe("client behaviour the real service cannot show", () => {
  test("unknown verdicts are not valid and carry no user", async () => {
    await withFakeServer(
      (_call, callback) =>
        callback(null, {
          ...VALID_RESPONSE,
          verdict: 42 as Verdict,
          authenticated: true,
          user: { id: "u", username: "", displayName: "", email: "", roles: [] },
        }),
      async (target) => {
        const client = createClient(target);
        try {
          const result = await client.validateSignedValue("s:abc.def");
          assert.equal(result.verdict, 42);
          assert.equal(result.valid, false);
          assert.equal(result.authenticated, false);
          assert.equal(result.user, undefined);
        } finally {
          client.close();
        }
      },
    );
  });

  test("UNAVAILABLE is retried (3 attempts in all) within the one deadline", async () => {
    let attempts = 0;
    await withFakeServer(
      (_call, callback) => {
        attempts += 1;
        if (attempts < 3) {
          callback({ code: status.UNAVAILABLE, details: "session store unavailable", metadata: statusDetails(status.UNAVAILABLE, "x", "STORE_UNAVAILABLE") });
        } else {
          callback(null, VALID_RESPONSE);
        }
      },
      async (target) => {
        const client = createClient(target);
        try {
          const result = await client.validateSignedValue("s:abc.def");
          assert.equal(result.valid, true);
          assert.equal(attempts, 3);
        } finally {
          client.close();
        }
      },
    );
  });

  test("INTERNAL is not retried, and its ErrorInfo is decoded", async () => {
    let attempts = 0;
    await withFakeServer(
      (_call, callback) => {
        attempts += 1;
        callback({ code: status.INTERNAL, details: "internal error", metadata: statusDetails(status.INTERNAL, "internal error", "INTERNAL_ERROR") });
      },
      async (target) => {
        const client = createClient(target);
        try {
          const error = await client.validateSignedValue("s:abc.def").then(
            () => assert.fail("an error became a verdict"),
            (e: unknown) => e,
          );
          assert.ok(error instanceof SessionValidatorError);
          assert.ok(!isStoreUnavailable(error));
          assert.equal(error.code, status.INTERNAL);
          assert.equal(error.reason, "INTERNAL_ERROR");
          assert.equal(error.retryable, false);
          assert.equal(attempts, 1);
        } finally {
          client.close();
        }
      },
    );
  });
});
