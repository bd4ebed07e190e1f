// Streams a byte range of a disk file into an HTTP response through a small
// ring of reused buffers, each refilled only after the socket has taken its
// previous contents (the write callback). Why not fs.createReadStream: it
// allocates a fresh buffer for every chunk, and faulting in that new memory
// cost more than the copy itself: downloads ran at 0.58x of nginx (which
// uses sendfile). With a few reused buffers the same download runs at about
// nginx's speed on loopback (0.9x-1.1x here; npm run bench prints the ratio).
// Ring shapes from 8 x 256 KiB to 4 x 2 MiB measured alike within the noise;
// 4 x 1 MiB keeps the syscalls few and 4 MiB per transfer. The buffers come
// from a pool shared by all transfers (server/http/transfers.ts), and a
// client that takes no bytes for the idle time has its socket destroyed.
import type { ServerResponse } from "node:http";
import { open } from "node:fs/promises";
import { BufferPool, ringBufferBytes, ringLength } from "./transfers.js";

export interface SendOptions {
  /** Where the ring's buffers come from and go back to; default a pool of one ring. */
  pool?: BufferPool;
  /** End the response when the client has taken nothing for this long; default never. */
  idleMs?: number;
}

/** Writes bytes start..end (inclusive) of path; resolves with the bytes written. */
export async function sendFileRange(
  response: ServerResponse,
  path: string,
  start: number,
  end: number,
  options: SendOptions = {},
): Promise<number> {
  const file = await open(path, "r");
  const pool = options.pool ?? new BufferPool(ringBufferBytes, ringLength);
  const ring: Buffer[] = [];
  for (let index = 0; index < ringLength; index += 1) {
    const buffer = pool.take();
    if (buffer === undefined) break;
    ring.push(buffer);
  }
  const pending: (Promise<void> | undefined)[] = new Array<Promise<void> | undefined>(ring.length);
  let closed = false;
  const whenClosed = new Promise<void>((resolve) =>
    response.once("close", () => {
      closed = true;
      resolve();
    }),
  );
  const idle =
    options.idleMs === undefined ? undefined : setTimeout(() => response.destroy(), options.idleMs).unref();
  let position = start;
  let slot = 0;
  try {
    if (ring.length === 0)
      throw new Error("no transfer buffer is free: the pool is smaller than the transfers admitted");
    while (position <= end && !closed) {
      const inFlight = pending[slot];
      if (inFlight) await Promise.race([inFlight, whenClosed]);
      if (closed) break;
      const buffer = ring[slot] as Buffer;
      const want = Math.min(buffer.length, end - position + 1);
      const { bytesRead } = await file.read(buffer, 0, want, position);
      if (bytesRead === 0)
        throw new Error(
          `${path} ended at byte ${position}, before byte ${end}: it shrank while being served`,
        );
      position += bytesRead;
      const chunk = bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      pending[slot] = new Promise<void>((resolve, reject) =>
        response.write(chunk, (error) => {
          if (error) return reject(error);
          // The socket took the chunk: the client is reading.
          idle?.refresh();
          resolve();
        }),
      );
      // A failed write is seen when its slot comes round or at the end.
      pending[slot]?.catch(() => undefined);
      slot = (slot + 1) % ring.length;
    }
    if (!closed) {
      const writes = pending.filter((write): write is Promise<void> => write !== undefined);
      await Promise.race([Promise.all(writes), whenClosed]);
      response.end();
    }
    return position - start;
  } finally {
    clearTimeout(idle);
    await file.close();
    // A buffer goes back only once no write of it can still be in flight:
    // after the response ended or its socket closed.
    const settled = pending.filter((write): write is Promise<void> => write !== undefined);
    void Promise.race([Promise.allSettled(settled), whenClosed]).then(() => {
      for (const buffer of ring) pool.give(buffer);
    });
  }
}
