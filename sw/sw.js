// websession service worker shim, served as /sw.js and registered as a module worker:
//
//   navigator.serviceWorker.register('/sw.js?venueUrl=…', { type: 'module' })
//
// It adds the four listeners synchronously (a worker that adds them after an await gets no
// events), starts the wasm initialisation at top level (a worker restarted after idling gets no
// `install` event, so waiting for one would leave it uninitialised), decides synchronously which
// requests are the worker's, and hands everything else to the Rust package. Settings are the
// registration URL's query parameters; see the package README.
//
// Only `GET /uc/session/vtx` on this origin is answered. Every other request, the reverse
// stream (`/web-event-stream-open/…`) and every `/web-event-*` path included, goes to the network
// untouched: no `respondWith`, no cache.
//
// The import is static: module service workers may not use `import()`. A site that serves the
// package elsewhere than `./pkg/` edits this one line.
import init, * as wasm from './pkg/websession.js';

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
  if (request.method === 'GET') {
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
