/**
 * Drives the login and consent pages over plain HTTP, the way a browser would: follows redirects
 * on the authorization server, keeps cookies, reads the forms' hidden fields and posts them. Stops
 * at the first redirect that leaves the authorization server (the client's redirect URI).
 * Chromium drives the same pages in the browser tests; this driver runs everywhere.
 */
export class FormBrowser {
  private cookies = new Map<string, string>();
  /** The pages seen, for assertions. */
  readonly pages: { url: string; status: number; html: string }[] = [];

  /** `headers` go with every request (e.g. X-Forwarded-For, for tests of trusted proxies). */
  constructor(
    private readonly origin: string,
    private readonly headers: Record<string, string> = {},
  ) {}

  private cookieHeader() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  private remember(res: Response) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const [name, ...value] = pair!.split('=');
      const expired = attrs.some((a) => /max-age=0/i.test(a.trim()));
      if (expired) this.cookies.delete(name!.trim());
      else this.cookies.set(name!.trim(), value.join('='));
    }
  }

  /** Requests a URL and follows same-origin redirects; returns the page or the external redirect. */
  async open(url: string, init: { method?: string; form?: Record<string, string | string[]> } = {}): Promise<{ url: string; status: number; html: string; external?: string }> {
    let current = new URL(url, this.origin).href;
    let method = init.method ?? 'GET';
    let body: URLSearchParams | undefined = init.form ? new URLSearchParams(Object.entries(init.form).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((one) => [k, one]))) : undefined;
    for (let hops = 0; hops < 10; hops++) {
      const res = await fetch(current, {
        method,
        redirect: 'manual',
        headers: { ...this.headers, cookie: this.cookieHeader(), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}), accept: 'text/html' },
        body,
      });
      this.remember(res);
      const location = res.headers.get('location');
      if (location && res.status >= 300 && res.status < 400) {
        const next = new URL(location, current);
        if (next.origin !== new URL(this.origin).origin) return { url: current, status: res.status, html: '', external: next.href };
        current = next.href;
        method = 'GET';
        body = undefined;
        continue;
      }
      const page = { url: current, status: res.status, html: await res.text() };
      this.pages.push(page);
      return page;
    }
    throw new Error('too many redirects');
  }

  /** Submits the page's form with its hidden fields plus the given values (a list: a field sent once per value, as checkboxes are). */
  async submit(page: { url: string; html: string }, values: Record<string, string | string[]>) {
    const action = /<form[^>]*action="([^"]+)"/.exec(page.html)?.[1];
    if (!action) throw new Error(`no form on ${page.url}`);
    const hidden = Object.fromEntries([...page.html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    return this.open(new URL(action.replace(/&amp;/g, '&'), page.url).href, { method: 'POST', form: { ...hidden, ...values } });
  }

  /**
   * Full sign-in: open the authorization URL, log in as demo/demo, accept any agreement, allow
   * (ticking every "Also allow this" box of a high-risk scope with `tickHighRisk`, as a person
   * who means to grant them does); returns the client redirect URL.
   */
  async authorize(
    authorizationUrl: string,
    options: { username?: string; password?: string; decision?: 'allow' | 'deny'; agreement?: 'accept' | 'decline'; tickHighRisk?: boolean } = {},
  ): Promise<URL> {
    const page = await this.walk(await this.open(authorizationUrl), options);
    if (!page.external) throw new Error(`sign-in did not return to the client; last page ${page.url} (${page.status}): ${page.html.slice(0, 400)}`);
    return new URL(page.external);
  }

  /** The device grant's verification (RFC 8628 §3.3): enter the user code, sign in, agree, decide; returns the last page. */
  async approveDevice(userCode: string, options: { username?: string; password?: string; decision?: 'allow' | 'deny' } = {}) {
    return this.walk(await this.open('/device', { method: 'POST', form: { user_code: userCode } }), options);
  }

  private async walk(
    start: { url: string; status: number; html: string; external?: string },
    options: { username?: string; password?: string; decision?: 'allow' | 'deny'; agreement?: 'accept' | 'decline'; tickHighRisk?: boolean },
  ) {
    let page = start;
    for (let step = 0; step < 6 && !page.external; step++) {
      if (page.html.includes('name="password"')) {
        page = await this.submit(page, { username: options.username ?? 'demo', password: options.password ?? 'demo' });
      } else if (/action="[^"]*\/agreement"/.test(page.html)) {
        page = await this.submit(page, { decision: options.agreement ?? 'accept' });
      } else if (page.html.includes('name="decision"')) {
        const ticks = options.tickHighRisk ? [...page.html.matchAll(/<input type="checkbox" name="high_risk" value="([^"]+)"/g)].map((m) => m[1]!) : [];
        page = await this.submit(page, { decision: options.decision ?? 'allow', ...(ticks.length > 0 ? { high_risk: ticks } : {}) });
      } else {
        break;
      }
    }
    return page;
  }
}
