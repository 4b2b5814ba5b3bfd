import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { freePort } from '../../support/service-process';

const NATS_SERVER = '/usr/sbin/nats-server';

/**
 * A nats-server with JetStream owned by one scenario (never the machine's): its port and its
 * store folder stay the same across stop() and start(), as a restarted server's would.
 */
export class TestNatsServer {
  private process?: ChildProcess;
  readonly storeDir = mkdtempSync(join(tmpdir(), 'ledger-faults-nats-'));

  private constructor(readonly port: number) {}

  static async start(): Promise<TestNatsServer> {
    const server = new TestNatsServer(await freePort());
    await server.start();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(
      NATS_SERVER,
      ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir],
      { stdio: 'ignore' },
    );
    this.process = child;
    // A missing binary fails the scenario with its reason (it never skips).
    let failed: Error | undefined;
    child.once('error', (error) => (failed = error));
    for (let i = 0; i < 100; i++) {
      if (failed) throw new Error(`${NATS_SERVER} did not start: ${failed.message}`);
      if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}`);
      const probe = await connect({ servers: this.url, reconnect: false }).catch(() => undefined);
      if (probe) return probe.close();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`nats-server did not start on ${this.url}`);
  }

  async stop(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}
