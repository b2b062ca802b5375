'use strict';
// A hand-written Node peer of SessionValidator, used only as a benchmark
// baseline: @grpc/grpc-js + proto-loader (proto read at start-up), node-redis,
// and the same `cookie` / `cookie-signature` packages express-session uses.
// One process, no cluster module.
//
// Configuration (environment): REF_LISTEN, REF_REDIS_URL, REF_SECRETS (JSON
// array, required), REF_COOKIE_NAME, REF_KEY_PREFIX, REF_USER_KEY,
// REF_PROTO_DIR (default: the repository's proto/).

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { ReflectionService } = require('@grpc/reflection');
const { HealthImplementation } = require('grpc-health-check');
const cookie = require('cookie');
const signature = require('cookie-signature');
const { createClient, ConnectionTimeoutError } = require('redis');

const SERVICE = 'sessionvalidator.v1.SessionValidator';
const MAX_CREDENTIAL_LENGTH = 16 * 1024;
const STORE_TIMEOUT_MS = 100;

function fail(code, message) {
  process.stderr.write(message + '\n');
  process.exit(code);
}

function readSecrets() {
  let secrets;
  try {
    secrets = JSON.parse(process.env.REF_SECRETS || '');
  } catch {
    secrets = null;
  }
  if (!Array.isArray(secrets) || secrets.length === 0 || !secrets.every((s) => typeof s === 'string' && s !== '')) {
    fail(2, 'REF_SECRETS: required, a JSON array of one or more non-empty strings');
  }
  return secrets;
}

const config = {
  listen: process.env.REF_LISTEN || '127.0.0.1:50061',
  redisUrl: process.env.REF_REDIS_URL || 'redis://127.0.0.1:6379/0',
  secrets: readSecrets(),
  cookieName: process.env.REF_COOKIE_NAME || 'connect.sid',
  keyPrefix: process.env.REF_KEY_PREFIX ?? 'sess:',
  userKey: process.env.REF_USER_KEY || null,
  protoDir: process.env.REF_PROTO_DIR || path.resolve(__dirname, '../../../proto'),
};

const redis = createClient({
  url: config.redisUrl,
  socket: { connectTimeout: STORE_TIMEOUT_MS },
  disableOfflineQueue: true, // fail fast while disconnected instead of queueing
});
redis.on('error', () => {}); // node-redis reconnects by itself; calls fail with UNAVAILABLE meanwhile

class StoreTimeout extends Error {}

class StoreError extends Error {
  constructor(cause) {
    super(String(cause));
    this.timedOut = cause instanceof StoreTimeout || cause instanceof ConnectionTimeoutError;
  }
}

// node-redis's own command timeout stops counting once a command is written,
// so a hung Redis is caught here: the round trip gets STORE_TIMEOUT_MS.
function withTimeout(promise) {
  let timer;
  const deadline = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new StoreTimeout('store timeout')), STORE_TIMEOUT_MS);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

// ---- the verdict rules -------------------------------------------------------

function answer(verdict, reason, extra) {
  return { verdict, reason, cookie_name: config.cookieName, ...extra };
}

// A bare cookie value gets what cookie.parse does to a value in a header:
// trim space/TAB, strip a pair of quotes, decodeURIComponent when '%' is there.
function bareValue(v) {
  let s = 0;
  let e = v.length;
  while (s < e && (v[s] === ' ' || v[s] === '\t')) s++;
  while (e > s && (v[e - 1] === ' ' || v[e - 1] === '\t')) e--;
  if (e > s && v[s] === '"' && v[e - 1] === '"') {
    s++;
    e--;
  }
  const value = v.slice(s, e);
  if (value.indexOf('%') === -1) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function readCookie(request) {
  let header;
  switch (request.credential) {
    case 'cookie_header':
      header = request.cookie_header.toString('latin1');
      break;
    case 'cookie_header_text':
      header = request.cookie_header_text;
      break;
    case 'signed_value':
      if (request.signed_value.length > MAX_CREDENTIAL_LENGTH) return { reason: 'REASON_TOO_LARGE' };
      return { raw: bareValue(request.signed_value) };
    default:
      return { reason: 'REASON_NO_COOKIE' };
  }
  if (header.length > MAX_CREDENTIAL_LENGTH) return { reason: 'REASON_TOO_LARGE' };
  if (header === '') return { reason: 'REASON_NO_COOKIE' };
  const cookies = cookie.parse(header);
  if (!Object.prototype.hasOwnProperty.call(cookies, config.cookieName)) return { reason: 'REASON_COOKIE_NOT_FOUND' };
  return { raw: cookies[config.cookieName] };
}

const VERDICT_OF = {
  REASON_NO_COOKIE: 'VERDICT_MISSING',
  REASON_COOKIE_NOT_FOUND: 'VERDICT_MISSING',
  REASON_TOO_LARGE: 'VERDICT_MALFORMED',
};

function isPlainObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// google.protobuf.Struct comes from protobufjs's bundled well-known types,
// whose field names are camelCase even with keepCase.
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}

function toStruct(obj) {
  const fields = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = toValue(v);
  return { fields };
}

function stringList(v) {
  if (Array.isArray(v)) return v.filter((s) => typeof s === 'string');
  if (typeof v === 'string' && v !== '') {
    if (v.startsWith('[')) {
      try {
        const parsed = JSON.parse(v);
        if (Array.isArray(parsed)) return stringList(parsed);
      } catch {
        // not JSON: a comma list
      }
    }
    return v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  }
  return [];
}

function profile(id, record) {
  const p = { id };
  if (!record) return p;
  if (typeof record.username === 'string') p.username = record.username;
  for (const k of ['displayName', 'display_name', 'name']) {
    if (typeof record[k] === 'string') {
      p.display_name = record[k];
      break;
    }
  }
  if (typeof record.email === 'string') p.email = record.email;
  else if (Array.isArray(record.emails) && isPlainObject(record.emails[0]) && typeof record.emails[0].value === 'string') {
    p.email = record.emails[0].value;
  }
  p.roles = stringList(record.roles != null ? record.roles : record.role);
  p.attributes = toStruct(record);
  return p;
}

function timestamp(ms) {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

function isWrongType(err) {
  return err instanceof Error && typeof err.message === 'string' && err.message.startsWith('WRONGTYPE');
}

async function userRecord(id) {
  if (!config.userKey) return null;
  const key = config.userKey.split('{id}').join(id);
  // Issued in the same tick: node-redis writes both in one round trip.
  let asString;
  let asHash;
  try {
    [asString, asHash] = await withTimeout(Promise.allSettled([redis.get(key), redis.hGetAll(key)]));
  } catch (err) {
    throw new StoreError(err);
  }
  if (asString.status === 'fulfilled' && asString.value !== null) {
    try {
      const record = JSON.parse(asString.value);
      return isPlainObject(record) ? record : null;
    } catch {
      return null;
    }
  }
  if (asHash.status === 'fulfilled' && Object.keys(asHash.value).length > 0) return { ...asHash.value };
  for (const r of [asString, asHash]) {
    if (r.status === 'rejected' && !isWrongType(r.reason)) throw new StoreError(r.reason);
  }
  return null;
}

async function validate(request) {
  const cred = readCookie(request);
  if (cred.reason) return answer(VERDICT_OF[cred.reason], cred.reason);
  const raw = cred.raw;
  if (raw === '') return answer('VERDICT_MISSING', 'REASON_EMPTY_VALUE');
  if (raw.substr(0, 2) !== 's:') return answer('VERDICT_MALFORMED', 'REASON_NOT_SIGNED');

  let sid = false;
  let index = -1;
  for (let i = 0; i < config.secrets.length; i++) {
    sid = signature.unsign(raw.slice(2), config.secrets[i]);
    if (sid !== false) {
      index = i;
      break;
    }
  }
  if (sid === false) return answer('VERDICT_BAD_SIGNATURE', 'REASON_SIGNATURE_MISMATCH');
  const known = { session_id: sid, secret_index: index };
  if (sid === '') return answer('VERDICT_MALFORMED', 'REASON_EMPTY_SESSION_ID', known);

  const key = config.keyPrefix + sid;
  let data;
  let pttl;
  try {
    // Issued in the same tick: node-redis writes both in one round trip.
    [data, pttl] = await withTimeout(Promise.all([redis.get(key), redis.pTTL(key)]));
  } catch (err) {
    if (isWrongType(err)) return answer('VERDICT_MALFORMED', 'REASON_CORRUPT_SESSION', known);
    throw new StoreError(err);
  }
  if (!data || pttl === -2) return answer('VERDICT_MISSING', 'REASON_SESSION_NOT_FOUND', known);

  let sess;
  try {
    sess = JSON.parse(data);
  } catch {
    return answer('VERDICT_MALFORMED', 'REASON_CORRUPT_SESSION', known);
  }
  if (!sess) return answer('VERDICT_MISSING', 'REASON_SESSION_NOT_FOUND', known);
  if (!isPlainObject(sess) || !isPlainObject(sess.cookie)) {
    return answer('VERDICT_MALFORMED', 'REASON_CORRUPT_SESSION', known);
  }

  const now = Date.now();
  const response = answer('VERDICT_VALID', 'REASON_SESSION_ACTIVE', known);
  if (pttl >= 0) {
    response.expire_time = timestamp(now + pttl);
  } else if (typeof sess.cookie.expires === 'string' && sess.cookie.expires !== '') {
    const expires = Date.parse(sess.cookie.expires);
    if (!Number.isNaN(expires)) {
      response.expire_time = timestamp(expires);
      if (expires <= now) return answer('VERDICT_EXPIRED', 'REASON_SESSION_EXPIRED', { ...known, expire_time: response.expire_time });
    }
  }

  const su = isPlainObject(sess.passport) ? sess.passport.user : undefined;
  if (!(su || su === 0)) return response;
  response.authenticated = true;
  if (isPlainObject(su)) {
    const id = Object.prototype.hasOwnProperty.call(su, 'id') ? su.id : su._id;
    response.user = profile(id == null ? '' : String(id), su);
  } else {
    const id = String(su);
    response.user = profile(id, await userRecord(id));
  }
  return response;
}

// ---- the server ----------------------------------------------------------------

function handler(call, callback) {
  validate(call.request).then(
    (response) => callback(null, response),
    (err) => {
      if (err instanceof StoreError) {
        callback({
          code: grpc.status.UNAVAILABLE,
          details: err.timedOut ? 'session store timed out' : 'session store unavailable',
        });
      } else {
        process.stderr.write(`internal error: ${err && err.stack}\n`);
        callback({ code: grpc.status.INTERNAL, details: 'internal error' });
      }
    },
  );
}

async function main() {
  const packageDefinition = protoLoader.loadSync('sessionvalidator/v1/session_validator_service.proto', {
    includeDirs: [config.protoDir],
    keepCase: true,
    enums: String,
    longs: Number,
    defaults: false,
    oneofs: true,
  });
  const proto = grpc.loadPackageDefinition(packageDefinition);

  const server = new grpc.Server();
  server.addService(proto.sessionvalidator.v1.SessionValidator.service, { ValidateSession: handler });
  const health = new HealthImplementation({ '': 'SERVING', [SERVICE]: 'SERVING' });
  health.addToServer(server);
  new ReflectionService(packageDefinition).addToServer(server);

  // Wait (a little) for Redis, but serve regardless: node-redis keeps
  // reconnecting and calls that need the store answer UNAVAILABLE until then.
  const connecting = redis.connect().catch((err) => process.stderr.write(`redis: ${err}\n`));
  let timer;
  await Promise.race([connecting, new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
  clearTimeout(timer);

  const port = await new Promise((resolve, reject) => {
    server.bindAsync(config.listen, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  }).catch((err) => fail(1, `listen: ${err.message}`));
  process.stdout.write(JSON.stringify({ event: 'serving', port }) + '\n');

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    health.setStatus('', 'NOT_SERVING');
    health.setStatus(SERVICE, 'NOT_SERVING');
    const force = setTimeout(() => server.forceShutdown(), 10000);
    server.tryShutdown(() => {
      clearTimeout(force);
      redis.close().catch(() => {}).finally(() => process.exit(0));
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => fail(1, String(err && err.stack)));
