// The binary-format fixtures: crdt/testdata/js-automerge3.{automerge,json}
// are reproducible from make-fixture.mjs, and load-check.mjs accepts what
// matches and rejects what does not. (The Go side imports the fixture, and
// `make test` runs load-check.mjs on a document exported by Tandem.)
import assert from "node:assert/strict"
import { spawnSync } from "node:child_process"
import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { after, describe, test } from "node:test"
import { JS_DIR, tempDir } from "../lib/harness.mjs"

const TESTDATA = join(JS_DIR, "..", "..", "crdt", "testdata")
const FIXTURE = join(TESTDATA, "js-automerge3.automerge")
const FIXTURE_JSON = join(TESTDATA, "js-automerge3.json")

function node(script, ...args) {
  const r = spawnSync(process.execPath, [join(JS_DIR, script), ...args], { encoding: "utf8", timeout: 20_000 })
  if (r.error) throw r.error
  return r
}

describe("fixtures", { timeout: 60_000 }, () => {
  const tmp = tempDir("tandem-fixture-")
  after(() => rmSync(tmp, { recursive: true, force: true }))

  test("the committed fixture is exactly what make-fixture.mjs produces", () => {
    const r = node("make-fixture.mjs", tmp)
    assert.equal(r.status, 0, r.stderr)
    assert.ok(
      readFileSync(join(tmp, "js-automerge3.automerge")).equals(readFileSync(FIXTURE)),
      "crdt/testdata/js-automerge3.automerge differs from a fresh run of make-fixture.mjs",
    )
    assert.equal(readFileSync(join(tmp, "js-automerge3.json"), "utf8"), readFileSync(FIXTURE_JSON, "utf8"))
  })

  test("load-check accepts a matching document", () => {
    const r = node("load-check.mjs", FIXTURE, FIXTURE_JSON)
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout), JSON.parse(readFileSync(FIXTURE_JSON, "utf8")))
  })

  test("load-check compares numbers by value and ignores key order", () => {
    const expected = JSON.parse(readFileSync(FIXTURE_JSON, "utf8"))
    const reordered = Object.fromEntries(Object.entries(expected).reverse())
    const file = join(tmp, "reordered.json")
    writeFileSync(file, JSON.stringify(reordered).replace('"threshold":90', '"threshold":90.0'))
    const r = node("load-check.mjs", FIXTURE, file)
    assert.equal(r.status, 0, r.stderr)
  })

  test("load-check rejects a different document with exit status 1", () => {
    const expected = JSON.parse(readFileSync(FIXTURE_JSON, "utf8"))
    expected.widgets.mem.value = 64
    const file = join(tmp, "wrong.json")
    writeFileSync(file, JSON.stringify(expected))
    const r = node("load-check.mjs", FIXTURE, file)
    assert.equal(r.status, 1)
    assert.match(r.stderr, /\/widgets\/mem\/value: expected 64, got 63\.5/)
  })

  test("load-check rejects bytes that are not an Automerge document with exit status 2", () => {
    const r = node("load-check.mjs", FIXTURE_JSON, FIXTURE_JSON)
    assert.equal(r.status, 2)
    assert.match(r.stderr, /cannot load/)
  })
})
