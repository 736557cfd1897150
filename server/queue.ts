/**
 * One model, one generation at a time: requests wait their turn in arrival order. A request
 * whose client has gone while it waited is dropped without touching the model.
 */
export class ModelQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #waiting = 0;

  /** Requests queued or running. */
  get length(): number {
    return this.#waiting;
  }

  run<T>(job: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    this.#waiting++;
    const turn = this.#tail.then(() => {
      signal?.throwIfAborted();
      return job();
    });
    // The next job waits for this one to settle, whether it succeeded or not.
    this.#tail = turn.catch(() => {}).finally(() => this.#waiting--);
    return turn;
  }
}
