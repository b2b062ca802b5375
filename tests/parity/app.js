'use strict';

// Reference Express 5 + express-session 1.19 + connect-redis 9 + Passport 0.7 app
// for the SessionValidator parity tests. Nothing here is mocked: the Python tests
// spawn this program, log in through it, and compare what the validator says about
// a cookie with what this app decided about the same cookie.
//
// Configuration (environment):
//   PARITY_REDIS_URL     required, e.g. redis://127.0.0.1:6390/0
//   PARITY_SECRETS       required, JSON array of secret strings (the `secret` option;
//                        cookies are signed with [0] and verified with every entry)
//   PARITY_COOKIE_NAME   default "connect.sid"
//   PARITY_PREFIX        default "sess:" (connect-redis key prefix; "" is honoured)
//   PARITY_ROLLING       "1" -> rolling: true
//   PARITY_DISABLE_TTL   "1" -> RedisStore disableTTL: true
//   PARITY_MAX_AGE_MS    cookie maxAge in ms (default 86400000); "none" -> no maxAge
//
// Protocol: prints exactly one line {"port": <n>} on stdout once listening on
// 127.0.0.1; everything else goes to stderr. Exits 0 on SIGTERM/SIGINT.

const express = require('express');
const session = require('express-session');
const passport = require('passport');
const { RedisStore } = require('connect-redis');
const { createClient } = require('redis');

function fail(msg) {
  process.stderr.write(`parity app: ${msg}\n`);
  process.exit(2);
}

function env(name, dflt) {
  const v = process.env[name];
  return v === undefined ? dflt : v;
}

const redisUrl = env('PARITY_REDIS_URL');
if (!redisUrl) fail('PARITY_REDIS_URL is required');

let secrets;
try {
  secrets = JSON.parse(env('PARITY_SECRETS', ''));
} catch (e) {
  fail(`PARITY_SECRETS must be a JSON array of strings: ${e.message}`);
}
if (!Array.isArray(secrets) || secrets.length === 0 || !secrets.every((s) => typeof s === 'string')) {
  fail('PARITY_SECRETS must be a non-empty JSON array of strings');
}

const cookieName = env('PARITY_COOKIE_NAME', 'connect.sid');
const prefix = env('PARITY_PREFIX', 'sess:');
const rolling = env('PARITY_ROLLING', '') === '1';
const disableTTL = env('PARITY_DISABLE_TTL', '') === '1';

const maxAgeRaw = env('PARITY_MAX_AGE_MS', '86400000');
const cookieOptions = { httpOnly: true, path: '/' };
if (maxAgeRaw !== 'none') {
  const n = Number(maxAgeRaw);
  if (maxAgeRaw.trim() === '' || !Number.isFinite(n)) fail(`PARITY_MAX_AGE_MS must be a number or "none", got ${JSON.stringify(maxAgeRaw)}`);
  cookieOptions.maxAge = n;
}

// Marks the request whose session express-session inflated from a stored entry
// (Store#createSession is only called for a session that store.get returned;
// a fresh session comes from store.generate instead). This is instrumentation
// only: the wrapped method is called unchanged, so behaviour is identical, and
// it also works for entries the tests write into Redis themselves.
const LOADED = Symbol('parity.loaded');

async function main() {
  // Fail fast (exit 1) if Redis is unreachable at startup instead of retrying
  // forever, so a test harness waiting for the port line gets a clear error.
  let everReady = false;
  const startedAt = Date.now();
  const client = createClient({
    url: redisUrl,
    socket: {
      reconnectStrategy: (retries, cause) => {
        if (!everReady && Date.now() - startedAt > 5000) {
          return new Error(`cannot reach Redis at startup: ${cause && cause.message}`);
        }
        return Math.min(100 * (retries + 1), 1000);
      },
    },
  });
  client.on('ready', () => {
    everReady = true;
  });
  client.on('error', (err) => {
    process.stderr.write(`parity app: redis client error: ${err && err.message}\n`);
  });
  await client.connect();

  const store = new RedisStore({ client, prefix, disableTTL });
  const origCreateSession = store.createSession;
  store.createSession = function createSession(req, sess) {
    const s = origCreateSession.call(this, req, sess);
    req[LOADED] = true;
    return s;
  };

  passport.serializeUser((user, done) => done(null, user));
  // A real deserializeUser loads a user object for the stored id; wrapping the
  // stored value keeps that shape, so an id of 0 deserializes like any other
  // (Passport rejects a bare falsy user from a deserializer).
  passport.deserializeUser((obj, done) => done(null, { stored: obj }));

  const app = express();
  app.disable('x-powered-by');
  app.use(express.json());
  app.use(
    session({
      name: cookieName,
      secret: secrets,
      store,
      resave: false,
      saveUninitialized: false,
      rolling,
      cookie: cookieOptions,
    })
  );
  app.use(passport.initialize());
  app.use(passport.session());

  app.post('/login', (req, res, next) => {
    // Whatever JSON the test sends is stored verbatim as passport.user. Passport's
    // serializer chain rejects null/false/""/undefined with a 500
    // ("Failed to serialize user into session").
    const user = req.body == null ? undefined : req.body.user;
    req.login(user, (err) => {
      if (err) return next(err);
      res.json({ sessionID: req.sessionID });
    });
  });

  app.post('/anon', (req, res) => {
    req.session.visits = (req.session.visits || 0) + 1;
    res.json({ sessionID: req.sessionID });
  });

  app.post('/logout', (req, res, next) => {
    req.logout((err) => {
      if (err) return next(err);
      res.json({});
    });
  });

  app.post('/destroy', (req, res, next) => {
    req.session.destroy((err) => {
      if (err) return next(err);
      res.json({});
    });
  });

  // Read-only: touches nothing in req.session, so express-session never saves
  // here (it may still run the store's touch, i.e. EXPIRE, for a loaded session,
  // and send Set-Cookie when rolling, exactly as any read-only route would).
  app.get('/whoami', (req, res) => {
    const loaded = req[LOADED] === true;
    res.json({
      loaded,
      sessionID: loaded ? req.sessionID : null,
      authenticated: req.isAuthenticated(),
      user: req.user ? req.user.stored : null,
    });
  });

  // eslint-disable-next-line no-unused-vars
  app.use((err, req, res, next) => {
    const message = err && err.message !== undefined ? String(err.message) : String(err);
    process.stderr.write(`parity app: ${req.method} ${req.originalUrl} -> 500: ${message}\n`);
    if (res.headersSent) return;
    res.status(500).json({ error: message });
  });

  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  process.stdout.write(`{"port": ${server.address().port}}\n`);

  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`parity app: ${signal}, shutting down\n`);
    const force = setTimeout(() => process.exit(0), 3000);
    force.unref();
    server.close(() => {
      client
        .close()
        .catch(() => client.destroy())
        .finally(() => process.exit(0));
    });
    server.closeAllConnections();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`parity app: startup failed: ${(err && err.stack) || err}\n`);
  process.exit(1);
});
