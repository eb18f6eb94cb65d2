//! The LZ4 frame decoder against the reference `lz4` tool: whatever the tool
//! writes (linked or independent blocks, block checksums, content sizes,
//! every block size, skippable frames, many tiny frames) the buffer and
//! stream decoders read to the bytes `lz4 -d` gives, and whatever the tool
//! refuses they refuse.

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use futures::StreamExt;
use replica_core::lz4::{compress, decompress, decompress_stream};
use replica_core::{collect_bytes, Error};

/// Runs the `lz4` tool (installed by the README's set-up and `.ci/run`).
fn lz4(args: &[&str], input: &[u8]) -> (bool, Vec<u8>) {
    let mut child = Command::new("lz4")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the lz4 tool is needed (apt-get install lz4)");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (out.status.success(), out.stdout)
}

fn sample(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7) % 251) as u8 ^ (i / 3000) as u8)
        .collect()
}

fn stream_decode(data: &[u8]) -> Result<Vec<u8>, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Fed in odd-sized chunks, so frame structure straddles chunk borders.
    let chunks: Vec<Result<Bytes, Error>> = data
        .chunks(999)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let input = futures::stream::iter(chunks).boxed();
    rt.block_on(async move { collect_bytes(decompress_stream(input)).await })
        .map(|b| b.to_vec())
}

/// Both decoders agree with `lz4 -d` on `framed`: the same bytes, or both refuse.
fn agree_with_the_tool(framed: &[u8], what: &str) {
    let (ok, tool) = lz4(&["-d", "-c"], framed);
    let buffer = decompress(framed);
    let stream = stream_decode(framed);
    if ok {
        assert_eq!(buffer.as_ref().ok(), Some(&tool), "{what}: buffer decoder");
        assert_eq!(stream.as_ref().ok(), Some(&tool), "{what}: stream decoder");
    } else {
        assert!(
            matches!(buffer, Err(Error::Corrupt { .. })),
            "{what}: lz4 refuses, the buffer decoder gave {buffer:?}"
        );
        assert!(
            matches!(stream, Err(Error::Corrupt { .. })),
            "{what}: lz4 refuses, the stream decoder gave {stream:?}"
        );
    }
}

#[test]
fn frames_the_tool_writes_decode_identically_in_both_decoders() {
    let data = sample(5_000_000);
    for args in [
        &["-c"][..],
        &["-c", "-BD"],
        &["-c", "-BX"],
        &["-c", "-B4"],
        &["-c", "-B5", "-BD"],
        &["-c", "-B6", "-BX", "-BD"],
        &["-c", "--content-size"],
        &["-c", "--no-frame-crc"],
        &["-c", "-9", "-BD"],
    ] {
        let (ok, framed) = lz4(args, &data);
        assert!(ok, "lz4 {args:?}");
        agree_with_the_tool(&framed, &format!("lz4 {args:?}"));
        assert_eq!(decompress(&framed).unwrap(), data, "lz4 {args:?}");
    }
}

fn skippable(len: u32) -> Vec<u8> {
    let mut f = 0x184D_2A53u32.to_le_bytes().to_vec();
    f.extend(len.to_le_bytes());
    f.extend(std::iter::repeat_n(0xAB, len as usize));
    f
}

#[test]
fn skippable_frames_anywhere_are_skipped_as_the_tool_skips_them() {
    let body = compress(&sample(300_000));
    let leading = [skippable(17), body.clone()].concat();
    let between = [body.clone(), skippable(0), body.clone()].concat();
    let trailing = [body.clone(), skippable(5)].concat();
    for (framed, what) in [
        (&leading, "a leading skippable frame"),
        (&between, "a skippable frame between frames"),
        (&trailing, "a trailing skippable frame"),
    ] {
        agree_with_the_tool(framed, what);
        assert!(decompress(framed).is_ok(), "{what}");
    }
    // A skippable frame cut short is refused by the tool and by both decoders.
    let cut = [skippable(40), body].concat();
    agree_with_the_tool(&cut[..30], "a cut skippable frame");
    assert!(decompress(&cut[..30]).is_err());
}

#[test]
fn many_tiny_frames_decode_to_what_the_tool_gives() {
    let one = compress(b"x");
    let framed: Vec<u8> = one.repeat(100_000);
    agree_with_the_tool(&framed, "100,000 one-byte frames");
    assert_eq!(decompress(&framed).unwrap().len(), 100_000);
}

#[test]
fn damaged_tool_frames_are_refused_where_the_tool_refuses_them() {
    let (ok, framed) = lz4(&["-c", "-BD", "-BX", "--content-size"], &sample(200_000));
    assert!(ok);
    for at in (0..framed.len()).step_by(framed.len() / 40) {
        let mut bad = framed.clone();
        bad[at] ^= 0x10;
        agree_with_the_tool(&bad, &format!("flip at {at}"));
    }
    for cut in [
        1,
        4,
        6,
        11,
        12,
        framed.len() / 2,
        framed.len() - 4,
        framed.len() - 1,
    ] {
        agree_with_the_tool(&framed[..cut], &format!("cut at {cut}"));
    }
}

#[test]
fn errors_read_as_sentences_not_debug_forms() {
    let (_, framed) = lz4(&["-c", "-BD", "--content-size"], &sample(100_000));
    let mut messages = Vec::new();
    for at in 0..framed.len().min(4_000) {
        let mut bad = framed.clone();
        bad[at] ^= 0x01;
        if let Err(e) = decompress(&bad) {
            messages.push(e.to_string());
        }
        if at % 20 == 0 {
            if let Err(e) = stream_decode(&bad) {
                messages.push(e.to_string());
            }
        }
    }
    for cut in 0..framed.len().min(200) {
        if let Err(e) = decompress(&framed[..cut]) {
            messages.push(e.to_string());
        }
    }
    assert!(messages.len() > 100, "{} errors", messages.len());
    for m in &messages {
        assert!(
            !m.contains('{') && !m.contains("Error"),
            "an error in Rust's Debug form: {m}"
        );
    }
}
