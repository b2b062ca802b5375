'use strict';

// Reference Express 5 + express-session 1.19 + connect-redis 9 (or connect-mongo 6) + Passport 0.7 app
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
// MongoDB mode (connect-mongo 6 + the mongodb driver, or mongoose), instead of PARITY_REDIS_URL:
//   PARITY_MONGO_URL     e.g. mongodb://127.0.0.1:27018/parity (database from the path)
//   PARITY_MONGO_CLIENT  how MongoStore gets its client: "url" (mongoUrl, default), "client"
//                        (clientPromise of a MongoClient) or "mongoose" (the client of a mongoose
//                        connection: seed 002's `mongooseConnection: mongoose.connection`, as
//                        connect-mongo 4+ spells it: `client: mongoose.connection.getClient()`)
//   PARITY_MONGO_STRINGIFY "0" -> stringify: false (the session stored as an object)
//   PARITY_MONGO_COLLECTION collectionName (default "sessions")
//   PARITY_MONGO_USERS   a users collection: deserializeUser loads the record by _id (a 24-hex
//                        id as an ObjectId, as mongoose's findById does) and /whoami returns it
//   PARITY_MONGO_CRYPTO  a secret -> connect-mongo's crypto option (sessions encrypted)
//   PARITY_MONGO_STORE   "connect-mongo6" (default) or "connect-mongo5" (5.1 with mongodb 6, from ./connect-mongo5)
//   POST /login with {"user": "<24 hex>", "objectId": true} stores an ObjectId (user._id).
// autoRemove is 'interval': FerretDB's SQLite backend has no TTL index (real MongoDB: 'native').
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
const mongoUrl = env('PARITY_MONGO_URL');
if (!redisUrl && !mongoUrl) fail('PARITY_REDIS_URL or PARITY_MONGO_URL is required');

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

async function redisStore() {
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
  const close = () => client.close().catch(() => client.destroy());
  return { store, close, loadUser: async (obj) => ({ stored: obj }) };
}

async function mongoStore() {
  // PARITY_MONGO_STORE=connect-mongo5: connect-mongo 5.1 with the mongodb 6 driver (./connect-mongo5).
  const legacy = env('PARITY_MONGO_STORE', 'connect-mongo6') === 'connect-mongo5';
  const storeModule = require(legacy ? './connect-mongo5/node_modules/connect-mongo' : 'connect-mongo');
  const MongoStore = storeModule.MongoStore || storeModule;
  const { MongoClient, ObjectId } = require(legacy ? './connect-mongo5/node_modules/mongodb' : 'mongodb');
  const mode = env('PARITY_MONGO_CLIENT', 'url');
  if (legacy && mode === 'mongoose') fail('connect-mongo 5 runs here with the mongodb 6 driver, not mongoose 9');
  const options = {
    collectionName: env('PARITY_MONGO_COLLECTION', 'sessions'),
    stringify: env('PARITY_MONGO_STRINGIFY', '1') !== '0',
    autoRemove: 'interval',
    autoRemoveInterval: 1,
  };
  if (env('PARITY_MONGO_CRYPTO', '')) options.crypto = { secret: env('PARITY_MONGO_CRYPTO') };
  const fast = { serverSelectionTimeoutMS: 5000 };
  let client;
  let close;
  let db;
  if (mode === 'mongoose') {
    const mongoose = require('mongoose');
    await mongoose.connect(mongoUrl, fast);
    client = mongoose.connection.getClient();
    options.client = client;
    db = mongoose.connection.db;
    close = () => mongoose.disconnect();
  } else if (mode === 'client') {
    client = new MongoClient(mongoUrl, fast);
    options.clientPromise = client.connect();
    await options.clientPromise;
    db = client.db();
    close = () => client.close();
  } else if (mode === 'url') {
    options.mongoUrl = mongoUrl;
    options.mongoOptions = fast;
    client = new MongoClient(mongoUrl, fast); // only for the users collection
    await client.connect();
    db = client.db();
    close = () => client.close();
  } else {
    fail(`PARITY_MONGO_CLIENT must be url, client or mongoose, got ${JSON.stringify(mode)}`);
  }
  const store = MongoStore.create(options);
  await store.collectionP; // connected, auto-remove set up
  const usersName = env('PARITY_MONGO_USERS', '');
  const loadUser = async (obj) => {
    if (!usersName) return { stored: obj };
    const id = typeof obj === 'string' && /^[0-9a-fA-F]{24}$/.test(obj) ? new ObjectId(obj) : obj;
    const record = await db.collection(usersName).findOne({ _id: id });
    return { stored: obj, record };
  };
  const closeAll = async () => {
    await store.close().catch(() => {});
    await close();
  };
  return { store, close: closeAll, loadUser, ObjectId };
}

async function main() {
  const { store, close, loadUser, ObjectId } = mongoUrl ? await mongoStore() : await redisStore();
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
  passport.deserializeUser((obj, done) => {
    loadUser(obj).then((user) => done(null, user), done);
  });

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
    let user = req.body == null ? undefined : req.body.user;
    if (req.body && req.body.objectId && ObjectId) user = new ObjectId(user);
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
      record: req.user && req.user.record ? req.user.record : null,
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
      Promise.resolve()
        .then(close)
        .catch(() => {})
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
