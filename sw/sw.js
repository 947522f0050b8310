// websession service worker, shipped in the npm package as `sw.js` next to `websession_sw.js`,
// the package's worker module (the page client is another module, `websession.js`, which the
// worker never loads).
// A site serves it as /sw.js and registers it as a module worker:
//
//   navigator.serviceWorker.register('/sw.js?venueUrl=…', { type: 'module' })
//
// either as a copy at the site's root next to the two files it loads (`websession_sw.js`,
// `websession_sw_bg.wasm`), or through a one-line `/sw.js` that imports it where the package is
// served (`import './websession/sw.js';`): a static import runs before the worker's first
// script evaluation ends, so the listeners below still count as added at once. See the package
// README.
//
// It adds the four listeners synchronously (a worker that adds them after an await gets no
// events), starts the wasm initialisation at top level (a worker restarted after idling gets no
// `install` event, so waiting for one would leave it uninitialised), decides synchronously which
// requests are the worker's, and hands everything else to the Rust package. Settings are the
// registration URL's query parameters (`self.location`, which is the registered `/sw.js` however
// this file is reached).
//
// Only `GET /uc/session/vtx` on this origin, fetched by a script, is answered. Every other request, the reverse
// stream (`/web-event-stream-open/…`) and every `/web-event-*` path included, goes to the network
// untouched: no `respondWith`, no cache.
//
// The import is static and relative (module service workers may not use `import()`): it
// resolves to the package's own `websession_sw.js`, which fetches `websession_sw_bg.wasm` next
// to itself.
import init, * as wasm from './websession_sw.js';

const startedAt = performance.now();
const SESSION_PATH = '/uc/session/vtx';

const ready = init().then(() => wasm.swStart(startedAt));
// A failed start must show in the console, not only as rejected events.
ready.catch((error) => console.error('websession worker: start failed', error));

self.addEventListener('install', (event) => {
  event.waitUntil(ready.then(() => wasm.swInstall()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(ready.then(() => wasm.swActivate()));
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  // Only a script's `fetch` (destination '') from a page of this origin gets the tokens: a
  // navigation (a link, a typed address, an iframe) or a subresource (<img>, <script>) to the
  // session path goes to the network like any other request.
  if (request.method === 'GET' && request.mode !== 'navigate' && request.destination === '') {
    const url = new URL(request.url);
    if (url.origin === self.location.origin && url.pathname === SESSION_PATH) {
      event.respondWith(ready.then(() => wasm.swSession(request)));
      return;
    }
  }
  if (request.mode === 'navigate') {
    // Not answered (the page loads from the network); a chance for a waiting new version to
    // take over when the settings say `update=navigation`.
    event.waitUntil(ready.then(() => wasm.swNavigate()));
  }
});

self.addEventListener('message', (event) => {
  event.waitUntil(ready.then(() => wasm.swMessage(event.data)));
});
