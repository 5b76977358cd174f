// The reference sync server for `make bench-compare`: what a team would run
// without Tandem, in the shape of automerge-repo-sync-server — an
// automerge-repo Repo with the WebSocket server adapter, NodeFS storage and a
// share policy that announces nothing (peers get the documents they name).
// Repo settings are automerge-repo's defaults.
//
// Usage: node server.mjs PORT DATA_DIR
// Listens on 127.0.0.1:PORT (0 picks a free port) and prints
// `listening on PORT`. WebSocket upgrades are accepted on any path.
// SIGTERM/SIGINT: flush the loaded documents and exit 0.

import http from "node:http"
import os from "node:os"
import { WebSocketServer } from "ws"
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"

const port = Number(process.argv[2] ?? 0)
const dataDir = process.argv[3] ?? "reference-data"
const log = msg => process.stderr.write(`reference[${process.pid}]: ${msg}\n`)

const wss = new WebSocketServer({ noServer: true, maxPayload: 100 * 1024 * 1024 })
const adapter = new NodeWSServerAdapter(wss)
// The Repo connects its adapters asynchronously; answer upgrades only once
// the adapter is wired, or early clients would never be answered.
const wired = new Promise(resolve => {
  const connect = adapter.connect.bind(adapter)
  adapter.connect = (...args) => {
    connect(...args)
    resolve()
  }
})
const repo = new Repo({
  network: [adapter],
  storage: new NodeFSStorageAdapter(dataDir),
  peerId: `storage-server-${os.hostname()}`,
  sharePolicy: async () => false,
})

const server = http.createServer((_req, res) => {
  res.writeHead(200, { "content-type": "text/plain" })
  res.end("automerge-repo reference sync server\n")
})
server.on("upgrade", (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, ws => wss.emit("connection", ws, req))
})

await wired
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening on ${server.address().port}\n`)
})

let stopping = false
async function shutdown(signal) {
  if (stopping) return
  stopping = true
  log(`${signal}: shutting down`)
  const hardStop = setTimeout(() => process.exit(1), 10000)
  hardStop.unref()
  try {
    const ready = Object.values(repo.handles).filter(h => h.isReady())
    await repo.flush(ready.map(h => h.documentId))
    await repo.shutdown()
  } catch (e) {
    log(`shutdown: ${e?.message ?? e}`)
  }
  for (const client of wss.clients) client.terminate()
  wss.close()
  server.close(() => process.exit(0))
  server.closeAllConnections?.()
}
process.on("SIGTERM", () => shutdown("SIGTERM"))
process.on("SIGINT", () => shutdown("SIGINT"))
