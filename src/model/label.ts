/** A name people give (a space, a member's display name): printable text, so that every store can hold it. */
import { z } from 'zod';

// Control characters (C0, DEL, C1): Postgres cannot store U+0000 in text, and none belongs in a label.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export const label = (max: number) =>
  z.string().min(1).max(max).refine((s) => !CONTROL.test(s), { message: 'must not contain control characters' });
