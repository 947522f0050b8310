// The demo's /sw.js: the package's worker, served with the rest of the package under /pkg/.
// A static import runs during the worker's first evaluation, so the listeners the package's
// sw.js adds count as added at once; settings still come from this script's URL (/sw.js?…).
import './pkg/sw.js';
