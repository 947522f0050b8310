//! The HTTP layer under every endpoint: the error body of a wrong method, and the limits a
//! request meets before a handler sees it (header and body read timeouts, the declared body
//! length). Over real TCP on `127.0.0.1:0`, with raw sockets where a well-behaved client
//! cannot misbehave enough.

mod detach;
mod limits;
mod methods;
