// A real automerge-repo client sets one widget value, prints "changed",
// and keeps syncing until its standard input closes.
//
// Usage: node set-value.mjs WS_URL AUTOMERGE_URL KEY NUMBER
// (sets doc.w[KEY] = NUMBER)

import { Repo } from "@automerge/automerge-repo"
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const [wsUrl, docUrl, key, value] = process.argv.slice(2)
if (!wsUrl || !docUrl || !key || value === undefined || Number.isNaN(Number(value))) {
  process.stderr.write("usage: node set-value.mjs WS_URL AUTOMERGE_URL KEY NUMBER\n")
  process.exit(2)
}
const deadline = setTimeout(() => {
  process.stderr.write("set-value: timed out\n")
  process.exit(3)
}, 60_000)
const repo = new Repo({ network: [new BrowserWebSocketClientAdapter(wsUrl)] })
const handle = await repo.find(docUrl)
handle.change(d => {
  d.w[key] = Number(value)
})
process.stdout.write("changed\n")
process.stdin.resume()
process.stdin.on("end", async () => {
  clearTimeout(deadline)
  await repo.shutdown()
  process.exit(0)
})
