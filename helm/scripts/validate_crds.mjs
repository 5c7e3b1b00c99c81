// Validates the custom resources in rendered manifests against their CRD schemas
// (KEDA, prometheus-operator) using the kubernetes-models packages.
// Usage: CRD_MODELS_DIR=<dir holding node_modules> node validate_crds.mjs file.yaml...
// Exit 1 on the first invalid object of each file; prints one line per object.
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

// Packages live in the toolchain dir (tools/helm/install.sh), not next to this script.
const modules = path.join(process.env.CRD_MODELS_DIR ?? process.cwd(), "node_modules");
const load = (rel) => import(pathToFileURL(path.join(modules, rel)).href);
const { parseAllDocuments } = await load("yaml/dist/index.js");

const PACKAGES = {
  "keda.sh": "@kubernetes-models/keda",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

let failed = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const obj = doc.toJS();
    if (!obj || !obj.apiVersion) continue;
    const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
    const pkg = PACKAGES[group];
    if (!pkg) continue; // built-in kinds: kubernetes-validate covers them
    const where = `${path.basename(file)}: ${obj.kind}/${obj.metadata?.name}`;
    try {
      const mod = await load(`${pkg}/${group}/${version}/${obj.kind}.js`);
      const Model = mod[obj.kind] ?? mod.default;
      new Model(obj).validate();
      checked += 1;
      console.log(`ok   ${where}`);
    } catch (err) {
      failed += 1;
      console.log(`FAIL ${where}: ${err.message}`);
    }
  }
}
console.log(`${checked} custom resources valid, ${failed} invalid`);
process.exit(failed ? 1 : 0);
