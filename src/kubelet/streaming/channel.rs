//! The channel protocol of Kubernetes' WebSocket streams (`v5.channel.k8s.io`): each
//! binary message starts with the number of the stream it belongs to (0 stdin, 1
//! stdout, 2 stderr, 3 error, 4 resize), and v5 adds message `[255, n]`, with which a
//! client closes its side of stream `n` (how `kubectl exec -i` signals the end of its
//! input). The session's outcome travels on the error stream as a `Status`, worded as
//! upstream's stream translator words it, since kubectl and the Python client print
//! and branch on it. Upstream: k8s.io/streaming wsstream, client-go remotecommand.

use rind_api::status::{ApiError, Cause, Status, StatusDetails, success};
use serde::Deserialize;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// The v5 signal that closes one stream.
pub const CLOSE: u8 = 255;

/// The WebSocket subprotocol with the close signal, translated here to the runtime's
/// SPDY streams; every older one the runtime speaks itself.
pub const V5: &str = "v5.channel.k8s.io";
/// The SPDY subprotocol of remote commands whose error stream carries a `Status`.
pub const REMOTE_COMMAND_V4: &str = "v4.channel.k8s.io";
/// kubectl's port-forward tunnels SPDY in WebSocket messages under subprotocol
/// `SPDY/3.1+portforward.k8s.io`: this prefix, then the SPDY subprotocol.
pub const TUNNEL_PREFIX: &str = "SPDY/3.1+";

/// One message from a v5 client.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// Bytes for stream `channel`.
    Data { channel: u8, data: &'a [u8] },
    /// The client is done writing to stream `channel`.
    Close { channel: u8 },
    /// A message with nothing in it, which upstream skips.
    Empty,
}

/// Reads one client message. A close signal must name exactly one stream, and one of
/// the five; upstream ends the session on anything else.
pub fn parse(message: &[u8]) -> Result<Inbound<'_>, String> {
    match message {
        [] => Ok(Inbound::Empty),
        [CLOSE, channel] if *channel <= RESIZE => Ok(Inbound::Close { channel: *channel }),
        [CLOSE, channel] => Err(format!(
            "close signal for channel {channel}, which does not exist"
        )),
        [CLOSE, rest @ ..] => Err(format!(
            "a close signal carries one channel byte, this one {}",
            rest.len()
        )),
        [channel, data @ ..] => Ok(Inbound::Data {
            channel: *channel,
            data,
        }),
    }
}

/// A message for the client: the channel byte, then the data.
pub fn message(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// How a command ended, as the runtime reported it on its v4 error stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command ran and exited non-zero.
    Exit(u8),
    /// Anything else that went wrong, in client-go's words.
    Error(String),
}

#[derive(Deserialize)]
struct WireStatus {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
    details: Option<WireDetails>,
}

#[derive(Deserialize)]
struct WireDetails {
    #[serde(default)]
    causes: Vec<WireCause>,
}

#[derive(Deserialize)]
struct WireCause {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// Reads the error stream of a v4 session the way client-go's v4 decoder does: an
/// empty stream is success, `NonZeroExitCode` carries the code in its `ExitCode`
/// cause (0 to 255), any other failure is its message.
pub fn decode_v4(message: &[u8]) -> Outcome {
    if message.is_empty() {
        return Outcome::Success;
    }
    let status: WireStatus = match serde_json::from_slice(message) {
        Ok(status) => status,
        Err(e) => {
            return Outcome::Error(format!(
                "error stream protocol error: {e} in {:?}",
                String::from_utf8_lossy(message)
            ));
        }
    };
    match status.status.as_str() {
        "Success" => Outcome::Success,
        "Failure" if status.reason == "NonZeroExitCode" => {
            let Some(details) = status.details else {
                return Outcome::Error("error stream protocol error: details must be set".into());
            };
            match details.causes.iter().find(|c| c.reason == "ExitCode") {
                Some(cause) => match cause.message.parse::<u8>() {
                    Ok(code) => Outcome::Exit(code),
                    Err(_) => Outcome::Error(format!(
                        "error stream protocol error: invalid exit code value {:?}",
                        cause.message
                    )),
                },
                None => {
                    Outcome::Error("error stream protocol error: no ExitCode cause given".into())
                }
            }
        }
        "Failure" => Outcome::Error(status.message),
        _ => Outcome::Error("error stream protocol error: unknown error".into()),
    }
}

/// The `Status` a v5 client gets on the error stream at the end of a session, as
/// upstream's stream translator writes it (`json.Marshal` of a bare `metav1.Status`).
pub fn status(outcome: &Outcome) -> Vec<u8> {
    let status: Status = match outcome {
        Outcome::Success => success(None),
        Outcome::Exit(code) => ApiError {
            // No HTTP code: the session itself went fine.
            code: 0,
            reason: "NonZeroExitCode",
            message: format!(
                "command terminated with non-zero exit code: command terminated with exit code {code}"
            ),
            details: Some(Box::new(StatusDetails::causes(vec![Cause {
                reason: "ExitCode",
                message: code.to_string(),
                field: String::new(),
            }]))),
            continue_token: None,
        }
        .to_status(),
        Outcome::Error(message) => internal_error(message).to_status(),
    };
    status.untyped().to_compact()
}

/// Upstream's `NewInternalError`: the message prefixed, the bare error as the cause.
pub fn internal_error(message: &str) -> ApiError {
    ApiError {
        code: 500,
        reason: "InternalError",
        message: format!("Internal error occurred: {message}"),
        details: Some(Box::new(StatusDetails::causes(vec![Cause {
            reason: "",
            message: message.to_string(),
            field: String::new(),
        }]))),
        continue_token: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages() {
        assert_eq!(
            parse(&[0, b'h', b'i']),
            Ok(Inbound::Data {
                channel: STDIN,
                data: b"hi"
            })
        );
        assert_eq!(
            parse(&[4]),
            Ok(Inbound::Data {
                channel: RESIZE,
                data: b""
            })
        );
        assert_eq!(parse(&[255, 0]), Ok(Inbound::Close { channel: STDIN }));
        assert_eq!(parse(&[]), Ok(Inbound::Empty));
        assert!(parse(&[255]).is_err());
        assert!(parse(&[255, 0, 0]).is_err());
        assert!(parse(&[255, 9]).is_err());
        assert_eq!(message(STDOUT, b"out"), b"\x01out");
    }

    /// The bodies kubectl and the Python client read, byte for byte as upstream's
    /// translator sends them.
    #[test]
    fn statuses_as_upstream_writes_them() {
        assert_eq!(
            String::from_utf8(status(&Outcome::Success)).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            String::from_utf8(status(&Outcome::Exit(3))).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: command terminated with exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        assert_eq!(
            String::from_utf8(status(&Outcome::Error("boom <x>".into()))).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: boom \u003cx\u003e","reason":"InternalError","details":{"causes":[{"message":"boom \u003cx\u003e"}]},"code":500}"#
        );
    }

    /// What the runtime's v4 server writes (k8s.io/kubelet cri/streaming remotecommand).
    #[test]
    fn runtime_statuses_decode_as_client_go_reads_them() {
        assert_eq!(decode_v4(b""), Outcome::Success);
        assert_eq!(
            decode_v4(br#"{"metadata":{},"status":"Success"}"#),
            Outcome::Success
        );
        let exit = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#;
        assert_eq!(decode_v4(exit), Outcome::Exit(7));
        let failed = br#"{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: no such file","reason":"InternalError","code":500}"#;
        assert_eq!(
            decode_v4(failed),
            Outcome::Error(
                "Internal error occurred: error executing command in container: no such file"
                    .into()
            )
        );
        assert_eq!(
            decode_v4(br#"{"status":"Failure","reason":"NonZeroExitCode"}"#),
            Outcome::Error("error stream protocol error: details must be set".into())
        );
        assert_eq!(
            decode_v4(
                br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"300"}]}}"#
            ),
            Outcome::Error("error stream protocol error: invalid exit code value \"300\"".into())
        );
        assert!(
            matches!(decode_v4(b"not json"), Outcome::Error(m) if m.starts_with("error stream protocol error: "))
        );
    }
}
