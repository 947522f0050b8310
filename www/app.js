// The demo page: loads the browser package and shows what works.
import init, { version, selfCheck } from "/pkg/websession.js";

await init();
document.getElementById("pkg-version").textContent = version();
document.getElementById("pkg-selfcheck").textContent = selfCheck("hello") ? "sealed box ok" : "FAILED";
