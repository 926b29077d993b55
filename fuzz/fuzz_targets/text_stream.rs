//! Any bytes as a log-session stream, cut into chunks at every byte value
//! 0x00: line carry-over and SSE decoding never panic.
#![no_main]

use dynoguard::ingest::text::{LineBuffer, SseDecoder};
use dynoguard::ingest::{IngestStats, text_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stats = IngestStats::default();
    let mut lines = LineBuffer::new();
    let mut sse = SseDecoder::new();
    for chunk in data.split(|&b| b == 0) {
        lines.push(chunk, |l| {
            text_line(l, &mut stats, |_| {});
        });
        sse.push(chunk, |l| {
            text_line(l, &mut stats, |_| {});
        });
    }
    lines.finish(|l| {
        text_line(l, &mut stats, |_| {});
    });
    sse.finish(|l| {
        text_line(l, &mut stats, |_| {});
    });
});
