// A real SMTP server (the `smtp-server` package, independent of Gatehouse) for tests. It listens
// on 127.0.0.1 on a free port (plain SMTP, no TLS, no auth) and prints one JSON line per event on
// stdout: {"type":"listening","port":N}, then {"type":"mail","from":..,"to":[..],"raw":".."} for
// every message it accepts. It exits when stdin closes (the test process went away).
import { SMTPServer } from 'smtp-server';

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS', 'AUTH'],
  logger: false,
  size: 10 * 1024 * 1024,
  onData(stream, session, callback) {
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('end', () => {
      const line = {
        type: 'mail',
        from: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
        to: session.envelope.rcptTo.map((r) => r.address),
        raw: Buffer.concat(chunks).toString('utf8'),
      };
      process.stdout.write(JSON.stringify(line) + '\n');
      callback();
    });
  },
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ type: 'listening', port: server.server.address().port }) + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
