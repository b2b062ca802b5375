// The built package, loaded by its own name through package.json "exports".
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const load = createRequire(__filename);

test("the package's entry points resolve to dist/ with their exports", () => {
  const main = load("@sessionvalidator/client") as Record<string, unknown>;
  for (const name of ["createClient", "SessionValidatorClient", "SessionValidatorError", "StoreUnavailableError", "isStoreUnavailable", "Verdict", "Reason"]) {
    assert.ok(name in main, `@sessionvalidator/client exports ${name}`);
  }
  assert.equal(typeof (load("@sessionvalidator/client/express") as Record<string, unknown>)["sessionUser"], "function");
  assert.equal(typeof (load("@sessionvalidator/client/socket.io") as Record<string, unknown>)["socketIoAuth"], "function");
  assert.match(load.resolve("@sessionvalidator/client"), /[\\/]dist[\\/]index\.js$/);
});
