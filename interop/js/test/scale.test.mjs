// Larger loads: a multi-megabyte document, and many clients on one document.
import assert from "node:assert/strict"
import { createHash, randomBytes } from "node:crypto"
import { after, before, describe, test } from "node:test"
import {
  Automerge,
  clientsOf,
  eventLoopReport,
  maxEventLoopDelayMs,
  resetEventLoopDelay,
  sleep,
  snapshot,
  startServer,
  trafficReport,
  waitConverged,
  waitFor,
} from "../lib/harness.mjs"

// Longest event-loop stall for which the test process counts as responsive
// (servers drop a socket that has not answered a ping within 5-10 s).
const RESPONSIVE_MS = 2000

const sha256 = s => createHash("sha256").update(s).digest("hex")

describe("scale", { timeout: 120_000 }, () => {
  let server
  before(async () => {
    server = await startServer()
  })
  after(async () => {
    await server?.dispose()
  })

  test("a document of several MB syncs to a fresh client", { timeout: 60_000 }, async t => {
    const connect = clientsOf(t)
    const a = await connect(server)
    // Random content, so the bytes on the wire really are megabytes:
    // a 200 KB text edited as text, and a list of 400 strings of 7.5 KB.
    const h = a.create({ title: "big", log: "", blobs: [] })
    h.change(d => {
      Automerge.splice(d, ["log"], 0, 0, randomBytes(150_000).toString("base64"))
    })
    h.change(d => {
      for (let i = 0; i < 400; i++) d.blobs.push(new Automerge.ImmutableString(randomBytes(5625).toString("base64")))
    })
    h.change(d => {
      Automerge.splice(d, ["log"], 10, 5, "EDITED")
      d.blobs.insertAt(0, "first")
    })
    const content = JSON.stringify(h.doc()).length
    const saved = Automerge.save(h.doc()).length // base64 text deflates to ~75%
    assert.ok(content > 3_000_000 && saved > 2_000_000, `document is only ${content} chars, ${saved} bytes saved`)
    await a.waitServerHas(h, 30_000)

    const b = await connect(server)
    const started = Date.now()
    const hb = await b.find(h.url, 30_000)
    const took = Date.now() - started
    const want = snapshot(h)
    const got = snapshot(hb)
    assert.deepEqual(got.heads, want.heads)
    assert.equal(got.json.length, want.json.length)
    assert.equal(sha256(got.json), sha256(want.json))
    assert.equal(hb.doc().blobs.length, 401)
    assert.equal(hb.doc().log.slice(10, 16), "EDITED")
    t.diagnostic(`${content} chars (${saved} bytes saved) found by a fresh client in ${took} ms`)
  })

  test("30 clients on one document each make changes and converge", { timeout: 60_000 }, async t => {
    const connect = clientsOf(t)
    const N = 30
    resetEventLoopDelay()
    const cs = await Promise.all(Array.from({ length: N }, () => connect(server)))
    const h0 = cs[0].create({ counter: new Automerge.Counter(0), byClient: {}, events: [] })
    await cs[0].waitServerHas(h0)
    const handles = [h0, ...(await Promise.all(cs.slice(1).map(c => c.find(h0.url, 20_000))))]

    const CHANGES = 3
    await Promise.all(
      handles.map(async (h, i) => {
        for (let k = 0; k < CHANGES; k++) {
          h.change(d => {
            d.counter.increment(1)
            d.byClient[`c${i}`] = k
            d.events.push(`${i}:${k}`)
          })
          await sleep(5 * ((i + k) % 7))
        }
      }),
    )

    const converged = await waitConverged(handles, 45_000, { clients: cs })
    t.diagnostic(`${trafficReport(cs)}; ${eventLoopReport()}`)
    // A server may drop a client that does not answer its pings for 5-10 s
    // (the JS server does), and a client working through a backlog of
    // messages answers late. Dropped clients are the server's fault only if
    // this process stayed responsive throughout.
    const dropped = cs.filter(c => c.disconnects > 0).length
    if (dropped > 0 && maxEventLoopDelayMs() < RESPONSIVE_MS) {
      assert.fail(`${dropped} of ${N} live clients were disconnected by the server (${eventLoopReport()})`)
    } else if (dropped > 0) {
      t.diagnostic(`${dropped} clients were dropped while this process was overloaded`)
    }
    const doc = JSON.parse(converged.json)
    assert.equal(doc.counter, N * CHANGES)
    assert.equal(Object.keys(doc.byClient).length, N)
    assert.equal(doc.events.length, N * CHANGES)
    assert.equal(new Set(doc.events).size, N * CHANGES)
  })
})

// A client with more documents than the server's message burst: the server
// slows it to its message rate instead of cutting it off (cut off, the
// client reconnected and announced every document again, for ever).
describe("message rate", { timeout: 120_000 }, () => {
  const RATE = 100 // messages/s per connection, burst 200
  const DOCS = 400
  let server
  before(async () => {
    server = await startServer({ extraArgs: ["--rate", String(RATE)] })
  })
  after(async () => {
    await server?.dispose()
  })

  test(`a client creating ${DOCS} documents at once gets them all to a server allowing ${RATE} messages/s`, { timeout: 90_000 }, async t => {
    const connect = clientsOf(t)
    const a = await connect(server)
    const started = Date.now()
    const handles = Array.from({ length: DOCS }, (_, i) => a.create({ i }))
    for (const h of handles) await a.waitServerHas(h, 60_000)
    const took = Date.now() - started
    assert.equal(a.disconnects, 0, "the client was disconnected")
    // At least the messages past the burst were read at the rate.
    assert.ok(took >= ((DOCS - 2 * RATE) / RATE) * 1000 * 0.9, `${DOCS} documents acknowledged in ${took} ms: faster than ${RATE} messages/s`)
    t.diagnostic(`${DOCS} documents acknowledged in ${took} ms; ${trafficReport([a])}`)
  })
})

// A client with more documents than one connection may sync: the server
// syncs up to the limit and refuses the rest, and the connection stays up
// (closed, the client reconnected and announced everything again, for ever).
describe("documents per connection", { timeout: 120_000 }, () => {
  const LIMIT = 30
  const DOCS = 40
  let server
  before(async () => {
    server = await startServer({ extraArgs: ["--max-docs-per-conn", String(LIMIT)] })
  })
  after(async () => {
    await server?.dispose()
  })

  test(`a client with ${DOCS} documents keeps its connection to a server allowing ${LIMIT}`, { timeout: 60_000 }, async t => {
    const connect = clientsOf(t)
    const a = await connect(server)
    const handles = Array.from({ length: DOCS }, (_, i) => a.create({ i }))
    const acknowledged = () => handles.filter(h => (a.serverHeads.get(h.documentId) ?? []).length > 0).length
    await waitFor(() => acknowledged() >= LIMIT, 30_000, `the server to acknowledge ${LIMIT} documents`, {
      describe: () => `${acknowledged()} acknowledged, ${a.disconnects} disconnects`,
    })
    // Longer than the client's reconnect backoff: a closed connection would show.
    const since = Date.now()
    await waitFor(() => Date.now() - since > 3000 || a.disconnects > 0, 5000, "a quiet spell")
    assert.equal(a.disconnects, 0, "the client was disconnected")
    assert.equal(acknowledged(), LIMIT, "documents past the limit were synced")
    t.diagnostic(`${acknowledged()} of ${DOCS} documents acknowledged, ${a.disconnects} disconnects`)
  })
})

