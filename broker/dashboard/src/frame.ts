/**
 * Render batching: message handlers only update models and mark work dirty;
 * the DOM is touched once per animation frame, whatever the message rate.
 * Invariant: a task scheduled several times before a frame runs once.
 */
export class FrameScheduler {
  private readonly tasks = new Set<() => void>();
  private pending = false;

  /** Runs `task` at the next animation frame (once, however often it is scheduled before then). */
  schedule(task: () => void): void {
    this.tasks.add(task);
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(this.flush);
  }

  private readonly flush = (): void => {
    this.pending = false;
    const tasks = [...this.tasks];
    this.tasks.clear();
    for (const task of tasks) task();
  };
}
