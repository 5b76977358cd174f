// Writes the JavaScript-made Automerge fixture that the Go side imports:
//
//   crdt/testdata/js-automerge3.automerge  Automerge.save(doc) from @automerge/automerge 3.5.0
//   crdt/testdata/js-automerge3.json       JSON.stringify(doc) with keys sorted recursively
//
// Run once (npm run fixture) and commit both files. The output is deterministic:
// fixed actor ids and fixed change timestamps, so rerunning yields identical bytes.
//
// Usage: node make-fixture.mjs [OUT_DIR]   (default: ../../crdt/testdata)

import * as Automerge from "@automerge/automerge"
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { canonical, stringifySorted } from "./lib/json.mjs"

const here = dirname(fileURLToPath(import.meta.url))
const outDir = resolve(process.argv[2] ?? join(here, "..", "..", "crdt", "testdata"))

const ALICE = "a11ce0000000000000000000000000a1" // hex actor ids, fixed for reproducible bytes
const BOB = "b0b0000000000000000000000000000b"
const T0 = 1_700_000_000 // seconds since the epoch
let tick = 0
const opts = message => ({ message, time: T0 + 60 * tick++ })

// 1. Alice creates the dashboard. Plain JS strings become collaborative Text in Automerge 3.
let alice = Automerge.init({ actor: ALICE })
alice = Automerge.change(alice, opts("create dashboard"), d => {
  d.title = "Ops board"
  d.widgets = { cpu: { kind: "gauge", value: 42 } }
  d.tags = ["prod"]
  d.layout = { columns: 3, dense: false }
  d.draft = "to be deleted"
})

// 2. Text edited in place (splice), a nested map added, a list insert, a key deleted.
alice = Automerge.change(alice, opts("rename, add memory widget"), d => {
  Automerge.splice(d, ["title"], 4, 5, "dashboard") // "Ops board" -> "Ops dashboard"
  d.widgets.mem = { kind: "gauge", value: 63.5, unit: "%" }
  d.tags.push("eu")
  delete d.draft
})

// 3. Bob forks from here and edits concurrently with Alice.
let bob = Automerge.clone(alice, { actor: BOB })
bob = Automerge.change(bob, opts("bob: ownership"), d => {
  d.updatedBy = "bob"
  d.widgets.cpu.history = [40, 41, 42]
  d.widgets.cpu.threshold = new Automerge.Float64(90) // a float64 with an integral value
})
alice = Automerge.change(alice, opts("alice: alerting"), d => {
  d.alert = null
  d.enabled = true
  d.views = new Automerge.Counter(10)
  d.id = new Automerge.ImmutableString("dash-01") // a scalar (non-Text) string
  d.offset = -5
  d.big = 2 ** 40 // int64 beyond 32 bits
  d.retention = new Automerge.Uint(7)
  d.note = "Température ok"
})

// 4. Merge, then edit on top of both branches.
alice = Automerge.merge(alice, bob)
alice = Automerge.change(alice, opts("after merge"), d => {
  d.widgets.cpu.history.push(43)
  d.widgets.cpu.value = 43
  d.views.increment(5)
  Automerge.splice(d, ["note"], 12, 2, "OK ✓")
  d.layout.dense = true
})

const binary = Automerge.save(alice)
const json = stringifySorted(alice)

// Self-check: the saved bytes reload to the same JSON.
const reloaded = Automerge.load(binary)
if (JSON.stringify(canonical(reloaded)) !== JSON.stringify(canonical(alice))) {
  throw new Error("reloaded document differs from the original")
}

mkdirSync(outDir, { recursive: true })
writeFileSync(join(outDir, "js-automerge3.automerge"), binary)
writeFileSync(join(outDir, "js-automerge3.json"), json)
console.log(`wrote ${binary.length} bytes and JSON to ${outDir}`)
console.log(`heads: ${Automerge.getHeads(alice).join(" ")}`)
console.log(`changes: ${Automerge.getAllChanges(alice).length}`)
process.stdout.write(json)
