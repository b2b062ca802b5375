// Shared test support: the harness's environment, the vectors, small servers.
import { once } from "node:events";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";

const HOW_TO_RUN =
  "run the tests through the harness, from the repository root: " +
  ".venv/bin/python tests/harness.py -- bash -c 'cd clients/node && npm test'";

/** An environment variable the harness sets; missing is a failure, never a skip. */
export function requireEnv(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set: ${HOW_TO_RUN}`);
  }
  return value;
}

export const env = {
  get addr(): string {
    return requireEnv("SESSIONVALIDATOR_TEST_ADDR");
  },
  get downAddr(): string {
    return requireEnv("SESSIONVALIDATOR_TEST_DOWN_ADDR");
  },
  get vectorsPath(): string {
    return requireEnv("SESSIONVALIDATOR_TEST_VECTORS");
  },
  get limitedAddr(): string {
    return requireEnv("SESSIONVALIDATOR_TEST_LIMITED_ADDR");
  },
  get unreachableAddr(): string {
    return requireEnv("SESSIONVALIDATOR_TEST_UNREACHABLE_ADDR");
  },
  get conformancePath(): string {
    return requireEnv("SESSIONVALIDATOR_TEST_CONFORMANCE");
  },
  get tokensPath(): string {
    return requireEnv("SESSIONVALIDATOR_TEST_TOKENS");
  },
};

export interface VectorRequest {
  cookie_header_text?: string;
  cookie_header_b64?: string;
  signed_value?: string;
}

export interface VectorUser {
  id?: string;
  username?: string;
  display_name?: string;
  email?: string;
  roles?: string[];
}

export interface VectorExpect {
  verdict: string;
  reason: string;
  session_id?: string;
  authenticated?: boolean;
  secret_index?: number;
  user?: VectorUser;
  has_expire_time?: boolean;
  attributes?: Record<string, unknown>;
}

export interface VectorCase {
  name: string;
  request: VectorRequest;
  expect: VectorExpect;
}

export function loadVectors(): VectorCase[] {
  const corpus = JSON.parse(readFileSync(env.vectorsPath, "utf8")) as { cases: VectorCase[] };
  if (!Array.isArray(corpus.cases) || corpus.cases.length === 0) {
    throw new Error(`${env.vectorsPath} has no cases`);
  }
  return corpus.cases;
}

export function vector(name: string): VectorCase {
  const found = loadVectors().find((c) => c.name === name);
  if (found === undefined) {
    throw new Error(`vector ${name} is not in ${env.vectorsPath}`);
  }
  return found;
}

/** The Cookie header a vector carries, as the exact bytes on the wire. */
export function headerBytes(c: VectorCase): Buffer {
  if (c.request.cookie_header_b64 !== undefined) {
    return Buffer.from(c.request.cookie_header_b64, "base64");
  }
  if (c.request.cookie_header_text !== undefined) {
    return Buffer.from(c.request.cookie_header_text, "latin1");
  }
  throw new Error(`vector ${c.name} has no Cookie header`);
}

/** Listen on a free loopback port; returns the port. */
export async function listen(server: http.Server | import("node:net").Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

/**
 * GET over real HTTP with node:http, which writes header strings as latin-1
 * bytes (so "\u00e9" goes out as the single byte 0xE9, as a browser's would).
 */
export function get(port: number, path: string, cookie?: string | string[]): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = cookie === undefined ? {} : { cookie };
    const req = http.request({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === "" ? undefined : JSON.parse(text) });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}
