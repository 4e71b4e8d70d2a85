/**
 * Binds MCP sessions (2025-11-25 `Mcp-Session-Id`) to the user who opened them. The upstream has
 * no auth of its own and trusts any request carrying a live session id, so without this a caller
 * who learns another user's session id could ride it with a token of their own (MCP security best
 * practices, "session hijacking"). Bounded; idle bindings are forgotten.
 */
export class SessionBindings {
  private readonly owners = new Map<string, { sub: string; seen: number }>();

  constructor(private readonly options: { maxEntries?: number; idleMs?: number } = {}) {}

  bind(sessionId: string, sub: string): void {
    if (this.owners.size >= (this.options.maxEntries ?? 100_000)) this.owners.delete(this.owners.keys().next().value as string);
    this.owners.delete(sessionId);
    this.owners.set(sessionId, { sub, seen: Date.now() });
  }

  /** false when the session belongs to someone else; true when it is theirs or unknown here. */
  check(sessionId: string, sub: string): boolean {
    const owner = this.owners.get(sessionId);
    if (!owner) return true;
    if (Date.now() - owner.seen > (this.options.idleMs ?? 24 * 3600_000)) {
      this.owners.delete(sessionId);
      return true;
    }
    owner.seen = Date.now();
    return owner.sub === sub;
  }

  end(sessionId: string): void {
    this.owners.delete(sessionId);
  }
}
