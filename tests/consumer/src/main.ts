// A web app that uses the whole public API of the websession page client, as a user of the npm
// package writes it: imported by its package name, bundled by Vite, type-checked with
// `tsc --strict`. The end-to-end suite (tests/tests/e2e/consumer.rs) loads the built app and
// reads the elements it fills.
import init, {
  Auth,
  Front,
  isWebSessionError,
  onSessionError,
  onWorkerMessage,
  selfCheck,
  sessionTokens,
  version,
} from 'websession';
import type {
  AuthOptions,
  Delivery,
  EventMessage,
  ExpiryReason,
  FrontOptions,
  LoginInfo,
  RequestOptions,
  SendOptions,
  SessionError,
  SessionTokens,
  SessionTokensOptions,
  StreamRole,
  StreamState,
  Unsubscribe,
  WebSessionError,
  WorkerMessage,
} from 'websession';

const show = (id: string, text: string): void => {
  const element = document.getElementById(id);
  if (element) element.textContent = text;
};

const describe = (error: unknown): string =>
  isWebSessionError(error)
    ? `${error.code}${error.status === undefined ? '' : ` (${error.status})`}` +
      `${error.stage === undefined ? '' : `, stage ${error.stage}`}: ${error.message}`
    : String(error);

const errors: string[] = [];
const reportError = (where: string, error: unknown): void => {
  errors.push(`${where}: ${describe(error)}`);
  show('errors', errors.join('; '));
};

/** The worker's messages and token errors, as a page listens to them. */
function listenToWorker(): Unsubscribe[] {
  const onMessage = onWorkerMessage((message: WorkerMessage) => {
    if (message.type === 'sw-activated') show('worker', `activated ${message.version}`);
  });
  const onError = onSessionError((error: SessionError) => {
    show('tokens', `${error.error} at ${error.stage}: ${error.message}`);
  });
  return [onMessage, onError];
}

/** The service worker of the package, served as /sw.js (see the package README). */
async function registerWorker(): Promise<void> {
  await navigator.serviceWorker.register('/sw.js', { type: 'module' });
  await navigator.serviceWorker.ready;
  if (!navigator.serviceWorker.controller) {
    await new Promise<void>((resolve) =>
      navigator.serviceWorker.addEventListener('controllerchange', () => resolve(), { once: true }),
    );
  }
  show('worker', 'controlling');
}

async function fetchTokens(): Promise<void> {
  show('tokens', 'asking the worker');
  try {
    // The first call asks the worker; later ones answer from the page's copy until the tokens
    // are within `marginMs` of their expiry (`fresh: true` asks the worker anyway).
    const options: SessionTokensOptions = { fresh: false, marginMs: 60_000 };
    const tokens: SessionTokens = await sessionTokens(options);
    const { eidJwt, venueJwt, eidExpiresAt, venueExpiresAt } = tokens;
    const sub = JSON.parse(atob(eidJwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')))
      .sub as string;
    show(
      'tokens',
      `tokens for ${sub}: eid until ${eidExpiresAt}, venue until ${venueExpiresAt}` +
        ` (${venueJwt.length} bytes)`,
    );
  } catch (error) {
    show('tokens', `failed: ${describe(error)}`);
  }
}

/** The reverse stream and direct events. */
async function connectFront(): Promise<Front> {
  const options: FrontOptions = {
    share: true,
    heartbeatMs: 15_000,
    backoff: { initialMs: 500, maxMs: 30_000 },
    requestTimeoutMs: 8_000,
  };
  const front = await Front.connect(options);
  front.onState((state: StreamState, previous: StreamState) => {
    show('stream', `${state} (was ${previous})`);
  });
  front.onError((error: WebSessionError) => reportError('front', error));
  front.on('server-note', (event: EventMessage) => show('echo', `note ${JSON.stringify(event.data)}`));
  front.onAny((event: EventMessage) => console.debug('event', event.name, event.meta.uuid));
  await front.ready();
  const role: StreamRole = front.role;
  const bid: number | undefined = front.frontBid;
  const last: string | undefined = front.lastEventId;
  show('stream', front.state);
  show(
    'front',
    `${front.frontUuid} bid ${bid ?? '-'} session ${front.sessionUuid} ${role} last ${last ?? '-'}`,
  );

  const send: SendOptions = { expiresIn: 60_000, encrypted: false };
  const delivery: Delivery = await front.send('broadcast', { text: 'hi, tabs' }, send);
  const request: RequestOptions = { timeout: 5_000, encrypted: true };
  const reply: EventMessage = await front.request('echo', { hello: 'back' }, request);
  show('echo', `${delivery}; reply ${JSON.stringify(reply.data)} to ${reply.meta.requestUuid}`);
  return front;
}

/** The one-time-token login (no token in this page's address: logged out). */
async function startAuth(): Promise<Auth> {
  const options: AuthOptions = {
    tokenParam: 'token',
    loginPath: '/login',
    refreshMarginMs: 60_000,
    autoRefresh: true,
    onExpired: (reason: ExpiryReason) => show('login', `ended: ${reason}`),
  };
  const auth = await Auth.start(options);
  auth.onChange((info: LoginInfo | undefined) => show('login', info ? `as ${info.userId}` : 'out'));
  const info: LoginInfo | undefined = auth.info;
  const permissions: string[] = auth.permissions;
  const token: string | undefined = auth.accessToken;
  const error: WebSessionError | undefined = auth.error;
  show(
    'login',
    auth.loggedIn
      ? `as ${info?.userId} (${permissions.join(', ')}; token ${token ? 'held' : 'none'})`
      : `logged out${error ? ` (${error.code})` : ''}`,
  );
  return auth;
}

/** The rest of the API, which a logged-in app calls later: typed here, run on user actions. */
export async function later(auth: Auth, front: Front): Promise<void> {
  const answer: Response = await auth.fetch('/api/dashboard', { method: 'GET' });
  const refreshed: boolean = await auth.refresh();
  await auth.logout();
  auth.close();
  front.close();
  const opened: Front = await Front.open({ sessionUuid: crypto.randomUUID() });
  opened.close();
  console.debug(answer.status, refreshed);
}

async function main(): Promise<void> {
  await init();
  show('worker', `registering (package ${version()}, crypto ${selfCheck('ok') ? 'works' : 'broken'})`);
  const unsubscribe = listenToWorker();
  window.addEventListener('pagehide', () => unsubscribe.forEach((off) => off()));
  document.getElementById('tokens-fetch')?.addEventListener('click', () => void fetchTokens());
  await registerWorker();
  await startAuth().catch((error: unknown) => reportError('auth', error));
  await connectFront().catch((error: unknown) => reportError('front', error));
}

main().catch((error: unknown) => reportError('start', error));
