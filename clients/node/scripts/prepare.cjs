// `npm install <this folder>` and `npm ci` here run this (npm's "prepare"):
// build dist/ so the package works however it was installed. A folder
// install links this directory without its devDependencies, so fetch the
// pinned ones (package-lock.json) first when TypeScript is missing.
"use strict";
const { execFileSync } = require("node:child_process");
const { existsSync } = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const npm = process.env.npm_execpath
  ? [process.execPath, [process.env.npm_execpath]]
  : ["npm", []];
const run = (args) => execFileSync(npm[0], [...npm[1], ...args], { cwd: root, stdio: "inherit" });

if (!existsSync(path.join(root, "node_modules", "typescript", "bin", "tsc"))) {
  run(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]);
}
run(["run", "build"]);
