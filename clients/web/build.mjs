// Bundles the page into build/ (index.html, app.js) with esbuild, for browsers only
// (a Node module pulled in by mistake fails the build), and turns the browser test
// into plain JS in build-test/.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { build } from "esbuild";

rmSync("build", { recursive: true, force: true });
rmSync("build-test", { recursive: true, force: true });
mkdirSync("build");
await build({
  entryPoints: ["src/app.ts"],
  bundle: true,
  platform: "browser",
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outfile: "build/app.js",
  logLevel: "warning",
});
copyFileSync("index.html", "build/index.html");
await build({
  entryPoints: ["test/browser.test.ts"],
  platform: "node",
  format: "esm",
  target: "node20",
  outdir: "build-test",
  logLevel: "warning",
});
