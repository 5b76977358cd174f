// The server under test crashes (SIGKILL) or restarts (SIGTERM) under live clients.
import assert from "node:assert/strict"
import { after, describe, test } from "node:test"
import { rmSync } from "node:fs"
import {
  clientsOf,
  closeAll,
  snapshot,
  startServer,
  tempDir,
  waitConverged,
  waitFor,
} from "../lib/harness.mjs"

describe("durability", { timeout: 120_000 }, () => {
  const servers = []
  const dirs = []
  after(async () => {
    await Promise.all(servers.map(s => s.dispose()))
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  test("SIGKILL after a change reached another client loses nothing", { timeout: 30_000 }, async t => {
    const connect = clientsOf(t)
    const server = await startServer()
    servers.push(server)
    const [a, b] = await Promise.all([connect(server), connect(server)])

    const ha = a.create({ widgets: { cpu: 1 }, log: [] })
    await a.waitServerHas(ha)
    const hb = await b.find(ha.url)
    ha.change(d => {
      d.widgets.cpu = 2
      d.log.push("from a")
    })
    await waitConverged([ha, hb], 10_000) // A's change reached B through the server
    hb.change(d => {
      d.widgets.mem = 3
      d.log.push("from b")
    })
    await waitConverged([ha, hb], 10_000) // and B's reached A
    const want = snapshot(ha)

    const exit = await server.kill()
    assert.equal(exit.signal, "SIGKILL")
    // Close the clients so that nothing can re-upload the document after the restart.
    await closeAll([a, b])

    await server.start()
    const c = await connect(server)
    const hc = await c.find(ha.url, 10_000)
    assert.deepEqual(snapshot(hc), want)
    assert.deepEqual(hc.doc().log, ["from a", "from b"])
  })

  test("clients stay open across a server restart, reconnect and keep syncing", { timeout: 45_000 }, async t => {
    const connect = clientsOf(t)
    const server = await startServer()
    servers.push(server)
    const storageDir = tempDir("tandem-client-")
    dirs.push(storageDir)
    // B keeps its documents and sync state on disk (as a browser tab with IndexedDB would).
    const [a, b] = await Promise.all([connect(server), connect(server, { storageDir })])
    const ha = a.create({ phase: "before", n: 0 })
    await a.waitServerHas(ha)
    const hb = await b.find(ha.url)
    hb.change(d => {
      d.n = 1
    })
    await waitConverged([ha, hb], 10_000)

    const exit = await server.stop()
    assert.equal(exit.forced, false, "server did not exit within 10 s of SIGTERM")
    t.diagnostic(`server exit after SIGTERM: code ${exit.code} signal ${exit.signal}`)
    await waitFor(() => !a.connected && !b.connected, 10_000, "clients to notice the server is gone")

    // Offline edits on both sides, while the server is down.
    ha.change(d => {
      d.phase = "offline"
      d.offlineA = true
    })
    hb.change(d => {
      d.offlineB = true
    })

    const restarted = Date.now()
    await server.start()
    // The client adapter retries every 5 s.
    await waitFor(() => a.connected && b.connected, 15_000, "clients to reconnect")
    t.diagnostic(`clients reconnected ${Date.now() - restarted} ms after the restart`)
    const merged = await waitConverged([ha, hb], 15_000)
    const doc = JSON.parse(merged.json)
    assert.equal(doc.offlineA, true)
    assert.equal(doc.offlineB, true)
    assert.equal(doc.phase, "offline")

    // Live edits after the reconnect, and a document created after it.
    ha.change(d => {
      d.phase = "after"
    })
    await waitConverged([ha, hb], 10_000)
    assert.equal(hb.doc().phase, "after")
    const fresh = b.create({ createdAfterRestart: true })
    await b.waitServerHas(fresh)
    const freshA = await a.find(fresh.url)
    assert.equal(freshA.doc().createdAfterRestart, true)
  })
})
