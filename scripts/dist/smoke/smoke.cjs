// CommonJS consumer: require('robust-mutex').
const { SharedMutex, UnsupportedError } = require('robust-mutex')
const { run } = require('./scenario.cjs')

run(SharedMutex, UnsupportedError, 'cjs').catch((error) => {
  console.error(error)
  process.exit(1)
})
