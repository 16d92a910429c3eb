// Public TypeScript API of robust-mutex, compiled by tsc to index.js + index.d.ts.
// Placeholder until the real API (SharedMutex, LockGuard) lands: it only
// re-exports the native binding's version so the pipeline can be exercised.

export { bindingVersion } from './binding'
