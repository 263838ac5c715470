import type { FieldError } from '../model/normalize.js';

/** Every refusal of the hub: the HTTP layer maps it to problem+json, the realtime layer to a frame. */
export class SpaceError extends Error {
  constructor(
    readonly status: 400 | 403 | 404 | 409 | 503,
    readonly code: string,
    message: string,
    readonly errors?: FieldError[],
    readonly meta?: Record<string, unknown>,
  ) {
    super(message);
  }
}
