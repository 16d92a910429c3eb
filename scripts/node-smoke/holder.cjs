// Child of smoke.cjs, run by the same node: locks the mutex at argv[3] with the
// package at argv[2], says so on stdout, then waits to be terminated while holding it.
const { SharedMutex } = require(process.argv[2])

const mutex = SharedMutex.open(process.argv[3])
const guard = mutex.lockSync()
if (guard.ownerDied) throw new Error('holder: the fresh mutex reported ownerDied')
process.stdout.write('locked\n')
if (process.argv[4] === 'exit') process.exit(0) // exits holding the lock, no release
setInterval(() => {}, 1 << 30)
