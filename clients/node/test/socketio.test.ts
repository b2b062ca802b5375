// The Socket.IO middleware, with a real Socket.IO server and socket.io-client.
import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { type DefaultEventsMap, Server } from "socket.io";
import { io as connect, type Socket as ClientSocket } from "socket.io-client";
import { createClient, type SessionValidatorClient, type UserProfile } from "../src/index";
import { type ConnectErrorData, type SessionSocketData, socketIoAuth, type SocketIoAuthOptions, UNAVAILABLE_MESSAGE } from "../src/socketio";
import { env, headerBytes, listen, vector } from "./support";

interface ServerToClient {
  hello: (user: UserProfile | null) => void;
}

async function startIo(
  client: SessionValidatorClient,
  options?: SocketIoAuthOptions,
): Promise<{ url: string; close: () => Promise<void> }> {
  const httpServer = http.createServer();
  const io = new Server<DefaultEventsMap, ServerToClient, DefaultEventsMap, SessionSocketData>(httpServer);
  io.use(socketIoAuth(client, options));
  io.on("connection", (socket) => {
    socket.emit("hello", socket.data.sessionUser ?? null);
  });
  const port = await listen(httpServer);
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => void io.close(() => resolve())) };
}

function open(url: string, cookie?: string): ClientSocket<ServerToClient> {
  return connect(url, {
    forceNew: true,
    reconnection: false,
    ...(cookie === undefined ? {} : { extraHeaders: { cookie } }),
  });
}

/** The user the server greets with, or the connect_error it refuses with. */
async function handshake(url: string, cookie?: string): Promise<{ user: UserProfile | null } | { error: Error & { data?: ConnectErrorData } }> {
  const socket = open(url, cookie);
  try {
    return await new Promise((resolve) => {
      socket.on("hello", (user) => resolve({ user }));
      socket.on("connect_error", (error) => resolve({ error }));
    });
  } finally {
    socket.close();
  }
}

function cookieOf(name: string): string {
  return headerBytes(vector(name)).toString("latin1");
}

describe("socketIoAuth() middleware", () => {
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

  test("valid cookie: connects and the server sees socket.data.sessionUser", async () => {
    const server = await startIo(live);
    try {
      const outcome = await handshake(server.url, cookieOf("valid_object_user"));
      assert.ok("user" in outcome, `refused: ${"error" in outcome ? outcome.error.message : ""}`);
      assert.equal(outcome.user?.id, "u-100");
      assert.equal(outcome.user?.username, "ann");
    } finally {
      await server.close();
    }
  });

  test("raw byte 0xE9 in the handshake's Cookie header is VALID", async () => {
    const server = await startIo(live);
    try {
      const outcome = await handshake(server.url, cookieOf("valid_latin1_byte_session_id"));
      assert.ok("user" in outcome, `refused: ${"error" in outcome ? outcome.error.message : ""}`);
      assert.equal(outcome.user?.id, "latin");
    } finally {
      await server.close();
    }
  });

  test("invalid cookie: connect_error 'unauthorized', the verdict only with exposeVerdict", async () => {
    const server = await startIo(live);
    const verbose = await startIo(live, { exposeVerdict: true });
    try {
      const outcome = await handshake(server.url, cookieOf("bad_signature_tampered"));
      assert.ok("error" in outcome, "an invalid cookie connected");
      assert.equal(outcome.error.message, "unauthorized");
      assert.deepEqual(outcome.error.data, {});
      const exposed = await handshake(verbose.url, cookieOf("bad_signature_tampered"));
      assert.ok("error" in exposed, "an invalid cookie connected");
      assert.deepEqual(exposed.error.data, { verdict: "VERDICT_BAD_SIGNATURE", reason: "REASON_SIGNATURE_MISMATCH" });
    } finally {
      await server.close();
      await verbose.close();
    }
  });

  test("no cookie: connect_error 'unauthorized'; allowAnonymous connects without a user", async () => {
    const strict = await startIo(live);
    const lenient = await startIo(live, { allowAnonymous: true });
    try {
      const refused = await handshake(strict.url);
      assert.ok("error" in refused);
      assert.equal(refused.error.message, "unauthorized");
      assert.deepEqual(refused.error.data, {});
      assert.deepEqual(await handshake(lenient.url), { user: null });
    } finally {
      await strict.close();
      await lenient.close();
    }
  });

  test("store down: connect_error with the unavailable message, even with allowAnonymous", async () => {
    for (const options of [{ exposeVerdict: true }, { allowAnonymous: true, exposeVerdict: true }]) {
      const server = await startIo(down, { ...options, logger: { warn: () => undefined } });
      try {
        const outcome = await handshake(server.url, cookieOf("valid_scalar_user"));
        assert.ok("error" in outcome, "an outage let the socket connect");
        assert.equal(outcome.error.message, UNAVAILABLE_MESSAGE);
        assert.equal(outcome.error.message, "unavailable");
        assert.deepEqual(outcome.error.data, { code: "UNAVAILABLE", reason: "STORE_UNAVAILABLE" });
      } finally {
        await server.close();
      }
    }
  });

  test("a valid anonymous session is refused by default; allowAnonymousSessions accepts it", async () => {
    const server = await startIo(live, { exposeVerdict: true });
    const lenient = await startIo(live, { allowAnonymousSessions: true });
    try {
      const outcome = await handshake(server.url, cookieOf("valid_anonymous_session"));
      assert.ok("error" in outcome);
      assert.deepEqual(outcome.error.data, { verdict: "VERDICT_VALID", reason: "REASON_SESSION_ACTIVE" });
      assert.deepEqual(await handshake(lenient.url, cookieOf("valid_anonymous_session")), { user: null });
    } finally {
      await server.close();
      await lenient.close();
    }
  });
});
