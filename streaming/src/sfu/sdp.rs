//! The little SDP reading the SFU does itself; the crate parses the rest.

use super::SfuError;

/// Cheap sanity checks before the crate sees an offer.
pub(super) fn check_offer(sdp: &str) -> Result<(), SfuError> {
    if !sdp.trim_start().starts_with("v=0") {
        return Err(SfuError::BadOffer("an SDP offer starts with v=0".into()));
    }
    if !sdp.lines().any(|line| line.starts_with("m=")) {
        return Err(SfuError::BadOffer("the offer has no media section".into()));
    }
    Ok(())
}

/// MIME types (`video/VP8`) from the offer's `a=rtpmap` lines, by media section kind.
pub(super) fn offered_mime_types(sdp: &str) -> Vec<String> {
    let mut kind = "";
    let mut mimes: Vec<String> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(media) = line.strip_prefix("m=") {
            kind = media.split(' ').next().unwrap_or("");
        } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
            let Some(name) = map
                .split_once(' ')
                .and_then(|(_, encoding)| encoding.split('/').next())
            else {
                continue;
            };
            let mime = format!("{kind}/{name}");
            if !mimes.iter().any(|m| m.eq_ignore_ascii_case(&mime)) {
                mimes.push(mime);
            }
        }
    }
    mimes
}

/// Whether the offer sends audio and video (media sections not `recvonly`/`inactive`).
pub(super) fn sent_kinds(sdp: &str) -> super::record::Expected {
    let mut expected = super::record::Expected::default();
    let mut section: Option<(String, bool)> = None;
    let close = |section: Option<(String, bool)>, expected: &mut super::record::Expected| {
        if let Some((kind, true)) = section {
            match kind.as_str() {
                "audio" => expected.audio = true,
                "video" => expected.video = true,
                _ => {}
            }
        }
    };
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(media) = line.strip_prefix("m=") {
            close(section.take(), &mut expected);
            let kind = media.split(' ').next().unwrap_or("").to_owned();
            section = Some((kind, true));
        } else if (line == "a=recvonly" || line == "a=inactive")
            && let Some((_, sends)) = section.as_mut()
        {
            *sends = false;
        }
    }
    close(section, &mut expected);
    expected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_codecs_per_media_section() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n";
        assert_eq!(
            offered_mime_types(sdp),
            vec!["audio/opus", "video/VP8", "video/rtx"]
        );
        assert!(check_offer(sdp).is_ok());
        let kinds = sent_kinds(sdp);
        assert!(kinds.audio && kinds.video);
        let kinds = sent_kinds(
            "v=0\r\nm=audio 9 RTP 111\r\na=sendonly\r\nm=video 9 RTP 96\r\na=recvonly\r\n",
        );
        assert!(kinds.audio && !kinds.video);
    }

    #[test]
    fn rejects_garbage() {
        assert!(check_offer("hello").is_err());
        assert!(check_offer("v=0\r\ns=-\r\n").is_err());
    }
}
