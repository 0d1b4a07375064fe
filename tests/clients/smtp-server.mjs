// A real SMTP server (the `smtp-server` package, independent of Gatehouse) for tests. It listens
// on 127.0.0.1 on a free port (no auth) and prints one JSON line per event on stdout:
// {"type":"listening","port":N}, then {"type":"mail","from":..,"to":[..],"raw":"..","secure":bool}
// for every message it accepts (`secure`: the message came over TLS). It exits when stdin closes
// (the test process went away).
//   node smtp-server.mjs                                     plain SMTP, STARTTLS not offered
//   node smtp-server.mjs starttls <key.pem> <cert.pem>       plain, STARTTLS offered
//   node smtp-server.mjs implicit <key.pem> <cert.pem>       TLS from the first byte (smtps)
import { readFileSync } from 'node:fs';
import { SMTPServer } from 'smtp-server';

const [mode = 'plain', keyPath, certPath] = process.argv.slice(2);
const tls = mode === 'plain' ? {} : { key: readFileSync(keyPath), cert: readFileSync(certPath) };

const server = new SMTPServer({
  ...tls,
  secure: mode === 'implicit',
  authOptional: true,
  disabledCommands: mode === 'starttls' ? ['AUTH'] : ['STARTTLS', 'AUTH'],
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
        secure: Boolean(session.secure),
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
