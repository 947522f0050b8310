// @ts-check
// The demo page: every flow of the package on one page, in plain JavaScript, type-checked
// against the package's declarations in `cargo xtask ci` (the consumer step).
import init, {
  Auth, Front, isWebSessionError, onWorkerMessage, sessionTokens, version,
} from '/pkg/websession.js';

/**
 * The element of the page with this id; a missing one is a bug of the page, so it throws.
 * @param {string} id
 * @returns {HTMLElement}
 */
function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}
/** @param {string} id */
const $input = (id) => /** @type {HTMLInputElement} */ ($(id));
const time = (date = new Date()) => date.toLocaleTimeString([], { hour12: false });
/** @param {unknown} value */
const pretty = (value) => JSON.stringify(value, null, 2);

/**
 * Text for an error of the package or anything else.
 * @param {unknown} error
 */
function describe(error) {
  if (isWebSessionError(error)) {
    const stage = error.stage ? `, stage ${error.stage}` : '';
    return `${error.code}${stage}: ${error.message}`;
  }
  return String(error);
}

/**
 * Replaces the children of `node` with an element built from `html`-free parts.
 * @param {HTMLElement} node
 * @param {...(Node | string)} children
 */
function show(node, ...children) {
  node.replaceChildren(...children);
}

/**
 * @param {string} tag
 * @param {Record<string, string>} attrs
 * @param {...(Node | string)} children
 */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

/**
 * @param {HTMLElement} list
 * @param {Node} item
 */
function prepend(list, item, max = 200) {
  list.querySelector('.empty')?.remove();
  list.prepend(item);
  while (list.children.length > max) list.lastChild?.remove();
}

/**
 * The claims of a JWT, decoded for display (the server verifies them, not the page).
 * @param {string} jwt
 * @returns {unknown}
 */
function claims(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return { unreadable: jwt.slice(0, 24) + '…' };
  }
}

await init();
$('pkg-version').textContent = version();

// ---- the service worker ----

/** @param {ServiceWorkerRegistration} registration */
function workerState(registration) {
  const worker = registration.installing ?? registration.waiting ?? registration.active;
  $('sw-state').textContent = worker ? worker.state : 'none';
  $('sw-controller').textContent = navigator.serviceWorker.controller ? 'yes' : 'not yet';
  worker?.addEventListener('statechange', () => workerState(registration), { once: true });
}

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js', { type: 'module' }).then((registration) => {
    workerState(registration);
    registration.addEventListener('updatefound', () => workerState(registration));
    navigator.serviceWorker.addEventListener('controllerchange', () => workerState(registration));
  }).catch((error) => {
    $('sw-state').textContent = `registration failed: ${error.message}`;
  });
  onWorkerMessage((message) => {
    if (message.type === 'sw-activated') {
      $('sw-version').textContent = message.version;
      $('sw-version').className = '';
    }
    const text = message.type === 'session-error'
      ? `session-error: ${message.error} at ${message.stage} (${message.message})`
      : message.type === 'sw-activated' ? `${message.type} ${message.version}` : message.type;
    prepend($('sw-messages'), el('li', {}, el('time', {}, time()), ' ', text), 20);
  });
} else {
  $('sw-state').textContent = 'service workers are not available here';
}

$('tokens-fetch').addEventListener('click', async () => {
  const out = $('tokens-result');
  show(out, el('p', { class: 'muted' }, 'Asking the worker…'));
  try {
    const tokens = await sessionTokens();
    show(out,
      el('p', { class: 'ok' }, '200: tokens acquired'),
      el('h3', {}, `EID JWT (expires ${new Date(tokens.eidExpiresAt).toLocaleTimeString()})`),
      el('pre', {}, pretty(claims(tokens.eidJwt))),
      el('h3', {}, `Venue JWT (expires ${new Date(tokens.venueExpiresAt).toLocaleTimeString()})`),
      el('pre', {}, pretty(claims(tokens.venueJwt))));
  } catch (error) {
    show(out, el('p', { class: 'error' }, describe(error)));
  }
});

// ---- the login (before the front: it takes ?token= out of the address bar first) ----

const auth = await Auth.start({
  onExpired: (reason) => location.assign(`/login/?reason=${encodeURIComponent(reason)}`),
});

/** @param {import('/pkg/websession.js').LoginInfo | undefined} info */
function loginState(info) {
  const out = $('login-state');
  $('login-actions').hidden = !info;
  if (!info) {
    const problem = auth.error ? el('p', { class: 'error' }, `Login failed: ${describe(auth.error)}`) : '';
    show(out, problem,
      el('p', {}, 'Not logged in. Open the login link that ', el('code', {}, 'cargo xtask demo'),
        ' printed (', el('code', {}, '/auth?token=…'), '); each link works once.'));
    return;
  }
  show(out, el('dl', {},
    el('dt', {}, 'User'), el('dd', {}, info.userId ?? '–'),
    el('dt', {}, 'Sponsor / subscriber'), el('dd', {}, `${info.sponsorId} / ${info.subscriberId}`),
    el('dt', {}, 'Permissions'), el('dd', {}, info.permissions.join(', ') || 'none'),
    el('dt', {}, 'Access token expires'), el('dd', {}, new Date(info.accessExpiresAt).toLocaleTimeString()),
    el('dt', {}, 'Session ends'), el('dd', {}, new Date(info.sessionExpiresAt).toLocaleString())));
}
loginState(auth.info);
auth.onChange(loginState);

/** @param {string} path */
async function callApi(path) {
  const out = $('api-result');
  try {
    const response = await auth.fetch(path);
    const body = await response.text();
    let shown = body;
    try { shown = pretty(JSON.parse(body)); } catch { /* not JSON */ }
    const kind = response.ok ? 'ok' : 'error';
    show(out, el('p', { class: kind }, `${response.status} ${response.statusText} ${path}`), el('pre', {}, shown));
  } catch (error) {
    show(out, el('p', { class: 'error' }, describe(error)));
  }
}
$('api-dashboard').addEventListener('click', () => callApi('/api/dashboard'));
$('api-reports').addEventListener('click', () => callApi('/api/reports'));
$('auth-refresh').addEventListener('click', async () => {
  try {
    const fresh = await auth.refresh();
    show($('api-result'), el('p', { class: fresh ? 'ok' : 'error' }, fresh ? 'Refreshed.' : 'The session is over.'));
  } catch (error) {
    show($('api-result'), el('p', { class: 'error' }, describe(error)));
  }
});
$('auth-logout').addEventListener('click', async () => {
  try {
    await auth.logout();
    show($('api-result'), el('p', { class: 'ok' }, 'Logged out here, in every tab and in the worker.'));
  } catch (error) {
    show($('api-result'), el('p', { class: 'error' }, describe(error)));
  }
});

// ---- the front and its stream ----

const front = await Front.open();
$('front-uuid').textContent = front.frontUuid;
$('session-uuid').textContent = front.sessionUuid;

function identity() {
  $('front-bid').textContent = String(front.frontBid ?? 'not registered yet');
  $('front-role').textContent = front.role;
  $('last-event-id').textContent = String(front.lastEventId ?? '–');
}

/**
 * @param {import('/pkg/websession.js').StreamState} state
 * @param {import('/pkg/websession.js').StreamState} [previous]
 */
function stateChanged(state, previous) {
  const badge = $('stream-state');
  badge.textContent = state;
  badge.className = `badge ${state}`;
  const text = previous ? `${previous} → ${state}` : state;
  prepend($('timeline'), el('li', {}, el('time', {}, time()), ' ', text, el('span', { class: 'muted' }, ` (${front.role})`)), 50);
  identity();
}
stateChanged(front.state);
front.onState(stateChanged);
front.onError((error) => {
  prepend($('timeline'), el('li', { class: 'error' }, el('time', {}, time()), ' ', describe(error)), 50);
});

front.onAny((event) => {
  const { meta } = event;
  const target = meta.sessionUuid ? 'this tab' : 'every tab';
  const tags = [target, meta.encrypted ? 'sealed' : null, meta.requestUuid ? 'answer' : null].filter(Boolean);
  prepend($('events'), el('li', {},
    el('time', {}, time(new Date(meta.published))), ' ',
    el('strong', {}, event.name), ' ', el('span', { class: 'muted' }, tags.join(' · ')),
    el('pre', {}, pretty(event.data))));
  identity();
});
$('events-clear').addEventListener('click', () => {
  show($('events'), el('li', { class: 'empty' }, 'Cleared.'));
});

function directData() {
  return { text: $input('direct-text').value, from: front.sessionUuid.slice(0, 8), at: new Date().toISOString() };
}
const encrypted = () => $input('direct-encrypt').checked;

$('direct-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const out = $('direct-result');
  show(out, el('p', { class: 'muted' }, 'Sending echo…'));
  const started = performance.now();
  try {
    const reply = await front.request('echo', directData(), { encrypted: encrypted(), timeout: 8000 });
    const ms = Math.round(performance.now() - started);
    show(out, el('p', { class: 'ok' }, `Echoed back in ${ms} ms${reply.meta.encrypted ? ' (sealed both ways)' : ''}`),
      el('pre', {}, pretty(reply.data)));
  } catch (error) {
    show(out, el('p', { class: 'error' }, describe(error)));
  }
});

$('broadcast-button').addEventListener('click', async () => {
  const out = $('direct-result');
  try {
    const delivery = await front.send('broadcast', directData(), { encrypted: encrypted() });
    const text = delivery === 'queued'
      ? 'Queued: it goes out, in order, as soon as the stream is back.'
      : 'Sent: every tab of this front gets it.';
    show(out, el('p', { class: 'ok' }, text));
  } catch (error) {
    show(out, el('p', { class: 'error' }, describe(error)));
  }
});
