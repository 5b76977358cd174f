// Basic document sync through the server under test, with real automerge-repo clients.
import assert from "node:assert/strict"
import { after, before, describe, test } from "node:test"
import { generateAutomergeUrl } from "@automerge/automerge-repo"
import {
  Automerge,
  canonical,
  clientsOf,
  sleep,
  snapshot,
  startServer,
  waitConverged,
} from "../lib/harness.mjs"

describe("sync", { timeout: 120_000 }, () => {
  let server
  before(async () => {
    server = await startServer()
  })
  after(async () => {
    await server?.dispose()
  })

  test("a document created by one client is found with identical content by another", { timeout: 30_000 }, async t => {
    const connect = clientsOf(t)
    const [a, b] = await Promise.all([connect(server), connect(server)])
    const initial = {
      title: "Ops dashboard",
      widgets: { cpu: { kind: "gauge", value: 42 }, mem: { kind: "gauge", value: 63.5 } },
      tags: ["prod", "eu"],
      enabled: true,
      alert: null,
    }
    const ha = a.create(initial)
    ha.change(d => {
      d.updatedBy = "client-a"
      Automerge.splice(d, ["title"], 0, 3, "Ops team")
    })
    await a.waitServerHas(ha)

    const hb = await b.find(ha.url)
    assert.equal(hb.documentId, ha.documentId)
    assert.deepEqual(snapshot(hb), snapshot(ha))
    assert.deepEqual(canonical(hb.doc()), canonical({ ...initial, title: "Ops team dashboard", updatedBy: "client-a" }))

    // and edits flow back the other way
    hb.change(d => {
      d.widgets.cpu.value = 99
    })
    await waitConverged([ha, hb], 20_000)
    assert.equal(ha.doc().widgets.cpu.value, 99)
  })

  test("20 rounds of concurrent edits from two clients converge", { timeout: 30_000 }, async t => {
    const connect = clientsOf(t)
    const [a, b] = await Promise.all([connect(server), connect(server)])
    const ha = a.create({ shared: "none", counter: new Automerge.Counter(0), text: "", a: {}, b: {} })
    await a.waitServerHas(ha)
    const hb = await b.find(ha.url)

    const ROUNDS = 20
    for (let i = 0; i < ROUNDS; i++) {
      // Both clients write the same key, their own keys, the same counter and the same text, without waiting.
      ha.change(d => {
        d.shared = `a${i}`
        d.a[`k${i}`] = i
        d.counter.increment(1)
        Automerge.splice(d, ["text"], 0, 0, "A")
      })
      hb.change(d => {
        d.shared = `b${i}`
        d.b[`k${i}`] = i * 10
        d.counter.increment(2)
        Automerge.splice(d, ["text"], d.text.length, 0, "b")
      })
      // Let some rounds overlap with sync traffic in flight and some not.
      if (i % 4 === 3) await waitConverged([ha, hb], 20_000)
      else await sleep((i * 7) % 30)
    }

    const converged = await waitConverged([ha, hb], 20_000)
    const doc = JSON.parse(converged.json)
    assert.equal(Object.keys(doc.a).length, ROUNDS)
    assert.equal(Object.keys(doc.b).length, ROUNDS)
    assert.equal(doc.counter, ROUNDS * 3)
    assert.equal(doc.text.length, ROUNDS * 2)
    assert.equal(doc.text.replace(/b/g, ""), "A".repeat(ROUNDS))
    assert.match(doc.shared, /^[ab]19$/)
    assert.deepEqual(converged.heads, [...Automerge.getHeads(hb.doc())].sort())
  })

  test("find() of a document that was never created rejects as unavailable within 2 s", { timeout: 30_000 }, async t => {
    const c = await clientsOf(t)(server)
    const url = generateAutomergeUrl()
    const started = Date.now()
    await assert.rejects(c.find(url, 5000), err => {
      assert.match(String(err?.message), /unavailable/i, `expected "unavailable", got: ${err?.message}`)
      return true
    })
    const elapsed = Date.now() - started
    assert.ok(elapsed < 2000, `find() took ${elapsed} ms to reject`)

    // The server is still fine and still serves that client.
    const h = c.create({ after: "unavailable" })
    await c.waitServerHas(h)
  })
})
