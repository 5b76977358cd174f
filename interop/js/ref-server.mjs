// A minimal reference sync server, used only as a test double to validate the
// client test suite in test/ before (and besides) running it against `tandem
// serve`. It has the shape of the official automerge-repo-sync-server: a real
// automerge-repo Repo with a WebSocket server adapter, on-disk storage, and a
// share policy that announces nothing (peers get the documents they name).
//
// Usage: node ref-server.mjs [PORT] [DATA_DIR]
//   PORT      TCP port on 127.0.0.1 (default $PORT, else 0 = pick a free one)
//   DATA_DIR  storage directory (default $DATA_DIR, else ./ref-server-data)
// The first stdout line is `listening on PORT`. WebSocket upgrades are accepted
// on any path (ws://127.0.0.1:PORT/sync works). SIGTERM/SIGINT: flush and exit 0.

import { randomUUID } from "node:crypto"
import http from "node:http"
import os from "node:os"
import { WebSocketServer } from "ws"
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"

const port = Number(process.argv[2] ?? process.env.PORT ?? 0)
const dataDir = process.argv[3] ?? process.env.DATA_DIR ?? "ref-server-data"
const host = process.env.HOST ?? "127.0.0.1"
const log = msg => process.stderr.write(`ref-server[${process.pid}]: ${msg}\n`)

// automerge-repo 2.5.6's server adapter throws on some malformed input (e.g. a
// CBOR frame that is not a map), which would kill the process from inside a
// socket event handler. A server must survive bad input from one client, so
// such a frame closes only that client's socket.
class RobustServerAdapter extends NodeWSServerAdapter {
  // The Repo connects its adapters asynchronously (after it has read the
  // storage id); a WebSocket accepted before that would never be answered.
  // `wired` resolves once the adapter listens for connections.
  #wiredResolve
  wired = new Promise(resolve => {
    this.#wiredResolve = resolve
  })
  connect(peerId, peerMetadata) {
    super.connect(peerId, peerMetadata)
    this.#wiredResolve()
  }
  receiveMessage(messageBytes, socket) {
    try {
      super.receiveMessage(messageBytes, socket)
    } catch (e) {
      log(`closing a connection after bad input: ${e?.message ?? e}`)
      socket.close()
    }
  }
}

// Create the storage id before the Repo asks for it (on an empty store, two
// concurrent first requests could otherwise mint two different ids).
const storage = new NodeFSStorageAdapter(dataDir)
if (!(await storage.load(["storage-adapter-id"]))) {
  await storage.save(["storage-adapter-id"], new TextEncoder().encode(randomUUID()))
}

const wss = new WebSocketServer({ noServer: true })
const adapter = new RobustServerAdapter(wss)
const repo = new Repo({
  network: [adapter],
  storage,
  peerId: `storage-server-${os.hostname()}`,
  sharePolicy: async () => false,
  // Save as soon as a document changes (default: debounced by 100 ms). The
  // relay to other peers is throttled by 100 ms, so a change is on disk before
  // anyone else sees it, which is what the SIGKILL test checks of a server.
  saveDebounceRate: 0,
})

const server = http.createServer((_req, res) => {
  res.writeHead(200, { "content-type": "text/plain" })
  res.end("automerge-repo reference sync server\n")
})
server.on("upgrade", (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, ws => wss.emit("connection", ws, req))
})

await adapter.wired
server.listen(port, host, () => {
  process.stdout.write(`listening on ${server.address().port}\n`)
})

let stopping = false
async function shutdown(signal) {
  if (stopping) return
  stopping = true
  log(`${signal}: shutting down`)
  const hardStop = setTimeout(() => {
    log("shutdown took too long, exiting")
    process.exit(1)
  }, 5000)
  hardStop.unref()
  // Flush the documents that are loaded (a handle a client never delivered,
  // e.g. after garbage sync data, is not ready and cannot be saved).
  const ready = Object.values(repo.handles).filter(h => h.isReady())
  for (const step of [() => repo.flush(ready.map(h => h.documentId)), () => repo.shutdown()]) {
    try {
      await step()
    } catch (e) {
      log(`shutdown: ${e?.message ?? e}`)
    }
  }
  for (const client of wss.clients) client.terminate()
  wss.close()
  server.close(() => process.exit(0))
  server.closeAllConnections?.()
}
process.on("SIGTERM", () => shutdown("SIGTERM"))
process.on("SIGINT", () => shutdown("SIGINT"))
