// Malformed and out-of-protocol input on raw WebSockets. Every sane server
// survives each of these and keeps serving other clients; that is what is
// asserted by default. With TANDEM_STRICT=1 the test also expects Tandem's
// stricter reactions (see README.md).
import assert from "node:assert/strict"
import { randomBytes } from "node:crypto"
import { after, before, beforeEach, describe, test } from "node:test"
import WebSocket from "ws"
import { cbor, generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo"
import {
  Automerge,
  STRICT,
  closeAll,
  connectClient,
  snapshot,
  startServer,
  waitFor,
  withTimeout,
} from "../lib/harness.mjs"

/** A bare WebSocket speaking (or not) the automerge-repo protocol. */
class RawConn {
  static async open(url) {
    const c = new RawConn(url)
    await withTimeout(c.opened, 5000, `raw WebSocket to ${url} to open`)
    return c
  }

  constructor(url) {
    this.peerId = `raw-${randomBytes(5).toString("hex")}`
    this.frames = [] // decoded CBOR frames from the server
    this.undecodable = [] // binary frames that were not CBOR
    this.textFrames = []
    this.closeInfo = null
    this.ws = new WebSocket(url)
    this.ws.binaryType = "nodebuffer"
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", resolve)
      this.ws.once("error", reject)
    })
    this.ws.on("error", () => {}) // a reset connection is an acceptable reaction
    this.ws.on("message", (data, isBinary) => {
      if (!isBinary) return this.textFrames.push(data.toString())
      try {
        this.frames.push(cbor.decode(data))
      } catch {
        this.undecodable.push(data)
      }
    })
    this.ws.on("close", (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() }
    })
  }

  get closed() {
    return this.closeInfo !== null
  }

  send(data) {
    this.ws.send(data, () => {}) // ignore "socket closed" errors: the server may have hung up
  }

  sendMsg(msg) {
    this.send(cbor.encode(msg))
  }

  async join(supportedProtocolVersions = ["1"]) {
    this.sendMsg({ type: "join", senderId: this.peerId, peerMetadata: { isEphemeral: true }, supportedProtocolVersions })
    const peer = await waitFor(() => this.frames.find(f => f?.type === "peer"), 5000, "peer reply to join")
    this.serverId = peer.senderId
    return peer
  }

  /** The server reacted visibly: an `error` message arrived or it closed the connection. */
  async rejected(timeoutMs = 3000) {
    try {
      await waitFor(() => this.closed || this.frames.some(f => f?.type === "error"), timeoutMs, "error or close")
      return true
    } catch {
      return false
    }
  }

  close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate()
  }
}

// An empty document's first sync message (what a client that has nothing sends).
const emptySyncMessage = Automerge.generateSyncMessage(Automerge.init(), Automerge.initSyncState())[1]
const newDocumentId = () => parseAutomergeUrl(generateAutomergeUrl()).documentId

describe("bad input", { timeout: 180_000 }, () => {
  let server, x, y
  const raws = []
  let round = 0

  async function connectProbes() {
    ;[x, y] = await Promise.all([connectClient(server), connectClient(server)])
  }
  before(async () => {
    server = await startServer()
    await connectProbes()
  })
  // Each case gets a live server, so that one crash does not fail every later case.
  beforeEach(async () => {
    if (server.alive) return
    await closeAll([x, y])
    await server.start()
    await connectProbes()
  })
  after(async () => {
    for (const r of raws) r.close()
    await closeAll([x, y])
    await server?.dispose()
  })

  /** The server is alive and still serves normal clients: X creates a document, Y finds it. */
  async function assertStillServing(what) {
    assert.ok(server.alive, `server process died after ${what}\n${server.logTail()}`)
    const h = x.create({ probe: ++round, after: what })
    await x.waitServerHas(h, 10_000)
    const found = await y.find(h.url, 10_000)
    assert.deepEqual(snapshot(found), snapshot(h), `round trip after ${what}`)
    assert.ok(server.alive, `server process died after ${what}\n${server.logTail()}`)
  }

  async function raw() {
    const r = await RawConn.open(server.url)
    raws.push(r)
    return r
  }

  /** Checks common to every case; strict ones only with TANDEM_STRICT. */
  async function finish(r, what, { strictRejects = true } = {}) {
    await assertStillServing(what)
    assert.deepEqual(r.textFrames, [], "the server sent text frames")
    assert.deepEqual(r.undecodable, [], "the server sent frames that are not CBOR")
    if (STRICT && strictRejects) {
      assert.ok(await r.rejected(), `strict: expected an error message or a close after ${what}`)
      for (const f of r.frames.filter(f => f?.type === "error")) {
        assert.equal(typeof f.message, "string", "error message has a text `message`")
      }
    }
    r.close()
  }

  const cases = [
    ["bytes that are not CBOR", async r => r.send(Buffer.from("ff1cff1c0001", "hex"))],
    ["truncated CBOR", async r => r.send(cbor.encode({ type: "join", senderId: r.peerId }).subarray(0, 9))],
    ["a text frame", async r => r.send(JSON.stringify({ type: "join", senderId: r.peerId, supportedProtocolVersions: ["1"] }))],
    ["an empty binary frame", async r => r.send(Buffer.alloc(0))],
    ["CBOR that is not a map (integer)", async r => r.send(cbor.encode(42))],
    ["CBOR that is not a map (null)", async r => r.send(cbor.encode(null))],
    ["CBOR that is not a map (array)", async r => r.send(cbor.encode(["join", r.peerId]))],
    ["a map without a type", async r => r.sendMsg({ senderId: r.peerId, supportedProtocolVersions: ["1"] })],
    [
      "a message before join",
      async (r, ctx) => {
        r.sendMsg({ type: "request", senderId: r.peerId, targetId: "server", documentId: ctx.docId, data: emptySyncMessage })
      },
      { check: r => assert.equal(r.frames.filter(f => f?.type === "sync").length, 0, "served a document before join") },
    ],
    [
      "a join with an unsupported protocol version",
      async r => r.sendMsg({ type: "join", senderId: r.peerId, supportedProtocolVersions: ["999"] }),
      { nonStrictRejects: true },
    ],
    [
      "a second join on the same connection",
      async r => {
        await r.join()
        r.sendMsg({ type: "join", senderId: r.peerId, supportedProtocolVersions: ["1"] })
      },
    ],
    [
      "a join with a different senderId on the same connection",
      async r => {
        await r.join()
        r.sendMsg({ type: "join", senderId: `${r.peerId}-2`, supportedProtocolVersions: ["1"] })
      },
    ],
    [
      "an unknown message type",
      async r => {
        await r.join()
        r.sendMsg({ type: "frobnicate", senderId: r.peerId, targetId: r.serverId, documentId: newDocumentId() })
      },
      {
        strictRejects: false,
        // strict: unknown types are ignored and the connection stays usable
        strictCheck: async r => {
          const documentId = newDocumentId()
          r.sendMsg({ type: "request", senderId: r.peerId, targetId: r.serverId, documentId, data: emptySyncMessage })
          await waitFor(
            () => r.frames.some(f => f?.type === "doc-unavailable" && f.documentId === documentId),
            5000,
            "doc-unavailable on the same connection after an unknown message type",
          )
        },
      },
    ],
    [
      "a sync with an invalid documentId",
      async r => {
        await r.join()
        r.sendMsg({ type: "sync", senderId: r.peerId, targetId: r.serverId, documentId: "not-a-document-id", data: emptySyncMessage })
      },
    ],
    [
      "a request with the documentId as bytes",
      async r => {
        await r.join()
        const bytes = Buffer.from(randomBytes(16))
        r.sendMsg({ type: "request", senderId: r.peerId, targetId: r.serverId, documentId: bytes, data: emptySyncMessage })
      },
    ],
    [
      "a sync without a documentId or data",
      async r => {
        await r.join()
        r.sendMsg({ type: "sync", senderId: r.peerId, targetId: r.serverId })
      },
    ],
    [
      "a sync with garbage data",
      async r => {
        await r.join()
        r.sendMsg({ type: "sync", senderId: r.peerId, targetId: r.serverId, documentId: newDocumentId(), data: randomBytes(64) })
      },
    ],
    [
      "a sync with garbage data for an existing document",
      async (r, ctx) => {
        await r.join()
        const data = Buffer.concat([Buffer.from([0x42]), randomBytes(200)])
        r.sendMsg({ type: "sync", senderId: r.peerId, targetId: r.serverId, documentId: ctx.docId, data })
      },
      {
        check: async (_r, ctx) => {
          // the document itself is unharmed
          const h = await y.find(ctx.url, 10_000)
          assert.deepEqual(h.doc().victim, true)
        },
      },
    ],
    [
      "a sync with a foreign senderId",
      async (r, ctx) => {
        await r.join()
        r.sendMsg({ type: "sync", senderId: x.peerId, targetId: r.serverId, documentId: ctx.docId, data: emptySyncMessage })
      },
      { check: r => assert.equal(r.frames.filter(f => f?.type === "sync").length, 0, "answered a spoofed sender") },
    ],
  ]

  for (const [what, send, opts = {}] of cases) {
    test(`survives ${what}`, { timeout: 30_000 }, async () => {
      // A document that exists on the server, for the cases that name one.
      const victim = x.create({ victim: true })
      await x.waitServerHas(victim)
      const ctx = { docId: victim.documentId, url: victim.url }

      const r = await raw()
      await send(r, ctx)
      if (opts.nonStrictRejects) {
        assert.ok(await r.rejected(), `expected an error message or a close after ${what}`)
      }
      if (opts.check) await opts.check(r, ctx)
      if (STRICT && opts.strictCheck) await opts.strictCheck(r, ctx)
      await finish(r, what, { strictRejects: opts.strictRejects ?? true })
    })
  }

  test("a flood of bad frames from several connections at once", { timeout: 30_000 }, async () => {
    const conns = await Promise.all(Array.from({ length: 5 }, () => raw()))
    await Promise.all(conns.map(r => r.join().catch(() => {})))
    for (const r of conns) {
      for (let i = 0; i < 50; i++) r.send(randomBytes(1 + (i % 40)))
    }
    await assertStillServing("a flood of random frames")
    for (const r of conns) r.close()
  })
})
