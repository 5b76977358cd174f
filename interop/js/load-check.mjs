// Loads an Automerge binary (e.g. one exported by Tandem / automerge-go) with
// JavaScript Automerge 3 and compares its JSON with an expected JSON file.
//
// Usage: node load-check.mjs FILE EXPECTED_JSON_FILE
//
// Prints the loaded document as JSON (keys sorted) on stdout. Exit status:
//   0  the document loaded and deep-equals the expected JSON (numbers by value)
//   1  it loaded but differs (the first difference is printed on stderr)
//   2  usage error, unreadable file, or Automerge.load failed
//
// How Go-written values appear in JS Automerge 3.5.0: Text objects are plain JS
// strings, scalar strings are ImmutableString objects (JSON: their text), int64
// and float64 are numbers, uint64 is a BigInt (compared here as a number, exact
// up to 2^53), counters are Counter objects (JSON: their value).

import * as Automerge from "@automerge/automerge"
import { readFileSync } from "node:fs"
import { canonical, firstDifference, sortKeys } from "./lib/json.mjs"

function fail(code, msg) {
  process.stderr.write(`load-check: ${msg}\n`)
  process.exit(code)
}

const [file, expectedFile] = process.argv.slice(2)
if (!file || !expectedFile || process.argv.length > 4) {
  fail(2, "usage: node load-check.mjs FILE EXPECTED_JSON_FILE")
}

let bytes, expected
try {
  bytes = readFileSync(file)
} catch (e) {
  fail(2, `cannot read ${file}: ${e.message}`)
}
try {
  expected = sortKeys(JSON.parse(readFileSync(expectedFile, "utf8")))
} catch (e) {
  fail(2, `cannot read expected JSON ${expectedFile}: ${e.message}`)
}

let doc, actual
try {
  doc = Automerge.load(new Uint8Array(bytes))
} catch (e) {
  fail(2, `JS Automerge cannot load ${file}: ${e.message}`)
}
try {
  actual = canonical(doc)
} catch (e) {
  fail(2, `${file} loaded but has no JSON form: ${e.message}`)
}

process.stdout.write(JSON.stringify(actual, null, 2) + "\n")
const diff = firstDifference(actual, expected)
if (diff !== null) fail(1, `${file} does not match ${expectedFile}: ${diff}`)
process.stderr.write(`load-check: OK, ${file} matches ${expectedFile}\n`)
