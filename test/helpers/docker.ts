/**
 * The Docker Engine the container-runtime tests use: Debian's dockerd, started by the
 * tests' own setup with a private socket, data root and exec root, gVisor's runsc
 * registered (it needs --network=none here, --oci-seccomp so the box's seccomp profile
 * applies inside the sandbox, and --host-uds=open so the agent reaches its proxy
 * socket), and stopped by its PID afterwards. DOCKER_HOST set by the caller wins.
 */
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const TEST_DOCKER_DIR = '/tmp/agentbox-test-docker';
export const TEST_DOCKER_HOST = `unix://${TEST_DOCKER_DIR}/docker.sock`;

export const DAEMON_JSON = {
  runtimes: { runsc: { path: '/usr/bin/runsc', runtimeArgs: ['--network=none', '--oci-seccomp', '--host-uds=open'] } },
  'storage-driver': 'overlay2',
  iptables: false,
  'ip-forward': false,
  bridge: 'none',
};

async function answers(host: string): Promise<boolean> {
  const r = await execa('docker', ['--host', host, 'version', '--format', '{{.Server.Version}}'], { reject: false, timeout: 5000 });
  return r.exitCode === 0;
}

/** Starts dockerd (unless DOCKER_HOST already answers); returns the host and how to stop what was started. */
export async function startDockerd(): Promise<{ host: string; stop: () => Promise<void> }> {
  if (process.env.DOCKER_HOST && (await answers(process.env.DOCKER_HOST))) return { host: process.env.DOCKER_HOST, stop: async () => undefined };
  mkdirSync(TEST_DOCKER_DIR, { recursive: true });
  writeFileSync(join(TEST_DOCKER_DIR, 'daemon.json'), JSON.stringify(DAEMON_JSON, null, 2));
  if (await answers(TEST_DOCKER_HOST)) return { host: TEST_DOCKER_HOST, stop: async () => undefined };
  const log = openSync(join(TEST_DOCKER_DIR, 'dockerd.log'), 'a');
  const child: ChildProcess = spawn(
    'dockerd',
    ['--config-file', join(TEST_DOCKER_DIR, 'daemon.json'), '-H', TEST_DOCKER_HOST, '--data-root', '/var/lib/agentbox-test-docker', '--exec-root', join(TEST_DOCKER_DIR, 'exec'), '--pidfile', join(TEST_DOCKER_DIR, 'docker.pid')],
    { stdio: ['ignore', log, log], detached: true },
  );
  child.unref();
  for (let i = 0; i < 150 && !(await answers(TEST_DOCKER_HOST)); i++) await new Promise((r) => setTimeout(r, 200));
  if (!(await answers(TEST_DOCKER_HOST))) throw new Error(`dockerd did not start; see ${join(TEST_DOCKER_DIR, 'dockerd.log')}`);
  return {
    host: TEST_DOCKER_HOST,
    stop: async () => {
      // Only the dockerd this setup started, by its PID.
      if (child.pid && existsSync(`/proc/${child.pid}`)) {
        process.kill(child.pid, 'SIGTERM');
        for (let i = 0; i < 100 && existsSync(`/proc/${child.pid}`); i++) await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}
