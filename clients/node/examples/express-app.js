// A small Express app that trusts SessionValidator for "who is calling".
//
//   npm run build
//   SESSIONVALIDATOR_ADDR=127.0.0.1:50051 PORT=3000 node examples/express-app.js
//   curl -H 'Cookie: connect.sid=s%3A...' http://127.0.0.1:3000/api/me
"use strict";

const express = require("express");
const { createClient } = require("@sessionvalidator/client");
const { sessionUser } = require("@sessionvalidator/client/express");

const address = process.env.SESSIONVALIDATOR_ADDR;
if (!address) {
  console.error("set SESSIONVALIDATOR_ADDR to the validator's host:port");
  process.exit(2);
}

const client = createClient(address);
const app = express();

// Everything under /api needs a valid session; 401 otherwise, 503 when the
// validator cannot decide.
app.use("/api", sessionUser(client));
app.get("/api/me", (req, res) => {
  res.json({ user: req.sessionUser ?? null, sessionId: req.sessionValidation.sessionId });
});

// A page that greets logged-in users and serves everyone else too.
app.get("/", sessionUser(client, { allowAnonymous: true }), (req, res) => {
  res.type("text").send(req.sessionUser ? `hello ${req.sessionUser.username || req.sessionUser.id}\n` : "hello stranger\n");
});

const server = app.listen(Number(process.env.PORT ?? 3000), "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}, validator ${address}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => server.close(() => client.close()));
}
