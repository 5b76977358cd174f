// Ephemeral messages (handle.broadcast) relayed by the server under test.
import assert from "node:assert/strict"
import { after, before, describe, test } from "node:test"
import { clientsOf, startServer, waitFor } from "../lib/harness.mjs"

/** Records what a client receives for one document: app-level events and raw ephemeral frames. */
function record(client, handle) {
  const rec = { events: [], frames: [] }
  handle.on("ephemeral-message", ({ senderId, message }) => rec.events.push({ senderId, message }))
  // Raw frames as they come off the socket, before automerge-repo's own
  // per-sender de-duplication: a server that sends duplicates shows up here.
  client.adapter.on("message", msg => {
    if (msg.type === "ephemeral" && msg.documentId === handle.documentId) rec.frames.push(msg)
  })
  return rec
}

const count = (list, pred) => list.filter(pred).length

describe("ephemeral", { timeout: 60_000 }, () => {
  let server
  before(async () => {
    server = await startServer()
  })
  after(async () => {
    await server?.dispose()
  })

  test("a broadcast from A reaches B and C exactly once each, and not A", { timeout: 30_000 }, async t => {
    const connect = clientsOf(t)
    const [a, b, c] = await Promise.all([connect(server), connect(server), connect(server)])
    const ha = a.create({ presence: true })
    await a.waitServerHas(ha)
    // The server relays only to peers that are syncing the document.
    const [hb, hc] = await Promise.all([b.find(ha.url), c.find(ha.url)])
    const recA = record(a, ha)
    const recB = record(b, hb)
    const recC = record(c, hc)

    const messages = [
      { cursor: { x: 1, y: 2 }, user: "alice" },
      { cursor: { x: 3, y: 4 }, user: "alice" },
      { selection: [1, 5], note: "a".repeat(1000) },
    ]
    for (const m of messages) ha.broadcast(m)

    // Settle window: a final marker broadcast. Relays over one connection keep
    // their order, so once B and C have the marker, any copy of the earlier
    // messages the server was going to send them has arrived too.
    ha.broadcast({ marker: 1 })
    const hasMarker = rec => rec.events.some(e => e.message?.marker === 1)
    await waitFor(() => hasMarker(recB) && hasMarker(recC), 10_000, "the marker broadcast to reach B and C", {
      describe: () => `B ${JSON.stringify(recB.events)} C ${JSON.stringify(recC.events)}`,
    })
    // A second marker round, to catch late echoes of the first batch.
    ha.broadcast({ marker: 2 })
    await waitFor(
      () => recB.events.some(e => e.message?.marker === 2) && recC.events.some(e => e.message?.marker === 2),
      10_000,
      "the second marker to reach B and C",
    )

    for (const [name, rec] of [
      ["B", recB],
      ["C", recC],
    ]) {
      for (const m of messages) {
        const same = e => JSON.stringify(e.message) === JSON.stringify(m)
        assert.equal(count(rec.events, same), 1, `${name}: events for ${JSON.stringify(m).slice(0, 60)}`)
      }
      assert.equal(rec.events.length, messages.length + 2, `${name}: total events`)
      // Raw frames: exactly one per broadcast, original sender preserved.
      assert.equal(rec.frames.length, messages.length + 2, `${name}: raw ephemeral frames`)
      for (const e of rec.events) assert.equal(e.senderId, a.peerId, `${name}: senderId is the original sender`)
      // order is preserved
      assert.deepEqual(
        rec.events.map(e => e.message),
        [...messages, { marker: 1 }, { marker: 2 }],
        `${name}: order`,
      )
    }
    // The sender does not get its own messages back.
    assert.equal(recA.events.length, 0, "A received its own broadcast")
    assert.equal(recA.frames.length, 0, "A received raw frames of its own broadcast")
  })

  test("broadcasts go both ways and only to peers of that document", { timeout: 30_000 }, async t => {
    const connect = clientsOf(t)
    const [a, b, outsider] = await Promise.all([connect(server), connect(server), connect(server)])
    const ha = a.create({ doc: "one" })
    const other = outsider.create({ doc: "other" })
    await Promise.all([a.waitServerHas(ha), outsider.waitServerHas(other)])
    const hb = await b.find(ha.url)
    const recA = record(a, ha)
    const recB = record(b, hb)
    const outsiderFrames = []
    outsider.adapter.on("message", msg => msg.type === "ephemeral" && outsiderFrames.push(msg))

    hb.broadcast({ from: "b" })
    ha.broadcast({ from: "a" })
    await waitFor(
      () => recA.events.some(e => e.message?.from === "b") && recB.events.some(e => e.message?.from === "a"),
      10_000,
      "broadcasts to cross",
    )
    // The outsider shares the server but not the document: once a further
    // marker from A has reached B, nothing may have reached the outsider.
    ha.broadcast({ marker: true })
    await waitFor(() => recB.events.some(e => e.message?.marker), 10_000, "marker to reach B")
    assert.equal(outsiderFrames.length, 0, "a client not syncing the document received its ephemeral messages")
    assert.equal(count(recA.events, e => e.message?.from === "b"), 1)
    assert.equal(count(recB.events, e => e.message?.from === "a"), 1)
    assert.equal(recA.events[0].senderId, b.peerId)
  })
})
