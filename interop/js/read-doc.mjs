// Prints, as one JSON line (keys sorted), a document fetched from a sync
// server by a real automerge-repo client.
//
// Usage: node read-doc.mjs WS_URL AUTOMERGE_URL

import { Repo } from "@automerge/automerge-repo"
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { canonical } from "./lib/json.mjs"

const [wsUrl, docUrl] = process.argv.slice(2)
if (!wsUrl || !docUrl) {
  process.stderr.write("usage: node read-doc.mjs WS_URL AUTOMERGE_URL\n")
  process.exit(2)
}
const deadline = setTimeout(() => {
  process.stderr.write("read-doc: timed out\n")
  process.exit(3)
}, 30_000)
const repo = new Repo({ network: [new BrowserWebSocketClientAdapter(wsUrl)] })
const handle = await repo.find(docUrl)
process.stdout.write(JSON.stringify(canonical(handle.doc())) + "\n")
clearTimeout(deadline)
await repo.shutdown()
process.exit(0)
