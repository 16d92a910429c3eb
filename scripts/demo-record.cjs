// The demo's shared record: total (u32), intent (i32, -1 = none), then done[w] (u32 each).
'use strict'
const fs = require('node:fs')

function u32(fd, offset, value) {
  const b = Buffer.alloc(4)
  b.writeInt32LE(value)
  fs.writeSync(fd, b, 0, 4, offset)
}

module.exports = {
  create(path, workers) {
    const b = Buffer.alloc(8 + 4 * workers)
    b.writeInt32LE(-1, 4)
    fs.writeFileSync(path, b)
  },
  read(fd, workers) {
    const b = Buffer.alloc(8 + 4 * workers)
    fs.readSync(fd, b, 0, b.length, 0)
    const done = []
    for (let w = 0; w < workers; w++) done.push(b.readUInt32LE(8 + 4 * w))
    return { total: b.readUInt32LE(0), intent: b.readInt32LE(4), done }
  },
  writeTotal: (fd, value) => u32(fd, 0, value),
  writeIntent: (fd, worker) => u32(fd, 4, worker),
  writeDone: (fd, worker, value) => u32(fd, 8 + 4 * worker, value),
}
