#!/usr/bin/env node
// Turns src/lock/lua/<name>-<numKeys>.lua into one TypeScript module of strings, so the
// ESM and CommonJS builds, tsx and vitest all load the scripts the same way, with no
// runtime file lookups. Lines `--- @include "path"` are replaced by that file (once each);
// `--- @include "replies"` by the Lua table REPLY made from replies.json, the one source of
// the scripts' reply codes and field layouts, which the module also exports for the parsers
// in src/lock/scripts.ts (REPLY, REPLY_FIELDS); `--- @include "record-fields"` by the Lua
// function clearRunning made from record.json, the one list of a pair record's fields, from
// which the module also exports the StoredRecord type. A script that touches a record field
// record.json does not name fails the build.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const luaDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'lock', 'lua');
const outFile = join(luaDir, 'scripts.generated.ts');
const repliesFile = join(luaDir, 'replies.json');
const recordFile = join(luaDir, 'record.json');
const includePattern = /^--- @include "([^"]+)"\s*$/gm;

function fail(message) {
  console.error(`generate-lua: ${message}`);
  process.exit(1);
}

const replies = JSON.parse(readFileSync(repliesFile, 'utf8'));
/** Every name REPLY holds: reply codes, then the values fields may take. */
const constants = [
  ...Object.entries(replies.codes).map(([name, c]) => ({
    name,
    value: c.code,
    doc: c.doc,
    fields: c.fields,
  })),
  ...Object.entries(replies.values).map(([name, v]) => ({ name, value: v.value, doc: v.doc })),
];
const layouts = [
  ...Object.entries(replies.codes).map(([name, c]) => ({ name, fields: c.fields })),
  ...Object.entries(replies.layouts).map(([name, l]) => ({ name, fields: l.fields })),
];
{
  const names = new Set();
  for (const { name, value } of constants) {
    if (!/^[A-Z][A-Z_]*$/.test(name)) fail(`replies.json: "${name}" is not an UPPER_CASE name`);
    if (names.has(name)) fail(`replies.json: "${name}" twice`);
    if (!Number.isInteger(value)) fail(`replies.json: ${name} is not an integer`);
    names.add(name);
  }
  for (const { name, fields } of layouts) {
    if (!Array.isArray(fields) || fields.some((f) => !/^[a-zA-Z]+$/.test(f))) {
      fail(`replies.json: ${name}.fields must be a list of field names`);
    }
  }
}

const record = JSON.parse(readFileSync(recordFile, 'utf8'));
/** TypeScript type of each record.json type name (the two named ones are imported). */
const RECORD_TYPES = {
  string: 'string',
  number: 'number',
  boolean: 'boolean',
  PairState: 'PairState',
  TakeoverReason: 'TakeoverReason',
};
const recordFields = Object.entries(record.fields).map(([name, f]) => ({ name, ...f }));
for (const f of recordFields) {
  if (!/^[a-zA-Z]+$/.test(f.name)) fail(`record.json: "${f.name}" is not a field name`);
  if (!(f.type in RECORD_TYPES)) fail(`record.json: ${f.name} has an unknown type "${f.type}"`);
  if (typeof f.doc !== 'string' || f.doc === '') fail(`record.json: ${f.name} needs a doc`);
}
const runningFields = recordFields.filter((f) => f.running).map((f) => f.name);

const recordFieldsLua = `-- Clears what only a running record holds (generated from record.json by
-- scripts/generate-lua.mjs): a settle leaves none of it behind.
local RUNNING_FIELDS = {${runningFields.map((n) => `'${n}'`).join(', ')}}
local function clearRunning(rec)
  for _, name in ipairs(RUNNING_FIELDS) do rec[name] = nil end
end
`;

const repliesLua = `-- Reply codes and values (generated from replies.json by scripts/generate-lua.mjs). A reply
-- is { code, fields... } in the order given after each code.
local REPLY = {
${constants
  .map(({ name, value, fields }) => {
    const layout = fields === undefined ? '' : ` -- {${[name, ...fields].join(', ')}}`;
    return `  ${name} = ${value},${layout}`;
  })
  .join('\n')}
}
`;

function expand(file, seen) {
  const source = readFileSync(file, 'utf8');
  return source.replace(includePattern, (_line, name) => {
    if (seen.has(name)) return '';
    seen.add(name);
    if (name === 'replies') return repliesLua;
    if (name === 'record-fields') return recordFieldsLua;
    return expand(join(luaDir, `${name}.lua`), seen);
  });
}

/** A script must answer with named codes only, and name only codes that exist. */
function check(file, lua) {
  const bare = /return\s*\{\s*-?\d/.exec(lua);
  if (bare) fail(`${file}: a bare reply code ("${bare[0]}…"): use REPLY.<NAME> (replies.json)`);
  for (const [, name] of lua.matchAll(/\bREPLY\.([A-Za-z_]+)/g)) {
    if (!constants.some((c) => c.name === name))
      fail(`${file}: REPLY.${name} is not in replies.json`);
  }
  if (/\bREPLY\./.test(lua) && !lua.includes('local REPLY = {')) {
    fail(`${file}: uses REPLY without --- @include "replies"`);
  }
  // `rec` is a loaded record, `granted` a new grant's: both must keep to record.json.
  for (const [, field] of lua.matchAll(/\b(?:rec|granted)\.([A-Za-z_]+)/g)) {
    if (!(field in record.fields)) fail(`${file}: record field "${field}" is not in record.json`);
  }
}

const entries = readdirSync(luaDir)
  .filter((f) => /^[a-z]+-\d+\.lua$/.test(f))
  .sort()
  .map((f) => {
    const [, name, keys] = /^([a-z]+)-(\d+)\.lua$/.exec(f);
    const lua = expand(join(luaDir, f), new Set());
    check(f, lua);
    return `  ${name}: { name: '${name}', numberOfKeys: ${keys}, lua: ${JSON.stringify(lua)} },`;
  });

const doc = (text, indent) => (text ? `${indent}/** ${text} */\n` : '');
const output = `// Generated by scripts/generate-lua.mjs from the .lua files beside it, replies.json and record.json. Do not edit.
import type { PairState } from '../record.js';
import type { TakeoverReason } from '../scripts.js';

export const luaScripts = {
${entries.join('\n')}
} as const;

/** Reply codes of the pair-record scripts, and the values their fields may take (replies.json). */
export const REPLY = {
${constants.map(({ name, value, doc: text }) => `${doc(text, '  ')}  ${name}: ${value},`).join('\n')}
} as const;

/** Field names of each reply, in order after its code (INSPECT's reply has no code). */
export const REPLY_FIELDS = {
${layouts.map(({ name, fields }) => `  ${name}: [${fields.map((f) => `'${f}'`).join(', ')}],`).join('\n')}
} as const;

/**
 * A pair record as the Lua scripts store it (record.json): one JSON object, the value of its
 * own key (key mode) or a field of a hash (hash mode, see \`recordAddress\`). Times are Redis
 * server time in ms since the epoch.
 */
export interface StoredRecord {
${recordFields
  .map((f) => {
    const when = f.running ? ' Running only.' : '';
    return `  /** ${f.doc}${when} */\n  ${f.name}${f.required ? '' : '?'}: ${RECORD_TYPES[f.type]};`;
  })
  .join('\n')}
}
`;
writeFileSync(outFile, output);
console.log(`generated ${entries.length} Lua scripts into ${outFile}`);
