//! SPDY/3.1 framing, as Kubernetes' SPDY streams use it (kubectl's fallback transport,
//! the runtime's streaming server, port-forwarding): the frame layouts of the SPDY/3.1
//! draft (chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1, section 2), with
//! name/value header blocks compressed by zlib primed with the protocol's dictionary
//! (section 2.6.10.1). Written here rather than taken from a crate because none
//! implements SPDY any more; the kubelet needs the client side to run a command through
//! the runtime's streaming server for a WebSocket client (see `translate`).
//!
//! Every peer Kubernetes talks to (moby/spdystream) ignores flow control, so
//! WINDOW_UPDATE and SETTINGS are parsed and never needed; header compression state is
//! per connection and direction, so one `Codec` serves one connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio_util::codec::{Decoder, Encoder};

/// The protocol version every control frame carries.
pub const VERSION: u16 = 3;
/// FLAG_FIN: the sender's half of the stream ends with this frame.
pub const FLAG_FIN: u8 = 0x01;
/// The RST_STREAM status for a stream the receiver will not take (section 2.6.3).
pub const REFUSED_STREAM: u32 = 3;

/// A frame's length field is 24 bits; the 8-byte header comes on top.
const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// The most a header block may inflate to. Kubernetes sends a handful of short
/// headers per stream; this only stops a hostile peer from exhausting memory.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// The dictionary both sides prime their header (de)compressors with (section 2.6.10.1).
pub const HEADER_DICTIONARY: &[u8; 1423] =
    b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put\
    \x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eacc\
    ept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\
    \x00\x0daccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dauthori\
    zation\x00\x00\x00\x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent\
    -base\x00\x00\x00\x10content-encoding\x00\x00\x00\x10content-language\x00\x00\x00\
    \x0econtent-length\x00\x00\x00\x10content-location\x00\x00\x00\x0bcontent-md5\x00\
    \x00\x00\x0dcontent-range\x00\x00\x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\
    \x00\x04etag\x00\x00\x00\x06expect\x00\x00\x00\x07expires\x00\x00\x00\x04from\x00\
    \x00\x00\x04host\x00\x00\x00\x08if-match\x00\x00\x00\x11if-modified-since\x00\x00\
    \x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\x00\x00\x13if-unmodified-since\x00\
    \x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\x00\x00\x0cmax-forwards\x00\
    \x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\x00\x13proxy-authorizat\
    ion\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0bretry-after\x00\x00\
    \x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\x00\x11transfer-enco\
    ding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\x00\x04vary\x00\x00\
    \x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\x06me\
    thod\x00\x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\x06200\x20OK\x00\x00\x00\
    \x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\
    \x00\x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin100101201202205206\
    300302303304305306307402405406407408409410411412413414415416417502504505203\x20Non-A\
    uthoritative\x20Information204\x20No\x20Content301\x20Moved\x20Permanently400\x20Bad\
    \x20Request401\x20Unauthorized403\x20Forbidden404\x20Not\x20Found500\x20Internal\x20\
    Server\x20Error501\x20Not\x20Implemented503\x20Service\x20UnavailableJan\x20Feb\x20M\
    ar\x20Apr\x20May\x20Jun\x20Jul\x20Aug\x20Sept\x20Oct\x20Nov\x20Dec\x2000:00:00\x20Mo\
    n,\x20Tue,\x20Wed,\x20Thu,\x20Fri,\x20Sat,\x20Sun,\x20GMTchunked,text/html,image/png\
    ,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascrip\
    t,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0\
    .";

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY version {0} is not supported")]
    Version(u16),
    #[error("invalid {frame} frame: {why}")]
    Invalid { frame: &'static str, why: String },
    #[error("header block does not decompress: {0}")]
    Inflate(String),
    #[error("header block does not compress: {0}")]
    Deflate(String),
    #[error("frame payload of {0} bytes exceeds SPDY's 24-bit length")]
    TooLong(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A header block: (name, value) pairs in order. Names are lowercase on the wire;
/// several values of one name travel as one value joined by NUL bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    pub fn new(pairs: &[(&str, &str)]) -> Self {
        Headers(
            pairs
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
        )
    }
}

/// One SPDY/3.1 frame (section 2.2 and 2.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        /// 0 is the highest of 8 priorities.
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// (flags, id, value) per entry.
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
}

/// Frames to and from one connection, with that connection's two header compression
/// contexts.
pub struct Codec {
    inflate: Decompress,
    deflate: Compress,
}

impl Default for Codec {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // Priming a fresh compressor with a dictionary cannot fail: the only error
        // zlib reports is a call after compression began.
        let _ = deflate.set_dictionary(HEADER_DICTIONARY);
        Codec {
            inflate: Decompress::new(true),
            deflate,
        }
    }
}

fn invalid(frame: &'static str, why: impl Into<String>) -> SpdyError {
    SpdyError::Invalid {
        frame,
        why: why.into(),
    }
}

/// A 31-bit stream ID (the high bit is reserved and ignored on receipt).
fn stream_id(buf: &mut Bytes) -> u32 {
    buf.get_u32() & 0x7fff_ffff
}

fn need(buf: &Bytes, n: usize, frame: &'static str) -> Result<(), SpdyError> {
    if buf.len() < n {
        return Err(invalid(
            frame,
            format!("payload of {} bytes, need {n}", buf.len()),
        ));
    }
    Ok(())
}

impl Codec {
    /// Inflates one header block. zlib asks for the dictionary at the first block
    /// (its header names it by Adler-32); later blocks continue the same stream.
    fn inflate_block(&mut self, compressed: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let start = self.inflate.total_in();
        loop {
            let consumed = (self.inflate.total_in() - start) as usize;
            if consumed == compressed.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::Inflate(format!(
                        "more than {MAX_HEADER_BLOCK} bytes of headers"
                    )));
                }
                out.reserve(out.capacity());
            }
            match self.inflate.decompress_vec(
                &compressed[consumed..],
                &mut out,
                FlushDecompress::Sync,
            ) {
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::Inflate("the header stream ended".into()));
                }
                Ok(Status::Ok | Status::BufError) => {
                    let now = (self.inflate.total_in() - start) as usize;
                    if now == consumed && out.len() < out.capacity() {
                        // No progress with room to spare: the block is cut short.
                        return if now == compressed.len() {
                            Ok(out)
                        } else {
                            Err(SpdyError::Inflate("truncated header block".into()))
                        };
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(HEADER_DICTIONARY)
                        .map_err(|e| SpdyError::Inflate(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Inflate(e.to_string())),
            }
        }
    }

    /// Deflates one header block, ending it with a sync flush so the peer can inflate
    /// it from this frame's bytes alone.
    fn deflate_block(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let start = self.deflate.total_in();
        loop {
            let consumed = (self.deflate.total_in() - start) as usize;
            self.deflate
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Deflate(e.to_string()))?;
            let consumed = (self.deflate.total_in() - start) as usize;
            // The flush is complete once zlib stops short of filling the buffer.
            if consumed == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(64));
        }
    }

    fn read_headers(
        &mut self,
        compressed: &[u8],
        frame: &'static str,
    ) -> Result<Headers, SpdyError> {
        let block = self.inflate_block(compressed)?;
        parse_name_values(&block).map_err(|why| invalid(frame, why))
    }

    fn decode_control(
        &mut self,
        kind: u16,
        flags: u8,
        mut p: Bytes,
    ) -> Result<Option<Frame>, SpdyError> {
        let frame = match kind {
            TYPE_SYN_STREAM => {
                need(&p, 10, "SYN_STREAM")?;
                let stream_id = stream_id(&mut p);
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                let headers = self.read_headers(&p, "SYN_STREAM")?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers,
                }
            }
            TYPE_SYN_REPLY => {
                need(&p, 4, "SYN_REPLY")?;
                let stream_id = stream_id(&mut p);
                let headers = self.read_headers(&p, "SYN_REPLY")?;
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            }
            TYPE_HEADERS => {
                need(&p, 4, "HEADERS")?;
                let stream_id = stream_id(&mut p);
                let headers = self.read_headers(&p, "HEADERS")?;
                Frame::Headers {
                    stream_id,
                    flags,
                    headers,
                }
            }
            TYPE_RST_STREAM => {
                need(&p, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: stream_id(&mut p),
                    status: p.get_u32(),
                }
            }
            TYPE_SETTINGS => {
                need(&p, 4, "SETTINGS")?;
                let count = p.get_u32() as usize;
                if p.len() != count.saturating_mul(8) {
                    return Err(invalid(
                        "SETTINGS",
                        format!("{count} entries in {} bytes", p.len()),
                    ));
                }
                let entries = (0..count)
                    .map(|_| {
                        let flag_id = p.get_u32();
                        ((flag_id >> 24) as u8, flag_id & 0x00ff_ffff, p.get_u32())
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            TYPE_PING => {
                need(&p, 4, "PING")?;
                Frame::Ping { id: p.get_u32() }
            }
            TYPE_GOAWAY => {
                need(&p, 8, "GOAWAY")?;
                Frame::GoAway {
                    last_good_stream_id: stream_id(&mut p),
                    status: p.get_u32(),
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(&p, 8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: stream_id(&mut p),
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            // Section 2.2.1: a control frame of an unknown type is ignored.
            _ => return Ok(None),
        };
        Ok(Some(frame))
    }
}

/// Parses an inflated name/value block (section 2.6.10): a 32-bit count, then per pair
/// a 32-bit length and the name, a 32-bit length and the value.
fn parse_name_values(block: &[u8]) -> Result<Headers, String> {
    let mut buf = block;
    let read_u32 = |buf: &mut &[u8], what: &str| -> Result<usize, String> {
        if buf.len() < 4 {
            return Err(format!("header block ends inside {what}"));
        }
        let n = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        *buf = &buf[4..];
        Ok(n)
    };
    let count = read_u32(&mut buf, "the pair count")?;
    let mut pairs = Vec::new();
    for _ in 0..count {
        let field = |buf: &mut &[u8], what: &str| -> Result<String, String> {
            let len = read_u32(buf, what)?;
            if buf.len() < len {
                return Err(format!("header block ends inside {what}"));
            }
            let text = String::from_utf8(buf[..len].to_vec())
                .map_err(|_| format!("{what} is not UTF-8"))?;
            *buf = &buf[len..];
            Ok(text)
        };
        let name = field(&mut buf, "a header name")?;
        if name.is_empty() {
            return Err("empty header name".into());
        }
        // Section 2.6.10: names are lowercase; Go's framer refuses others too.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("header name {name:?} is not lowercase"));
        }
        let value = field(&mut buf, "a header value")?;
        pairs.push((name, value));
    }
    if !buf.is_empty() {
        return Err(format!("{} bytes after the last header", buf.len()));
    }
    Ok(Headers(pairs))
}

fn name_values(headers: &Headers) -> Vec<u8> {
    let mut block = Vec::new();
    block.put_u32(headers.0.len() as u32);
    for (name, value) in &headers.0 {
        block.put_u32(name.len() as u32);
        block.extend_from_slice(name.to_ascii_lowercase().as_bytes());
        block.put_u32(value.len() as u32);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = SpdyError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        loop {
            if src.len() < 8 {
                return Ok(None);
            }
            let length = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
            if src.len() < 8 + length {
                src.reserve(8 + length - src.len());
                return Ok(None);
            }
            let mut frame = src.split_to(8 + length).freeze();
            let first = frame.get_u32();
            let flags = frame.get_u8();
            frame.advance(3);
            if first & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data {
                    stream_id: first & 0x7fff_ffff,
                    flags,
                    data: frame,
                }));
            }
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(SpdyError::Version(version));
            }
            if let Some(frame) = self.decode_control(first as u16, flags, frame)? {
                return Ok(Some(frame));
            }
        }
    }
}

fn put_control(dst: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]) -> Result<(), SpdyError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(SpdyError::TooLong(payload.len()));
    }
    dst.reserve(8 + payload.len());
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    dst.extend_from_slice(payload);
    Ok(())
}

impl Encoder<Frame> for Codec {
    type Error = SpdyError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), SpdyError> {
        let mut p = Vec::new();
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(SpdyError::TooLong(data.len()));
                }
                dst.reserve(8 + data.len());
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32((u32::from(flags) << 24) | data.len() as u32);
                dst.extend_from_slice(&data);
                Ok(())
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(associated_to & 0x7fff_ffff);
                p.put_u8((priority & 0x07) << 5);
                p.put_u8(0);
                p.extend(self.deflate_block(&name_values(&headers))?);
                put_control(dst, TYPE_SYN_STREAM, flags, &p)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.extend(self.deflate_block(&name_values(&headers))?);
                put_control(dst, TYPE_SYN_REPLY, flags, &p)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.extend(self.deflate_block(&name_values(&headers))?);
                put_control(dst, TYPE_HEADERS, flags, &p)
            }
            Frame::RstStream { stream_id, status } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(status);
                put_control(dst, TYPE_RST_STREAM, 0, &p)
            }
            Frame::Settings { flags, entries } => {
                p.put_u32(entries.len() as u32);
                for (entry_flags, id, value) in entries {
                    p.put_u32((u32::from(entry_flags) << 24) | (id & 0x00ff_ffff));
                    p.put_u32(value);
                }
                put_control(dst, TYPE_SETTINGS, flags, &p)
            }
            Frame::Ping { id } => put_control(dst, TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                p.put_u32(last_good_stream_id & 0x7fff_ffff);
                p.put_u32(status);
                put_control(dst, TYPE_GOAWAY, 0, &p)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(delta & 0x7fff_ffff);
                put_control(dst, TYPE_WINDOW_UPDATE, 0, &p)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut Codec, bytes: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        frames
    }

    fn encode(codec: &mut Codec, frame: Frame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        codec.encode(frame, &mut buf).unwrap();
        buf.to_vec()
    }

    /// Section 2.6.10.1 names the dictionary; zlib identifies it by this Adler-32.
    #[test]
    fn dictionary_is_the_specs() {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in HEADER_DICTIONARY {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
        assert!(HEADER_DICTIONARY.starts_with(b"\x00\x00\x00\x07options"));
        assert!(HEADER_DICTIONARY.ends_with(b"enq=0."));
    }

    /// Section 2.2.2: C=0, 31-bit stream ID, 8 bits of flags, 24-bit length, data.
    #[test]
    fn data_frame_layout() {
        let wire = [
            0x00, 0x00, 0x00, 0x05, 0x01, 0x00, 0x00, 0x03, b'a', b'b', b'c',
        ];
        let frame = Frame::Data {
            stream_id: 5,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"abc"),
        };
        assert_eq!(
            decode_all(&mut Codec::default(), &wire),
            vec![frame.clone()]
        );
        assert_eq!(encode(&mut Codec::default(), frame), wire);
        // An empty DATA frame with FIN is how a sender half-closes a stream.
        let fin = [0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00];
        assert_eq!(
            decode_all(&mut Codec::default(), &fin),
            vec![Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new()
            }]
        );
    }

    /// Sections 2.6.3 to 2.6.9: the fixed-size control frames, C=1, version 3.
    #[test]
    fn fixed_control_frame_layouts() {
        let cases: Vec<(Vec<u8>, Frame)> = vec![
            (
                vec![
                    0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 7, 0, 0, 0, 5,
                ],
                // Status 5 is CANCEL.
                Frame::RstStream {
                    stream_id: 7,
                    status: 5,
                },
            ),
            (
                vec![0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 2],
                Frame::Ping { id: 2 },
            ),
            (
                vec![
                    0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 9, 0, 0, 0, 0,
                ],
                Frame::GoAway {
                    last_good_stream_id: 9,
                    status: 0,
                },
            ),
            (
                vec![
                    0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0, 1, 0, 0,
                ],
                Frame::WindowUpdate {
                    stream_id: 1,
                    delta: 65536,
                },
            ),
            (
                // One entry: flags 0, ID 7 (SETTINGS_INITIAL_WINDOW_SIZE), value 64 KiB.
                vec![
                    0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0c, 0, 0, 0, 1, 0x00, 0, 0, 7, 0,
                    1, 0, 0,
                ],
                Frame::Settings {
                    flags: 0,
                    entries: vec![(0, 7, 65536)],
                },
            ),
        ];
        for (wire, frame) in cases {
            assert_eq!(
                decode_all(&mut Codec::default(), &wire),
                vec![frame.clone()]
            );
            assert_eq!(encode(&mut Codec::default(), frame), wire);
        }
    }

    /// Section 2.6.1: SYN_STREAM with its header block deflated with the dictionary.
    /// The blocks below come from C zlib (Python's `zlib.compressobj(zdict=…)`, sync
    /// flush after each), so the inflater is checked against another implementation;
    /// the second block only inflates with the state the first left behind.
    #[test]
    fn syn_stream_headers_from_another_zlib() {
        let first = hex("78f9e3c6a7c202a62346703a2b294a4dcc851625aca9a08006000000ffff");
        let second = hex("02651c4ca9e212607601a5e00adddcd29c924c1013583e309494e703000000ffff");
        let mut wire = Vec::new();
        for (id, block) in [(1u32, &first), (3, &second)] {
            wire.extend([0x80, 0x03, 0x00, 0x01, 0x00]);
            wire.extend(&((10 + block.len()) as u32).to_be_bytes()[1..]);
            wire.extend(id.to_be_bytes());
            wire.extend([0, 0, 0, 0, 0x40, 0]);
            wire.extend(block.iter());
        }
        let frames = decode_all(&mut Codec::default(), &wire);
        assert_eq!(
            frames,
            vec![
                Frame::SynStream {
                    stream_id: 1,
                    associated_to: 0,
                    priority: 2,
                    flags: 0,
                    headers: Headers::new(&[("streamtype", "error")]),
                },
                Frame::SynStream {
                    stream_id: 3,
                    associated_to: 0,
                    priority: 2,
                    flags: 0,
                    headers: Headers::new(&[("streamtype", "stdin"), ("x-multi", "one\0two")]),
                },
            ]
        );
        // The second block alone, without the first's context, does not inflate.
        let mut fresh = Codec::default();
        let alone = wire[8 + 10 + first.len()..].to_vec();
        assert!(fresh.decode(&mut BytesMut::from(&alone[..])).is_err());
    }

    /// Section 2.6.2: an empty header block, as spdystream replies to every stream.
    #[test]
    fn syn_reply_with_no_headers() {
        let block = hex("78f9e3c6a7c202a6230600000000ffff");
        let mut wire = vec![0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00];
        wire.push((4 + block.len()) as u8);
        wire.extend([0, 0, 0, 5]);
        wire.extend(&block);
        assert_eq!(
            decode_all(&mut Codec::default(), &wire),
            vec![Frame::SynReply {
                stream_id: 5,
                flags: 0,
                headers: Headers::default()
            }]
        );
    }

    /// What one codec writes another inflates, block after block, as two ends of a
    /// connection do.
    #[test]
    fn header_blocks_round_trip_through_one_context() {
        let mut writer = Codec::default();
        let mut reader = Codec::default();
        let mut wire = BytesMut::new();
        let frames: Vec<Frame> = ["error", "stdin", "stdout", "stderr", "resize"]
            .iter()
            .enumerate()
            .map(|(i, kind)| Frame::SynStream {
                stream_id: 2 * i as u32 + 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: Headers::new(&[("streamType", kind), ("port", "8080")]),
            })
            .collect();
        for frame in frames.clone() {
            writer.encode(frame, &mut wire).unwrap();
        }
        // Names go out lowercase.
        let decoded = decode_all(&mut reader, &wire);
        assert_eq!(decoded, frames);
        let Frame::SynStream { headers, .. } = &decoded[0] else {
            unreachable!()
        };
        assert_eq!(headers.0[0].0, "streamtype");
        // The wire bytes carry zlib's FDICT header naming the dictionary.
        assert_eq!(&wire[18..24], &[0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2]);
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let wire = [
            0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x03, b'a', b'b', b'c',
        ];
        let mut codec = Codec::default();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.put_u8(*byte);
            let frame = codec.decode(&mut buf).unwrap();
            assert_eq!(frame.is_some(), i == wire.len() - 1);
        }
    }

    #[test]
    fn unknown_control_frames_are_skipped_and_bad_ones_refused() {
        // Type 0x0f is no SPDY/3.1 control frame: ignored, the PING after it read.
        let mut wire = vec![0x80, 0x03, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x02, 1, 2];
        wire.extend([0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]);
        assert_eq!(
            decode_all(&mut Codec::default(), &wire),
            vec![Frame::Ping { id: 1 }]
        );
        let v2 = [0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1];
        let err = Codec::default()
            .decode(&mut BytesMut::from(&v2[..]))
            .unwrap_err();
        assert_eq!(err.to_string(), "SPDY version 2 is not supported");
        let short_ping = [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x02, 0, 1];
        let err = Codec::default()
            .decode(&mut BytesMut::from(&short_ping[..]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid PING frame: payload of 2 bytes, need 4"
        );
    }

    #[test]
    fn name_value_blocks_are_checked() {
        let upper = [0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 0];
        assert_eq!(
            parse_name_values(&upper).unwrap_err(),
            "header name \"A\" is not lowercase"
        );
        let cut = [0, 0, 0, 1, 0, 0, 0, 5, b'a'];
        assert_eq!(
            parse_name_values(&cut).unwrap_err(),
            "header block ends inside a header name"
        );
        assert_eq!(
            parse_name_values(&[0, 0, 0, 0]).unwrap(),
            Headers::default()
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
