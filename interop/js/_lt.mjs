let last = Date.now()
setInterval(() => { const now = Date.now(); if (now - last > 700) process.stderr.write(`[loop blocked ${now - last} ms at +${now - start} ms]\n`); last = now }, 100).unref()
const start = Date.now()
globalThis.__mark = (what) => process.stderr.write(`[mark ${what} at +${Date.now() - start} ms]\n`)
