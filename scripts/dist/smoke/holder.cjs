// Child of the smoke test: locks the mutex at argv[2], says so, then waits to be SIGKILLed
// while holding it (the parent's next lock must report ownerDied).
const { SharedMutex } = require('robust-mutex')

const mutex = SharedMutex.open(process.argv[2])
const guard = mutex.lockSync()
if (guard.ownerDied) throw new Error('holder: the fresh mutex reported ownerDied')
process.stdout.write('locked\n')
setInterval(() => {}, 1 << 30)
