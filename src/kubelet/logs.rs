//! Container logs as the CRI runtime writes them: one record per line,
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`, where `P` marks a partial
//! record that the next records continue until one tagged `F`. The kubelet turns them
//! back into the container's own output for `kubectl logs`.

use jiff::Timestamp;

/// What a `kubectl logs` request asks for (the query of `/containerLogs/...`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<usize>,
    pub timestamps: bool,
    pub previous: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<Timestamp>,
    /// At most this many bytes of output, cut mid-line as upstream's limit writer does.
    pub limit_bytes: Option<u64>,
}

/// A `/containerLogs` query this kubelet cannot read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogQueryError {
    #[error("{0}")]
    Integer(#[from] rind_api::query::IntError),
    #[error("invalid sinceTime {0:?}: {1}")]
    SinceTime(String, String),
}

/// One complete line of container output, partial records joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The timestamp of the record that started the line, as the runtime wrote it.
    pub timestamp: String,
    pub content: String,
}

impl LogEntry {
    /// The line as `kubectl logs` prints it, with the newline the runtime stripped.
    pub fn render(&self, timestamps: bool) -> String {
        if timestamps {
            format!("{} {}\n", self.timestamp, self.content)
        } else {
            format!("{}\n", self.content)
        }
    }

    fn time(&self) -> Option<Timestamp> {
        self.timestamp.parse().ok()
    }
}

/// A record of the CRI log format, borrowed from its line.
#[derive(Debug, PartialEq, Eq)]
struct Record<'a> {
    timestamp: &'a str,
    partial: bool,
    content: &'a str,
}

fn parse_record(line: &str) -> Option<Record<'_>> {
    let (timestamp, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    // The tag field may in principle carry several `:`-separated tags; the first
    // says whether the record is partial.
    let (tag, content) = rest.split_once(' ').unwrap_or((rest, ""));
    let partial = tag.split(':').next() == Some("P");
    Some(Record {
        timestamp,
        partial,
        content,
    })
}

/// Turns a byte stream of CRI log records into complete lines. Fed incrementally, it
/// keeps an unfinished last line and an open partial record for the next chunk, so
/// reading a growing file in pieces gives the same lines as reading it at once.
#[derive(Default)]
pub struct Assembler {
    unfinished: Vec<u8>,
    open: Option<LogEntry>,
}

impl Assembler {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<LogEntry> {
        self.unfinished.extend_from_slice(bytes);
        let mut entries = Vec::new();
        while let Some(pos) = self.unfinished.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.unfinished.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let Some(record) = parse_record(&line) else {
                continue;
            };
            let entry = self.open.get_or_insert_with(|| LogEntry {
                timestamp: record.timestamp.to_string(),
                content: String::new(),
            });
            entry.content.push_str(record.content);
            if !record.partial
                && let Some(done) = self.open.take()
            {
                entries.push(done);
            }
        }
        entries
    }
}

/// Applies `sinceSeconds`, `sinceTime` and `tailLines` to the lines already written.
pub fn select(entries: Vec<LogEntry>, opts: &LogOptions, now: Timestamp) -> Vec<LogEntry> {
    let by_seconds = opts
        .since_seconds
        .map(|secs| now.as_second().saturating_sub(secs));
    let by_time = opts.since_time.map(|t| t.as_second());
    let mut entries: Vec<LogEntry> = match by_seconds.max(by_time) {
        Some(cutoff) => entries
            .into_iter()
            .filter(|e| e.time().is_none_or(|t| t.as_second() >= cutoff))
            .collect(),
        None => entries,
    };
    if let Some(tail) = opts.tail_lines
        && entries.len() > tail
    {
        entries.drain(..entries.len() - tail);
    }
    entries
}

/// Parses the query string of a `/containerLogs` request with the parameter decoding
/// the API server uses (the first of repeated keys; booleans and integers as
/// upstream's codec reads them). A negative `tailLines` means every line.
pub fn parse_options(query: Option<&str>) -> Result<LogOptions, LogQueryError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or_default()).unwrap_or_default();
    let first = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let flag = |key: &str| first(key).is_some_and(rind_api::query::parse_bool);
    let int = |key: &str| first(key).map(rind_api::query::parse_int64).transpose();
    let since_time = first("sinceTime")
        .map(|t| {
            t.parse::<Timestamp>()
                .map_err(|e| LogQueryError::SinceTime(t.to_string(), e.to_string()))
        })
        .transpose()?;
    Ok(LogOptions {
        follow: flag("follow"),
        timestamps: flag("timestamps"),
        previous: flag("previous"),
        tail_lines: int("tailLines")?.and_then(|n| usize::try_from(n).ok()),
        since_seconds: int("sinceSeconds")?,
        since_time,
        limit_bytes: int("limitBytes")?.and_then(|n| u64::try_from(n).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Vec<LogEntry> {
        Assembler::default().push(bytes)
    }

    const LOG: &str = "2026-11-22T00:00:01.000000001Z stdout F hello from rind\n\
2026-11-22T00:00:02.5Z stderr P part one \n\
2026-11-22T00:00:02.6Z stderr F and two\n\
2026-11-22T00:00:03Z stdout F \n\
2026-11-22T00:00:04Z stdout F last\n";

    #[test]
    fn parses_records_and_joins_partials() {
        let entries = parse_all(LOG.as_bytes());
        let lines: Vec<String> = entries.iter().map(|e| e.render(false)).collect();
        assert_eq!(
            lines,
            ["hello from rind\n", "part one and two\n", "\n", "last\n"]
        );
        assert_eq!(entries[1].timestamp, "2026-11-22T00:00:02.5Z");
    }

    #[test]
    fn timestamps_are_put_back() {
        let entries = parse_all(LOG.as_bytes());
        assert_eq!(
            entries[0].render(true),
            "2026-11-22T00:00:01.000000001Z hello from rind\n"
        );
    }

    #[test]
    fn incremental_feeding_matches_whole_file() {
        let mut asm = Assembler::default();
        let mut got = Vec::new();
        for chunk in LOG.as_bytes().chunks(7) {
            got.extend(asm.push(chunk));
        }
        assert_eq!(got, parse_all(LOG.as_bytes()));
    }

    #[test]
    fn unfinished_line_waits_for_its_newline() {
        let mut asm = Assembler::default();
        assert!(asm.push(b"2026-11-22T00:00:01Z stdout F hal").is_empty());
        let got = asm.push(b"f\n");
        assert_eq!(got[0].content, "half");
    }

    #[test]
    fn tail_and_since() {
        let entries = parse_all(LOG.as_bytes());
        let tail = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        let now: Timestamp = "2026-11-22T00:00:05Z".parse().unwrap();
        let got = select(entries.clone(), &tail, now);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].content, "last");
        let since = LogOptions {
            since_seconds: Some(2),
            ..LogOptions::default()
        };
        let got = select(entries.clone(), &since, now);
        assert_eq!(got.len(), 2);
        let zero = LogOptions {
            tail_lines: Some(0),
            ..LogOptions::default()
        };
        assert!(select(entries, &zero, now).is_empty());
    }

    #[test]
    fn query_options() {
        let opts = parse_options(Some(
            "follow=True&tailLines=10&timestamps=1&previous=false&sinceSeconds=30&limitBytes=5&tailLines=3",
        ))
        .unwrap();
        assert_eq!(
            opts,
            LogOptions {
                follow: true,
                tail_lines: Some(10),
                timestamps: true,
                previous: false,
                since_seconds: Some(30),
                since_time: None,
                limit_bytes: Some(5),
            }
        );
        assert_eq!(parse_options(None).unwrap(), LogOptions::default());
        let since = parse_options(Some("sinceTime=2026-11-22T00%3A00%3A02Z")).unwrap();
        assert_eq!(
            since.since_time,
            Some("2026-11-22T00:00:02Z".parse().unwrap())
        );
        assert_eq!(
            parse_options(Some("tailLines=x")).unwrap_err().to_string(),
            r#"strconv.ParseInt: parsing "x": invalid syntax"#
        );
        assert!(parse_options(Some("sinceTime=yesterday")).is_err());
    }

    #[test]
    fn since_time_keeps_later_lines() {
        let entries = parse_all(LOG.as_bytes());
        let opts = LogOptions {
            since_time: Some("2026-11-22T00:00:03Z".parse().unwrap()),
            ..LogOptions::default()
        };
        let now: Timestamp = "2026-11-22T00:00:05Z".parse().unwrap();
        let got = select(entries, &opts, now);
        assert!(!got.is_empty());
        assert!(
            got.iter()
                .all(|e| e.timestamp.as_str() >= "2026-11-22T00:00:03")
        );
    }
}
