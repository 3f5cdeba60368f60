"""WHIP test publisher: a synthetic moving VP8 video track (and a tone) to gongkai.

Usage: whip_publisher.py URL TOKEN SECONDS [vp8|h264] [--ignore-pli] [--watch]
                         [--video-delay=S]
  --ignore-pli  never answer keyframe requests: after its first frame the encoder sends
                keyframes only at its own interval (aiortc's VP8: every 3000 frames), like
                an encoder configured with a fixed keyframe interval
  --watch       also print each change of the peer connection's state,
                {"connection": state, "at": unix seconds}, and stop early when the server
                ends the session (a DTLS close or an ICE failure): then it prints
                {"event": "closed_by_remote", "connection": state, "at": unix seconds}
                and exits without a DELETE; also prints {"event": "video_started", "at": unix
                seconds} when the first video frame is produced
  --video-delay=S  hold the first video frame back S seconds after the connection is up,
                as a phone's camera warming up: the audio track arrives first
Prints one JSON line per state change on stdout ("published", "ended") and exits after
SECONDS, deleting its session resource (a clean stop). A refused offer prints
{"event": "refused", "status": code, "code": error code} and exits. Loopback only: no ICE
servers.
"""

import asyncio
import fractions
import json
import sys
import time
import urllib.error
import urllib.request

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import VideoFrame


class MovingPattern(VideoStreamTrack):
    """320x240 frames whose colour changes every frame, so every frame is real content."""

    def __init__(self, delay=0.0, on_first=None):
        super().__init__()
        self.delay = delay
        self.on_first = on_first

    async def recv(self):
        if self.on_first is not None:
            await asyncio.sleep(self.delay)
            self.on_first()
            self.on_first = None
        pts, time_base = await self.next_timestamp()
        step = pts // 3000
        frame = VideoFrame(width=320, height=240, format="yuv420p")
        # A luma ramp that moves every frame; flat chroma. Plane buffers may be padded.
        luma = frame.planes[0]
        row = bytes((x + step * 4) % 256 for x in range(luma.line_size))
        luma.update(row * 240)
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * (plane.line_size * 120))
        frame.pts = pts
        frame.time_base = time_base
        return frame


def post(url, headers, body, method="POST"):
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=20) as response:
        # The message object, not a dict: header names are case-insensitive (HTTP/1.1
        # servers may send `location`).
        return response.status, response.headers, response.read().decode()


def error_code(error):
    """The `code` of an `{"error": {"code", "message"}}` body, if any."""
    try:
        return json.loads(error.read().decode())["error"]["code"]
    except Exception:
        return None


async def main(url, token, seconds, codec, watch, video_delay):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    closing = False
    remote_closed = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state():
        if not watch:
            return
        state = pc.connectionState
        print(json.dumps({"connection": state, "at": time.time()}), flush=True)
        if state in ("closed", "failed") and not closing:
            remote_closed.set()

    def video_started():
        if watch:
            print(json.dumps({"event": "video_started", "at": time.time()}), flush=True)

    video = pc.addTransceiver(MovingPattern(video_delay, video_started), direction="sendonly")
    if codec != "vp8":
        preferred = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() == f"video/{codec}"
        ]
        video.setCodecPreferences(preferred)
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        status, headers, answer = await asyncio.to_thread(
            post,
            url,
            {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
            pc.localDescription.sdp.encode(),
        )
    except urllib.error.HTTPError as error:
        code = error_code(error)
        print(json.dumps({"event": "refused", "status": error.code, "code": code}), flush=True)
        closing = True
        await pc.close()
        return
    location = headers.get("Location")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    print(
        json.dumps(
            {"event": "published", "status": status, "location": location, "at": time.time()}
        ),
        flush=True,
    )
    try:
        await asyncio.wait_for(remote_closed.wait(), seconds)
    except asyncio.TimeoutError:
        pass
    if remote_closed.is_set():
        print(
            json.dumps(
                {"event": "closed_by_remote", "connection": pc.connectionState, "at": time.time()}
            ),
            flush=True,
        )
        await pc.close()
        return
    closing = True
    base = url.split("/whip/")[0]
    try:
        await asyncio.to_thread(
            post, base + location, {"Authorization": f"Bearer {token}"}, None, "DELETE"
        )
    except Exception as error:  # the server may be gone already
        print(json.dumps({"event": "delete_failed", "error": str(error)}), flush=True)
    await pc.close()
    print(json.dumps({"event": "ended"}), flush=True)


def ignore_keyframe_requests():
    from aiortc.codecs import vpx

    encode = vpx.Vp8Encoder.encode

    def without_forced_keyframes(self, frame, force_keyframe=False):
        return encode(self, frame, False)

    vpx.Vp8Encoder.encode = without_forced_keyframes
    # A changed target bitrate (REMB) makes aiortc start a new encoder, whose first frame
    # is a keyframe: keep the bitrate fixed too.
    vpx.Vp8Encoder.target_bitrate = property(
        lambda self: vpx.DEFAULT_BITRATE, lambda self, bitrate: None
    )


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    positional = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--ignore-pli" in flags:
        ignore_keyframe_requests()
    codec = positional[3].lower() if len(positional) > 3 else "vp8"
    watch = "--watch" in flags
    video_delay = 0.0
    for flag in flags:
        if flag.startswith("--video-delay="):
            video_delay = float(flag.split("=", 1)[1])
    asyncio.run(
        main(positional[0], positional[1], float(positional[2]), codec, watch, video_delay)
    )
