//! Images, audio and files in prompts: OpenAI's documented image rules (tiles or 32px patches,
//! per model), sizes read from inline `data:` URLs, and conservative bounds where the size or
//! the rule is unknown.

use base64::Engine;
use serde_json::Value;

use super::Counter;

/// Only the start of an inline image is decoded to find its size.
const HEADER_BASE64_CHARS: usize = 64 * 1024;
/// Bound for an image of unknown size on a model whose rule is not public (Claude, Gemini):
/// above Claude's ~1,600-token cap for a full-size image and Gemini 3's 1,120-token "high".
const APPROX_IMAGE_MAX: u64 = 6_000;
/// Floor for a known-size image on such models (Gemini bills 258-1,120 per image).
const APPROX_IMAGE_MIN: u64 = 1_120;
/// Audio tokens per second: OpenAI's audio models bill ~10/s, Gemini 32/s; 32 bounds both.
const AUDIO_TOKENS_PER_SECOND: u64 = 32;
/// Compressed audio is assumed no smaller than 16 kbit/s when its duration is unknown.
const AUDIO_MIN_BYTES_PER_SECOND: u64 = 2_000;
/// Per PDF page: the page's text (a dense page is ~800 tokens) plus its rendered image.
const FILE_TEXT_TOKENS_PER_PAGE: u64 = 1_500;
/// Page image of a PDF on models whose image rule is not modelled.
const APPROX_PAGE_IMAGE: u64 = 3_000;

enum ImageRule {
    /// base tokens + tile tokens per 512px tile after scaling (GPT-4o, GPT-4.1, o1/o3, GPT-5).
    Tiles { base: u64, tile: u64 },
    /// ceil(w/32) x ceil(h/32) patches, at most 1536, times a multiplier (in thousandths).
    Patches { multiplier_milli: u64 },
    /// Families whose rule this crate does not model.
    Approximate,
}

fn image_rule(counter: &Counter) -> ImageRule {
    if !counter.is_openai() {
        return ImageRule::Approximate;
    }
    let m = counter.model.as_str();
    let patches = |milli| ImageRule::Patches {
        multiplier_milli: milli,
    };
    if m.starts_with("gpt-4.1-mini") || m.starts_with("gpt-5-mini") {
        patches(1_620)
    } else if m.starts_with("gpt-4.1-nano") || m.starts_with("gpt-5-nano") {
        patches(2_460)
    } else if m.starts_with("o4-mini") {
        patches(1_720)
    } else if m.starts_with("gpt-4o-mini") {
        ImageRule::Tiles {
            base: 2_833,
            tile: 5_667,
        }
    } else if m.starts_with("o1") || m.starts_with("o3") {
        ImageRule::Tiles {
            base: 75,
            tile: 150,
        }
    } else if m.starts_with("computer-use") {
        ImageRule::Tiles {
            base: 65,
            tile: 129,
        }
    } else if m.starts_with("gpt-5") && !(m.contains("-mini") || m.contains("-nano")) {
        ImageRule::Tiles {
            base: 70,
            tile: 140,
        }
    } else if m.starts_with("gpt-4o")
        || m.starts_with("gpt-4.1")
        || m.starts_with("gpt-4.5")
        || m.starts_with("gpt-4-turbo")
        || m.starts_with("chatgpt-4o")
    {
        ImageRule::Tiles {
            base: 85,
            tile: 170,
        }
    } else {
        // A newer OpenAI model: the dearer of the two published rules.
        ImageRule::Patches {
            multiplier_milli: 2_460,
        }
    }
}

/// Tokens of one image given its URL (https or data:) and `detail`.
pub(crate) fn image_tokens(counter: &Counter, url: Option<&str>, detail: Option<&str>) -> u64 {
    let size = url.and_then(data_url_image_size);
    image_tokens_for_size(counter, size, detail == Some("low"))
}

/// Tokens of one image of a known (or unknown) size.
pub(crate) fn image_tokens_for_size(counter: &Counter, size: Option<(u64, u64)>, low: bool) -> u64 {
    match image_rule(counter) {
        ImageRule::Tiles { base, tile } => {
            if low {
                return base;
            }
            let tiles = match size {
                Some((w, h)) => tile_count(w, h),
                None => MAX_TILES,
            };
            base + tile * tiles
        }
        ImageRule::Patches { multiplier_milli } => {
            // `detail: low` is not documented for patch models; it is ignored.
            let patches = match size {
                Some((w, h)) => (w.div_ceil(32) * h.div_ceil(32)).min(MAX_PATCHES),
                None => MAX_PATCHES,
            };
            (patches * multiplier_milli).div_ceil(1000)
        }
        ImageRule::Approximate => match size {
            Some((w, h)) => (w * h)
                .div_ceil(750)
                .clamp(APPROX_IMAGE_MIN, APPROX_IMAGE_MAX),
            None => APPROX_IMAGE_MAX,
        },
    }
}

const MAX_PATCHES: u64 = 1_536;
/// A 768 x 2048 image: the most tiles the documented scaling leaves.
const MAX_TILES: u64 = 8;

/// OpenAI's high-detail rule: fit into 2048 x 2048, scale the short side to 768, count 512px
/// tiles. The short side is scaled up as well as down (the documentation's literal reading,
/// which is the larger count for small images); the result is capped at [`MAX_TILES`].
fn tile_count(w: u64, h: u64) -> u64 {
    if w == 0 || h == 0 {
        return 1;
    }
    let (mut w, mut h) = (w as f64, h as f64);
    if w > 2048.0 || h > 2048.0 {
        let r = 2048.0 / w.max(h);
        w *= r;
        h *= r;
    }
    let r = 768.0 / w.min(h);
    w = (w * r).floor();
    h = (h * r).floor();
    let tiles = ((w / 512.0).ceil() * (h / 512.0).ceil()) as u64;
    tiles.clamp(1, MAX_TILES)
}

/// Width and height of an inline `data:image/...;base64,` image, from its header.
pub(crate) fn data_url_image_size(url: &str) -> Option<(u64, u64)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    base64_image_size(data)
}

/// Width and height of a base64-encoded image, from its header.
pub(crate) fn base64_image_size(data: &str) -> Option<(u64, u64)> {
    let head = decode_prefix(data, HEADER_BASE64_CHARS)?;
    image_size(&head)
}

fn decode_prefix(data: &str, max_chars: usize) -> Option<Vec<u8>> {
    let clean: String = data
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .take(max_chars)
        .collect();
    let usable = clean.len() / 4 * 4;
    let engine = base64::engine::general_purpose::STANDARD;
    engine.decode(&clean[..usable]).ok()
}

fn image_size(b: &[u8]) -> Option<(u64, u64)> {
    let be32 = |i: usize| -> Option<u64> {
        Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?) as u64)
    };
    let le16 = |i: usize| -> Option<u64> {
        Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?) as u64)
    };
    let le24 = |i: usize| -> Option<u64> {
        let s = b.get(i..i + 3)?;
        Some(s[0] as u64 | (s[1] as u64) << 8 | (s[2] as u64) << 16)
    };
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some((be32(16)?, be32(20)?));
    }
    if b.starts_with(b"GIF8") {
        return Some((le16(6)?, le16(8)?));
    }
    if b.len() > 30 && b.starts_with(b"RIFF") && &b[8..12] == b"WEBP" {
        return match &b[12..16] {
            b"VP8 " => Some((le16(26)? & 0x3fff, le16(28)? & 0x3fff)),
            b"VP8L" => {
                let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?) as u64;
                Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
            }
            b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
            _ => None,
        };
    }
    if b.starts_with(&[0xff, 0xd8]) {
        return jpeg_size(b);
    }
    None
}

fn jpeg_size(b: &[u8]) -> Option<(u64, u64)> {
    let mut i = 2;
    while i + 9 < b.len() {
        if b[i] != 0xff {
            return None;
        }
        let marker = b[i + 1];
        if marker == 0xff {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        let is_sof = (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker);
        if is_sof {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as u64;
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as u64;
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

/// `input_audio: {data, format}`: duration from a WAV header, else from the size at a
/// conservative minimum bitrate.
pub(crate) fn audio_tokens(_counter: &Counter, audio: &Value) -> u64 {
    let data = audio.get("data").and_then(Value::as_str).unwrap_or("");
    let padding = data.bytes().rev().take_while(|&b| b == b'=').count() as u64;
    let bytes = (data.len() as u64 * 3 / 4).saturating_sub(padding);
    let head = decode_prefix(data, 64).unwrap_or_default();
    let seconds_x1000 = match wav_byte_rate(&head) {
        Some(rate) if rate > 0 => (bytes * 1000).div_ceil(rate),
        _ => (bytes * 1000).div_ceil(AUDIO_MIN_BYTES_PER_SECOND),
    };
    (seconds_x1000 * AUDIO_TOKENS_PER_SECOND).div_ceil(1000) + 1
}

fn wav_byte_rate(head: &[u8]) -> Option<u64> {
    if head.len() >= 32 && head.starts_with(b"RIFF") && &head[8..12] == b"WAVE" {
        return Some(u32::from_le_bytes(head[28..32].try_into().ok()?) as u64);
    }
    None
}

/// A file part (`file_data` inline, or `file_id` / `file_url` by reference). Inline PDFs are
/// bounded per page (text plus the page image); other inline files by their decoded size;
/// references cannot be sized here and count only their metadata.
pub(crate) fn file_tokens(counter: &Counter, file: &Value) -> u64 {
    let meta = file.get("filename").map(|v| counter.json(v)).unwrap_or(0);
    let Some(data) = file.get("file_data").and_then(Value::as_str) else {
        return meta;
    };
    let payload = data.split_once(',').map(|(_, d)| d).unwrap_or(data);
    let engine = base64::engine::general_purpose::STANDARD;
    let clean: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let decoded = engine.decode(clean.as_bytes()).unwrap_or_default();
    let pages = pdf_pages(&decoded);
    if pages > 0 {
        let page_image = match image_rule(counter) {
            // Claude renders a page at up to ~1,600 image tokens.
            ImageRule::Approximate => APPROX_PAGE_IMAGE,
            _ => image_tokens_for_size(counter, None, false),
        };
        meta + pages * (FILE_TEXT_TOKENS_PER_PAGE + page_image)
    } else {
        // Not a PDF: every byte could be a token.
        meta + decoded.len() as u64
    }
}

fn pdf_pages(bytes: &[u8]) -> u64 {
    if !bytes.starts_with(b"%PDF") {
        return 0;
    }
    let mut count = 0;
    for needle in [&b"/Type /Page"[..], &b"/Type/Page"[..]] {
        let mut i = 0;
        while let Some(pos) = find(&bytes[i..], needle) {
            let end = i + pos + needle.len();
            if bytes.get(end) != Some(&b's') {
                count += 1;
            }
            i = end;
        }
    }
    count.max(1)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> String {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        bytes.extend_from_slice(&w.to_be_bytes());
        bytes.extend_from_slice(&h.to_be_bytes());
        bytes.extend_from_slice(&[8, 6, 0, 0, 0]);
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    fn jpeg(w: u16, h: u16) -> String {
        let mut bytes = vec![0xff, 0xd8, 0xff, 0xe0, 0, 16];
        bytes.extend_from_slice(&[0; 14]);
        bytes.extend_from_slice(&[0xff, 0xc0, 0, 17, 8]);
        bytes.extend_from_slice(&h.to_be_bytes());
        bytes.extend_from_slice(&w.to_be_bytes());
        bytes.extend_from_slice(&[3; 12]);
        format!(
            "data:image/jpeg;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    #[test]
    fn sizes_are_read_from_inline_images() {
        assert_eq!(data_url_image_size(&png(1024, 768)), Some((1024, 768)));
        assert_eq!(data_url_image_size(&jpeg(640, 480)), Some((640, 480)));
        assert_eq!(data_url_image_size("https://example.com/cat.png"), None);
        assert_eq!(data_url_image_size("data:image/png;base64,!!!!"), None);
    }

    #[test]
    fn openai_documented_examples() {
        let gpt4o = Counter::new("gpt-4o");
        // Docs: 1024 x 1024 high detail = 765 tokens; 2048 x 4096 = 1105; low = 85.
        assert_eq!(
            image_tokens(&gpt4o, Some(&png(1024, 1024)), Some("high")),
            765
        );
        assert_eq!(
            image_tokens(&gpt4o, Some(&png(2048, 4096)), Some("high")),
            1105
        );
        assert_eq!(
            image_tokens(&gpt4o, Some(&png(4096, 8192)), Some("low")),
            85
        );
        // Unknown size: the most the rule can give.
        assert_eq!(
            image_tokens(&gpt4o, Some("https://x/y.png"), None),
            85 + 8 * 170
        );
        // Patch models: docs example 1024 x 1024 = 1024 patches; 1800 x 2400 caps at 1536.
        let mini = Counter::new("gpt-4.1-mini");
        assert_eq!(
            image_tokens(&mini, Some(&png(1024, 1024)), None),
            (1024 * 1620u64).div_ceil(1000)
        );
        assert_eq!(
            image_tokens(&mini, Some(&png(1800, 2400)), None),
            (1536 * 1620u64).div_ceil(1000)
        );
        let four_o_mini = Counter::new("gpt-4o-mini");
        assert_eq!(
            image_tokens(&four_o_mini, Some(&png(512, 512)), Some("low")),
            2833
        );
    }

    #[test]
    fn non_openai_images_are_bounded() {
        let claude = Counter::new("claude-sonnet-4");
        assert_eq!(image_tokens(&claude, None, None), APPROX_IMAGE_MAX);
        assert_eq!(image_tokens(&claude, Some(&png(1092, 1092)), None), 1590);
        assert_eq!(
            image_tokens(&claude, Some(&png(10, 10)), None),
            APPROX_IMAGE_MIN
        );
    }

    #[test]
    fn audio_uses_wav_rate_or_a_low_bitrate_floor() {
        let counter = Counter::new("gpt-4o-audio-preview");
        // 1 second of 16 kHz mono 16-bit WAV = 32,000 bytes of samples.
        let mut wav =
            b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data"
                .to_vec();
        wav.extend(std::iter::repeat_n(0u8, 32_000));
        let data = base64::engine::general_purpose::STANDARD.encode(&wav);
        let tokens = audio_tokens(
            &counter,
            &serde_json::json!({"data": data, "format": "wav"}),
        );
        assert!((32..=40).contains(&tokens), "{tokens}");
        let mp3 = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 20_000]);
        let tokens = audio_tokens(&counter, &serde_json::json!({"data": mp3, "format": "mp3"}));
        assert_eq!(tokens, 10 * 32 + 1, "20 kB at 16 kbit/s is 10 s");
    }

    #[test]
    fn pdf_pages_bound_the_file() {
        let counter = Counter::new("gpt-4o");
        let pdf = b"%PDF-1.4\n1 0 obj << /Type /Pages >>\n2 0 obj << /Type /Page >>\n3 0 obj << /Type/Page >>";
        let data = format!(
            "data:application/pdf;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(pdf)
        );
        let tokens = file_tokens(&counter, &serde_json::json!({"file_data": data}));
        assert_eq!(tokens, 2 * (FILE_TEXT_TOKENS_PER_PAGE + 85 + 8 * 170));
    }
}
