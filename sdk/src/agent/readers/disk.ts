/**
 * Disk usage per mounted filesystem, via statfs(2) on each mount point listed in /proc/self/mounts.
 *
 * Topics are `disk/<mount>/{total,used,free,usage}` where `<mount>` is `root` for `/` and the mount
 * point with `/` turned into `_` otherwise (`/boot/firmware` → `boot_firmware`). Used and usage
 * follow df: used = total − free, usage = used / (used + available to unprivileged users).
 * Pseudo filesystems (proc, sysfs, tmpfs, cgroup, overlay layers of snaps...) and second mounts of
 * the same device (bind mounts) are skipped. statfs is injectable so fixture trees can give sizes.
 */
import { statfsSync } from 'node:fs';
import type { Reader, ReaderOptions, Sample } from '../types.js';
import { readText, round, topicLevel, under } from './fs.js';

export interface FsStats {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
}

export interface DiskReaderOptions extends ReaderOptions {
  statfs?: (path: string) => FsStats;
}

/** Filesystems that hold no user data or are not disks. */
const PSEUDO = new Set([
  'proc', 'sysfs', 'devtmpfs', 'devpts', 'tmpfs', 'ramfs', 'cgroup', 'cgroup2', 'securityfs', 'pstore', 'debugfs',
  'tracefs', 'configfs', 'fusectl', 'mqueue', 'hugetlbfs', 'bpf', 'autofs', 'binfmt_misc', 'rpc_pipefs', 'nsfs',
  'efivarfs', 'selinuxfs', 'squashfs', 'overlay', 'fuse.gvfsd-fuse', 'fuse.portal', 'nfsd', 'sunrpc', 'tmpfs',
]);

/** /proc/mounts escapes space, tab, newline and backslash as octal (`\040`). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function mountName(mountPoint: string): string {
  return mountPoint === '/' ? 'root' : topicLevel(mountPoint.replace(/^\/+/, '').replace(/\//g, '_'));
}

/** @example diskReader().read(0) // [{ path: 'disk/root/usage', value: 41.3, unit: '%' }, ...] */
export function diskReader(options: DiskReaderOptions = {}): Reader {
  const root = options.root ?? '/';
  const statfs = options.statfs ?? ((p: string) => statfsSync(p));
  return {
    name: 'disk',
    read(): Sample[] {
      const text = readText(root, 'proc/self/mounts') ?? readText(root, 'proc/mounts');
      if (text === undefined) return [];
      const out: Sample[] = [];
      const devices = new Set<string>();
      const names = new Set<string>();
      for (const line of text.split('\n')) {
        const [device, rawMount, type] = line.split(' ');
        if (!device || !rawMount || !type || PSEUDO.has(type)) continue;
        if (device.startsWith('/') && devices.has(device)) continue;
        const mount = unescapeMount(rawMount);
        let st: FsStats;
        try {
          st = statfs(under(root, mount));
        } catch {
          continue; // unmounted meanwhile, or not ours to see
        }
        if (st.blocks <= 0) continue;
        const name = mountName(mount);
        if (names.has(name)) continue;
        names.add(name);
        devices.add(device);
        const total = st.blocks * st.bsize;
        const free = st.bfree * st.bsize;
        const used = total - free;
        const avail = st.bavail * st.bsize;
        const base = `disk/${name}`;
        out.push(
          { path: `${base}/total`, value: total, unit: 'B' },
          { path: `${base}/used`, value: used, unit: 'B' },
          { path: `${base}/free`, value: avail, unit: 'B' },
          { path: `${base}/usage`, value: used + avail > 0 ? round((100 * used) / (used + avail), 1) : 0, unit: '%' },
        );
      }
      return out;
    },
  };
}
