//! Server-Sent Events: a frame encoder and an incremental parser that follows the WHATWG
//! "event stream interpretation" rules.
//!
//! The parser takes bytes in chunks split anywhere (inside a UTF-8 sequence, between CR and LF)
//! and yields the same items as if the whole stream had arrived at once. It understands `event`,
//! `id`, `data` over several lines, `retry`, comments, and LF, CR or CRLF line ends. Unlike
//! `EventSource`, it reports comments, so a client can see heartbeats.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if the block had one.
    pub event: Option<String>,
    /// The `id:` field, if the block had one (the stream's last id is [`SseParser::last_event_id`]).
    pub id: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
    /// The `retry:` field, if the block had a valid one.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// An event with only data.
    pub fn data(data: impl Into<String>) -> Self {
        Self { data: data.into(), ..Self::default() }
    }
    /// Sets the `event:` name.
    pub fn with_event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }
    /// Sets the `id:`.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// What the parser yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A dispatched event.
    Event(SseEvent),
    /// A comment line (`:text`), such as a heartbeat.
    Comment(String),
}

/// Encodes an event as a frame, ending with the blank line that dispatches it.
///
/// Line breaks cannot be spelled inside `event` and `id`, so they are removed there; `data`
/// with line breaks becomes several `data:` lines (a lone CR reads back as LF). The `id:` line
/// comes before `data:` and inside the block it belongs to.
pub fn encode(event: &SseEvent) -> String {
    let mut out = String::with_capacity(event.data.len() + 32);
    encode_into(event, &mut out);
    out
}

/// Like [`encode`], appending to `out`.
pub fn encode_into(event: &SseEvent, out: &mut String) {
    fn clean(s: &str) -> impl Iterator<Item = char> + '_ {
        s.chars().filter(|c| *c != '\n' && *c != '\r')
    }
    if let Some(name) = &event.event {
        out.push_str("event: ");
        out.extend(clean(name));
        out.push('\n');
    }
    if let Some(id) = &event.id {
        out.push_str("id: ");
        out.extend(clean(id).filter(|c| *c != '\0'));
        out.push('\n');
    }
    if let Some(retry) = event.retry {
        out.push_str("retry: ");
        out.push_str(&retry.to_string());
        out.push('\n');
    }
    for line in split_lines(&event.data) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
}

/// A comment frame (`: text`), used for heartbeats. Line breaks in `text` are removed.
pub fn comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    out.push_str(": ");
    out.extend(text.chars().filter(|c| *c != '\n' && *c != '\r'));
    out.push_str("\n\n");
    out
}

/// Splits on CRLF, LF or CR; always yields at least one (possibly empty) line.
fn split_lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// The position a reverse stream resumes after: the `Last-Event-ID` header (`header`), or else
/// a non-empty `lastEventId=` in the URL's query (`query`, without the `?`), for clients that
/// cannot set headers. Surrounding whitespace is ignored; anything but a non-negative decimal
/// integer that fits `i64` means "no position".
pub fn resume_id(header: Option<&str>, query: Option<&str>) -> Option<i64> {
    let query = query.and_then(|q| {
        q.split('&').find_map(|pair| pair.strip_prefix("lastEventId=")).filter(|v| !v.is_empty())
    });
    let id: i64 = header.or(query)?.trim().parse().ok()?;
    (id >= 0).then_some(id)
}

/// The default limit of one line, beyond which the parser drops the line.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// Incremental parser. Feed it chunks; it returns the items completed by each chunk.
#[derive(Debug, Clone)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in CR: a LF at the start of the next one belongs to it.
    after_cr: bool,
    /// Nothing has been read yet: a leading byte-order mark is skipped.
    at_start: bool,
    /// The current line grew past `max_line`: drop it up to its end.
    discarding: bool,
    max_line: usize,
    dropped_lines: u64,
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    block_retry: Option<u64>,
    last_event_id: String,
    retry: Option<u64>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default line limit of 1 MiB.
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A parser that drops lines longer than `max_line` bytes, so a peer cannot make it buffer
    /// without bound.
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            discarding: false,
            max_line,
            dropped_lines: 0,
            data: String::new(),
            has_data: false,
            event: None,
            id: None,
            block_retry: None,
            last_event_id: String::new(),
            retry: None,
        }
    }

    /// The stream's last event id: the `id:` of the last block completed by a blank line (it
    /// persists across events until an `id:` changes it). Send it as `Last-Event-ID` when
    /// reconnecting.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The last valid `retry:` seen.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// How many over-long lines were dropped.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    /// Feeds a chunk and returns the items it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseItem> {
        let mut out = Vec::new();
        self.feed_into(chunk, &mut out);
        out
    }

    /// Feeds a chunk, appending completed items to `out`.
    pub fn feed_into(&mut self, mut chunk: &[u8], out: &mut Vec<SseItem>) {
        if self.at_start {
            // Wait until three bytes decide whether a BOM is there.
            let have = self.line.len() + chunk.len();
            if have < 3 && self.line.iter().chain(chunk).eq(BOM[..have].iter()) {
                self.line.extend_from_slice(chunk);
                return;
            }
            self.at_start = false;
            let mut head = std::mem::take(&mut self.line);
            head.extend_from_slice(chunk);
            let body = head.strip_prefix(BOM).unwrap_or(&head).to_vec();
            return self.feed_lines(&body, out);
        }
        if chunk.is_empty() {
            // An empty chunk must not forget a CR that ended the previous one.
            return;
        }
        if std::mem::take(&mut self.after_cr) && chunk[0] == b'\n' {
            chunk = &chunk[1..];
        }
        self.feed_lines(chunk, out);
    }

    fn feed_lines(&mut self, mut chunk: &[u8], out: &mut Vec<SseItem>) {
        while let Some(i) = chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (head, tail) = chunk.split_at(i);
            self.push_bytes(head);
            let line = std::mem::take(&mut self.line);
            if std::mem::take(&mut self.discarding) {
                self.dropped_lines += 1;
            } else {
                self.process_line(&line, out);
            }
            self.line = line;
            self.line.clear();
            if tail[0] == b'\r' {
                if tail.len() == 1 {
                    self.after_cr = true;
                    return;
                }
                chunk = if tail[1] == b'\n' { &tail[2..] } else { &tail[1..] };
            } else {
                chunk = &tail[1..];
            }
        }
        self.push_bytes(chunk);
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        if self.discarding {
            return;
        }
        if self.line.len() + bytes.len() > self.max_line {
            self.discarding = true;
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseItem>) {
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            return self.dispatch(out);
        }
        let (field, value) = match line.find(':') {
            Some(0) => {
                let text = &line[1..];
                out.push(SseItem::Comment(text.strip_prefix(' ').unwrap_or(text).to_owned()));
                return;
            }
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            // The stream's last event id changes when the block is dispatched, not here: a
            // connection lost mid-block must not resume after an event it never received.
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.block_retry = Some(ms);
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        let event = self.event.take();
        let id = self.id.take();
        let retry = self.block_retry.take();
        if let Some(id) = &id {
            // Even a block without data sets the last event id (WHATWG "dispatch the event" step 1).
            self.last_event_id.clone_from(id);
        }
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the "\n" after the last data line
        out.push(SseItem::Event(SseEvent { event, id, data, retry }));
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";
