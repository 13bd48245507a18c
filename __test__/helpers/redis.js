'use strict'
// Tests start their own redis-server processes; the code is shared with the demo.
module.exports = require('../../scripts/redis-server')
