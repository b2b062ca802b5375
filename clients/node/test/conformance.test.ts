// tests/vectors/client_conformance.json: what every client (Go, Node, Python) does the same way.
import express from "express";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import { describe, test } from "node:test";
import { authorityFor } from "../src/client";
import { type SessionUserOptions, sessionUser } from "../src/express";
import {
  checkTarget,
  createClient,
  DEFAULT_CHANNEL_OPTIONS,
  DEFAULT_DEADLINE_MS,
  DEFAULT_SERVICE_CONFIG,
  verdictToJSON,
} from "../src/index";
import { env, get, headerBytes, listen, vector } from "./support";

interface MiddlewareCase {
  name: string;
  server: "live" | "down" | "limited" | "unreachable";
  vector: string | null;
  options?: string[];
  repeat?: number;
  status: number;
  user?: string | null;
  body?: Record<string, string>;
  retry_after?: boolean;
  log?: string;
}

interface Conformance {
  service_config: unknown;
  default_timeout_ms: number;
  keepalive: { time_ms: number; timeout_ms: number };
  targets: { schemes: string[]; accepted: string[]; refused: string[] };
  authority: { cases: { target: string; authority: string | null }[] };
  header_text: { cases: { name: string; vector?: string; text?: string; verdict?: string; refused?: boolean }[] };
  middleware: { bodies: Record<string, Record<string, string>>; cases: MiddlewareCase[] };
}

function load(): Conformance {
  return JSON.parse(readFileSync(env.conformancePath, "utf8")) as Conformance;
}

describe("client conformance", () => {
  test("defaults: service config, deadline, keepalive", () => {
    const c = load();
    assert.deepEqual(JSON.parse(JSON.stringify(DEFAULT_SERVICE_CONFIG)), c.service_config);
    assert.deepEqual(JSON.parse(DEFAULT_CHANNEL_OPTIONS["grpc.service_config"] as string), c.service_config);
    assert.equal(DEFAULT_DEADLINE_MS, c.default_timeout_ms);
    assert.equal(DEFAULT_CHANNEL_OPTIONS["grpc.keepalive_time_ms"], c.keepalive.time_ms);
    assert.equal(DEFAULT_CHANNEL_OPTIONS["grpc.keepalive_timeout_ms"], c.keepalive.timeout_ms);
  });

  test("authority: a target naming several addresses sends its first one", () => {
    const cases = load().authority.cases;
    assert.ok(cases.length > 0);
    for (const c of cases) {
      assert.equal(authorityFor(c.target) ?? null, c.authority, c.target);
    }
  });

  test("targets: accepted ones pass, malformed ones are refused at construction", () => {
    const c = load();
    for (const target of c.targets.accepted) {
      assert.equal(checkTarget(target), target);
    }
    for (const target of c.targets.refused) {
      assert.throws(() => createClient(target), (error: unknown) => {
        assert.ok(error instanceof TypeError);
        assert.ok(error.message.includes(JSON.stringify(target)), error.message);
        return true;
      });
    }
    // What a missing environment variable gives in JavaScript.
    assert.throws(() => createClient(undefined as unknown as string), /bad target undefined/);
  });

  test("header text: latin-1 characters are bytes; above U+00FF is refused before any call", async () => {
    const client = createClient(env.addr, { deadlineMs: 5000 });
    try {
      for (const tc of load().header_text.cases) {
        const text = tc.vector !== undefined ? headerBytes(vector(tc.vector)).toString("latin1") : (tc.text ?? "");
        if (tc.refused === true) {
          await assert.rejects(client.validateCookieHeader(text), TypeError, tc.name);
        } else {
          const result = await client.validateCookieHeader(text);
          assert.equal(verdictToJSON(result.verdict), tc.verdict, tc.name);
        }
      }
    } finally {
      client.close();
    }
  });

  const options: Record<string, SessionUserOptions> = {
    anonymous_sessions: { allowAnonymousSessions: true },
    expose_verdict: { exposeVerdict: true },
  };
  const servers = {
    live: () => env.addr,
    down: () => env.downAddr,
    limited: () => env.limitedAddr,
    unreachable: () => env.unreachableAddr,
  };

  for (const tc of load().middleware.cases) {
    test(`middleware: ${tc.name}`, async () => {
      const c = load();
      const warnings: string[] = [];
      const opts: SessionUserOptions = { logger: { warn: (m: string) => warnings.push(m) } };
      for (const name of tc.options ?? []) {
        assert.ok(name in options, `unknown option ${name}`);
        Object.assign(opts, options[name]);
      }
      // A long deadline: a cold channel on a loaded machine must not turn a verdict into a 503.
      const client = createClient(servers[tc.server](), { deadlineMs: 5000 });
      const app = express();
      app.use(sessionUser(client, opts));
      app.get("/", (req, res) => res.json({ user: req.sessionUser?.id ?? null }));
      const server = http.createServer(app);
      const port = await listen(server);
      try {
        const cookie = tc.vector === null ? undefined : headerBytes(vector(tc.vector)).toString("latin1");
        let answer = await get(port, "/", cookie);
        for (let i = 1; i < (tc.repeat ?? 1); i++) {
          answer = await get(port, "/", cookie);
        }
        assert.equal(answer.status, tc.status, JSON.stringify(answer.body));
        if (tc.status === 200) {
          assert.deepEqual(answer.body, { user: tc.user ?? null });
          return;
        }
        assert.deepEqual(answer.body, tc.body);
        if ((tc.options ?? []).length === 0) {
          assert.deepEqual(answer.body, c.middleware.bodies[String(tc.status)]);
        }
        assert.equal(answer.headers["cache-control"], "no-store");
        assert.match(answer.headers["content-type"] ?? "", /^application\/json/);
        if (tc.retry_after === true) {
          assert.match(answer.headers["retry-after"] ?? "", /^[1-9]\d*$/);
        } else {
          assert.equal(answer.headers["retry-after"], undefined);
        }
        if (tc.log !== undefined) {
          assert.equal(warnings.length, 1, warnings.join("\n"));
          assert.ok(warnings[0]?.includes(tc.log), warnings[0]);
        }
        if (cookie !== undefined) {
          assert.ok(!warnings.some((w) => w.includes(cookie)), "a warning holds the cookie");
        }
      } finally {
        server.close();
        client.close();
      }
    });
  }
});
