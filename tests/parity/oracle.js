'use strict';

// Reference judge for the cookie-parsing/signature differential test.
// It runs the very code express-session 1.19.0 runs in `getcookie`
// (node_modules/express-session/index.js) with the very libraries it resolves
// (cookie 0.7.2, cookie-signature 1.0.7), minus the cookie-parser back-compat
// branches (the parity app mounts no cookie-parser).
//
// stdin : newline-delimited JSON, one request per line (blank lines are skipped):
//   {"header_b64": "<base64 of the raw Cookie header bytes>", "name": "connect.sid", "secrets": ["..."]}
//   {"value": "<cookie value string>",                      "name": "connect.sid", "secrets": ["..."]}
//   optional: "want_raw": true  -> the reply also carries "raw" (the parsed cookie value or null)
//   a secret may be a string (used as UTF-8, like express-session) or {"b64": "..."} (raw key bytes,
//   which cookie-signature 1.0.7 accepts as a Buffer). A bare string for "secrets" means [string].
// stdout: exactly one JSON line per non-blank input line, in order:
//   {"outcome": "missing"|"not_signed"|"bad_signature"|"empty_sid"|"ok", "sid": <string|null>, "secret_index": <int|null>}
//   On an unusable request or if express-session's own code would throw (e.g. name "__proto__" or
//   "toString", which hit Object.prototype on cookie.parse's plain-object result) the line is
//   {"outcome": "error", "sid": null, "secret_index": null, "error": "<message>"}.
//
// Self-check: `node oracle.js --self-test` compares the inline value handling used for values
// containing ";" with cookie.parse on many random values, and prints a summary.

const path = require('path');

// Resolve the libraries exactly as express-session resolves them.
const esDir = path.dirname(require.resolve('express-session'));
const cookie = require(require.resolve('cookie', { paths: [esDir] }));
const signature = require(require.resolve('cookie-signature', { paths: [esDir] }));

function checkVersions() {
  const v = (p) => require(path.join(path.dirname(require.resolve(p, { paths: [esDir] })), 'package.json')).version;
  const got = { 'express-session': require('express-session/package.json').version, cookie: v('cookie'), 'cookie-signature': v('cookie-signature') };
  const want = { 'express-session': '1.19.0', cookie: '0.7.2', 'cookie-signature': '1.0.7' };
  for (const k of Object.keys(want)) {
    if (got[k] !== want[k]) throw new Error(`oracle: ${k} is ${got[k]}, expected ${want[k]} (run npm ci in tests/parity)`);
  }
}

// ---- cookie 0.7.2 value handling (index.js parse(), startIndex, endIndex, decode, tryDecode) ----
function isSpTab(code) {
  return code === 0x20 || code === 0x09;
}

// Equivalent of what parse() does to the characters between '=' and the end of the pair,
// when those characters are `v` in full (no ';' cut).
function cookieValueInline(v) {
  let start = 0;
  let end = v.length;
  while (start < end && isSpTab(v.charCodeAt(start))) start++; // startIndex(str, eqIdx+1, endIdx)
  while (end > start && isSpTab(v.charCodeAt(end - 1))) end--; // endIndex(str, endIdx, valStartIdx)
  // Same test as parse(): start char and last char both '"'. For a lone '"' start > end
  // afterwards and slice() returns "" -- exactly as in the library.
  if (v.charCodeAt(start) === 0x22 && v.charCodeAt(end - 1) === 0x22) {
    start++;
    end--;
  }
  const val = v.slice(start, end);
  if (val.indexOf('%') === -1) return val; // decode(): skip native call without '%'
  try {
    return decodeURIComponent(val);
  } catch (e) {
    return val; // tryDecode(): raw value kept whole
  }
}

// The value form. Without ';' the library itself is used: in "x=" + v the first '=' is at
// index 1, there is no ';' so the pair ends at the end of the string, the key is "x" and the
// value span is exactly v, so parse("x=" + v).x is provably the library's handling of v.
// With ';' the library would cut the value, so the inline copy above is used.
function cookieValue(v) {
  if (v.indexOf(';') === -1) return cookie.parse('x=' + v).x;
  return cookieValueInline(v);
}

// ---- express-session 1.19.0 getcookie() + unsigncookie(), instrumented ----
function judgeRaw(raw, secrets) {
  // `if (raw)` -- undefined and "" are both absent
  if (!raw) return { outcome: 'missing', sid: null, secret_index: null };
  if (raw.substr(0, 2) !== 's:') return { outcome: 'not_signed', sid: null, secret_index: null };
  const signed = raw.slice(2);
  for (let i = 0; i < secrets.length; i++) {
    const result = signature.unsign(signed, secrets[i]);
    if (result !== false) {
      // unsigncookie returns the first non-false result, even ""; getcookie then
      // treats "" as no session id (express-session starts a new session).
      if (!result) return { outcome: 'empty_sid', sid: null, secret_index: i };
      return { outcome: 'ok', sid: result, secret_index: i };
    }
  }
  return { outcome: 'bad_signature', sid: null, secret_index: null };
}

function toSecrets(s) {
  if (typeof s === 'string') s = [s];
  if (!Array.isArray(s) || s.length === 0) throw new Error('"secrets" must be a non-empty array');
  return s.map((x) => {
    if (typeof x === 'string') return x;
    if (x && typeof x === 'object' && typeof x.b64 === 'string') return Buffer.from(x.b64, 'base64');
    throw new Error('each secret must be a string or {"b64": "..."}');
  });
}

function handle(req) {
  if (req === null || typeof req !== 'object' || Array.isArray(req)) throw new Error('request must be a JSON object');
  const name = req.name === undefined ? 'connect.sid' : req.name;
  if (typeof name !== 'string') throw new Error('"name" must be a string');
  const secrets = toSecrets(req.secrets);
  let raw;
  if (typeof req.header_b64 === 'string') {
    // Node's HTTP parser hands header bytes to JS as latin1.
    const header = Buffer.from(req.header_b64, 'base64').toString('latin1');
    // getcookie: `if (header) { raw = cookie.parse(header)[name] ... }`
    if (header) raw = cookie.parse(header)[name];
  } else if (typeof req.value === 'string') {
    raw = cookieValue(req.value);
  } else {
    throw new Error('request needs "header_b64" or "value" (string)');
  }
  const out = judgeRaw(raw, secrets);
  if (req.want_raw === true) out.raw = typeof raw === 'string' ? raw : null;
  return out;
}

function processLine(line) {
  try {
    return JSON.stringify(handle(JSON.parse(line)));
  } catch (e) {
    return JSON.stringify({ outcome: 'error', sid: null, secret_index: null, error: String((e && e.message) || e) });
  }
}

function selfTest() {
  const alphabet = ['a', 'Z', '0', ' ', '\t', '"', '%', '%2', '%25', '%3A', '%C3%A9', '%E9', '%ED%A0%80', '=', ',', '\r', '\u00a0', 'é', 's:', '+', '.'];
  let n = 0;
  let bad = 0;
  let seed = 12345;
  const rnd = (k) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % k;
  };
  for (let i = 0; i < 200000; i++) {
    let v = '';
    const len = rnd(10);
    for (let j = 0; j < len; j++) v += alphabet[rnd(alphabet.length)];
    const a = cookie.parse('x=' + v).x;
    const b = cookieValueInline(v);
    n++;
    if (a !== b) {
      bad++;
      if (bad <= 5) process.stderr.write(`mismatch for ${JSON.stringify(v)}: lib=${JSON.stringify(a)} inline=${JSON.stringify(b)}\n`);
    }
  }
  process.stdout.write(JSON.stringify({ self_test: bad === 0 ? 'pass' : 'fail', cases: n, mismatches: bad }) + '\n');
  process.exit(bad === 0 ? 0 : 1);
}

function main() {
  checkVersions();
  if (process.argv.includes('--self-test')) return selfTest();
  const chunks = [];
  process.stdin.on('data', (c) => chunks.push(c));
  process.stdin.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    const out = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      out.push(processLine(line));
    }
    process.stdout.write(out.length ? out.join('\n') + '\n' : '');
  });
}

main();
