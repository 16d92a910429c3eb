// The other Node.js locking libraries the bench compares with (installed into their own package,
// scripts/bench/peers, by scripts/bench/run.sh: the bench's only), each behind one small adapter. A peer whose native addon does not load here is reported
// as "skipped: <reason>" and the run goes on.
//
// Every adapter locks a whole file through a descriptor (`fd`) or a path; the lock kinds differ:
// fs-ext takes flock(2), os-lock fcntl(2) process-wide record locks, fs-native-extensions
// fcntl(2) open-file-description locks (on Linux), proper-lockfile a lock directory beside the
// file (mkdir, then mtime updates).
'use strict'
const { promisify } = require('node:util')
const { createRequire } = require('node:module')
const path = require('node:path')

/** Resolves a peer from the bench's own package, not the library's devDependencies. */
const requirePeer = createRequire(path.join(__dirname, 'peers', 'package.json'))

/** Why a peer could not be loaded, in one line. */
function reasonFor(name, err) {
  const first = String(err && err.message).split('\n')[0]
  if (/Cannot find module '.*build\/Release/.test(first) || /No native build was found/.test(first)) {
    return `${name} has no compiled addon here (it ships no prebuilt binary for this platform and ` +
      `npm did not run its node-gyp install script; \`npm rebuild ${name} --foreground-scripts\` builds it)`
  }
  if (/Cannot find module '[^/]*'/.test(first)) return `${name} is not installed (npm run bench installs it into scripts/bench/peers)`
  return `${name} does not load: ${first}`
}

function load(name, adapt) {
  try {
    return { name, ...adapt(requirePeer(name)) }
  } catch (err) {
    return { name, skipped: reasonFor(name, err) }
  }
}

/**
 * Each loaded peer may offer:
 *   tryLock(fd) -> boolean, unlock(fd)         (sync, non-blocking)
 *   lockSync(fd), unlock(fd)                   (sync, blocking)
 *   lockAsync(fd) -> Promise, unlockAsync(fd)  (async)
 *   byPath: lockPathSync / lockPathAsync returning a release function (proper-lockfile)
 */
function loadPeers() {
  const fsNative = load('fs-native-extensions', (lib) => ({
    tryLock: (fd) => lib.tryLock(fd),
    lockSync: (fd) => lib.waitForLockSync(fd),
    unlock: (fd) => lib.unlock(fd),
    lockAsync: (fd) => lib.waitForLock(fd),
    unlockAsync: (fd) => lib.unlock(fd),
    names: { tryLock: 'tryLock+unlock', lockSync: 'waitForLockSync+unlock', lockAsync: 'await waitForLock+unlock' },
  }))
  const fsExt = load('fs-ext', (lib) => {
    const flock = promisify(lib.flock)
    return {
      tryLock: (fd) => {
        try {
          lib.flockSync(fd, 'exnb')
          return true
        } catch (err) {
          if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') return false
          throw err
        }
      },
      lockSync: (fd) => lib.flockSync(fd, 'ex'),
      unlock: (fd) => lib.flockSync(fd, 'un'),
      lockAsync: (fd) => flock(fd, 'ex'),
      unlockAsync: (fd) => flock(fd, 'un'),
      names: { tryLock: "flockSync('exnb')+'un'", lockSync: "flockSync('ex')+'un'", lockAsync: "await flock('ex')+'un'" },
    }
  })
  const osLock = load('os-lock', (lib) => ({
    lockAsync: (fd) => lib.lock(fd, { exclusive: true }),
    unlockAsync: (fd) => lib.unlock(fd),
    names: { lockAsync: 'await lock+unlock' },
  }))
  const properLockfile = load('proper-lockfile', (lib) => ({
    // lockSync never waits (it fails when held): a try.
    lockPathSync: (file) => lib.lockSync(file, { realpath: false }),
    lockPathAsync: (file) => lib.lock(file, { realpath: false }),
    names: { tryLock: 'lockSync+release', lockAsync: 'await lock+release' },
  }))
  return [fsNative, fsExt, osLock, properLockfile]
}

module.exports = { loadPeers }
