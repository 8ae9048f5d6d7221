// An opsvc IPC worker written against Node.js's own API only: process.send() and
// process.on('message'). opsvc starts it with NODE_CHANNEL_FD and NODE_CHANNEL_SERIALIZATION_MODE.
'use strict';

const net = require('net');

if (typeof process.send !== 'function') {
  console.error('worker.js: no IPC channel (start it as an opsvc unit of type "ipc")');
  process.exit(2);
}

process.on('message', (m) => {
  if (m === null || typeof m !== 'object') return;
  switch (m.type) {
    case 'command':
      switch (m.name) {
        case 'echo':
          process.send({ type: 'reply', id: m.id, ok: true, data: m.args });
          break;
        case 'big': // an event over opsvc's 1 MiB limit, then an ordinary one
          process.send({ type: 'reply', id: m.id, ok: true });
          process.send({ type: 'event', name: 'big', data: 'x'.repeat(m.args.size) });
          process.send({ type: 'event', name: 'after-big' });
          break;
        case 'handle': // a message carrying a descriptor, which opsvc does not take
          {
            const server = net.createServer();
            server.listen(0, '127.0.0.1', () => {
              process.send({ type: 'event', name: 'with-handle', data: { port: server.address().port } }, server);
              process.send({ type: 'event', name: 'after-handle' }, () => server.close());
              process.send({ type: 'reply', id: m.id, ok: true });
            });
          }
          break;
        default:
          process.send({ type: 'reply', id: m.id, ok: false, error: 'unknown command ' + m.name });
      }
      break;
    case 'error': // opsvc says something we sent was wrong
      process.send({ type: 'event', name: 'daemon-error', data: m.error });
      break;
    case 'shutdown':
      process.send({ type: 'event', name: 'bye', data: { deadline_ms: m.deadline_ms } }, () => process.exit(0));
      break;
    default: // unknown types are ignored
  }
});

process.send({ type: 'ready' });
process.send({ type: 'heartbeat' });
process.send({ cmd: 'NODE_OPSVC_TEST' }); // shaped like Node.js's internal messages
process.send({ type: 'status', text: 'node ' + process.version });
process.send({ type: 'event', name: 'started', data: { pid: process.pid } });
