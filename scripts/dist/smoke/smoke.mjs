// ES module consumer: named imports from the CommonJS package (Node's cjs-module-lexer must see
// them in index.js).
import { SharedMutex, UnsupportedError } from 'robust-mutex'
import scenario from './scenario.cjs'

await scenario.run(SharedMutex, UnsupportedError, 'esm')
