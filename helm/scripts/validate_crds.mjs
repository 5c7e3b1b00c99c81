// Validates the custom resources in rendered manifests against their CRD schemas
// (KEDA, prometheus-operator) using the kubernetes-models packages, and refuses unknown
// fields (a misspelt `minReplicaCuont` would otherwise pass: the models' validators, like
// the CRDs, do not forbid extra properties, and the API server would drop it silently).
// Usage: CRD_MODELS_DIR=<dir holding node_modules> node validate_crds.mjs file.yaml...
// Exit 1 if any object is invalid; prints one line per object.
import { existsSync, readFileSync } from "node:fs";
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

// ---- unknown fields: walk the object along the models' TypeScript declarations (.d.ts),
// the only form of their schemas the packages ship (the validators are compiled code).
const interfaces = new Map(); // .d.ts path -> {props: Map(name -> type), open: bool}

function resolveImport(from, spec) {
  const base = spec.startsWith(".") ? path.resolve(path.dirname(from), spec) : path.join(modules, spec);
  return base.replace(/\.js$/, "") + ".d.ts";
}

// Splits "a; b; { c; d; }; e" at depth-0 semicolons.
function splitTop(body) {
  const parts = [];
  let depth = 0, cur = "";
  for (const ch of body) {
    if (ch === "{" || ch === "<") depth++;
    if (ch === "}" || ch === ">") depth--;
    if (ch === ";" && depth === 0) { parts.push(cur.trim()); cur = ""; } else cur += ch;
  }
  if (cur.trim()) parts.push(cur.trim());
  return parts;
}

// A type as written in a .d.ts -> {ref} | {array} | {map} | {props, open} | {any}.
function parseType(text, file, imports) {
  const t = text.trim();
  const array = t.match(/^Array<(.*)>$/s);
  if (array) return { array: parseType(array[1], file, imports) };
  if (t.startsWith("{")) return parseMembers(t.slice(1, t.lastIndexOf("}")), file, imports);
  if (imports.has(t)) return { ref: imports.get(t) };
  return { any: true };
}

function parseMembers(body, file, imports) {
  const props = new Map();
  let open = false, map = null;
  for (const member of splitTop(body.replace(/\/\*\*[\s\S]*?\*\//g, ""))) {
    const prop = member.match(/^"([^"]+)"\??:\s*([\s\S]*)$/);
    const index = member.match(/^\[key: string\]:\s*([\s\S]*)$/);
    if (prop) props.set(prop[1], parseType(prop[2], file, imports));
    else if (index) map = parseType(index[1], file, imports);
    else if (member) open = true; // anything unparsed: do not guess
  }
  if (map && !props.size) return { map };
  return { props, open: open || Boolean(map) };
}

function loadInterface(file) {
  if (interfaces.has(file)) return interfaces.get(file);
  const result = { props: new Map(), open: true };
  interfaces.set(file, result);
  if (!existsSync(file)) return result;
  const src = readFileSync(file, "utf8");
  const imports = new Map();
  for (const m of src.matchAll(/import \{([^}]*)\} from "([^"]+)"/g))
    for (const name of m[1].split(",").map((n) => n.trim()).filter(Boolean)) imports.set(name, resolveImport(file, m[2]));
  const head = src.match(/^export interface \w+(?: extends ([^{]+))? \{$/m);
  if (!head) return result;
  const body = src.slice(head.index + head[0].length, src.indexOf("\n}", head.index));
  const parsed = parseMembers(body, file, imports);
  Object.assign(result, { props: parsed.props ?? new Map(), open: Boolean(parsed.open || parsed.map) });
  for (const parent of (head[1] ?? "").split(",").map((n) => n.trim()).filter(Boolean)) {
    if (parent === "TypeMeta") continue;
    if (!imports.has(parent)) { result.open = true; continue; }
    const inherited = loadInterface(imports.get(parent));
    for (const [k, v] of inherited.props) result.props.set(k, v);
    result.open ||= inherited.open;
  }
  return result;
}

function unknownFields(value, type, where, out) {
  if (value === null || typeof value !== "object" || type.any) return out;
  if (type.ref) return unknownFields(value, loadInterface(type.ref), where, out);
  if (type.array) { if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, type.array, `${where}[${i}]`, out)); return out; }
  if (type.map) { for (const [k, v] of Object.entries(value)) unknownFields(v, type.map, `${where}.${k}`, out); return out; }
  if (type.props) {
    for (const [k, v] of Object.entries(value)) {
      if (type.props.has(k)) unknownFields(v, type.props.get(k), `${where}.${k}`, out);
      else if (!type.open) out.push(`${where}.${k}`);
    }
  }
  return out;
}

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
      const dts = path.join(modules, pkg, group, version, `${obj.kind}.d.ts`);
      const unknown = unknownFields(obj, { ref: dts }, obj.kind, []);
      if (unknown.length) throw new Error(`unknown field(s): ${unknown.join(", ")}`);
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
