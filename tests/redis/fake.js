// A server that misbehaves, for tests/redis.sh: to a command naming garbage
// it answers with a byte RESP has no type for; to any other it sends the
// start of a bulk reply and closes the connection.  node tests/redis/fake.js
// PORT_FILE: listens on a free port of 127.0.0.1 and writes it to PORT_FILE.
'use strict';
const net = require('net');
const fs = require('fs');
const server = net.createServer((s) => {
  let buf = '';
  s.on('data', (d) => {
    buf += d.toString('latin1');
    if (!buf.endsWith('\r\n'))
      return;
    if (/garbage/.test(buf))
      s.end('!what\r\n');
    else
      s.end('$100\r\nthe first bytes of a reply');
    buf = '';
  });
  s.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => fs.writeFileSync(process.argv[2], `${server.address().port}\n`));
