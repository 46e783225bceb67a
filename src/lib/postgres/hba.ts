// The write fence's wall (docs/safety.md, "The fence"): lines at the top of the old primary's
// pg_hba.conf that reject every connection of the application role. The rest of the file is
// never touched, so removing the block gives back the file byte for byte.
//
// Why pg_hba.conf: a read-only default (ALTER SYSTEM / ALTER ROLE ... SET
// default_transaction_read_only) is only a default, and any session may ask for read-write
// (BEGIN READ WRITE, SET SESSION CHARACTERISTICS, SET default_transaction_read_only = off). A
// rejected login cannot ask for anything. pg_hba.conf is a file of the node, not replicated, so
// the standbys keep serving the application's reads; it takes effect with a reload, no restart.
import { chownSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';

const BEGIN = '# regionshift fence: BEGIN';
const END = '# regionshift fence: END';

/** pg_hba.conf names are quoted so that any role name (mixed case, spaces) matches exactly. */
function hbaName(role: string): string {
  return `"${role.replace(/"/g, '""')}"`;
}

/** The block that rejects `role` on every database, address and transport. */
export function fenceBlock(role: string, note: string): string {
  const name = hbaName(role);
  return [
    `${BEGIN} (${note.replace(/\n/g, ' ')}; dbUnfenceWrites or a rejoin removes it)`,
    `local all ${name} reject`,
    `host all ${name} all reject`,
    END,
    '',
  ].join('\n');
}

export function hasFenceBlock(content: string): boolean {
  return content.includes(BEGIN);
}

/** The file without our block; unchanged when it has none. A damaged block (no END) is an error. */
export function withoutFenceBlock(content: string, file: string): string {
  const start = content.indexOf(BEGIN);
  if (start < 0) return content;
  const end = content.indexOf(END, start);
  if (end < 0) {
    throw new Error(
      `${file} has a "${BEGIN}" line without its "${END}" line; remove the regionshift fence lines by hand and reload PostgreSQL`,
    );
  }
  const after = content.indexOf('\n', end);
  return content.slice(0, start) + (after < 0 ? '' : content.slice(after + 1));
}

/** The file with our block first (first match wins in pg_hba.conf), replacing an older one. */
export function withFenceBlock(content: string, file: string, role: string, note: string): string {
  return fenceBlock(role, note) + withoutFenceBlock(content, file);
}

/**
 * Replaces the file atomically (a crash leaves the old or the new file, never half of one) with
 * the owner and mode it had: the server must still be able to read it.
 */
export function rewriteKeepingOwner(file: string, content: string): void {
  const st = statSync(file);
  const tmp = `${file}.regionshift-${process.pid}`;
  writeFileSync(tmp, content, { mode: st.mode & 0o7777 });
  if (process.getuid?.() === 0) chownSync(tmp, st.uid, st.gid);
  renameSync(tmp, file);
}

/** Adds or removes the block in a pg_hba.conf file; true when the file changed. */
export function setFenceBlock(file: string, fence: { role: string; note: string } | undefined): boolean {
  const before = readFileSync(file, 'utf8');
  if (fence && hasFenceBlock(before)) return false;
  const after = fence ? withFenceBlock(before, file, fence.role, fence.note) : withoutFenceBlock(before, file);
  if (after === before) return false;
  rewriteKeepingOwner(file, after);
  return true;
}
