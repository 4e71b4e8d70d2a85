import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';

/**
 * Every word the interaction pages say, in one place. A translation is one more object of this
 * type. Sentences that embed a name take it as a parameter, so word order stays the
 * translation's choice; names are escaped by `html` (a plain string) or arrive already rendered.
 */
export type Markup = HtmlEscapedString | Promise<HtmlEscapedString> | string;

export interface Strings {
  lang: string;
  help: string;
  badge: { verified: string; unverified: string; agent: string; highRisk: string };
  login: {
    title: string;
    continueTo: (client: Markup) => Markup;
    username: string;
    password: string;
    submit: string;
    wrongPassword: string;
    throttled: string;
  };
  remember: {
    keepSignedIn: string;
    hint: string;
    signInAgain: string;
    heading: string;
    intro: string;
    none: string;
    thisBrowser: string;
    lastUsed: (day: Markup) => Markup;
    until: (day: Markup) => Markup;
    forget: string;
    forgotten: string;
  };
  consent: {
    title: string;
    heading: (client: Markup) => Markup;
    signedInAs: (username: Markup) => Markup;
    verifiedConfig: string;
    verifiedDocument: (host: Markup) => Markup;
    unverified: string;
    actor: string;
    actsAt: string;
    audience: string;
    permissions: string;
    noPermissions: string;
    passesOn: (delegate: Markup) => Markup;
    highRiskTick: string;
    highRiskNote: string;
    summary: (v: { actor: Markup; places: Markup; count: number; highRisk: number }) => Markup;
    summaryIdentityOnly: (actor: Markup) => Markup;
    allow: string;
    deny: string;
    /** Built-in descriptions of the OpenID Connect scopes; a resource's own description wins. */
    scopes: Record<string, string>;
  };
  agreement: { version: (version: number) => string; requestedBy: (client: Markup) => Markup; accept: string; decline: string };
  /** The approval page of a high-risk action (docs/high-risk-actions.md) and the list of pending ones. */
  approval: {
    title: string;
    heading: string;
    signInIntro: string;
    /** Who asks, and for whom: the most recent actor first, then those it acts for, then the user. */
    asks: (parties: Markup[]) => Markup;
    tool: string;
    where: string;
    timeLeft: string;
    duration: (seconds: number) => string;
    details: string;
    password: string;
    passwordHint: string;
    code: string;
    codeHint: string;
    approve: string;
    deny: string;
    wrongPassword: string;
    wrongCode: string;
    throttled: string;
    approvedTitle: string;
    approvedText: string;
    deniedTitle: string;
    deniedText: string;
    usedTitle: string;
    usedText: string;
    expiredTitle: string;
    expiredText: string;
    notFoundTitle: string;
    notFoundText: string;
    otherAccountTitle: string;
    otherAccountText: (username: Markup) => Markup;
    listTitle: string;
    listEmpty: string;
    listIntro: string;
    pendingLink: string;
    noDecision: string;
  };
  device: {
    title: string;
    intro: string;
    code: string;
    submit: string;
    invalid: string;
    throttled: string;
    connected: string;
    connectedText: string;
    notConnected: string;
    notConnectedText: string;
  };
  account: {
    title: string;
    signedInAs: (username: Markup) => Markup;
    totpHeading: string;
    totpIntro: string;
    status: string;
    statusNone: string;
    statusPending: string;
    statusEnrolled: (since: Markup) => Markup;
    setUp: string;
    setUpPassword: string;
    setupSteps: string;
    key: string;
    qr: string;
    link: string;
    linkText: string;
    code: string;
    confirm: string;
    cancel: string;
    enrolled: string;
    keyOnce: string;
    codeAgain: string;
    unfinished: string;
    startAgain: string;
    removeIntro: string;
    currentCode: string;
    lostPhone: string;
    remove: string;
    removed: string;
    wrongCode: string;
    wrongPassword: string;
    throttled: string;
    changed: string;
    setupExpired: string;
    otherSession: string;
    unreadable: string;
  };
  /** /logout (OpenID Connect RP-Initiated Logout 1.0) and the account page's sign-out. */
  logout: {
    title: string;
    heading: (product: Markup) => Markup;
    signedInAs: (username: Markup) => Markup;
    requestedBy: (client: Markup) => Markup;
    intro: string;
    signOut: string;
    stay: string;
    doneTitle: string;
    doneHeading: (product: Markup) => Markup;
    doneText: string;
    stayedTitle: string;
    stayedText: string;
    accountHeading: string;
    accountIntro: string;
  };
  error: {
    title: string;
    heading: string;
    code: string;
    retry: string;
    expired: string;
    csrf: string;
  };
}

/** Joins names as a list a reader would write: "A", "A and B", "A, B and C". */
export const joinList = (items: Markup[]) =>
  items.length <= 1 ? html`${items[0] ?? ''}` : html`${items.slice(0, -1).map((item, i) => (i === 0 ? html`${item}` : html`, ${item}`))} and ${items.at(-1)}`;

export const english: Strings = {
  lang: 'en',
  help: 'Help',
  badge: { verified: 'Verified', unverified: 'Unverified', agent: 'AI agent', highRisk: 'High risk' },
  login: {
    title: 'Sign in',
    continueTo: (client) => html`to continue to ${client}`,
    username: 'Username',
    password: 'Password',
    submit: 'Sign in',
    wrongPassword: 'Wrong username or password.',
    throttled: 'Too many sign-in attempts. Wait a few minutes and try again.',
  },
  remember: {
    keepSignedIn: 'Keep me signed in',
    hint: 'Only on a device you do not share. You may still be asked for your password when something looks unusual.',
    signInAgain: 'Please sign in again.',
    heading: 'Browsers that keep you signed in',
    intro: 'These browsers sign you in without your password while nothing looks unusual. Forget one you no longer use or do not recognise.',
    none: 'None.',
    thisBrowser: 'This browser',
    lastUsed: (day) => html`last used ${day}`,
    until: (day) => html`until ${day}`,
    forget: 'Forget',
    forgotten: 'The browser was forgotten: it will ask for your password.',
  },
  consent: {
    title: 'Allow access',
    heading: (client) => html`Allow ${client} to act for you?`,
    signedInAs: (username) => html`Signed in as ${username}`,
    verifiedConfig: 'Registered by the administrators of this service.',
    verifiedDocument: (host) => html`Described by ${host}, a host this service trusts.`,
    unverified: 'This application registered itself: nobody has checked who runs it. The name in quotes is the one it chose.',
    actor: 'Who will act',
    actsAt: 'Where',
    audience: 'Token for',
    permissions: 'Permissions',
    noPermissions: 'No specific permissions: it can only confirm who you are.',
    passesOn: (delegate) => html`${delegate} may use these permissions for you and pass them on, narrowed, to the services it calls.`,
    highRiskTick: 'Also allow this',
    highRiskNote: 'High-risk permissions are left out unless you tick them.',
    summary: ({ actor, places, count, highRisk }) =>
      count === 0
        ? html`Nothing is granted unless you tick a permission below; ${actor} would then act for you at ${places} with it.`
        : html`If you allow, ${actor} can act for you at ${places} with ${count === 1 ? 'this permission' : `these ${count} permissions`}${highRisk > 0 ? html`, <strong>including ${highRisk === 1 ? 'one' : highRisk} that ${highRisk === 1 ? 'is' : 'are'} high risk</strong>` : ''}.`,
    summaryIdentityOnly: (actor) => html`If you allow, ${actor} learns who you are and nothing more.`,
    allow: 'Allow',
    deny: 'Deny',
    scopes: {
      openid: 'Confirm who you are',
      profile: 'See your name and profile',
      email: 'See your email address',
      offline_access: 'Stay connected when you are away (until you revoke it)',
    },
  },
  agreement: {
    version: (version) => `Version ${version}`,
    requestedBy: (client) => html`Requested by ${client}`,
    accept: 'Accept',
    decline: 'Decline',
  },
  approval: {
    title: 'Approve an action',
    heading: 'Approve this action?',
    signInIntro: 'Sign in to review an action that waits for your approval.',
    asks: (parties) => html`${parties[0] ?? ''} asks${parties.slice(1).map((p) => html`, for ${p}`)}, acting for you.`,
    tool: 'Tool',
    where: 'Where',
    timeLeft: 'Time left',
    duration: (seconds) => (seconds >= 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds} s`),
    details: 'Exactly this',
    password: 'Your password',
    passwordHint: 'Enter your password again to approve. Deny needs nothing.',
    code: 'One-time code',
    codeHint: 'Enter the 6-digit code from your authenticator app to approve. Deny needs nothing.',
    approve: 'Approve',
    deny: 'Deny',
    wrongPassword: 'Wrong password. Nothing was approved.',
    wrongCode: 'Wrong code. Nothing was approved.',
    throttled: 'Too many attempts. Wait a few minutes and try again.',
    approvedTitle: 'Approved',
    approvedText: 'The agent can now make this call, once. You can close this page.',
    deniedTitle: 'Denied',
    deniedText: 'This action will not happen. You can close this page.',
    usedTitle: 'Already done',
    usedText: 'This approval has been used: the action went through once.',
    expiredTitle: 'Expired',
    expiredText: 'This request has expired. If you still want it, ask the agent to try again.',
    notFoundTitle: 'No such request',
    notFoundText: 'This approval request does not exist. Check the link.',
    otherAccountTitle: "Another account's request",
    otherAccountText: (username) => html`This request belongs to another account. You are signed in as ${username}.`,
    listTitle: 'Pending approvals',
    listEmpty: 'Nothing waits for your approval.',
    listIntro: 'Actions your agents asked you to approve. Each link opens the request.',
    pendingLink: 'Pending approvals',
    noDecision: 'The form said neither Approve nor Deny.',
  },
  device: {
    title: 'Connect a device',
    intro: 'Enter the code shown on the device or in the terminal.',
    code: 'Code',
    submit: 'Continue',
    invalid: 'This code is not valid, or has expired or been used. Check the device and try again.',
    throttled: 'Too many codes tried. Wait a few minutes, then try again.',
    connected: 'Device connected',
    connectedText: 'You can close this page and return to your device.',
    notConnected: 'Device not connected',
    notConnectedText: 'You denied the request. The device gets no access.',
  },
  account: {
    title: 'Account security',
    signedInAs: (username) => html`Signed in as ${username}`,
    totpHeading: 'Authenticator app',
    totpIntro: 'A one-time code from an app on your phone can confirm high-risk actions, such as a transfer an agent asks for, instead of your password.',
    status: 'Status',
    statusNone: 'Not set up',
    statusPending: 'Setup started, not confirmed',
    statusEnrolled: (since) => html`On since ${since}`,
    setUp: 'Set up',
    setUpPassword: 'Your password, to confirm it is you',
    setupSteps: 'Scan the QR code with your authenticator app, or type the key into it (or open the setup link on your phone), then enter the 6-digit code the app shows.',
    key: 'Key',
    qr: 'QR code of the setup link: scan it with your authenticator app',
    link: 'Setup link',
    linkText: 'Open in an authenticator app',
    code: 'Code from the app',
    confirm: 'Confirm',
    cancel: 'Cancel',
    enrolled: 'Your authenticator app is set up.',
    keyOnce: 'This key is shown only now. Confirm within 10 minutes, or start again.',
    codeAgain: 'Enter the 6-digit code your authenticator app shows for this setup.',
    unfinished: 'Setup not finished: start again. The key is shown only once, and a setup expires after 10 minutes.',
    startAgain: 'Start again',
    removeIntro: 'To remove the authenticator app, enter a current code from it.',
    currentCode: 'Current code from the app',
    lostPhone: 'Lost your phone? An administrator can reset your authenticator app; then set up a new one.',
    remove: 'Remove',
    removed: 'The authenticator app was removed.',
    wrongCode: 'That code is not right, or was already used. Wait for the next code and try again.',
    wrongPassword: 'Wrong password.',
    throttled: 'Too many attempts. Wait a few minutes and try again.',
    changed: 'The setup changed meanwhile, perhaps in another tab. Look at the page again.',
    setupExpired: 'This setup expired (after 10 minutes). Start again.',
    otherSession: 'This setup was started in another browser or session. Start again here.',
    unreadable: 'Your authenticator app cannot be checked right now. Ask an administrator to reset it.',
  },
  logout: {
    title: 'Sign out',
    heading: (product) => html`Sign out of ${product}?`,
    signedInAs: (username) => html`You are signed in as ${username}.`,
    requestedBy: (client) => html`${client} asks to sign you out.`,
    intro: 'Signing out ends your session here and tells the applications you signed in to through it.',
    signOut: 'Sign out',
    stay: 'Stay signed in',
    doneTitle: 'Signed out',
    doneHeading: (product) => html`You are signed out of ${product}`,
    doneText: 'You can close this window.',
    stayedTitle: 'Still signed in',
    stayedText: 'You are still signed in. You can close this window.',
    accountHeading: 'Session',
    accountIntro: 'Sign out of this browser and the applications you signed in to through it.',
  },
  error: {
    title: 'Request refused',
    heading: 'This request cannot continue',
    code: 'Error code',
    retry: 'Return to the application and try again.',
    expired: 'This sign-in request has expired or belongs to another browser.',
    csrf: 'The form was not sent by this page (CSRF check failed).',
  },
};
