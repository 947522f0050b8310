//! Reverse streams written on their socket once hyper has read their request (detach.rs):
//! the ordinary requests before them on the same connection keep HTTP/1.1 keep-alive, the
//! stream's head and frames are well-formed chunked HTTP/1.1, and a client that hangs up
//! ends its stream.

use protocol::{FrontUuid, SessionUuid, paths};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::util::{TestServer, wait_until, within};

/// Reads from `stream` until `buf` holds `needle`; fails if the connection closes first.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, needle: &str) {
    within(async {
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(buf).contains(needle) {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before {needle:?}: {:?}", String::from_utf8_lossy(buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
}

fn stream_open(front: FrontUuid, session: SessionUuid) -> String {
    format!("GET {}/{front}/{session} HTTP/1.1\r\nHost: x\r\n\r\n", paths::STREAM_OPEN)
}

#[tokio::test]
async fn ordinary_requests_keep_the_connection_and_a_stream_opened_after_them_is_chunked_and_closes()
 {
    let server = TestServer::start().await;
    let mut front = loadgen::Front::generate(&server.client());
    front.register().await.unwrap();
    let mut tcp = TcpStream::connect(server.url.trim_start_matches("http://")).await.unwrap();
    let mut buf = Vec::new();
    // Two ordinary exchanges on one connection: keep-alive as before.
    for _ in 0..2 {
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        read_until(&mut tcp, &mut buf, "\r\n\r\n").await;
        let text = String::from_utf8_lossy(&buf).to_lowercase();
        let head = &text[..text.find("\r\n\r\n").unwrap() + 4];
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .expect("no content-length")
            .parse()
            .unwrap();
        let whole = head.len() + length;
        while buf.len() < whole {
            let mut chunk = [0u8; 1024];
            let n = within(tcp.read(&mut chunk)).await.unwrap();
            assert!(n > 0, "closed after an ordinary response");
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..whole);
    }
    // Then a stream on the same connection: written by the detached writer.
    let session = SessionUuid::new_v4();
    tcp.write_all(stream_open(front.uuid(), session).as_bytes()).await.unwrap();
    read_until(&mut tcp, &mut buf, "event: authenticate").await;
    let text = String::from_utf8_lossy(&buf).to_lowercase();
    let stream_head = &text[text.find("content-type: text/event-stream").expect("no SSE head")..];
    assert!(stream_head.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(stream_head.contains("connection: close\r\n"), "{text}");
    assert!(stream_head.contains("x-accel-buffering: no\r\n"), "{text}");
    assert!(!stream_head.contains("content-length"), "{text}");
    // The first chunk: hex size, CRLF, the `authenticate` frame.
    let body = &stream_head[stream_head.find("\r\n\r\n").unwrap() + 4..];
    let (size, rest) = body.split_once("\r\n").expect("no chunk size line");
    let size = usize::from_str_radix(size, 16).expect("chunk size is not hex");
    assert!(rest.len() >= size && rest.starts_with("event: authenticate"), "{body:?}");

    let events = server.state.events.clone();
    assert_eq!(events.stream_counts(), (1, 0), "(pending, active)");
    // The client hangs up: the writer sees it and the stream leaves the registry.
    drop(tcp);
    wait_until(|| events.stream_counts() == (0, 0)).await;
}

#[tokio::test]
async fn an_http_1_0_stream_is_served_by_hyper_as_before() {
    let server = TestServer::start().await;
    let mut front = loadgen::Front::generate(&server.client());
    front.register().await.unwrap();
    let mut tcp = TcpStream::connect(server.url.trim_start_matches("http://")).await.unwrap();
    let request = stream_open(front.uuid(), SessionUuid::new_v4()).replace("HTTP/1.1", "HTTP/1.0");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut tcp, &mut buf, "event: authenticate").await;
    // HTTP/1.0 has no chunked encoding: the body runs until the connection closes.
    let text = String::from_utf8_lossy(&buf).to_lowercase();
    assert!(text.starts_with("http/1.0 200"), "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
}
