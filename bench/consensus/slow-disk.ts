/**
 * A slow disk for one server: its process moved into a cgroup (v1 blkio) whose writes to the data
 * directory's disk are throttled to a number of I/O operations a second. At 50 here, fdatasync
 * takes 20-100 ms instead of 0.15 ms: what a leader sees when its disk stalls (another tenant,
 * a full write cache). Needs root and the blkio controller; `create()` says why not otherwise.
 * The cgroup is made by this process and removed by it; only processes it started are moved.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const BLKIO = '/sys/fs/cgroup/blkio';

export class SlowDisk {
  private readonly dir: string;
  private readonly device: string;

  private constructor(name: string, device: string) {
    this.dir = join(BLKIO, name);
    this.device = device;
  }

  /** A throttle for the disk holding `dataDir`, or why there can be none on this machine. */
  static create(name: string, dataDir: string): SlowDisk | string {
    if (process.getuid?.() !== 0) return 'needs root';
    if (!existsSync(join(BLKIO, 'blkio.throttle.write_iops_device'))) return `no cgroup v1 blkio throttle at ${BLKIO}`;
    const device = wholeDisk(statSync(dataDir).dev);
    if (device === undefined) return `no block device found for ${dataDir}`;
    const disk = new SlowDisk(name, device);
    mkdirSync(disk.dir, { recursive: true });
    return disk;
  }

  /** Moves `pid` into the throttled cgroup: its writes go at most `iops` a second. */
  throttle(pid: number, iops: number): void {
    writeFileSync(join(this.dir, 'blkio.throttle.write_iops_device'), `${this.device} ${iops}`);
    writeFileSync(join(this.dir, 'cgroup.procs'), String(pid));
  }

  /** Moves `pid` back to the root cgroup (a process that has exited is skipped). */
  release(pid: number): void {
    try {
      writeFileSync(join(BLKIO, 'cgroup.procs'), String(pid));
    } catch {
      /* exited */
    }
  }

  remove(): void {
    const left = readFileSync(join(this.dir, 'cgroup.procs'), 'utf8').trim().split('\n').filter(Boolean);
    for (const pid of left) this.release(Number(pid));
    rmdirSync(this.dir);
  }
}

/** "major:minor" of the whole disk a file system lives on (throttles apply to disks, not partitions). */
function wholeDisk(dev: number): string | undefined {
  const major = Math.floor(dev / 256) & 0xfff;
  const minor = (dev & 0xff) | ((Math.floor(dev / 4096) & 0xfff00));
  const sys = `/sys/dev/block/${major}:${minor}`;
  if (!existsSync(sys)) return undefined;
  if (!existsSync(join(sys, 'partition'))) return `${major}:${minor}`;
  const parent = join(sys, '..', 'dev');
  return existsSync(parent) ? readFileSync(parent, 'utf8').trim() : undefined;
}
