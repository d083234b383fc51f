/**
 * Attack: a local account other than the agent's connects to agentboxd's loopback
 * proxy to ride the agent's egress. Defence: the owner of the connecting socket, read
 * from /proc/net/tcp and tcp6 by both ends' addresses, must be the agent's uid. Here
 * the parsing against fixed tables: the right row, and no row for a near miss.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tcpOwnerUid } from '../../src/host/sockets.js';

const HEAD = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
// 127.0.0.1:45678 → 127.0.0.1:3128 owned by 64000; the proxy's own end owned by root; another client of uid 1000.
const TCP = HEAD + [
  '   0: 0100007F:0C38 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0',
  '   1: 0100007F:B26E 0100007F:0C38 01 00000000:00000000 00:00000000 00000000 64000        0 1002 1 0000000000000000 20 4 30 10 -1',
  '   2: 0100007F:0C38 0100007F:B26E 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1',
  '   3: 0100007F:B26F 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 1004 1 0000000000000000 20 4 30 10 -1',
].join('\n') + '\n';
// ::1 port 50000 → ::1 port 3128, uid 64001; and a v4-mapped peer.
const TCP6 = HEAD + [
  '   0: 00000000000000000000000001000000:C350 00000000000000000000000001000000:0C38 01 00000000:00000000 00:00000000 00000000 64001        0 2001 1 0000000000000000 20 4 30 10 -1',
  '   1: 0000000000000000FFFF00000100007F:C351 0000000000000000FFFF00000100007F:0C38 01 00000000:00000000 00:00000000 00000000 64002        0 2002 1 0000000000000000 20 4 30 10 -1',
].join('\n') + '\n';

const dir = mkdtempSync(join(tmpdir(), 'agentbox-procnet-'));
writeFileSync(join(dir, 'tcp'), TCP);
writeFileSync(join(dir, 'tcp6'), TCP6);
const proxy = { address: '127.0.0.1', port: 3128 };

describe('tcpOwnerUid (/proc/net/tcp owner column)', () => {
  it('names the uid owning the client end of an accepted connection', () => {
    expect(tcpOwnerUid(proxy, { address: '127.0.0.1', port: 45678 }, dir)).toBe(64000);
    expect(tcpOwnerUid(proxy, { address: '127.0.0.1', port: 45679 }, dir)).toBe(1000);
  });
  it('reads IPv6 and v4-mapped rows of tcp6', () => {
    expect(tcpOwnerUid({ address: '::1', port: 3128 }, { address: '::1', port: 50000 }, dir)).toBe(64001);
    expect(tcpOwnerUid({ address: '::ffff:127.0.0.1', port: 3128 }, { address: '::ffff:127.0.0.1', port: 50001 }, dir)).toBe(64002);
  });
  it('never takes the server end, another port or another address for the client', () => {
    // With the ends swapped the answer is the proxy's own socket (root's), not the client's.
    expect(tcpOwnerUid({ address: '127.0.0.1', port: 45678 }, proxy, dir)).toBe(0);
    expect(tcpOwnerUid(proxy, { address: '127.0.0.1', port: 45680 }, dir)).toBeUndefined();
    expect(tcpOwnerUid(proxy, { address: '127.0.0.2', port: 45678 }, dir)).toBeUndefined();
    expect(tcpOwnerUid({ address: '127.0.0.1', port: 3129 }, { address: '127.0.0.1', port: 45678 }, dir)).toBeUndefined();
  });
});
